"""Intake's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.intake.domain import Case, Referral

OUTBOUND = Outbound()


@OUTBOUND.maps(Case.Submitted, "ApplicationSubmitted")
def application_submitted(e: Case.Submitted) -> dict[str, Any]:
    return e.application.to_wire()


# Also on the referral feed, read by departments and the charity federation: the event
# holds the masked household profile only.
OUTBOUND.copies(Referral.Raised, "ReferralRaised")
