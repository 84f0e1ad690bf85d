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
CREDIT = "lifeline.credit.v1"  # the dishonesty-list feed (失信名单) read by the credit platform

ALL_TOPICS: tuple[str, ...] = (*TOPICS.values(), PARTNER_REQUESTS, PARTNER_RECORDS, REFERRALS, CREDIT)

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
        "DiscoveryReported", "DiscoveryContacted", "ApplicationSubmitted", "ApplicationAccepted",
        "ApplicationRefused", "MaterialsRequested", "DuplicateSuspected", "DuplicateDecided",
        "EmergencyReliefGranted", "EmergencyReliefPostApprovalDecided", "ReferralRaised",
        "ReferralOutcomeRecorded", "CaseClosed",
    ),
    "verification": (
        "HouseholdSurveyRecorded", "InitialReviewProposed", "PublicNoticePosted", "ObjectionRaised",
        "DemocraticAppraisalHeld", "DeadlineSet", "DeadlineCleared", "VerificationCompleted", "BenefitApproved", "BenefitRefused",
        "BenefitAdjusted", "BenefitSuspended", "BenefitResumed", "BenefitTerminated", "ReviewStarted",
        "ReviewCompleted", "FraudRecorded",
        # 资金+实物+服务 (issue 17, services/verification/services_in_kind.py)
        "ProviderRegistered", "ServiceOrdered", "ServiceDeliveryConfirmed",
        # 镇→县备案 and monthly statistics (issue 17, services/verification/county_filings.py)
        "CountyFilingDue", "CountyFilingReceived", "MonthlyStatisticsPublished",
        # 特困 support (issue 17): arrangements, guardians, care agreements, visits
        "SupportArranged", "GuardianConfirmed", "CareAgreementSigned", "CareVisitRecorded",
    ),
    "payment": (
        "EntitlementOpened", "PaymentRunStarted", "PaymentInstructed", "BankBatchSubmitted",
        "PaymentSettled", "PaymentReturned", "PaymentRecallRequested", "PaymentRunCompleted",
        "ReconciliationCompleted", "RecoveryOpened",
    ),
    "charity": (
        "FundRegistered", "DonationReceived", "NeedOpened", "FundAllocated",
        "AllocationReleased", "AllocationDisbursed", "NeedPublished", "NeedAccepted", "NeedFulfilled",
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
# Other life events departments report about people (large medical bills, unemployment,
# disaster losses), which dynamic monitoring matches against its risk rules; keyed by record id.
EVENT_TOPIC["LifeEventReported"] = PARTNER_RECORDS
# A department's answer to a referral raised to it (keyed by the case id).
EVENT_TOPIC["ReferralAnswered"] = PARTNER_RECORDS
# The head of a service's hash-chained log: every service publishes it on its own topic
# (SHARED_EVENTS below, topics_for(name, service)); looked up by name alone, intake's.
EVENT_TOPIC["LogSealed"] = TOPICS["intake"]

# Events several services publish, each on its own topic: a statutory deadline is set and
# cleared by the service whose step starts and ends its clock.
SHARED_EVENTS: dict[str, tuple[str, ...]] = {
    "DeadlineSet": ("verification", "intake"),
    "DeadlineCleared": ("verification", "intake"),
    # Every service publishes the head of its hash-chained log on its own topic (SPEC §5).
    "LogSealed": tuple(TOPICS),
}

# ReferralRaised is also written to the referral feed read outside Lifeline; FraudRecorded to
# the dishonesty-list feed (masked: no ID number in clear, no address).
EXTRA_TOPICS: dict[str, tuple[str, ...]] = {"ReferralRaised": (REFERRALS,), "FraudRecorded": (CREDIT,)}


def topics_for(event_name: str, service: str | None = None) -> tuple[str, ...]:
    """All topics an event is published to: primary first, then fan-out. An event several
    services publish goes to the publishing `service`'s own topic."""
    if service is not None and service in SHARED_EVENTS.get(event_name, ()):
        return (TOPICS[service], *EXTRA_TOPICS.get(event_name, ()))
    return (EVENT_TOPIC[event_name], *EXTRA_TOPICS.get(event_name, ()))


def key_for(event_name: str, subject: str, data: dict) -> str:
    """Kafka message key: the case id (subject), or the department code for partner requests."""
    if EVENT_TOPIC.get(event_name) == PARTNER_REQUESTS:
        return str(data["department"])
    return subject
