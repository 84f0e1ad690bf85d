"""Kafka handlers of verification: applications start checks, departments answer."""

from __future__ import annotations

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

CONSUMES = [T.TOPICS["intake"], T.PARTNER_RECORDS]


class VerificationConsumers:
    service = "verification"

    def on_ApplicationSubmitted(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.start_verification(event.data, Meta.caused_by(event, self.service), processing_event)

    def on_DepartmentRecordsReported(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.receive_records(event.data, Meta.caused_by(event, self.service), processing_event)
