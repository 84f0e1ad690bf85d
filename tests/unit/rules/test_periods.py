from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from lifeline.rules.periods import (
    SHANGHAI,
    business_date,
    first_payment_period,
    next_period,
    periods_between,
    previous_period,
)


@pytest.mark.parametrize("approved_at, period", [
    (datetime(2026, 3, 15, 10, 0, tzinfo=SHANGHAI), "2026-04"),
    # 23:30 Beijing time on the last day of January is still January (15:30 UTC)
    (datetime(2026, 1, 31, 23, 30, tzinfo=SHANGHAI), "2026-02"),
    (datetime(2026, 1, 31, 15, 30, tzinfo=timezone.utc), "2026-02"),
    # 16:30 UTC on 31 January is already 1 February in Shanghai
    (datetime(2026, 1, 31, 16, 30, tzinfo=timezone.utc), "2026-03"),
    (datetime(2026, 12, 31, 23, 59, tzinfo=SHANGHAI), "2027-01"),
    (datetime(2026, 12, 31, 9, 0, tzinfo=SHANGHAI), "2027-01"),
])
def test_first_payment_period(approved_at, period):
    assert first_payment_period(approved_at) == period


def test_naive_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        first_payment_period(datetime(2026, 3, 1, 10, 0))


def test_business_date_shanghai():
    assert business_date(datetime(2026, 9, 30, 16, 0, tzinfo=timezone.utc)) == date(2026, 10, 1)


@pytest.mark.parametrize("period, nxt", [("2026-12", "2027-01"), ("2026-01", "2026-02"),
                                         ("2026-09", "2026-10")])
def test_next_previous(period, nxt):
    assert next_period(period) == nxt and previous_period(nxt) == period


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-01", "2026/01", ""])
def test_bad_period(bad):
    with pytest.raises(ValueError):
        next_period(bad)


def test_periods_between():
    assert periods_between("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
