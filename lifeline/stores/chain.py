"""Each service's log, hash-chained (SPEC §5): what `lifeline audit verify` proves.

Every stored event gets a chain record, written by the event store's own recorder in the
same transaction as the event, once the insert has given it its notification id:

    hash(n) = SHA-256( prev_hash | n | originator id | version | topic | state )

`prev_hash` is the hash of the record before it (32 zero bytes for the first); `n` the
notification id (8 bytes big-endian), the originator id its 16 UUID bytes, the version 8
bytes, the topic's UTF-8 bytes after their length (4 bytes), and `state` the stored bytes
exactly as stored: compressed and encrypted when encryption at rest is on (it is by
default). The chain therefore proves the ciphertext, and needs no key to be checked;
what the ciphertext says is proved by AES-GCM's own tag when it is read with the key.

The records are in a table beside the events (`<events table>_chain`: notification id,
originator id and version, prev_hash, hash), so that a record names what stood at its
position even when the event itself is gone. On PostgreSQL the events table is locked for
every insert (the library's EXCLUSIVE lock, which also orders notification ids by commit),
so the chain's head is read and extended by one writer at a time; on SQLite the insert's
write lock does the same. Every insert path is chained: the library's (`save`,
`process_event`), the bulk one (`ServiceApplication.save_unit`: SQLite `executemany`,
PostgreSQL `COPY`), and a batch of consumed events with their tracking records
(`insert_events_tracked`, `ServiceApplication.process_batch`).

Genesis: a store that holds events but no chain (written before the chain existed) is
chained from its first event at the first start, in one transaction that holds the write
lock; plain-text events written before encryption at rest became the default are
encrypted in the same pass. The `<events table>_genesis` row records how many events were
chained so (and encrypted) and when: what they were before that moment cannot be proved.

`LogSealed` (lifeline/domain/logseal.py): each service records its chain's head now and
then (LIFELINE_LOG_SEAL_SECONDS) and on a clean stop, and the outbox publishes it on its
own topic. A seal at position P covers the log up to the head it names (< P). `verify`
checks every seal it can read (from Kafka, else from the store itself) against the chain,
so a log changed and re-chained from there on, or cut short at its end, is still caught.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder

from lifeline.domain.logseal import LogSeal

log = logging.getLogger(__name__)

GENESIS = bytes(32)
_LINK = struct.Struct(">32sQ16sQI")
_BATCH = 5000

# A row as the chain sees it: (notification id, originator id, version, topic, state).
Row = tuple[int, uuid.UUID, int, str, bytes]
# An upgrade of an old row's stored state (plain text to encrypted): the new state, or None.
Upgrade = Callable[[bytes], "bytes | None"]


def link(prev: bytes, notification_id: int, originator_id: uuid.UUID, version: int, topic: str,
         state: bytes) -> bytes:
    """The chain hash of one stored event after `prev`."""
    t = topic.encode()
    return hashlib.sha256(_LINK.pack(prev, notification_id, originator_id.bytes, version, len(t)) + t
                          + bytes(state)).digest()


def _links(prev: bytes, rows: Sequence[Row], raw_ids: bool = False) -> list[tuple[int, Any, int, bytes, bytes]]:
    """(n, originator id, version, prev_hash, hash) of each row, in the order given; the
    originator ids as their 16 bytes with `raw_ids` (SQLite keeps them so)."""
    out = []
    pack, sha, topics = _LINK.pack, hashlib.sha256, {}
    for n, oid, version, topic, state in rows:
        t = topics.get(topic)
        if t is None:
            t = topics[topic] = topic.encode()
        b = oid.bytes
        h = sha(pack(prev, n, b, version, len(t)) + t + state).digest()
        out.append((n, b if raw_ids else oid, version, prev, h))
        prev = h
    return out


@dataclass(frozen=True)
class Genesis:
    backfilled_to: int  # events chained when the chain was introduced (0: a new store)
    encrypted: int  # of which were stored in plain text and encrypted then
    started_at: str


@dataclass(frozen=True)
class ChainRecord:
    notification_id: int
    originator_id: uuid.UUID
    originator_version: int
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class ChainedEvent:
    """A stored event with its chain record (None when it has none)."""

    notification_id: int
    originator_id: uuid.UUID
    originator_version: int
    topic: str
    state: bytes
    prev_hash: bytes | None
    hash: bytes | None


class _Chained:
    """What both recorders add: the chain table, its head, reading it, the genesis."""

    raw_ids: bool  # the chain table keeps originator ids as 16 bytes (SQLite) or uuid (PostgreSQL)

    @property
    def chain_table_name(self) -> str:
        return f"{self.events_table_name}_chain"  # type: ignore[attr-defined]

    @property
    def genesis_table_name(self) -> str:
        return f"{self.events_table_name}_genesis"  # type: ignore[attr-defined]

    # --- reads by aggregate, watched ------------------------------------------------------------
    @contextmanager
    def reads_watched(self, note: Callable[[Any], None]) -> Iterator[None]:
        """While this thread handles a batch of consumed events, `note(originator id)` sees
        every read of an aggregate's events (the repository's and `exists`): a batch uses it to
        find a handler reading what an earlier event of the same batch changed, not yet stored.
        The reads meanwhile may share one connection (`_batch_reader`)."""
        watch = self.__dict__.setdefault("_read_watch", threading.local())
        watch.note = note
        try:
            with self._batch_reader() as reader:
                watch.reader = reader
                yield
        finally:
            watch.note = watch.reader = None

    @contextmanager
    def _batch_reader(self) -> Iterator[Any]:
        yield None

    def select_events(self, originator_id: Any, **kwargs: Any) -> Any:
        watch = self.__dict__.get("_read_watch")
        if watch is not None and getattr(watch, "note", None) is not None:
            watch.note(originator_id)
            if watch.reader is not None:
                return self._select_with(watch.reader, originator_id, **kwargs)
        return super().select_events(originator_id, **kwargs)  # type: ignore[misc]

    # --- writing ---------------------------------------------------------------------------
    def _append_chain(self, c: Any, rows: list[Row]) -> None:
        """Chain `rows` (just inserted, in this transaction, under the write lock) after the head."""
        if not rows:
            return
        rows.sort(key=lambda r: r[0])
        head = self._head(c)
        self._insert_links(c, _links(head[1] if head else GENESIS, rows, self.raw_ids))

    def start_chain(self, upgrade: Upgrade | None, started_at: str) -> Genesis | None:
        """At a store's first start with the chain: chain what it holds (upgrading plain-text
        states first) and record the genesis. Nothing when the genesis is there; a warning and
        nothing when chain records exist without one (`verify` reports it)."""
        found = self.genesis()
        if found is not None:
            return found
        return self._start_chain(upgrade, started_at)

    def _backfill(self, c: Any, upgrade: Upgrade | None, started_at: str) -> Genesis | None:
        if self._head(c) is not None:
            log.warning("%s: chain records without a genesis record; not chained again",
                        self.chain_table_name)
            return None
        prev, after, chained, encrypted = GENESIS, 0, 0, 0
        while True:
            rows = self._select_rows(c, after, None, _BATCH)
            if not rows:
                break
            if upgrade is not None:
                changed = []
                for i, (n, oid, version, topic, state) in enumerate(rows):
                    new = upgrade(state)
                    if new is not None:
                        rows[i] = (n, oid, version, topic, new)
                        changed.append((new, n))
                if changed:
                    self._update_states(c, changed)
                    encrypted += len(changed)
            links = _links(prev, rows, self.raw_ids)
            self._insert_links(c, links)
            prev, after, chained = links[-1][4], rows[-1][0], chained + len(rows)
        genesis = Genesis(chained, encrypted, started_at)
        self._insert_genesis(c, genesis)
        if chained:
            log.warning("%s: %d events stored before the chain existed were chained now (%d encrypted)",
                        self.chain_table_name, chained, encrypted)
        return genesis

    # --- reading ---------------------------------------------------------------------------
    def iter_rows(self, upto: int) -> Iterator[Row]:
        after = 0
        while True:
            with self._reading() as c:
                rows = self._select_rows(c, after, upto, _BATCH)
            yield from rows
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    def iter_links(self, upto: int) -> Iterator[ChainRecord]:
        after = 0
        while True:
            with self._reading() as c:
                links = self._select_links(c, after, upto, _BATCH)
            yield from links
            if len(links) < _BATCH:
                return
            after = links[-1].notification_id

    def chain_head(self) -> tuple[int, bytes] | None:
        with self._reading() as c:
            return self._head(c)

    def chained_upto(self, notification_id: int) -> int:
        with self._reading() as c:
            return self._count(c, notification_id)


class ChainedSQLiteRecorder(_Chained, SQLiteProcessRecorder):
    """eventsourcing's SQLite process recorder, every insert chained in its transaction."""

    raw_ids = True

    def construct_create_table_statements(self) -> list[str]:
        self._select_head = f"SELECT notification_id, hash FROM {self.chain_table_name} ORDER BY notification_id DESC LIMIT 1"
        self._insert_link = f"INSERT INTO {self.chain_table_name} VALUES (?,?,?,?,?)"
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.chain_table_name} (notification_id INTEGER PRIMARY KEY, "
            "originator_id BLOB NOT NULL, originator_version INTEGER NOT NULL, prev_hash BLOB NOT NULL, "
            "hash BLOB NOT NULL)")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.genesis_table_name} (backfilled_to INTEGER NOT NULL, "
            "encrypted INTEGER NOT NULL, started_at TEXT NOT NULL)")
        return statements

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        ids = super()._insert_events(c, stored_events, **kwargs)
        if ids:
            self._append_chain(c, [(n, e.originator_id, e.originator_version, e.topic, e.state)
                                   for n, e in zip(ids, stored_events)])
        return ids

    @contextmanager
    def _batch_reader(self) -> Iterator[Any]:
        """One pooled connection for a batch's reads, each SELECT its own implicit transaction
        (autocommit), so it sees every commit before it, the batch's own included: a pooled
        transaction per read (BEGIN, ROLLBACK, the pool's locks) cost several times the read.
        Not for an in-memory database, whose pool lets no writer in while a reader is out."""
        if self.datastore.pool.is_sqlite_memory_mode:
            yield None
            return
        with self.datastore.get_connection(commit=False) as conn:
            yield conn._sqlite_conn

    def _select_with(self, reader: Any, originator_id: Any, *, gt: int | None = None, lte: int | None = None,
                     desc: bool = False, limit: int | None = None) -> list[StoredEvent]:
        """The library's `select_events` (the same statement, built as it builds it) on `reader`."""
        statement = self.select_events_statement
        params: list[Any] = [originator_id.hex if isinstance(originator_id, uuid.UUID) else originator_id]
        if gt is not None:
            statement += "AND originator_version>? "
            params.append(gt)
        if lte is not None:
            statement += "AND originator_version<=? "
            params.append(lte)
        statement += "ORDER BY originator_version " + ("DESC " if desc else "ASC ")
        if limit is not None:
            statement += "LIMIT ? "
            params.append(limit)
        try:
            rows = reader.execute(statement, params).fetchall()
        except sqlite3.Error as exc:
            raise PersistenceError(exc) from exc
        return [StoredEvent(originator_id=self.convert_originator_id(r["originator_id"]),
                            originator_version=r["originator_version"], topic=r["topic"], state=r["state"])
                for r in rows]

    def insert_events_tracked(self, stored_events: Sequence[StoredEvent], trackings: Sequence[Tracking]) -> Any:
        """The events (chained) and a tracking record for each consumed event in one transaction:
        all or nothing, IntegrityError when an event's version or a tracking record exists."""
        with self.datastore.transaction(commit=True) as c:
            ids = self._insert_events(c, stored_events) if stored_events else []
            self._check_has_multi_row_tracking_table(c)
            c.executemany(self.insert_tracking_statement,
                          [{"application_name": t.application_name, "notification_id": t.notification_id}
                           for t in trackings])
            return ids

    def chain_inserted(self, c: Any, rows: list[tuple[uuid.UUID, int, str, bytes]]) -> None:
        """Chain rows a caller has just inserted in this transaction with one executemany (the
        bulk path): SQLite gave them consecutive rowids ending at the table's largest."""
        if not rows:
            return
        c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
        last = c.fetchone()[0]
        first = last - len(rows) + 1
        self._append_chain(c, [(first + i, *row) for i, row in enumerate(rows)])

    def _head(self, c: Any) -> tuple[int, bytes] | None:
        c.execute(self._select_head)
        row = c.fetchone()
        return (row[0], bytes(row[1])) if row else None

    def _insert_links(self, c: Any, links: list[tuple[int, bytes, int, bytes, bytes]]) -> None:
        if len(links) == 1:  # most saves: one event
            c.execute(self._insert_link, links[0])
        else:
            c.executemany(self._insert_link, links)

    def _insert_genesis(self, c: Any, g: Genesis) -> None:
        c.execute(f"INSERT INTO {self.genesis_table_name} VALUES (?,?,?)",
                  (g.backfilled_to, g.encrypted, g.started_at))

    def _update_states(self, c: Any, changed: list[tuple[bytes, int]]) -> None:
        c.executemany(f"UPDATE {self.events_table_name} SET state = ? WHERE rowid = ?", changed)

    def genesis(self) -> Genesis | None:
        with self._reading() as c:
            return self._genesis(c)

    def _genesis(self, c: Any) -> Genesis | None:
        c.execute(f"SELECT backfilled_to, encrypted, started_at FROM {self.genesis_table_name} LIMIT 1")
        row = c.fetchone()
        return Genesis(row[0], row[1], row[2]) if row else None

    def _start_chain(self, upgrade: Upgrade | None, started_at: str) -> Genesis | None:
        with self.datastore.get_connection(commit=True) as conn:
            c = conn.cursor()
            c.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer between check and chain
            try:
                genesis = self._genesis(c) or self._backfill(c, upgrade, started_at)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return genesis

    def _reading(self) -> Any:
        return self.datastore.transaction(commit=False)

    def _select_rows(self, c: Any, after: int, upto: int | None, limit: int) -> list[Row]:
        stop = "" if upto is None else f" AND rowid <= {int(upto)}"
        c.execute(f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                  f"WHERE rowid > ?{stop} ORDER BY rowid LIMIT ?", (after, limit))
        return [(r[0], uuid.UUID(r[1]), r[2], r[3], bytes(r[4])) for r in c.fetchall()]

    def _select_links(self, c: Any, after: int, upto: int, limit: int) -> list[ChainRecord]:
        c.execute(f"SELECT * FROM {self.chain_table_name} WHERE notification_id > ? AND notification_id <= ? "
                  "ORDER BY notification_id LIMIT ?", (after, upto, limit))
        return [ChainRecord(r[0], uuid.UUID(bytes=bytes(r[1])), r[2], bytes(r[3]), bytes(r[4]))
                for r in c.fetchall()]

    def _count(self, c: Any, upto: int) -> int:
        c.execute(f"SELECT COUNT(*) FROM {self.chain_table_name} WHERE notification_id <= ?", (upto,))
        return c.fetchone()[0]

    def last_position(self) -> int:
        """The largest notification id of the events or of the chain."""
        with self._reading() as c:
            c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
            events = c.fetchone()[0] or 0
            c.execute(f"SELECT MAX(notification_id) FROM {self.chain_table_name}")
            return max(events, c.fetchone()[0] or 0)

    def position_of(self, originator_id: uuid.UUID, version: int) -> int | None:
        with self._reading() as c:
            c.execute(f"SELECT rowid FROM {self.events_table_name} WHERE originator_id = ? AND "
                      "originator_version = ?", (originator_id.hex, version))
            row = c.fetchone()
            return row[0] if row else None

    def row_at(self, notification_id: int) -> Row | None:
        with self._reading() as c:
            rows = self._select_rows(c, notification_id - 1, notification_id, 1)
        return rows[0] if rows else None


class ChainedPostgresRecorder(_Chained, PostgresProcessRecorder):
    """eventsourcing's PostgreSQL process recorder, every insert chained in its transaction."""

    raw_ids = False

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        # The library's optional insert function takes no table lock: the chain needs one.
        assert not self.datastore.enable_db_functions, "POSTGRES_ENABLE_DB_FUNCTIONS is not supported"
        from psycopg.sql import SQL, Identifier

        schema = Identifier(self.datastore.schema)
        self._events = SQL("{0}.{1}").format(schema, Identifier(self.events_table_name))
        self._chain = SQL("{0}.{1}").format(schema, Identifier(self.chain_table_name))
        self._genesis_table = SQL("{0}.{1}").format(schema, Identifier(self.genesis_table_name))
        self.check_identifier_length(self.genesis_table_name)
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {0} (notification_id bigint PRIMARY KEY, originator_id uuid NOT NULL, "
            "originator_version bigint NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL)").format(self._chain))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {0} (backfilled_to bigint NOT NULL, encrypted bigint NOT NULL, "
            "started_at text NOT NULL)").format(self._genesis_table))

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            self._append_chain(curs, [(n, e.originator_id, e.originator_version, e.topic, e.state)
                                      for n, e in zip(ids, stored_events)])
        return ids

    @contextmanager
    def _batch_reader(self) -> Iterator[Any]:
        """One pooled connection for a batch's reads: a checkout per read cost a round trip of
        its own (the pool's check of the connection) besides the read's."""
        with self.datastore.get_connection() as conn:
            yield conn

    def _select_with(self, reader: Any, originator_id: Any, *, gt: int | None = None, lte: int | None = None,
                     desc: bool = False, limit: int | None = None) -> list[StoredEvent]:
        """The library's `select_events` (the same statement, built as it builds it) on `reader`."""
        from psycopg.sql import SQL

        statement = self.select_events_statement
        params: list[Any] = [originator_id]
        if gt is not None:
            params.append(gt)
            statement += SQL(" AND originator_version > %s")
        if lte is not None:
            params.append(lte)
            statement += SQL(" AND originator_version <= %s")
        statement += SQL(" ORDER BY originator_version") + SQL(" DESC" if desc else " ASC")
        if limit is not None:
            params.append(limit)
            statement += SQL(" LIMIT %s")
        with reader.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [StoredEvent(originator_id=r["originator_id"], originator_version=r["originator_version"],
                                topic=r["topic"], state=bytes(r["state"])) for r in curs.fetchall()]

    def insert_events_tracked(self, stored_events: Sequence[StoredEvent], trackings: Sequence[Tracking]) -> Any:
        """The events (chained, the table locked as the library's insert locks it) and a tracking
        record for each consumed event in one transaction: all or nothing, IntegrityError when an
        event's version or a tracking record exists."""
        from psycopg.sql import SQL, Identifier

        tracking = SQL("INSERT INTO {0}.{1} SELECT * FROM unnest(%s::text[], %s::bigint[])").format(
            Identifier(self.datastore.schema), Identifier(self.tracking_table_name))
        with self.datastore.transaction(commit=True) as curs:
            self._check_has_multi_row_tracking_table(curs)
            curs.execute(tracking, ([t.application_name for t in trackings],
                                    [t.notification_id for t in trackings]))
            if not stored_events:
                return []
            self._insert_stored_events(curs, stored_events)  # locks the table, notifies its channel
            return self._fetch_ids_after_insert_events(curs, stored_events)  # and chains them

    def copy_events(self, stored: Sequence[StoredEvent]) -> None:
        """Insert many events by COPY in one transaction, as the library's insert does it (the
        table locked, so positions are given in commit order; its channel notified), chained."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(SQL("SELECT MAX(notification_id) AS n FROM {0}").format(self._events))
            before = curs.fetchone()["n"] or 0
            with curs.copy(SQL("COPY {0} (originator_id, originator_version, topic, state) FROM STDIN").format(
                    self._events)) as copy:
                for e in stored:
                    copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
            curs.execute(SQL("SELECT notification_id, originator_id, originator_version FROM {0} "
                             "WHERE notification_id > %s ORDER BY notification_id").format(self._events), (before,))
            by_key = {(e.originator_id, e.originator_version): e for e in stored}
            rows = []
            for r in curs.fetchall():
                e = by_key[(r["originator_id"], r["originator_version"])]
                rows.append((r["notification_id"], e.originator_id, e.originator_version, e.topic, e.state))
            rows.sort(key=lambda r: r[0])
            head = self._head(curs)
            links = _links(head[1] if head else GENESIS, rows)
            with curs.copy(SQL("COPY {0} FROM STDIN").format(self._chain)) as copy:
                for link_row in links:
                    copy.write_row(link_row)

    def _head(self, c: Any) -> tuple[int, bytes] | None:
        from psycopg.sql import SQL

        c.execute(SQL("SELECT notification_id, hash FROM {0} ORDER BY notification_id DESC LIMIT 1").format(
            self._chain))
        row = c.fetchone()
        return (row["notification_id"], bytes(row["hash"])) if row else None

    def _insert_links(self, c: Any, links: list[tuple[int, uuid.UUID, int, bytes, bytes]]) -> None:
        from psycopg.sql import SQL

        c.execute(SQL("INSERT INTO {0} SELECT * FROM unnest(%s::bigint[], %s::uuid[], %s::bigint[], "
                      "%s::bytea[], %s::bytea[])").format(self._chain),
                  [list(column) for column in zip(*links)])

    def _insert_genesis(self, c: Any, g: Genesis) -> None:
        from psycopg.sql import SQL

        c.execute(SQL("INSERT INTO {0} VALUES (%s, %s, %s)").format(self._genesis_table),
                  (g.backfilled_to, g.encrypted, g.started_at))

    def _update_states(self, c: Any, changed: list[tuple[bytes, int]]) -> None:
        from psycopg.sql import SQL

        c.executemany(SQL("UPDATE {0} SET state = %s WHERE notification_id = %s").format(self._events), changed)

    def genesis(self) -> Genesis | None:
        with self._reading() as c:
            return self._genesis(c)

    def _genesis(self, c: Any) -> Genesis | None:
        from psycopg.sql import SQL

        c.execute(SQL("SELECT backfilled_to, encrypted, started_at FROM {0} LIMIT 1").format(self._genesis_table))
        row = c.fetchone()
        return Genesis(row["backfilled_to"], row["encrypted"], row["started_at"]) if row else None

    def _start_chain(self, upgrade: Upgrade | None, started_at: str) -> Genesis | None:
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)  # no insert between the check and the chain
            return self._genesis(curs) or self._backfill(curs, upgrade, started_at)

    def _reading(self) -> Any:
        return self.datastore.transaction(commit=False)

    def _select_rows(self, c: Any, after: int, upto: int | None, limit: int) -> list[Row]:
        from psycopg.sql import SQL

        stop = SQL("") if upto is None else SQL(" AND notification_id <= {0}").format(int(upto))
        c.execute(SQL("SELECT notification_id, originator_id, originator_version, topic, state FROM {0} "
                      "WHERE notification_id > %s{1} ORDER BY notification_id LIMIT %s").format(self._events, stop),
                  (after, limit))
        return [(r["notification_id"], r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                for r in c.fetchall()]

    def _select_links(self, c: Any, after: int, upto: int, limit: int) -> list[ChainRecord]:
        from psycopg.sql import SQL

        c.execute(SQL("SELECT * FROM {0} WHERE notification_id > %s AND notification_id <= %s "
                      "ORDER BY notification_id LIMIT %s").format(self._chain), (after, upto, limit))
        return [ChainRecord(r["notification_id"], r["originator_id"], r["originator_version"], bytes(r["prev_hash"]),
                            bytes(r["hash"])) for r in c.fetchall()]

    def _count(self, c: Any, upto: int) -> int:
        from psycopg.sql import SQL

        c.execute(SQL("SELECT COUNT(*) AS n FROM {0} WHERE notification_id <= %s").format(self._chain), (upto,))
        return c.fetchone()["n"]

    def last_position(self) -> int:
        from psycopg.sql import SQL

        with self._reading() as c:
            c.execute(SQL("SELECT (SELECT MAX(notification_id) FROM {0}) AS e, (SELECT MAX(notification_id) "
                          "FROM {1}) AS c").format(self._events, self._chain))
            row = c.fetchone()
            return max(row["e"] or 0, row["c"] or 0)

    def position_of(self, originator_id: uuid.UUID, version: int) -> int | None:
        from psycopg.sql import SQL

        with self._reading() as c:
            c.execute(SQL("SELECT notification_id FROM {0} WHERE originator_id = %s AND originator_version = %s"
                          ).format(self._events), (originator_id, version))
            row = c.fetchone()
            return row["notification_id"] if row else None

    def row_at(self, notification_id: int) -> Row | None:
        with self._reading() as c:
            rows = self._select_rows(c, notification_id - 1, notification_id, 1)
        return rows[0] if rows else None


def recorder_topic(persistence_module: str) -> str | None:
    """The chained recorder for an eventsourcing persistence module (None: not chained)."""
    return {"eventsourcing.sqlite": f"{__name__}:ChainedSQLiteRecorder",
            "eventsourcing.postgres": f"{__name__}:ChainedPostgresRecorder"}.get(persistence_module)


def is_chained(app: Any) -> bool:
    return isinstance(app.recorder, _Chained)


# --- the application's side: genesis with the cipher, reading, seals ----------------------------
def plain_text_upgrade(mapper: Any) -> Upgrade | None:
    """With a cipher: a state that does not decrypt but is an event's plain JSON (stored
    before encryption at rest was the default) becomes what the mapper stores now."""
    cipher, compressor = mapper.cipher, mapper.compressor
    if cipher is None:
        return None

    def upgrade(state: bytes) -> bytes | None:
        try:
            cipher.decrypt(state)
            return None
        except Exception:  # noqa: BLE001 - the cipher's own error type: not ours, or plain text
            pass
        try:
            if not isinstance(orjson.loads(state), dict):
                return None
        except orjson.JSONDecodeError:
            return None  # neither: another key's ciphertext, left as it is (reading it fails as before)
        data = compressor.compress(state) if compressor is not None else state
        return cipher.encrypt(data)

    return upgrade


def start(app: Any) -> Genesis | None:
    """Called as a service's application is built: the chain's genesis (once per store)."""
    if not is_chained(app):
        return None
    return app.recorder.start_chain(plain_text_upgrade(app.mapper), app.clock.now().isoformat())


def read_chain(app: Any, upto: int | None = None) -> Iterator[ChainedEvent]:
    """Every stored event of `app`'s log in notification order, each with its chain record (None
    where it has none), up to `upto` (default: the log's end when called). For readers of the
    whole log (audit export, replay); `verify` checks what this yields."""
    rec = app.recorder
    upto = rec.last_position() if upto is None else upto
    links = rec.iter_links(upto)
    record = next(links, None)
    for n, oid, version, topic, state in rec.iter_rows(upto):
        while record is not None and record.notification_id < n:
            record = next(links, None)
        if record is not None and record.notification_id == n:
            yield ChainedEvent(n, oid, version, topic, state, record.prev_hash, record.hash)
        else:
            yield ChainedEvent(n, oid, version, topic, state, None, None)


def seal(app: Any, service: str | None = None) -> LogSeal.Sealed | None:
    """Record the chain's head as a LogSeal.Sealed (published as LogSealed) when anything
    besides the last seal was recorded since it; None when there is nothing new to seal."""
    if not is_chained(app):
        return None
    service = service or app.service
    head = app.recorder.chain_head()
    if head is None:
        return None
    ident = LogSeal.create_id(service)
    try:
        sealer = app.repository.get(ident)
    except Exception:  # noqa: BLE001 - AggregateNotFoundError: the first seal
        sealer = LogSeal.open(service)
    else:
        own = app.recorder.position_of(ident, sealer.version)
        if own is not None and own >= head[0]:
            return None  # the last thing recorded is the last seal itself
    n, h = head
    sealer.seal(n, h.hex(), app.recorder.chained_upto(n), app.clock.now().isoformat())
    try:
        recordings = app.save(sealer)
    except IntegrityError:
        return None  # another replica sealed at the same moment
    return recordings[-1].domain_event


# --- verification --------------------------------------------------------------------------------
CHANGED = "changed"
MISSING = "missing"
OUT_OF_ORDER = "out of order"
CHAIN_BROKEN = "chain broken"
NOT_CHAINED = "not chained"
TAIL_REMOVED = "last event(s) removed"
REWRITTEN = "rewritten"


@dataclass
class Problem:
    service: str
    what: str
    notification_id: int | None
    originator_id: uuid.UUID | None
    originator_version: int | None
    detail: str

    def line(self) -> str:
        where = f"notification {self.notification_id}" if self.notification_id is not None else "the log"
        who = (f" (originator {self.originator_id}, version {self.originator_version})"
               if self.originator_id is not None else "")
        return f"{self.service}: {where}{who}: {self.what}: {self.detail}"


@dataclass(frozen=True)
class Seal:
    """A published head: (notification id, head hash), with the seal's own position."""

    notification_id: int
    head_hash: str
    events: int
    sealed_at: str
    sequence: int  # where the seal itself was recorded


@dataclass
class Evidence:
    """What was published about a log: its seals and the last position seen on the topic."""

    source: str  # "kafka", "store" or "none"
    seals: list[Seal] = field(default_factory=list)
    last_published: int = 0
    last_published_name: str = ""
    relayed: int = 0  # how far the outbox relay says it published (the side store)
    note: str = ""
    forged: int = 0  # messages in the service's name whose signature does not verify: not evidence


@dataclass
class Report:
    service: str
    events: int = 0
    chained: int = 0
    head: tuple[int, bytes] | None = None
    seconds: float = 0.0
    genesis: Genesis | None = None
    evidence: Evidence = field(default_factory=lambda: Evidence("none"))
    seals_matched: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: (p.notification_id is None, p.notification_id or 0), default=None)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def verify(app: Any, evidence: Evidence | None = None, service: str | None = None,
           progress: Callable[[int], None] | None = None) -> Report:
    """Read `app`'s whole log in order, recompute every chain hash, and check it against the
    published seals in `evidence`: every event changed, removed, reordered or added outside the
    chain is a Problem naming it (the report's `first` is the earliest)."""
    service = service or getattr(app, "service", "") or type(app).__name__
    report = Report(service, evidence=evidence or Evidence("none"))
    if not is_chained(app):
        report.problems.append(Problem(service, NOT_CHAINED, None, None, None, "this store has no hash chain"))
        return report
    rec = app.recorder
    t0 = time.perf_counter()
    report.genesis = rec.genesis()
    upto = rec.last_position()
    at_seals = {s.notification_id for s in report.evidence.seals}
    stored_at: dict[int, bytes] = {}
    problems = report.problems

    def problem(what: str, n: int | None, oid: Any, version: Any, detail: str) -> None:
        problems.append(Problem(service, what, n, oid, version, detail))

    rows, links = rec.iter_rows(upto), rec.iter_links(upto)
    e, c = next(rows, None), next(links, None)
    prev_stored, prev_n, last_event = GENESIS, 0, 0
    while e is not None or c is not None:
        if c is None or (e is not None and e[0] < c.notification_id):
            n, oid, version = e[0], e[1], e[2]
            problem(NOT_CHAINED, n, oid, version,
                    "stored without a chain record: written outside Lifeline, or its record removed")
            report.events += 1
            last_event = n
            e = next(rows, None)
            continue
        if c.prev_hash != prev_stored:
            problem(CHAIN_BROKEN, c.notification_id, c.originator_id, c.originator_version,
                    f"its chain record does not follow the one before it (notification {prev_n or 'none'}): "
                    "events between them were removed with their chain records, or the chain was edited")
        if e is None or c.notification_id < e[0]:
            problem(MISSING, c.notification_id, c.originator_id, c.originator_version,
                    "in the chain but not in the store: the event was removed")
        else:
            report.events += 1
            last_event = e[0]
            if link(c.prev_hash, *e) != c.hash:
                _explain_mismatch(rec, service, c, e, problems)
            e = next(rows, None)
        report.chained += 1
        if c.notification_id in at_seals:
            stored_at[c.notification_id] = c.hash
        prev_stored, prev_n = c.hash, c.notification_id
        report.head = (c.notification_id, c.hash)
        c = next(links, None)
        if progress is not None and report.chained % 10000 == 0:
            progress(report.chained)
    # Removed events at the end of the chain: their records outlive them.
    for p in problems:
        if p.what == MISSING and p.notification_id is not None and p.notification_id > last_event:
            p.what = TAIL_REMOVED
            p.detail = f"in the chain but not in the store, which ends at notification {last_event}"
    _check_evidence(report, stored_at, last_event)
    report.seconds = time.perf_counter() - t0
    return report


def _explain_mismatch(rec: Any, service: str, c: ChainRecord, e: Row, problems: list[Problem]) -> None:
    n, oid, version = e[0], e[1], e[2]
    if (oid, version) == (c.originator_id, c.originator_version):
        problems.append(Problem(service, CHANGED, n, oid, version,
                                "its stored bytes do not hash to its chain record"))
        return
    # Another event stands where this one was recorded: where is the one recorded here?
    moved_to = rec.position_of(c.originator_id, c.originator_version)
    if moved_to is not None:
        moved = rec.row_at(moved_to)
        intact = moved is not None and link(c.prev_hash, n, *moved[1:]) == c.hash
        problems.append(Problem(
            service, OUT_OF_ORDER, n, c.originator_id, c.originator_version,
            f"recorded here, it is now at notification {moved_to}{'' if intact else ' and changed'}; "
            f"notification {n} holds originator {oid} version {version}"))
    else:
        problems.append(Problem(service, CHANGED, n, c.originator_id, c.originator_version,
                                f"replaced: notification {n} now holds originator {oid} version {version}"))


def _check_evidence(report: Report, stored_at: dict[int, bytes], last_event: int) -> None:
    ev, service = report.evidence, report.service
    matched: int | None = None
    for s in sorted(ev.seals, key=lambda s: s.notification_id):
        stored = stored_at.get(s.notification_id)
        if stored is None:
            what = TAIL_REMOVED if s.notification_id > last_event else MISSING
            report.problems.append(Problem(
                service, what, s.notification_id, None, None,
                f"LogSealed of {s.sealed_at} covers the log up to notification {s.notification_id} "
                f"({s.events} events); the store's chain has no record there (it ends at {last_event})"))
        elif stored.hex() != s.head_hash:
            since = f"notification {matched}" if matched else "the log's start"
            report.problems.append(Problem(
                service, REWRITTEN, s.notification_id, None, None,
                f"the chain up to here does not hash to the head published in LogSealed of {s.sealed_at}: "
                f"events after {since} were changed and the chain recomputed"))
        else:
            matched = s.notification_id
            report.seals_matched += 1
    if ev.last_published > last_event:
        report.problems.append(Problem(
            service, TAIL_REMOVED, ev.last_published, None, None,
            f"{ev.last_published_name or 'an event'} was published from notification {ev.last_published} "
            f"({ev.source}); the store ends at notification {last_event}"))
    elif ev.relayed > last_event:
        report.problems.append(Problem(
            service, TAIL_REMOVED, ev.relayed, None, None,
            f"the outbox relay had published the log up to notification {ev.relayed}; the store ends at "
            f"notification {last_event}"))


# --- what was published ------------------------------------------------------------------------
def store_evidence(app: Any, service: str | None = None) -> Evidence:
    """The seals recorded in the store itself (when Kafka cannot be read): they catch a chain
    recomputed by someone without the cipher key (the seals are encrypted at rest), not a store
    rewritten whole by someone with it."""
    service = service or app.service
    ident = LogSeal.create_id(service)
    seals = []
    try:
        events = list(app.events.get(ident))
    except Exception as exc:  # noqa: BLE001 - a seal that does not decrypt
        return Evidence("store", note=f"the store's seals cannot be read: {exc!r}")
    for event in events:
        if isinstance(event, LogSeal.Sealed):
            at = app.recorder.position_of(ident, event.originator_version) or 0
            seals.append(Seal(event.notification_id, event.head_hash, event.events, event.sealed_at, at))
    last = max((s.sequence for s in seals), default=0)
    return Evidence("store", seals, last, "LogSealed" if last else "")


async def kafka_evidence(settings: Any, service: str, timeout: float = 15.0) -> Evidence:
    """The seals and the last position published on the service's topic, read from offset zero
    (no consumer group). Raises when the broker cannot be reached within `timeout`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from lifeline.contracts import topics as T
    from lifeline.messaging.kafka import kafka_client_options

    from lifeline.runtime.service import verifier_for

    topic = f"{settings.namespace}{T.TOPICS[service]}"
    source = f"lifeline/{service}"
    verifier = verifier_for(settings)
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id=f"lifeline-audit-{service}", request_timeout_ms=int(timeout * 1000),
                                metadata_max_age_ms=1000)
    try:
        await asyncio.wait_for(consumer.start(), timeout)
    except BaseException:
        await consumer.stop()
        raise
    try:
        # The whole cluster's metadata (Kafka answers a consumer's own request only for the
        # topics it already follows).
        cluster = await asyncio.wait_for(consumer._client.fetch_all_metadata(), timeout)
        parts = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        evidence = Evidence("kafka")
        if not parts:
            evidence.note = f"{topic} does not exist"
            return evidence
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        seals: dict[int, Seal] = {}
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for message in batch:
                    _take(message.value, source, evidence, seals, verifier)
        evidence.seals = sorted(seals.values(), key=lambda s: s.notification_id)
        return evidence
    finally:
        await consumer.stop()


def _take(value: bytes | None, source: str, evidence: Evidence, seals: dict[int, Seal], verifier: Any) -> None:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return
    if not isinstance(event, dict) or event.get("source") != source:
        return
    try:
        verifier.check(event)  # only what the service itself published is evidence
    except ValueError:
        evidence.forged += 1
        return
    sequence = event.get("sequence")
    if not isinstance(sequence, int):
        return
    name = str(event.get("type", "")).rsplit(".", 2)[-2] if event.get("type") else ""
    if sequence > evidence.last_published:
        evidence.last_published, evidence.last_published_name = sequence, name
    if name == "LogSealed" and isinstance(event.get("data"), dict):
        d = event["data"]
        seals[sequence] = Seal(d["notification_id"], d["head_hash"], d["events"], d["sealed_at"], sequence)


def evidence_for(settings: Any, app: Any, service: str, kafka: bool = True, timeout: float = 15.0) -> Evidence:
    """From Kafka when it can be read, else from the store (the Evidence's note says why); with
    the outbox relay's position from the service's side store either way."""
    from lifeline.messaging.outbox import POSITION
    from lifeline.stores.sidestore import SideStore

    if kafka:
        try:
            found = asyncio.run(kafka_evidence(settings, service, timeout))
        except Exception as exc:  # noqa: BLE001 - the broker away: the store's own seals
            found = store_evidence(app, service)
            found.note = f"Kafka unreachable ({type(exc).__name__}); seals read from the store"
    else:
        found = store_evidence(app, service)
    side = SideStore(settings, service)
    try:
        with side.transaction() as tx:
            found.relayed = tx.position(POSITION)
    finally:
        side.close()
    return found
