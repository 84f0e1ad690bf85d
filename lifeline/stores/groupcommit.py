"""Group commit: concurrent saves share one transaction.

A store commits one transaction at a time (SQLite has one writer; eventsourcing's pool holds a
writer lock), and each commit waits for its log to reach the disk. Requests that save at the same
moment therefore queue behind each other, one disk flush each. Here the first saver that finds no
commit in progress leads: it takes every save queued so far and records them in one transaction;
the others wait for its outcome, and whoever queued meanwhile is led by the next one.

Each save keeps its own all-or-nothing meaning: when the shared transaction is refused (one of
the saves wrote an aggregate another saver wrote first, a contract check failed), nothing of it is
stored and each save is tried again alone, so only the saves at fault see their error
(IntegrityError: the caller reads fresh state and tries again, exactly as without grouping).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.ops.metrics import GROUP_COMMIT_SIZE

log = logging.getLogger(__name__)

# A bound on one transaction, so a burst does not make one huge commit that every saver waits for.
MAX_GROUP = 500


class _Save:
    __slots__ = ("processing_event", "done", "error", "recordings")

    def __init__(self, processing_event: ProcessingEvent):
        self.processing_event = processing_event
        self.done = False
        self.error: BaseException | None = None
        self.recordings: list[Any] = []


class GroupCommit:
    """`save(*aggregates)` for an eventsourcing application, its saves grouped (module doc)."""

    def __init__(self, app: Any, max_group: int = MAX_GROUP):
        self.app = app
        self.max_group = max_group
        self._queue: list[_Save] = []
        self._leading = False
        self._changed = threading.Condition()

    def save(self, *aggregates: Any) -> list[Any]:
        """The save's recordings (as Application.save answers), once its group is stored."""
        processing_event = ProcessingEvent()
        processing_event.collect_events(*aggregates)
        if not processing_event.events:
            return []
        mine = _Save(processing_event)
        with self._changed:
            self._queue.append(mine)
        while True:
            with self._changed:
                while not mine.done and self._leading:
                    self._changed.wait()
                if mine.done:
                    break
                # Nobody leads and this save is still queued: lead the next group (with it, unless
                # more than a group's worth queued before it: then lead again).
                self._leading = True
                group, self._queue = self._queue[:self.max_group], self._queue[self.max_group:]
            try:
                self._commit(group)
            finally:
                with self._changed:
                    self._leading = False
                    self._changed.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.recordings

    def _commit(self, group: list[_Save]) -> None:
        GROUP_COMMIT_SIZE.observe(len(group))
        if len(group) > 1:
            shared = ProcessingEvent()
            for save in group:
                shared.events.extend(save.processing_event.events)
                shared.aggregates.update(save.processing_event.aggregates)
            try:
                recordings = self.app._record(shared)
            except Exception:  # noqa: BLE001 - one save's fault: each is tried alone below
                pass
            else:
                start = 0
                for save in group:  # the recordings are in the events' order
                    end = start + len(save.processing_event.events)
                    save.recordings, start = recordings[start:end], end
                    save.done = True
                self._notify(recordings)
                return
        for save in group:
            try:
                save.recordings = self.app._record(save.processing_event)
                self._notify(save.recordings)
            except BaseException as exc:  # noqa: BLE001 - handed to the save's own caller
                save.error = exc
            save.done = True

    def _notify(self, recordings: Any) -> None:
        # What Application.save does once a save is recorded (the relay's wake-up among it).
        try:
            self.app._notify(recordings)
        except Exception:  # noqa: BLE001 - stored already: a listener's failure is not the save's
            log.exception("after a group commit")
