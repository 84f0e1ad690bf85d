"""The clerk's intake form: amounts typed in 元 become fen exactly, and member rows come back
numbered as the body numbers them (the service's errors name the body's index)."""

from __future__ import annotations

import pytest

from lifeline.console.forms import fen_of
from lifeline.console.routes.clerk import clock_state, member_rows


@pytest.mark.parametrize("typed, fen", [
    ("1234.5", 123450), ("1234.56", 123456), ("0", 0), ("0.05", 5), ("0.5", 50), (" 12 ", 1200),
    ("1,234.50", 123450), ("1,000,000", 100000000), ("19.99", 1999),
])
def test_yuan_typed_become_fen_exactly(typed, fen):
    assert fen_of(typed) == fen


@pytest.mark.parametrize("typed", ["", "abc", "12,3x", "1.234", "-5", "1e3", ".5", "12.", "1,23", "１２３４.5x",
                                   "12 34", "0x10"])
def test_anything_else_is_refused(typed):
    assert fen_of(typed) is None


def test_member_rows_are_numbered_again_without_the_removed_and_empty_rows():
    values = {"region_code": "370502101001",
              "members.0.id_number": "A", "members.0.name": "甲", "members.0.relation": "self",
              "members.2.id_number": "B", "members.2.name": "乙", "members.2.relation": "spouse",
              "members.3.id_number": "", "members.3.name": "", "members.3.relation": ""}
    rest, rows = member_rows(values)
    assert rows == [{"id_number": "A", "name": "甲", "relation": "self"},
                    {"id_number": "B", "name": "乙", "relation": "spouse"}]
    assert rest["members.1.id_number"] == "B" and "members.2.id_number" not in rest
    assert rest["region_code"] == "370502101001"


def test_a_clock_is_breached_after_its_last_day_even_before_the_watch_says_so():
    from datetime import date

    assert clock_state("2026-12-07", date(2026, 12, 1), stopped=False, breached=False) == "open"
    assert clock_state("2026-12-07", date(2026, 12, 7), stopped=False, breached=False) == "due_today"
    assert clock_state("2026-12-07", date(2026, 12, 8), stopped=False, breached=False) == "breached"
    assert clock_state("2026-12-07", date(2026, 12, 1), stopped=False, breached=True) == "breached"
    assert clock_state("2026-12-07", date(2026, 12, 8), stopped=True, breached=True) is None
