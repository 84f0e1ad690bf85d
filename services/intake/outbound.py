"""Intake's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.intake.domain import Case, Referral

OUTBOUND = Outbound()


@OUTBOUND.maps(Case.Submitted, "ApplicationSubmitted")
def application_submitted(e: Case.Submitted) -> dict[str, Any]:
    return e.application.to_wire()


@OUTBOUND.maps(Referral.Raised, "ReferralRaised")
def referral_raised(e: Referral.Raised) -> dict[str, Any]:
    # Also on the referral feed, read by departments and the charity federation:
    # it carries the masked profile only.
    return {
        "referral_id": e.referral_id, "case_id": e.case_id, "target": e.target,
        "need_category": e.need_category, "amount_asked_fen": e.amount_asked_fen,
        "urgency": e.urgency, "due_date": e.due_date, "consent_to_share": e.consent_to_share,
        "household_profile": dict(e.household_profile), "raised_at": e.raised_at,
    }
