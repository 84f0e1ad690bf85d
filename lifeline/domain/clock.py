"""The one place Lifeline reads the time.

Use cases ask their injected `Clock` for `now()`, an aware moment in
Asia/Shanghai; aggregates are handed the moment as an argument and never read a
clock. Tests set the time with `FixedClock`; processes started with
`LIFELINE_TEST_CLOCK=1` all read one `SharedClock` file that `lifeline clock
set` / `lifeline clock advance` move (refused in production by the settings).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lifeline.rules.periods import SHANGHAI, require_aware

if TYPE_CHECKING:
    from lifeline.settings import Settings


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, aware, in Asia/Shanghai."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return _unit_now() or datetime.now(SHANGHAI)


class FixedClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, moment: datetime | str):
        self.moment = _moment(moment)

    def now(self) -> datetime:
        return _unit_now() or self.moment

    def set(self, moment: datetime | str) -> None:
        self.moment = _moment(moment)

    def advance(self, delta: timedelta | str) -> None:
        self.moment += parse_duration(delta) if isinstance(delta, str) else delta


class SharedClock:
    """Every process of one test Lifeline reads the same frozen moment from a file.

    Without the file the system time is used, so a fresh test run behaves as in
    production until a test sets the clock.
    """

    def __init__(self, path: Path):
        self.path = path
        self._cache: tuple[tuple[int, int], datetime] | None = None

    def now(self) -> datetime:
        if (moment := _unit_now()) is not None:
            return moment
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return datetime.now(SHANGHAI)
        # `set` replaces the file, so a new inode marks a new moment even when two writes
        # fall within the file system's timestamp granularity.
        version = (stat.st_ino, stat.st_mtime_ns)
        if self._cache is None or self._cache[0] != version:
            self._cache = (version, _moment(json.loads(self.path.read_text())["moment"]))
        return self._cache[1]

    def set(self, moment: datetime | str) -> datetime:
        moment = _moment(moment)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"moment": moment.isoformat()}))
        os.replace(tmp, self.path)  # readers never see half a file
        return moment

    def advance(self, delta: timedelta | str) -> datetime:
        step = parse_duration(delta) if isinstance(delta, str) else delta
        return self.set(self.now() + step)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


# --- one moment per consumed event ----------------------------------------------------------
# A consumed event is handled at one moment: while a service handles it (ServiceApplication.
# process_cloud_event) every clock of that thread answers the same moment, the events made get
# one stored timestamp, the ids they mint derive from the event (aggregate.new_id), and the
# moment is recorded with them (meta "at"). Handling the same event again at the recorded moment
# then makes the same events: what `lifeline replay SERVICE --from-kafka` does.
_unit = threading.local()


@dataclass
class Unit:
    moment: datetime      # what the service's clock answers (Asia/Shanghai)
    stamp: datetime       # the stored timestamp of every event made (UTC, the host's clock)
    cause: str            # the consumed event's id
    minted: int = 0       # ids minted so far (aggregate.new_id)


@contextmanager
def one_moment(clock: Clock, cause: str, moment: datetime | None = None,
               stamp: datetime | None = None) -> Iterator[Unit]:
    """Handle one consumed event at one moment: now (the clock's, and the host's for the
    stored timestamps), or the recorded `moment` and `stamp` of an earlier handling."""
    outer = getattr(_unit, "current", None)
    if outer is not None:  # already inside one: it stands
        yield outer
        return
    unit = Unit(moment=(moment or clock.now()).astimezone(SHANGHAI),
                stamp=(stamp or datetime.now(timezone.utc)), cause=cause)
    _unit.current = unit
    try:
        yield unit
    finally:
        _unit.current = None


def current_unit() -> Unit | None:
    """The consumed event this thread is handling, if any."""
    return getattr(_unit, "current", None)


def _unit_now() -> datetime | None:
    unit = getattr(_unit, "current", None)
    return unit.moment if unit is not None else None


def clock_for(settings: Settings) -> Clock:
    """The system clock; with LIFELINE_TEST_CLOCK=1 (never in production) one shared
    test clock that `lifeline clock set/advance` move for every process."""
    if settings.test_clock:
        return SharedClock(settings.data_dir / "clock.json")
    return SystemClock()


_DURATION = re.compile(r"^(\d+)([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """'7d', '3h', '30m', '10s' (one unit)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"duration must look like 7d, 3h, 30m or 10s, not {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _moment(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return require_aware(value, "moment").astimezone(SHANGHAI)
