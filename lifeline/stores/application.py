"""What every service's eventsourcing application has in common.

- `ServiceApplication`: a process application (eventsourcing) whose policy
  turns consumed CloudEvents into new domain events. The tracking record of the
  consumed event, keyed by its own identity (source, sequence), is saved in the
  same transaction as those events, so a second delivery has no effect. A consumer
  hands it a fetched batch at once (`process_batch`): the duplicates found by one
  query, the new events' effects and tracking records saved in one transaction.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import Aggregate, BaseAggregate
from eventsourcing.persistence import (
    IntegrityError, JSONTranscoder, Notification, Recording, StoredEvent, Tracking, Transcoding,
)
from eventsourcing.utils import get_topic
from eventsourcing.system import ProcessApplication

from lifeline.contracts import registry
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.clock import Clock, SystemClock, current_unit, one_moment
from lifeline.domain.values import VALUE_TRANSCODINGS
from lifeline.messaging.outbound import Outbound
from lifeline.stores import chain
from lifeline.domain.logseal import LogSeal

Handler = Callable[[Any, CloudEvent, ProcessingEvent], None]

log = logging.getLogger(__name__)


class DuplicateRequest(Exception):
    """The same business id was saved before (e.g. a retried request); args[0] is the id."""


def has_exact_tracking(recorder: Any, application_name: str, notification_id: int) -> bool:
    """Whether exactly this (source, position) was processed.

    eventsourcing's own `has_tracking_id` answers "was anything at or after this
    position processed", which is right for one ordered log but wrong here:
    events of one source arrive over several partitions, so a later position
    can be processed before an earlier one.
    """
    return (application_name, notification_id) in tracked_among(recorder, [(application_name, notification_id)])


def tracked_among(recorder: Any, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of these (source, position) were processed, in one query (a fetched batch's)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return set()
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        from psycopg.sql import SQL, Identifier

        query = SQL("SELECT t.application_name, t.notification_id FROM {0}.{1} t "
                    "JOIN unnest(%s::text[], %s::bigint[]) AS k(a, n) "
                    "ON t.application_name = k.a AND t.notification_id = k.n").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.tracking_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, ([k[0] for k in keys], [k[1] for k in keys]))
            return {(r["application_name"], r["notification_id"]) for r in curs.fetchall()}
    found: set[tuple[str, int]] = set()
    with recorder.datastore.transaction(commit=False) as curs:
        for start in range(0, len(keys), 400):  # 800 parameters a statement: well under SQLite's limit
            part = keys[start:start + 400]
            # A join, so each key is a search of the primary key (`(a, n) IN (VALUES ...)` scans).
            curs.execute(f"SELECT t.application_name, t.notification_id FROM (VALUES {','.join(['(?,?)'] * len(part))})"
                         " AS k JOIN tracking t ON t.application_name = k.column1 AND t.notification_id = k.column2",
                         [v for k in part for v in k])
            found.update((r[0], r[1]) for r in curs.fetchall())
    return found


class _BatchProcessingEvent(ProcessingEvent):
    """The library's ProcessingEvent, aggregates told apart by their class: its checks against
    runtime protocols (`isinstance(obj, DomainEventProtocol)`) cost tens of µs per call."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, BaseAggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif obj is not None:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


class _Overlap(BaseException):
    """A handler read (or wrote) an aggregate that an earlier event of its batch changed. A
    BaseException: a handler's own `except Exception` must not swallow it."""


# The SQLite page cache a bulk save asks for (KiB): a million payments' index fits.
BULK_CACHE_KIB = 256 * 1024
# WAL pages between checkpoints on a bulk-saving connection (4 KiB pages: 256 MiB).
BULK_CHECKPOINT_PAGES = 65536


_paused = 0
_paused_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Bulk work without the cyclic garbage collector. A payment run keeps millions of young
    objects alive until its unit is saved, and the collector traversed them again and again: a
    quarter of a million-payment run. Reference counting still frees what goes; the collector
    runs again when the last bulk job in the process ends."""
    global _paused
    with _paused_lock:
        _paused += 1
        if _paused == 1:
            gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0:
                gc.enable()


class Bulk:
    """Thousands of new aggregates' first events, made as plain states and encoded without
    the generic mapper (a payment run's instructions): the stored events are the ones the
    mapper would write (tests/unit/stores/test_bulk.py decodes them back), at a fraction of
    the cost. States hold JSON values only (str, int, bool, None, lists, dicts)."""

    def __init__(self, event_class: type, timestamp: datetime, items: list[tuple[uuid.UUID, dict[str, Any]]]):
        self.event_class = event_class
        self.timestamp = timestamp
        self.items = items
        self.aggregate_topic = get_topic(_owner(event_class))

    def event(self, i: int) -> Any:
        ident, state = self.items[i]
        return self.event_class(originator_topic=self.aggregate_topic, originator_id=ident, originator_version=1,
                                timestamp=self.timestamp, **state)

    def rows(self, mapper: Any) -> list[tuple[uuid.UUID, bytes]]:
        """(aggregate id, stored state) of each item: the state's JSON with the envelope's
        fields (timestamp, aggregate topic) appended, as the mapper would write it."""
        common = {"timestamp": {"_type_": "datetime_iso", "_data_": self.timestamp.isoformat()},
                  "originator_topic": self.aggregate_topic}
        version = getattr(self.event_class, "class_version", 1)
        if version > 1:
            common["class_version"] = version
        # The states' keys and these are disjoint: join the two JSON objects' bytes.
        tail = b"," + orjson.dumps(common)[1:]
        dumps, compress, encrypt = orjson.dumps, mapper.compressor, mapper.cipher
        out = []
        for ident, state in self.items:
            data = dumps(state)[:-1] + tail
            if compress:
                data = compress.compress(data)
            if encrypt:
                data = encrypt.encrypt(data)
            out.append((ident, data))
        return out

    def stored_events(self, mapper: Any) -> list[StoredEvent]:
        topic = get_topic(self.event_class)
        return [StoredEvent(originator_id=ident, originator_version=1, topic=topic, state=data)
                for ident, data in self.rows(mapper)]


def _owner(event_class: type) -> type:
    """The aggregate class an event class is declared in."""
    module = sys.modules[event_class.__module__]
    return getattr(module, event_class.__qualname__.split(".")[0])


class ServiceApplication(ProcessApplication):
    """Base of the five services' applications.

    A service lists the consumed events it handles in `handlers` (its
    consumers.py: event name → `handler(app, event, processing_event)`, which
    collects new aggregate events on processing_event) and the domain events it
    publishes in `outbound`. Time comes from the injected `clock` only.
    """

    service: str = ""
    is_snapshotting_enabled = False
    handlers: Mapping[str, Handler] = {}
    outbound: Outbound = Outbound()
    # Value classes of this service's own, stored inside its events.
    transcodings: tuple[Transcoding, ...] = ()
    # A replay's recorded moments: consumed event id -> (clock moment, stored timestamp).
    recorded_moments: Mapping[str, tuple[datetime, datetime]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every service publishes the head of its hash-chained log (lifeline/stores/chain.py).
        if cls.service:
            cls.outbound.copies(LogSeal.Sealed, "LogSealed", subject=lambda e: e.service)

    def __init__(self, env: Mapping[str, str] | None = None, *, clock: Clock | None = None):
        self.clock: Clock = clock or SystemClock()
        # Called (no arguments, in the saving thread) after every transaction that stored events:
        # the runtime wakes its outbox relay, so an event is published when it is saved, not at
        # the next poll.
        self.saved_listeners: list[Callable[[], None]] = []
        super().__init__(env)
        # A store's first start with the hash chain: its genesis (chain.start).
        chain.start(self)

    def _notify(self, recordings: Any) -> None:
        # After every save and every processed event (eventsourcing calls it once they are stored).
        super()._notify(recordings)
        if recordings:
            self.stored()

    def stored(self) -> None:
        for listener in self.saved_listeners:
            try:
                listener()
            except RuntimeError:  # its event loop has closed (a stopping process): nobody to wake
                pass

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Any:
        # The event store's recorder is eventsourcing's, with every insert hash-chained.
        environment = super().construct_env(name, env)
        topic = chain.recorder_topic(environment.get("PERSISTENCE_MODULE", ""))
        if topic and not environment.get("PROCESS_RECORDER_TOPIC"):
            environment["PROCESS_RECORDER_TOPIC"] = topic
        return environment

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for transcoding in (*VALUE_TRANSCODINGS, *self.transcodings):
            transcoder.register(transcoding)

    def _record(self, processing_event: ProcessingEvent) -> Any:
        self._stamp_and_check(processing_event)
        return super()._record(processing_event)

    def _stamp_and_check(self, processing_event: ProcessingEvent) -> None:
        unit = current_unit()
        if unit is not None:
            # Effects of a consumed event record the moment it was handled at (see one_moment).
            for event in processing_event.events:
                meta = getattr(event, "meta", None)
                if isinstance(meta, dict) and "at" not in meta:  # a copy: meta dicts may be shared
                    object.__setattr__(event, "meta", {**meta, "at": unit.moment.isoformat()})
        self._check_contracts(processing_event.events)

    def _check_contracts(self, events: Any) -> None:
        # The write side's contract check, for commands and consumed events alike: what
        # the relay could not publish is never stored (ContractError, nothing saved).
        for event in events:
            out = self.outbound(event)
            if out is not None:
                registry.validate_data(out.name, out.data)

    def save_unit(self, aggregates: Any = (), bulk: "Bulk | None" = None) -> None:
        """Save the new events of `aggregates` and the `bulk` events in one transaction: all or
        nothing (IntegrityError when any of them exists already). For thousands of events at a
        time: one multi-row insert (SQLite) or COPY (PostgreSQL)."""
        events = [e for aggregate in aggregates for e in aggregate.collect_events()]
        # Checked: every aggregate event and the first bulk one (the rest are made by the same code).
        self._check_contracts(events + ([bulk.event(0)] if bulk is not None and bulk.items else []))
        stored = [self.mapper.to_stored_event(e) for e in events]
        recorder = self.recorder
        if hasattr(recorder.datastore, "schema"):
            self._copy_into_postgres(stored + (bulk.stored_events(self.mapper) if bulk is not None else []))
            self.stored()
            return
        # SQLite: one executemany instead of one statement per event (the notification id is
        # the rowid either way; nothing in this process follows the log by `_notify`).
        chained = [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored]
        if bulk is not None:
            topic = get_topic(bulk.event_class)
            chained.extend((ident, 1, topic, data) for ident, data in bulk.rows(self.mapper))
        rows = [(ident.hex, version, topic, state) for ident, version, topic, state in chained]
        with recorder.datastore.transaction(commit=True) as c:
            # A run inserts at random places of a big index: keep more of it in memory, and
            # checkpoint the log into the database now and then rather than after each unit
            # (each checkpoint rewrites every index page the unit touched).
            c.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
            c.execute(f"PRAGMA wal_autocheckpoint = {BULK_CHECKPOINT_PAGES}")
            c.executemany(recorder.insert_events_statement, rows)
            if isinstance(recorder, chain.ChainedSQLiteRecorder):
                recorder.chain_inserted(c, chained)  # the same transaction
        self.stored()

    def _copy_into_postgres(self, stored: list[StoredEvent]) -> None:
        """One transaction, as the library's recorder makes it (the table locked, so positions
        are given in commit order; its channel notified), the rows sent by COPY: the recorder's
        pipelined executemany stalls on tens of thousands of rows (the server waits for the
        client's rows while the client waits for the server's results)."""
        from psycopg.sql import SQL, Identifier

        recorder = self.recorder
        if isinstance(recorder, chain.ChainedPostgresRecorder):
            recorder.copy_events(stored)  # the same, chained in its transaction
            return
        table = SQL("{0}.{1}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.transaction(commit=True) as curs:
            recorder._lock_table(curs)
            recorder._notify_channel(curs)
            with curs.copy(SQL("COPY {0} (originator_id, originator_version, topic, state) FROM STDIN").format(
                    table)) as copy:
                for e in stored:
                    copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))

    def existing(self, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these aggregates exist, in one query per thousand (a run's resume check)."""
        watch = getattr(getattr(self.recorder, "_read_watch", None), "note", None)
        if watch is not None:  # inside a batch of consumed events (process_batch)
            for ident in ids:
                watch(ident)
        found: set[uuid.UUID] = set()
        table = self.recorder.events_table_name
        for start in range(0, len(ids), 1000):
            part = ids[start:start + 1000]
            if hasattr(self.recorder.datastore, "schema"):  # PostgreSQL
                from psycopg.sql import SQL, Identifier

                query = SQL("SELECT DISTINCT originator_id FROM {0}.{1} WHERE originator_id = ANY(%s)").format(
                    Identifier(self.recorder.datastore.schema), Identifier(table))
                with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
                    curs.execute(query, (part,))
                    found.update(uuid.UUID(str(row["originator_id"] if isinstance(row, dict) else row[0]))
                                 for row in curs.fetchall())
            else:
                marks = ",".join("?" * len(part))
                with self.recorder.datastore.transaction(commit=False) as curs:
                    # eventsourcing's SQLite recorder keeps ids as 32 hex digits.
                    curs.execute(f"SELECT DISTINCT originator_id FROM {table} WHERE originator_id IN ({marks})",
                                 [i.hex for i in part])
                    found.update(uuid.UUID(row[0]) for row in curs.fetchall())
        return found

    @property
    def handled_events(self) -> frozenset[str]:
        return frozenset(self.handlers)

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        handler = self.handlers.get(domain_event.name)
        if handler is not None:
            handler(self, domain_event, processing_event)

    # --- helpers for use cases -------------------------------------------------
    def exists(self, ident: uuid.UUID) -> bool:
        return bool(self.recorder.select_events(ident, limit=1))

    def load(self, ident: uuid.UUID, missing: LookupError) -> Any:
        """The aggregate, or `missing` raised; other failures (e.g. a wrong cipher key) propagate."""
        try:
            return self.repository.get(ident)
        except AggregateNotFoundError:
            raise missing from None

    def load_or_create(self, ident: uuid.UUID, create: Callable[[], Aggregate]) -> Any:
        """The aggregate, or a new one from `create()` (not saved) when the store has none."""
        try:
            return self.repository.get(ident)
        except AggregateNotFoundError:
            return create()

    def save_new(self, aggregate: Aggregate, business_id: str) -> None:
        """Save a new aggregate; DuplicateRequest if one with its id exists (a retried command)."""
        try:
            self.save(aggregate)
        except IntegrityError as exc:
            raise DuplicateRequest(business_id) from exc

    def is_processed(self, event: CloudEvent) -> bool:
        return has_exact_tracking(self.recorder, event.source, event.sequence)

    def process_cloud_event(self, event: CloudEvent) -> bool:
        """Apply a consumed event once. False when it had been processed already. It is handled
        at one moment (clock.one_moment), recorded with its effects; a replay (lifeline/audit/
        kafka_replay.py) gives the recorded moment in `recorded_moments`."""
        if self.is_processed(event):
            return False
        moment, stamp = self.recorded_moments.get(event.id, (None, None))
        try:
            with one_moment(self.clock, event.id, moment, stamp):
                self.process_event(event, Tracking(event.source, event.sequence))
        except IntegrityError:
            # Either another replica processed this very event (its tracking row
            # exists now), or it wrote the same aggregate first; the caller
            # retries the latter with fresh state.
            if self.is_processed(event):
                return False
            raise
        return True

    def process_batch(self, events: Sequence[CloudEvent]) -> list[bool]:
        """Apply a fetched batch of consumed events, each once: the outcomes (True processed,
        False processed already) of the first k of them, in order. k < len(events) when a
        handler failed or the batch's transaction did (IntegrityError, ContractError, ...): the
        caller then handles events[k:] one at a time (`process_cloud_event`), with its retries.

        Which events were processed already is asked once for the whole batch (`tracked_among`);
        the new ones are handled in order, each at its own moment (one_moment, `recorded_moments`
        on a replay) exactly as `process_cloud_event` handles it, and their effects are saved
        with one tracking record each in one transaction (`insert_events_tracked`, chained).

        A handler must see what the events before it changed. Those effects are not stored until
        the batch commits, so the batch is cut instead: when a handler reads an aggregate (by id:
        the repository, `exists`, `existing`; reads are watched, chain.reads_watched) or makes
        events for one that an earlier event of the open batch changed, its work is dropped, what
        is open is committed, and the event is handled again first in the next transaction, where
        the store holds those changes. Simpler than a unit of cached unsaved aggregates, and the
        common case (events of different aggregates) stays one transaction per fetch."""
        recorder = self.recorder
        if not hasattr(recorder, "insert_events_tracked"):  # not one of the chained recorders
            return []
        seen = tracked_among(recorder, [(e.source, e.sequence) for e in events])
        outcomes: list[bool] = []
        committed = 0  # outcomes[:committed] are final
        unit: list[ProcessingEvent] = []
        changed: set[Any] = set()  # aggregates the open unit's events change
        overlap: list[Any] = []

        def note(ident: Any) -> None:
            if ident in changed:
                overlap.append(ident)
                raise _Overlap(ident)

        def flush() -> bool:
            nonlocal committed, unit
            done, unit = unit, []
            changed.clear()  # nothing open any more: whatever reads now (a snapshot too) is not cut
            if done:
                try:
                    self._record_batch(done)
                except Exception as exc:  # noqa: BLE001 - the one-by-one path retries and reports it
                    log.info("%s: batch of %d not saved (%r); one at a time", self.name, len(done), exc)
                    return False
            committed = len(outcomes)
            return True

        with self.processing_lock, recorder.reads_watched(note):
            i = 0
            while i < len(events):
                event = events[i]
                key = (event.source, event.sequence)
                if key in seen:  # processed already, or earlier in this batch
                    outcomes.append(False)
                    i += 1
                    continue
                pe = _BatchProcessingEvent(Tracking(event.source, event.sequence))
                moment, stamp = self.recorded_moments.get(event.id, (None, None))
                overlap.clear()
                try:
                    with one_moment(self.clock, event.id, moment, stamp):
                        self.policy(event, pe)
                        made = {e.originator_id for e in pe.events}
                        if overlap or made & changed:
                            raise _Overlap(made & changed)
                        self._stamp_and_check(pe)
                except _Overlap:
                    if not flush():
                        return outcomes[:committed]
                    continue  # the same event again, first of the next transaction
                except Exception as exc:  # noqa: BLE001 - retried one by one, dead-lettered there
                    log.info("%s: %s failed in a batch (%r); one at a time from it", self.name, event.name, exc)
                    flush()
                    return outcomes[:committed]
                unit.append(pe)
                changed.update(made)
                seen.add(key)
                outcomes.append(True)
                i += 1
            flush()
        return outcomes[:committed]

    def _record_batch(self, unit: list[ProcessingEvent]) -> None:
        """The effects of several consumed events and their tracking records, one transaction;
        then what `process_event` does after recording each (snapshots, followers)."""
        events = [e for pe in unit for e in pe.events]
        stored = [self.mapper.to_stored_event(e) for e in events]
        ids = self.recorder.insert_events_tracked(stored, [pe.tracking for pe in unit])
        recordings = [Recording(d, Notification(id=n, originator_id=s.originator_id,
                                                originator_version=s.originator_version,
                                                topic=s.topic, state=s.state))
                      for d, s, n in zip(events, stored, ids or [], strict=False)]
        cache = self.repository.cache
        for pe in unit:
            if cache and not self.repository.fastforward:
                for aggregate_id, aggregate in pe.aggregates.items():
                    cache.put(aggregate_id, aggregate)
            self._take_snapshots(pe)
        self.notify(events)
        self._notify(recordings)
