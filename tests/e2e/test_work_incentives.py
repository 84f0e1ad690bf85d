"""Work incentives in the income test across the separate processes (issue 17, part 4; seed 002
就业成本抵扣、收入豁免): a household whose member starts work keeps its benefit through the months of
the income exemption, with the employment-cost deduction applied to the member who was already
working, and after them the new earnings count less the deduction. The amounts are checked to
the fen, as verification decides them and as payment pays them.

The partner simulator plays 人社 (hrss): a record with `employed_since` is a registered employment
(就业登记) and its income is earned income. The county's policy (config/policy.yaml, 370502 from
2026-01-01): urban standard 103,000; 6 months' exemption from the day work began; then 20% of the
earnings (rounded up), at most 30,000 a month per earning member.

One timeline on the shared test clock: approved in December 2026 (paid from 2027-01), a member
starts work on 2027-02-01 (exempt through 2027-07-31), reviews on 2027-03-15, 2027-07-30 and
2027-08-02.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import new_people
from tests.e2e.test_flows import completed, decide, submit_accepted
from tests.e2e.test_reviews import entitlement, paid, quiet, reviews
from tests.e2e.test_reviews import review as start_review
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

PROCEDURE_STARTS = "2026-12-01T09:00:00+08:00"
WORK_BEGINS = "2027-02-01"
IN_MONTH_2 = "2027-03-15T10:00:00+08:00"
LAST_EXEMPT_DAY = "2027-07-30T10:00:00+08:00"   # 2027-07-31 is a Saturday
AFTER_EXEMPTION = "2027-08-02T10:00:00+08:00"


def employ(lifeline, id_number: str, income_fen: int, since: str) -> None:
    """人社 records a registered employment begun on `since`, paying `income_fen` a month."""
    with lifeline.client("simulator") as sim:
        r = sim.put(f"/v1/records/hrss/{id_number}", json={"monthly_income_fen": income_fen,
                                                           "employed_since": since})
    assert r.status_code == 200 and r.json()["employed_since"] == since, r.text


def reviewed(lifeline, case_id: str) -> dict:
    """Start a review now and wait for that review (not an earlier one) to complete."""
    started = start_review(lifeline, case_id, {"reason": "就业后复核"})
    return wait_for(lambda: [r for r in reviews(lifeline, case_id)
                             if r["review_id"] == started["review_id"] and r["state"] == "completed"][0],
                    what=f"review {started['review_id']} of {case_id} completed")


def reasons(assessment: dict, code: str) -> list[dict]:
    return [r["figures"] for r in assessment["detail"]["reasons"] if r["code"] == code]


@pytest.fixture(scope="module")
def households(clocked_lifeline) -> dict[str, tuple[str, list[str]]]:
    """Approved on the notice's end in December 2026, paid from 2027-01: (case id, people)."""
    lifeline = clocked_lifeline
    lifeline.clock_set(PROCEDURE_STARTS)
    two, alone = new_people(2), new_people(1)
    quiet(lifeline, two + alone)
    employ(lifeline, two[0], 60000, "2024-09-01")   # long in work: deducted from the start
    cases = {"two": two, "alone": alone}
    ids = {label: submit_accepted(lifeline, people) for label, people in cases.items()}
    views = []
    for label, case_id in ids.items():
        assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
        views.append(lifeline.prepare_decision(case_id))
    lifeline.pass_notices(*views)
    for case_id in ids.values():
        r = decide(lifeline, case_id, "approve")
        assert r.status_code == 200, r.text
        assert r.json()["first_period"] == "2027-01"
    return {label: (ids[label], people) for label, people in cases.items()}


def test_the_deduction_applies_from_the_first_check(clocked_lifeline, households):
    case_id, _ = households["two"]
    assessment = clocked_lifeline.verification(case_id)["assessment"]
    # 60,000 − 20% (12,000) = 48,000; 24,000 a head; (103,000 − 24,000) × 2 = 158,000
    [deducted] = reasons(assessment, "EMPLOYMENT_COST_DEDUCTED")
    assert (deducted["earned_fen"], deducted["kind"], deducted["share"], deducted["deduction_fen"]) == (
        60000, "share", "0.2", 12000)
    [net] = reasons(assessment, "INCOME_NET")
    assert (net["verified_net_fen"], net["employment_cost_deduction_fen"], net["income_used_fen"]) == (
        60000, 12000, 48000)
    assert (assessment["per_capita_income_fen"], assessment["monthly_amount_fen"]) == (24000, 158000)
    assert entitlement(clocked_lifeline, case_id)["monthly_amount_fen"] == 158000


def test_a_member_who_starts_work_keeps_the_benefit_through_the_exemption_then_is_deducted(
        clocked_lifeline, households):
    lifeline = clocked_lifeline
    case_id, (_, starter) = households["two"]
    alone_id, (single,) = households["alone"]
    employ(lifeline, starter, 70000, WORK_BEGINS)
    employ(lifeline, single, 200000, WORK_BEGINS)    # twice the standard

    # Months 2 and 6 of the exemption: the new earnings are left out, the old job still deducted.
    for moment in (IN_MONTH_2, LAST_EXEMPT_DAY):
        lifeline.clock_set(moment)
        done, kept = reviewed(lifeline, case_id), reviewed(lifeline, alone_id)
        assert (done["outcome"], done["per_capita_income_fen"], done["from_period"]) == ("no_change", 24000, None)
        assert (kept["outcome"], kept["per_capita_income_fen"]) == ("no_change", 0)

    # After it: (60,000 + 70,000) − 12,000 − 14,000 = 104,000; 52,000 a head; 51,000 × 2 = 102,000
    # (without the deductions: 65,000 a head, raised to the 49,000 minimum top-up: 98,000).
    lifeline.clock_set(AFTER_EXEMPTION)
    done = reviewed(lifeline, case_id)
    assert (done["outcome"], done["per_capita_income_fen"], done["monthly_amount_fen"], done["from_period"]) == (
        "adjusted", 52000, 102000, "2027-09")
    # Alone: 200,000 less the capped 30,000 = 170,000, above the standard: the benefit ends.
    ended = reviewed(lifeline, alone_id)
    assert (ended["outcome"], ended["per_capita_income_fen"], ended["from_period"]) == (
        "terminated", 170000, "2027-09")

    item = wait_for(lambda: (e := entitlement(lifeline, case_id))["changes"] and e, what="the adjustment reaches payment")
    assert item["changes"] == [{"change": "adjust", "from_period": "2027-09", "monthly_amount_fen": 102000}]
    assert paid(item) == {p: 158000 if p <= "2027-08" else 102000 for p in paid(item)}
    stopped = wait_for(lambda: (e := entitlement(lifeline, alone_id))["changes"] and e, what="the termination")
    assert paid(stopped) == {p: 103000 if p <= "2027-08" else 0 for p in paid(stopped)}
