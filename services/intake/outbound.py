"""Intake's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.intake.domain import Case, Referral

OUTBOUND = Outbound()


@OUTBOUND.maps(Case.Submitted, "ApplicationSubmitted")
def application_submitted(e: Case.Submitted) -> dict[str, Any]:
    return e.application.to_wire()


# The acceptance decision (受理, 不予受理, 补正材料): the domain events carry exactly their
# schemas' fields, the applicant's name masked.
OUTBOUND.copies(Case.Accepted, "ApplicationAccepted")
OUTBOUND.copies(Case.AcceptanceRefused, "ApplicationRefused")
OUTBOUND.copies(Case.MaterialsRequested, "MaterialsRequested")

# Also on the referral feed, read by departments and the charity federation: the event
# holds the masked household profile only.
OUTBOUND.copies(Referral.Raised, "ReferralRaised")
