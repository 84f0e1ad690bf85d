"""Kafka handlers of charity: the referral feed opens needs."""

from __future__ import annotations

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

CONSUMES = [T.REFERRALS]


class CharityConsumers:
    service = "charity"

    def on_ReferralRaised(self, event: CloudEvent, processing_event: ProcessingEvent) -> None:
        if event.data["target"] == "charity":
            self.open_need(event.data, Meta.caused_by(event, self.service), processing_event)
