"""Kafka handlers of intake: consumed events become case updates."""

from __future__ import annotations

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

CONSUMES = [T.TOPICS["verification"]]


class IntakeConsumers:
    service = "intake"

    def on_VerificationCompleted(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.note_verification(
            event.subject,
            event.data["outcome"],
            event.data["per_capita_income_fen"],
            Meta.caused_by(event, self.service),
            processing_event,
        )

    def on_BenefitApproved(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.note_decision(
            event.subject, "approved", event.data["benefit_id"], event.data.get("reason", ""),
            Meta.caused_by(event, self.service), processing_event,
        )

    def on_BenefitRefused(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.note_decision(
            event.subject, "refused", "", event.data["reason"],
            Meta.caused_by(event, self.service), processing_event,
        )
