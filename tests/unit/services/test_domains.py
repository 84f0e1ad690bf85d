"""The services' aggregates on their own: events triggered, state after them, rules that refuse,
and every public event's wire form against its JSON schema."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date

import pytest

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.domain.aggregate import aggregate_id
from lifeline.messaging.outbox import to_cloud_events
from services.charity.domain import Fund, Need
from services.intake.domain import (
    CASE_STATUSES,
    Case,
    Referral,
    later_status,
    mask_name,
)
from services.notify.domain import LEGAL_NAMES, Notice, acceptance_text, refusal_text
from services.payment.domain import Entitlement
from services.verification.application import assessment_record, household_of
from services.verification.assessment import DepartmentRecord, assess
from services.verification.domain import DecisionNotAllowed, Verification
from services.verification.policy import default_policy_book

from . import SYSTEM_META, VILLAGE, benefit_data, pid, replay, submitted_data

CASE_ID = "C-DOMAIN0000000000001"
IDS = [pid(1), pid(2, female=True)]


def wire(event):
    """The event's integration output after checking it against its schema."""
    out = event.integration()
    assert out is not None, f"{type(event).__name__} is not public"
    registry.validate_data(out.name, out.data)
    return out


def routes(event, service: str) -> list[tuple[str, str]]:
    """(topic, key) of every record the outbox relay publishes for a stored event."""
    return [(topic, key) for topic, key, _ in to_cloud_events(service, 1, event)]


# --- intake: Case -------------------------------------------------------------------------
def new_case() -> Case:
    return Case._create(
        Case.Submitted, id=aggregate_id("case", CASE_ID), case_id=CASE_ID,
        application=submitted_data(CASE_ID, IDS), meta=SYSTEM_META,
    )


def test_case_submitted_state_and_wire_form():
    case = new_case()
    (event,) = case.collect_events()
    assert isinstance(event, Case.Submitted)
    assert (case.status, case.region_code, case.version) == ("submitted", VILLAGE, 1)
    assert case.verification_outcome is None and case.benefit_id is None
    out = wire(event)
    assert (out.name, out.subject) == ("ApplicationSubmitted", CASE_ID)
    assert out.data["members"][0]["id_number"] == IDS[0]


def test_case_verification_then_approval():
    case = new_case()
    case.note_verification("eligible", 12300, SYSTEM_META)
    case.note_decision("approved", "B-1", "符合条件", SYSTEM_META)
    events = case.collect_events()
    assert [type(e) for e in events] == [Case.Submitted, Case.VerificationNoted, Case.BenefitDecided]
    for c in (case, replay(events)):
        assert c.status == "approved"
        assert (c.verification_outcome, c.per_capita_income_fen) == ("eligible", 12300)
        assert (c.benefit_id, c.decision_reason) == ("B-1", "符合条件")
        assert c.version == 3
    # Internal events do not go on the wire.
    assert events[1].integration() is None and events[2].integration() is None


def test_case_status_never_moves_back_when_events_arrive_late():
    case = new_case()
    case.note_decision("approved", "B-1", "ok", SYSTEM_META)
    case.note_verification("needs_appraisal", 0, SYSTEM_META)  # late
    assert case.status == "approved"
    assert case.verification_outcome == "needs_appraisal"  # the fact is still recorded
    assert replay(case.collect_events()).status == "approved"


def test_case_refusal_keeps_earlier_benefit_id_empty_and_records_reason():
    case = new_case()
    case.note_verification("ineligible", 500000, SYSTEM_META)
    case.note_decision("refused", "", "收入超过标准", SYSTEM_META)
    assert (case.status, case.benefit_id, case.decision_reason) == ("refused", None, "收入超过标准")


def test_case_refuses_an_unknown_decision():
    case = new_case()
    with pytest.raises(ValueError):
        case.note_decision("maybe", "", "", SYSTEM_META)
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


# --- intake: Referral ----------------------------------------------------------------------
def test_referral_raised_goes_to_the_referral_feed_masked():
    details = {
        "target": "charity", "need_category": "medical", "amount_asked_fen": 500000,
        "urgency": "urgent", "due_date": "2026-12-10", "consent_to_share": True,
        "household_profile": {"region_code": VILLAGE, "members_count": 2,
                              "name_masked": mask_name("王小明"), "assistance_type": "dibao"},
        "raised_at": "2026-11-25T09:00:00+08:00",
    }
    referral = Referral._create(
        Referral.Raised, id=aggregate_id("referral", "R-1"), referral_id="R-1", case_id=CASE_ID,
        details=details, meta=SYSTEM_META,
    )
    (event,) = referral.collect_events()
    assert (referral.referral_id, referral.case_id) == ("R-1", CASE_ID)
    out = wire(event)
    assert out.name == "ReferralRaised" and out.subject == CASE_ID
    assert routes(event, "intake") == [(T.TOPICS["intake"], CASE_ID), (T.REFERRALS, CASE_ID)]
    assert out.data["household_profile"]["name_masked"] == "王**"


# --- mask_name ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三丰", "张**"), ("张三", "张*"), ("张", "张*"), ("欧阳娜娜", "欧***"), ("买买提·艾力", "买*****")],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked
    # What the referral schema accepts as a masked name.
    assert re.fullmatch(r"[^*]{1,2}\*+[^*]?", masked)
    assert name[1:] not in masked or len(name) == 1


# --- verification: Verification ------------------------------------------------------------
POLICY = default_policy_book().policy_for("370502", date(2026, 11, 25))
DEPARTMENTS = list(POLICY.mandatory_departments)


def new_verification(requested: list[str] = DEPARTMENTS) -> Verification:
    v = Verification._create(
        Verification.Started, id=aggregate_id("verification", CASE_ID), verification_id="V-1",
        case_id=CASE_ID, application=submitted_data(CASE_ID, IDS), meta=SYSTEM_META,
    )
    for i, dept in enumerate(requested):
        v.request(dept, f"Q-{i}", "2026-11-25T09:00:00+08:00", "2026-11-28T23:59:59+08:00", SYSTEM_META)
    return v


def rows() -> list[dict]:
    return [{"id_number": i, "monthly_income_fen": 0} for i in IDS]


def answer_all(v: Verification) -> None:
    for dept, request_id in list(v.requests.items()):
        assert v.receive(dept, request_id, rows(), "2026-11-25T10:00:00+08:00", SYSTEM_META)


def an_assessment(v: Verification) -> dict:
    records = {d: DepartmentRecord(d, tuple(r["members"])) for d, r in v.records.items()}
    return assessment_record(assess(household_of(v.application), records, POLICY, date(2026, 11, 25)))


def test_verification_requests_one_per_department_and_each_validates():
    v = new_verification()
    events = v.collect_events()
    assert isinstance(events[0], Verification.Started) and events[0].integration() is None
    requested = events[1:]
    assert [e.department for e in requested] == DEPARTMENTS
    assert v.requests == {d: f"Q-{i}" for i, d in enumerate(DEPARTMENTS)}
    assert v.state == "requested" and v.departments_missing == DEPARTMENTS
    for e in requested:
        out = wire(e)
        assert out.name == "VerificationRequested"
        assert routes(e, "verification") == [(T.PARTNER_REQUESTS, e.department)]
        assert out.data["id_numbers"] == IDS
    assert replay(events).requests == v.requests


def test_verification_records_and_completion():
    v = new_verification()
    answer_all(v)
    assert v.departments_missing == []
    v.complete(an_assessment(v), "2026-11-25T11:00:00+08:00", SYSTEM_META)
    events = v.collect_events()
    assert sum(isinstance(e, Verification.RecordsReceived) for e in events) == len(DEPARTMENTS)
    assert all(e.integration() is None for e in events if isinstance(e, Verification.RecordsReceived))
    completed = events[-1]
    assert isinstance(completed, Verification.Completed)
    assert v.state == "completed" and v.assessment["outcome"] == "eligible"
    out = wire(completed)
    assert out.name == "VerificationCompleted"
    assert out.data["departments_missing"] == [] and sorted(out.data["departments_answered"]) == sorted(DEPARTMENTS)
    rebuilt = replay(events)
    assert (rebuilt.state, rebuilt.assessment, rebuilt.records) == (v.state, v.assessment, v.records)


def test_answer_to_another_request_is_ignored():
    v = new_verification()
    assert v.receive("hrss", "Q-not-ours", rows(), "2026-11-25T10:00:00+08:00", SYSTEM_META) is False
    assert v.receive("health", "Q-0", rows(), "2026-11-25T10:00:00+08:00", SYSTEM_META) is False  # not asked
    assert "hrss" not in v.records and "health" not in v.records
    assert not any(isinstance(e, Verification.RecordsReceived) for e in v.collect_events())


def test_a_second_answer_is_ignored_the_first_stands():
    v = new_verification()
    q = v.requests["hrss"]
    first = [{"id_number": IDS[0], "monthly_income_fen": 100}]
    assert v.receive("hrss", q, first, "2026-11-25T10:00:00+08:00", SYSTEM_META) is True
    assert v.receive("hrss", q, [{"id_number": IDS[0], "monthly_income_fen": 999}],
                     "2026-11-25T10:05:00+08:00", SYSTEM_META) is False
    assert v.records["hrss"]["members"] == first
    assert sum(isinstance(e, Verification.RecordsReceived) for e in v.collect_events()) == 1


def test_an_answer_after_completion_is_ignored():
    v = new_verification()
    for dept in DEPARTMENTS[:-1]:
        v.receive(dept, v.requests[dept], rows(), "2026-11-25T10:00:00+08:00", SYSTEM_META)
    late = DEPARTMENTS[-1]
    v.complete(an_assessment(v), "2026-11-25T11:00:00+08:00", SYSTEM_META)
    assert v.assessment["outcome"] == "needs_appraisal"
    assert v.assessment["departments_missing"] == [late]
    before = v.version
    assert v.receive(late, v.requests[late], rows(), "2026-11-25T12:00:00+08:00", SYSTEM_META) is False
    assert v.version == before and late not in v.records


def test_completion_is_taken_once():
    v = new_verification()
    answer_all(v)
    v.complete(an_assessment(v), "2026-11-25T11:00:00+08:00", SYSTEM_META)
    with pytest.raises(DecisionNotAllowed):
        v.complete(an_assessment(v), "2026-11-25T11:05:00+08:00", SYSTEM_META)


@pytest.mark.parametrize("decision", ["approve", "refuse"])
def test_no_decision_before_the_check_is_complete(decision):
    v = new_verification()
    answer_all(v)  # all answered, but not completed yet
    with pytest.raises(DecisionNotAllowed):
        getattr(v, decision)({"case_id": CASE_ID}, SYSTEM_META)
    assert v.state == "requested"


def refusal() -> dict:
    return {"case_id": CASE_ID, "verification_id": "V-1", "region_code": VILLAGE, "reason": "收入超过标准",
            "refusing_body": "370502101 乡镇审核确认小组", "refused_at": "2026-11-25T15:00:00+08:00"}


@pytest.mark.parametrize("second", ["approve", "refuse"])
def test_a_decision_is_taken_once(second):
    v = new_verification()
    answer_all(v)
    v.complete(an_assessment(v), "2026-11-25T11:00:00+08:00", SYSTEM_META)
    benefit = benefit_data(CASE_ID, verification_id="V-1")
    v.approve(benefit, SYSTEM_META)
    assert (v.state, v.benefit) == ("approved", benefit)
    with pytest.raises(DecisionNotAllowed):
        v.approve(benefit, SYSTEM_META) if second == "approve" else v.refuse(refusal(), SYSTEM_META)
    assert v.state == "approved" and v.refusal is None
    approved = v.collect_events()[-1]
    assert isinstance(approved, Verification.Approved)
    out = wire(approved)
    assert (out.name, out.subject, out.data) == ("BenefitApproved", CASE_ID, benefit)


def test_refusal_state_and_wire_form():
    v = new_verification()
    answer_all(v)
    v.complete(an_assessment(v), "2026-11-25T11:00:00+08:00", SYSTEM_META)
    v.refuse(refusal(), SYSTEM_META)
    assert (v.state, v.refusal["reason"]) == ("refused", "收入超过标准")
    events = v.collect_events()
    assert isinstance(events[-1], Verification.Refused)
    assert wire(events[-1]).name == "BenefitRefused"
    assert replay(events).state == "refused" and replay(events).refusal == v.refusal


# --- payment: Entitlement ------------------------------------------------------------------
def entitlement_kwargs(**overrides) -> dict:
    kw = dict(
        entitlement_id="E-1", case_id=CASE_ID, benefit_id="B-1", benefit_type="dibao",
        monthly_amount_fen=206000, first_period="2026-12", bank_account_ref="ACCT-0001",
        region_code=VILLAGE, opened_at="2026-11-25T15:00:01+08:00", meta=SYSTEM_META,
    )
    kw.update(overrides)
    return kw


def test_entitlement_opened():
    e = Entitlement._create(Entitlement.Opened, id=aggregate_id("entitlement", "E-1"), **entitlement_kwargs())
    (event,) = e.collect_events()
    assert e.status == "active"
    assert e.as_dict()["monthly_amount_fen"] == 206000 and e.as_dict()["region_code"] == VILLAGE
    out = wire(event)
    assert (out.name, out.subject) == ("EntitlementOpened", CASE_ID)
    assert "region_code" not in out.data  # not part of the contract
    assert replay([event]).as_dict() == e.as_dict()


def test_entitlement_refuses_a_negative_amount():
    with pytest.raises(ValueError):
        Entitlement._create(Entitlement.Opened, id=uuid.uuid4(), **entitlement_kwargs(monthly_amount_fen=-1))


def test_entitlement_of_zero_is_allowed():
    e = Entitlement._create(Entitlement.Opened, id=uuid.uuid4(), **entitlement_kwargs(monthly_amount_fen=0))
    wire(e.collect_events()[0])


# --- charity: Fund, Need ---------------------------------------------------------------------
def fund_details(**overrides) -> dict:
    d = {"name": "东营区救急难专项基金", "kind": "special", "need_categories": ["medical", "living"],
         "region_code": "370502", "balance_fen": 100_000_000, "per_case_cap_fen": 500_000,
         "valid_until": None, "registered_at": "2026-11-25T09:00:00+08:00"}
    d.update(overrides)
    return d


def test_fund_registered():
    fund = Fund._create(Fund.Registered, id=aggregate_id("fund", "F-1"), fund_id="F-1",
                        details=fund_details(), meta=SYSTEM_META)
    (event,) = fund.collect_events()
    assert fund.region_code == "370502" and fund.details["balance_fen"] == 100_000_000
    out = wire(event)
    assert (out.name, out.subject, out.data["fund_id"]) == ("FundRegistered", "F-1", "F-1")


@pytest.mark.parametrize("field", ["balance_fen", "per_case_cap_fen"])
def test_fund_refuses_negative_amounts(field):
    with pytest.raises(ValueError):
        Fund._create(Fund.Registered, id=uuid.uuid4(), fund_id="F-2",
                     details=fund_details(**{field: -1}), meta=SYSTEM_META)


def test_need_opened():
    need = Need._create(
        Need.Opened, id=aggregate_id("need", "N-1"), need_id="N-1", case_id=CASE_ID,
        referral_id="R-1", need_category="medical", amount_asked_fen=500000, region_code=VILLAGE,
        urgency="urgent", opened_at="2026-11-25T09:00:00+08:00", meta=SYSTEM_META,
    )
    (event,) = need.collect_events()
    assert need.status == "open" and need.referral_id == "R-1"
    out = wire(event)
    assert (out.name, out.subject, out.data["need_id"]) == ("NeedOpened", CASE_ID, "N-1")


# --- notify: Notice ---------------------------------------------------------------------------
def notice_kwargs(**overrides) -> dict:
    kw = dict(
        notice_id="NACC-1", case_id=CASE_ID, kind="acceptance", legal_name=LEGAL_NAMES["acceptance"],
        channel="letter", recipient_masked="王**", region_code=VILLAGE,
        body=acceptance_text("王**", CASE_ID, "dibao"), cause_event_id=str(uuid.uuid4()),
        issued_at="2026-11-25T09:00:01+08:00", meta=SYSTEM_META,
    )
    kw.update(overrides)
    return kw


@pytest.mark.parametrize("kind", sorted(LEGAL_NAMES))
def test_notice_of_each_kind_validates(kind):
    notice = Notice._create(Notice.Issued, id=uuid.uuid4(),
                            **notice_kwargs(kind=kind, legal_name=LEGAL_NAMES[kind]))
    (event,) = notice.collect_events()
    out = wire(event)
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
    text = refusal_text("王**", CASE_ID, "家庭月人均收入不低于当地低保标准")
    assert "王**" in text and CASE_ID in text and "家庭月人均收入不低于当地低保标准" in text
    assert "行政复议" in text
    accepted = acceptance_text("王**", CASE_ID, "dibao")
    assert "王**" in accepted and CASE_ID in accepted and "dibao" in accepted


def test_public_wire_forms_are_json():
    # What the relay writes must be plain JSON (no dates, tuples or sets).
    case = new_case()
    json.dumps(case.collect_events()[0].integration().data, ensure_ascii=False)
