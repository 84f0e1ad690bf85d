"""The auditor's read API, the same on every service (included by lifeline.http.app):

    GET /v1/audit/cases/{case_id}/events?as_of=&limit=   the service's events of one case, as
                                                         `lifeline audit export` writes them
    GET /v1/audit/verify                                 the service's own hash chain, as
                                                         `lifeline audit verify SERVICE` checks it

Both for the roles auditor and admin only. What belongs to a case is export.case_events' rule;
an event is export.event_record's line (who, role, office, why, when, causation, data). Neither
route changes anything: they read the event store (and, for verify, the service's Kafka topic).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from lifeline.audit.asof import AsOf, not_in_future
from lifeline.audit.export import case_events, event_record
from lifeline.http.auth import Principal, Role, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules.periods import SHANGHAI
from lifeline.stores import chain

AUDITORS = (Role.auditor, Role.admin)
# A case's events answered at most (the earliest first); `truncated` says more were left off.
EVENTS_LIMIT = 1000
EVENTS_LIMIT_MAX = 5000
# Finding a case's events reads the service's whole log: two such reads at once per process at
# most, so auditors' clicks cannot take the threads and the store from the service's own work.
CASE_READS_AT_ONCE = 2
# A verify result is reused this long: the console's page refresh does not re-read the log.
VERIFY_REUSE_SECONDS = 30.0
# Connecting to Kafka and reading the service's topic for its published seals; past this the
# seals recorded in the store are used instead (as `lifeline audit verify` does when Kafka is away).
KAFKA_SECONDS = 10.0
PROBLEMS_SHOWN = 20
# Event fields naming where the case is (the household's village, its township or county), and
# the application stored whole by intake's Case.Submitted and verification's Verification.Started.
_REGION_FIELDS = ("region_code", "village_code", "township_code")

CaseIdPath = Annotated[str, Path(min_length=3, max_length=64, description="the case, e.g. C-2026-…")]


# --- answers ---------------------------------------------------------------------------------
class EventAggregate(BaseModel):
    type: str = Field(description="the aggregate's class, e.g. Case")
    id: str
    version: int


class EventWho(BaseModel):
    user_id: str | None = Field(description="who caused it; system:<service> for a consumed event")
    role: str | None
    office: str | None = Field(description="the office (organisation code) the person acted for")


class AuditEvent(BaseModel):
    """One event as `lifeline audit export` writes it (lifeline/audit/export.py)."""

    service: str
    position: int | None = Field(description="its place in the service's log")
    aggregate: EventAggregate
    event: str = Field(description="its class, e.g. Case.Accepted")
    public_event: str | None = Field(description="the CloudEvent it was published as, if any")
    cloudevent_id: str | None = Field(description="the id other services' events name as causation_id")
    recorded_at: str = Field(description="when it was stored (Asia/Shanghai)")
    happened_at: str | None = Field(description="its own business moment, when it names one")
    happened_field: str | None = Field(description="the field happened_at comes from, e.g. accepted_at")
    who: EventWho
    why: str | None = Field(description="the reason a person gave")
    causation_id: str | None
    correlation_id: str | None
    data: dict[str, Any] = Field(description="the event's fields")


class CaseTimeline(BaseModel):
    service: str
    case_id: str
    as_of: str | None = Field(description="the moment asked for; null: now")
    total: int = Field(description="how many of the service's events of the case were recorded by then")
    truncated: bool = Field(description="true when more than `limit` events: the earliest are answered")
    events: list[AuditEvent] = Field(description="in the order recorded (then log position)")


class ChainHead(BaseModel):
    position: int = Field(description="the last chained notification id")
    hash_prefix: str = Field(description="the first 16 hex digits of its SHA-256 chain hash")


class Seals(BaseModel):
    source: Literal["kafka", "store", "none"] = Field(
        description="where the published chain heads (LogSealed) were read: the service's Kafka topic, "
                    "or the store's own when Kafka could not be read")
    matched: int
    total: int
    last_published: int = Field(description="the last log position seen published (Kafka)")
    relayed: int = Field(description="how far the outbox relay says it published")
    forged: int = Field(description="messages in the service's name whose signature does not verify")
    note: str


class VerifyAnswer(BaseModel):
    service: str
    ok: bool = Field(description="no event changed, removed or reordered")
    events: int
    chained: int
    head: ChainHead | None
    seals: Seals
    seconds: float
    rate: float = Field(description="events checked per second")
    checked_at: str = Field(description="when the log was read (the service's clock)")
    reused: bool = Field(description=f"true when this is the last result, kept {VERIFY_REUSE_SECONDS:.0f} s")
    problem_count: int
    problems: list[str] = Field(description=f"the first {PROBLEMS_SHOWN}, the earliest first")
    lines: list[str] = Field(description="what `lifeline audit verify SERVICE` prints")


# --- a case's events ---------------------------------------------------------------------------
def case_regions(events: Iterable[Any]) -> set[str]:
    """The divisions the case's events name as the case's place."""
    found: set[str] = set()
    for event in events:
        for name in _REGION_FIELDS:
            value = getattr(event, name, None)
            if isinstance(value, str) and value:
                found.add(value)
        application = getattr(event, "application", None)
        value = getattr(application, "region_code", None)
        if isinstance(value, str) and value:
            found.add(value)
    return found


def recorded_by(events: list[tuple[int, Any]], as_of: datetime) -> list[tuple[int, Any]]:
    """Each aggregate's events up to the first recorded after `as_of` (a consistent prefix, as
    lifeline/audit/asof.py rebuilds a record)."""
    later: set[uuid.UUID] = set()
    kept = []
    for position, event in events:
        if event.originator_id in later:
            continue
        if event.timestamp > as_of:
            later.add(event.originator_id)
            continue
        kept.append((position, event))
    return kept


def timeline(app: Any, service: str, case_id: str, principal: Principal, as_of: datetime | None,
             limit: int) -> dict[str, Any]:
    """The answer of GET /v1/audit/cases/{case_id}/events (blocking: run in a thread)."""
    events = case_events(app, case_id)
    if not events:
        raise Problem(404, "Case not found", f"{service} has no event of case {case_id}")
    # The case is where its events say it is; none naming a place: the whole country's to read.
    for region in case_regions(e for _, e in events) or {"000000"}:
        ensure_region(principal, region)
    if as_of is not None:
        events = recorded_by(events, as_of)
    records = sorted((event_record(service, p, e, app.outbound) for p, e in events),
                     key=lambda r: (r["recorded_at"], r["position"]))
    return {"service": service, "case_id": case_id, "as_of": as_of.astimezone(SHANGHAI).isoformat() if as_of else None,
            "total": len(records), "truncated": len(records) > limit, "events": records[:limit]}


# --- the chain verified -------------------------------------------------------------------------
def evidence(runtime: Any) -> chain.Evidence:
    """What the service published about its log: its topic read within KAFKA_SECONDS with its
    own settings, else the store's seals (the note says why); the relay's position either way.
    Blocking: run in a thread (it runs an event loop of its own for Kafka)."""
    from lifeline.messaging.outbox import POSITION

    name = runtime.spec.name
    try:
        found = asyncio.run(asyncio.wait_for(
            chain.kafka_evidence(runtime.settings, name, KAFKA_SECONDS), KAFKA_SECONDS))
    except Exception as exc:  # noqa: BLE001 - unreachable, too slow or not allowed: the store's seals
        found = chain.store_evidence(runtime.app, name)
        found.note = f"Kafka not read ({type(exc).__name__}); seals read from the store"
    with runtime.side.transaction() as tx:
        found.relayed = tx.position(POSITION)
    return found


def verify_answer(runtime: Any) -> dict[str, Any]:
    """`lifeline audit verify SERVICE` as JSON (blocking: run in a thread)."""
    from lifeline.cli import audit_lines

    name = runtime.spec.name
    report = chain.verify(runtime.app, evidence(runtime), name)
    ev = report.evidence
    first = report.first
    ordered = ([first] if first else []) + [p for p in report.problems if p is not first]
    return {
        "service": name, "ok": report.ok, "events": report.events, "chained": report.chained,
        "head": {"position": report.head[0], "hash_prefix": report.head[1].hex()[:16]} if report.head else None,
        "seals": {"source": ev.source, "matched": report.seals_matched, "total": len(ev.seals),
                  "last_published": ev.last_published, "relayed": ev.relayed, "forged": ev.forged,
                  "note": ev.note},
        "seconds": round(report.seconds, 3), "rate": round(report.rate, 1),
        "checked_at": runtime.clock.now().astimezone(SHANGHAI).isoformat(),
        "reused": False, "problem_count": len(report.problems),
        "problems": [p.line() for p in ordered[:PROBLEMS_SHOWN]],
        "lines": audit_lines(report),
    }


@dataclasses.dataclass
class _LastVerify:
    answer: dict[str, Any] | None = None
    at: float = 0.0  # time.monotonic() when it was made


# --- the routes ----------------------------------------------------------------------------------
def router(runtime: Any) -> APIRouter:
    from lifeline.http.app import READ_ERRORS, problem_responses

    api = APIRouter(prefix="/v1/audit", tags=["audit"])
    name = runtime.spec.name
    case_reads = asyncio.Semaphore(CASE_READS_AT_ONCE)
    verifying = asyncio.Lock()
    last = _LastVerify()

    @api.get("/cases/{case_id}/events", response_model=CaseTimeline, responses=READ_ERRORS)
    async def case_timeline(
        case_id: CaseIdPath, as_of: AsOf = None,
        limit: Annotated[int, Query(ge=1, le=EVENTS_LIMIT_MAX, description="events answered at most")] = EVENTS_LIMIT,
        principal: Principal = runtime.auth.require(*AUDITORS),
    ):
        """The service's events of the case (every event naming it, and every other event of an
        aggregate created for it), in the order recorded, each with who did it (user, role,
        office), why and when; with `as_of`, those recorded by that moment. 404 when the service
        has no event of the case; 403 when the case lies outside the caller's region."""
        if as_of is not None:
            not_in_future(as_of, runtime.clock)
        async with case_reads:
            return await asyncio.to_thread(timeline, runtime.app, name, case_id, principal, as_of, limit)

    @api.get("/verify", response_model=VerifyAnswer, responses=problem_responses(401, 403, 422, 503))
    async def verify(principal: Principal = runtime.auth.require(*AUDITORS)):
        """The service's whole log read in order, every chain hash recomputed and checked against
        the heads it published (LogSealed) on its Kafka topic, or in its store when Kafka cannot
        be read: `lifeline audit verify SERVICE`. One check at a time per process; its result is
        answered again for 30 s (VERIFY_REUSE_SECONDS: `reused`, `checked_at`)."""
        async with verifying:
            if last.answer is not None and time.monotonic() - last.at < VERIFY_REUSE_SECONDS:
                return {**last.answer, "reused": True}
            answer = await asyncio.to_thread(verify_answer, runtime)
            last.answer, last.at = answer, time.monotonic()
            return answer

    return api


__all__ = ["AUDITORS", "VERIFY_REUSE_SECONDS", "case_regions", "recorded_by", "router", "timeline"]
