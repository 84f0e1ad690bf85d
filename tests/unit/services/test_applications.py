"""Use cases end to end inside one process per service: commands, consumed CloudEvents
(`process_cloud_event`), exactly-once effects, and the read-model projections.

Every application reads the time from a FixedClock (NOW unless a test moves it)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.utils import get_topic

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.envelope import ContractError
from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.domain.values import Application, BankAccount
from lifeline.messaging.outbox import to_cloud_events
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import Settings
from lifeline.stores.application import DuplicateRequest
from lifeline.stores.eventstore import event_store_env
from lifeline.stores.projection import rebuild
from services.charity.application import CharityApplication, FundNotFound
from services.charity.application import project as charity_project
from services.charity.domain import Need
from services.charity.outbound import OUTBOUND as CHARITY_OUTBOUND
from services.intake.application import CaseNotFound, IntakeApplication, case_view
from services.intake.application import project as intake_project
from services.intake.domain import Case, Referral
from services.intake.outbound import OUTBOUND as INTAKE_OUTBOUND
from services.notify.application import NotifyApplication
from services.notify.application import project as notify_project
from services.notify.domain import LEGAL_NAMES, Notice
from services.notify.outbound import OUTBOUND as NOTIFY_OUTBOUND
from services.payment.application import PaymentApplication
from services.payment.application import project as payment_project
from services.payment.domain import Entitlement

# What an approval records about the benefit (payment also records whom it concerns: Household).
ENTITLEMENT_EVENTS = (Entitlement.Opened, Entitlement.OneOffRecorded, Entitlement.RecognitionRecorded)
from services.payment.outbound import OUTBOUND as PAYMENT_OUTBOUND
from services.verification.application import (
    DecisionNotAllowed,
    VerificationApplication,
    VerificationNotFound,
    verification_view,
)
from services.verification.application import project as verification_project
from services.verification.domain import NotPermitted, Verification
from services.verification.outbound import OUTBOUND as VERIFICATION_OUTBOUND
from lifeline.rules.policy import PolicyHolder, shipped_policy_book

from . import (
    ACCOUNT_NUMBER,
    accepted_data,
    ready_to_decide,
    APPLICANT_NAME,
    CLERK,
    COUNTY_OFFICER,
    MEMORY_ENV,
    REVIEWER,
    SEALER,
    SYSTEM_META,
    TOWNSHIP,
    VILLAGE,
    application_body,
    benefit_data,
    cloud,
    log_length,
    new_case_id,
    old_stored_event,
    one_off_benefit_data,
    pid,
    record_row,
    report,
    stored,
    submitted_data,
)

IDS = [pid(11), pid(12, female=True)]
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)


def make(app_class, clock: FixedClock | None = None, **kw):
    """An application on an in-memory store, reading the time from its own FixedClock."""
    if app_class is IntakeApplication:
        kw.setdefault("sealer", SEALER)
    return app_class(dict(MEMORY_ENV), clock=clock or FixedClock(NOW), **kw)


def public(event, outbound):
    """The event's public form by its service's outbound mapping, checked against its schema."""
    out = outbound(event)
    assert out is not None, f"{type(event).__name__} is not public"
    registry.validate_data(out.name, out.data)
    return out


def _running(app_class):
    """A fixture: a fresh application of `app_class` on an in-memory store."""

    @pytest.fixture
    def running():
        app = make(app_class)
        yield app
        app.close()

    return running


verification = _running(VerificationApplication)
payment = _running(PaymentApplication)
notify = _running(NotifyApplication)
intake = _running(IntakeApplication)
charity = _running(CharityApplication)


def test_memory_env_mirrors_the_service_store_settings(tmp_path):
    env = event_store_env(Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path)}), "verification")
    assert env["SINGLE_ROW_TRACKING"] == MEMORY_ENV["SINGLE_ROW_TRACKING"] == "n"
    assert env["PERSISTENCE_MODULE"] == MEMORY_ENV["PERSISTENCE_MODULE"]
    assert env["CIPHER_TOPIC"]  # no key configured: encrypted with the data directory's secret


@pytest.mark.parametrize(
    ("app_class", "handled"),
    [
        (IntakeApplication, {"VerificationCompleted", "BenefitApproved", "BenefitRefused", "BenefitTerminated",
                             # finding and referrals (issue 11): monitoring, answers, breaches
                             "LifeEventReported", "DeathReported", "ReferralAnswered", "DeadlineBreached",
                             "NeedAccepted", "NeedFulfilled"}),
        (VerificationApplication, {"ApplicationSubmitted", "ApplicationAccepted", "ApplicationRefused",
                                   "DepartmentRecordsReported", "ObjectionReceived",
                                   # a member of an approved household died (issue 11)
                                   "DeathReported",
                                   # a breached clock of its own: a filing with the county (issue 17)
                                   "DeadlineBreached"}),
        (PaymentApplication, {"BenefitApproved", "BenefitAdjusted", "BenefitSuspended", "BenefitResumed",
                              "BenefitTerminated", "ApplicationSubmitted", "DeathReported",
                              "EmergencyReliefGranted", "EmergencyReliefPostApprovalDecided", "FraudRecorded",
                              # a provider paid once per confirmed delivery (issue 17)
                              "ServiceDeliveryConfirmed"}),
        (CharityApplication, {"ReferralRaised"}),
        (NotifyApplication, {"ApplicationAccepted", "ApplicationRefused", "MaterialsRequested",
                             # the household's mobile number, sealed, for notices by SMS (issue 13)
                             "ApplicationSubmitted",
                             "BenefitRefused", "PublicNoticePosted", "DeadlineSet", "DeadlineCleared",
                             "BenefitAdjusted", "BenefitSuspended", "BenefitResumed", "BenefitTerminated"}),
    ],
)
def test_handled_events(app_class, handled):
    app = make(app_class)
    try:
        assert app.handled_events == handled == set(app.handlers)
    finally:
        app.close()


# === verification ===========================================================================
def policy_on(moment: datetime = NOW):
    return shipped_policy_book().policy_for("370502", moment.date())


def mandatory_departments() -> list[str]:
    return list(policy_on().mandatory_departments)


def submitted_event(case_id: str, ids=IDS, **kw):
    return cloud("ApplicationSubmitted", submitted_data(case_id, ids, **kw), subject=case_id,
                 source="lifeline/intake")


def records_event(case_id: str, department: str, request_id: str, ids=IDS, income: int = 0):
    rows = [record_row(i, monthly_income_fen=income if department == "hrss" else 0) for i in ids]
    return cloud("DepartmentRecordsReported", report(case_id, department, request_id, rows),
                 subject=case_id, source=f"partner/{department}")


def start(app: VerificationApplication, case_id: str, **kw):
    """Intake's ApplicationSubmitted, then its ApplicationAccepted (dated two weeks before the
    clock's time, so that the procedure's steps fit before a decision at that time); returns
    the acceptance, which starts the check."""
    assert app.process_cloud_event(submitted_event(case_id, **kw)) is True
    accepted_at = (app.clock.now() - timedelta(days=14)).isoformat()
    event = cloud("ApplicationAccepted", accepted_data(case_id, accepted_at), subject=case_id,
                  source="lifeline/intake")
    assert app.process_cloud_event(event) is True
    return event


def prepare(app: VerificationApplication, case_id: str, proposal: str = "include") -> None:
    """The survey, the initial review and the public notice, recorded by a caseworker (four
    eyes) early enough that a decision may be taken at the clock's time."""
    v = app.get_verification(case_id)
    if v.state == "completed" and v.proposal is None:
        ready_to_decide(v, app.clock.now(), proposal)
        app.save(v)


def decide(app: VerificationApplication, case_id: str, decision: str, reason: str, by):
    """`app.decide` at the clock's time, the steps before it done (proposing what is decided)."""
    prepare(app, case_id, "include" if decision == "approve" else "refuse")
    return app.decide(case_id, decision, reason, by)


def answer(app: VerificationApplication, case_id: str, *, skip=(), income: int = 0) -> None:
    v = app.get_verification(case_id)
    for dept, request_id in v.requests.items():
        if dept not in skip:
            assert app.process_cloud_event(records_event(case_id, dept, request_id, income=income)) is True


def test_application_starts_one_request_per_mandatory_department(verification):
    case_id = new_case_id()
    event = start(verification, case_id)
    v = verification.get_verification(case_id)
    departments = mandatory_departments()
    assert departments  # county 370502 has a policy with mandatory departments
    assert sorted(v.requests) == sorted(departments)
    assert v.state == "requested" and v.region_code == VILLAGE
    requested = stored(verification, Verification.Requested)
    assert len(requested) == len(departments)
    # Opened, accepted, the requests, and three deadlines: report, survey, whole procedure; and
    # each member's fingerprint linked to the case (issue 11: whom a death report concerns).
    members = len(v.application.household.members)
    assert log_length(verification) == 2 + len(departments) + 3 + 2 * members
    assert sorted(d.clock for d in v.deadlines.values()) == [
        "household_survey", "verification_report", "whole_procedure"]
    for e in requested:
        out = public(e, VERIFICATION_OUTBOUND)
        assert out.data["id_numbers"] == IDS
        assert out.data["requested_at"] == NOW.isoformat()  # the service's clock
        assert [(t, k) for t, k, _ in to_cloud_events("verification", 1, e, VERIFICATION_OUTBOUND)] == [
            (T.PARTNER_REQUESTS, e.department)]
        # The chain goes on: caused by the consumed event, same correlation.
        assert e.meta["causation_id"] == event.id and e.meta["correlation_id"] == event.correlationid
        assert e.meta["role"] == "system"


def test_duplicate_delivery_is_ignored(verification):
    case_id = new_case_id()
    event = start(verification, case_id)
    before = log_length(verification)
    assert verification.process_cloud_event(event) is False
    assert log_length(verification) == before
    assert verification.is_processed(event)


def test_the_same_application_through_another_event_starts_no_second_check(verification):
    case_id = new_case_id()
    start(verification, case_id)
    before = log_length(verification)
    again = submitted_event(case_id)  # a different CloudEvent (new id and position)
    assert verification.process_cloud_event(again) is True
    assert log_length(verification) == before
    assert len(stored(verification, Verification.Started)) == 1


def test_every_department_answering_completes_the_check(verification):
    case_id = new_case_id()
    start(verification, case_id)
    answer(verification, case_id)
    v = verification.get_verification(case_id)
    assert v.state == "completed"
    assert v.assessment["outcome"] == "eligible"
    assert v.assessment["departments_missing"] == []
    assert sorted(v.assessment["departments_answered"]) == sorted(mandatory_departments())
    (completed,) = stored(verification, Verification.Completed)
    out = public(completed, VERIFICATION_OUTBOUND)
    assert out.data["recommended_amount_fen"] == v.assessment["monthly_amount_fen"] > 0
    assert out.data["completed_at"] == NOW.isoformat()
    view = verification_view(v)
    assert view["state"] == "completed" and view["departments_missing"] == []


def test_a_report_for_another_request_is_ignored(verification):
    case_id = new_case_id()
    start(verification, case_id)
    before = log_length(verification)
    assert verification.process_cloud_event(records_event(case_id, "hrss", "Q-NOT-OURS")) is True
    assert log_length(verification) == before
    assert "hrss" not in verification.get_verification(case_id).records


def test_a_report_for_an_unknown_case_fails(verification):
    with pytest.raises(VerificationNotFound):
        verification.process_cloud_event(records_event("C-UNKNOWN", "hrss", "Q-1"))


def test_complete_now_with_a_department_missing_needs_appraisal(verification):
    case_id = new_case_id()
    start(verification, case_id)
    missing = mandatory_departments()[-1]
    answer(verification, case_id, skip=(missing,))
    assert verification.get_verification(case_id).state == "requested"
    assessment = verification.complete_now(case_id, REVIEWER)
    assert assessment["outcome"] == "needs_appraisal"
    assert assessment["departments_missing"] == [missing]
    assert missing not in assessment["departments_answered"]
    # Reported in departments_missing and as a blocking reason (not a 预警 warning).
    assert any(r["code"] == "DEPARTMENTS_MISSING" for r in assessment["detail"]["reasons"])
    (completed,) = stored(verification, Verification.Completed)
    public(completed, VERIFICATION_OUTBOUND)
    assert completed.meta["user_id"] == REVIEWER.user_id

    # The missing department answers after all: recorded as processed, nothing changes.
    before = log_length(verification)
    late = records_event(case_id, missing, verification.get_verification(case_id).requests[missing])
    assert verification.process_cloud_event(late) is True
    assert log_length(verification) == before
    assert verification.get_verification(case_id).assessment["departments_missing"] == [missing]

    with pytest.raises(DecisionNotAllowed):
        verification.complete_now(case_id, REVIEWER)


def test_complete_now_racing_a_department_answer_completes_on_fresh_state(verification, monkeypatch):
    case_id = new_case_id()
    start(verification, case_id)
    late, other = mandatory_departments()[-2:]
    answer(verification, case_id, skip=(late, other))
    save = verification.save
    raced = []

    def save_after_a_consumer_wrote(*aggregates, **kw):
        # The department's answer is saved between the reviewer's load and save.
        if not raced:
            raced.append(late)
            request_id = verification.get_verification(case_id).requests[late]
            assert verification.process_cloud_event(records_event(case_id, late, request_id)) is True
        return save(*aggregates, **kw)

    monkeypatch.setattr(verification, "save", save_after_a_consumer_wrote)
    assessment = verification.complete_now(case_id, REVIEWER)
    assert raced == [late]
    # Completed once, on the state that includes the answer that raced in.
    assert late in assessment["departments_answered"]
    assert assessment["departments_missing"] == [other]
    assert len(stored(verification, Verification.Completed)) == 1


def test_approval_pays_from_the_month_after_the_decision(verification):
    case_id = new_case_id()
    start(verification, case_id)
    answer(verification, case_id)
    view = decide(verification, case_id, "approve", "符合低保条件", REVIEWER)
    assert view["first_period"] == "2026-12"  # decided on NOW, 2026-11-25
    v = verification.get_verification(case_id)
    assert v.state == "approved"
    # The answer is the published BenefitApproved without the sealed account number.
    assert {k: view[k] for k in dataclasses.asdict(v.benefit)} == dataclasses.asdict(v.benefit)
    assert "bank_account" not in view and ACCOUNT_NUMBER not in json.dumps(view)
    assert (view["kind"], view["benefit_type"], view["approval_level"]) == ("monthly", "dibao", "township")
    assert view["monthly_amount_fen"] == v.assessment["monthly_amount_fen"] > 0
    assert view["one_off_amount_fen"] is None and view["fund_source"] is None
    assert view["approving_body"] == TOWNSHIP  # the reviewer's office
    assert view["approved_at"] == NOW.isoformat()
    (approved,) = stored(verification, Verification.Approved)
    out = public(approved, VERIFICATION_OUTBOUND)
    assert (out.name, out.subject) == ("BenefitApproved", case_id)
    assert out.data == {
        "case_id": case_id, "verification_id": v.verification_id,
        "household": {"members_count": 2, "region_code": VILLAGE, "area": "urban"},
        **dataclasses.asdict(v.benefit),
        "bank_account_ref": v.application.bank_account.ref,
        "bank_account": dataclasses.asdict(v.application.bank_account),
        "reason": "符合低保条件",
    }
    assert view == {k: out.data[k] for k in out.data if k != "bank_account"}
    assert ACCOUNT_NUMBER not in json.dumps(out.data)  # the number travels sealed
    assert approved.meta["reason"] == ""  # Meta as given by the caller

    with pytest.raises(DecisionNotAllowed):
        decide(verification, case_id, "refuse", "又改主意", REVIEWER)
    with pytest.raises(DecisionNotAllowed):
        decide(verification, case_id, "approve", "再批一次", REVIEWER)
    assert len(stored(verification, Verification.Approved, Verification.Refused)) == 1


@pytest.mark.parametrize("decision", ["approve", "refuse"])
def test_no_decision_before_the_check_is_complete(verification, decision):
    case_id = new_case_id()
    start(verification, case_id)
    before = log_length(verification)
    with pytest.raises(DecisionNotAllowed):
        decide(verification, case_id, decision, "太早", REVIEWER)
    assert log_length(verification) == before


def test_an_ineligible_household_cannot_be_approved_but_can_be_refused(verification):
    case_id = new_case_id()
    start(verification, case_id)
    answer(verification, case_id, income=5_000_000)
    assert verification.get_verification(case_id).assessment["outcome"] == "ineligible"
    public(stored(verification, Verification.Completed)[0], VERIFICATION_OUTBOUND)
    before = log_length(verification)
    with pytest.raises(DecisionNotAllowed):
        decide(verification, case_id, "approve", "照顾", REVIEWER)
    assert log_length(verification) == before
    refusal = decide(verification, case_id, "refuse", "家庭月人均收入不低于当地低保标准", REVIEWER)
    v = verification.get_verification(case_id)
    assert refusal == {"case_id": case_id, "verification_id": v.verification_id,
                       "region_code": VILLAGE, "reason": "家庭月人均收入不低于当地低保标准",
                       "refusing_body": TOWNSHIP, "refused_at": NOW.isoformat()}
    (refused,) = stored(verification, Verification.Refused)
    out = public(refused, VERIFICATION_OUTBOUND)
    assert out.name == "BenefitRefused" and v.state == "refused"
    assert out.data == refusal


def test_a_report_with_null_figures_completes_the_check(verification):
    case_id = new_case_id()
    start(verification, case_id)
    v = verification.get_verification(case_id)
    for dept, request_id in v.requests.items():
        rows = [record_row(i, assets_fen=None, medical_expense_fen=None, education_expense_fen=None)
                for i in IDS]
        event = cloud("DepartmentRecordsReported", report(case_id, dept, request_id, rows),
                      subject=case_id, source=f"partner/{dept}")  # schema-valid: null = no record
        verification.process_cloud_event(event)
    assert verification.get_verification(case_id).state == "completed"


def test_complete_now_after_a_report_with_null_figures(verification):
    case_id = new_case_id()
    start(verification, case_id)
    request_id = verification.get_verification(case_id).requests["hrss"]
    rows = [record_row(i, income_tax_fen=None) for i in IDS]
    event = cloud("DepartmentRecordsReported", report(case_id, "hrss", request_id, rows),
                  subject=case_id, source="partner/hrss")
    assert verification.process_cloud_event(event) is True  # stored: nothing completes yet
    assessment = verification.complete_now(case_id, REVIEWER)
    assert assessment["outcome"] == "needs_appraisal"


def test_a_clean_household_raises_no_warning_in_the_assessment(verification):
    case_id = new_case_id()
    start(verification, case_id)
    answer(verification, case_id)
    assert verification.get_verification(case_id).assessment["detail"]["warnings"] == []


def test_verification_completed_publishes_only_warnings(verification):
    case_id = new_case_id()
    start(verification, case_id)
    answer(verification, case_id)
    (completed,) = stored(verification, Verification.Completed)
    published = [w["code"] for w in public(completed, VERIFICATION_OUTBOUND).data["warnings"]]
    assert published == [w["code"] for w in completed.assessment["detail"]["warnings"]]


def test_an_under_declared_income_is_a_published_warning(verification):
    case_id = new_case_id()
    start(verification, case_id)  # declared income 0
    answer(verification, case_id, income=10000)
    (completed,) = stored(verification, Verification.Completed)
    warnings = public(completed, VERIFICATION_OUTBOUND).data["warnings"]
    assert "INCOME_UNDER_DECLARED" in [w["code"] for w in warnings]
    assert all(w["rule"] for w in warnings)


def test_verification_read_model(verification):
    done, waiting = new_case_id(), new_case_id()
    start(verification, done)
    answer(verification, done)
    decide(verification, done, "approve", "ok", REVIEWER)
    start(verification, waiting)
    views = rebuild(verification, verification_project)
    with views.transaction() as tx:
        # An approved monthly benefit: its status and the monthly amount in force (beside them,
        # what GET /v1/verifications lists: tests/unit/services/test_verification_queue.py).
        doc = tx.get("verification", done)
        assert (doc.pop("applicant_name_masked"), doc.pop("assistance_type"), doc.pop("procedure")["deadlines"]) == (
            "王*明", "dibao", {})  # decided: no clock runs
        assert doc == {
            "case_id": done, "state": "approved", "region_code": VILLAGE, "outcome": "eligible",
            "benefit_status": "paying", "monthly_amount_fen": 206000}
        assert [d["case_id"] for d in tx.find("verification", "approved")] == [done]
        assert [d["case_id"] for d in tx.find("verification", "requested")] == [waiting]


# === payment ================================================================================
def approved_event(case_id: str, benefit_id: str = "B-0123456789ABCDEF0123", **kw):
    return cloud("BenefitApproved", benefit_data(case_id, benefit_id, **kw), subject=case_id,
                 source="lifeline/verification")


def test_approval_opens_exactly_one_entitlement(payment):
    case_id = new_case_id()
    first = approved_event(case_id)
    assert payment.process_cloud_event(first) is True
    assert payment.process_cloud_event(first) is False  # redelivery
    assert payment.process_cloud_event(approved_event(case_id)) is True  # same benefit, other event
    (opened,) = stored(payment, Entitlement.Opened)
    assert len(stored(payment, *ENTITLEMENT_EVENTS)) == 1
    assert (opened.case_id, opened.benefit_id, opened.monthly_amount_fen) == (
        case_id, "B-0123456789ABCDEF0123", 206000)
    assert opened.entitlement_id == "E-0123456789ABCDEF0123" and opened.first_period == "2026-12"
    assert opened.bank_account_ref == first.data["bank_account_ref"]
    assert opened.region_code == VILLAGE and opened.opened_at == NOW.isoformat()
    out = public(opened, PAYMENT_OUTBOUND)
    assert (out.name, out.subject) == ("EntitlementOpened", case_id)
    assert opened.meta["causation_id"] == first.id


def test_two_benefits_open_two_entitlements(payment):
    case_id = new_case_id()
    payment.process_cloud_event(approved_event(case_id, "B-AAAAAAAAAAAAAAAAAAAA"))
    payment.process_cloud_event(approved_event(case_id, "B-BBBBBBBBBBBBBBBBBBBB"))
    assert len(stored(payment, Entitlement.Opened)) == 2


def test_one_off_relief_is_recorded_once_and_opens_no_monthly_entitlement(payment):
    case_id = new_case_id()
    event = cloud("BenefitApproved", one_off_benefit_data(case_id, one_off_amount_fen=300000),
                  subject=case_id, source="lifeline/verification")
    assert payment.process_cloud_event(event) is True
    assert payment.process_cloud_event(event) is False
    assert payment.is_processed(event)
    (recorded,) = stored(payment, *ENTITLEMENT_EVENTS)
    assert isinstance(recorded, Entitlement.OneOffRecorded)
    assert (recorded.one_off_amount_fen, recorded.fund_source, recorded.first_period) == (
        300000, "temporary_relief_budget", "2026-11")
    assert recorded.bank_account == BankAccount(**event.data["bank_account"])
    assert stored(payment, Entitlement.Opened) == []


def test_a_recognition_is_recorded_and_not_payable(payment):
    case_id = new_case_id()
    data = benefit_data(case_id, kind="recognition", benefit_type="low_income", tier=None,
                        monthly_amount_fen=None)
    assert payment.process_cloud_event(cloud("BenefitApproved", data, subject=case_id,
                                             source="lifeline/verification")) is True
    (recorded,) = stored(payment, *ENTITLEMENT_EVENTS)
    assert isinstance(recorded, Entitlement.RecognitionRecorded)
    entitlement = recorded.mutate(None)
    assert (entitlement.kind, entitlement.payable) == ("recognition", False)
    assert entitlement.monthly_amount_fen is None and entitlement.one_off_amount_fen is None
    assert PAYMENT_OUTBOUND(recorded) is None  # no EntitlementOpened for a recognition


def test_an_approval_recorded_before_bank_accounts_were_carried_still_opens_an_entitlement(payment):
    # BenefitApproved v1, upcast by the consumer (bank_account null): the reference still names it.
    case_id = new_case_id()
    v1 = {k: v for k, v in benefit_data(case_id).items() if k not in ("kind", "fund_source", "bank_account")}
    v1["bank_account_ref"] = "ACCT-0001"
    data = registry.upcast_data("BenefitApproved", 1, v1)
    assert payment.process_cloud_event(cloud("BenefitApproved", data, subject=case_id,
                                             source="lifeline/verification")) is True
    (opened,) = stored(payment, Entitlement.Opened)
    assert (opened.monthly_amount_fen, opened.bank_account_ref) == (206000, "ACCT-0001")


def test_payment_read_model(payment):
    case_id = new_case_id()
    payment.process_cloud_event(approved_event(case_id))
    views = rebuild(payment, payment_project)
    with views.transaction() as tx:
        (doc,) = tx.find("entitlement", case_id)
    assert doc["status"] == "active" and doc["region_code"] == VILLAGE
    assert doc["monthly_amount_fen"] == 206000 and doc["entitlement_id"] == "E-0123456789ABCDEF0123"
    assert (doc["kind"], doc["payable"], doc["one_off_amount_fen"]) == ("monthly", True, None)


# === notify =================================================================================
def refused_event(case_id: str, reason: str):
    data = {"case_id": case_id, "verification_id": "V-1", "region_code": VILLAGE, "reason": reason,
            "refusing_body": "370502101 乡镇审核确认小组", "refused_at": "2026-11-25T15:00:00+08:00"}
    return cloud("BenefitRefused", data, subject=case_id, source="lifeline/verification")


def accepted_event(case_id: str):
    return cloud("ApplicationAccepted", accepted_data(case_id, "2026-11-25T09:30:00+08:00"),
                 subject=case_id, source="lifeline/intake")


def test_acceptance_notice_once_per_case(notify):
    case_id = new_case_id()
    assert notify.process_cloud_event(submitted_event(case_id)) is True  # no notice yet: not accepted
    assert stored(notify, Notice.Issued) == []
    first = accepted_event(case_id)
    assert notify.process_cloud_event(first) is True
    assert notify.process_cloud_event(first) is False
    assert notify.process_cloud_event(accepted_event(case_id)) is True
    (notice,) = stored(notify, Notice.Issued)
    assert (notice.kind, notice.legal_name, notice.case_id) == ("acceptance", LEGAL_NAMES["acceptance"], case_id)
    assert notice.recipient_masked == "王*明" and notice.region_code == VILLAGE
    assert notice.cause_event_id == first.id and notice.issued_at == NOW.isoformat()
    out = public(notice, NOTIFY_OUTBOUND)
    text = json.dumps(out.data, ensure_ascii=False)
    assert APPLICANT_NAME not in text and not any(i in text for i in IDS)


def test_refusal_notice_carries_the_reason(notify):
    case_id = new_case_id()
    notify.process_cloud_event(accepted_event(case_id))
    reason = "家庭月人均收入不低于当地低保标准"
    refused = refused_event(case_id, reason)
    assert notify.process_cloud_event(refused) is True
    assert notify.process_cloud_event(refused_event(case_id, reason)) is True  # no second notice
    (notice,) = stored(notify, Notice.Issued)[1:]
    assert (notice.kind, notice.legal_name) == ("refusal", "不予批准决定书")
    assert reason in notice.body and "王*明" in notice.body
    assert notice.region_code == VILLAGE and notice.cause_event_id == refused.id
    public(notice, NOTIFY_OUTBOUND)


def test_refusal_notice_without_an_acceptance_notice(notify):
    case_id = new_case_id()
    notify.process_cloud_event(refused_event(case_id, "材料不实"))
    (notice,) = stored(notify, Notice.Issued)
    assert notice.recipient_masked == "申请人" and "材料不实" in notice.body
    assert notice.region_code == VILLAGE  # still visible to the village's own office
    public(notice, NOTIFY_OUTBOUND)


@pytest.mark.parametrize(("org_code", "office"), [
    (VILLAGE[:6], VILLAGE[:6]),   # the county's review group decided: the county's decision
    (VILLAGE[:9], VILLAGE[:9]),   # the township's
    ("", VILLAGE[:9]),            # a service acting on its own: the case's township
    ("370503", VILLAGE[:9]),      # an office elsewhere never signs for this case
    (VILLAGE, VILLAGE[:9]),       # a village committee issues no decisions
])
def test_a_notice_is_issued_in_the_name_of_the_office_that_decided(notify, org_code, office):
    case_id = new_case_id()
    refused = cloud("BenefitRefused", refused_event(case_id, "材料不实").data, subject=case_id,
                    source="lifeline/verification",
                    actor={"user_id": "reviewer-1", "role": "reviewer", "org_code": org_code})
    notify.process_cloud_event(refused)
    (notice,) = stored(notify, Notice.Issued)
    assert notice.issuing_office == office


def test_a_notice_stored_before_the_issuing_office_was_kept_reads_as_its_townships(notify):
    state = {"region_code": VILLAGE}
    Notice.Issued.upcast_v1_v2(state)
    assert state["issuing_office"] == VILLAGE[:9]


def change_event(case_id: str, name: str, from_period: str, reason: str, **amounts):
    data = {"case_id": case_id, "benefit_id": "B-1", "from_period": from_period, "reason": reason,
            "decided_by": "caseworker-1", "decided_at": "2026-11-25T15:00:00+08:00", **amounts}
    return cloud(name, data, subject=case_id, source="lifeline/verification")


def test_each_benefit_change_gets_its_own_adjustment_notice(notify):
    case_id = new_case_id()
    notify.process_cloud_event(accepted_event(case_id))
    adjusted = change_event(case_id, "BenefitAdjusted", "2026-12", "复核：家庭人均收入增加",
                            monthly_amount_fen=52000, previous_monthly_amount_fen=98000)
    terminated = change_event(case_id, "BenefitTerminated", "2027-06", "延退期满，家庭人均收入高于低保标准")
    for event in (adjusted, adjusted, terminated):  # a redelivery issues nothing more
        notify.process_cloud_event(event)
    first, second = stored(notify, Notice.Issued)[1:]
    assert {first.kind, second.kind} == {"adjustment"} and first.legal_name == "调整/停发告知书"
    assert (first.cause_event_id, second.cause_event_id) == (adjusted.id, terminated.id)
    assert "自2026年12月起" in first.body and "由每月980.00元调整为每月520.00元" in first.body
    assert "自2027年6月起，停止发放" in second.body and "延退期满" in second.body
    for notice in (first, second):
        assert "王*明" in notice.body and "社会救助暂行办法》第十三条" in notice.body and "行政复议" in notice.body
        assert notice.region_code == VILLAGE
        public(notice, NOTIFY_OUTBOUND)


def test_notify_read_model(notify):
    case_id = new_case_id()
    notify.process_cloud_event(accepted_event(case_id))
    notify.process_cloud_event(refused_event(case_id, "收入超标"))
    views = rebuild(notify, notify_project)
    with views.transaction() as tx:
        docs = tx.find("notice", case_id)
    assert sorted(d["kind"] for d in docs) == ["acceptance", "refusal"]
    assert all(d["delivery"] == "pending" and d["region_code"] == VILLAGE for d in docs)


# === intake =================================================================================
def test_submit_application(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    case = intake.get_case(case_id)
    assert case.status == "submitted" and case.region_code == VILLAGE
    assert isinstance(case.application, Application)
    assert (case.application.clerk_id, case.application.submitted_at) == (CLERK.user_id, NOW.isoformat())
    assert case.application.household.id_numbers == IDS
    view = case_view(case)
    assert view["members_count"] == 2 and view["version"] == 1
    (submitted,) = stored(intake, Case.Submitted)
    out = public(submitted, INTAKE_OUTBOUND)
    assert (out.name, out.subject) == ("ApplicationSubmitted", case_id)
    assert Application.from_wire(out.data) == case.application
    assert submitted.meta["user_id"] == CLERK.user_id


def test_the_account_number_is_sealed_never_stored_in_clear(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    account = intake.get_case(case_id).application.bank_account
    masked = "6228***********0001"  # first four and last four digits of the 19
    assert (account.channel, account.account_name, account.number_masked) == ("RCC", APPLICANT_NAME, masked)
    assert SEALER.unseal(account.number_sealed) == ACCOUNT_NUMBER
    assert case_view(intake.get_case(case_id))["bank_account_ref"] == f"RCC:{masked}"
    # The stored events (no cipher here): the case's and its people's index entries (persons.py).
    assert not [n for n in intake.recorder.select_notifications(1, 10) if ACCOUNT_NUMBER.encode() in n.state]
    assert ACCOUNT_NUMBER not in json.dumps(public(stored(intake)[0], INTAKE_OUTBOUND).data)


def test_submit_twice_with_the_same_case_id_is_a_duplicate(intake):
    intake.submit_application(application_body(IDS), CLERK, "C-FIXED-1")
    before = log_length(intake)  # the case and its people's index entries (persons.py)
    with pytest.raises(DuplicateRequest) as dup:
        intake.submit_application(application_body(IDS), CLERK, "C-FIXED-1")
    assert str(dup.value) == "C-FIXED-1"
    assert log_length(intake) == before


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # refused by the ApplicationSubmitted schema before anything is saved
        (application_body(IDS, members=[]), ContractError),
        (application_body(IDS[1:], members=[{**application_body(IDS)["members"][1]}]), ContractError),
        # refused by the value objects (Application, Household, Member, BankAccount)
        (application_body([pid(11)[:-1] + ("0" if pid(11)[-1] != "0" else "1")]), ValueError),
        (application_body(IDS, region_code="37050"), ValueError),
        (application_body(IDS, authorisation_signed=False), ValueError),
        (application_body(IDS, declared_monthly_income_fen=-1), ValueError),
        (application_body(IDS, bank_account={"channel": "RCC", "account_number": ACCOUNT_NUMBER,
                                             "account_name": ""}), ValueError),
        (application_body(IDS, bank_account={"channel": "XYZ", "account_number": ACCOUNT_NUMBER,
                                             "account_name": APPLICANT_NAME}), ValueError),
    ],
    ids=["no-members", "no-applicant", "check-digit", "region", "authorisation", "negative-income",
         "no-account-name", "unknown-bank"],
)
def test_invalid_application_is_refused_and_nothing_is_stored(intake, body, error):
    with pytest.raises(error):
        intake.submit_application(body, CLERK, "C-BAD-1")
    assert log_length(intake) == 0
    with pytest.raises(CaseNotFound):
        intake.get_case("C-BAD-1")


def referral_request(**overrides) -> dict:
    from datetime import date

    r = {"target": "charity", "need_category": "medical", "amount_asked_fen": 500000,
         "urgency": "urgent", "due_date": date(2026, 12, 10), "consent_to_share": True}
    r.update(overrides)
    return r


def test_referral_carries_a_masked_profile_only(intake):
    ids = [pid(21), pid(22, female=True), pid(23, female=True)]
    case_id = intake.submit_application(application_body(ids), CLERK)
    referral_id = intake.raise_referral(case_id, referral_request(), CLERK)
    (raised,) = stored(intake, Referral.Raised)
    out = public(raised, INTAKE_OUTBOUND)
    assert out.data["referral_id"] == referral_id and out.data["due_date"] == "2026-12-10"
    assert out.data["raised_at"] == NOW.isoformat()
    assert out.data["household_profile"] == {
        "region_code": VILLAGE, "members_count": 3, "name_masked": "王*明", "assistance_type": "dibao"}
    text = json.dumps(out.data, ensure_ascii=False)
    for name in ["王小明", "李红", "王乐"]:
        assert name not in text
    for number in ids:
        assert number not in text and number[:14] not in text  # not even region+birth date
    # ...and not in the stored event either.
    notification = intake.recorder.select_notifications(1, 10)[-1]  # after the case and its people's entries
    state = notification.state.decode("utf-8")
    assert not any(n in state for n in ids) and not any(name in state for name in ["王小明", "李红", "王乐"])


def test_referral_for_an_unknown_case(intake):
    with pytest.raises(CaseNotFound):
        intake.raise_referral("C-NOPE", referral_request(), CLERK)


def test_invalid_referral_stores_nothing(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    before = log_length(intake)
    with pytest.raises(ContractError):
        intake.raise_referral(case_id, referral_request(target="police"), CLERK)
    assert log_length(intake) == before


def verification_completed_event(case_id: str, outcome: str = "eligible", income: int = 0):
    data = {
        "case_id": case_id, "verification_id": "V-1", "per_capita_income_fen": income,
        "household_size": 2, "assets_summary": {"total_fen": 0, "within_limit": True}, "warnings": [],
        "outcome": outcome, "recommended_assistance_type": "dibao", "tier": "B",
        "recommended_amount_fen": 206000, "standard_applied_fen": 103000,
        "departments_answered": ["hrss"], "departments_missing": [],
        "completed_at": "2026-11-25T11:00:00+08:00",
    }
    return cloud("VerificationCompleted", data, subject=case_id, source="lifeline/verification")


def test_case_follows_verification_and_decision(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    verified = verification_completed_event(case_id, income=1234)
    assert intake.process_cloud_event(verified) is True
    assert intake.process_cloud_event(verified) is False
    case = intake.get_case(case_id)
    assert (case.status, case.verification_outcome, case.per_capita_income_fen) == ("verified", "eligible", 1234)
    assert intake.process_cloud_event(approved_event(case_id, "B-X1")) is True
    case = intake.get_case(case_id)
    assert (case.status, case.benefit_id, case.decision_reason) == ("approved", "B-X1", "符合条件")


def test_case_status_does_not_move_back_when_verification_arrives_late(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    intake.process_cloud_event(approved_event(case_id, "B-X2"))
    intake.process_cloud_event(verification_completed_event(case_id))  # late
    case = intake.get_case(case_id)
    assert case.status == "approved" and case.verification_outcome == "eligible"
    views = rebuild(intake, intake_project)
    with views.transaction() as tx:
        doc = tx.get("case", case_id)
    assert doc["status"] == "approved" and doc["verification_outcome"] == "eligible"


def test_refusal_reaches_the_case(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    intake.process_cloud_event(verification_completed_event(case_id, "ineligible", 500000))
    intake.process_cloud_event(refused_event(case_id, "收入超标"))
    case = intake.get_case(case_id)
    assert (case.status, case.decision_reason, case.benefit_id) == ("refused", "收入超标", None)


def test_intake_read_model(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    other = intake.submit_application(application_body([pid(31)], region_code="370502102001"), CLERK)
    intake.raise_referral(case_id, referral_request(), CLERK)
    intake.process_cloud_event(verification_completed_event(case_id))
    views = rebuild(intake, intake_project)
    with views.transaction() as tx:
        doc = tx.get("case", case_id)
        assert (doc["status"], doc["verification_outcome"], doc["region_code"]) == ("verified", "eligible", VILLAGE)
        assert [d["case_id"] for d in tx.find("case", VILLAGE)] == [case_id]
        assert [d["case_id"] for d in tx.find("case", "370502102001")] == [other]
        (ref,) = tx.find("referral", case_id)
    assert (ref["target"], ref["status"], ref["due_date"]) == ("charity", "raised", "2026-12-10")


# === charity ================================================================================
def fund_details(**overrides) -> dict:
    d = {"name": "东营区救急难专项基金", "kind": "special", "need_categories": ["medical"],
         "region_code": "370502", "balance_fen": 100_000_000, "per_case_cap_fen": 500_000,
         "valid_until": None}
    d.update(overrides)
    return d


def referral_event(case_id: str, referral_id: str, target: str = "charity"):
    data = {
        "referral_id": referral_id, "case_id": case_id, "target": target, "need_category": "medical",
        "amount_asked_fen": 500000, "urgency": "urgent", "due_date": "2026-12-10",
        "consent_to_share": True,
        "household_profile": {"region_code": VILLAGE, "members_count": 2, "name_masked": "王*明",
                              "assistance_type": "dibao"},
        "raised_at": "2026-11-25T09:00:00+08:00",
    }
    return cloud("ReferralRaised", data, subject=case_id, source="lifeline/intake")


def test_register_fund_once(charity):
    meta = Meta("cf-1", "charity_federation", "370502")
    fund_id = charity.register_fund(fund_details(), meta, "F-1")
    assert charity.register_fund(fund_details(balance_fen=1), meta, "F-1") == "F-1"  # retried
    fund = charity.get_fund(fund_id)
    assert fund.balance_fen == 100_000_000 and fund.region_code == "370502"
    assert log_length(charity) == 1
    with pytest.raises(FundNotFound):
        charity.get_fund("F-NOPE")


def test_invalid_fund_is_refused(charity):
    with pytest.raises(ValueError):  # the aggregate refuses it (issue 12), before any contract check
        charity.register_fund(fund_details(kind="lottery"), Meta("cf-1", "charity_federation"))
    assert log_length(charity) == 0


def test_charity_referral_opens_one_need(charity):
    case_id = new_case_id()
    first = referral_event(case_id, "R-ABCDEF")
    assert charity.process_cloud_event(first) is True
    assert charity.process_cloud_event(first) is False
    assert charity.process_cloud_event(referral_event(case_id, "R-ABCDEF")) is True
    (need,) = stored(charity, Need.Opened)
    assert (need.need_id, need.referral_id, need.region_code) == ("N-ABCDEF", "R-ABCDEF", VILLAGE)
    assert need.opened_at == NOW.isoformat()
    public(need, CHARITY_OUTBOUND)


def test_department_referral_opens_no_need(charity):
    event = referral_event(new_case_id(), "R-HRSS01", target="hrss")
    assert charity.process_cloud_event(event) is True
    assert log_length(charity) == 0


def test_charity_read_model(charity):
    case_id = new_case_id()
    charity.register_fund(fund_details(), Meta("cf-1", "charity_federation"), "F-9")
    charity.process_cloud_event(referral_event(case_id, "R-READ01"))
    views = rebuild(charity, charity_project)
    with views.transaction() as tx:
        (need,) = tx.find("need", case_id)
        (fund,) = tx.find("fund", "370502")
    assert need["status"] == "open" and need["need_id"] == "N-READ01"
    assert fund["fund_id"] == "F-9"


# === one case through the services, in one process ===========================================
def as_consumed(event, outbound, source: str, sequence: int):
    """What a consumer receives for a stored domain event (the relay's envelope, minimally)."""
    out = outbound(event)
    return cloud(out.name, out.data, subject=out.subject, source=source, sequence=sequence)


def test_one_case_through_intake_verification_payment_and_notify(intake, verification, payment, notify):
    intake.clock.set(NOW - timedelta(days=14))  # accepted two weeks before the decision
    case_id = intake.submit_application(application_body(IDS), CLERK)
    intake.decide_acceptance(case_id, "accept", "材料齐全", None, CLERK)
    (submitted,) = stored(intake, Case.Submitted)
    (accepted,) = stored(intake, Case.Accepted)
    for n, event in enumerate((submitted, accepted), start=1):
        consumed = as_consumed(event, INTAKE_OUTBOUND, "lifeline/intake", n)
        verification.process_cloud_event(consumed)
        notify.process_cloud_event(consumed)
    answer(verification, case_id)
    decide(verification, case_id, "approve", "符合条件", REVIEWER)
    for n, event in enumerate(stored(verification, Verification.Completed, Verification.Approved), start=1):
        published = as_consumed(event, VERIFICATION_OUTBOUND, "lifeline/verification", 100 + n)
        intake.process_cloud_event(published)
        payment.process_cloud_event(published)
        notify.process_cloud_event(published)
    case = intake.get_case(case_id)
    assert case.status == "approved"
    (entitlement,) = stored(payment, Entitlement.Opened)
    assert entitlement.benefit_id == case.benefit_id
    # The account the clerk registered is the one payment pays into.
    assert entitlement.bank_account_ref == case.application.bank_account.ref
    assert [n.kind for n in stored(notify, Notice.Issued)] == ["acceptance"]


def test_no_file_is_written(tmp_path, monkeypatch):
    # In-memory stores leave nothing behind in the working directory.
    monkeypatch.chdir(tmp_path)
    app = make(IntakeApplication)
    app.submit_application(application_body(IDS), CLERK)
    app.close()
    assert list(Path(tmp_path).iterdir()) == []


def test_the_decision_uses_the_policy_in_force_on_the_decision_date(verification):
    import copy
    from datetime import date

    import yaml

    from lifeline.settings import DEFAULT_POLICY_FILE

    case_id = new_case_id()
    start(verification, case_id)
    answer(verification, case_id, income=20000)
    checked = verification.get_verification(case_id).assessment
    members = checked["household_size"]

    # The county raises its urban standard from 1 December; the check was completed in November.
    data = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    in_force = verification.policies.policy_for("370502", NOW.date())
    raised = copy.deepcopy(next(c for c in data["counties"] if c["county_code"] == "370502"
                                and str(c["effective_from"]) == in_force.effective_from.isoformat()))
    raised["effective_from"] = date(2026, 12, 1)
    raised["standards"]["urban_fen"] += 10000
    data["counties"].append(raised)
    verification.policies.replace(data)
    assert verification.get_verification(case_id).assessment == checked  # the record stands

    verification.clock.set("2026-12-01T09:00:00+08:00")  # the review group decides in December
    benefit = decide(verification, case_id, "approve", "ok", REVIEWER)
    assert benefit["monthly_amount_fen"] == checked["monthly_amount_fen"] + 10000 * members
    assert benefit["first_period"] == "2027-01"
    (approved,) = stored(verification, Verification.Approved)
    assert approved.assessment["standard_applied_fen"] == checked["standard_applied_fen"] + 10000


# === benefits of each kind, from the decision to payment ======================================
def approve_and_publish(verification, payment, case_id: str, by: Meta = REVIEWER, *, times: int = 1) -> dict:
    """Decide, then deliver the published BenefitApproved to payment: the same CloudEvent twice
    (a redelivery) and `times` CloudEvents in all (the approval republished)."""
    view = decide(verification, case_id, "approve", "符合条件", by)
    (approved,) = stored(verification, Verification.Approved)
    for n in range(times):
        event = as_consumed(approved, VERIFICATION_OUTBOUND, "lifeline/verification", 500 + n)
        assert payment.process_cloud_event(event) is True
        assert payment.process_cloud_event(event) is False
    return view


def test_emergency_relief_is_one_off_and_payment_records_it_once(verification, payment):
    case_id = new_case_id()
    start(verification, case_id, assistance_type="linshi_jinan", requested_amount_fen=200000)
    answer(verification, case_id)
    assert verification.get_verification(case_id).assessment["outcome"] == "eligible"
    view = approve_and_publish(verification, payment, case_id, times=2)
    assert (view["kind"], view["benefit_type"], view["tier"]) == ("one_off", "linshi_jinan", None)
    assert (view["one_off_amount_fen"], view["monthly_amount_fen"]) == (200000, None)
    assert view["fund_source"] == "temporary_relief_budget"
    assert view["first_period"] == "2026-11"  # paid in the month it is granted
    assert view["approval_level"] == "township"  # within the township's cap

    (recorded,) = stored(payment, *ENTITLEMENT_EVENTS)  # one entitlement however often the approval came
    assert isinstance(recorded, Entitlement.OneOffRecorded)
    assert (recorded.case_id, recorded.benefit_id, recorded.one_off_amount_fen) == (
        case_id, view["benefit_id"], 200000)
    assert (recorded.fund_source, recorded.first_period) == ("temporary_relief_budget", "2026-11")
    account = verification.get_verification(case_id).application.bank_account
    assert recorded.bank_account == account
    assert SEALER.unseal(recorded.bank_account.number_sealed) == ACCOUNT_NUMBER  # for the bank file
    entitlement = recorded.mutate(None)
    assert (entitlement.kind, entitlement.payable) == ("one_off", True)
    views = rebuild(payment, payment_project)
    with views.transaction() as tx:
        (doc,) = tx.find("entitlement", case_id)
    assert (doc["kind"], doc["payable"], doc["one_off_amount_fen"], doc["monthly_amount_fen"]) == (
        "one_off", True, 200000, None)


def test_one_off_relief_above_the_township_cap_is_approved_by_the_county(verification, payment):
    cap = policy_on().emergency.township_cap_fen
    case_id = new_case_id()
    start(verification, case_id, assistance_type="linshi_jinan", requested_amount_fen=cap + 100)
    answer(verification, case_id)
    prepare(verification, case_id)
    before = log_length(verification)
    with pytest.raises(NotPermitted, match="county"):
        decide(verification, case_id, "approve", "符合条件", REVIEWER)
    assert log_length(verification) == before
    assert verification.get_verification(case_id).state == "completed"

    view = approve_and_publish(verification, payment, case_id, COUNTY_OFFICER)
    assert (view["kind"], view["one_off_amount_fen"]) == ("one_off", cap + 100)
    assert (view["approval_level"], view["approving_body"]) == ("county", COUNTY_OFFICER.org_code)
    (approved,) = stored(verification, Verification.Approved)
    assert approved.meta["role"] == "county_officer"
    (recorded,) = stored(payment, Entitlement.OneOffRecorded)
    assert recorded.one_off_amount_fen == cap + 100


def test_one_off_relief_at_the_township_cap_is_approved_by_the_township(verification):
    cap = policy_on().emergency.township_cap_fen
    case_id = new_case_id()
    start(verification, case_id, assistance_type="linshi_jinan", requested_amount_fen=cap)
    answer(verification, case_id)
    view = decide(verification, case_id, "approve", "符合条件", REVIEWER)
    assert (view["one_off_amount_fen"], view["approval_level"]) == (cap, "township")


def test_a_low_income_household_is_recognised_without_money(verification, payment):
    case_id = new_case_id()
    start(verification, case_id, assistance_type="low_income")
    answer(verification, case_id, income=120000)  # above the standard, within the low-income line
    v = verification.get_verification(case_id)
    assert (v.assessment["outcome"], v.assessment["recommended_assistance_type"]) == ("eligible", "low_income")
    view = approve_and_publish(verification, payment, case_id, times=2)
    assert (view["kind"], view["benefit_type"], view["tier"]) == ("recognition", "low_income", None)
    assert view["monthly_amount_fen"] is None and view["one_off_amount_fen"] is None
    assert view["fund_source"] is None

    (recorded,) = stored(payment, *ENTITLEMENT_EVENTS)
    assert isinstance(recorded, Entitlement.RecognitionRecorded)
    entitlement = recorded.mutate(None)
    assert (entitlement.kind, entitlement.payable) == ("recognition", False)
    assert entitlement.monthly_amount_fen is None and entitlement.one_off_amount_fen is None
    assert PAYMENT_OUTBOUND(recorded) is None  # nothing to pay: no EntitlementOpened
    views = rebuild(payment, payment_project)
    with views.transaction() as tx:
        (doc,) = tx.find("entitlement", case_id)
    assert (doc["kind"], doc["payable"]) == ("recognition", False)


@pytest.mark.parametrize(
    ("decided_at", "first_period"),
    [
        ("2026-12-31T23:59:59+08:00", "2027-01"),  # the last second of December in Beijing
        ("2026-12-31T15:59:59+00:00", "2027-01"),  # the same moment, read in Asia/Shanghai
        ("2027-01-01T00:00:00+08:00", "2027-02"),
    ],
)
def test_a_monthly_benefit_is_paid_from_the_month_after_the_decision(decided_at, first_period):
    verification = make(VerificationApplication, FixedClock("2026-12-31T10:00:00+08:00"),
                        policies=PolicyHolder(shipped_policy_book()))
    try:
        case_id = new_case_id()
        start(verification, case_id)
        answer(verification, case_id)
        verification.clock.set(decided_at)
        view = decide(verification, case_id, "approve", "符合条件", REVIEWER)
        assert (view["kind"], view["first_period"]) == ("monthly", first_period)
        assert view["approved_at"] == datetime.fromisoformat(decided_at).astimezone(SHANGHAI).isoformat()
    finally:
        verification.close()


def test_expenditure_relief_also_asks_the_medical_and_education_departments(verification):
    case_id = new_case_id()
    start(verification, case_id, assistance_type="linshi_zhichu", declared_medical_expense_fen=80000)
    policy = policy_on()
    extra = [d for d in policy.expenditure_departments if d not in policy.mandatory_departments]
    assert sorted(extra) == ["education", "medical_insurance"]
    v = verification.get_verification(case_id)
    assert sorted(v.requests) == sorted([*mandatory_departments(), *extra])
    requested = stored(verification, Verification.Requested)
    assert sorted(e.department for e in requested) == sorted(v.requests)
    assert [(t, k) for e in requested if e.department in extra
            for t, k, _ in to_cloud_events("verification", 1, e, VERIFICATION_OUTBOUND)] == [
        (T.PARTNER_REQUESTS, e.department) for e in requested if e.department in extra]

    # The mandatory departments alone do not complete it: the expenditure departments are awaited.
    answer(verification, case_id, skip=extra)
    assert verification.get_verification(case_id).state == "requested"
    answer(verification, case_id, skip=mandatory_departments())
    v = verification.get_verification(case_id)
    assert v.state == "completed" and v.assessment["departments_missing"] == []
    assert sorted(v.assessment["departments_answered"]) == sorted(v.requests)


def test_a_dibao_application_does_not_ask_the_expenditure_departments(verification):
    case_id = new_case_id()
    start(verification, case_id)
    assert not {"medical_insurance", "education"} & set(verification.get_verification(case_id).requests)


# === events stored before the restructuring ==================================================
def test_a_case_stored_before_v3_is_still_served_and_followed(intake):
    # Case.Submitted v1 stored the ApplicationSubmitted v2 payload as a plain dict.
    case_id = new_case_id()
    old = submitted_data(case_id, IDS)
    for name in ("declared_medical_expense_fen", "declared_education_expense_fen",
                 "requested_amount_fen", "single_person_member_id", "bank_account"):
        del old[name]
    old["members"] = [{k: m[k] for k in ("id_number", "name", "relation", "disability_grade",
                                          "disability_kind", "serious_illness", "work_ability")}
                      for m in old["members"]]
    old["bank_account_ref"] = "ACCT-0001"
    row = old_stored_event(intake.mapper, Case.Submitted, Case.create_id(case_id), 1,
                           timestamp=datetime(2026, 11, 1, tzinfo=SHANGHAI),
                           originator_topic=get_topic(Case), case_id=case_id, application=old,
                           meta=SYSTEM_META)
    intake.recorder.insert_events([row])

    case = intake.get_case(case_id)
    assert isinstance(case.application, Application) and case.application.bank_account is None
    assert case.application.household.id_numbers == IDS
    assert case_view(case)["members_count"] == 2
    assert intake.process_cloud_event(verification_completed_event(case_id)) is True
    assert intake.get_case(case_id).status == "verified"
    # A relay catching up publishes it at the current version.
    (submitted,) = stored(intake, Case.Submitted)
    public(submitted, INTAKE_OUTBOUND)
