"""The Chinese statutory working-day calendar (法定节假日 + 调休).

Sources, in order of precedence for a given year:
1. an arrangement an operator loaded from YAML (``load_arrangement``) — the State Council's
   published notice for a year the installed package does not know, or a correction;
2. the ``chinese-calendar`` package (knows 2004-2026 in version 1.11.0);
3. otherwise the year is *unknown*: Monday-Friday are treated as working days and every caller
   that asks through :meth:`StatutoryCalendar.warnings_for` gets a warning to show.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from lifeline.errors import ConfigurationError
from lifeline.rules.installed import Installed

try:  # the package is a declared dependency, but the calendar must still work without it
    import chinese_calendar as _cc
except ImportError:  # pragma: no cover
    _cc = None

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CALENDAR_DIR = REPO_ROOT / "config" / "calendar"


class CalendarError(ConfigurationError):
    """An arrangement file that cannot be used; the message names the field."""


@dataclass(frozen=True)
class YearArrangement:
    """One year's published arrangement: rest days off the normal week and make-up working days."""

    year: int
    holidays: frozenset[date]
    makeup_working_days: frozenset[date]
    source: str = ""
    example: bool = False
    names: dict[date, str] = field(default_factory=dict, compare=False, hash=False)

    def is_working_day(self, d: date) -> bool:
        if d in self.makeup_working_days:
            return True
        if d in self.holidays:
            return False
        return d.weekday() < 5


@lru_cache(maxsize=None)
def _package_knows(year: int) -> bool:
    if _cc is None:
        return False
    try:
        _cc.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


@lru_cache(maxsize=1 << 16)
def _package_workday(d: date) -> bool:
    # The package's tables never change in a process; asking it costs ~18 µs a day, and the
    # procedure's deadlines step day by day (a third of an acceptance's handling, measured).
    return bool(_cc.is_workday(d))


def unknown_year_warning(year: int) -> str:
    return (
        f"CALENDAR_UNKNOWN:{year}: {year}年法定节假日安排未载入，工作日暂按周一至周五计算，"
        f"请载入国务院办公厅公布的{year}年放假安排 "
        f"(holiday arrangement for {year} unknown; weekdays used)"
    )


class StatutoryCalendar:
    """Working days per the statutory calendar; immutable apart from ``load_arrangement``."""

    def __init__(
        self,
        arrangements: Iterable[YearArrangement] = (),
        *,
        use_package: bool = True,
    ) -> None:
        self._use_package = use_package and _cc is not None
        self._lock = threading.Lock()
        self._arrangements: dict[int, YearArrangement] = {a.year: a for a in arrangements}

    # -- knowledge -------------------------------------------------------------------------
    def is_known_year(self, year: int) -> bool:
        return year in self._arrangements or (self._use_package and _package_knows(year))

    def arrangement(self, year: int) -> YearArrangement | None:
        return self._arrangements.get(year)

    def warnings_for(self, start: date, end: date) -> tuple[str, ...]:
        """One warning per year in [start, end] the calendar does not know."""
        lo, hi = min(start, end), max(start, end)
        return tuple(unknown_year_warning(y) for y in range(lo.year, hi.year + 1)
                     if not self.is_known_year(y))

    # -- day kinds -------------------------------------------------------------------------
    def is_working_day(self, d: date) -> bool:
        arrangement = self._arrangements.get(d.year)
        if arrangement is not None:
            return arrangement.is_working_day(d)
        if self._use_package and _package_knows(d.year):
            return _package_workday(d)
        return d.weekday() < 5  # unknown year: weekdays (callers get a warning)

    def is_rest_day(self, d: date) -> bool:
        """Weekend or statutory holiday, but not a make-up working day."""
        return not self.is_working_day(d)

    def is_makeup_working_day(self, d: date) -> bool:
        """A Saturday or Sunday that is a working day by 调休."""
        return d.weekday() >= 5 and self.is_working_day(d)

    def is_holiday(self, d: date) -> bool:
        """A Monday-Friday that is a rest day (a statutory holiday or a swapped day off)."""
        return d.weekday() < 5 and not self.is_working_day(d)

    # -- arithmetic ------------------------------------------------------------------------
    def add_working_days(self, d: date, n: int) -> date:
        """The ``n``-th working day after ``d`` (``d`` itself never counts); ``n`` < 0 counts back;
        ``n`` == 0 returns ``d``."""
        step = 1 if n >= 0 else -1
        remaining = abs(n)
        current = d
        while remaining:
            current += timedelta(days=step)
            if self.is_working_day(current):
                remaining -= 1
        return current

    def next_working_day(self, d: date) -> date:
        """``d`` itself if it is a working day, else the first working day after it."""
        current = d
        while not self.is_working_day(current):
            current += timedelta(days=1)
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end] — the Civil Code way of counting from ``start``."""
        if end <= start:
            return 0
        count, current = 0, start
        while current < end:
            current += timedelta(days=1)
            count += self.is_working_day(current)
        return count

    # -- configuration ---------------------------------------------------------------------
    def add_arrangement(self, arrangement: YearArrangement) -> None:
        with self._lock:
            updated = dict(self._arrangements)
            updated[arrangement.year] = arrangement
            self._arrangements = updated  # swap, so readers never see a half-built dict

    def load_arrangement(self, path: str | os.PathLike[str], *, allow_example: bool = False
                         ) -> YearArrangement:
        """Load one year's arrangement from YAML and put it in force for that year.

        A file marked ``example: true`` is refused unless ``allow_example`` (tests only), so the
        shipped example cannot silently stand in for the State Council's notice.
        """
        arrangement = read_arrangement(path)
        if arrangement.example and not allow_example:
            raise CalendarError(f"{path}: example: this file is an example, not a published "
                                f"arrangement; replace it with the State Council's notice")
        self.add_arrangement(arrangement)
        return arrangement


def _as_date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise CalendarError(f"{where}: must be a date YYYY-MM-DD")


def _date_list(raw: Any, where: str) -> list[date]:
    """Accepts a list of dates and/or ``{from: d, to: d}`` ranges."""
    if not isinstance(raw, list):
        raise CalendarError(f"{where}: must be a list")
    out: list[date] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if isinstance(item, dict):
            unknown = set(item) - {"from", "to", "name"}
            if unknown:
                raise CalendarError(f"{here}.{sorted(unknown)[0]}: unknown field")
            lo = _as_date(item.get("from"), f"{here}.from")
            hi = _as_date(item.get("to"), f"{here}.to")
            if hi < lo:
                raise CalendarError(f"{here}.to: must not be before from")
            d = lo
            while d <= hi:
                out.append(d)
                d += timedelta(days=1)
        else:
            out.append(_as_date(item, here))
    return out


def parse_arrangement(data: Any, origin: str = "arrangement") -> YearArrangement:
    if not isinstance(data, dict):
        raise CalendarError(f"{origin}: must be a mapping")
    unknown = set(data) - {"year", "source", "example", "holidays", "makeup_working_days"}
    if unknown:
        raise CalendarError(f"{sorted(unknown)[0]}: unknown field")
    year = data.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 1949 <= year <= 2200:
        raise CalendarError("year: must be an integer year")
    example = data.get("example", False)
    if not isinstance(example, bool):
        raise CalendarError("example: must be true or false")
    holidays: set[date] = set()
    names: dict[date, str] = {}
    raw_holidays = data.get("holidays", [])
    if not isinstance(raw_holidays, list):
        raise CalendarError("holidays: must be a list")
    for i, entry in enumerate(raw_holidays):
        if isinstance(entry, dict) and "dates" in entry:
            extra = set(entry) - {"name", "dates"}
            if extra:
                raise CalendarError(f"holidays[{i}].{sorted(extra)[0]}: unknown field")
            days = _date_list(entry["dates"], f"holidays[{i}].dates")
            for d in days:
                names[d] = str(entry.get("name", ""))
        else:
            days = _date_list([entry], "holidays")
        holidays.update(days)
    makeup = set(_date_list(data.get("makeup_working_days", []), "makeup_working_days"))
    for d in sorted(holidays | makeup):
        if d.year != year:
            raise CalendarError(f"holidays: {d.isoformat()} is not in year {year}")
    for d in sorted(makeup):
        if d.weekday() < 5:
            raise CalendarError(f"makeup_working_days: {d.isoformat()} is not a Saturday or Sunday")
        if d in holidays:
            raise CalendarError(f"makeup_working_days: {d.isoformat()} is also a holiday")
    return YearArrangement(year=year, holidays=frozenset(holidays),
                           makeup_working_days=frozenset(makeup),
                           source=str(data.get("source", "")), example=example, names=names)


def read_arrangement(path: str | os.PathLike[str]) -> YearArrangement:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CalendarError(f"{path}: not valid YAML: {exc}") from exc
    return parse_arrangement(data, str(path))


def load_calendar(directory: str | os.PathLike[str]) -> StatutoryCalendar:
    """The package's calendar plus every ``YYYY.yaml`` in ``directory`` (skipped when it does not
    exist; ``*.example.yaml`` files are never loaded). A bad file raises :class:`CalendarError`
    naming the file and the field."""
    cal = StatutoryCalendar()
    directory = Path(directory)
    if directory.is_dir():
        for path in sorted(directory.glob("[0-9][0-9][0-9][0-9].yaml")):
            try:
                cal.load_arrangement(path)
            except CalendarError as exc:
                if str(exc).startswith(str(path)):
                    raise
                raise CalendarError(f"{path}: {exc}") from exc
    return cal


_CALENDAR: Installed[StatutoryCalendar] = Installed(lambda: load_calendar(DEFAULT_CALENDAR_DIR))
# A service's composition root installs the operator's calendar at start
# (lifeline.rules.setup.install_rules); before that, the package plus the arrangements shipped
# in the repository's config/calendar.
install_calendar = _CALENDAR.install
shipped_calendar = _CALENDAR.shipped
default_calendar = _CALENDAR.get
