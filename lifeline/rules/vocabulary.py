"""The contract's closed vocabularies, defined once (SPEC §3).

API models, value objects, rules and JSON Schemas use these names; a test checks
that every schema enum of the same name lists exactly these values.
"""

from __future__ import annotations

from lifeline.rules.departments import DEPARTMENTS

ASSISTANCE_TYPES = ("dibao", "tekun", "linshi_jinan", "linshi_zhichu", "low_income")
# 临时救助 is paid once; 低收入家庭认定 is a recognition without money.
ONE_OFF_TYPES = ("linshi_jinan", "linshi_zhichu")
CHANNELS = ("window", "online", "hotline", "proxy", "discovery")
URGENCIES = ("normal", "urgent", "critical")
AREAS = ("urban", "rural")
RELATIONS = ("self", "spouse", "child", "parent", "sibling", "grandparent", "grandchild", "other")
WORK_ABILITY = ("full", "partial", "none")
DISABILITY_KINDS = ("physical", "intellectual", "mental", "visual", "hearing", "speech", "multiple")
NEED_CATEGORIES = (
    "medical", "education", "housing", "employment", "living", "disaster", "care", "psychological",
)
REFERRAL_TARGETS = ("charity", *DEPARTMENTS)
# Banks and credit unions that take disbursement batches (社会化发放), by the code used
# in bank files; the names are what notices print.
BANK_CHANNELS: dict[str, str] = {
    "ICBC": "中国工商银行",
    "ABC": "中国农业银行",
    "BOC": "中国银行",
    "CCB": "中国建设银行",
    "BOCOM": "交通银行",
    "PSBC": "中国邮政储蓄银行",
    "RCC": "农村信用合作社",
}
# What an approval gives (Benefit.kind): money every month, money once, or a recognition
# (低收入家庭认定) without money; and who may approve it (graded approval).
BENEFIT_KINDS = ("monthly", "one_off", "recognition")
APPROVAL_LEVELS = ("township", "county")
# Where one-off relief is paid from.
FUND_SOURCES = ("temporary_relief_budget", "township_reserve_fund")
# Where a monthly benefit is paid from, by benefit type: the county budgets each per period.
MONTHLY_FUND_SOURCES: dict[str, str] = {"dibao": "dibao_fund", "tekun": "tekun_fund"}
# Where a provider is paid from for a confirmed delivery of a service or goods (issue 17).
SERVICE_PURCHASE_FUND = "service_purchase"
# Every fund source a payment is charged to, and so a budget is set for (POST /v1/budgets).
PAYMENT_FUND_SOURCES = (*MONTHLY_FUND_SOURCES.values(), *FUND_SOURCES, SERVICE_PURCHASE_FUND)
# Where a payment stands: instructed in a bank file; settled (booked on the statement);
# returned by the bank and held until the account is corrected; released again.
PAYMENT_STATUSES = ("instructed", "settled", "returned")
# A payment run's steps (PaymentRun.status).
PAYMENT_RUN_STATUSES = ("started", "awaiting_approval", "instructing", "instructed", "completed")
# 一证一书: the only materials an applicant may ever be asked for (everything else is obtained
# by data sharing), by the code used in MaterialsRequested; the names are what notices print.
REQUIRED_MATERIALS: dict[str, str] = {
    "resident_id": "居民身份证",
    "authorisation": "家庭经济状况核对授权书",
}
# The procedure (审核确认): who sits on a household survey (one must be a village-based cadre,
# 驻村干部), what an initial review proposes, and how a deadline ends.
SURVEYOR_ROLES = ("village_cadre", "township_staff", "village_committee", "other")
PROPOSALS = ("include", "refuse")
DEADLINE_OUTCOMES = ("met", "late", "cancelled")
# One person, one file per benefit (issue 11): why an application is held as a suspected
# duplicate, and how the hold is decided.
DUPLICATE_REASONS = ("covered", "open_application")
DUPLICATE_DECISIONS = ("proceed", "withdraw")
# The emergency green channel (issue 11): the post-approval (后置审批) of a grant, and where a
# grant stands.
POST_APPROVAL_DECISIONS = ("approved", "refused")
EMERGENCY_GRANT_STATES = ("granted", "post_approved", "post_approval_refused")
# Where an overdue case is escalated (督办): the office above the responsible one.
ESCALATION_LEVELS = ("county", "prefecture", "province")
# How a written notice reaches the household (notify): SMS through the gateway, a printed
# letter, and the case's inbox (in-app); and where its delivery on a channel stands.
NOTICE_CHANNELS = ("sms", "letter", "in_app")
DELIVERY_STATES = ("pending", "delivered", "failed")
# Finding (issue 11): who reports a person in trouble (主动发现; `monitoring` is a risk rule
# that fired on partner records), what the office's contact found, the partner records dynamic
# monitoring matches, and how a referral (转介) is answered and where it stands.
DISCOVERY_REPORTERS = ("grid_worker", "village_committee", "hospital", "school", "police", "hotline",
                       "caseworker", "clerk", "monitoring")
DISCOVERY_CONTACT_OUTCOMES = ("applying", "declined", "not_found", "already_covered")
DISCOVERY_STATES = ("discovered", "contacted", "applied")
LIFE_EVENT_KINDS = ("medical_expense", "unemployment_registered", "disaster_loss")
REFERRAL_OUTCOMES = ("accepted", "resolved", "declined", "not_ours")
REFERRAL_STATES = ("raised", "overdue", "answered")
REFERRAL_ANSWERED_BY = ("department", "clerk")
# Grievances (异议、申诉): what is contested, how it ends, and on which evidence an upheld one
# has the decision taken again.
GRIEVANCE_SUBJECTS = ("verification_result", "refusal", "adjustment")
GRIEVANCE_CHANNELS = ("window", "board")
GRIEVANCE_OUTCOMES = ("upheld", "dismissed")
REDECISION_EVIDENCE = ("original", "new")
# 备案: a member who is a cadre (村/社区/乡镇干部) himself or a close relative (近亲属) of one.
CADRE_RELATIONS = ("cadre", "close_relative")
# After approval (动态管理): how a monthly benefit changes from a period on, and where it stands.
BENEFIT_CHANGES = ("adjust", "suspend", "resume", "terminate")
BENEFIT_STATUSES = ("paying", "suspended", "terminated")
# 资金+实物+服务 (issue 17): services bought from registered providers (seed 002: 走访探视、照料护理、
# 康复训练、送医陪护、社会融入、能力提升、心理疏导) and goods given in kind, each ordered in a unit the
# provider prices.
SERVICES_BOUGHT = ("visit", "care", "rehabilitation", "hospital_escort", "social_integration", "skills",
                   "psychological_support")
IN_KIND_ITEMS = ("food", "clothing", "bedding", "fuel", "medicine")
SERVICE_KINDS = (*SERVICES_BOUGHT, *IN_KIND_ITEMS)
SERVICE_UNITS = ("hour", "session", "visit", "day", "piece", "set", "kg", "box")
# Charity (issue 12): the household types funds name (temporary assistance counts as none), the
# kinds of fund, the criteria a match names, and who met a need.
HOUSEHOLD_TYPES = ("dibao", "tekun", "low_income", "none")
FUND_KINDS = ("special", "named", "project")
FUND_CRITERIA = ("need_category", "region", "household_type", "validity")
FULFILLED_BY = ("funds", "federation")
