"""What a review ends in (issue 11): the pure rules of services/verification/review.py that the
Verification aggregate calls — the review cycle from the check's records, who is taken to draw
a pension, and the outcome of the new assessment (no change, a new amount from the next
period, the end of the benefit now or after a grace period). Periods to the month."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from lifeline.rules.periods import SHANGHAI
from services.verification.assessment import assess
from services.verification.review import (
    PENSION_AGE,
    grace_months_range,
    household_review_cycle,
    income_irregular,
    pensioners,
    review_outcome,
)
from tests.unit.rules.helpers import household, member, records

DECIDED = datetime(2026, 3, 15, 10, tzinfo=SHANGHAI)  # the next period is 2026-04


def hrss(policy, *pairs: tuple[str, int]) -> dict:
    return records(policy, {"hrss": [{"id_number": i, "monthly_income_fen": v} for i, v in pairs]})


# --- the review cycle from the records -----------------------------------------------------
def test_income_is_irregular_without_a_recorded_wage_or_pension_or_when_more_is_declared(dongying_2026):
    a, b = member(1), member(2)
    hh = household([a, b])
    assert income_irregular(hh, hrss(dongying_2026))                                 # nothing recorded
    assert not income_irregular(hh, hrss(dongying_2026, (a.id_number, 30000)))       # a recorded wage
    declared_more = household([a, b], declared_monthly_income_fen=50000)
    assert income_irregular(declared_more, hrss(dongying_2026, (a.id_number, 30000)))
    assert not income_irregular(household([a, b], declared_monthly_income_fen=30000),
                                hrss(dongying_2026, (a.id_number, 30000)))
    # A member living apart does not count, nor does a person the application does not name.
    apart = member(3, co_resident=False)
    assert income_irregular(household([a, apart]), hrss(dongying_2026, (apart.id_number, 90000)))


@pytest.mark.parametrize("kind, abilities, wage, months, code", [
    ("dibao", ["full", "none"], 0, 6, "REVIEW_HALF_YEARLY"),     # irregular, one can work
    ("dibao", ["none", "none"], 0, 12, "REVIEW_ANNUAL"),         # irregular, nobody can work
    ("dibao", ["partial", "none"], 30000, 12, "REVIEW_ANNUAL"),  # a recorded wage: stable
    ("tekun", ["full", "none"], 0, 12, "REVIEW_ANNUAL"),         # 特困: annual (the seed names 低保)
])
def test_the_review_cycle_of_an_approved_household(dongying_2026, kind, abilities, wage, months, code):
    people = [member(10 + i, work_ability=a) for i, a in enumerate(abilities)]
    cycle = household_review_cycle(household(people, kind=kind),
                                   hrss(dongying_2026, (people[0].id_number, wage)), dongying_2026)
    assert (cycle.months, cycle.code) == (months, code)


def test_a_pensioner_is_a_counted_member_of_pension_age_with_income_the_hrss_department_reports(dongying_2026):
    on = date(2026, 3, 15)
    sixty = member(20, born=date(1966, 3, 15))      # 60 on the day
    younger = member(21, born=date(1966, 3, 16))    # 60 tomorrow
    old_apart = member(22, born=date(1940, 1, 1), co_resident=False)
    old_no_income = member(23, born=date(1940, 1, 1))
    hh = household([sixty, younger, old_apart, old_no_income])
    rec = hrss(dongying_2026, (sixty.id_number, 1), (younger.id_number, 90000), (old_apart.id_number, 90000))
    assert PENSION_AGE == 60
    assert [m.id_number for m in pensioners(hh, rec, on)] == [sixty.id_number]


def test_the_months_a_caseworker_may_name_for_each_grace_reason(dongying_2026):
    assert grace_months_range("graduate_employed", dongying_2026) == (6, 12)
    assert grace_months_range("epidemic", dongying_2026) == (3, 6)
    assert grace_months_range("public_employment", dongying_2026) == (24, 24)
    assert grace_months_range("disabled_employment", dongying_2026) == (36, 36)
    assert grace_months_range("pensioner", dongying_2026) == (6, 6)
    with pytest.raises(ValueError):
        grace_months_range("bogus", dongying_2026)


# --- the outcome of a review -------------------------------------------------------------------
def outcome(policy, income_per_person: int, *, people: int = 2, current: int = 206000, assets: int = 0, **kw):
    """A dibao household (urban, 103,000 fen in 2026) of `people`, each earning `income_per_person`."""
    members = [member(40 + i) for i in range(people)]
    rows = {"hrss": [{"id_number": m.id_number, "monthly_income_fen": income_per_person} for m in members],
            "bank": [{"id_number": members[0].id_number, "assets_fen": assets}]}
    a = assess(household(members), records(policy, rows), policy, DECIDED)
    return review_outcome(a, current_amount_fen=current, standard_fen=policy.urban_standard_fen,
                          decided_at=DECIDED, policy=policy, **kw)


def test_still_eligible_at_the_same_amount_changes_nothing(dongying_2026):
    r = outcome(dongying_2026, 0)  # (103,000 − 0) × 2
    assert (r.outcome, r.monthly_amount_fen, r.from_period, r.grace) == ("no_change", None, None, None)


def test_a_lower_income_or_a_higher_one_below_the_line_adjusts_from_the_next_period(dongying_2026):
    r = outcome(dongying_2026, 40000)  # (103,000 − 40,000) × 2
    assert (r.outcome, r.monthly_amount_fen, r.from_period) == ("adjusted", 126000, "2026-04")
    r = outcome(dongying_2026, 0, current=150000)
    assert (r.outcome, r.monthly_amount_fen, r.from_period) == ("adjusted", 206000, "2026-04")


def test_income_above_the_line_without_a_grace_reason_terminates_from_the_next_period(dongying_2026):
    r = outcome(dongying_2026, 103000)  # exactly the standard: not below it
    assert (r.outcome, r.from_period, r.grace) == ("terminated", "2026-04", None)


@pytest.mark.parametrize("income, result, first_unpaid", [
    (103000, "grace", "2026-10"),       # 1× (以上 includes the figure): 6 more periods, 2026-04 .. 2026-09
    (206000, "grace", "2026-10"),       # 2× (以下 includes the figure)
    (206001, "terminated", "2026-04"),  # above the band
])
def test_a_pensioner_between_1_and_2_times_the_standard_gets_6_months(dongying_2026, income, result, first_unpaid):
    r = outcome(dongying_2026, income, pensioner=True)
    assert (r.outcome, r.from_period) == (result, first_unpaid)
    if result == "grace":
        assert r.grace == {"reason": "pensioner", "months": 6, "last_paid_period": "2026-09"}


@pytest.mark.parametrize("reason, months, first_unpaid, last_paid", [
    ("graduate_employed", None, "2027-04", "2027-03"),   # the policy's default, 12
    ("graduate_employed", 9, "2027-01", "2026-12"),
    ("public_employment", None, "2028-04", "2028-03"),   # 24
    ("disabled_employment", None, "2029-04", "2029-03"), # 36
    ("epidemic", 4, "2026-08", "2026-07"),
])
def test_a_grace_the_caseworker_names_keeps_paying_then_stops(dongying_2026, reason, months, first_unpaid, last_paid):
    r = outcome(dongying_2026, 300000, grace_reason=reason, grace_months=months)
    assert (r.outcome, r.from_period, r.grace["reason"], r.grace["last_paid_period"]) == (
        "grace", first_unpaid, reason, last_paid)
    assert r.monthly_amount_fen is None  # the amount in force is paid during the grace


def test_no_grace_when_the_income_is_below_the_line_or_the_assets_are_the_reason(dongying_2026):
    assert outcome(dongying_2026, 40000, grace_reason="epidemic").outcome == "adjusted"
    r = outcome(dongying_2026, 0, assets=10**9, grace_reason="epidemic", pensioner=True)
    assert (r.outcome, r.from_period, r.grace) == ("terminated", "2026-04", None)


def test_a_named_months_outside_the_range_is_refused(dongying_2026):
    with pytest.raises(ValueError):
        outcome(dongying_2026, 300000, grace_reason="epidemic", grace_months=7)


def test_a_check_that_could_not_conclude_changes_nothing(dongying_2026):
    members = [member(60), member(61)]
    a = assess(household(members), records(dongying_2026, skip=("tax",)), dongying_2026, DECIDED)
    assert a.outcome == "needs_appraisal"
    r = review_outcome(a, current_amount_fen=206000, standard_fen=103000, decided_at=DECIDED, policy=dongying_2026)
    assert (r.outcome, r.from_period) == ("no_change", None)
