"""The services' aggregates on their own: events triggered, state after them, rules that refuse,
every public event's wire form (through its service's outbound mapping) against its JSON
schema, and events stored by earlier class versions read back through their upcasters."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import datetime, timezone

import pytest
from eventsourcing.utils import get_topic
from jsonschema import Draft202012Validator

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.domain.aggregate import Meta, aggregate_id
from lifeline.domain.values import Application, BankAccount, Benefit, HouseholdProfile, Refusal, mask_name
from lifeline.messaging.outbox import to_cloud_events
from lifeline.rules.periods import SHANGHAI
from services.charity.domain import Fund, Need, NeedRuleViolation
from services.charity.outbound import OUTBOUND as CHARITY_OUTBOUND
from services.intake.domain import CASE_STATUSES, Case, Referral, later_status
from services.intake.outbound import OUTBOUND as INTAKE_OUTBOUND
from services.notify.domain import LEGAL_NAMES, Notice, acceptance_text, refusal_text
from services.notify.outbound import OUTBOUND as NOTIFY_OUTBOUND
from services.payment.domain import Entitlement
from services.payment.outbound import OUTBOUND as PAYMENT_OUTBOUND
from services.verification.application import assessment_record
from services.verification.assessment import assess
from services.verification.domain import DecisionNotAllowed, NotPermitted, Verification
from services.verification.outbound import OUTBOUND as VERIFICATION_OUTBOUND
from lifeline.rules.policy import shipped_policy_book
from tests.unit.contract_examples import APPLICATION_SUBMITTED_V4, APPLICATION_SUBMITTED_V4_AS_CURRENT

from . import (
    ACCOUNT_NUMBER,
    COUNTY_OFFICER,
    MEMBER_DEFAULTS,
    REVIEWER,
    SEALER,
    SYSTEM,
    SYSTEM_META,
    TOWNSHIP,
    VILLAGE,
    application,
    event_mapper,
    old_stored_event,
    pid,
    ready_to_decide,
    replay,
    sealed_account,
    submitted_data,
)

CASE_ID = "C-DOMAIN0000000000001"
IDS = [pid(1), pid(2, female=True)]

OUTBOUNDS = {
    "intake": INTAKE_OUTBOUND, "verification": VERIFICATION_OUTBOUND, "payment": PAYMENT_OUTBOUND,
    "charity": CHARITY_OUTBOUND, "notify": NOTIFY_OUTBOUND,
}

# The moments the use cases would read from their clock.
ACCEPTED_AT = datetime(2026, 11, 10, 9, 0, tzinfo=SHANGHAI)  # the steps before a decision take time
REQUESTED_AT = datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI)
DUE_AT = datetime(2026, 11, 28, 23, 59, 59, tzinfo=SHANGHAI)
COMPLETED_AT = datetime(2026, 11, 25, 11, 0, tzinfo=SHANGHAI)
DECIDED_AT = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
STORED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)  # timestamp of an old stored event


def wire(event, service: str):
    """The event's public form by its service's outbound mapping, checked against its schema."""
    out = OUTBOUNDS[service](event)
    assert out is not None, f"{type(event).__name__} is not public"
    registry.validate_data(out.name, out.data)
    return out


def routes(event, service: str) -> list[tuple[str, str]]:
    """(topic, key) of every record the outbox relay publishes for a stored event."""
    return [(topic, key) for topic, key, _ in to_cloud_events(service, 1, event, OUTBOUNDS[service])]


def valid_at(name: str, version: int, data: dict) -> dict:
    """Data honouring an earlier version of a contract (what an old event stored)."""
    Draft202012Validator(registry.schema(name, version), format_checker=registry.FORMAT_CHECKER).validate(data)
    return data


def read_back(mapper, event_class: type, originator_id: uuid.UUID, version: int, **state):
    """An event read back from a row that an earlier class version of it wrote."""
    return mapper.to_domain_event(old_stored_event(mapper, event_class, originator_id, version, **state))


def application_v2_payload(case_id: str, ids: list[str]) -> dict:
    """An application as ApplicationSubmitted v2 carried it, and as Case.Submitted and
    Verification.Started v1 stored it (before v3's additions)."""
    data = submitted_data(case_id, ids)
    for name in ("declared_medical_expense_fen", "declared_education_expense_fen",
                 "requested_amount_fen", "single_person_member_id", "bank_account", "contact"):
        del data[name]
    data["members"] = [{k: v for k, v in m.items() if k not in MEMBER_DEFAULTS} for m in data["members"]]
    data["bank_account_ref"] = "ACCT-0001"
    return valid_at("ApplicationSubmitted", 2, data)


# --- intake: Case -------------------------------------------------------------------------
def new_case(**overrides) -> Case:
    return Case.register(application(CASE_ID, IDS, **overrides), SYSTEM)


def test_case_submitted_state_and_wire_form():
    case = new_case()
    (event,) = case.collect_events()
    assert isinstance(event, Case.Submitted)
    assert case.id == Case.create_id(CASE_ID) == aggregate_id("case", CASE_ID)
    assert (case.status, case.region_code, case.version) == ("submitted", VILLAGE, 1)
    assert case.verification_outcome is None and case.benefit_id is None
    assert event.meta == SYSTEM_META
    out = wire(event, "intake")
    assert (out.name, out.subject) == ("ApplicationSubmitted", CASE_ID)
    assert out.data["members"][0]["id_number"] == IDS[0]
    assert Application.from_wire(out.data) == case.application == replay([event]).application
    # The account number travels sealed and masked, never in clear.
    assert ACCOUNT_NUMBER not in json.dumps(out.data)
    account = out.data["bank_account"]
    assert account["number_masked"] == "6228" + "*" * (len(ACCOUNT_NUMBER) - 8) + "0001"
    assert SEALER.unseal(account["number_sealed"]) == ACCOUNT_NUMBER
    assert out.data["bank_account_ref"] == f"RCC:{account['number_masked']}"


def test_case_verification_then_approval():
    case = new_case()
    case.note_verification("eligible", 12300, SYSTEM)
    case.note_decision("approved", "B-1", "符合条件", SYSTEM)
    events = case.collect_events()
    assert [type(e) for e in events] == [Case.Submitted, Case.VerificationNoted, Case.BenefitDecided]
    for c in (case, replay(events)):
        assert c.status == "approved"
        assert (c.verification_outcome, c.per_capita_income_fen) == ("eligible", 12300)
        assert (c.benefit_id, c.decision_reason) == ("B-1", "符合条件")
        assert c.version == 3
    # Internal events do not go on the wire.
    assert INTAKE_OUTBOUND(events[1]) is None and INTAKE_OUTBOUND(events[2]) is None
    assert routes(events[1], "intake") == [] and routes(events[2], "intake") == []


def test_case_status_never_moves_back_when_events_arrive_late():
    case = new_case()
    case.note_decision("approved", "B-1", "ok", SYSTEM)
    case.note_verification("needs_appraisal", 0, SYSTEM)  # late
    assert case.status == "approved"
    assert case.verification_outcome == "needs_appraisal"  # the fact is still recorded
    assert replay(case.collect_events()).status == "approved"


def test_case_refusal_keeps_earlier_benefit_id_empty_and_records_reason():
    case = new_case()
    case.note_verification("ineligible", 500000, SYSTEM)
    case.note_decision("refused", "", "收入超过标准", SYSTEM)
    assert (case.status, case.benefit_id, case.decision_reason) == ("refused", None, "收入超过标准")


def test_case_refuses_an_unknown_decision():
    case = new_case()
    with pytest.raises(ValueError):
        case.note_decision("maybe", "", "", SYSTEM)
    assert len(case.collect_events()) == 1


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        ("submitted", "verified", "verified"),
        ("verified", "submitted", "verified"),
        ("approved", "verified", "approved"),
        ("refused", "verified", "refused"),
        ("verified", "approved", "approved"),
        ("approved", "approved", "approved"),
    ],
)
def test_later_status(current, new, expected):
    assert later_status(current, new) == expected
    assert CASE_STATUSES.index(later_status(current, new)) >= CASE_STATUSES.index(current)


def test_a_case_stored_before_v3_still_loads():
    # Case.Submitted v1 stored the ApplicationSubmitted v2 payload as a plain dict.
    mapper = event_mapper()
    old = application_v2_payload(CASE_ID, IDS)
    event = read_back(mapper, Case.Submitted, Case.create_id(CASE_ID), 1, timestamp=STORED_AT,
                      originator_topic=get_topic(Case), case_id=CASE_ID, application=old,
                      meta=SYSTEM_META)
    assert isinstance(event, Case.Submitted)
    case = event.mutate(None)
    app = case.application
    assert isinstance(app, Application)
    assert (case.case_id, case.status, case.region_code) == (CASE_ID, "submitted", VILLAGE)
    assert app.household.id_numbers == IDS and app.clerk_id == old["clerk_id"]
    # What v2 did not know is read with v3's defaults.
    assert all(m.co_resident and not m.support_obligor and m.support_paid_fen == 0
               for m in app.household.members)
    assert app.household.requested_amount_fen == 0 and app.household.single_person_member_id is None
    assert app.bank_account is None
    # It still publishes a valid ApplicationSubmitted (current version) and takes new events.
    out = wire(event, "intake")
    assert out.data["members"][0]["name"] == old["members"][0]["name"]
    case.note_verification("eligible", 0, SYSTEM)
    assert case.status == "verified"


# --- intake: Referral ----------------------------------------------------------------------
def raise_referral(case: Case) -> Referral:
    return Referral.raise_for(
        case, "R-1", "charity", "medical", 500000, "urgent", "2026-12-10", True,
        "2026-11-25T09:00:00+08:00", SYSTEM,
    )


def test_referral_raised_goes_to_the_referral_feed_masked():
    referral = raise_referral(new_case())
    (event,) = referral.collect_events()
    assert referral.id == Referral.create_id("R-1") == aggregate_id("referral", "R-1")
    assert (referral.referral_id, referral.case_id, referral.target) == ("R-1", CASE_ID, "charity")
    assert (event.target, event.need_category, event.amount_asked_fen, event.urgency) == (
        "charity", "medical", 500000, "urgent")
    assert (event.due_date, event.consent_to_share, event.raised_at) == (
        "2026-12-10", True, "2026-11-25T09:00:00+08:00")
    assert event.household_profile == HouseholdProfile(
        region_code=VILLAGE, members_count=2, name_masked="王*明", assistance_type="dibao")
    out = wire(event, "intake")
    assert out.name == "ReferralRaised" and out.subject == CASE_ID
    assert routes(event, "intake") == [(T.TOPICS["intake"], CASE_ID), (T.REFERRALS, CASE_ID)]
    assert out.data["household_profile"] == {
        "region_code": VILLAGE, "members_count": 2, "name_masked": "王*明", "assistance_type": "dibao"}
    text = json.dumps(out.data, ensure_ascii=False)
    assert "王小明" not in text and not any(i in text for i in IDS)


def test_a_referral_stored_with_details_still_loads():
    # Referral.Raised v1 kept the referral's fields in one `details` dict.
    details = {
        "target": "charity", "need_category": "medical", "amount_asked_fen": 500000,
        "urgency": "urgent", "due_date": "2026-12-10", "consent_to_share": True,
        "household_profile": {"region_code": VILLAGE, "members_count": 2,
                              "name_masked": mask_name("王小明"), "assistance_type": "dibao"},
        "raised_at": "2026-11-25T09:00:00+08:00",
    }
    event = read_back(event_mapper(), Referral.Raised, Referral.create_id("R-1"), 1,
                      timestamp=STORED_AT, originator_topic=get_topic(Referral), referral_id="R-1",
                      case_id=CASE_ID, details=details, meta=SYSTEM_META)
    referral = event.mutate(None)
    assert (referral.referral_id, referral.case_id, referral.target, referral.status) == (
        "R-1", CASE_ID, "charity", "raised")
    assert not hasattr(event, "details")
    out = wire(event, "intake")
    assert out.data == {"referral_id": "R-1", "case_id": CASE_ID, **details}


# --- mask_name ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三丰", "张*丰"), ("张三", "张*"), ("张", "张*"), ("欧阳娜娜", "欧**娜"), ("买买提·艾力", "买****力")],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked
    # What the referral schema accepts as a masked name.
    assert re.fullmatch(r"[^*]{1,2}\*+[^*]?", masked)
    assert name[1:] not in masked or len(name) == 1


# --- BankAccount.mask -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("622848001234", "6228****1234"),                    # 12 digits, the shortest taken: 4 + 4 + 4
        ("6228480012345670001", "6228***********0001"),
        ("6217990012345678888", "6217***********8888"),
        ("1" * 30, "1111" + "*" * 22 + "1111"),               # 30 digits, the longest taken
        ("12345678901", "*******8901"),                       # shorter (never taken): last four only
        ("12345", "****2345"),
    ],
)
def test_an_account_number_is_masked_to_its_first_and_last_four_digits(number, masked):
    assert BankAccount.mask(number) == masked
    # Every digit between the first and last four is hidden; what the schemas accept.
    assert sum(c.isdigit() for c in masked) <= 8 and masked.count("*") >= 4
    assert re.fullmatch(registry.schema("ApplicationSubmitted")["$defs"]["bank_account"]["properties"]
                        ["number_masked"]["pattern"].replace("$", r"\Z"), masked)
    account = BankAccount("RCC", "王小明", masked, "c2VhbGVk" * 4)
    assert account.ref == f"RCC:{masked}"


@pytest.mark.parametrize("shown", ["6228480012345670001", "62284***********0001", "6228***0001", "", "6228-****-0001"])
def test_an_account_never_holds_a_number_showing_more(shown):
    with pytest.raises(ValueError, match="number_masked") as error:
        BankAccount("RCC", "王小明", shown, "c2VhbGVk" * 4)
    assert not shown or shown not in str(error.value)


def test_an_account_masked_before_v5_is_published_again_as_it_was():
    """A stored application whose account was masked to its last four digits (before
    ApplicationSubmitted v5) loads, and a relay catching up publishes it as the current version
    with that masked number: the first four digits were never recorded."""
    app = Application.from_wire(APPLICATION_SUBMITTED_V4)
    assert app.bank_account.number_masked == "***************0001"
    data = app.to_wire()
    registry.validate_data("ApplicationSubmitted", data)
    assert data == APPLICATION_SUBMITTED_V4_AS_CURRENT  # and nobody's mobile number (v6)


# --- verification: Verification ------------------------------------------------------------
POLICY = shipped_policy_book().policy_for("370502", DECIDED_AT.date())
DEPARTMENTS = list(POLICY.mandatory_departments)


def new_verification(requested: list[str] = DEPARTMENTS, **application_overrides) -> Verification:
    v = Verification.open(application(CASE_ID, IDS, **application_overrides), "V-1", SYSTEM)
    v.accept(ACCEPTED_AT, SYSTEM)
    for i, dept in enumerate(requested):
        v.request(dept, f"Q-{i}", REQUESTED_AT, DUE_AT, SYSTEM)
    return v


def rows(department: str = "hrss", income: int = 0) -> list[dict]:
    """A department's rows; income (per person) is reported by hrss only."""
    return [{"id_number": i, "monthly_income_fen": income if department == "hrss" else 0} for i in IDS]


def answer_all(v: Verification, income: int = 0) -> None:
    for dept, request_id in list(v.requests.items()):
        assert v.receive(dept, request_id, rows(dept, income), "2026-11-25T10:00:00+08:00", SYSTEM)


def an_assessment(v: Verification):
    return assess(v.application.household, v.records, POLICY, DECIDED_AT)


def completed(income: int = 0, **application_overrides) -> Verification:
    v = new_verification(**application_overrides)
    answer_all(v, income)
    v.complete(assessment_record(an_assessment(v)), COMPLETED_AT, SYSTEM)
    return v


def decide(v: Verification, by: Meta = REVIEWER, reason: str = "符合条件") -> Benefit:
    """Approve at DECIDED_AT, the procedure's steps done before (survey, review, notice)."""
    if v.state == "completed" and v.proposal is None:
        ready_to_decide(v, DECIDED_AT)
    result = an_assessment(v)
    return v.decide(result, assessment_record(result), DECIDED_AT, by, reason)


def refuse(v: Verification, reason: str, by: Meta = REVIEWER) -> Refusal:
    """Refuse at DECIDED_AT, the survey and a proposal to refuse recorded before."""
    if v.state == "completed" and v.proposal is None:
        ready_to_decide(v, DECIDED_AT, "refuse")
    return v.refuse(DECIDED_AT, by, reason)


def test_verification_requests_one_per_department_and_each_validates():
    v = new_verification()
    events = v.collect_events()
    assert isinstance(events[0], Verification.Started) and VERIFICATION_OUTBOUND(events[0]) is None
    assert v.id == Verification.create_id(CASE_ID) and v.region_code == VILLAGE
    assert v.application.household == application(CASE_ID, IDS).household
    assert isinstance(events[1], Verification.Accepted) and VERIFICATION_OUTBOUND(events[1]) is None
    requested = events[2:]
    assert [e.department for e in requested] == DEPARTMENTS
    assert v.requests == {d: f"Q-{i}" for i, d in enumerate(DEPARTMENTS)}
    assert v.state == "requested" and v.departments_missing == DEPARTMENTS
    for e in requested:
        out = wire(e, "verification")
        assert out.name == "VerificationRequested"
        assert routes(e, "verification") == [(T.PARTNER_REQUESTS, e.department)]
        assert out.data["id_numbers"] == IDS
        assert (out.data["requested_at"], out.data["due_at"]) == (REQUESTED_AT.isoformat(), DUE_AT.isoformat())
    assert replay(events).requests == v.requests


def test_a_department_is_requested_once():
    v = new_verification()
    v.request("hrss", "Q-AGAIN", REQUESTED_AT, DUE_AT, SYSTEM)
    assert v.requests["hrss"] == f"Q-{DEPARTMENTS.index('hrss')}"
    assert len(v.collect_events()) == 2 + len(DEPARTMENTS)  # opened, accepted, the requests


def test_verification_records_and_completion():
    v = new_verification()
    answer_all(v)
    assert v.departments_missing == []
    v.complete(assessment_record(an_assessment(v)), COMPLETED_AT, SYSTEM)
    events = v.collect_events()
    assert sum(isinstance(e, Verification.RecordsReceived) for e in events) == len(DEPARTMENTS)
    assert all(VERIFICATION_OUTBOUND(e) is None for e in events if isinstance(e, Verification.RecordsReceived))
    completed_event = events[-1]
    assert isinstance(completed_event, Verification.Completed)
    assert v.state == "completed" and v.assessment["outcome"] == "eligible"
    out = wire(completed_event, "verification")
    assert out.name == "VerificationCompleted" and out.data["completed_at"] == COMPLETED_AT.isoformat()
    assert out.data["departments_missing"] == [] and sorted(out.data["departments_answered"]) == sorted(DEPARTMENTS)
    rebuilt = replay(events)
    assert (rebuilt.state, rebuilt.assessment, rebuilt.records) == (v.state, v.assessment, v.records)


def test_answer_to_another_request_is_ignored():
    v = new_verification()
    assert v.receive("hrss", "Q-not-ours", rows(), "2026-11-25T10:00:00+08:00", SYSTEM) is False
    assert v.receive("health", "Q-0", rows(), "2026-11-25T10:00:00+08:00", SYSTEM) is False  # not asked
    assert "hrss" not in v.records and "health" not in v.records
    assert not any(isinstance(e, Verification.RecordsReceived) for e in v.collect_events())


def test_a_second_answer_is_ignored_the_first_stands():
    v = new_verification()
    q = v.requests["hrss"]
    first = [{"id_number": IDS[0], "monthly_income_fen": 100}]
    assert v.receive("hrss", q, first, "2026-11-25T10:00:00+08:00", SYSTEM) is True
    assert v.receive("hrss", q, [{"id_number": IDS[0], "monthly_income_fen": 999}],
                     "2026-11-25T10:05:00+08:00", SYSTEM) is False
    assert list(v.records["hrss"].members) == first
    assert sum(isinstance(e, Verification.RecordsReceived) for e in v.collect_events()) == 1


def test_an_answer_the_rules_cannot_read_is_refused():
    v = new_verification()
    with pytest.raises(ValueError):
        v.receive("hrss", v.requests["hrss"], [{"id_number": IDS[0], "monthly_income_fen": -1}],
                  "2026-11-25T10:00:00+08:00", SYSTEM)
    assert "hrss" not in v.records


def test_an_answer_after_completion_is_ignored():
    v = new_verification()
    for dept in DEPARTMENTS[:-1]:
        v.receive(dept, v.requests[dept], rows(dept), "2026-11-25T10:00:00+08:00", SYSTEM)
    late = DEPARTMENTS[-1]
    v.complete(assessment_record(an_assessment(v)), COMPLETED_AT, SYSTEM)
    assert v.assessment["outcome"] == "needs_appraisal"
    assert v.assessment["departments_missing"] == [late]
    before = v.version
    assert v.receive(late, v.requests[late], rows(late), "2026-11-25T12:00:00+08:00", SYSTEM) is False
    assert v.version == before and late not in v.records


def test_completion_is_taken_once():
    v = completed()
    with pytest.raises(DecisionNotAllowed):
        v.complete(assessment_record(an_assessment(v)), COMPLETED_AT, SYSTEM)


@pytest.mark.parametrize("decision", ["approve", "refuse"])
def test_no_decision_before_the_check_is_complete(decision):
    v = new_verification()
    answer_all(v)  # all answered, but not completed yet
    with pytest.raises(DecisionNotAllowed):
        decide(v) if decision == "approve" else refuse(v, "收入超过标准")
    assert v.state == "requested" and v.benefit is None and v.refusal is None


@pytest.mark.parametrize("second", ["approve", "refuse"])
def test_a_decision_is_taken_once(second):
    v = completed()
    benefit = decide(v)
    assert (v.state, v.benefit) == ("approved", benefit)
    assert (benefit.kind, benefit.benefit_id, benefit.benefit_type) == ("monthly", "B-1", "dibao")
    assert benefit.monthly_amount_fen == v.assessment["monthly_amount_fen"] > 0
    assert benefit.one_off_amount_fen is None and benefit.fund_source is None
    assert (benefit.first_period, benefit.approval_level, benefit.approving_body) == ("2026-12", "township", TOWNSHIP)
    assert benefit.approved_at == DECIDED_AT.isoformat()
    with pytest.raises(DecisionNotAllowed):
        decide(v) if second == "approve" else refuse(v, "收入超过标准")
    assert v.state == "approved" and v.refusal is None
    approved = v.collect_events()[-1]
    assert isinstance(approved, Verification.Approved)
    assert (approved.members_count, approved.region_code, approved.area) == (2, VILLAGE, "urban")
    assert approved.bank_account == v.application.bank_account is not None
    assert approved.meta == REVIEWER.as_dict()
    out = wire(approved, "verification")
    assert (out.name, out.subject) == ("BenefitApproved", CASE_ID)
    assert out.data == {
        "case_id": CASE_ID, "verification_id": "V-1",
        "household": {"members_count": 2, "region_code": VILLAGE, "area": "urban"},
        **dataclasses.asdict(benefit),
        "bank_account_ref": v.application.bank_account.ref,
        "bank_account": dataclasses.asdict(v.application.bank_account),
        "reason": "符合条件",
    }
    assert ACCOUNT_NUMBER not in json.dumps(out.data)


def test_approval_replays_to_the_same_state():
    v = completed()
    decide(v)
    events = v.collect_events()
    rebuilt = replay(events)
    assert (rebuilt.state, rebuilt.benefit, rebuilt.assessment) == (v.state, v.benefit, v.assessment)


def test_refusal_state_and_wire_form():
    v = completed()
    refusal = refuse(v, "收入超过标准")
    assert refusal == Refusal("收入超过标准", TOWNSHIP, DECIDED_AT.isoformat())
    assert (v.state, v.refusal) == ("refused", refusal)
    events = v.collect_events()
    assert isinstance(events[-1], Verification.Refused)
    out = wire(events[-1], "verification")
    assert out.name == "BenefitRefused"
    assert out.data == {"case_id": CASE_ID, "verification_id": "V-1", "region_code": VILLAGE,
                        "reason": "收入超过标准", "refusing_body": TOWNSHIP,
                        "refused_at": DECIDED_AT.isoformat()}
    assert replay(events).state == "refused" and replay(events).refusal == v.refusal


def test_a_refusal_gives_its_reasons():
    v = completed()
    with pytest.raises(ValueError):
        refuse(v, "  ")
    assert v.state == "completed"


def test_an_ineligible_household_cannot_be_approved():
    v = completed(income=5_000_000)
    assert v.assessment["outcome"] == "ineligible"
    with pytest.raises(DecisionNotAllowed):
        decide(v)
    assert v.state == "completed"
    refuse(v, "家庭月人均收入不低于当地低保标准")
    assert v.state == "refused"


def test_a_check_that_needs_appraisal_cannot_be_approved():
    v = new_verification()
    v.complete(assessment_record(an_assessment(v)), COMPLETED_AT, SYSTEM)  # nobody answered
    assert v.assessment["outcome"] == "needs_appraisal"
    with pytest.raises(DecisionNotAllowed):
        decide(v)
    assert v.state == "completed" and v.benefit is None


def test_one_off_relief_is_paid_in_the_month_of_the_decision_from_the_relief_budget():
    v = completed(assistance_type="linshi_jinan", requested_amount_fen=200000)
    benefit = decide(v)
    assert (benefit.kind, benefit.benefit_type, benefit.tier) == ("one_off", "linshi_jinan", None)
    assert (benefit.one_off_amount_fen, benefit.monthly_amount_fen) == (200000, None)
    assert benefit.fund_source == "temporary_relief_budget" and benefit.first_period == "2026-11"
    assert benefit.approval_level == "township" and benefit.payable
    wire(v.collect_events()[-1], "verification")


def test_one_off_above_the_township_cap_needs_the_county():
    cap = POLICY.emergency.township_cap_fen
    v = completed(assistance_type="linshi_jinan", requested_amount_fen=cap + 1)
    with pytest.raises(NotPermitted) as refused:
        decide(v, REVIEWER)
    assert refused.value.rule == "approval_level" and refused.value.status == 403
    assert v.state == "completed"
    benefit = decide(v, COUNTY_OFFICER)
    assert (benefit.one_off_amount_fen, benefit.approval_level, benefit.approving_body) == (
        cap + 1, "county", COUNTY_OFFICER.org_code)
    wire(v.collect_events()[-1], "verification")


def test_a_low_income_recognition_carries_no_money():
    v = completed(income=120000, assistance_type="low_income")  # above the standard, within 1.5x
    benefit = decide(v)
    assert (benefit.kind, benefit.benefit_type, benefit.tier) == ("recognition", "low_income", None)
    assert benefit.monthly_amount_fen is None and benefit.one_off_amount_fen is None
    assert benefit.fund_source is None and not benefit.payable
    out = wire(v.collect_events()[-1], "verification")
    assert out.data["kind"] == "recognition"


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "monthly", "monthly_amount_fen": 0},
        {"kind": "monthly", "monthly_amount_fen": -1},
        {"kind": "monthly", "one_off_amount_fen": 100},
        {"kind": "one_off", "monthly_amount_fen": None, "one_off_amount_fen": 100, "fund_source": None},
        {"kind": "recognition", "monthly_amount_fen": None, "one_off_amount_fen": 100},
        {"kind": "weekly"},
        {"first_period": "2026-13"},
        {"approval_level": "village"},
    ],
)
def test_benefit_refuses_what_its_kind_does_not_allow(fields):
    valid = dict(kind="monthly", benefit_id="B-1", benefit_type="dibao", tier="B",
                 monthly_amount_fen=206000, one_off_amount_fen=None, fund_source=None,
                 first_period="2026-12", approval_level="township", approving_body=TOWNSHIP,
                 approved_at=DECIDED_AT.isoformat())
    Benefit(**valid)
    with pytest.raises(ValueError):
        Benefit(**{**valid, **fields})


# --- verification: events stored by earlier class versions ---------------------------------
def old_verification_stream(mapper, *, decision: str) -> list:
    """A check stored before the domain was restructured: Started, one Requested and its
    RecordsReceived, Completed, then the v1 Approved or Refused, read back event by event."""
    ident = Verification.create_id(CASE_ID)
    v2 = application_v2_payload(CASE_ID, IDS)
    common = {"timestamp": STORED_AT, "meta": SYSTEM_META, "case_id": CASE_ID}
    # An assessment record of the time, from the current rules (its shape did not change).
    fresh = new_verification(["hrss"])
    fresh.receive("hrss", "Q-0", rows(), "2026-11-25T10:00:00+08:00", SYSTEM)
    record = assessment_record(an_assessment(fresh))
    events = [
        read_back(mapper, Verification.Started, ident, 1, originator_topic=get_topic(Verification),
                  verification_id="V-1", application=v2, **common),
        read_back(mapper, Verification.Requested, ident, 2, verification_id="V-1", request_id="Q-0",
                  department="hrss", id_numbers=IDS, region_code=VILLAGE,
                  requested_at="2026-11-25T09:00:00+08:00", due_at="2026-11-28T23:59:59+08:00", **common),
        read_back(mapper, Verification.RecordsReceived, ident, 3, department="hrss", request_id="Q-0",
                  members=rows(), reported_at="2026-11-25T10:00:00+08:00", **common),
        read_back(mapper, Verification.Completed, ident, 4, verification_id="V-1", assessment=record,
                  completed_at="2026-11-25T11:00:00+08:00", **common),
    ]
    if decision == "approve":
        benefit_v1 = valid_at("BenefitApproved", 1, {
            "case_id": CASE_ID, "benefit_id": "B-1", "verification_id": "V-1",
            "household": {"members_count": 2, "region_code": VILLAGE, "area": "urban"},
            "benefit_type": "dibao", "tier": "B", "monthly_amount_fen": 206000,
            "one_off_amount_fen": None, "first_period": "2026-12", "bank_account_ref": "ACCT-0001",
            "approving_body": TOWNSHIP, "approval_level": "township", "reason": "符合条件",
            "approved_at": "2026-11-25T15:00:00+08:00",
        })
        events.append(read_back(mapper, Verification.Approved, ident, 5, benefit=benefit_v1,
                                assessment=None, **common))
    else:
        refusal_v1 = valid_at("BenefitRefused", 1, {
            "case_id": CASE_ID, "verification_id": "V-1", "region_code": VILLAGE,
            "reason": "收入超过标准", "refusing_body": TOWNSHIP,
            "refused_at": "2026-11-25T15:00:00+08:00",
        })
        events.append(read_back(mapper, Verification.Refused, ident, 5, refusal=refusal_v1, **common))
    return events


def test_a_verification_approved_before_the_restructuring_still_loads():
    events = old_verification_stream(event_mapper(), decision="approve")
    v = replay(events)
    assert isinstance(v.application, Application) and v.application.household.id_numbers == IDS
    assert v.requests == {"hrss": "Q-0"} and list(v.records["hrss"].members) == rows()
    assert (v.state, v.version) == ("approved", 5)
    assert v.benefit == Benefit(
        kind="monthly", benefit_id="B-1", benefit_type="dibao", tier="B", monthly_amount_fen=206000,
        one_off_amount_fen=None, fund_source=None, first_period="2026-12",
        approval_level="township", approving_body=TOWNSHIP, approved_at="2026-11-25T15:00:00+08:00")
    approved = events[-1]
    assert (approved.verification_id, approved.reason, approved.members_count) == ("V-1", "符合条件", 2)
    assert (approved.region_code, approved.area, approved.bank_account) == (VILLAGE, "urban", None)
    assert approved.assessment == {}
    # A relay catching up still publishes it, at the current BenefitApproved version.
    out = wire(approved, "verification")
    assert out.data["kind"] == "monthly" and out.data["bank_account"] is None
    with pytest.raises(DecisionNotAllowed):
        refuse(v, "又改主意")


def test_a_verification_refused_before_the_restructuring_still_loads():
    events = old_verification_stream(event_mapper(), decision="refuse")
    v = replay(events)
    assert v.state == "refused"
    assert v.refusal == Refusal("收入超过标准", TOWNSHIP, "2026-11-25T15:00:00+08:00")
    refused = events[-1]
    assert (refused.verification_id, refused.region_code) == ("V-1", VILLAGE)
    out = wire(refused, "verification")
    assert out.data["reason"] == "收入超过标准" and out.data["verification_id"] == "V-1"


# --- payment: Entitlement ------------------------------------------------------------------
def a_benefit(**overrides) -> Benefit:
    fields = dict(kind="monthly", benefit_id="B-1", benefit_type="dibao", tier="B",
                  monthly_amount_fen=206000, one_off_amount_fen=None, fund_source=None,
                  first_period="2026-12", approval_level="township", approving_body=TOWNSHIP,
                  approved_at="2026-11-25T15:00:00+08:00")
    fields.update(overrides)
    return Benefit(**fields)


ACCOUNT = BankAccount(**sealed_account())
OPENED_AT = "2026-11-25T15:00:01+08:00"


def entitlement_for(benefit: Benefit, account: BankAccount | None = ACCOUNT) -> Entitlement:
    return Entitlement.from_benefit(CASE_ID, benefit, account, account.ref if account else "unknown",
                                    VILLAGE, OPENED_AT, SYSTEM)


def entitlement_kwargs(**overrides) -> dict:
    kw = dict(
        entitlement_id="E-1", case_id=CASE_ID, benefit_id="B-1", benefit_type="dibao",
        monthly_amount_fen=206000, first_period="2026-12", bank_account_ref="ACCT-0001", bank_account=None,
        region_code=VILLAGE, opened_at=OPENED_AT, meta=SYSTEM_META,
    )
    kw.update(overrides)
    return kw


def entitlement_state(e: Entitlement) -> dict:
    return {k: v for k, v in vars(e).items() if k != "_pending_events"}


def test_entitlement_opened():
    e = entitlement_for(a_benefit())
    (event,) = e.collect_events()
    assert isinstance(event, Entitlement.Opened)
    assert e.id == Entitlement.create_id("E-1") == aggregate_id("entitlement", "E-1")
    assert (e.entitlement_id, e.benefit_id, e.status, e.kind, e.payable) == ("E-1", "B-1", "active", "monthly", True)
    assert e.monthly_amount_fen == 206000 and e.region_code == VILLAGE and e.first_period == "2026-12"
    assert event.bank_account_ref == ACCOUNT.ref
    out = wire(event, "payment")
    assert (out.name, out.subject) == ("EntitlementOpened", CASE_ID)
    assert "region_code" not in out.data  # not part of the contract
    assert entitlement_state(replay([event])) == entitlement_state(e)


def test_one_off_relief_is_recorded_payable_once():
    benefit = a_benefit(kind="one_off", benefit_type="linshi_jinan", tier=None, monthly_amount_fen=None,
                        one_off_amount_fen=200000, fund_source="temporary_relief_budget",
                        first_period="2026-11")
    e = entitlement_for(benefit)
    (event,) = e.collect_events()
    assert isinstance(event, Entitlement.OneOffRecorded)
    assert (e.kind, e.payable, e.one_off_amount_fen, e.monthly_amount_fen) == ("one_off", True, 200000, None)
    assert (e.fund_source, e.first_period) == ("temporary_relief_budget", "2026-11")
    assert event.bank_account == ACCOUNT
    assert entitlement_state(replay([event])) == entitlement_state(e)


def test_a_recognition_is_recorded_and_never_payable():
    benefit = a_benefit(kind="recognition", benefit_type="low_income", tier=None, monthly_amount_fen=None)
    e = entitlement_for(benefit, None)
    (event,) = e.collect_events()
    assert isinstance(event, Entitlement.RecognitionRecorded)
    assert (e.kind, e.payable, e.monthly_amount_fen, e.one_off_amount_fen) == ("recognition", False, None, None)
    assert entitlement_state(replay([event])) == entitlement_state(e)


def test_entitlement_refuses_a_negative_amount():
    with pytest.raises(ValueError):
        Entitlement._create(Entitlement.Opened, id=uuid.uuid4(), **entitlement_kwargs(monthly_amount_fen=-1))
    with pytest.raises(ValueError):
        a_benefit(monthly_amount_fen=-1)


def test_entitlement_of_zero_is_allowed():
    e = Entitlement._create(Entitlement.Opened, id=uuid.uuid4(), **entitlement_kwargs(monthly_amount_fen=0))
    wire(e.collect_events()[0], "payment")


# --- charity: Fund, Need ---------------------------------------------------------------------
def fund_details(**overrides) -> dict:
    d = {"name": "东营区救急难专项基金", "kind": "special", "donor": None,
         "need_categories": ["living", "medical"], "region_code": "370502", "regions": ["370502"],
         "household_types": ["dibao", "none"], "balance_fen": 100_000_000, "per_case_cap_fen": 500_000,
         "per_household_year_cap_fen": None, "valid_from": None, "valid_until": None,
         "registered_at": "2026-11-25T09:00:00+08:00"}
    d.update(overrides)
    return d


def test_fund_registered():
    fund = Fund.register("F-1", **fund_details(), by=SYSTEM)
    (event,) = fund.collect_events()
    assert fund.id == Fund.create_id("F-1")
    assert fund.region_code == "370502" and fund.balance_fen == 100_000_000 and fund.available_fen == 100_000_000
    out = wire(event, "charity")
    assert (out.name, out.subject, out.data["fund_id"]) == ("FundRegistered", "F-1", "F-1")


@pytest.mark.parametrize("field", ["balance_fen", "per_case_cap_fen"])
def test_fund_refuses_negative_amounts(field):
    with pytest.raises(ValueError):
        Fund.register("F-2", **fund_details(**{field: -1}), by=SYSTEM)


def test_fund_registered_before_v2_still_loads():
    mapper = event_mapper()
    v1 = {"name": "东营区救急难专项基金", "kind": "special", "need_categories": ["living", "medical"],
          "region_code": "370502", "balance_fen": 100_000_000, "per_case_cap_fen": 0,
          "valid_until": None, "registered_at": "2026-11-25T09:00:00+08:00"}
    event = read_back(mapper, Fund.Registered, Fund.create_id("F-3"), 1,
                      timestamp=STORED_AT, originator_topic=get_topic(Fund),
                      fund_id="F-3", details=v1, meta=SYSTEM_META)
    fund = event.mutate(None)
    # v1 had no household types, regions or yearly cap: every type, its own region, no caps
    expected = fund_details(per_case_cap_fen=None, household_types=["dibao", "low_income", "none", "tekun"])
    del expected["balance_fen"]  # the ledger, not the registration
    assert fund.details == expected
    assert fund.balance_fen == 100_000_000


def need_for(referral_id: str = "R-1", **overrides):
    kw = dict(referral_id=referral_id, case_id=CASE_ID, need_category="medical", amount_asked_fen=500000,
              region_code=VILLAGE, urgency="urgent", due_date="2026-12-02", consent_to_share=True,
              household_type="dibao", name_masked="王*明", members_count=3,
              opened_at="2026-11-25T09:00:00+08:00", by=SYSTEM)
    kw.update(overrides)
    return Need.open_for(**kw)


def test_need_opened():
    need = need_for()
    (event,) = need.collect_events()
    assert need.need_id == "N-1" and need.id == Need.create_id("N-1")
    assert need.status == "open" and need.referral_id == "R-1"
    out = wire(event, "charity")
    assert (out.name, out.subject, out.data["need_id"]) == ("NeedOpened", CASE_ID, "N-1")


def test_need_published_is_masked_to_the_township_and_needs_consent():
    need = need_for()
    assert need.publish(300000, "2026-11-25T09:01:00+08:00", SYSTEM) is True
    assert need.publish(300000, "2026-11-25T09:02:00+08:00", SYSTEM) is False  # once
    out = wire(need.collect_events()[-1], "charity")
    assert out.name == "NeedPublished" and out.data["region_code"] == VILLAGE[:9]
    assert "referral_id" not in out.data and out.data["name_masked"] == "王*明"
    with pytest.raises(NeedRuleViolation) as info:
        need_for("R-2", consent_to_share=False).publish(1, "2026-11-25T09:01:00+08:00", SYSTEM)
    assert info.value.rule == "consent_to_share"


# --- notify: Notice ---------------------------------------------------------------------------
def notice_kwargs(**overrides) -> dict:
    kw = dict(
        notice_id="NACC-1", case_id=CASE_ID, kind="acceptance", legal_name=LEGAL_NAMES["acceptance"],
        channel="letter", recipient_masked="王*明", region_code=VILLAGE,
        body=acceptance_text("王*明", CASE_ID, "dibao"), cause_event_id=str(uuid.uuid4()),
        issued_at="2026-11-25T09:00:01+08:00", issuing_office=VILLAGE[:9], meta=SYSTEM_META,
    )
    kw.update(overrides)
    return kw


@pytest.mark.parametrize("kind", sorted(LEGAL_NAMES))
def test_notice_of_each_kind_validates(kind):
    notice = Notice._create(Notice.Issued, id=uuid.uuid4(),
                            **notice_kwargs(kind=kind, legal_name=LEGAL_NAMES[kind]))
    (event,) = notice.collect_events()
    out = wire(event, "notify")
    assert out.name == "NoticeIssued" and out.data["legal_name"] == LEGAL_NAMES[kind]
    assert replay([event]).kind == kind


@pytest.mark.parametrize(
    ("kind", "legal_name"),
    [("acceptance", LEGAL_NAMES["refusal"]), ("refusal", "受理通知书"), ("refusal", "不予批准通知"),
     ("unknown", "受理通知书")],
)
def test_notice_refuses_a_legal_name_that_does_not_match_its_kind(kind, legal_name):
    with pytest.raises(ValueError):
        Notice._create(Notice.Issued, id=uuid.uuid4(), **notice_kwargs(kind=kind, legal_name=legal_name))


def test_notice_texts_carry_the_masked_name_and_reason():
    text = refusal_text("王*明", CASE_ID, "家庭月人均收入不低于当地低保标准")
    assert "王*明" in text and CASE_ID in text and "家庭月人均收入不低于当地低保标准" in text
    assert "行政复议" in text
    accepted = acceptance_text("王*明", CASE_ID, "dibao")
    assert "王*明" in accepted and CASE_ID in accepted and "dibao" in accepted


def test_public_wire_forms_are_json():
    # What the relay writes must be plain JSON (no dates, tuples, sets or value objects).
    case = new_case()
    json.dumps(INTAKE_OUTBOUND(case.collect_events()[0]).data, ensure_ascii=False)
    v = completed()
    decide(v)
    for event in v.collect_events():
        out = VERIFICATION_OUTBOUND(event)
        if out is not None:
            json.dumps(out.data, ensure_ascii=False)


def test_every_payable_entitlement_keeps_the_sealed_account_to_pay_into():
    account = BankAccount("RCC", "王小明", BankAccount.mask("6228480012345670001"), "c2VhbGVk" * 4)
    for benefit in (a_benefit(), a_benefit(kind="one_off", monthly_amount_fen=None, tier=None,
                                             one_off_amount_fen=200000,
                                             fund_source="temporary_relief_budget")):
        e = Entitlement.from_benefit(CASE_ID, benefit, account, account.ref, VILLAGE,
                                     OPENED_AT, SYSTEM)
        (event,) = e.collect_events()
        assert (e.bank_account, e.bank_account_ref) == (account, account.ref), benefit.kind
        assert event.mutate(None).bank_account == account


def test_a_monthly_entitlement_stored_before_accounts_were_carried_still_loads():
    state = {k: v for k, v in entitlement_kwargs().items() if k != "bank_account"}
    event = read_back(event_mapper(), Entitlement.Opened, Entitlement.create_id("E-1"), 1,
                      timestamp=STORED_AT, originator_topic=get_topic(Entitlement), **state)
    e = event.mutate(None)
    assert (e.bank_account, e.bank_account_ref, e.kind) == (None, "ACCT-0001", "monthly")
    assert wire(event, "payment").data["bank_account_ref"] == "ACCT-0001"


def test_a_termination_before_the_one_recorded_ends_the_entitlement_sooner_and_nothing_else_does():
    e = entitlement_for(a_benefit())
    assert e.change("terminate", "2028-12", "延退期满停发", "ev-grace", OPENED_AT, SYSTEM)  # after a grace
    assert e.amount_for("2027-05") == 206000
    assert not e.change("adjust", "2027-01", "调整", "ev-adjust", OPENED_AT, SYSTEM, monthly_amount_fen=100000)
    assert not e.change("terminate", "2029-01", "later", "ev-later", OPENED_AT, SYSTEM)
    assert e.change("terminate", "2027-03", "查实伪造材料，停发", "ev-fraud", OPENED_AT, SYSTEM)  # fraud
    assert [e.amount_for(p) for p in ("2027-02", "2027-03", "2028-11")] == [206000, 0, 0]
    assert not e.change("terminate", "2027-03", "again", "ev-fraud", OPENED_AT, SYSTEM)
