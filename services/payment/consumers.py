"""Kafka handlers of payment: approvals become entitlements, which follow the benefit's
changes and the deaths partner departments report; emergency relief intake grants is paid from
the township's reserve fund; a refused post-approval or a recorded fraud opens a recovery.

`HANDLERS` is the whole map from consumed event to handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from services.payment import providers

if TYPE_CHECKING:
    from services.payment.application import PaymentApplication

CONSUMES = [T.TOPICS["verification"], T.TOPICS["intake"], T.PARTNER_RECORDS]


def on_benefit_approved(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_benefit(event.data, Meta.caused_by(event, app.service), pe)


def on_benefit_changed(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    # The CloudEvent's id names the change: a redelivery changes nothing twice.
    app.change_benefit(event.name, event.data, event.id, Meta.caused_by(event, app.service), pe)


def on_application_submitted(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_household(event.data, Meta.caused_by(event, app.service), pe)


def on_death_reported(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_death(event.data, Meta.caused_by(event, app.service), pe)


def on_emergency_relief_granted(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_grant(event.data, Meta.caused_by(event, app.service), pe)


def on_post_approval_decided(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.decide_grant(event.data, Meta.caused_by(event, app.service), pe)


def on_service_delivery_confirmed(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    # A provider paid once per confirmed delivery (services/payment/providers.py).
    providers.record_delivery(app, event.data, Meta.caused_by(event, app.service), pe)


def on_fraud_recorded(app: PaymentApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_fraud(event.data, Meta.caused_by(event, app.service), pe)


HANDLERS = {
    "BenefitApproved": on_benefit_approved,
    "BenefitAdjusted": on_benefit_changed,
    "BenefitSuspended": on_benefit_changed,
    "BenefitResumed": on_benefit_changed,
    "BenefitTerminated": on_benefit_changed,
    "ApplicationSubmitted": on_application_submitted,
    "DeathReported": on_death_reported,
    "EmergencyReliefGranted": on_emergency_relief_granted,
    "EmergencyReliefPostApprovalDecided": on_post_approval_decided,
    "FraudRecorded": on_fraud_recorded,
    "ServiceDeliveryConfirmed": on_service_delivery_confirmed,
}
