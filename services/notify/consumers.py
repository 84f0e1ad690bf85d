"""Kafka handlers of notify: events that oblige a written notice."""

from __future__ import annotations

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

CONSUMES = [T.TOPICS["intake"], T.TOPICS["verification"]]


class NotifyConsumers:
    service = "notify"

    def on_ApplicationSubmitted(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.issue_acceptance(event, Meta.caused_by(event, self.service), processing_event)

    def on_BenefitRefused(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.issue_refusal(event, Meta.caused_by(event, self.service), processing_event)
