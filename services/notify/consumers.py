"""Kafka handlers of notify: events that oblige a written notice.

`HANDLERS` is the whole map from consumed event to handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

if TYPE_CHECKING:
    from services.notify.application import NotifyApplication

CONSUMES = [T.TOPICS["intake"], T.TOPICS["verification"]]


def on_application_submitted(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.issue_acceptance(event, Meta.caused_by(event, app.service), pe)


def on_benefit_refused(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.issue_refusal(event, Meta.caused_by(event, app.service), pe)


HANDLERS = {
    "ApplicationSubmitted": on_application_submitted,
    "BenefitRefused": on_benefit_refused,
}
