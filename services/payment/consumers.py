"""Kafka handlers of payment: approvals open entitlements."""

from __future__ import annotations

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

CONSUMES = [T.TOPICS["verification"]]


class PaymentConsumers:
    service = "payment"

    def on_BenefitApproved(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        self.open_entitlement(event.data, Meta.caused_by(event, self.service), processing_event)
