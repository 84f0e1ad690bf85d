"""Work incentives in the income test (issue 17, seed 002 就业成本抵扣、收入豁免), to the fen.

The example county (370502 from 2026-01-01: urban standard 103,000, 据实补差, minimum top-up
49,000) leaves a member's new earnings out for 6 months from the day work began, then deducts 20%
of the earnings (rounded up to whole fen), at most 30,000 a month per earning member. Earned income
is what 人社 (hrss) reports in a row carrying a registered employment (`employed_since`).
"""
from __future__ import annotations

import copy
import dataclasses
from datetime import date, datetime

import pytest

from lifeline.domain.clock import FixedClock
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.policy import EmploymentCostDeduction, PolicyBook, PolicyError, WorkIncentives
from services.verification.assessment import DepartmentRecord, Household, assess
from services.verification.bootstrap import SPEC
from tests.unit.rules.helpers import household, member, pid, records
from tests.unit.services import pid as person
from tests.unit.services import record_row, report, service_http
from tests.unit.services.test_reviews import (
    NOW, SECRET, TOWNSHIP, approved_case, bearer, client, feed, show,
)

STARTED = date(2026, 1, 15)


def hrss(*rows: tuple[int, int, str | None], si: dict[int, int] | None = None) -> dict[str, list[dict]]:
    """人社 rows: (member n, monthly income, employed_since or None); social insurance per member."""
    out = []
    for n, income, since in rows:
        row = {"id_number": pid(n), "monthly_income_fen": income,
               "social_insurance_fen": (si or {}).get(n, 0)}
        if since is not None:
            row["employed_since"] = since
        out.append(row)
    return {"hrss": out}


def run(policy, hh, rows, on: date):
    return assess(hh, records(policy, rows), policy, on)


def reason(a, code):
    found = [r for r in a.reasons if r.code == code]
    assert len(found) == 1, (code, [r.code for r in a.reasons])
    return found[0]


def with_incentives(raw_policy, incentives: dict | None, county: int = 1, **extra) -> dict:
    data = copy.deepcopy(raw_policy)
    entry = data["counties"][county]
    if incentives is None:
        entry.pop("work_incentives", None)
    else:
        entry["work_incentives"] = incentives
    entry.update(extra)
    return data


# -- 收入豁免: month 1..N keep the benefit; after it, the deduction applies -----------------------
@pytest.mark.parametrize("on", [
    date(2026, 1, 15),   # month 1, the day work began
    date(2026, 2, 14),   # month 1, its last day
    date(2026, 2, 15),   # month 2
    date(2026, 4, 30),   # month 4
    date(2026, 6, 15),   # month 6
    date(2026, 7, 14),   # month 6, the last exempt day
])
def test_new_earnings_are_left_out_for_the_exemption_months(dongying_2026, on):
    hh = household([member(1), member(2)])
    a = run(dongying_2026, hh, hrss((2, 100000, STARTED.isoformat())), on)
    # as if nobody earned: (103,000 − 0) × 2
    assert (a.outcome, a.per_capita_income_fen, a.monthly_amount_fen) == ("eligible", 0, 206000)
    exempt = reason(a, "EARNINGS_EXEMPT")
    assert exempt.figures == {"member": exempt.figures["member"], "work_started_on": "2026-01-15",
                              "exempt_until": "2026-07-14", "exemption_months": 6,
                              "earned_fen": 100000, "earnings_exempt_fen": 100000}
    assert exempt.rule == "income.income_exemption" and "2026-07-14" in exempt.message_zh
    net = reason(a, "INCOME_NET").figures
    assert (net["verified_net_fen"], net["earnings_exempt_fen"], net["employment_cost_deduction_fen"],
            net["income_used_fen"]) == (100000, 100000, 0, 0)
    assert a.earnings_exempt_until == date(2026, 7, 14)
    assert a.to_dict()["earnings_exempt_until"] == "2026-07-14"
    assert not [r for r in a.reasons if r.code == "EMPLOYMENT_COST_DEDUCTED"]


@pytest.mark.parametrize("on", [date(2026, 7, 15), date(2026, 12, 31)])
def test_after_the_exemption_the_deduction_applies(dongying_2026, on):
    hh = household([member(1), member(2)])
    a = run(dongying_2026, hh, hrss((2, 100000, STARTED.isoformat())), on)
    # 100,000 − 20% (20,000) = 80,000; 40,000 a head; (103,000 − 40,000) × 2 = 126,000
    # (without the deduction: (103,000 − 50,000) × 2 = 106,000)
    assert (a.outcome, a.per_capita_income_fen, a.monthly_amount_fen) == ("eligible", 40000, 126000)
    ded = reason(a, "EMPLOYMENT_COST_DEDUCTED")
    assert ded.figures == {"member": ded.figures["member"], "work_started_on": "2026-01-15",
                           "earned_fen": 100000, "kind": "share", "share": "0.2", "max_fen": 30000,
                           "deduction_fen": 20000}
    assert reason(a, "INCOME_NET").figures["income_used_fen"] == 80000
    assert a.earnings_exempt_until is None and not [r for r in a.reasons if r.code == "EARNINGS_EXEMPT"]


def test_exemption_end_is_clamped_to_the_month_end(dongying_2026):
    hh = household([member(1)])
    rows = hrss((1, 50000, "2025-08-31"))
    # 31 August + 6 months = 28 February: exempt through 27 February, counted from 28 February
    assert run(dongying_2026, hh, rows, date(2026, 2, 27)).monthly_amount_fen == 103000
    counted = run(dongying_2026, hh, rows, date(2026, 2, 28))
    assert reason(counted, "EMPLOYMENT_COST_DEDUCTED").figures["deduction_fen"] == 10000
    assert counted.monthly_amount_fen == 103000 - 40000


def test_an_old_job_is_deducted_while_a_new_one_is_exempt(dongying_2026):
    """Two earners: one long in work (deducted), one who has just started (exempt)."""
    hh = household([member(1), member(2), member(3)])
    rows = hrss((1, 60000, "2020-03-01"), (2, 90000, "2026-02-01"))
    a = run(dongying_2026, hh, rows, date(2026, 3, 10))
    # 60,000 − 12,000 = 48,000 counted; 90,000 left out; 16,000 a head; 87,000 × 3
    assert (a.per_capita_income_fen, a.monthly_amount_fen) == (16000, 261000)
    assert reason(a, "EMPLOYMENT_COST_DEDUCTED").figures["deduction_fen"] == 12000
    assert reason(a, "EARNINGS_EXEMPT").figures["earnings_exempt_fen"] == 90000
    assert a.earnings_exempt_until == date(2026, 7, 31)


# -- 就业成本抵扣: a share rounded up and capped, a fixed amount, never more than the earnings ------
def test_a_share_deduction_is_capped(dongying_2026):
    hh = household([member(n) for n in (1, 2, 3, 4)])
    a = run(dongying_2026, hh, hrss((4, 200000, "2024-05-01")), date(2026, 3, 1))
    # 20% of 200,000 is 40,000, capped at 30,000: 170,000 ÷ 4 = 42,500; (103,000 − 42,500) × 4
    assert reason(a, "EMPLOYMENT_COST_DEDUCTED").figures["deduction_fen"] == 30000
    assert (a.per_capita_income_fen, a.monthly_amount_fen) == (42500, 242000)


def test_a_share_deduction_is_rounded_up_to_the_fen(dongying_2026):
    hh = household([member(1), member(2)])
    a = run(dongying_2026, hh, hrss((1, 100001, "2024-05-01")), date(2026, 3, 1))
    # 20% of 100,001 = 20,000.2 → 20,001; 80,000 ÷ 2 = 40,000; 63,000 × 2
    assert reason(a, "EMPLOYMENT_COST_DEDUCTED").figures["deduction_fen"] == 20001
    assert a.monthly_amount_fen == 126000


def test_a_fixed_deduction(raw_policy):
    book = PolicyBook.from_mapping(with_incentives(
        raw_policy, {"employment_cost_deduction": {"kind": "fixed", "fixed_fen": 25000}}))
    policy = book.policy_for("370502", date(2026, 3, 1))
    assert policy.work_incentives == WorkIncentives(EmploymentCostDeduction("fixed", fixed_fen=25000), 0)
    hh = household([member(1), member(2)])
    # no exemption configured: even a job begun last week is deducted
    a = run(policy, hh, hrss((1, 100000, "2026-02-20")), date(2026, 3, 1))
    # 100,000 − 25,000 = 75,000; 37,500 a head; 65,500 × 2
    ded = reason(a, "EMPLOYMENT_COST_DEDUCTED")
    assert ded.figures == {"member": ded.figures["member"], "work_started_on": "2026-02-20",
                           "earned_fen": 100000, "kind": "fixed", "fixed_fen": 25000, "deduction_fen": 25000}
    assert (a.per_capita_income_fen, a.monthly_amount_fen) == (37500, 131000)


@pytest.mark.parametrize("earned, si, deduction", [
    (10000, 0, 10000),       # never more than the earnings
    (20000, 2100, 17900),    # nor than the net earnings (after the member's social insurance)
    (100000, 10500, 25000),
])
def test_a_fixed_deduction_never_exceeds_the_net_earnings(raw_policy, earned, si, deduction):
    book = PolicyBook.from_mapping(with_incentives(
        raw_policy, {"employment_cost_deduction": {"kind": "fixed", "fixed_fen": 25000}}))
    policy = book.policy_for("370502", date(2026, 3, 1))
    a = run(policy, household([member(1), member(2)]), hrss((1, earned, "2020-01-01"), si={1: si}),
            date(2026, 3, 1))
    assert reason(a, "EMPLOYMENT_COST_DEDUCTED").figures["deduction_fen"] == deduction
    assert reason(a, "INCOME_NET").figures["income_used_fen"] == earned - si - deduction


def test_the_shipped_fixed_county(zhifu_2026):
    """370602 ships a fixed 20,000 and 3 months' exemption (its own 分档 amounts)."""
    hh = Household(members=(member(1), member(2)), area="urban", region_code="370602001001")
    rows = hrss((1, 100000, "2026-01-10"))
    exempt = run(zhifu_2026, hh, rows, date(2026, 4, 9))
    assert reason(exempt, "EARNINGS_EXEMPT").figures["exempt_until"] == "2026-04-09"
    assert exempt.per_capita_income_fen == 0
    after = run(zhifu_2026, hh, rows, date(2026, 4, 10))
    assert reason(after, "EMPLOYMENT_COST_DEDUCTED").figures["deduction_fen"] == 20000
    assert after.per_capita_income_fen == 40000


# -- what is earned income ------------------------------------------------------------------------
def test_income_without_a_registered_employment_is_counted_in_full(dongying_2026):
    """A pension or unemployment benefit 人社 pays carries no employed_since: no incentive."""
    hh = household([member(1), member(2)])
    a = run(dongying_2026, hh, hrss((1, 100000, None)), date(2026, 3, 1))
    assert (a.per_capita_income_fen, a.monthly_amount_fen) == (50000, 106000)
    assert not {r.code for r in a.reasons} & {"EARNINGS_EXEMPT", "EMPLOYMENT_COST_DEDUCTED"}
    net = reason(a, "INCOME_NET").figures
    assert (net["earnings_exempt_fen"], net["employment_cost_deduction_fen"]) == (0, 0)


def test_a_county_without_incentives_counts_earnings_in_full(raw_policy):
    policy = PolicyBook.from_mapping(with_incentives(raw_policy, None)).policy_for("370502", date(2026, 3, 1))
    assert policy.work_incentives == WorkIncentives()
    a = run(policy, household([member(1), member(2)]), hrss((1, 100000, "2026-02-01")), date(2026, 3, 1))
    assert a.monthly_amount_fen == 106000


def test_an_obligor_living_apart_gets_no_incentive(dongying_2026):
    son = member(2, co_resident=False, support_obligor=True, support_paid_fen=10000)
    a = run(dongying_2026, household([member(1), son]), hrss((2, 400000, "2026-02-01")), date(2026, 3, 1))
    assert not {r.code for r in a.reasons} & {"EARNINGS_EXEMPT", "EMPLOYMENT_COST_DEDUCTED"}
    assert a.monthly_amount_fen == 103000 - 10000


def test_declared_income_above_verified_is_still_deducted(dongying_2026):
    hh = household([member(1), member(2)], declared_monthly_income_fen=120000)
    a = run(dongying_2026, hh, hrss((1, 100000, "2020-01-01")), date(2026, 3, 1))
    # the declared 120,000 is used, less the 20,000 deduction of the 人社 wage: 50,000 a head
    assert reason(a, "INCOME_NET").figures["income_used_fen"] == 100000
    assert a.monthly_amount_fen == 106000


def test_a_single_person_applicant_has_their_own_earnings_deducted(dongying_2026):
    applicant = member(1, disability_grade=1, disability_kind="physical")
    hh = household([applicant, member(2)], single_person_member_id=pid(1))
    a = run(dongying_2026, hh, hrss((1, 60000, "2020-01-01"), (2, 100000, None)), date(2026, 3, 1))
    # own income 60,000 − 12,000 = 48,000: (103,000 − 48,000) × 1
    assert (a.outcome, a.per_capita_income_fen, a.monthly_amount_fen) == ("eligible", 48000, 55000)


def test_a_bad_employment_date_is_refused():
    with pytest.raises(ValueError, match="hrss.employed_since"):
        DepartmentRecord("hrss", ({"id_number": pid(1), "monthly_income_fen": 1,
                                   "employed_since": "2026-13-01"},))
    row = DepartmentRecord("hrss", ({"id_number": pid(1), "employed_since": None},)).members[0]
    assert "employed_since" not in row     # null: no registered employment


# -- the policy file ---------------------------------------------------------------------------------
def test_shipped_incentives(dongying_2026, dongying_2025, zhifu_2026):
    share = WorkIncentives(EmploymentCostDeduction("share", share=dongying_2026.work_incentives.deduction.share,
                                                   max_fen=30000), 6)
    assert dongying_2026.work_incentives == share == dongying_2025.work_incentives
    assert str(share.deduction.share) == "1/5"
    assert zhifu_2026.work_incentives == WorkIncentives(EmploymentCostDeduction("fixed", fixed_fen=20000), 3)
    assert dataclasses.replace(share.deduction, max_fen=None).for_earnings(10**9) == 2 * 10**8


WI = "counties[1].work_incentives"
DED = f"{WI}.employment_cost_deduction"


@pytest.mark.parametrize("incentives, message", [
    ({"employment_cost_deduction": {"kind": "fixed"}}, f"{DED}.fixed_fen: required field is missing"),
    ({"employment_cost_deduction": {"kind": "fixed", "fixed_fen": 0}}, f"{DED}.fixed_fen: must be > 0"),
    ({"employment_cost_deduction": {"kind": "fixed", "fixed_fen": -1}}, f"{DED}.fixed_fen: must be >= 0"),
    ({"employment_cost_deduction": {"kind": "fixed", "fixed_fen": 100, "share": "0.2"}},
     f"{DED}.share: not used by kind fixed"),
    ({"employment_cost_deduction": {"kind": "fixed", "fixed_fen": 100, "max_fen": 50}},
     f"{DED}.max_fen: not used by kind fixed"),
    ({"employment_cost_deduction": {"kind": "share"}}, f"{DED}.share: required field is missing"),
    ({"employment_cost_deduction": {"kind": "share", "share": "1.5"}}, f"{DED}.share: must be between 0 and 1"),
    ({"employment_cost_deduction": {"kind": "share", "share": "0"}}, f"{DED}.share: must be > 0"),
    ({"employment_cost_deduction": {"kind": "share", "share": "a fifth"}}, f"{DED}.share: must be a decimal"),
    ({"employment_cost_deduction": {"kind": "share", "share": "0.2", "fixed_fen": 5}},
     f"{DED}.fixed_fen: not used by kind share"),
    ({"employment_cost_deduction": {"kind": "share", "share": "0.2", "max_fen": 0}}, f"{DED}.max_fen: must be > 0"),
    ({"employment_cost_deduction": {"kind": "percent", "share": "0.2"}}, f"{DED}.kind: must be one of fixed, share"),
    ({"employment_cost_deduction": {"share": "0.2"}}, f"{DED}.kind: required field is missing"),
    ({"employment_cost_deduction": {"kind": "share", "share": "0.2", "cap": 1}}, f"{DED}.cap: unknown field"),
    ({"income_exemption_months": 13}, f"{WI}.income_exemption_months: must be <= 12"),
    ({"income_exemption_months": -1}, f"{WI}.income_exemption_months: must be >= 0"),
    ({"income_exemption_months": "6"}, f"{WI}.income_exemption_months: must be of type integer"),
    ({"exemption_months": 6}, f"{WI}.exemption_months: unknown field"),
])
def test_bad_work_incentives_are_refused_naming_the_field(raw_policy, incentives, message):
    with pytest.raises(PolicyError) as exc:
        PolicyBook.from_mapping(with_incentives(raw_policy, incentives))
    assert message in str(exc.value)
    assert exc.value.field == message.split(":")[0]


@pytest.mark.parametrize("limit, message", [
    (15, "counties[1].tekun_minor_age_limit: must be >= 16"),
    (19, "counties[1].tekun_minor_age_limit: must be <= 18"),
    ("18", "counties[1].tekun_minor_age_limit: must be of type integer"),
])
def test_bad_tekun_minor_age_limit_is_refused_naming_the_field(raw_policy, limit, message):
    with pytest.raises(PolicyError) as exc:
        PolicyBook.from_mapping(with_incentives(raw_policy, {}, tekun_minor_age_limit=limit))
    assert message in str(exc.value) and exc.value.field == message.split(":")[0]


def test_tekun_minor_age_limit_defaults_to_18(raw_policy, dongying_2026):
    data = with_incentives(raw_policy, {})
    data["counties"][1].pop("tekun_minor_age_limit", None)
    assert PolicyBook.from_mapping(data).policy_for("370502", date(2026, 3, 1)).tekun_minor_age_limit == 18
    assert dongying_2026.tekun_minor_age_limit == 18
    sixteen = PolicyBook.from_mapping(with_incentives(raw_policy, {}, tekun_minor_age_limit=16))
    assert sixteen.policy_for("370502", date(2026, 3, 1)).tekun_minor_age_limit == 16


# -- a review (issue 11) applies them too: verification's route and consumer, in process ---------
@pytest.fixture
def http(tmp_path):
    """Verification's HTTP app in process, as tests/unit/services/test_reviews.py builds it."""
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app


def review_with(http, case_id: str, hrss_rows: dict[str, tuple[int, str]]) -> dict:
    """Start a review through the route; each department answers, 人社 with these rows
    (income, employed_since); the review as its read model shows it."""
    r = client(http).post(f"/v1/reviews/{case_id}", json={"reason": "就业后复核"}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 201, r.text
    review_id = r.json()["review_id"]
    app = http.state.runtime.app
    v = app.get_verification(case_id)
    for department, request_id in v.review_requests.items():
        rows = [record_row(n) for n in v.living_household.id_numbers]
        for row in rows:
            if department == "hrss" and row["id_number"] in hrss_rows:
                row["monthly_income_fen"], row["employed_since"] = hrss_rows[row["id_number"]]
        feed(app, "DepartmentRecordsReported", report(case_id, department, request_id, rows), case_id,
             f"partner/{department}")
    http.state.runtime.projection.catch_up()
    r = client(http).get("/v1/reviews", params={"case_id": case_id}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    [done] = [d for d in r.json()["items"] if d["review_id"] == review_id]
    return done


def at(http, moment: datetime) -> None:
    http.state.runtime.app.clock = FixedClock(moment)


def test_a_review_keeps_the_amount_during_the_exemption_and_deducts_after_it(http):
    """Approved on 2026-11-25 at (103,000 − 0) × 2; the second member starts work on 2026-11-01
    earning 100,000 (exempt through 2027-04-30)."""
    ids = [person(331), person(332, female=True)]
    case_id = approved_case(http, ids)
    work = {ids[1]: (100000, "2026-11-01")}
    during = review_with(http, case_id, work)
    assert (during["outcome"], during["per_capita_income_fen"], during["from_period"]) == ("no_change", 0, None)
    at(http, datetime(2027, 5, 3, 10, 0, tzinfo=SHANGHAI))
    after = review_with(http, case_id, work)
    # 100,000 − 20,000 = 80,000; 40,000 a head; (103,000 − 40,000) × 2 = 126,000 from June
    assert (after["outcome"], after["per_capita_income_fen"], after["monthly_amount_fen"], after["from_period"]) == (
        "adjusted", 40000, 126000, "2027-06")
    assert show(http, case_id)["current_monthly_amount_fen"] == 126000


def test_the_next_review_comes_no_later_than_the_end_of_the_exemption(http):
    ids = [person(333), person(334, female=True)]
    case_id = approved_case(http, ids)
    during = review_with(http, case_id, {ids[1]: (100000, "2026-11-01")})
    assert during["outcome"] == "no_change"
    assert during["next_review_date"] <= "2027-05-01"   # exempt through 2027-04-30


def test_the_review_date_is_the_cycle_or_the_day_after_the_exemption_whichever_is_sooner():
    from services.verification.review import next_review_date

    on = date(2026, 11, 25)
    assert next_review_date(on, 12) == date(2027, 11, 25)
    assert next_review_date(on, 12, date(2027, 4, 30)) == date(2027, 5, 1)
    assert next_review_date(on, 6, date(2027, 8, 31)) == date(2027, 5, 25)  # the cycle comes first
    assert next_review_date(on, 12, date(2026, 10, 31)) == date(2027, 11, 25)  # an exemption already over
