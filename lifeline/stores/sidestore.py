"""A service's read models and positions, kept beside its event store.

Read models are JSON documents keyed by (kind, key) with one secondary
reference (usually the case id) for listing. Positions remember how far a
projection or an outbox relay got in the service's own event log. A projection
writes its documents and its new position in one transaction, so a crash
between the two cannot happen.

SQLite (a file of its own, so projections never contend with event writes) or
PostgreSQL (tables in the service's schema), by configuration.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from lifeline.stores.eventstore import ensure_postgres_schema, schema_name
from lifeline.settings import Settings


# orjson writes what json.dumps would (keys sorted, UTF-8 as is) without its spaces, at a tenth of
# its cost (a projection's main cost after the project function itself); what orjson would write
# differently is refused here and written by json.dumps as before: non-string keys, subclasses,
# datetimes and dataclasses (which json refuses), integers beyond 64 bits. (A NaN becomes null.)
_DOC = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_SUBCLASS)


def doc_text(doc: dict[str, Any]) -> str:
    """A document as stored. Stores written before hold json.dumps's spelling (`"case_id": "…"`):
    both read the same, and `mentioning` searches for both."""
    try:
        return orjson.dumps(doc, option=_DOC).decode()
    except TypeError:
        return json.dumps(doc, ensure_ascii=False, sort_keys=True)


class SideTx:
    """One transaction's view of the store; SQL written with '?' placeholders."""

    def __init__(self, cursor: Any, paramstyle: str, table_prefix: str, lock_rows: bool):
        self._c = cursor
        self._pg = paramstyle == "format"
        self._t = table_prefix
        self._lock_rows = lock_rows

    def _x(self, sql: str, params: tuple = ()) -> Any:
        sql = sql.replace("{t}", self._t)
        if self._pg:
            sql = sql.replace("?", "%s")
        self._c.execute(sql, params)
        return self._c

    def position(self, name: str) -> int:
        self._x(
            "INSERT INTO {t}positions (name, position) VALUES (?, 0) "
            "ON CONFLICT (name) DO NOTHING",
            (name,),
        )
        lock = " FOR UPDATE" if self._lock_rows else ""
        row = self._x("SELECT position FROM {t}positions WHERE name = ?" + lock, (name,)).fetchone()
        return int(row[0])

    def set_position(self, name: str, position: int) -> None:
        self._x(
            "INSERT INTO {t}positions (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def take_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the named lease until now + ttl, unless another holder's is unexpired."""
        self._x(
            "INSERT INTO {t}leases (name, holder, expires_at) VALUES (?, '', 0) "
            "ON CONFLICT (name) DO NOTHING",
            (name,),
        )
        lock = " FOR UPDATE" if self._lock_rows else ""
        holder_now, expires_at = self._x(
            "SELECT holder, expires_at FROM {t}leases WHERE name = ?" + lock, (name,)
        ).fetchone()
        if holder_now not in ("", holder) and expires_at > now:
            return False
        self._x(
            "UPDATE {t}leases SET holder = ?, expires_at = ? WHERE name = ?", (holder, now + ttl, name)
        )
        return True

    def release_lease(self, name: str, holder: str) -> None:
        self._x("UPDATE {t}leases SET expires_at = 0 WHERE name = ? AND holder = ?", (name, holder))

    def put(self, kind: str, key: str, doc: dict[str, Any], ref: str = "") -> None:
        self._x(self._PUT, (kind, key, ref, doc_text(doc)))

    def delete(self, kind: str, key: str) -> None:
        self._x(self._DELETE, (kind, key))

    _PUT = ("INSERT INTO {t}docs (kind, key, ref, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET ref = excluded.ref, doc = excluded.doc")
    _DELETE = "DELETE FROM {t}docs WHERE kind = ? AND key = ?"

    def write_many(self, puts: list[tuple[str, str, str, str]], deletes: list[tuple[str, str]]) -> None:
        """Documents already in their stored text, (kind, key, ref, doc_text(doc)), and deletions
        (kind, key) of other documents, as one statement each (a projection's page of events)."""
        for sql, rows in ((self._DELETE, deletes), (self._PUT, puts)):
            if rows:
                sql = sql.replace("{t}", self._t)
                self._c.executemany(sql.replace("?", "%s") if self._pg else sql, rows)

    def text(self, kind: str, key: str) -> str | None:
        """A document's stored text (what `get` parses)."""
        row = self._x("SELECT doc FROM {t}docs WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return row[0] if row else None

    def page(self, kind: str, after: str = "", limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """Documents of one kind in key order after `after`: a long read in short transactions."""
        rows = self._x(
            "SELECT key, doc FROM {t}docs WHERE kind = ? AND key > ? ORDER BY key LIMIT ?", (kind, after, limit)
        ).fetchall()
        return [(r[0], orjson.loads(r[1])) for r in rows]

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._x("SELECT doc FROM {t}docs WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return json.loads(row[0]) if row else None

    def find(self, kind: str, ref: str) -> list[dict[str, Any]]:
        rows = self._x(
            "SELECT doc FROM {t}docs WHERE kind = ? AND ref = ? ORDER BY key", (kind, ref)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def find_prefix(self, kind: str, prefix: str) -> list[dict[str, Any]]:
        """Documents of one kind whose digit-string ref starts with `prefix` (refs that are region
        codes: those within a division, lifeline.rules.regions.scope_prefix), in key order: a range
        of the (kind, ref) index, not a scan of the kind. An empty prefix is every document."""
        if not prefix:
            return [doc for _, _, _, doc in self.all(kind)]
        if not prefix.isdigit():
            raise ValueError(f"a ref prefix is digits, not {prefix!r}")
        # "370502" → below "370503": every digit ref between starts with the prefix (and every one
        # from "99" on starts with "99": no bound above then).
        after = str(int(prefix) + 1).zfill(len(prefix))
        bound, params = ("", (kind, prefix)) if len(after) > len(prefix) else (" AND ref < ?", (kind, prefix, after))
        rows = self._x("SELECT doc FROM {t}docs WHERE kind = ? AND ref >= ?" + bound + " ORDER BY key",
                       params).fetchall()
        return [json.loads(r[0]) for r in rows]

    def mentioning(self, ident: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Documents keyed by `ident`, referring to it, or naming it as their case_id (an audit
        export's read models of one case: a scan of the table)."""
        rows = self._x(
            "SELECT kind, key, ref, doc FROM {t}docs WHERE ref = ? OR key = ? OR doc LIKE ? OR doc LIKE ? "
            "ORDER BY kind, key",
            (ident, ident, f'%"case_id": {json.dumps(ident, ensure_ascii=False)}%',
             f'%"case_id":{json.dumps(ident, ensure_ascii=False)}%'),
        ).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def texts_after(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str, str, str]]:
        """(kind, key, ref, stored text) of the documents after `after` (kind, key), in that order
        (SQLite: code point order, as Python sorts; the primary key's index walked from `after`)."""
        if after is None:
            return self._x("SELECT kind, key, ref, doc FROM {t}docs ORDER BY kind, key LIMIT ?", (limit,)).fetchall()
        return self._x("SELECT kind, key, ref, doc FROM {t}docs WHERE (kind, key) > (?, ?) ORDER BY kind, key "
                       "LIMIT ?", (*after, limit)).fetchall()

    def clear_documents(self) -> None:
        self._x("DELETE FROM {t}docs")

    def all(self, kind: str | None = None) -> list[tuple[str, str, str, dict[str, Any]]]:
        if kind is None:
            rows = self._x("SELECT kind, key, ref, doc FROM {t}docs ORDER BY kind, key").fetchall()
        else:
            rows = self._x(
                "SELECT kind, key, ref, doc FROM {t}docs WHERE kind = ? ORDER BY key", (kind,)
            ).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


class SideStore:
    def __init__(self, settings: Settings, service: str, name: str = "views"):
        self.service = service
        self.name = name
        self._lock = threading.Lock()
        if settings.database_url:
            from psycopg_pool import ConnectionPool

            ensure_postgres_schema(settings, service)
            self._pool = ConnectionPool(
                settings.database_url, min_size=1, max_size=4, open=True, timeout=30
            )
            self._prefix = f'"{schema_name(settings, service)}".{name}_'
            self._sqlite = None
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path = settings.data_dir / f"{service}.{name}.sqlite"
            self._sqlite = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._prefix = f"{name}_"
            self._pool = None
        self._create_tables()

    @classmethod
    def in_memory(cls, name: str = "views", ref_index: bool = True) -> "SideStore":
        """A throw-away SQLite store, for replays into a fresh store; without the index of the
        documents' refs until `index_refs` when `ref_index` is False (a replay builds it once at the
        end, a sort, rather than entry by entry: a third of the cost of writing its documents)."""
        store = cls.__new__(cls)
        store.service, store.name, store._lock = "replay", name, threading.Lock()
        store._sqlite = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        store._prefix, store._pool = f"{name}_", None
        store._create_tables(ref_index)
        return store

    def index_refs(self, tx: SideTx | None = None) -> None:
        """The index of the documents' refs, made if missing (in `tx`, or a transaction of its own)."""
        if tx is None:
            with self.transaction() as tx:
                return self.index_refs(tx)
        tx._x("CREATE INDEX IF NOT EXISTS " + self.name + "_docs_ref ON {t}docs (kind, ref)")

    def _create_tables(self, ref_index: bool = True) -> None:
        with self.transaction() as tx:
            tx._x(
                "CREATE TABLE IF NOT EXISTS {t}docs (kind TEXT NOT NULL, key TEXT NOT NULL, "
                "ref TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (kind, key))"
            )
            if ref_index:
                self.index_refs(tx)
            tx._x(
                "CREATE TABLE IF NOT EXISTS {t}positions (name TEXT PRIMARY KEY, "
                "position BIGINT NOT NULL)"
            )
            tx._x(
                "CREATE TABLE IF NOT EXISTS {t}leases (name TEXT PRIMARY KEY, "
                "holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
            )

    @contextmanager
    def transaction(self) -> Iterator[SideTx]:
        if self._sqlite is not None:
            with self._lock:
                cur = self._sqlite.cursor()
                # IMMEDIATE takes the write lock up front: two processes on one
                # file serialise here instead of failing at their first write.
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield SideTx(cur, "qmark", self._prefix, lock_rows=False)
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
        else:
            assert self._pool is not None
            with self._pool.connection() as conn, conn.transaction():
                with conn.cursor() as cur:
                    yield SideTx(cur, "format", self._prefix, lock_rows=True)

    def scan(self, kind: str, page_size: int = 2000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every document of one kind, in key order, a page per transaction (memory stays flat)."""
        after = ""
        while True:
            with self.transaction() as tx:
                page = tx.page(kind, after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1][0]

    def texts(self, page_size: int = 5000) -> Iterator[tuple[str, str, str, str]]:
        """Every document as (kind, key, ref, stored text), in (kind, key) code point order (as
        Python sorts): SQLite a page per transaction (a comparison of a million documents holds a
        page of each store; the live one is not locked meanwhile); PostgreSQL one sorted read by a
        server-side cursor (its "C" collation: its index's order is the database's collation)."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.transaction():
                with conn.cursor(name="lifeline_side_texts") as cur:
                    cur.itersize = page_size
                    cur.execute(f'SELECT kind, key, ref, doc FROM {self._prefix}docs '
                                'ORDER BY kind COLLATE "C", key COLLATE "C"')
                    yield from cur
            return
        after = None
        while True:
            with self.transaction() as tx:
                page = tx.texts_after(after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = (page[-1][0], page[-1][1])

    def count(self) -> int:
        """How many documents the store holds."""
        with self.transaction() as tx:
            return int(tx._x("SELECT COUNT(*) FROM {t}docs").fetchone()[0])

    def dump(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        with self.transaction() as tx:
            return tx.all()

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pool is not None:
            self._pool.close()
