"""Kafka handlers of charity: the referral feed opens needs (one referral to charity, one
need, with the household's masked profile, its type for the funds' criteria and its consent).

`HANDLERS` is the whole map from consumed event to handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

if TYPE_CHECKING:
    from services.charity.application import CharityApplication

CONSUMES = [T.REFERRALS]


def on_referral_raised(app: CharityApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    if event.data["target"] == "charity":
        app.open_need(event.data, Meta.caused_by(event, app.service), pe)


HANDLERS = {"ReferralRaised": on_referral_raised}
