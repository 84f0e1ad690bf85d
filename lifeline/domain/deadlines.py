"""A statutory clock as the service whose step starts it records it: the events every such
service declares (its `DeadlineSet` and `DeadlineCleared`, published with the fields of
DeadlineSet.v1 / DeadlineCleared.v1), and the fields a `lifeline.rules.clocks.Deadline` gives them.
Notify's deadline watch warns and escalates them (services/notify)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate
from lifeline.rules import clocks


class DeadlineSetEvent(LifelineAggregate.Event):
    """A clock starts: each aggregate that sets one declares its `DeadlineSet` from this."""

    deadline_id: str
    case_id: str
    clock: str
    label_zh: str
    region_code: str
    responsible_office: str
    start_date: str
    due_date: str
    due_at: str
    warn_at: str
    period: str
    calendar_known: bool
    warnings: list[str]
    set_at: str


class DeadlineClearedEvent(LifelineAggregate.Event):
    """Its step is done (met or late) or no longer applies (cancelled)."""

    deadline_id: str
    case_id: str
    clock: str
    outcome: str  # met | late | cancelled
    cleared_at: str


def deadline_fields(deadline_id: str, case_id: str, region_code: str, responsible_office: str,
                    due: clocks.Deadline, now: datetime) -> dict[str, Any]:
    """A DeadlineSet's fields for `due`, the office answerable for it named."""
    assert due.start_date is not None and due.due_date is not None
    return {
        "deadline_id": deadline_id, "case_id": case_id, "clock": due.clock,
        "label_zh": clocks.CLOCKS[due.clock].label_zh, "region_code": region_code,
        "responsible_office": responsible_office, "start_date": due.start_date.isoformat(),
        "due_date": due.due_date.isoformat(), "due_at": due.due_at.isoformat(),
        "warn_at": due.warn_at.isoformat(), "period": due.period, "calendar_known": due.calendar_known,
        "warnings": list(due.warnings), "set_at": now.isoformat(),
    }


def outcome_at(due_at: str, at: datetime) -> str:
    """met when done before 24:00 of the due day, late after it."""
    return "late" if at >= datetime.fromisoformat(due_at) else "met"
