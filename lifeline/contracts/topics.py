"""Kafka topic names (SPEC §3). asyncapi.yaml documents the same names.

Every service publishes its own events to its own topic, keyed by case id so one
household's events stay in order; integration topics carry traffic with partner
departments and the charity federation.
"""

from __future__ import annotations

TOPICS: dict[str, str] = {
    "intake": "lifeline.intake.v1",
    "verification": "lifeline.verification.v1",
    "payment": "lifeline.payment.v1",
    "charity": "lifeline.charity.v1",
    "notify": "lifeline.notify.v1",
}
PARTNER_REQUESTS = "lifeline.partner.requests.v1"  # keyed by department code
PARTNER_RECORDS = "lifeline.partner.records.v1"  # department answers and life events
REFERRALS = "lifeline.referrals.v1"  # referral feed for departments and the federation

ALL_TOPICS: tuple[str, ...] = (*TOPICS.values(), PARTNER_REQUESTS, PARTNER_RECORDS, REFERRALS)

DLQ_INFIX = ".dlq."


def dlq_topic(topic: str, group: str) -> str:
    """Dead-letter topic of one consumer group: ``<topic>.dlq.<group>``."""
    if not topic or not group:
        raise ValueError("topic and group are required")
    return f"{topic}{DLQ_INFIX}{group}"


# Where each event is published (its primary topic). Every event the SPEC names
# is listed, including those whose schemas are still to be written, so that
# producers never have to guess. Fan-out beyond the primary topic is in
# EXTRA_TOPICS.
_BY_SERVICE: dict[str, tuple[str, ...]] = {
    "intake": (
        "DiscoveryReported", "ApplicationSubmitted", "ApplicationAccepted", "ApplicationRefused",
        "MaterialsRequested", "EmergencyReliefGranted", "ReferralRaised", "CaseClosed",
    ),
    "verification": (
        "HouseholdSurveyRecorded", "InitialReviewProposed", "PublicNoticePosted", "ObjectionRaised",
        "DemocraticAppraisalHeld", "DeadlineSet", "DeadlineCleared", "VerificationCompleted", "BenefitApproved", "BenefitRefused",
        "BenefitAdjusted", "BenefitSuspended", "BenefitResumed", "BenefitTerminated", "FraudRecorded",
    ),
    "payment": (
        "EntitlementOpened", "PaymentRunStarted", "PaymentInstructed", "BankBatchSubmitted",
        "PaymentSettled", "PaymentReturned", "PaymentRecallRequested", "PaymentRunCompleted",
        "ReconciliationCompleted",
    ),
    "charity": (
        "FundRegistered", "DonationReceived", "NeedOpened", "FundAllocated",
        "AllocationReleased", "AllocationDisbursed", "NeedFulfilled",
    ),
    "notify": (
        "NoticeIssued", "NoticeDelivered", "NoticeFailed", "ObjectionReceived", "DeadlineWarning",
        "DeadlineBreached",
    ),
}
EVENT_TOPIC: dict[str, str] = {
    name: TOPICS[service] for service, names in _BY_SERVICE.items() for name in names
}
# Published by verification but addressed to departments, keyed by department code.
EVENT_TOPIC["VerificationRequested"] = PARTNER_REQUESTS
# Published by partner departments (and the partner simulator).
EVENT_TOPIC["DepartmentRecordsReported"] = PARTNER_RECORDS
# A death a department reports (keyed by its subject, the department's record id).
EVENT_TOPIC["DeathReported"] = PARTNER_RECORDS

# ReferralRaised is also written to the referral feed read outside Lifeline.
EXTRA_TOPICS: dict[str, tuple[str, ...]] = {"ReferralRaised": (REFERRALS,)}


def topics_for(event_name: str) -> tuple[str, ...]:
    """All topics an event is published to: primary first, then fan-out."""
    return (EVENT_TOPIC[event_name], *EXTRA_TOPICS.get(event_name, ()))


def key_for(event_name: str, subject: str, data: dict) -> str:
    """Kafka message key: the case id (subject), or the department code for partner requests."""
    if EVENT_TOPIC.get(event_name) == PARTNER_REQUESTS:
        return str(data["department"])
    return subject
