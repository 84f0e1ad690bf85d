"""Kafka handlers of intake: consumed events become case updates.

`HANDLERS` is the whole map from consumed event to handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

if TYPE_CHECKING:
    from services.intake.application import IntakeApplication

CONSUMES = [T.TOPICS["verification"]]


def on_verification_completed(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.note_verification(
        event.subject, event.data["outcome"], event.data["per_capita_income_fen"],
        Meta.caused_by(event, app.service), pe,
    )


def on_benefit_approved(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.note_decision(
        event.subject, "approved", event.data["benefit_id"], event.data["reason"],
        Meta.caused_by(event, app.service), pe,
    )


def on_benefit_refused(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.note_decision(
        event.subject, "refused", "", event.data["reason"], Meta.caused_by(event, app.service), pe,
    )


HANDLERS = {
    "VerificationCompleted": on_verification_completed,
    "BenefitApproved": on_benefit_approved,
    "BenefitRefused": on_benefit_refused,
}
