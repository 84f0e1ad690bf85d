"""Unit tests of the five services: aggregates, use cases, encryption at rest, CLI.

Shared builders live here (the brief allows no conftest of our own). Nothing
here touches Kafka, Redis or the network; event stores are SQLite in memory.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import date
from typing import Any

from lifeline.contracts import registry
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from lifeline.rules.ids import make_resident_id
from tests.harness import household

# Mirrors lifeline.stores.eventstore.event_store_env (multi-row tracking), but in memory.
MEMORY_ENV = {
    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
    "SQLITE_DBNAME": ":memory:",
    "SINGLE_ROW_TRACKING": "n",
}

VILLAGE = "370502101001"  # a village of county 370502 (东营区)
TOWNSHIP = "370502101"
CLERK = Meta("clerk-001", "clerk", TOWNSHIP)
REVIEWER = Meta("reviewer-001", "reviewer", TOWNSHIP)
SYSTEM_META = {"user_id": "system:test", "role": "system", "org_code": "", "correlation_id": "",
               "causation_id": "", "reason": ""}
ACTOR = {"user_id": "clerk-001", "role": "clerk", "org_code": TOWNSHIP}

_sequence = itertools.count(1)


def pid(seq: int, *, born: date = date(1980, 5, 1), female: bool = False) -> str:
    """A resident ID number of county 370502 with a valid check digit."""
    return make_resident_id("370502", born, seq, female)


APPLICANT_NAME = "王小明"
NAMES = [APPLICANT_NAME, "李红", "王乐", "王安"]


def new_case_id() -> str:
    return f"C-T{uuid.uuid4().hex[:12].upper()}"


def application_body(ids: list[str], *, names: list[str] | None = None, **overrides: Any) -> dict:
    """A valid application (what the intake API passes to submit_application)."""
    return household(ids, overrides.pop("region_code", VILLAGE), names=names or NAMES, **overrides)


def submitted_data(case_id: str, ids: list[str], **overrides: Any) -> dict:
    """The data of an ApplicationSubmitted event."""
    return {
        **application_body(ids, **overrides), "case_id": case_id, "clerk_id": "clerk-001",
        "submitted_at": "2026-11-25T09:00:00+08:00",
    }


def cloud(name: str, data: dict, *, subject: str, source: str, sequence: int | None = None,
          **kw: Any) -> CloudEvent:
    """A valid CloudEvent as a consumer would receive it (fresh position unless given)."""
    return registry.new_event(
        name, data, subject=subject, source=source,
        sequence=sequence if sequence is not None else next(_sequence), actor=ACTOR, **kw,
    )


def record_row(id_number: str, **figures: int | None) -> dict:
    row = {
        "id_number": id_number, "monthly_income_fen": 0, "income_tax_fen": 0,
        "social_insurance_fen": 0, "assets_fen": 0, "medical_expense_fen": 0,
        "education_expense_fen": 0,
    }
    row.update(figures)
    return row


def report(case_id: str, department: str, request_id: str, rows: list[dict]) -> dict:
    """The data of a DepartmentRecordsReported event."""
    return {
        "request_id": request_id, "case_id": case_id, "department": department,
        "members": rows, "reported_at": "2026-11-25T10:00:00+08:00",
    }


def benefit_data(case_id: str, benefit_id: str = "B-0123456789ABCDEF0123", **overrides: Any) -> dict:
    """The data of a BenefitApproved event."""
    data = {
        "case_id": case_id, "benefit_id": benefit_id, "verification_id": "V-1",
        "household": {"members_count": 2, "region_code": VILLAGE, "area": "urban"},
        "benefit_type": "dibao", "tier": "B", "monthly_amount_fen": 206000,
        "one_off_amount_fen": None, "first_period": "2026-12", "bank_account_ref": "ACCT-0001",
        "approving_body": f"{TOWNSHIP} 乡镇审核确认小组", "approval_level": "township",
        "reason": "符合条件", "approved_at": "2026-11-25T15:00:00+08:00",
    }
    data.update(overrides)
    return data


def replay(events: list) -> Any:
    """The aggregate rebuilt from its events, as the repository would."""
    aggregate = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def stored(app, *types: type) -> list:
    """Every domain event in an application's log (optionally only of some types)."""
    notifications = app.recorder.select_notifications(1, 10_000)
    events = [app.mapper.to_domain_event(n) for n in notifications]
    return [e for e in events if not types or isinstance(e, types)]


def log_length(app) -> int:
    return app.recorder.max_notification_id() or 0
