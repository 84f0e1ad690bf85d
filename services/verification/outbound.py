"""Verification's public events: how its domain events appear on the wire."""

from __future__ import annotations

import dataclasses
from typing import Any

from lifeline.messaging.outbound import Outbound
from services.verification.county_filings import CountyFiling, MonthlyStatistics
from services.verification.care import Care
from services.verification.domain import Verification
from services.verification.services_in_kind import Provider, ServiceOrder

OUTBOUND = Outbound()


# To the partner topic, keyed by department (topics.key_for).
OUTBOUND.copies(Verification.Requested, "VerificationRequested")


# The procedure's steps and deadlines: the wire payload is the event itself.
OUTBOUND.copies(Verification.SurveyRecorded, "HouseholdSurveyRecorded")
OUTBOUND.copies(Verification.ReviewProposed, "InitialReviewProposed")
OUTBOUND.copies(Verification.NoticePosted, "PublicNoticePosted")
OUTBOUND.copies(Verification.ObjectionRaised, "ObjectionRaised")
OUTBOUND.copies(Verification.AppraisalHeld, "DemocraticAppraisalHeld")
OUTBOUND.copies(Verification.DeadlineSet, "DeadlineSet")
OUTBOUND.copies(Verification.DeadlineCleared, "DeadlineCleared")


# The assessment record's fields VerificationCompleted carries under the same names.
FROM_ASSESSMENT = (
    "per_capita_income_fen", "household_size", "assets_summary", "warnings", "outcome",
    "recommended_assistance_type", "tier", "standard_applied_fen", "departments_answered",
    "departments_missing",
)


@OUTBOUND.maps(Verification.Completed, "VerificationCompleted")
def verification_completed(e: Verification.Completed) -> dict[str, Any]:
    a = e.assessment
    return {
        "case_id": e.case_id, "verification_id": e.verification_id,
        **{name: a[name] for name in FROM_ASSESSMENT},
        "recommended_amount_fen": a["monthly_amount_fen"], "completed_at": e.completed_at,
    }


@OUTBOUND.maps(Verification.Approved, "BenefitApproved")
def benefit_approved(e: Verification.Approved) -> dict[str, Any]:
    b = e.benefit
    return {
        "case_id": e.case_id,
        "verification_id": e.verification_id,
        "household": {"members_count": e.members_count, "region_code": e.region_code, "area": e.area},
        **dataclasses.asdict(b),
        "bank_account_ref": e.bank_account_ref,
        "bank_account": dataclasses.asdict(e.bank_account) if e.bank_account else None,
        "reason": e.reason,
    }


# After approval (动态管理): each change to a monthly benefit is its own public event, whose
# payload is the event itself (case, benefit, from_period, reason, who and when; an
# adjustment also the new and the previous monthly amount).
OUTBOUND.copies(Verification.BenefitAdjusted, "BenefitAdjusted")
OUTBOUND.copies(Verification.BenefitSuspended, "BenefitSuspended")
OUTBOUND.copies(Verification.BenefitResumed, "BenefitResumed")
OUTBOUND.copies(Verification.BenefitTerminated, "BenefitTerminated")


# Dynamic management and fraud (issue 11). A review asks the departments again with requests of
# its own (the same public event as the first check's, new request ids); FraudReported (an
# accusation one officer made, with its evidence) stays inside: only the confirmed record is
# published, masked, on the verification topic and the dishonesty-list feed (topics.EXTRA_TOPICS).
OUTBOUND.copies(Verification.ReviewRequested, "VerificationRequested")
OUTBOUND.copies(Verification.ReviewStarted, "ReviewStarted")
OUTBOUND.copies(Verification.ReviewCompleted, "ReviewCompleted")
OUTBOUND.copies(Verification.FraudRecorded, "FraudRecorded")

# 特困 support (issue 17, care.py): the wire payload is the event itself (names and the guardian's
# ID number masked); the visit clock is DeadlineSet / DeadlineCleared like every other.
OUTBOUND.copies(Care.SupportArranged, "SupportArranged")
OUTBOUND.copies(Care.GuardianConfirmed, "GuardianConfirmed")
OUTBOUND.copies(Care.CareAgreementSigned, "CareAgreementSigned")
OUTBOUND.copies(Care.CareVisitRecorded, "CareVisitRecorded")
OUTBOUND.copies(Care.DeadlineSet, "DeadlineSet")
OUTBOUND.copies(Care.DeadlineCleared, "DeadlineCleared")


# 镇→县备案 and the monthly statistics (issue 17, county_filings.py): a township's decision filed
# with the county and its clock, the county's receipt; the statistics keyed by their own id.
OUTBOUND.copies(CountyFiling.Due, "CountyFilingDue")
OUTBOUND.copies(CountyFiling.DeadlineSet, "DeadlineSet")
OUTBOUND.copies(CountyFiling.Received, "CountyFilingReceived")
OUTBOUND.copies(CountyFiling.DeadlineCleared, "DeadlineCleared")
OUTBOUND.copies(MonthlyStatistics.Published, "MonthlyStatisticsPublished", subject=lambda e: e.statistics_id)


@OUTBOUND.maps(Verification.Refused, "BenefitRefused")
def benefit_refused(e: Verification.Refused) -> dict[str, Any]:
    return {
        "case_id": e.case_id, "verification_id": e.verification_id, "region_code": e.region_code,
        **dataclasses.asdict(e.refusal),
    }


# Services and goods in kind (资金+实物+服务, issue 17): a provider registered (its account by the
# masked reference only), an order, a delivery confirmed (with the provider's sealed account,
# for payment). A delivery the provider reports stays inside until a caseworker confirms it.
OUTBOUND.copies(Provider.Registered, "ProviderRegistered", subject=lambda e: e.provider_id)
OUTBOUND.copies(ServiceOrder.Placed, "ServiceOrdered")
OUTBOUND.copies(ServiceOrder.DeliveryConfirmed, "ServiceDeliveryConfirmed")
