"""A service's own log read fast: big pages straight from the recorder's table, each event
decoded as the library's mapper decodes it, without its generic JSON transcoder.

`Mapper.to_domain_event` decrypts, decompresses, parses the JSON with `json`'s object hook
(a Python call for every JSON object, looking for `{"_type_", "_data_"}` pairs), resolves
the topic, converts the originator id, runs the upcasters and makes the object without
calling its constructor. `LogReader.decode` does the same steps in the same order, with
orjson and only as much of the hook as the state needs: most states hold one transcoded
value, their timestamp, and are not walked at all; a state holding others (a case's
Application, an entitlement's BankAccount) is walked bottom-up with the application's own
transcodings, as the hook would have been called. Whatever it cannot decode so (orjson
refuses NaN, integers beyond 64 bits, lone surrogates; an unknown topic; a value class
refusing its fields) goes to the mapper itself, which decodes it or raises what it raises.
tests/unit/test_replay.py compares the two on awkward states, and tests/unit/replay_crosscheck.py
on every event the services' own tests store.

`pages(parallel=True)` (a replay) reads in a forked process of its own: it selects the next page
and decrypts and decompresses it while this one parses and projects the page before, so the two
cores share the work. A store the child cannot open (SQLite in memory) is read here.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent, find_id_convertor, pass_through_convertor
from eventsourcing.utils import resolve_topic

# A row as read: (notification id, originator id, version, topic, stored state).
Row = tuple[int, Any, int, str, bytes]

_TYPE = b'"_type_"'
_DATETIME = "datetime_iso"


class LogReader:
    def __init__(self, app: Any, page_size: int = 10_000):
        self.app = app
        self.page_size = page_size
        mapper = app.mapper
        self.mapper = mapper
        self._decrypt = mapper.cipher.decrypt if mapper.cipher else None
        self._decompress = mapper.compressor.decompress if mapper.compressor else None
        self._names = mapper.transcoder.names  # the registered transcodings by name
        self._classes: dict[str, tuple[type, Any, int]] = {}
        recorder = app.recorder
        self._pg = hasattr(recorder.datastore, "schema")
        if self._pg:
            from psycopg.sql import SQL, Identifier

            self._select = SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {0}.{1} "
                "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
            ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
            self._hex_ids = False
        else:
            self._select = (
                f"SELECT rowid, originator_id, originator_version, topic, state FROM {recorder.events_table_name} "
                "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?")
            # The library's SQLite recorder keeps ids as 32 hex digits.
            self._hex_ids = recorder.datastore.originator_id_type == "uuid"

    # --- reading -----------------------------------------------------------------------------
    def _fetch(self, after: int, upto: int, limit: int) -> list[Row]:
        """Rows as stored (SQLite's ids in hex): one query in its own short read transaction (a
        long replay holds no snapshot of a live store)."""
        recorder = self.app.recorder
        if self._pg:
            from psycopg.rows import tuple_row

            with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(self._select, (after, upto, limit), prepare=True)
                return curs.fetchall()
        with recorder.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # tuples: the connection's sqlite3.Row costs per row
            cursor.execute(self._select, (after, upto, limit))
            return cursor.fetchall()

    def rows(self, after: int, upto: int, limit: int) -> list[Row]:
        """Up to `limit` stored events after position `after` (up to `upto`), in order."""
        rows = self._fetch(after, upto, limit)
        if self._hex_ids:
            UUID = uuid.UUID
            return [(n, UUID(oid), v, t, s) for n, oid, v, t, s in rows]
        return rows

    def pages(self, after: int = 0, upto: int | None = None,
              parallel: bool = False) -> Iterator[list[tuple[int, Any]]]:
        """(notification id, domain event) of every stored event after `after` (up to `upto`, by
        default the end of the log as it is now), a page at a time; read by a process of its own
        with `parallel` (where it can be)."""
        if upto is None:
            upto = self.app.recorder.max_notification_id() or 0
        if parallel and self._forkable():
            yield from self._pages_from_child(after, upto)
            return
        while after < upto:
            rows = self.rows(after, upto, self.page_size)
            if not rows:
                return
            yield self.decode(rows)
            after = rows[-1][0]

    # --- decoding ----------------------------------------------------------------------------
    def decode(self, rows: list[Row]) -> list[tuple[int, Any]]:
        """Stored rows (states as stored) as domain events."""
        out = []
        append, one = out.append, self.one
        for row in rows:
            try:
                event = one(row)
            except Exception:  # noqa: BLE001 - decoded (or refused) by the mapper itself
                event = self._by_mapper(row)
            append((row[0], event))
        return out

    def _by_mapper(self, row: Row) -> Any:
        return self.mapper.to_domain_event(StoredEvent(row[1], row[2], row[3], bytes(row[4])))

    def one(self, row: Row) -> Any:
        state = row[4]
        if self._decrypt is not None:
            state = self._decrypt(state)
        if self._decompress is not None:
            state = self._decompress(state)
        return self._event(row[1], row[2], row[3], state)

    def _event(self, originator_id: Any, version: int, topic: str, state: bytes) -> Any:
        """The domain event of a stored state in plain text, as `Mapper.to_domain_event` makes it."""
        known = self._classes.get(topic)
        if known is None:
            cls = resolve_topic(topic)
            known = self._classes[topic] = (cls, find_id_convertor(cls, type(originator_id)),
                                            getattr(cls, "class_version", 1))
        cls, convert, class_version = known
        d = orjson.loads(state)
        stamp = d.get("timestamp")
        if (state.count(_TYPE) == 1 and type(stamp) is dict and len(stamp) == 2
                and stamp.get("_type_") == _DATETIME and "_data_" in stamp):
            # The one transcoded value is the timestamp: what the hook would have made of it.
            d["timestamp"] = datetime.fromisoformat(stamp["_data_"])
        else:
            d = self._walk(d)
        d["originator_id"] = originator_id if convert is pass_through_convertor else convert(originator_id)
        d["originator_version"] = version
        from_version = d.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(d)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", d)
        return event

    def _walk(self, value: Any) -> Any:
        """JSONTranscoder._decode_obj applied as json's object hook applies it: to every object,
        innermost first, an object of exactly `_type_` and `_data_` becoming its value."""
        if type(value) is dict:
            for k, v in value.items():
                if type(v) is dict or type(v) is list:
                    value[k] = self._walk(v)
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self._names[value["_type_"]].decode(value["_data_"])
            return value
        if type(value) is list:
            for i, v in enumerate(value):
                if type(v) is dict or type(v) is list:
                    value[i] = self._walk(v)
        return value

    # --- a reading process -------------------------------------------------------------------
    def _forkable(self) -> bool:
        if "fork" not in multiprocessing.get_all_start_methods():
            return False
        return self._pg or not self.app.recorder.datastore.pool.is_sqlite_memory_mode

    def _pages_from_child(self, after: int, upto: int) -> Iterator[list[tuple[int, Any]]]:
        """Pages selected, decrypted and decompressed by a forked child, sent back pickled (ids,
        originator ids, versions, topics, states in plain text, and the indexes of the rows it
        could not decrypt or decompress, sent as stored: the mapper reads those here)."""
        ctx = multiprocessing.get_context("fork")
        receiving, sending = ctx.Pipe(duplex=False)
        child = ctx.Process(target=self._produce, args=(sending, after, upto), daemon=True)
        child.start()
        sending.close()
        UUID, event, by_mapper = uuid.UUID, self._event, self._by_mapper
        try:
            while True:
                message = receiving.recv_bytes()
                if not message:
                    return
                page = pickle.loads(message)
                if isinstance(page, str):
                    raise RuntimeError(f"the log's reading process failed: {page}")
                ns, oids, versions, topics, states, failed = page
                if self._hex_ids:
                    oids = [UUID(oid) for oid in oids]
                out: list[tuple[int, Any]] = []
                for i, (n, oid, version, topic, state) in enumerate(zip(ns, oids, versions, topics, states)):
                    try:
                        if failed and i in failed:
                            raise ValueError("not decrypted")
                        out.append((n, event(oid, version, topic, state)))
                    except Exception:  # noqa: BLE001 - as `decode`: the mapper decodes or raises
                        out.append((n, by_mapper(self.rows(n - 1, n, 1)[0])))
                yield out
        finally:
            receiving.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()

    def _produce(self, sending: Any, after: int, upto: int) -> None:
        """The child: its own connection to the store (none of the parent's is touched), pages
        read until `upto`, an empty message at the end (a str on failure)."""
        try:
            fetch = self._child_fetch()
            decrypt, decompress = self._decrypt, self._decompress
            while after < upto:
                rows = fetch(after, upto, self.page_size)
                if not rows:
                    break
                ns, oids, versions, topics, states = (list(c) for c in zip(*rows))
                failed = set()
                for i, state in enumerate(states):
                    try:
                        if decrypt is not None:
                            state = decrypt(state)
                        if decompress is not None:
                            state = decompress(state)
                        states[i] = state
                    except Exception:  # noqa: BLE001 - left to the mapper in the parent
                        failed.add(i)
                sending.send_bytes(pickle.dumps((ns, oids, versions, topics, states, failed), protocol=5))
                after = ns[-1]
            sending.send_bytes(b"")
        except BaseException as exc:  # noqa: BLE001 - told to the parent, which raises it
            try:
                sending.send_bytes(pickle.dumps(f"{type(exc).__name__}: {exc}"))
            except Exception:  # noqa: BLE001 - the parent has gone
                pass
        finally:
            sending.close()
            os._exit(0)  # nothing of the parent's (pools, atexit hooks) runs here

    def _child_fetch(self) -> Any:
        datastore = self.app.recorder.datastore
        if self._pg:
            import psycopg

            pool = datastore.pool
            kwargs = {k: v for k, v in pool.kwargs.items() if k != "row_factory"}
            conn = psycopg.connect(pool.conninfo, autocommit=True, **kwargs)

            def fetch(after: int, upto: int, limit: int) -> list[Row]:
                with conn.cursor() as curs:
                    curs.execute(self._select, (after, upto, limit), prepare=True)
                    return curs.fetchall()
            return fetch
        import sqlite3

        conn = sqlite3.connect(datastore.pool.db_name, uri=datastore.pool.db_name.startswith("file:"))

        def fetch(after: int, upto: int, limit: int) -> list[Row]:
            return conn.execute(self._select, (after, upto, limit)).fetchall()
        return fetch
