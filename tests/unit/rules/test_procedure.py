"""The statutory procedure on the Verification aggregate (issue 9): order, rules, four eyes
and every deadline, counted by hand across National Day 2026.

2026 around National Day (State Council arrangement): Fri 09-25 中秋 (rest); Oct 1-7 rest;
Sat 10-10 a make-up working day; Sun 10-11 rest.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from lifeline.contracts import registry
from lifeline.domain.aggregate import Meta
from lifeline.rules.periods import SHANGHAI
from services.verification.application import assessment_record, verification_view
from services.verification.assessment import assess
from services.verification.domain import (
    DecisionNotAllowed,
    NotPermitted,
    RuleBroken,
    Verification,
)
from services.verification.outbound import OUTBOUND
from lifeline.rules.policy import shipped_policy_book

from tests.unit.services import CASEWORKER, COUNTY_OFFICER, REVIEWER, SURVEYORS, SYSTEM, application, pid

CASE_ID = "C-PROCEDURE000000001"
IDS = [pid(31), pid(32, female=True)]
POLICY = shipped_policy_book().policy_for("370502", date(2026, 9, 28))


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=SHANGHAI)


def accepted(accepted_at: datetime = at("2026-09-28"), **overrides) -> Verification:
    v = Verification.open(application(CASE_ID, IDS, **overrides), "V-PROC1", SYSTEM)
    assert v.accept(accepted_at, SYSTEM)
    for i, dept in enumerate(POLICY.mandatory_departments):
        v.request(dept, f"Q-{i}", accepted_at, accepted_at, SYSTEM)
    v.start_clocks(accepted_at, accepted_at, SYSTEM)
    return v


def complete(v: Verification, when: datetime, income: int = 0, **figures: int) -> None:
    for dept, request_id in list(v.requests.items()):
        rows = [{"id_number": i, "monthly_income_fen": income if dept == "hrss" else 0, **figures} for i in IDS]
        assert v.receive(dept, request_id, rows, when.isoformat(), SYSTEM)
    v.complete(assessment_record(assess(v.application.household, v.records, POLICY, when.date())), when, SYSTEM)


def due(v: Verification, clock: str) -> dict[str, str]:
    """The clock's deadlines as (due_date, state) in the order they were set."""
    return {d.deadline_id: (d.due_date, d.state) for d in v.deadlines.values() if d.clock == clock}


def decide(v: Verification, when: datetime, by: Meta = REVIEWER):
    result = assess(v.application.household, v.records, POLICY, when.date())
    return v.decide(result, assessment_record(result), when, by, "经审核确认，符合低保条件")


def published(v: Verification) -> list[tuple[str, dict]]:
    out = []
    for event in v.collect_events():
        wire = OUTBOUND(event)
        if wire is not None:
            registry.validate_data(wire.name, wire.data)
            out.append((wire.name, wire.data))
    return out


def test_the_procedure_across_national_day_with_an_objection_every_date_by_hand():
    v = accepted(at("2026-09-28"))
    # Acceptance on Mon 09-28: survey within 3 working days (09-29, 09-30, 10-08); the report
    # within 5 (… 10-09, 10-10 make-up), warned after 3; the whole procedure within 20.
    assert due(v, "household_survey") == {f"{CASE_ID}/household_survey": ("2026-10-08", "open")}
    assert due(v, "verification_report") == {f"{CASE_ID}/verification_report": ("2026-10-10", "open")}
    assert due(v, "whole_procedure") == {f"{CASE_ID}/whole_procedure": ("2026-10-30", "open")}
    assert v.deadlines[f"{CASE_ID}/verification_report"].warn_at == "2026-10-09T00:00:00+08:00"

    complete(v, at("2026-09-29", 9))
    assert due(v, "verification_report")[f"{CASE_ID}/verification_report"][1] == "met"

    v.record_survey(SURVEYORS, date(2026, 9, 29), "住房简陋，两人患病", at("2026-09-29", 16), CASEWORKER)
    assert due(v, "household_survey")[f"{CASE_ID}/household_survey"] == ("2026-10-08", "met")
    # Initial review within 3 working days of the visit on 09-29: 09-30, 10-08, 10-09.
    assert due(v, "initial_review") == {f"{CASE_ID}/initial_review": ("2026-10-09", "open")}

    v.propose("include", "拟纳入低保", at("2026-09-30"), CASEWORKER)
    v.post_notice("P-PROC1", at("2026-09-30", 11), CASEWORKER)
    # 7 days from 09-30 end on 10-07, a holiday: the notice runs until the next working day.
    assert (v.notice.notice_from, v.notice.notice_until) == ("2026-10-01", "2026-10-08")
    assert v.notice.ends_at == "2026-10-09T00:00:00+08:00"
    # No warning: the decision is due 3 working days after the notice's end (10-09, 10-10, 10-12).
    assert due(v, "decision") == {f"{CASE_ID}/decision": ("2026-10-12", "open")}

    # An objection on Mon 10-05 (a holiday): the decision waits for an appraisal due within
    # 3 working days of it (10-08, 10-09, 10-10 make-up).
    assert v.raise_objection("O-1", "P-PROC1", "该户有小轿车一辆", None, at("2026-10-05", 20),
                             at("2026-10-05", 20), SYSTEM)
    assert due(v, "decision") == {f"{CASE_ID}/decision": ("2026-10-12", "cancelled")}
    assert due(v, "democratic_appraisal") == {f"{CASE_ID}/democratic_appraisal": ("2026-10-10", "open")}
    assert v.missing_step[0] == "democratic_appraisal"

    v.hold_appraisal(date(2026, 10, 9), 11, 9, 1, 1, "车辆已出售，同意纳入", at("2026-10-09", 15), CASEWORKER)
    assert due(v, "democratic_appraisal")[f"{CASE_ID}/democratic_appraisal"][1] == "met"
    # The material reaches the review group with the appraisal (10-09): 10-10, 10-12, 10-13.
    assert due(v, "decision")[f"{CASE_ID}/decision/2"] == ("2026-10-13", "open")

    benefit = decide(v, at("2026-10-12", 9))
    assert benefit.first_period == "2026-11"
    assert {d.state for d in v.deadlines.values() if d.clock in ("decision", "whole_procedure")} >= {"met"}
    assert not [d for d in v.deadlines.values() if d.is_open]

    names = [name for name, _ in published(v)]
    for name in ("DeadlineSet", "DeadlineCleared", "HouseholdSurveyRecorded", "InitialReviewProposed",
                 "PublicNoticePosted", "ObjectionRaised", "DemocraticAppraisalHeld", "BenefitApproved"):
        assert name in names


def test_every_step_out_of_order_is_refused_naming_the_step():
    v = Verification.open(application(CASE_ID, IDS), "V-PROC1", SYSTEM)
    with pytest.raises(DecisionNotAllowed) as e:
        v.record_survey(SURVEYORS, date(2026, 9, 28), "x", at("2026-09-28"), CASEWORKER)
    assert e.value.rule == "acceptance"
    v = accepted()
    with pytest.raises(DecisionNotAllowed) as e:
        v.propose("include", "x", at("2026-09-29"), CASEWORKER)
    assert e.value.rule == "household_survey"
    v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    with pytest.raises(DecisionNotAllowed) as e:
        v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    assert e.value.rule == "household_survey"  # repeated
    with pytest.raises(DecisionNotAllowed) as e:
        v.propose("include", "x", at("2026-09-29"), CASEWORKER)
    assert e.value.rule == "verification_report"  # the check is still running
    with pytest.raises(DecisionNotAllowed) as e:
        v.post_notice("P-1", at("2026-09-29"), CASEWORKER)
    assert e.value.rule == "initial_review"
    with pytest.raises(DecisionNotAllowed) as e:
        decide(v, at("2026-09-29"))
    assert e.value.rule == "verification_report"
    complete(v, at("2026-09-29"))
    v.propose("include", "x", at("2026-09-30"), CASEWORKER)
    with pytest.raises(DecisionNotAllowed) as e:
        decide(v, at("2026-09-30"))
    assert e.value.rule == "public_notice"
    with pytest.raises(DecisionNotAllowed) as e:
        v.hold_appraisal(date(2026, 9, 30), 5, 5, 0, 0, "x", at("2026-09-30"), CASEWORKER)
    assert e.value.rule == "public_notice"
    v.post_notice("P-1", at("2026-09-30"), CASEWORKER)
    with pytest.raises(DecisionNotAllowed) as e:
        decide(v, at("2026-10-08", 23))  # the notice's last day
    assert e.value.rule == "public_notice"
    with pytest.raises(DecisionNotAllowed) as e:
        v.hold_appraisal(date(2026, 10, 9), 5, 5, 0, 0, "x", at("2026-10-09"), CASEWORKER)
    assert e.value.rule == "appraisal_not_needed"  # no objection, no warning
    decide(v, at("2026-10-09"))  # the day after the notice, no appraisal needed
    with pytest.raises(DecisionNotAllowed) as e:
        v.refuse(at("2026-10-09"), REVIEWER, "x")
    assert e.value.rule == "decision"


@pytest.mark.parametrize(("surveyors", "rule"), [
    ([{"name": "李卫东", "role": "village_cadre"}], "survey_two_people"),
    ([{"name": "李卫东", "role": "village_cadre"}, {"name": "李卫东", "role": "other"}], "survey_two_people"),
    ([{"name": "李卫东", "role": "township_staff"}, {"name": "赵敏", "role": "other"}], "survey_village_cadre"),
])
def test_a_survey_needs_two_people_one_a_village_cadre(surveyors, rule):
    v = accepted()
    with pytest.raises(RuleBroken) as e:
        v.record_survey(surveyors, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    assert e.value.rule == rule and e.value.status == 422
    assert v.survey is None and len(v.collect_events()) > 0  # nothing triggered by the refusal
    assert not [d for d in v.deadlines.values() if d.clock == "initial_review"]


def test_dates_in_the_future_or_before_acceptance_are_refused():
    v = accepted(at("2026-09-28"))
    with pytest.raises(RuleBroken) as e:
        v.record_survey(SURVEYORS, date(2026, 9, 30), "x", at("2026-09-29", 23), CASEWORKER)
    assert e.value.rule == "date_in_future"
    with pytest.raises(RuleBroken) as e:
        v.record_survey(SURVEYORS, date(2026, 9, 27), "x", at("2026-09-29"), CASEWORKER)
    assert e.value.rule == "date_before_acceptance"


def test_four_eyes_the_surveyor_or_proposer_cannot_decide_alone():
    v = accepted()
    complete(v, at("2026-09-29"))
    surveyor = Meta("reviewer-007", "reviewer", "370502101")
    v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), surveyor)
    v.propose("refuse", "收入超标", at("2026-09-30"), CASEWORKER)
    # A refusal proposal needs no notice: the decision is due 3 working days from it
    # (10-08, 10-09, 10-10 make-up).
    assert due(v, "decision") == {f"{CASE_ID}/decision": ("2026-10-10", "open")}
    for maker in (surveyor, Meta(CASEWORKER.user_id, "reviewer", "370502101")):
        with pytest.raises(NotPermitted) as e:
            v.refuse(at("2026-09-30", 15), maker, "收入超标")
        assert e.value.rule == "four_eyes" and e.value.status == 403
    with pytest.raises(DecisionNotAllowed) as e:
        decide(v, at("2026-09-30", 15))  # approving what was proposed for refusal
    assert e.value.rule == "initial_review"
    v.refuse(at("2026-09-30", 15), REVIEWER, "收入超标")
    assert v.state == "refused"


def test_a_warning_calls_for_an_appraisal_due_after_the_notice():
    v = accepted()
    complete(v, at("2026-09-29"))
    v.assessment = {**v.assessment, "warnings": [{"rule": "r", "code": "VEHICLE", "message": "车辆"}]}
    assert v.check_warned
    v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    v.propose("include", "x", at("2026-09-30"), CASEWORKER)
    v.post_notice("P-1", at("2026-09-30"), CASEWORKER)
    # Notice until 10-08; appraisal within 3 working days of its end: 10-09, 10-10, 10-12.
    assert due(v, "democratic_appraisal") == {f"{CASE_ID}/democratic_appraisal": ("2026-10-12", "open")}
    assert not due(v, "decision")
    with pytest.raises(DecisionNotAllowed) as e:
        decide(v, at("2026-10-09"))
    assert e.value.rule == "democratic_appraisal"


def test_a_major_dispute_gives_the_procedure_30_working_days():
    v = accepted(at("2026-09-28"))
    v.declare_major_dispute("财产权属争议", at("2026-10-09"), CASEWORKER)
    assert due(v, "whole_procedure") == {f"{CASE_ID}/whole_procedure": ("2026-10-30", "cancelled")}
    # 20 working days end 10-30; ten more: 11-02 … 11-13.
    assert due(v, "whole_procedure_major_dispute") == {
        f"{CASE_ID}/whole_procedure_major_dispute": ("2026-11-13", "open")}
    with pytest.raises(DecisionNotAllowed):
        v.declare_major_dispute("again", at("2026-10-09"), CASEWORKER)


def test_an_unknown_year_is_said_on_the_deadline_and_the_view():
    v = accepted(at("2026-12-21"))  # 20 working days run into 2027, unknown to the calendar
    whole = v.deadlines[f"{CASE_ID}/whole_procedure"]
    assert not whole.calendar_known and any("2027" in w for w in whole.warnings)
    view = verification_view(v)
    assert any("CALENDAR_UNKNOWN:2027" in w for w in view["calendar_warnings"])


def test_above_the_cap_only_the_county_decides():
    v = accepted(assistance_type="linshi_jinan", requested_amount_fen=2_000_000)
    complete(v, at("2026-09-29"), medical_expense_fen=1_000_000)
    v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    if v.assessment["outcome"] != "eligible":
        pytest.skip("the shipped policy does not grant this household one-off relief")
    v.propose("include", "x", at("2026-09-30"), CASEWORKER)
    v.post_notice("P-1", at("2026-09-30"), CASEWORKER)
    if v.appraisal_due:
        v.hold_appraisal(date(2026, 10, 9), 5, 5, 0, 0, "同意", at("2026-10-09"), CASEWORKER)
    result = assess(v.application.household, v.records, POLICY, date(2026, 10, 12))
    if result.approval_level != "county":
        pytest.skip("this amount is within the township's cap")
    with pytest.raises(NotPermitted) as e:
        decide(v, at("2026-10-12"), REVIEWER)
    assert e.value.rule == "approval_level"
    assert decide(v, at("2026-10-12"), COUNTY_OFFICER).approval_level == "county"


# --- acceptance (intake's Case) -------------------------------------------------------------
def _case():
    from services.intake.domain import Case

    return Case.register(application("C-ACCEPT000000000001", IDS), SYSTEM)


def test_only_the_id_and_the_authorisation_may_be_asked_for_all_at_once():
    from services.intake.domain import AcceptanceNotAllowed, AcceptanceRuleBroken

    case = _case()
    with pytest.raises(AcceptanceRuleBroken) as e:
        case.request_materials(["resident_id", "household_register"], "缺户口簿", "2026-09-28T10:00:00+08:00", SYSTEM)
    assert e.value.rule == "one_id_one_authorisation"
    case.request_materials(["authorisation"], "授权书未签字", "2026-09-28T10:00:00+08:00", SYSTEM)
    with pytest.raises(AcceptanceRuleBroken) as e:  # not asked for the first time: 一次性告知
        case.request_materials(["resident_id"], "又缺身份证", "2026-09-29T10:00:00+08:00", SYSTEM)
    assert e.value.rule == "missing_materials_at_once"
    case.request_materials(["authorisation"], "仍缺授权书", "2026-09-29T10:00:00+08:00", SYSTEM)
    assert case.collect_events()[-1].repeat is True
    case.accept("材料已补齐", "2026-09-30T10:00:00+08:00", SYSTEM)
    with pytest.raises(AcceptanceNotAllowed):
        case.refuse_acceptance("改为不予受理", "2026-09-30T11:00:00+08:00", SYSTEM)


# --- grievances (异议、申诉) -------------------------------------------------------------------
def refused_case() -> Verification:
    v = accepted()
    complete(v, at("2026-09-29"), income=5_000_000)  # ineligible
    v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    v.propose("refuse", "收入超标", at("2026-09-30"), CASEWORKER)
    result = assess(v.application.household, v.records, POLICY, date(2026, 9, 30))
    v.refuse(at("2026-09-30", 15), REVIEWER, "收入超标", assessment_record(result))
    return v


def test_a_grievance_is_due_in_15_working_days_and_needs_something_to_contest():
    v = accepted()
    with pytest.raises(DecisionNotAllowed) as e:
        v.raise_grievance("G-1", "refusal", "不服", "window", None, at("2026-09-29"), CASEWORKER)
    assert e.value.rule == "grievance_subject"
    v = refused_case()
    assert v.raise_grievance("G-1", "refusal", "配偶患病，收入认定有误", "window", None, at("2026-10-08"), CASEWORKER)
    assert not v.raise_grievance("G-1", "refusal", "again", "window", None, at("2026-10-08"), CASEWORKER)
    # 15 working days from Thu 10-08: 10-09, 10-10 (make-up), 10-12 … 10-16, 10-19 … 10-23, 10-26, 10-27, 10-28.
    assert due(v, "grievance") == {f"{CASE_ID}/grievance": ("2026-10-28", "open")}
    with pytest.raises(RuleBroken) as e:
        v.decide_grievance("G-1", "upheld", "属实", None, at("2026-10-09"), REVIEWER)
    assert e.value.rule == "grievance_evidence"
    v.decide_grievance("G-1", "dismissed", "原决定认定事实清楚", None, at("2026-10-09"), REVIEWER)
    assert due(v, "grievance") == {f"{CASE_ID}/grievance": ("2026-10-28", "met")}
    assert v.state == "refused" and len(v.decisions) == 1
    with pytest.raises(DecisionNotAllowed) as e:
        v.decide_grievance("G-1", "upheld", "x", "original", at("2026-10-09"), REVIEWER)
    assert e.value.rule == "grievance_decided"


def test_an_upheld_grievance_takes_the_decision_again_and_the_log_keeps_both():
    v = refused_case()
    v.raise_grievance("G-1", "refusal", "不服", "window", None, at("2026-10-08"), CASEWORKER)
    v.decide_grievance("G-1", "upheld", "复核后认为应重新审核", "original", at("2026-10-09"), REVIEWER)
    assert v.state == "completed" and v.refusal is None and v.proposal is None
    assert v.evidence_version == v.decisions[0].evidence_version
    assert due(v, "initial_review")[f"{CASE_ID}/initial_review/2"] == ("2026-10-13", "open")
    v.propose("refuse", "复核后仍不符合", at("2026-10-09"), CASEWORKER)
    v.refuse(at("2026-10-09", 15), COUNTY_OFFICER, "复核后仍不符合条件")
    assert [d.decision for d in v.decisions] == ["refuse", "refuse"]
    assert v.decisions[0].assessment["outcome"] == "ineligible"
    assert [e for e in published(v) if e[0] == "BenefitRefused"].__len__() == 2


def test_an_upheld_grievance_on_the_original_evidence_replays_the_verification(tmp_path):
    """Through the application: the re-decision is assessed on the records as they stood at
    the refusal (the verification replayed to that version), and both decisions are kept."""
    from lifeline.domain.clock import FixedClock
    from services.verification.application import VerificationApplication
    from tests.unit.services import MEMORY_ENV

    app = VerificationApplication(dict(MEMORY_ENV), clock=FixedClock(at("2026-10-08")))
    v = refused_case()
    app.save(v)
    app.raise_grievance(CASE_ID, "G-1", "refusal", "不服", "window", None, CASEWORKER)
    app.decide_grievance(CASE_ID, "G-1", "upheld", "重新审核", "original", REVIEWER)
    app.propose(CASE_ID, "refuse", "仍不符合", CASEWORKER)
    app.decide(CASE_ID, "refuse", "仍不符合条件", COUNTY_OFFICER)
    v = app.get_verification(CASE_ID)
    assert [d.decision for d in v.decisions] == ["refuse", "refuse"]
    first, second = v.decisions
    assert second.assessment["per_capita_income_fen"] == first.assessment["per_capita_income_fen"]
    view = verification_view(v)
    assert len(view["decisions"]) == 2 and view["grievances"][0]["outcome"] == "upheld"
    app.close()


# --- the county's own periods -------------------------------------------------------------------
def test_a_county_may_set_its_own_periods_and_each_case_keeps_those_in_force_at_acceptance():
    import copy

    import yaml

    from lifeline.settings import DEFAULT_POLICY_FILE
    from lifeline.rules.policy import PolicyBook, PolicyError

    data = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    own = copy.deepcopy(data)
    for county in own["counties"]:
        if county["county_code"] == "370502":
            county["clock_days"] = {"household_survey": 5, "grievance": 10}
    policy = PolicyBook.from_mapping(own).policy_for("370502", date(2026, 9, 28))
    assert dict(policy.clock_days) == {"household_survey": 5, "grievance": 10}
    v = Verification.open(application(CASE_ID, IDS), "V-PROC1", SYSTEM)
    v.accept(at("2026-09-28"), SYSTEM, dict(policy.clock_days))
    v.start_clocks(at("2026-09-28"), at("2026-09-28"), SYSTEM)
    # 5 working days from Mon 09-28: 09-29, 09-30, 10-08, 10-09, 10-10 (make-up).
    assert due(v, "household_survey") == {f"{CASE_ID}/household_survey": ("2026-10-10", "open")}
    assert due(v, "whole_procedure") == {f"{CASE_ID}/whole_procedure": ("2026-10-30", "open")}  # default
    bad = copy.deepcopy(data)
    bad["counties"][0]["clock_days"] = {"no_such_clock": 3}
    with pytest.raises(PolicyError, match="clock_days"):
        PolicyBook.from_mapping(bad)


def test_an_objection_that_races_the_decision_is_heard_as_a_grievance():
    v = accepted()
    complete(v, at("2026-09-29"))
    v.record_survey(SURVEYORS, date(2026, 9, 29), "x", at("2026-09-29"), CASEWORKER)
    v.propose("include", "x", at("2026-09-30"), CASEWORKER)
    v.post_notice("P-1", at("2026-09-30"), CASEWORKER)
    decide(v, at("2026-10-09"))
    # Received on the board on the notice's last day, reaching verification after the decision.
    assert v.raise_objection("O-9", "P-1", "该户有车", None, at("2026-10-08", 23), at("2026-10-09", 10), SYSTEM)
    assert not v.objections
    (grievance,) = v.grievances.values()
    assert (grievance.grievance_id, grievance.against, grievance.channel, grievance.objection_id) == (
        "G-O-9", "verification_result", "board", "O-9")
    assert due(v, "grievance")[f"{CASE_ID}/grievance"][1] == "open"
    # The same objection again changes nothing.
    assert not v.raise_objection("O-9", "P-1", "该户有车", None, at("2026-10-08", 23), at("2026-10-09", 11), SYSTEM)
    assert len(v.grievances) == 1
