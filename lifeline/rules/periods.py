"""Business dates and monthly payment periods, always in Asia/Shanghai (SPEC §3).

An approval at 23:30 Beijing time on 31 January is a January approval even though it is
already 15:30 UTC; so every date used by a rule goes through :func:`business_date`.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def require_aware(moment: datetime, name: str = "moment") -> datetime:
    """Naive datetimes are refused: a wall-clock time without an offset is ambiguous."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {moment.isoformat()})")
    return moment


def to_shanghai(moment: datetime) -> datetime:
    return require_aware(moment).astimezone(SHANGHAI)


def business_date(moment: datetime) -> date:
    """The calendar date of ``moment`` in Asia/Shanghai."""
    return to_shanghai(moment).date()


def start_of_day(d: date) -> datetime:
    """00:00 of ``d`` in Asia/Shanghai (aware)."""
    return datetime(d.year, d.month, d.day, tzinfo=SHANGHAI)


def parse_period(period: str) -> tuple[int, int]:
    m = _PERIOD.match(period) if isinstance(period, str) else None
    if not m:
        raise ValueError(f"payment period must look like YYYY-MM, got {period!r}")
    return int(m.group(1)), int(m.group(2))


def format_period(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def period_of(d: date) -> str:
    """The payment period (``YYYY-MM``) a business date falls in."""
    return format_period(d.year, d.month)


def add_periods(period: str, months: int) -> str:
    year, month = parse_period(period)
    index = year * 12 + (month - 1) + months
    return format_period(index // 12, index % 12 + 1)


def next_period(period: str) -> str:
    return add_periods(period, 1)


def previous_period(period: str) -> str:
    return add_periods(period, -1)


def period_start(period: str) -> date:
    year, month = parse_period(period)
    return date(year, month, 1)


def periods_between(first: str, last: str) -> list[str]:
    """Inclusive list of periods from ``first`` to ``last`` (empty if last < first)."""
    out: list[str] = []
    current = first
    while parse_period(current) <= parse_period(last):
        out.append(current)
        current = next_period(current)
    return out


def first_payment_period(approved_at: datetime) -> str:
    """Payment starts the month after approval (seed 002 §审核确认: 自确认之日下月起发放保障金)."""
    return next_period(period_of(business_date(require_aware(approved_at, "approved_at"))))
