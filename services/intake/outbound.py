"""Intake's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.intake.discovery import DiscoveryReport
from services.intake.domain import Case, Referral
from services.intake.relief import EmergencyRelief

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
# Referrals followed up (outreach.py): the referral clock notify watches, and the answer.
OUTBOUND.copies(Referral.DeadlineSet, "DeadlineSet")
OUTBOUND.copies(Referral.DeadlineCleared, "DeadlineCleared")
OUTBOUND.copies(Referral.OutcomeRecorded, "ReferralOutcomeRecorded")
# Active discovery and dynamic monitoring (discovery.py): the report (masked: no ID number in
# clear, no address, no free text), the contact, and the contact clock notify watches.
OUTBOUND.copies(DiscoveryReport.Reported, "DiscoveryReported")
OUTBOUND.copies(DiscoveryReport.Contacted, "DiscoveryContacted")
OUTBOUND.copies(DiscoveryReport.DeadlineSet, "DeadlineSet")
OUTBOUND.copies(DiscoveryReport.DeadlineCleared, "DeadlineCleared")

# One person, one file per benefit (persons.py): a held application and how the hold was decided.
OUTBOUND.copies(Case.DuplicateSuspected, "DuplicateSuspected")
OUTBOUND.copies(Case.DuplicateDecided, "DuplicateDecided")
# The emergency green channel (relief.py): the grant payment pays, its post-approval, and the
# post-approval clock notify watches.
OUTBOUND.copies(EmergencyRelief.Granted, "EmergencyReliefGranted")
OUTBOUND.copies(EmergencyRelief.PostApprovalDecided, "EmergencyReliefPostApprovalDecided")
OUTBOUND.copies(EmergencyRelief.DeadlineSet, "DeadlineSet")
OUTBOUND.copies(EmergencyRelief.DeadlineCleared, "DeadlineCleared")
