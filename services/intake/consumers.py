"""Kafka handlers of intake: consumed events become case updates.

`HANDLERS` is the whole map from consumed event to handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from services.intake import persons

if TYPE_CHECKING:
    from services.intake.application import IntakeApplication

CONSUMES = [T.TOPICS["verification"]]
# Finding and referrals (outreach.py): partner life events, deaths and referral answers; the
# deadline watch's breaches of intake's clocks.
CONSUMES += [T.PARTNER_RECORDS, T.TOPICS["notify"]]
# A referral to charity is answered by its need (issue 12): accepted by the federation, or resolved
# when fulfilled; the first answer closes the referral.
CONSUMES += [T.TOPICS["charity"]]


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
    # The person index: the open application becomes coverage (persons.py).
    persons.note_benefit(app, event.subject, event.data, Meta.caused_by(event, app.service), pe)


def on_benefit_refused(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.note_decision(
        event.subject, "refused", "", event.data["reason"], Meta.caused_by(event, app.service), pe,
    )
    persons.note_benefit(app, event.subject, None, Meta.caused_by(event, app.service), pe)


def on_benefit_terminated(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    """The benefit covers the case's people no more (persons.py)."""
    persons.note_termination(app, event.subject, Meta.caused_by(event, app.service), pe)


def on_life_event_reported(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    """Dynamic monitoring: the record against the risk rules, once."""
    app.monitor_life_event(event.data, Meta.caused_by(event, app.service), pe)


def on_death_reported(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    """Dynamic monitoring: a death in a watched household (e.g. recognised low-income)."""
    app.monitor_death(event.data, Meta.caused_by(event, app.service), pe)


def on_referral_answered(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.answer_referral(event.data, Meta.caused_by(event, app.service), pe)


def on_need_answered(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    data = event.data
    outcome = "accepted" if event.name == "NeedAccepted" else "resolved"
    who = data.get("organisation") or ("慈善资金" if data.get("by") == "funds" else "")
    note = "；".join(part for part in (who, data["note"]) if part)[:2000]
    app.answer_referral({"referral_id": data["referral_id"], "case_id": data["case_id"], "department": "charity",
                         "outcome": outcome, "note": note, "answered_at": event.time},
                        Meta.caused_by(event, app.service), pe)


def _breach_of_outreach(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    app.note_breach(event.data, Meta.caused_by(event, app.service), pe)


# DeadlineBreached by the clock breached: intake's own clocks; the others are not intake's.
BREACHES = {"referral": _breach_of_outreach, "discovery_contact": _breach_of_outreach}


def on_deadline_breached(app: IntakeApplication, event: CloudEvent, pe: ProcessingEvent) -> None:
    handler = BREACHES.get(event.data["clock"])
    if handler is not None:
        handler(app, event, pe)


HANDLERS = {
    "VerificationCompleted": on_verification_completed,
    "BenefitApproved": on_benefit_approved,
    "BenefitRefused": on_benefit_refused,
    "BenefitTerminated": on_benefit_terminated,
    "LifeEventReported": on_life_event_reported,
    "DeathReported": on_death_reported,
    "ReferralAnswered": on_referral_answered,
    "NeedAccepted": on_need_answered,
    "NeedFulfilled": on_need_answered,
    "DeadlineBreached": on_deadline_breached,
}
