"""What every service's eventsourcing application has in common.

- `ServiceApplication`: a process application (eventsourcing) whose policy
  turns consumed CloudEvents into new domain events. The tracking record of the
  consumed event, keyed by its own identity (source, sequence), is saved in the
  same transaction as those events, so a second delivery has no effect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Tracking, Transcoding
from eventsourcing.system import ProcessApplication

from lifeline.contracts import registry
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.clock import Clock, SystemClock
from lifeline.domain.values import VALUE_TRANSCODINGS
from lifeline.messaging.outbound import Outbound

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
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        from psycopg.sql import SQL, Identifier

        query = SQL("SELECT 1 FROM {0}.{1} WHERE application_name = %s AND notification_id = %s").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.tracking_table_name)
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (application_name, notification_id))
            return curs.fetchone() is not None
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(
            "SELECT 1 FROM tracking WHERE application_name = ? AND notification_id = ?",
            (application_name, notification_id),
        )
        return curs.fetchone() is not None


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

    def __init__(self, env: Mapping[str, str] | None = None, *, clock: Clock | None = None):
        self.clock: Clock = clock or SystemClock()
        super().__init__(env)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for transcoding in (*VALUE_TRANSCODINGS, *self.transcodings):
            transcoder.register(transcoding)

    def _record(self, processing_event: ProcessingEvent) -> Any:
        # The write side's contract check, for commands and consumed events alike: what
        # the relay could not publish is never stored (ContractError, nothing saved).
        for event in processing_event.events:
            out = self.outbound(event)
            if out is not None:
                registry.validate_data(out.name, out.data)
        return super()._record(processing_event)

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

    def save_new(self, aggregate: Aggregate, business_id: str) -> None:
        """Save a new aggregate; DuplicateRequest if one with its id exists (a retried command)."""
        try:
            self.save(aggregate)
        except IntegrityError as exc:
            raise DuplicateRequest(business_id) from exc

    def is_processed(self, event: CloudEvent) -> bool:
        return has_exact_tracking(self.recorder, event.source, event.sequence)

    def process_cloud_event(self, event: CloudEvent) -> bool:
        """Apply a consumed event once. False when it had been processed already."""
        if self.is_processed(event):
            return False
        try:
            self.process_event(event, Tracking(event.source, event.sequence))
        except IntegrityError:
            # Either another replica processed this very event (its tracking row
            # exists now), or it wrote the same aggregate first; the caller
            # retries the latter with fresh state.
            if self.is_processed(event):
                return False
            raise
        return True
