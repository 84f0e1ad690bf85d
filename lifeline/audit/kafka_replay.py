"""`lifeline replay SERVICE --from-kafka`: a consuming service's read models rebuilt from the
Kafka topics it consumes, read from offset zero, into a fresh store, compared with the live ones.

A service's read models are projected from its own log, and its log holds two kinds of events:

- the effects of the events it consumed: made by its handlers, one transaction per consumed
  event (with the tracking record of that event). Kafka holds their causes;
- the service's own decisions: commands people sent to its API and its timers (the deadline
  watch, payment runs). Kafka never carried these as inputs: they are facts of the service's
  own record.

The replay builds a fresh, empty instance of the service (the same code, a throw-away SQLite
store) and walks the live log in order. Each run of events that a consumed event caused is made
AGAIN: the consumed event is taken from the topics (by its CloudEvent id, the causation id its
effects carry) and handed to the production handler (`process_cloud_event`, exactly as the
consumer does) at the moment the live service handled it (recorded with the effects: meta "at"
and the stored timestamp, see lifeline/domain/clock.one_moment); what it makes must be the very
events the live service stored. Every other event is taken from the live store as it is. The
fresh log is then projected by the service's own `project` into a fresh store and compared,
document by document, with the live read models.

It reports any effect whose cause is not on the topics (e.g. the memory-only embedded broker
restarted and the relays have not republished yet), any effect the handler does not make again
in the same way, and any document that differs. Consumed events the live service handled
without effect are counted; events on the topics it has not handled yet are counted apart (the
live service is behind, not wrong).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from lifeline.audit.export import notifications, plain
from lifeline.audit.progress import Progress
from lifeline.settings import Settings



@dataclasses.dataclass
class KafkaReplayReport:
    service: str
    topics: list[str]
    read: int = 0                    # messages read from the topics
    handled_on_topics: int = 0       # of them, events the service handles (distinct ids)
    remade: int = 0                  # consumed events whose effects were made again
    remade_events: int = 0           # the events they made
    copied: int = 0                  # the service's own events, taken from its store
    without_effect: int = 0          # handled by the live service, no effect (not remade)
    not_yet_handled: int = 0         # on the topics, not handled by the live service yet
    documents: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)   # effects not made again
    diffs: list[str] = dataclasses.field(default_factory=list)      # documents that differ
    rate: float = 0.0

    @property
    def identical(self) -> bool:
        return not self.problems and not self.diffs

    def lines(self) -> list[str]:
        name = self.service
        out = [f"{name}: read {self.read:,} messages from {', '.join(self.topics)}: {self.handled_on_topics:,} "
               f"events {name} handles",
               f"{name}: {self.remade:,} consumed events handled again from the topics ({self.remade_events:,} "
               f"events made), {self.copied:,} of its own events (commands, timers) taken from its store; "
               f"{self.without_effect:,} consumed events had no effect"
               + (f"; {self.not_yet_handled:,} on the topics not handled by the live service yet"
                  if self.not_yet_handled else "")]
        verdict = "identical to live read models" if self.identical else "DIFFERENT from live"
        out.append(f"{name}: replayed from Kafka into {self.documents:,} documents: {verdict}")
        out += ["  " + p for p in self.problems[:50]]
        out += ["  " + d for d in self.diffs[:50]]
        return out


# --- the topics -----------------------------------------------------------------------------------
async def _read_topics(settings: Settings, topics: list[str], progress: Progress, timeout: float) -> list[bytes]:
    """Every message value on the topics from offset zero to their end now (no consumer group)."""
    from aiokafka import AIOKafkaConsumer

    from lifeline.messaging.kafka import kafka_client_options

    consumer = AIOKafkaConsumer(
        *(settings.namespace + t for t in topics), **kafka_client_options(settings), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=1000,
        client_id="lifeline-replay",
    )
    await asyncio.wait_for(consumer.start(), timeout)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not consumer.assignment() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        parts = sorted(consumer.assignment())
        if not parts:
            return []
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        values: list[bytes] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=2000)).values():
                values.extend(m.value for m in batch if m.value is not None)
                progress.update(len(values))
            if loop.time() > deadline + 10 * timeout:
                raise TimeoutError("the topics could not be read to their end")
        return values
    finally:
        await consumer.stop()


def consumed_events(values: list[bytes], handled: frozenset[str], verifier: Any) -> dict[str, Any]:
    """CloudEvent id -> the event as the consumer accepts it (signature checked, decoded, upcast,
    schema-checked), for the events the service handles; what the consumer would dead-letter is
    left out."""
    from lifeline.contracts import registry
    from lifeline.contracts.envelope import CloudEvent, ContractError, parse_json

    found: dict[str, Any] = {}
    for value in values:
        try:
            obj = parse_json(value)
            envelope = CloudEvent.from_dict(obj)
            registry.require_known(envelope)
            if envelope.name not in handled or envelope.id in found:
                continue
            verifier.check(obj)
            found[envelope.id] = registry.accept(envelope)
        except ContractError:
            continue
    return found


# --- the live log ---------------------------------------------------------------------------------
def _units(app: Any, service: str, causes: set[str]) -> Iterator[tuple[str | None, list[Any]]]:
    """The live log in order, as (cause, events): a run of events one consumed event made (its
    CloudEvent id), or (None, [event]) for each of the service's own events.

    The effects of a consumed event carry its id as causation and the moment it was handled
    ("at", lifeline/domain/clock.one_moment). Events stored before that moment was recorded are
    taken as effects when their cause is on the topics and it is the first run naming it; later
    events naming the same cause (e.g. a deadline's warning, made by the watch) are the
    service's own."""
    me = f"system:{service}"
    seen: set[str] = set()
    current: str | None = None
    marked = False  # whether the current run's events carry "at"
    run: list[Any] = []
    for n in notifications(app):
        event = app.mapper.to_domain_event(n)
        meta = getattr(event, "meta", None) or {}
        cause = meta.get("causation_id") or None
        mine = cause is not None and meta.get("user_id") == me
        has_at = "at" in meta
        if run and mine and cause == current and has_at == marked:
            run.append(event)
            continue
        if run:
            yield current, run
            run, current = [], None
        if mine and (has_at or (cause in causes and cause not in seen)):
            seen.add(cause)
            current, marked, run = cause, has_at, [event]
        else:
            yield None, [event]
    if run:
        yield current, run


def _same(live: Any, made: Any) -> list[str]:
    """What differs between a stored event and the one made again (empty: the same)."""
    a, b = plain(vars(live)), plain(vars(made))
    if type(live) is not type(made):
        return [f"{type(live).__qualname__} was made as {type(made).__qualname__}"]
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# --- the replay -----------------------------------------------------------------------------------
def replay_from_kafka(settings: Settings, service: str, *, err: TextIO, timeout: float = 15.0) -> KafkaReplayReport:
    """Read the service's consumed topics from offset zero and rebuild (see `rebuild`)."""
    from lifeline.rules.setup import install_rules
    from lifeline.runtime.service import verifier_for
    from lifeline.stores.projection import Projection
    from lifeline.stores.sidestore import SideStore

    spec = importlib.import_module(f"services.{service}.bootstrap").SPEC
    install_rules(settings)
    if not spec.consumes:
        report = KafkaReplayReport(service, [])
        report.problems.append(f"{service} consumes no topics: use `lifeline replay {service}` (from its store)")
        return report
    reading = Progress(f"{service}: reading the topics", out=err, unit="messages")
    values = asyncio.run(_read_topics(settings, list(spec.consumes), reading, timeout))
    reading.done()
    live = spec.application(settings)
    live_side = SideStore(settings, spec.name)
    try:
        views = Projection(live, live_side, spec.project, spec.views_version)
        views.ensure_version()
        views.catch_up()
        consumed = consumed_events(values, live.handled_events, verifier_for(settings))
        report = rebuild(spec, settings, live, live_side, consumed, err=err)
        report.read = len(values)
        return report
    finally:
        live.close()
        live_side.close()


def rebuild(spec: Any, settings: Settings, live: Any, live_side: Any, topics: dict[str, Any], *,
            err: TextIO) -> KafkaReplayReport:
    """A fresh instance of the service remakes every effect of the consumed events `topics`
    (CloudEvent id -> event) in the live log's order and takes the rest from the live store;
    its read models are compared with `live_side` (see the module's docstring)."""
    from lifeline.domain.clock import SystemClock
    from lifeline.stores.application import has_exact_tracking
    from lifeline.stores.projection import Projection, compare
    from lifeline.stores.sidestore import SideStore

    service = spec.name
    report = KafkaReplayReport(service, list(spec.consumes), handled_on_topics=len(topics))
    scratch = tempfile.TemporaryDirectory(prefix=f"lifeline-replay-{service}-")
    fresh = spec.build(settings, SystemClock(), {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite", "SINGLE_ROW_TRACKING": "n",
        "SQLITE_DBNAME": str(Path(scratch.name) / f"{service}.events.sqlite"),
    })
    try:
        recorded: dict[str, tuple[datetime | None, datetime | None]] = {}
        fresh.recorded_moments = recorded  # type: ignore[assignment]
        walking = Progress(f"{service}: replaying", live.recorder.max_notification_id() or 0, out=err)
        remade: set[str] = set()
        for cause, events in _units(live, service, set(topics)):
            walking.advance(len(events))
            if cause is None or cause not in topics:
                if cause is not None:
                    first = events[0]
                    report.problems.append(
                        f"{type(first).__qualname__} v{first.originator_version} of {first.originator_id} was "
                        f"caused by {cause}, which is not on the topics")
                _copy(fresh, events)
                report.copied += len(events)
                continue
            event, first = topics[cause], events[0]
            recorded[cause] = (_moment((first.meta or {}).get("at")) or first.timestamp, first.timestamp)
            before = fresh.recorder.max_notification_id() or 0
            try:
                fresh.process_cloud_event(event)
            except Exception as exc:  # noqa: BLE001 - reported, and the live events stand in
                report.problems.append(f"{event.name} {cause}: the handler failed: {exc!r}")
                _copy(fresh, events)
                continue
            made = [fresh.mapper.to_domain_event(n) for n in fresh.recorder.select_notifications(before + 1, 10_000)]
            remade.add(cause)
            report.remade += 1
            report.remade_events += len(made)
            if len(made) != len(events):
                report.problems.append(f"{event.name} {cause}: the live service stored {len(events)} events, "
                                       f"the handler made {len(made)} again")
            for stored, again in zip(events, made):
                for line in _same(stored, again)[:5]:
                    report.problems.append(f"{event.name} {cause}: {type(stored).__qualname__}: {line}")
        walking.done()
        report.rate = walking.rate
        for ident, event in topics.items():
            if ident not in remade:
                if has_exact_tracking(live.recorder, event.source, event.sequence):
                    report.without_effect += 1
                else:
                    report.not_yet_handled += 1
        rebuilt = SideStore.in_memory()
        Projection(fresh, rebuilt, spec.project).catch_up()
        report.diffs = compare(live_side, rebuilt)
        report.documents = len(rebuilt.dump())
        rebuilt.close()
    finally:
        fresh.close()
        scratch.cleanup()
    return report


def _copy(fresh: Any, events: list[Any]) -> None:
    """The service's own events, as the live store has them, into the fresh store."""
    fresh.recorder.insert_events([fresh.mapper.to_stored_event(e) for e in events])
