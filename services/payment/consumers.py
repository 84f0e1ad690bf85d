"""Kafka handlers of payment: approvals become entitlements.

`HANDLERS` is the whole map from consumed event to handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

if TYPE_CHECKING:
    from services.payment.application import PaymentApplication

CONSUMES = [T.TOPICS["verification"]]


def on_benefit_approved(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_benefit(event.data, Meta.caused_by(event, app.service), pe)


HANDLERS = {"BenefitApproved": on_benefit_approved}
