"""Kafka handlers of notify: events that oblige a written notice, post to the public
notice board, or start or stop a statutory clock.

`HANDLERS` is the whole map from consumed event to handler. Deadlines are handled by event
name whichever topic carries them (verification's today, intake's later).
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


def _meta(app: NotifyApplication, event: CloudEvent) -> Meta:
    return Meta.caused_by(event, app.service)


def on_application_accepted(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.issue_acceptance(event, _meta(app, event), pe)


def on_application_refused(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.issue_non_acceptance(event, _meta(app, event), pe)


def on_materials_requested(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.issue_materials_request(event, _meta(app, event), pe)


def on_benefit_refused(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.issue_refusal(event, _meta(app, event), pe)


def on_public_notice_posted(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.post_public_notice(event, _meta(app, event), pe)


def on_deadline_set(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.open_deadline(event, _meta(app, event), pe)


def on_deadline_cleared(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.clear_deadline(event, _meta(app, event), pe)


HANDLERS = {
    "ApplicationAccepted": on_application_accepted,
    "ApplicationRefused": on_application_refused,
    "MaterialsRequested": on_materials_requested,
    "BenefitRefused": on_benefit_refused,
    "PublicNoticePosted": on_public_notice_posted,
    "DeadlineSet": on_deadline_set,
    "DeadlineCleared": on_deadline_cleared,
}
