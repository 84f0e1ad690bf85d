"""Kafka handlers of verification: applications start checks, departments answer.

`HANDLERS` is the whole map from consumed event to handler; a consumed event
not named here is skipped by this service's consumer group.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from lifeline.domain.values import Application
from services.verification import county_filings

if TYPE_CHECKING:
    from services.verification.application import VerificationApplication

CONSUMES = [T.TOPICS["intake"], T.PARTNER_RECORDS, T.TOPICS["notify"]]


def on_application_submitted(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.open_verification(Application.from_wire(event.data), Meta.caused_by(event, app.service), pe)


def on_application_accepted(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.accept(event.subject, datetime.fromisoformat(event.data["accepted_at"]),
               Meta.caused_by(event, app.service), pe)


def on_application_refused(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.not_accepted(event.subject, event.data["reason"], Meta.caused_by(event, app.service), pe)


def on_objection_received(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.raise_objection(event.data, Meta.caused_by(event, app.service), pe)


def on_department_records_reported(
    app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent
) -> None:
    app.receive_records(event.data, Meta.caused_by(event, app.service), pe)


def on_death_reported(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.record_death(event.data, Meta.caused_by(event, app.service), pe)


def _county_filing_breached(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    county_filings.note_breach(app, event.data, Meta.caused_by(event, app.service), pe)


# DeadlineBreached by the clock breached: verification's own clocks it records (the deadline
# watch escalates every clock; the others are recorded by notify alone, or are not verification's).
BREACHES = {"county_filing": _county_filing_breached}


def on_deadline_breached(app: VerificationApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    handler = BREACHES.get(event.data["clock"])
    if handler is not None:
        handler(app, event, pe)


HANDLERS = {
    "ApplicationSubmitted": on_application_submitted,
    "ApplicationAccepted": on_application_accepted,
    "ApplicationRefused": on_application_refused,
    "ObjectionReceived": on_objection_received,
    "DepartmentRecordsReported": on_department_records_reported,
    # A member of an approved household died: re-assessed without them (issue 11).
    "DeathReported": on_death_reported,
    # A breached clock of verification's own (issue 17: a filing with the county overdue).
    "DeadlineBreached": on_deadline_breached,
}
