"""Read models built from a service's own event log.

A projection reads the log after its saved position and writes the documents
and the new position in one transaction, so each event is projected once. The
same function rebuilds the read models from position zero into a fresh store
(`lifeline replay`), and the two are compared document by document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lifeline.stores.application import ServiceApplication
from lifeline.stores.sidestore import SideStore, SideTx

Projector = Callable[[Any, SideTx], None]
POSITION = "views"
VERSION = "views_version"


class Projection:
    def __init__(self, app: ServiceApplication, side: SideStore, project: Projector, version: int = 1):
        self.app = app
        self.side = side
        self.project = project
        self.version = version

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

    def catch_up(self, batch_size: int = 500, progress: Callable[[int], None] | None = None) -> int:
        """Project what the log holds after the saved position; `progress(events so far)` after
        each batch."""
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


def rebuild(app: ServiceApplication, project: Projector, progress: Callable[[int], None] | None = None) -> SideStore:
    fresh = SideStore.in_memory()
    Projection(app, fresh, project).catch_up(progress=progress)
    return fresh


def compare(live: SideStore, rebuilt: SideStore) -> list[str]:
    """Differences between two stores' documents, as readable lines."""
    a = {(k, key): (ref, doc) for k, key, ref, doc in live.dump()}
    b = {(k, key): (ref, doc) for k, key, ref, doc in rebuilt.dump()}
    diffs = []
    for ident in sorted(a.keys() | b.keys()):
        if ident not in b:
            diffs.append(f"only in live: {ident}")
        elif ident not in a:
            diffs.append(f"only in rebuilt: {ident}")
        elif a[ident] != b[ident]:
            diffs.append(f"differs: {ident}")
    return diffs
