"""One valid ``data`` example per event (current versions) plus the old v1 to v4
ApplicationSubmitted and v2 BenefitApproved, for reuse by any test:

    from tests.unit.contract_examples import EXAMPLES, example, make_id_number
    data = example("BenefitApproved", monthly_amount_fen=80000)

ID numbers are synthetic but carry a correct GB 11643 check digit, because the
schemas verify it. ``example`` returns a deep copy, so tests may mutate it.
"""

from __future__ import annotations

import copy
from typing import Any

from lifeline.rules.ids import check_digit as gb11643_check_digit


def make_id_number(first17: str) -> str:
    """Complete a 17-digit prefix (region 6 + birth date 8 + sequence 3) with its check digit."""
    return first17 + gb11643_check_digit(first17)


CASE_ID = "case-320583-000001"
VERIFICATION_ID = "ver-000001"
BENEFIT_ID = "ben-000001"
REFERRAL_ID = "ref-000001"
TOWNSHIP = "320583101"  # a township of county 320583
VILLAGE = "320583101001"
APPLICANT_ID = make_id_number("32058319800101123")  # 320583198001011238
SPOUSE_ID = make_id_number("32058319820315234")
CHILD_ID = make_id_number("32058320100601345")
T0 = "2026-03-02T09:30:00+08:00"

_MEMBERS = [
    {
        "id_number": APPLICANT_ID, "name": "张三", "relation": "self", "disability_grade": None,
        "disability_kind": None, "serious_illness": True, "work_ability": "partial",
        "co_resident": True, "support_obligor": False, "support_paid_fen": 0, "cadre_relation": None,
    },
    {
        "id_number": SPOUSE_ID, "name": "李四", "relation": "spouse", "disability_grade": 2,
        "disability_kind": "physical", "serious_illness": False, "work_ability": "none",
        "co_resident": True, "support_obligor": False, "support_paid_fen": 0, "cadre_relation": None,
    },
    {
        "id_number": CHILD_ID, "name": "张小明", "relation": "child", "disability_grade": None,
        "disability_kind": None, "serious_illness": False, "work_ability": "none",
        "co_resident": True, "support_obligor": False, "support_paid_fen": 0, "cadre_relation": None,
    },
]

# Account 6228480012345670001, masked as ApplicationSubmitted v5 / BenefitApproved v3 show it
# (first four and last four digits) ...
BANK_ACCOUNT = {
    "channel": "RCC", "account_name": "张三", "number_masked": "6228***********0001",
    "number_sealed": "c2VhbGVkLWFjY291bnQtbnVtYmVyLWV4YW1wbGU=",
}
# ... and as events before them carried it (last four only), which the current versions still accept.
BANK_ACCOUNT_MASKED_BEFORE_V5 = {**BANK_ACCOUNT, "number_masked": "***************0001"}
# The household's mobile 13812345678 as ApplicationSubmitted v6 carries it: sealed and masked.
CONTACT = {"phone_masked": "138****5678", "phone_sealed": "c2VhbGVkLW1vYmlsZS1udW1iZXItZXhhbXBsZQ=="}

EXAMPLES: dict[str, dict[str, Any]] = {
    "ApplicationSubmitted": {
        "case_id": CASE_ID, "assistance_type": "dibao", "channel": "window", "region_code": VILLAGE,
        "area": "rural", "members": _MEMBERS, "declared_monthly_income_fen": 150000,
        "declared_assets_fen": 2000000, "declared_medical_expense_fen": 0,
        "declared_education_expense_fen": 0, "requested_amount_fen": 0, "single_person_member_id": None,
        "bank_account_ref": "RCC:6228***********0001", "bank_account": BANK_ACCOUNT, "contact": CONTACT,
        "authorisation_signed": True, "urgency": "urgent", "clerk_id": "clerk-001", "submitted_at": T0,
    },
    "ApplicationAccepted": {
        "case_id": CASE_ID, "region_code": VILLAGE, "assistance_type": "dibao",
        "applicant_name_masked": "张*", "members_count": 3, "reason": "申请材料齐全，符合受理条件",
        "accepted_at": "2026-03-02T10:00:00+08:00",
    },
    "ApplicationRefused": {
        "case_id": CASE_ID, "region_code": VILLAGE, "assistance_type": "dibao",
        "applicant_name_masked": "张*", "reason": "申请人户籍及经常居住地均不在本辖区",
        "refused_at": "2026-03-02T10:00:00+08:00",
    },
    "MaterialsRequested": {
        "case_id": CASE_ID, "region_code": VILLAGE, "assistance_type": "dibao",
        "applicant_name_masked": "张*", "missing_materials": ["authorisation"], "repeat": False,
        "reason": "缺少签字的家庭经济状况核对授权书", "requested_at": "2026-03-02T10:00:00+08:00",
    },
    "VerificationRequested": {
        "request_id": "req-000001", "verification_id": VERIFICATION_ID, "case_id": CASE_ID,
        "department": "hrss", "id_numbers": [APPLICANT_ID, SPOUSE_ID, CHILD_ID],
        "region_code": VILLAGE, "requested_at": T0, "due_at": "2026-03-05T23:59:59+08:00",
    },
    "DepartmentRecordsReported": {
        "request_id": "req-000001", "case_id": CASE_ID, "department": "hrss",
        "members": [
            {
                "id_number": APPLICANT_ID, "monthly_income_fen": 120000, "income_tax_fen": 0,
                "social_insurance_fen": 12000, "assets_fen": None, "medical_expense_fen": None,
                "education_expense_fen": None,
            }
        ],
        "reported_at": "2026-03-03T10:00:00+08:00",
    },
    "DeathReported": {
        "record_id": "PS-320583-20261120-000123", "department": "public_security",
        "id_number": APPLICANT_ID, "name": "张三", "date_of_death": "2026-11-20",
        "reported_at": "2026-11-21T09:00:00+08:00",
    },
    "VerificationCompleted": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID, "per_capita_income_fen": 36000,
        "household_size": 3, "assets_summary": {"total_fen": 2000000, "within_limit": True},
        "warnings": [{"rule": "vehicle-owned", "code": "W010", "message": "家庭成员名下有机动车"}],
        "outcome": "needs_appraisal", "recommended_assistance_type": "dibao", "tier": "B",
        "recommended_amount_fen": 189000, "standard_applied_fen": 99000,
        "departments_answered": ["hrss", "tax", "bank"], "departments_missing": ["housing_fund"],
        "completed_at": "2026-03-06T16:00:00+08:00",
    },
    "BenefitApproved": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "verification_id": VERIFICATION_ID,
        "household": {"members_count": 3, "region_code": VILLAGE, "area": "rural"},
        "kind": "monthly", "benefit_type": "dibao", "tier": "B", "monthly_amount_fen": 189000,
        "one_off_amount_fen": None, "fund_source": None,
        "first_period": "2026-04", "bank_account_ref": "RCC:6228***********0001",
        "bank_account": BANK_ACCOUNT,
        "approving_body": "某某镇人民政府", "approval_level": "township",
        "reason": "家庭人均收入低于当地低保标准", "approved_at": "2026-03-20T15:00:00+08:00",
    },
    "BenefitRefused": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID, "region_code": "320583101001",
        "reason": "家庭财产超过规定标准", "refusing_body": "某某镇人民政府",
        "refused_at": "2026-03-20T15:00:00+08:00",
    },
    # After approval (动态管理): changes to the monthly benefit from a period on.
    "BenefitAdjusted": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "from_period": "2026-07",
        "monthly_amount_fen": 120000, "previous_monthly_amount_fen": 189000,
        "reason": "家庭成员实现就业，家庭人均收入提高", "decided_by": "reviewer-001",
        "decided_at": "2026-06-15T10:00:00+08:00",
    },
    "BenefitSuspended": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "from_period": "2026-08",
        "reason": "经复核家庭情况待查，暂停发放", "decided_by": "reviewer-001",
        "decided_at": "2026-07-20T10:00:00+08:00",
    },
    "BenefitResumed": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "from_period": "2026-10",
        "reason": "情况查实，恢复发放", "decided_by": "reviewer-001",
        "decided_at": "2026-09-18T10:00:00+08:00",
    },
    "BenefitTerminated": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "from_period": "2027-01",
        "reason": "家庭人均收入超过当地低保标准", "decided_by": "county-001",
        "decided_at": "2026-12-10T10:00:00+08:00",
    },
    # Reviews and fraud (issue 11, verification).
    "ReviewStarted": {
        "case_id": CASE_ID, "review_id": "RV-000001", "benefit_id": BENEFIT_ID, "region_code": VILLAGE,
        "scheduled_for": "2027-03-20", "grace_reason": "graduate_employed", "grace_months": 9,
        "reason": "年度复核", "departments": ["hrss", "tax", "bank"], "started_by": "caseworker-001",
        "started_at": "2027-03-22T09:00:00+08:00",
    },
    "ReviewCompleted": {
        "case_id": CASE_ID, "review_id": "RV-000001", "benefit_id": BENEFIT_ID, "outcome": "grace",
        "per_capita_income_fen": 150000, "standard_applied_fen": 103000, "monthly_amount_fen": None,
        "from_period": "2028-01", "grace": {"reason": "graduate_employed", "months": 9, "last_paid_period": "2027-12"},
        "reason": "定期复核：共同生活的家庭成员高中或者大学毕业后实现就业，给予延退期（9个月）",
        "next_review_date": None, "completed_by": "caseworker-001", "completed_at": "2027-03-24T16:00:00+08:00",
    },
    "FraudRecorded": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "benefit_type": "dibao", "region_code": VILLAGE,
        "applicant_name_masked": "张*", "applicant_id_number_masked": APPLICANT_ID[:6] + "*" * 8 + APPLICANT_ID[-4:],
        "fraud_kinds": ["concealment", "forgery"], "fraud_since": "2026-03-01", "terminated_from_period": "2027-01",
        "reported_by": "county-001", "confirmed_by": "county-002", "recorded_at": "2026-12-10T10:00:00+08:00",
    },
    # 特困 support: arrangements, guardians, care agreements, visits (issue 17, verification's care.py)
    "SupportArranged": {
        "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "region_code": VILLAGE, "person_name_masked": "张*",
        "mode": "dispersed", "care_home_code": None, "chosen_by_person": True, "note": "本人选择在家分散供养",
        "next_visit_due_date": "2026-04-02", "arranged_by": "caseworker-001", "arranged_at": T0,
    },
    "GuardianConfirmed": {
        "case_id": CASE_ID, "region_code": VILLAGE, "legal_capacity": "none", "guardian_name_masked": "李*",
        "guardian_id_number_masked": SPOUSE_ID[:6] + "*" * 8 + SPOUSE_ID[-4:], "relation": "grandparent",
        "confirmed_by": "designation_by_committee", "confirmed_on": "2026-02-27", "recorded_by": "caseworker-001",
        "recorded_at": T0,
    },
    "CareAgreementSigned": {
        "case_id": CASE_ID, "region_code": VILLAGE, "agreement_id": f"{CASE_ID}-agreement-1",
        "kind": "entrusted_care", "legal_capacity": "none", "carer_name_masked": None, "carer_relation": None,
        "provider_name": "东营区康乐居家养老服务中心", "provider_code": "52370502MJD123456N",
        "duties": ["每周上门助餐助洁两次", "康复训练"], "term_from": "2026-03-01", "term_to": "2027-02-28",
        "monthly_amount_fen": 80000, "recorded_by": "caseworker-001", "recorded_at": T0,
    },
    "CareVisitRecorded": {
        "case_id": CASE_ID, "region_code": VILLAGE, "visit_id": f"{CASE_ID}-visit-1", "visited_on": "2026-03-30",
        "visitors": [{"name": "赵敏", "role": "township_staff"}, {"name": "李卫东", "role": "village_cadre"}],
        "findings": "住房整洁，饮食正常，照料到位。", "care_quality": "good", "follow_up": None,
        "deadline_id": f"{CASE_ID}/care_visit", "deadline_outcome": "met", "next_visit_due_date": "2026-04-30",
        "recorded_by": "caseworker-001", "recorded_at": "2026-03-30T16:00:00+08:00",
    },
    # 镇→县备案 and the monthly statistics (issue 17, verification's county_filings.py)
    "CountyFilingDue": {
        "filing_id": f"CF-{CASE_ID}-14", "case_id": CASE_ID, "benefit_id": BENEFIT_ID, "decision": "inclusion",
        "assistance_type": "dibao", "benefit_kind": "monthly", "region_code": VILLAGE,
        "township_code": VILLAGE[:9], "county_code": VILLAGE[:6], "applicant_name_masked": "张*",
        "household_size": 3, "monthly_amount_fen": 189000, "one_off_amount_fen": None, "from_period": "2026-04",
        "reason": "审核确认小组会议决定", "decided_by": "reviewer-001", "decided_at": "2026-03-20T15:00:00+08:00",
        "due_date": "2026-03-27",
    },
    "CountyFilingReceived": {
        "filing_id": f"CF-{CASE_ID}-14", "case_id": CASE_ID, "decision": "inclusion",
        "township_code": VILLAGE[:9], "county_code": VILLAGE[:6], "due_date": "2026-03-27", "outcome": "met",
        "note": None, "received_by": "county-001", "received_at": "2026-03-24T10:00:00+08:00",
    },
    "MonthlyStatisticsPublished": {
        "statistics_id": "MS-320583-2026-04", "county_code": "320583", "period": "2026-04",
        "townships": [{"township_code": VILLAGE[:9], "figures": [
            {"assistance_type": t, "cases": int(t == "dibao"), "people": 3 * (t == "dibao"),
             "amount_fen": 189000 * (t == "dibao"), "inclusions": 0, "exits": 0}
            for t in ("dibao", "tekun", "linshi_jinan", "linshi_zhichu", "low_income")]}],
        "county_total": [
            {"assistance_type": t, "cases": int(t == "dibao"), "people": 3 * (t == "dibao"),
             "amount_fen": 189000 * (t == "dibao"), "inclusions": 0, "exits": 0}
            for t in ("dibao", "tekun", "linshi_jinan", "linshi_zhichu", "low_income")],
        "published_by": "county-001", "published_at": "2026-05-06T09:00:00+08:00",
    },
    # services and goods in kind from registered providers (issue 17, verification's services_in_kind.py)
    "ProviderRegistered": {
        "provider_id": "PV-91370502MA3C8Y4L28", "name": "东营区心晴社会工作服务中心",
        "credit_code": "91370502MA3C8Y4L28", "county_code": "370502",
        "service_kinds": ["psychological_support", "visit"], "regions": ["370502"],
        "prices": [{"kind": "psychological_support", "unit": "session", "unit_price_fen": 20000},
                   {"kind": "visit", "unit": "visit", "unit_price_fen": 5000}],
        "contract_from": "2026-01-01", "contract_to": "2027-12-31", "bank_account_ref": "ICBC:1602***********2345",
        "registered_by": "county-001", "registered_at": T0,
    },
    "ServiceOrdered": {
        "order_id": "SO-0123456789ABCDEF0123", "case_id": CASE_ID, "region_code": VILLAGE,
        "provider_id": "PV-91370502MA3C8Y4L28", "kind": "psychological_support", "quantity": 4, "unit": "session",
        "unit_price_fen": 20000, "amount_fen": 80000, "period": "2026-04", "ordered_by": "caseworker-001",
        "ordered_at": T0,
    },
    "ServiceDeliveryConfirmed": {
        "order_id": "SO-0123456789ABCDEF0123", "delivery_id": "SD-0123456789ABCDEF0123", "case_id": CASE_ID,
        "provider_id": "PV-91370502MA3C8Y4L28", "region_code": VILLAGE, "kind": "psychological_support",
        "quantity": 2, "unit": "session", "unit_price_fen": 20000, "amount_fen": 40000, "delivered_on": "2026-04-10",
        "bank_account": {**BANK_ACCOUNT, "channel": "ICBC", "account_name": "东营区心晴社会工作服务中心",
                         "number_masked": "1602***********2345"},
        "confirmed_by": "caseworker-001", "confirmed_at": "2026-04-11T10:00:00+08:00",
    },
    "EntitlementOpened": {
        "entitlement_id": "ent-000001", "case_id": CASE_ID, "benefit_id": BENEFIT_ID,
        "benefit_type": "dibao", "monthly_amount_fen": 189000, "first_period": "2026-04",
        "bank_account_ref": "acct-ref-0001", "opened_at": "2026-03-20T15:00:05+08:00",
    },
    "PaymentRunStarted": {
        "run_id": "PR-370502-202604", "county_code": "370502", "period": "2026-04",
        "started_by": "county-001", "started_at": "2026-04-01T09:00:00+08:00",
    },
    "PaymentInstructed": {
        "payment_id": "E-0123456789ABCDEF0123-202604", "entitlement_id": "E-0123456789ABCDEF0123",
        "case_id": CASE_ID, "period": "2026-04", "amount_fen": 189000, "fund_source": "dibao_fund",
        "channel": "RCC", "bank_account_ref": "RCC:6228***********0001", "region_code": VILLAGE,
        "run_id": "PR-370502-202604", "batch_id": "B-370502-202604-RCC-0001",
        "instructed_at": "2026-04-01T09:00:03+08:00",
    },
    "BankBatchSubmitted": {
        "batch_id": "B-370502-202604-RCC-0001", "run_id": "PR-370502-202604", "channel": "RCC", "count": 1200,
        "total_fen": 226800000, "file_name": "B-370502-202604-RCC-0001.xml", "file_sha256": "0" * 64,
        "group_status": "ACTC", "submitted_at": "2026-04-01T09:00:10+08:00",
    },
    "PaymentSettled": {
        "payment_id": "E-0123456789ABCDEF0123-202604", "case_id": CASE_ID, "batch_id": "B-370502-202604-RCC-0001",
        "amount_fen": 189000, "booked_on": "2026-04-02", "statement_id": "STMT-20260402-0001",
    },
    "PaymentReturned": {
        "payment_id": "E-0123456789ABCDEF0123-202604", "case_id": CASE_ID, "batch_id": "B-370502-202604-RCC-0001",
        "amount_fen": 189000, "reason_code": "AC04", "reason": "closed account number",
        "message_id": "PAIN0022026040100001", "returned_at": "2026-04-01T09:00:11+08:00",
    },
    "PaymentRecallRequested": {
        "payment_id": "E-0123456789ABCDEF0123-202604", "case_id": CASE_ID,
        "reason": "死亡（public_security 记录 PS-0001，2026-03-28）", "requested_at": "2026-04-01T15:00:00+08:00",
    },
    "RecoveryOpened": {
        "recovery_id": "RC-B-0123456789ABCDEF0123", "case_id": CASE_ID, "ground": "fraud", "amount_fen": 378000,
        "payments": [{"payment_id": "E-0123456789ABCDEF0123-202603", "period": "2026-03", "amount_fen": 189000},
                     {"payment_id": "E-0123456789ABCDEF0123-202604", "period": "2026-04", "amount_fen": 189000}],
        "since": "2026-03-10", "cause": "B-0123456789ABCDEF0123", "opened_at": "2026-04-20T10:00:00+08:00",
    },
    "PaymentRunCompleted": {
        "run_id": "PR-370502-202604", "county_code": "370502", "period": "2026-04", "count": 1200,
        "total_fen": 226800000, "by_channel": {"RCC": {"count": 1200, "total_fen": 226800000, "batches": 1}},
        "by_fund_source": {"dibao_fund": {"count": 1200, "total_fen": 226800000}},
        "batches": ["B-370502-202604-RCC-0001"], "completed_at": "2026-04-01T09:00:12+08:00",
    },
    "ReconciliationCompleted": {
        "run_id": "PR-370502-202604", "county_code": "370502", "period": "2026-04", "balanced": False,
        "totals": {k: {"count": 0, "total_fen": 0} for k in (
            "instructed", "reinstructed", "settled", "returned", "pending", "held")},
        "by_channel": {"RCC": {k: {"count": 0, "total_fen": 0} for k in (
            "instructed", "reinstructed", "settled", "returned", "pending")}},
        "differences": [{"payment_id": "E-0123456789ABCDEF0123-202604", "problem": "missing_from_statement",
                         "amount_fen": 189000}],
        "reconciled_at": "2026-04-03T09:00:00+08:00",
    },
    "ReferralRaised": {
        "referral_id": REFERRAL_ID, "case_id": CASE_ID, "target": "charity",
        "need_category": "medical", "amount_asked_fen": 3000000, "urgency": "urgent",
        "due_date": "2026-03-09", "consent_to_share": True,
        "household_profile": {
            "region_code": TOWNSHIP, "members_count": 3, "name_masked": "张*",
            "assistance_type": "dibao",
        },
        "raised_at": T0,
    },
    "NeedOpened": {
        "need_id": "need-000001", "case_id": CASE_ID, "referral_id": REFERRAL_ID,
        "need_category": "medical", "amount_asked_fen": 3000000, "region_code": TOWNSHIP,
        "urgency": "urgent", "due_date": "2026-03-09", "consent_to_share": True,
        "household_type": "dibao", "name_masked": "张*", "members_count": 3,
        "opened_at": "2026-03-02T09:31:00+08:00",
    },
    "FundRegistered": {
        "fund_id": "fund-000001", "name": "救急难专项基金", "kind": "special", "donor": None,
        "need_categories": ["medical", "living", "disaster"], "region_code": "320583",
        "regions": ["320583"], "household_types": ["dibao", "tekun", "low_income", "none"],
        "balance_fen": 50000000, "per_case_cap_fen": 2000000, "per_household_year_cap_fen": 5000000,
        "valid_from": "2026-01-01", "valid_until": None,
        "registered_at": "2026-01-05T09:00:00+08:00",
    },
    "DonationReceived": {
        "fund_id": "fund-000001", "donation_id": "D-000001", "reference": "RCPT-2026-0001",
        "donor": "张家港某某科技有限公司", "amount_fen": 10000000, "received_on": "2026-02-01",
        "balance_fen": 60000000, "recorded_at": "2026-02-01T10:00:00+08:00",
    },
    "FundAllocated": {
        "allocation_id": "A-000001", "fund_id": "fund-000001", "need_id": "need-000001",
        "case_id": CASE_ID, "amount_fen": 2000000,
        "matched": ["need_category", "region", "household_type", "validity"],
        "available_fen": 58000000, "allocated_at": "2026-03-03T10:00:00+08:00",
    },
    "AllocationReleased": {
        "allocation_id": "A-000001", "fund_id": "fund-000001", "need_id": "need-000001",
        "case_id": CASE_ID, "amount_fen": 2000000, "reason": "医保二次报销后费用已覆盖",
        "released_at": "2026-03-04T10:00:00+08:00",
    },
    "AllocationDisbursed": {
        "allocation_id": "A-000001", "fund_id": "fund-000001", "need_id": "need-000001",
        "case_id": CASE_ID, "amount_fen": 2000000, "reference": "PZ-2026-0311",
        "disbursed_on": "2026-03-05", "recorded_at": "2026-03-05T15:00:00+08:00",
    },
    "NeedPublished": {
        "need_id": "need-000001", "case_id": CASE_ID, "name_masked": "张*", "region_code": TOWNSHIP[:9],
        "members_count": 3, "household_type": "dibao", "need_category": "medical",
        "amount_still_needed_fen": 1000000, "urgency": "urgent", "due_date": "2026-03-09",
        "published_at": "2026-03-02T09:32:00+08:00",
    },
    "NeedAccepted": {
        "need_id": "need-000001", "case_id": CASE_ID, "referral_id": REFERRAL_ID, "organisation": "东营市慈善总会",
        "note": "由大病救助项目承接", "accepted_at": "2026-03-03T09:00:00+08:00",
    },
    "NeedFulfilled": {
        "need_id": "need-000001", "case_id": CASE_ID, "referral_id": REFERRAL_ID, "by": "federation", "amount_fen": 1000000,
        "organisation": "东营市慈善总会", "note": "已拨付医疗费", "fulfilled_at": "2026-03-06T09:00:00+08:00",
    },
    "NoticeIssued": {
        "notice_id": "notice-000001", "case_id": CASE_ID, "kind": "acceptance",
        "legal_name": "受理通知书", "channel": "sms", "recipient_masked": "张*",
        "body": "您的低保申请已受理。", "cause_event_id": "5f0c6f1e-3f1d-4a53-9d1e-2b7c1f0d8a11",
        "issued_at": "2026-03-02T09:31:00+08:00",
    },
    "NoticeDelivered": {
        "notice_id": "notice-000001", "case_id": CASE_ID, "channel": "sms", "attempt": 2,
        "reference": "SMS-5C4B3A2918F7E6D5C4B3", "delivered_at": "2026-03-02T09:31:07+08:00",
    },
    "NoticeFailed": {
        "notice_id": "notice-000001", "case_id": CASE_ID, "channel": "sms", "attempt": 1,
        "reason": "gateway_unavailable: HTTP 503", "retry_at": "2026-03-02T09:31:02+08:00",
        "failed_at": "2026-03-02T09:31:01+08:00",
    },
    "HouseholdSurveyRecorded": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID,
        "surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
        "visited_on": "2026-03-03", "findings": "住房简陋，两人患病，无机动车辆。",
        "recorded_at": "2026-03-03T16:00:00+08:00",
    },
    "InitialReviewProposed": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID, "proposal": "include",
        "assistance_type": "dibao", "monthly_amount_fen": 98000, "one_off_amount_fen": None,
        "reason": "拟纳入低保。", "proposed_at": "2026-03-04T10:00:00+08:00",
    },
    "PublicNoticePosted": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID, "public_notice_id": "pn-000001",
        "village_code": VILLAGE, "applicant_name_masked": "张*", "members_count": 3,
        "assistance_type": "dibao", "monthly_amount_fen": 98000, "one_off_amount_fen": None,
        "notice_from": "2026-03-05", "notice_until": "2026-03-11",
        "ends_at": "2026-03-12T00:00:00+08:00", "posted_at": "2026-03-04T11:00:00+08:00",
    },
    "ObjectionRaised": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID, "objection_id": "OBJ-000001",
        "public_notice_id": "pn-000001", "text": "该户家中新购轿车一辆，与公示情况不符。",
        "received_at": "2026-03-08T10:15:00+08:00", "raised_at": "2026-03-08T10:15:02+08:00",
    },
    "DemocraticAppraisalHeld": {
        "case_id": CASE_ID, "verification_id": VERIFICATION_ID, "held_on": "2026-03-10",
        "participants": 11, "votes_for": 9, "votes_against": 1, "abstentions": 1,
        "opinion": "车辆已出售，同意纳入。", "recorded_at": "2026-03-10T16:00:00+08:00",
    },
    "DeadlineSet": {
        "deadline_id": f"{CASE_ID}/household_survey", "case_id": CASE_ID, "clock": "household_survey",
        "label_zh": "入户调查", "region_code": VILLAGE, "responsible_office": TOWNSHIP,
        "start_date": "2026-03-02", "due_date": "2026-03-05", "due_at": "2026-03-06T00:00:00+08:00",
        "warn_at": "2026-03-05T00:00:00+08:00", "period": "3 working days", "calendar_known": True,
        "warnings": [], "set_at": "2026-03-02T09:31:00+08:00",
    },
    "DeadlineCleared": {
        "deadline_id": f"{CASE_ID}/household_survey", "case_id": CASE_ID, "clock": "household_survey",
        "outcome": "met", "cleared_at": "2026-03-03T16:00:00+08:00",
    },
    # The head of a service's hash-chained log (issue 13, every service on its own topic).
    "LogSealed": {
        "service": "intake", "notification_id": 1024,
        "head_hash": "5f1c0e3a9b7d2468ace0f13579bdf02468ace13579bdf02468ace13579bdf024",
        "events": 1024, "sealed_at": "2026-03-03T16:01:00+08:00",
    },
    # One person, one file per benefit; the emergency green channel (issue 11, intake).
    "DuplicateSuspected": {
        "case_id": CASE_ID, "region_code": VILLAGE, "assistance_type": "dibao",
        "other_case_ids": ["case-320583-000000"], "reasons": ["open_application"],
        "suspected_at": "2026-03-02T09:30:00+08:00",
    },
    "DuplicateDecided": {
        "case_id": CASE_ID, "region_code": VILLAGE, "assistance_type": "dibao",
        "other_case_ids": ["case-320583-000000"], "decision": "withdraw",
        "reason": "该户已在另一乡镇申请低保，申请人同意撤回本申请", "decided_by": "caseworker-001",
        "decided_at": "2026-03-03T10:00:00+08:00",
    },
    "EmergencyReliefGranted": {
        "grant_id": "ER-0123456789ABCDEF0123", "case_id": CASE_ID, "region_code": VILLAGE,
        "township_code": TOWNSHIP, "amount_fen": 200000, "reason": "突发重病住院，急需医疗和生活费用",
        "approval_level": "township", "granted_by": "reviewer-001", "bank_account": BANK_ACCOUNT,
        "post_approval_due_date": "2026-03-09", "granted_at": "2026-03-02T10:00:00+08:00",
    },
    "EmergencyReliefPostApprovalDecided": {
        "grant_id": "ER-0123456789ABCDEF0123", "case_id": CASE_ID, "region_code": VILLAGE,
        "township_code": TOWNSHIP, "decision": "approved", "reason": "经补充核实，符合临时救助条件",
        "amount_fen": 200000, "decided_by": "reviewer-002", "decided_at": "2026-03-05T15:00:00+08:00",
    },
    # Finding households and referrals followed up (issue 11, intake and the partner simulator).
    "DiscoveryReported": {
        "report_id": "D-0123456789ABCDEF0123", "case_id": CASE_ID, "region_code": VILLAGE,
        "responsible_office": TOWNSHIP, "reporter_kind": "hospital", "reporter_organisation": "市人民医院",
        "person_name_masked": "张*", "id_number_masked": APPLICANT_ID[:6] + "*" * 8 + APPLICANT_ID[-4:],
        "urgency": "urgent", "rule_id": None, "record_ids": [], "contact_due_date": "2026-03-05",
        "reported_at": "2026-03-02T09:30:00+08:00",
    },
    "DiscoveryContacted": {
        "report_id": "D-0123456789ABCDEF0123", "case_id": CASE_ID, "region_code": VILLAGE,
        "outcome": "applying", "note": "已入户联系，协助申请", "contacted_at": "2026-03-03T10:00:00+08:00",
    },
    "LifeEventReported": {
        "record_id": "MEDI-0123456789ABCDEF0123", "department": "medical_insurance", "kind": "medical_expense",
        "id_number": APPLICANT_ID, "name": "张三", "region_code": VILLAGE, "amount_fen": 2500000,
        "only_earner": None, "occurred_on": "2026-02-20", "reported_at": "2026-03-01T09:00:00+08:00",
    },
    "ReferralAnswered": {
        "referral_id": REFERRAL_ID, "case_id": CASE_ID, "department": "medical_insurance",
        "outcome": "resolved", "note": "已落实医疗救助", "answered_at": "2026-03-04T15:00:00+08:00",
    },
    "ReferralOutcomeRecorded": {
        "referral_id": REFERRAL_ID, "case_id": CASE_ID, "target": "medical_insurance", "outcome": "resolved",
        "note": "已落实医疗救助", "answered_by": "department", "due_date": "2026-03-09", "late": False,
        "recorded_at": "2026-03-04T15:00:01+08:00",
    },
    "ObjectionReceived": {
        "objection_id": "OBJ-000001", "case_id": CASE_ID, "public_notice_id": "pn-000001",
        "village_code": VILLAGE, "text": "该户家中新购轿车一辆，与公示情况不符。", "contact": None,
        "received_at": "2026-03-12T10:15:00+08:00",
    },
    "DeadlineWarning": {
        "deadline_id": f"{CASE_ID}/household_survey", "case_id": CASE_ID, "clock": "household_survey",
        "label_zh": "入户调查", "region_code": VILLAGE, "responsible_office": TOWNSHIP,
        "due_date": "2026-03-05", "due_at": "2026-03-06T00:00:00+08:00",
        "warned_at": "2026-03-05T00:00:01+08:00",
    },
    "DeadlineBreached": {
        "deadline_id": f"{CASE_ID}/household_survey", "case_id": CASE_ID, "clock": "household_survey",
        "label_zh": "入户调查", "region_code": VILLAGE, "responsible_office": TOWNSHIP,
        "due_date": "2026-03-05", "due_at": "2026-03-06T00:00:00+08:00",
        "breached_at": "2026-03-06T00:00:01+08:00",
        "escalated_to": {"office": "320583", "level": "county"},
    },
}

# The superseded wire formats, as still found in old logs and topics.
# v6 added the household's mobile number (contact), read as null from older versions.
APPLICATION_SUBMITTED_V5: dict[str, Any] = {
    k: v for k, v in EXAMPLES["ApplicationSubmitted"].items() if k != "contact"
}
# v5 masks the account number as its first four and last four digits; v4 and v3 masked all but
# the last four, and upcast unchanged (the digits are gone), so they read with that older form.
APPLICATION_SUBMITTED_V4: dict[str, Any] = {
    **APPLICATION_SUBMITTED_V5,
    "bank_account_ref": "RCC:***************0001", "bank_account": BANK_ACCOUNT_MASKED_BEFORE_V5,
}
# A v4 application read at the current version: as it was, nobody's mobile number known.
APPLICATION_SUBMITTED_V4_AS_CURRENT: dict[str, Any] = {**APPLICATION_SUBMITTED_V4, "contact": None}
# v4 added each member's declared cadre relation (备案), read as null from older versions.
MEMBER_V4_ADDITIONS = ("cadre_relation",)
APPLICATION_SUBMITTED_V3: dict[str, Any] = {
    **APPLICATION_SUBMITTED_V4,
    "members": [
        {k: v for k, v in m.items() if k not in MEMBER_V4_ADDITIONS}
        for m in APPLICATION_SUBMITTED_V4["members"]
    ],
}
# What v3 added, with the values an older application is read with.
V3_ADDITIONS = ("declared_medical_expense_fen", "declared_education_expense_fen",
                "requested_amount_fen", "single_person_member_id", "bank_account")
MEMBER_V3_ADDITIONS = ("co_resident", "support_obligor", "support_paid_fen")
APPLICATION_SUBMITTED_V2: dict[str, Any] = {
    k: v for k, v in APPLICATION_SUBMITTED_V3.items() if k not in V3_ADDITIONS
}
APPLICATION_SUBMITTED_V2["members"] = [
    {k: v for k, v in m.items() if k not in MEMBER_V3_ADDITIONS}
    for m in APPLICATION_SUBMITTED_V3["members"]
]
APPLICATION_SUBMITTED_V2["bank_account_ref"] = "acct-ref-0001"
APPLICATION_SUBMITTED_V1: dict[str, Any] = {
    k: v for k, v in APPLICATION_SUBMITTED_V2.items()
    if k not in ("urgency", "declared_monthly_income_fen")
}
APPLICATION_SUBMITTED_V1.update({"urgent": True, "declared_income_fen": 150000})
# A v1 application read at the current version: the example with v3's and v4's defaults.
APPLICATION_SUBMITTED_V1_AS_CURRENT: dict[str, Any] = {
    **EXAMPLES["ApplicationSubmitted"],
    "bank_account_ref": "acct-ref-0001", "bank_account": None, "contact": None,
}

# BenefitApproved v3 masks the account number as v5 of ApplicationSubmitted does; v2 as v4 did.
BENEFIT_APPROVED_V2: dict[str, Any] = {
    **EXAMPLES["BenefitApproved"],
    "bank_account_ref": "RCC:***************0001", "bank_account": BANK_ACCOUNT_MASKED_BEFORE_V5,
}

# Subject of each example's envelope (the case id, the fund id for funds, the record id for deaths).
SUBJECTS: dict[str, str] = {name: data.get("case_id", "") for name, data in EXAMPLES.items()}
for _name in ("FundRegistered", "DonationReceived", "FundAllocated", "AllocationReleased", "AllocationDisbursed"):
    SUBJECTS[_name] = EXAMPLES[_name]["fund_id"]  # a fund's events are keyed by the fund
SUBJECTS["ProviderRegistered"] = EXAMPLES["ProviderRegistered"]["provider_id"]
SUBJECTS["DeathReported"] = EXAMPLES["DeathReported"]["record_id"]
SUBJECTS["LifeEventReported"] = EXAMPLES["LifeEventReported"]["record_id"]
for _name in ("PaymentRunStarted", "BankBatchSubmitted", "PaymentRunCompleted", "ReconciliationCompleted"):
    SUBJECTS[_name] = EXAMPLES[_name]["run_id"]  # a run's events are keyed by the run
SUBJECTS["MonthlyStatisticsPublished"] = EXAMPLES["MonthlyStatisticsPublished"]["statistics_id"]
SUBJECTS["LogSealed"] = EXAMPLES["LogSealed"]["service"]  # a log's seals are keyed by its service

ACTOR = {"user_id": "clerk-001", "role": "clerk", "org_code": TOWNSHIP}


def example(name: str, **overrides: Any) -> dict[str, Any]:
    """A deep copy of the example for ``name`` with top-level fields overridden."""
    data = copy.deepcopy(EXAMPLES[name])
    data.update(overrides)
    return data
