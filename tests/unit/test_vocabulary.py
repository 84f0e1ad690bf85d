"""The contract's closed vocabularies are defined once (lifeline/rules/vocabulary.py): every
enum in every current JSON Schema lists exactly the values of the vocabulary it names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lifeline.contracts import registry
from lifeline.rules import vocabulary as V
from lifeline.rules.clocks import CLOCKS
from lifeline.rules.departments import DEPARTMENTS
from lifeline.settings import SERVICES
from services.notify.domain import LEGAL_NAMES
from services.payment.domain import RECOVERY_GROUNDS
from services.verification import county_filings as CF
from services.verification.review import FRAUD_KINDS, GRACE_REASONS, REVIEW_OUTCOMES
from services.verification import care as C

# (event, JSON path of an enum) → the vocabulary it must equal (None allowed where nullable).
VOCABULARY_OF: dict[tuple[str, str], tuple[Any, ...]] = {
    ("ApplicationSubmitted", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("ApplicationSubmitted", "$.channel"): V.CHANNELS,
    ("ApplicationSubmitted", "$.area"): V.AREAS,
    ("ApplicationSubmitted", "$.members[].relation"): V.RELATIONS,
    ("ApplicationSubmitted", "$.members[].disability_kind"): (*V.DISABILITY_KINDS, None),
    ("ApplicationSubmitted", "$.members[].work_ability"): V.WORK_ABILITY,
    ("ApplicationSubmitted", "$.members[].cadre_relation"): (*V.CADRE_RELATIONS, None),
    ("ApplicationSubmitted", "$.bank_account.channel"): tuple(V.BANK_CHANNELS),
    ("ApplicationSubmitted", "$.urgency"): V.URGENCIES,
    ("BenefitApproved", "$.household.area"): V.AREAS,
    ("BenefitApproved", "$.kind"): V.BENEFIT_KINDS,
    ("BenefitApproved", "$.benefit_type"): V.ASSISTANCE_TYPES,
    ("BenefitApproved", "$.fund_source"): (*V.FUND_SOURCES, None),
    ("BenefitApproved", "$.bank_account.channel"): tuple(V.BANK_CHANNELS),
    ("BenefitApproved", "$.approval_level"): V.APPROVAL_LEVELS,
    ("DepartmentRecordsReported", "$.department"): tuple(DEPARTMENTS),
    # Who reports deaths: public security (户籍) and civil affairs' funeral records (殡葬); not a
    # verification department (DEPARTMENTS), so a vocabulary of its own.
    ("DeathReported", "$.department"): ("public_security", "civil_affairs"),
    ("EntitlementOpened", "$.benefit_type"): V.ASSISTANCE_TYPES,
    ("PaymentInstructed", "$.fund_source"): V.PAYMENT_FUND_SOURCES,
    ("PaymentInstructed", "$.channel"): tuple(V.BANK_CHANNELS),
    ("BankBatchSubmitted", "$.channel"): tuple(V.BANK_CHANNELS),
    ("FundRegistered", "$.kind"): V.FUND_KINDS,
    ("FundRegistered", "$.need_categories[]"): V.NEED_CATEGORIES,
    ("FundRegistered", "$.household_types[]"): V.HOUSEHOLD_TYPES,
    ("FundAllocated", "$.matched[]"): V.FUND_CRITERIA,
    ("NeedOpened", "$.need_category"): V.NEED_CATEGORIES,
    ("NeedOpened", "$.urgency"): V.URGENCIES,
    ("NeedOpened", "$.household_type"): V.HOUSEHOLD_TYPES,
    ("NeedPublished", "$.need_category"): V.NEED_CATEGORIES,
    ("NeedPublished", "$.urgency"): V.URGENCIES,
    ("NeedPublished", "$.household_type"): V.HOUSEHOLD_TYPES,
    ("NeedFulfilled", "$.by"): V.FULFILLED_BY,
    ("NoticeIssued", "$.kind"): tuple(LEGAL_NAMES),
    ("NoticeIssued", "$.legal_name"): tuple(LEGAL_NAMES.values()),
    ("NoticeIssued", "$.channel"): V.NOTICE_CHANNELS,
    ("NoticeDelivered", "$.channel"): V.NOTICE_CHANNELS,
    ("NoticeFailed", "$.channel"): V.NOTICE_CHANNELS,
    ("ReferralRaised", "$.target"): V.REFERRAL_TARGETS,
    ("ReferralRaised", "$.need_category"): V.NEED_CATEGORIES,
    ("ReferralRaised", "$.urgency"): V.URGENCIES,
    ("ReferralRaised", "$.household_profile.assistance_type"): (*V.ASSISTANCE_TYPES, None),
    ("VerificationCompleted", "$.outcome"): ("eligible", "ineligible", "needs_appraisal"),
    ("VerificationCompleted", "$.recommended_assistance_type"): (*V.ASSISTANCE_TYPES, None),
    ("VerificationCompleted", "$.departments_answered[]"): tuple(DEPARTMENTS),
    ("VerificationCompleted", "$.departments_missing[]"): tuple(DEPARTMENTS),
    ("VerificationRequested", "$.department"): tuple(DEPARTMENTS),
    # the procedure (issue 9)
    ("ApplicationAccepted", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("ApplicationRefused", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("MaterialsRequested", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("MaterialsRequested", "$.missing_materials[]"): tuple(V.REQUIRED_MATERIALS),
    ("DeadlineWarning", "$.clock"): tuple(CLOCKS),
    ("DeadlineBreached", "$.clock"): tuple(CLOCKS),
    ("DeadlineBreached", "$.escalated_to.level"): V.ESCALATION_LEVELS,
    ("HouseholdSurveyRecorded", "$.surveyors[].role"): V.SURVEYOR_ROLES,
    ("InitialReviewProposed", "$.proposal"): V.PROPOSALS,
    ("InitialReviewProposed", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("PublicNoticePosted", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("DeadlineSet", "$.clock"): tuple(CLOCKS),
    ("DeadlineCleared", "$.clock"): tuple(CLOCKS),
    ("DeadlineCleared", "$.outcome"): V.DEADLINE_OUTCOMES,
    # reviews and fraud (issue 11, verification)
    ("ReviewStarted", "$.grace_reason"): (*GRACE_REASONS, None),
    ("ReviewStarted", "$.departments[]"): tuple(DEPARTMENTS),
    ("ReviewCompleted", "$.outcome"): REVIEW_OUTCOMES,
    ("ReviewCompleted", "$.grace.reason"): GRACE_REASONS,
    ("FraudRecorded", "$.benefit_type"): V.ASSISTANCE_TYPES,
    ("FraudRecorded", "$.fraud_kinds[]"): FRAUD_KINDS,
    # one person, one file per benefit; the emergency green channel (issue 11)
    ("DuplicateSuspected", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("DuplicateSuspected", "$.reasons[]"): V.DUPLICATE_REASONS,
    ("DuplicateDecided", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("DuplicateDecided", "$.decision"): V.DUPLICATE_DECISIONS,
    ("EmergencyReliefGranted", "$.approval_level"): V.APPROVAL_LEVELS,
    ("EmergencyReliefGranted", "$.bank_account.channel"): tuple(V.BANK_CHANNELS),
    ("EmergencyReliefPostApprovalDecided", "$.decision"): V.POST_APPROVAL_DECISIONS,
    # recoveries (追回, issue 11, payment)
    ("RecoveryOpened", "$.ground"): RECOVERY_GROUNDS,
    # finding households; referrals followed up (issue 11)
    ("DiscoveryReported", "$.reporter_kind"): V.DISCOVERY_REPORTERS,
    ("DiscoveryReported", "$.urgency"): V.URGENCIES,
    ("DiscoveryContacted", "$.outcome"): V.DISCOVERY_CONTACT_OUTCOMES,
    ("LifeEventReported", "$.department"): tuple(DEPARTMENTS),
    ("LifeEventReported", "$.kind"): V.LIFE_EVENT_KINDS,
    ("ReferralAnswered", "$.department"): V.REFERRAL_TARGETS,
    ("ReferralAnswered", "$.outcome"): V.REFERRAL_OUTCOMES,
    ("ReferralOutcomeRecorded", "$.target"): V.REFERRAL_TARGETS,
    ("ReferralOutcomeRecorded", "$.outcome"): V.REFERRAL_OUTCOMES,
    ("ReferralOutcomeRecorded", "$.answered_by"): V.REFERRAL_ANSWERED_BY,
    # services and goods in kind from registered providers (issue 17, services/verification/services_in_kind.py)
    ("ProviderRegistered", "$.service_kinds[]"): V.SERVICE_KINDS,
    ("ProviderRegistered", "$.prices[].kind"): V.SERVICE_KINDS,
    ("ProviderRegistered", "$.prices[].unit"): V.SERVICE_UNITS,
    ("ServiceOrdered", "$.kind"): V.SERVICE_KINDS,
    ("ServiceOrdered", "$.unit"): V.SERVICE_UNITS,
    ("ServiceDeliveryConfirmed", "$.kind"): V.SERVICE_KINDS,
    ("ServiceDeliveryConfirmed", "$.unit"): V.SERVICE_UNITS,
    ("ServiceDeliveryConfirmed", "$.bank_account.channel"): tuple(V.BANK_CHANNELS),
    # 镇→县备案 and the monthly statistics (issue 17, verification)
    ("CountyFilingDue", "$.decision"): CF.FILING_DECISIONS,
    ("CountyFilingDue", "$.assistance_type"): V.ASSISTANCE_TYPES,
    ("CountyFilingDue", "$.benefit_kind"): V.BENEFIT_KINDS,
    ("CountyFilingReceived", "$.decision"): CF.FILING_DECISIONS,
    ("CountyFilingReceived", "$.outcome"): CF.RECEIPT_OUTCOMES,
    ("MonthlyStatisticsPublished", "$.townships[].figures[].assistance_type"): V.ASSISTANCE_TYPES,
    ("MonthlyStatisticsPublished", "$.county_total[].assistance_type"): V.ASSISTANCE_TYPES,
    # 特困 support: arrangements, guardians, care agreements, visits (issue 17, services/verification/care.py)
    ("SupportArranged", "$.mode"): C.SUPPORT_MODES,
    ("GuardianConfirmed", "$.legal_capacity"): ("none", "limited"),
    ("GuardianConfirmed", "$.relation"): C.GUARDIAN_RELATIONS,
    ("GuardianConfirmed", "$.confirmed_by"): C.GUARDIAN_CONFIRMATIONS,
    ("CareAgreementSigned", "$.kind"): C.CARE_AGREEMENT_KINDS,
    ("CareAgreementSigned", "$.legal_capacity"): C.LEGAL_CAPACITIES,
    ("CareAgreementSigned", "$.carer_relation"): (*C.CARER_RELATIONS, None),
    ("CareVisitRecorded", "$.visitors[].role"): C.VISITOR_ROLES,
    ("CareVisitRecorded", "$.care_quality"): C.CARE_QUALITIES,
    ("CareVisitRecorded", "$.deadline_outcome"): ("met", "late", None),
    # whose hash-chained log a seal is (issue 13)
    ("LogSealed", "$.service"): SERVICES,
}


def _resolve(root: dict, node: dict) -> dict:
    if "$ref" not in node:
        return node
    for part in node["$ref"].removeprefix("#/").split("/"):
        root = root[part]
    return root


def _enums(root: dict, schema: dict, path: str = "$") -> Iterator[tuple[str, list]]:
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(root, sub)
        if "enum" in sub:
            yield f"{path}.{key}", sub["enum"]
        yield from _enums(root, sub, f"{path}.{key}")
        for alt in sub.get("oneOf", []):
            yield from _enums(root, _resolve(root, alt), f"{path}.{key}")
        if "items" in sub:
            items = _resolve(root, sub["items"])
            if "enum" in items:
                yield f"{path}.{key}[]", items["enum"]
            yield from _enums(root, items, f"{path}.{key}[]")


FOUND = sorted(
    ((name, path), tuple(enum))
    for name in registry.CURRENT_VERSIONS
    for path, enum in _enums(registry.schema(name), registry.schema(name))
)


def test_every_enum_is_a_named_vocabulary():
    assert {where for where, _ in FOUND} == set(VOCABULARY_OF)


@pytest.mark.parametrize(("where", "enum"), FOUND, ids=[f"{n}{p}" for (n, p), _ in FOUND])
def test_schema_enum_equals_its_vocabulary(where, enum):
    assert len(set(enum)) == len(enum)
    assert set(enum) == set(VOCABULARY_OF[where])  # the order carries no meaning
