"""Dynamic management on the Verification aggregate (issue 11): the review date set at approval,
a review that asks the departments again and ends in a change to the benefit, the grace period,
a suspension when the household cannot be reached, a member's death and fraud confirmed by a
second county officer. Time is injected; periods are asserted to the month, dates to the day."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from lifeline.contracts import registry
from lifeline.domain.aggregate import Meta
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.policy import shipped_policy_book
from services.verification.application import assessment_record, verification_view
from services.verification.assessment import assess
from services.verification.domain import ProcedureError, Verification
from services.verification.outbound import OUTBOUND
from services.verification.review import household_review_cycle, next_review_date, pensioners, review_outcome
from tests.unit.services import (
    CASEWORKER, COUNTY_OFFICER, REVIEWER, SYSTEM, application, pid, ready_to_decide, replay,
)

BOOK = shipped_policy_book()
OTHER_OFFICER = Meta("county-002", "county_officer", "370502")
PENSIONER = pid(451, born=date(1960, 3, 1))   # 67 in 2027
SPOUSE = pid(452, born=date(1962, 7, 1), female=True)
CHILD = pid(453, born=date(2005, 1, 1))


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=SHANGHAI)


def policy(when: datetime):
    return BOOK.policy_for("370502", when.date())


APPROVED_AT = at("2026-10-20")  # first period 2026-11; 2026 standard, urban: 103,000 fen


def approved(ids: list[str], wage: int = 0, decided_at: datetime = APPROVED_AT, **overrides) -> Verification:
    """Accepted 2026-09-28, the departments answer (the first member earning `wage` with 人社),
    approved on `decided_at` with the review cycle its records call for; events still pending."""
    v = Verification.open(application("C-REVIEWS0000000001", ids, **overrides), "V-REVIEWS1", SYSTEM)
    t0 = at("2026-09-28")
    assert v.accept(t0, SYSTEM)
    for i, department in enumerate(policy(t0).mandatory_departments):
        v.request(department, f"Q-{i}", t0, t0, SYSTEM)
    v.start_clocks(t0, t0, SYSTEM)
    for department, request_id in list(v.requests.items()):
        rows = [{"id_number": n, "monthly_income_fen": wage if department == "hrss" and n == ids[0] else 0}
                for n in ids]
        assert v.receive(department, request_id, rows, t0.isoformat(), SYSTEM)
    v.complete(assessment_record(assess(v.application.household, v.records, policy(t0), t0.date())), t0, SYSTEM)
    ready_to_decide(v, decided_at)
    result = assess(v.application.household, v.records, policy(decided_at), decided_at.date())
    v.decide(result, assessment_record(result), decided_at, REVIEWER, "符合低保条件")
    cycle = household_review_cycle(v.application.household, v.records, policy(decided_at))
    v.schedule_reviews(cycle, decided_at.date(), decided_at, REVIEWER)
    return v


def start(v: Verification, when: datetime, grace_reason: str | None = None, grace_months: int | None = None):
    departments = policy(when).mandatory_departments
    v.start_review(f"RV-{len(v.reviews) + 1}", grace_reason, grace_months, "年度复核",
                   [(d, f"QR-{len(v.reviews) + 1}-{d}") for d in departments], when, when, CASEWORKER)


def answer(v: Verification, when: datetime, incomes: dict[str, int]) -> None:
    """Every department answers the running review (人社 with these monthly incomes); then the
    review completes as the application would (VerificationApplication._complete_review)."""
    ids = v.living_household.id_numbers
    for department, request_id in list(v.review_requests.items()):
        rows = [{"id_number": n, "monthly_income_fen": incomes.get(n, 0) if department == "hrss" else 0}
                for n in ids]
        assert v.receive_for_review(department, request_id, rows, when.isoformat(), SYSTEM)
    hh, records, review = v.living_household, dict(v.review_records), v.open_review
    p = policy(when)
    a = assess(hh, records, p, when.date())
    result = review_outcome(a, current_amount_fen=v.current_monthly_amount_fen, standard_fen=p.standard_for(hh.area),
                            decided_at=when, policy=p, grace_reason=review.grace_reason,
                            grace_months=review.grace_months, pensioner=bool(pensioners(hh, records, when.date())))
    cycle = household_review_cycle(hh, records, p)
    goes_on = result.outcome in ("no_change", "adjusted")
    v.complete_review(assessment_record(a), result, next_review_date(when.date(), cycle) if goes_on else None,
                      cycle.months, when, SYSTEM)


def published(v: Verification) -> list[tuple[str, dict]]:
    out = []
    for event in v.collect_events():
        wire = OUTBOUND(event)
        if wire is not None:
            registry.validate_data(wire.name, wire.data)
            out.append((wire.name, wire.data))
    return out


def refused(action, rule: str, status: int) -> None:
    with pytest.raises(ProcedureError) as e:
        action()
    assert (e.value.rule, e.value.status) == (rule, status)


# --- the review date ---------------------------------------------------------------------
def test_approval_sets_the_review_date_half_yearly_or_annual_by_the_records():
    irregular = approved([pid(401), pid(402, female=True)])  # no recorded wage, both can work
    assert (irregular.review_cycle_months, irregular.next_review_date) == (6, "2027-04-20")
    stable = approved([pid(403), pid(404, female=True)], wage=30000)
    assert (stable.review_cycle_months, stable.next_review_date) == (12, "2027-10-20")
    # An approval on the 31st: the month's end six months on.
    late = approved([pid(405), pid(406, female=True)], decided_at=at("2026-10-31"))
    assert late.next_review_date == "2027-04-30"


# --- a review ------------------------------------------------------------------------------
def test_a_review_asks_the_departments_again_with_request_ids_of_its_own():
    v = approved([pid(411), pid(412, female=True)])
    published(v)
    first = dict(v.requests)
    start(v, at("2027-04-20"))
    assert set(v.review_requests) == set(first) and not set(v.review_requests.values()) & set(first.values())
    wire = published(v)
    names = [n for n, _ in wire]
    assert names[0] == "ReviewStarted" and names.count("VerificationRequested") == len(first)
    started = wire[0][1]
    assert (started["scheduled_for"], started["started_by"], started["grace_reason"]) == (
        "2027-04-20", CASEWORKER.user_id, None)
    assert {d["request_id"] for n, d in wire if n == "VerificationRequested"} == set(v.review_requests.values())
    # The review's report is watched like the first check's.
    assert [d.deadline_id for d in v.deadlines.values() if d.is_open] == [f"{v.case_id}/verification_report/2"]
    # An answer to the first check's request is not the review's.
    assert not v.waits_for_review("hrss", first["hrss"])
    refused(lambda: start(v, at("2027-04-21")), "review_open", 409)


def test_a_review_with_a_lower_income_adjusts_from_the_next_period_and_moves_the_date_on():
    v = approved([pid(413), pid(414, female=True)])  # 206,000 a month
    published(v)
    when = at("2027-04-20")
    start(v, when)
    answer(v, when, {pid(413): 80000})  # (103,000 − 40,000) × 2
    wire = published(v)
    completed = dict(wire)["ReviewCompleted"]
    assert (completed["outcome"], completed["monthly_amount_fen"], completed["from_period"]) == ("adjusted", 126000,
                                                                                                 "2027-05")
    # A wage 人社 records now: the income is regular, the next review a year on.
    assert (completed["per_capita_income_fen"], completed["next_review_date"]) == (40000, "2028-04-20")
    adjusted = dict(wire)["BenefitAdjusted"]
    assert (adjusted["from_period"], adjusted["monthly_amount_fen"], adjusted["previous_monthly_amount_fen"],
            adjusted["decided_by"]) == ("2027-05", 126000, 206000, CASEWORKER.user_id)
    assert [d.state for d in v.deadlines.values() if d.deadline_id.endswith("/verification_report/2")] == ["met"]
    assert (v.next_review_date, v.review_cycle_months, v.current_monthly_amount_fen, v.open_review) == (
        "2028-04-20", 12, 126000, None)
    view = verification_view(v)
    assert [(r["outcome"], r["from_period"], r["state"]) for r in view["reviews"]] == [
        ("adjusted", "2027-05", "completed")]


def test_a_pensioner_between_1_and_2_times_the_standard_is_paid_6_more_periods_then_stops():
    v = approved([PENSIONER, SPOUSE])
    published(v)
    when = at("2027-03-15")
    start(v, when)
    answer(v, when, {PENSIONER: 300000})  # 150,000 a head: between 103,000 and 206,000
    wire = dict(published(v))
    assert wire["ReviewCompleted"]["grace"] == {"reason": "pensioner", "months": 6, "last_paid_period": "2027-09"}
    assert (wire["ReviewCompleted"]["outcome"], wire["ReviewCompleted"]["next_review_date"]) == ("grace", None)
    assert (wire["BenefitTerminated"]["from_period"], wire["BenefitTerminated"]["decided_by"]) == (
        "2027-10", CASEWORKER.user_id)
    assert "BenefitAdjusted" not in wire  # the amount in force is paid through the grace
    assert (v.benefit_status, v.current_monthly_amount_fen) == ("terminated", 206000)
    refused(lambda: start(v, at("2027-04-01")), "benefit_terminated", 409)


def test_a_named_grace_and_no_grace():
    graduate = pid(416, female=True)
    v = approved([pid(415), graduate])
    when = at("2027-03-15")
    start(v, when, "graduate_employed", 9)
    answer(v, when, {graduate: 400000})
    # 9 more periods after the decision's month (2027-04 .. 2027-12), none from 2028-01.
    assert (v.benefit_changes[-1].change, v.benefit_changes[-1].from_period) == ("terminate", "2028-01")
    assert v.reviews["RV-1"].grace == {"reason": "graduate_employed", "months": 9, "last_paid_period": "2027-12"}
    w = approved([pid(417), pid(418, female=True)])
    start(w, when)
    answer(w, when, {pid(418, female=True): 400000})
    assert (w.benefit_changes[-1].change, w.benefit_changes[-1].from_period) == ("terminate", "2027-04")
    refused(lambda: start(approved([pid(419)]), when, None, 6), "grace_months", 422)
    refused(lambda: start(approved([pid(420)]), when, "bogus"), "grace_reason", 422)


def test_a_review_concluded_with_a_suspension_when_the_household_cannot_be_reached():
    v = approved([pid(421), pid(422, female=True)])
    refused(lambda: v.suspend_unreachable("联系不上", at("2027-04-20"), CASEWORKER), "review_not_open", 409)
    published(v)
    start(v, at("2027-04-20"))
    refused(lambda: v.suspend_unreachable(" ", at("2027-04-28"), CASEWORKER), "reason", 422)
    v.suspend_unreachable("多次入户未找到申请人", at("2027-04-28"), CASEWORKER)
    wire = [w for w in published(v) if w[0] in ("ReviewCompleted", "BenefitSuspended")]
    assert [(n, d["from_period"]) for n, d in wire] == [("ReviewCompleted", "2027-05"), ("BenefitSuspended", "2027-05")]
    assert (wire[0][1]["outcome"], wire[0][1]["per_capita_income_fen"], wire[0][1]["next_review_date"]) == (
        "suspended", None, "2027-10-28")
    assert [d.state for d in v.deadlines.values() if d.deadline_id.endswith("/2")] == ["cancelled"]
    # Suspended: a new review may run, but cannot suspend again.
    start(v, at("2027-05-10"))
    refused(lambda: v.suspend_unreachable("仍联系不上", at("2027-05-11"), CASEWORKER), "benefit_not_paying", 409)


def test_only_an_approved_monthly_benefit_is_reviewed():
    jinan = approved([pid(423)], assistance_type="linshi_jinan", requested_amount_fen=100000)
    refused(lambda: start(jinan, at("2027-01-10")), "monthly_benefit", 409)


def test_the_aggregate_replays_to_the_same_reviews():
    v = approved([pid(424), pid(425, female=True)])
    start(v, at("2027-04-20"))
    answer(v, at("2027-04-20"), {pid(424): 80000})
    again = replay(v.collect_events())
    assert (again.reviews, again.next_review_date, again.review_cycle_months, again.latest_records) == (
        v.reviews, v.next_review_date, v.review_cycle_months, v.latest_records)


# --- deaths -------------------------------------------------------------------------------
def died(v: Verification, id_number: str, day: str, record_id: str, when: datetime) -> bool:
    """As VerificationApplication.record_death: recorded once, then the household re-assessed."""
    index = v.member_index(id_number)
    if not v.record_death(record_id, index, date.fromisoformat(day), "public_security", when, SYSTEM):
        return False
    a = None
    if v.death_ends_benefit(record_id) is None:
        a = assess(v.living_household, v.records_in_force, policy(when), when.date())
    v.change_after_death(record_id, a, when, SYSTEM)
    return True


def test_a_members_death_adjusts_the_household_from_the_month_after_it_once():
    v = approved([pid(431), pid(432, female=True), pid(433)])  # 3 × 103,000
    assert v.current_monthly_amount_fen == 309000
    published(v)
    assert died(v, pid(433).lower(), "2027-01-10", "PS-1", at("2027-01-12"))
    assert [(n, d["from_period"], d["monthly_amount_fen"]) for n, d in published(v)] == [
        ("BenefitAdjusted", "2027-02", 206000)]
    assert not died(v, pid(433), "2027-01-10", "PS-1", at("2027-01-13"))  # the same record
    assert not died(v, pid(433), "2027-01-10", "CA-9", at("2027-01-13"))  # the same death, another department
    assert published(v) == []
    [death] = verification_view(v)["deaths"]
    assert (death["member"], death["relation"], death["member_index"]) == ("王*", "child", 2)
    assert pid(433) not in str(death)


def test_the_death_of_the_only_member_or_of_the_applicant_ends_the_benefit():
    alone = approved([pid(434)])
    published(alone)
    assert died(alone, pid(434), "2026-12-31", "PS-2", at("2027-01-05"))
    assert [(n, d["from_period"]) for n, d in published(alone)] == [("BenefitTerminated", "2027-01")]
    applicant = approved([pid(435), pid(436, female=True)])
    published(applicant)
    assert died(applicant, pid(435), "2027-02-01", "PS-3", at("2027-02-02"))
    [(name, data)] = published(applicant)
    assert (name, data["from_period"]) == ("BenefitTerminated", "2027-03") and "申请人" in data["reason"]
    # After the end, another member's death changes nothing.
    assert not died(applicant, pid(436), "2027-02-03", "PS-4", at("2027-02-04"))


def test_a_death_reported_late_applies_from_the_latest_change_on():
    v = approved([pid(437), pid(438, female=True), pid(439)])
    v.change_benefit("adjust", "2027-03", 250000, "复核", at("2027-02-20"), REVIEWER)
    published(v)
    assert died(v, pid(439), "2026-12-05", "PS-5", at("2027-02-21"))
    assert [(n, d["from_period"], d["monthly_amount_fen"]) for n, d in published(v)] == [
        ("BenefitAdjusted", "2027-03", 206000)]


# --- fraud ---------------------------------------------------------------------------------
def test_fraud_confirmed_by_a_second_officer_terminates_and_records_it_masked():
    v = approved([pid(441), pid(442, female=True)])
    published(v)
    when = at("2026-12-10")
    refused(lambda: v.report_fraud([], "x", date(2026, 3, 1), when, COUNTY_OFFICER), "fraud_kinds", 422)
    refused(lambda: v.report_fraud(["concealment"], "x", date(2026, 12, 11), when, COUNTY_OFFICER),
            "date_in_future", 422)
    v.report_fraud(["concealment", "forgery"], "隐瞒配偶工资收入", date(2026, 3, 1), when, COUNTY_OFFICER)
    refused(lambda: v.report_fraud(["forgery"], "y", date(2026, 3, 1), when, OTHER_OFFICER), "fraud_reported", 409)
    assert published(v) == []  # a report alone publishes nothing
    refused(lambda: v.confirm_fraud(when, COUNTY_OFFICER), "four_eyes", 409)
    v.confirm_fraud(at("2026-12-11"), OTHER_OFFICER)
    wire = published(v)
    assert [n for n, _ in wire] == ["BenefitTerminated", "FraudRecorded"]
    assert wire[0][1]["from_period"] == "2027-01"
    number = pid(441)
    assert wire[1][1] == {
        "case_id": v.case_id, "benefit_id": v.benefit.benefit_id, "benefit_type": "dibao",
        "region_code": v.region_code, "applicant_name_masked": "王*明",
        "applicant_id_number_masked": number[:6] + "********" + number[-4:],
        "fraud_kinds": ["concealment", "forgery"], "fraud_since": "2026-03-01", "terminated_from_period": "2027-01",
        "reported_by": COUNTY_OFFICER.user_id, "confirmed_by": OTHER_OFFICER.user_id,
        "recorded_at": at("2026-12-11").isoformat()}
    refused(lambda: v.confirm_fraud(when, OTHER_OFFICER), "fraud_not_reported", 409)
    refused(lambda: v.report_fraud(["forgery"], "y", date(2026, 3, 1), when, OTHER_OFFICER), "fraud_recorded", 409)


def test_a_report_refused_by_another_officer_changes_nothing_and_fraud_on_an_ended_benefit_keeps_its_end_or_ends_it_sooner():
    v = approved([pid(443), pid(444, female=True)])
    when = at("2026-12-10")
    v.report_fraud(["false_report"], "举报称有车辆", date(2026, 1, 1), when, COUNTY_OFFICER)
    refused(lambda: v.refuse_fraud("不实", when, COUNTY_OFFICER), "four_eyes", 409)
    v.refuse_fraud("车辆登记在他人名下", when, OTHER_OFFICER)
    assert (v.fraud.state, v.benefit_status) == ("refused", "paying")
    v.terminate_benefit("2027-01", "家庭收入超过标准", when, REVIEWER)
    v.report_fraud(["concealment"], "隐瞒收入", date(2026, 6, 1), when, OTHER_OFFICER)
    published(v)
    v.confirm_fraud(at("2026-12-12"), COUNTY_OFFICER)
    [(name, data)] = published(v)  # it ends from the next period already
    assert (name, data["terminated_from_period"]) == ("FraudRecorded", "2027-01")
    refused(lambda: approved([pid(445)]).refuse_fraud("x", when, OTHER_OFFICER), "fraud_not_reported", 409)

    # Ended later (a grace period still paid): fraud ends it from the next period instead.
    v = approved([pid(449), pid(450, female=True)])
    v.terminate_benefit("2027-06", "延退期满停发", when, REVIEWER)
    v.report_fraud(["forgery"], "伪造就业证明", date(2026, 6, 1), when, COUNTY_OFFICER)
    published(v)
    v.confirm_fraud(at("2026-12-12"), OTHER_OFFICER)
    [(ended, change), (name, data)] = published(v)
    assert (ended, change["from_period"], name, data["terminated_from_period"]) == (
        "BenefitTerminated", "2027-01", "FraudRecorded", "2027-01")


def test_fraud_is_recorded_against_an_approved_benefit_only():
    v = Verification.open(application("C-REVIEWS0000000002", [pid(446)]), "V-REVIEWS2", SYSTEM)
    refused(lambda: v.report_fraud(["forgery"], "伪造材料", date(2026, 1, 1), at("2026-12-01"), COUNTY_OFFICER),
            "approved_benefit", 409)


def test_a_review_ending_after_fraud_ended_the_benefit_only_records_it():
    v = approved([pid(447), pid(448, female=True)])
    start(v, at("2027-04-20"))
    v.report_fraud(["concealment"], "隐瞒收入", date(2026, 6, 1), at("2027-04-20"), COUNTY_OFFICER)
    v.confirm_fraud(at("2027-04-21"), OTHER_OFFICER)
    published(v)
    answer(v, at("2027-04-22"), {pid(447): 80000})
    wire = published(v)
    assert [n for n, _ in wire if n.startswith("Benefit")] == []
    assert dict(wire)["ReviewCompleted"]["outcome"] == "terminated"
