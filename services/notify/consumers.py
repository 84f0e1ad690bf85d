"""Kafka handlers of notify: events that oblige a written notice, post to the public
notice board, or start or stop a statutory clock.

`HANDLERS` is the whole map from consumed event to handler. Deadlines are handled by event
name whichever topic carries them (verification's today, intake's later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta

if TYPE_CHECKING:
    from services.notify.application import NotifyApplication

CONSUMES = [T.TOPICS["intake"], T.TOPICS["verification"]]


def _calls(use_case: str) -> Callable[[NotifyApplication, CloudEvent, ProcessingEvent], None]:
    """A handler that passes the consumed event to one of notify's use cases: each takes the
    whole event (notices quote its id as their cause) and acts as the service."""

    def handle(app: NotifyApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
        getattr(app, use_case)(event, Meta.caused_by(event, app.service), pe)

    handle.__name__ = f"calls_{use_case}"
    return handle


HANDLERS = {
    "ApplicationSubmitted": _calls("remember_contact"),  # the mobile number (sealed), for SMS
    "ApplicationAccepted": _calls("issue_acceptance"),
    "ApplicationRefused": _calls("issue_non_acceptance"),
    "MaterialsRequested": _calls("issue_materials_request"),
    "BenefitRefused": _calls("issue_refusal"),
    "BenefitAdjusted": _calls("issue_change"),
    "BenefitSuspended": _calls("issue_change"),
    "BenefitResumed": _calls("issue_change"),
    "BenefitTerminated": _calls("issue_change"),
    "PublicNoticePosted": _calls("post_public_notice"),
    "DeadlineSet": _calls("open_deadline"),
    "DeadlineCleared": _calls("clear_deadline"),
}
