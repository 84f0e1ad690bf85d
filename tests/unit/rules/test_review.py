from __future__ import annotations

from datetime import date, datetime

import pytest

from lifeline.rules.periods import SHANGHAI
from services.verification.review import (
    first_unpaid_period,
    grace_period,
    last_paid_period,
    next_review_date,
    review_cycle,
)
from tests.unit.rules.helpers import household, member


@pytest.mark.parametrize("irregular, abilities, months", [
    (False, ["full"], 12),
    (True, ["full", "none"], 6),
    (True, ["partial"], 6),
    (True, ["none", "none"], 12),     # irregular income but nobody can work: annual
])
def test_review_cycle(dongying_2026, irregular, abilities, months):
    hh = household([member(i, work_ability=a) for i, a in enumerate(abilities)])
    assert review_cycle(hh, income_irregular=irregular, policy=dongying_2026).months == months


@pytest.mark.parametrize("last, months, nxt", [
    (date(2026, 3, 15), 12, date(2027, 3, 15)),
    (date(2026, 8, 31), 6, date(2027, 2, 28)),
    (date(2024, 2, 29), 12, date(2025, 2, 28)),
])
def test_next_review_date(last, months, nxt):
    assert next_review_date(last, months) == nxt


@pytest.mark.parametrize("pci, granted, months, code", [
    (102999, False, 0, "STILL_BELOW_STANDARD"),
    (103000, True, 6, "GRACE_PENSIONER"),       # exactly 1× (以上 includes the figure)
    (206000, True, 6, "GRACE_PENSIONER"),       # exactly 2× (以下 includes the figure)
    (206001, False, 0, "ABOVE_GRACE_BAND"),
])
def test_pensioner_grace(dongying_2026, pci, granted, months, code):
    g = grace_period("pensioner", policy=dongying_2026, per_capita_income_fen=pci,
                     standard_fen=dongying_2026.urban_standard_fen)
    assert (g.granted, g.months, g.code) == (granted, months, code)


@pytest.mark.parametrize("reason, months, expected", [
    ("graduate_employed", None, 12), ("graduate_employed", 6, 6), ("graduate_employed", 12, 12),
    ("public_employment", None, 24), ("disabled_employment", None, 36),
    ("epidemic", None, 3), ("epidemic", 6, 6),
])
def test_other_grace_periods(dongying_2026, reason, months, expected):
    assert grace_period(reason, policy=dongying_2026, months=months).months == expected


@pytest.mark.parametrize("reason, months", [("graduate_employed", 5), ("graduate_employed", 13),
                                            ("epidemic", 2), ("epidemic", 7), ("bogus", None)])
def test_grace_out_of_range_refused(dongying_2026, reason, months):
    with pytest.raises(ValueError):
        grace_period(reason, policy=dongying_2026, months=months)


@pytest.mark.parametrize("decided, grace, first_unpaid, last_paid", [
    (datetime(2026, 3, 15, 10, tzinfo=SHANGHAI), 0, "2026-04", "2026-03"),
    (datetime(2026, 3, 15, 10, tzinfo=SHANGHAI), 6, "2026-10", "2026-09"),
    (datetime(2026, 12, 31, 23, 30, tzinfo=SHANGHAI), 0, "2027-01", "2026-12"),
    (datetime(2026, 12, 31, 23, 30, tzinfo=SHANGHAI), 24, "2029-01", "2028-12"),
    (datetime(2026, 5, 20, tzinfo=SHANGHAI), 36, "2029-06", "2029-05"),
])
def test_first_unpaid_period(decided, grace, first_unpaid, last_paid):
    assert first_unpaid_period(decided, grace) == first_unpaid
    assert last_paid_period(decided, grace) == last_paid
