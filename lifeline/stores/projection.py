"""Read models built from a service's own event log.

A projection reads the log after its saved position and writes the documents
and the new position in one transaction, so each event is projected once. The
same function rebuilds the read models from position zero into a fresh store
(`lifeline replay`), and the two are compared document by document.

Both read the log through `LogReader` (big pages straight from the events table, decoded
without the library's generic transcoder) and write a page's documents through `PageTx`
(read back from memory within the page, written in one statement per page at its end);
`fast=False` is the library's path, event by event through its mapper and the store, kept
as the reference the fast one is compared with (tests/unit/test_replay.py, bench/replay.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from lifeline.stores.application import ServiceApplication, collector_paused
from lifeline.stores.logreader import LogReader
from lifeline.stores.sidestore import SideStore, SideTx, doc_text

Projector = Callable[[Any, SideTx], None]
POSITION = "views"
VERSION = "views_version"


class Projection:
    def __init__(self, app: ServiceApplication, side: SideStore, project: Projector, version: int = 1):
        self.app = app
        self.side = side
        self.project = project
        self.version = version
        self._reader: LogReader | None = None

    def ensure_version(self) -> bool:
        """Documents projected by another version of `project` are rebuilt from the log:
        cleared here, projected again by the next catch-up. True when that happened."""
        with self.side.transaction() as tx:
            if tx.position(VERSION) == self.version:
                return False
            tx.clear_documents()
            tx.set_position(POSITION, 0)
            tx.set_position(VERSION, self.version)
            return True

    def catch_up(self, batch_size: int = 500, progress: Callable[[int], None] | None = None,
                 fast: bool = True, upto: int | None = None) -> int:
        """Project what the log holds after the saved position (up to position `upto`), a page of
        `batch_size` events per transaction; `progress(events so far)` after each page."""
        if not fast:
            assert upto is None, "the library's path reads to the end"
            return self._catch_up_by_mapper(batch_size, progress)
        if self._reader is None:
            self._reader = LogReader(self.app)
        moved, project, end = 0, self.project, _END if upto is None else upto
        while True:
            with self.side.transaction() as tx:
                start = tx.position(POSITION)
                rows = self._reader.rows(start, end, batch_size)
                if rows:
                    page = PageTx(tx)
                    for _, event in self._reader.decode(rows):
                        project(event, page)
                    page.flush()
                    tx.set_position(POSITION, rows[-1][0])
            moved += len(rows)
            if progress is not None:
                progress(moved)
            if len(rows) < batch_size:
                return moved

    def _catch_up_by_mapper(self, batch_size: int, progress: Callable[[int], None] | None) -> int:
        """The library's path: each notification through its mapper, each document written alone."""
        moved = 0
        while True:
            with self.side.transaction() as tx:
                start = tx.position(POSITION)
                notifications = self.app.recorder.select_notifications(start + 1, batch_size)
                for notification in notifications:
                    self.project(self.app.mapper.to_domain_event(notification), tx)
                if notifications:
                    tx.set_position(POSITION, notifications[-1].id)
            moved += len(notifications)
            if progress is not None:
                progress(moved)
            if len(notifications) < batch_size:
                return moved


_END = 2**63 - 1  # no upper bound on a position
_ANY = object()  # in PageTx.written: the store was written otherwise too (no document known absent)


class PageTx:
    """A projection's transaction over one page of events: documents read from the store once
    and then from memory, written (the last version of each) by `flush` in one statement.

    What `project` sees is what the plain SideTx would show it: `get` parses the text that `put`
    would have stored (a new dict each time, as from the database), a deleted document is gone.
    Any other method (find, all, …) writes what is pending first and is answered by the store;
    one that may write documents (clear_documents, …) also forgets what was read."""

    # What leaves the documents as they are: the store's answer is all that is needed.
    _KEEPS_DOCS = frozenset({"find", "all", "page", "mentioning", "text", "texts_after", "position",
                             "set_position", "take_lease", "release_lease"})

    def __init__(self, tx: SideTx, written: set[Any] | None = None,
                 before_asking: Callable[[SideTx], None] | None = None):
        self.tx = tx
        self._before_asking = before_asking  # once, before the store is first asked anything else
        self._texts: dict[tuple[str, str], str | None] = {}  # as stored now; None: no such document
        self._pending: dict[tuple[str, str], tuple[str, str, str, str] | None] = {}  # None: deleted
        # A store filled from empty by this projection alone (`rebuild`): the hashes of the
        # (kind, key) it was given, so a document never put is known absent without a query.
        self.written = written

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        ident = (kind, key)
        try:
            text = self._texts[ident]
        except KeyError:
            if self.written is not None and hash(ident) not in self.written and _ANY not in self.written:
                text = None
            else:
                text = self.tx.text(kind, key)
            self._texts[ident] = text
        if text is None:
            return None
        try:
            return orjson.loads(text)
        except ValueError:  # NaN, integers beyond 64 bits (orjson refuses them): what `json` reads
            return json.loads(text)

    def put(self, kind: str, key: str, doc: dict[str, Any], ref: str = "") -> None:
        text = doc_text(doc)
        ident = (kind, key)
        self._texts[ident] = text
        self._pending[ident] = (kind, key, ref, text)
        if self.written is not None:
            self.written.add(hash(ident))

    def delete(self, kind: str, key: str) -> None:
        self._texts[(kind, key)] = None
        self._pending[(kind, key)] = None

    def flush(self) -> None:
        if not self._pending:
            return
        puts = [row for row in self._pending.values() if row is not None]
        deletes = [ident for ident, row in self._pending.items() if row is None]
        self._pending = {}
        self.tx.write_many(puts, deletes)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle, … look for these: not the store's
            raise AttributeError(name)
        if self._before_asking is not None:
            self._before_asking(self.tx)
            self._before_asking = None
        self.flush()
        if name not in self._KEEPS_DOCS:
            self._texts.clear()
            if self.written is not None:  # raw SQL, …: every later page asks the store
                self.written.add(_ANY)
        return getattr(self.tx, name)


def rebuild(app: ServiceApplication, project: Projector, progress: Callable[[int], None] | None = None,
            fast: bool = True, batch_size: int = 10_000, upto: int | None = None,
            parallel: bool = True) -> SideStore:
    """The read models projected from the whole log (up to position `upto`) into a fresh store:
    with `fast`, the log read by a process of its own (`parallel`, LogReader.pages), a page of
    `batch_size` events per transaction."""
    if not fast:
        fresh = SideStore.in_memory()
        Projection(app, fresh, project).catch_up(500, progress, fast=False)
        return fresh
    # The refs' index made at the end (or before the projection first asks the store something
    # else than a document by its key): a third of the cost of writing the documents otherwise.
    # (Writing a page on a thread of its own while the next one is projected was slower on this
    # shared 2-core machine: 15,300-16,100/s against 17,500-25,300/s, over 300,000 events.)
    fresh = SideStore.in_memory(ref_index=False)
    written: set[Any] = set()
    moved = 0
    # Millions of young objects (events, documents) made and dropped: the cyclic collector
    # would walk them again and again (a quarter of the time); reference counting frees them.
    with collector_paused():
        for page in LogReader(app, batch_size).pages(0, upto, parallel=parallel):
            with fresh.transaction() as tx:
                writes = PageTx(tx, written, before_asking=fresh.index_refs)
                for _, event in page:
                    project(event, writes)
                writes.flush()
                tx.set_position(POSITION, page[-1][0])
            moved += len(page)
            if progress is not None:
                progress(moved)
    fresh.index_refs()
    return fresh


def compare(live: SideStore, rebuilt: SideStore) -> list[str]:
    """Differences between two stores' documents, as readable lines: both read in (kind, key)
    order a page at a time and merged; two documents differ when their refs or their parsed
    documents do (texts that differ only in spelling, 1 and 1.0, are the same document)."""
    diffs = []
    a, b = live.texts(), rebuilt.texts()
    x, y = next(a, None), next(b, None)
    while x is not None and y is not None:
        if x[1] == y[1] and x[0] == y[0]:
            if (x[3] != y[3] or x[2] != y[2]) and (x[2], json.loads(x[3])) != (y[2], json.loads(y[3])):
                diffs.append(f"differs: {(x[0], x[1])}")
            x, y = next(a, None), next(b, None)
        elif (x[0], x[1]) < (y[0], y[1]):
            diffs.append(f"only in live: {(x[0], x[1])}")
            x = next(a, None)
        else:
            diffs.append(f"only in rebuilt: {(y[0], y[1])}")
            y = next(b, None)
    diffs.extend(f"only in live: {(x[0], x[1])}" for x in ([x] if x else []) + list(a))
    diffs.extend(f"only in rebuilt: {(y[0], y[1])}" for y in ([y] if y else []) + list(b))
    return diffs
