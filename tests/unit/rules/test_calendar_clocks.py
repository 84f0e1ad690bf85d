from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from lifeline.rules import clocks
from lifeline.rules.calendar import (
    CalendarError,
    StatutoryCalendar,
    default_calendar,
    install_calendar,
    load_calendar,
    shipped_calendar,
)
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.setup import install_rules
from lifeline.settings import Settings

REPO = Path(__file__).resolve().parents[3]
EXAMPLE_2027 = REPO / "config" / "calendar" / "2027.example.yaml"
CAL = StatutoryCalendar()


def at(y, m, d, h=10, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=SHANGHAI)


def end_of(d: date) -> datetime:
    """24:00 of d == 00:00 of the next day (Deadline.due_at convention)."""
    n = d + timedelta(days=1)
    return datetime(n.year, n.month, n.day, tzinfo=SHANGHAI)


# -- day kinds across the 2026 holidays ----------------------------------------------------------
@pytest.mark.parametrize("d, working", [
    (date(2026, 9, 20), True),    # Sunday, make-up working day for National Day
    (date(2026, 9, 25), False),   # Friday, Mid-Autumn Festival
    (date(2026, 9, 30), True),    # last working day before National Day
    (date(2026, 10, 1), False),
    (date(2026, 10, 7), False),
    (date(2026, 10, 8), True),
    (date(2026, 10, 10), True),   # Saturday, make-up working day
    (date(2026, 10, 11), False),  # ordinary Sunday
    (date(2026, 2, 14), True),    # Saturday, make-up day before Spring Festival
    (date(2026, 2, 16), False),   # Spring Festival
    (date(2026, 2, 23), False),   # Spring Festival (Monday)
    (date(2026, 2, 24), True),
    (date(2026, 2, 28), True),    # Saturday, make-up day after Spring Festival
    (date(2026, 1, 1), False),
    (date(2026, 1, 4), True),     # Sunday, make-up for New Year
])
def test_working_days_2026(d, working):
    assert CAL.is_working_day(d) is working
    assert CAL.is_rest_day(d) is (not working)


def test_makeup_day_flag():
    assert CAL.is_makeup_working_day(date(2026, 9, 20))
    assert not CAL.is_makeup_working_day(date(2026, 9, 21))


# -- working-day clocks (SPEC §4 examples first) -------------------------------------------------
@pytest.mark.parametrize("start, n, due", [
    (date(2026, 9, 29), 3, date(2026, 10, 9)),    # SPEC: Sep 30, Oct 8, Oct 9
    (date(2026, 9, 18), 3, date(2026, 9, 22)),    # SPEC: Sun Sep 20 is a make-up working day
    (date(2026, 9, 30), 1, date(2026, 10, 8)),    # last working day before a holiday
    (date(2026, 9, 30), 3, date(2026, 10, 10)),   # ends on a make-up Saturday
    (date(2026, 10, 3), 3, date(2026, 10, 10)),   # starting inside the holiday
    (date(2026, 2, 12), 3, date(2026, 2, 24)),    # Feb 13, Sat Feb 14, Feb 24
    (date(2026, 2, 13), 3, date(2026, 2, 25)),    # Sat Feb 14, Feb 24, Feb 25
    (date(2026, 2, 14), 3, date(2026, 2, 26)),    # start on the make-up Saturday
    (date(2026, 2, 25), 3, date(2026, 2, 28)),    # ends on make-up Saturday Feb 28
    (date(2025, 12, 31), 3, date(2026, 1, 6)),    # Sun Jan 4 make-up, Jan 5, Jan 6
    (date(2026, 9, 21), 20, date(2026, 10, 26)),  # whole procedure across National Day
    (date(2026, 9, 21), 30, date(2026, 11, 9)),   # with a major dispute
])
def test_add_working_days(start, n, due):
    assert CAL.add_working_days(start, n) == due
    assert CAL.working_days_between(start, due) == n


def test_spec_examples_as_deadlines():
    d1 = clocks.verification_request_due(at(2026, 9, 29, 16), CAL)
    assert d1.due_at == end_of(date(2026, 10, 9)) and d1.due_date == date(2026, 10, 9)
    assert d1.calendar_known and d1.warnings == ()
    d2 = clocks.verification_request_due(at(2026, 9, 18, 9), CAL)
    assert d2.due_at == end_of(date(2026, 9, 22))
    assert d2.due_at.tzinfo is SHANGHAI and d2.due_at.utcoffset() == timedelta(hours=8)


def test_start_moment_is_read_in_shanghai():
    # 17:00 UTC on Sep 28 is 01:00 on Sep 29 in Beijing: the starting day is Sep 29
    d = clocks.verification_request_due(datetime(2026, 9, 28, 17, 0, tzinfo=timezone.utc), CAL)
    assert d.start_date == date(2026, 9, 29) and d.due_date == date(2026, 10, 9)


def test_breach_and_warning_moments():
    d = clocks.decision_due(at(2026, 9, 29), CAL)
    assert d.warn_at == at(2026, 10, 9, 0)
    assert not d.is_breached(datetime(2026, 10, 9, 23, 59, 59, tzinfo=SHANGHAI))
    assert d.is_warning(datetime(2026, 10, 9, 23, 59, 59, tzinfo=SHANGHAI))
    assert d.is_breached(at(2026, 10, 10, 0))
    assert not d.is_warning(at(2026, 10, 8, 12))
    with pytest.raises(ValueError):
        d.is_breached(datetime(2026, 10, 10))


@pytest.mark.parametrize("fn, due", [
    (clocks.verification_request_due, date(2026, 10, 9)),
    (clocks.household_survey_due, date(2026, 10, 9)),
    (clocks.initial_review_due, date(2026, 10, 9)),
    (clocks.democratic_appraisal_due, date(2026, 10, 9)),
    (clocks.decision_due, date(2026, 10, 9)),
    (clocks.refusal_notice_due, date(2026, 10, 9)),
])
def test_three_working_day_clocks(fn, due):
    d = fn(at(2026, 9, 29), CAL)
    assert d.due_date == due and d.warn_at < d.due_at


def test_verification_report_three_to_five():
    d = clocks.verification_report_due(at(2026, 9, 29), CAL)
    assert d.due_date == date(2026, 10, 12)          # Oct 9 (3), Sat Oct 10 (4), Oct 12 (5)
    assert d.warn_at == end_of(date(2026, 10, 9))    # 3-day target passed


def test_whole_procedure():
    d = clocks.whole_procedure_due(at(2026, 9, 21), cal=CAL)
    assert d.due_date == date(2026, 10, 26)
    assert d.warn_at == at(2026, 10, 22, 0)          # the last 3 working days
    assert clocks.whole_procedure_due(at(2026, 9, 21), CAL, major_dispute=True).due_date == date(2026, 11, 9)


def test_referral_and_emergency():
    assert clocks.referral_due(at(2026, 9, 29), 1, CAL).due_date == date(2026, 9, 30)
    assert clocks.referral_due(at(2026, 9, 30), 2, CAL).due_date == date(2026, 10, 9)
    d = clocks.emergency_post_approval_due(at(2026, 2, 12), 5, CAL)
    assert d.due_date == date(2026, 2, 26)   # Feb 13, Sat Feb 14, Feb 24, 25, 26


# -- calendar-day clock: public notice 7 days (Civil Code art. 203) ------------------------------
@pytest.mark.parametrize("posted, due", [
    (date(2026, 9, 14), date(2026, 9, 21)),   # Monday → Monday, ordinary
    (date(2026, 9, 13), date(2026, 9, 20)),   # ends on a make-up Sunday: NOT moved
    (date(2026, 9, 12), date(2026, 9, 20)),   # ends Sat Sep 19 (rest) → first day after: Sep 20
    (date(2026, 9, 24), date(2026, 10, 8)),   # ends Oct 1 (holiday) → Oct 8
    (date(2026, 9, 18), date(2026, 9, 28)),   # ends Fri Sep 25 Mid-Autumn → Mon Sep 28
    (date(2026, 2, 10), date(2026, 2, 24)),   # ends Feb 17 Spring Festival → Feb 24
    (date(2026, 2, 7), date(2026, 2, 14)),    # ends on make-up Saturday Feb 14: not moved
    (date(2026, 10, 3), date(2026, 10, 10)),  # ends on make-up Saturday Oct 10
])
def test_public_notice(posted, due):
    d = clocks.public_notice_due(at(posted.year, posted.month, posted.day), CAL)
    assert d.due_date == due and d.due_at == end_of(due)


# -- unknown years and operator-loaded arrangements -----------------------------------------------
def test_unknown_year_falls_back_with_warning():
    cal = StatutoryCalendar()
    assert not cal.is_known_year(2027) and cal.is_known_year(2026) and cal.is_known_year(2004)
    d = clocks.verification_request_due(at(2026, 12, 31), cal)
    assert d.due_date == date(2027, 1, 5)            # Fri Jan 1 (weekday fallback), Jan 4, Jan 5
    assert not d.calendar_known
    assert any("CALENDAR_UNKNOWN:2027" in w for w in d.warnings)
    # a period fully inside a known year carries no warning
    assert clocks.verification_request_due(at(2026, 12, 1), cal).calendar_known


def test_default_calendar_does_not_load_the_example():
    assert not default_calendar().is_known_year(2027)


def test_example_file_refused_unless_allowed():
    cal = StatutoryCalendar()
    with pytest.raises(CalendarError, match="example"):
        cal.load_arrangement(EXAMPLE_2027)
    assert not cal.is_known_year(2027)
    cal.load_arrangement(EXAMPLE_2027, allow_example=True)
    assert cal.is_known_year(2027)


def test_operator_loads_published_arrangement(tmp_path):
    path = tmp_path / "2027.yaml"
    path.write_text(
        "year: 2027\nsource: 国务院办公厅通知\nholidays:\n"
        "  - name: 元旦\n    dates: [{from: 2027-01-01, to: 2027-01-03}]\n"
        "  - 2027-02-08\n"
        "makeup_working_days: [2027-02-20]\n", encoding="utf-8")
    cal = StatutoryCalendar()
    cal.load_arrangement(path)
    d = clocks.verification_request_due(at(2026, 12, 31), cal)
    assert d.calendar_known and d.due_date == date(2027, 1, 6)   # Jan 4, 5, 6
    assert cal.is_working_day(date(2027, 2, 20)) and not cal.is_working_day(date(2027, 2, 8))
    assert cal.is_working_day(date(2027, 2, 9))


@pytest.mark.parametrize("body, fragment", [
    ("year: 2027\nmakeup_working_days: [2027-02-22]\n", "not a Saturday or Sunday"),
    ("year: 2027\nholidays: [2028-01-01]\n", "not in year 2027"),
    ("year: 2027\nbogus: 1\n", "bogus: unknown field"),
    ("year: '2027'\n", "year: must be an integer"),
    ("year: 2027\nholidays: [2027-02-20]\nmakeup_working_days: [2027-02-20]\n", "also a holiday"),
    ("year: 2027\nholidays: [not-a-date]\n", "must be a date"),
])
def test_bad_arrangement_refused(tmp_path, body, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    cal = StatutoryCalendar()
    with pytest.raises(CalendarError, match=fragment):
        cal.load_arrangement(path)
    assert not cal.is_known_year(2027)


def test_naive_start_refused():
    with pytest.raises(ValueError):
        clocks.verification_request_due(datetime(2026, 9, 29, 10), CAL)


def test_every_spec_clock_is_registered():
    assert set(clocks.CLOCKS) >= {
        "verification_request", "verification_report", "household_survey", "initial_review",
        "public_notice", "democratic_appraisal", "decision", "refusal_notice", "whole_procedure",
        "whole_procedure_major_dispute", "referral", "emergency_post_approval",
        "discovery_contact"}
    assert clocks.CLOCKS["public_notice"].kind == "calendar"


# -- every clock across the 2026 Spring Festival (Feb 15-23 off; Sat Feb 14 and Sat Feb 28 work) ---
# Start Thu 2026-02-12. Working days after it: Feb 13, Sat 14, 24, 25, 26, 27, Sat 28, Mar 2 ...
@pytest.mark.parametrize("fn, due, warn", [
    (clocks.verification_request_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    (clocks.household_survey_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    (clocks.initial_review_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    (clocks.democratic_appraisal_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    (clocks.decision_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    (clocks.refusal_notice_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    # 3-5 working days: warned once the 3-day target (end of Feb 24) has passed, due end of Feb 26
    (clocks.verification_report_due, date(2026, 2, 26), end_of(date(2026, 2, 24))),
    # 7 calendar days end Thu Feb 19, a holiday: moved to the first working day after, Feb 24
    (clocks.public_notice_due, date(2026, 2, 24), at(2026, 2, 24, 0)),
    # 20 working days: ... Sat Feb 28 (7), Mar 2-6 (8-12), Mar 9-13 (13-17), Mar 16-18 (18-20)
    (clocks.whole_procedure_due, date(2026, 3, 18), at(2026, 3, 16, 0)),
    (lambda s, c: clocks.whole_procedure_due(s, c, major_dispute=True), date(2026, 4, 1), at(2026, 3, 30, 0)),
    (lambda s, c: clocks.referral_due(s, 5, c), date(2026, 2, 26), at(2026, 2, 26, 0)),
    (lambda s, c: clocks.emergency_post_approval_due(s, 5, c), date(2026, 2, 26),
     at(2026, 2, 26, 0)),
])
def test_every_clock_across_spring_festival(fn, due, warn):
    d = fn(at(2026, 2, 12, 15), CAL)
    assert d.due_date == due and d.due_at == end_of(due)
    assert d.warn_at == warn and d.warn_at < d.due_at
    assert d.calendar_known and d.warnings == ()


@pytest.mark.parametrize("start, n, due", [
    (date(2026, 2, 14), 1, date(2026, 2, 24)),   # make-up Sat Feb 14: last working day before SF
    (date(2026, 2, 27), 1, date(2026, 2, 28)),   # Fri → make-up Saturday Feb 28
    (date(2026, 9, 19), 1, date(2026, 9, 20)),   # Sat (rest) → make-up Sunday Sep 20
    (date(2026, 12, 31), 1, date(2027, 1, 1)),   # Dec 31 → unknown 2027: weekday fallback
])
def test_single_working_day_edges(start, n, due):
    assert CAL.add_working_days(start, n) == due


def test_calendar_directory_loaded_without_release(tmp_path, monkeypatch):
    """An operator drops 2027.yaml in the calendar directory; a restart (which installs the rules
    from the settings) picks it up and the working days change — no code change."""
    (tmp_path / "2027.yaml").write_text(
        "year: 2027\nsource: 国务院办公厅通知\n"
        "holidays: [{name: 元旦, dates: [{from: 2027-01-01, to: 2027-01-03}]}]\n"
        "makeup_working_days: []\n", encoding="utf-8")
    assert load_calendar(tmp_path).is_known_year(2027)
    monkeypatch.setenv("LIFELINE_CALENDAR_DIR", str(tmp_path))
    assert not default_calendar().is_known_year(2027)  # the rules module reads no environment
    install_rules(Settings.from_env())  # a service's start
    try:
        cal = default_calendar()
        assert cal.is_known_year(2027) and not cal.is_working_day(date(2027, 1, 1))
        d = clocks.verification_request_due(at(2026, 12, 31))   # the process-wide calendar
        assert d.calendar_known and d.due_date == date(2027, 1, 6)
    finally:
        install_calendar(None)
    assert default_calendar() is shipped_calendar()
    assert not default_calendar().is_known_year(2027)


def test_bad_calendar_file_stops_loading_naming_the_file(tmp_path):
    (tmp_path / "2027.yaml").write_text("year: 2027\nholidays: [2026-05-01]\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=re.escape(str(tmp_path / "2027.yaml"))):
        load_calendar(tmp_path)
    assert not default_calendar().is_known_year(2027)


