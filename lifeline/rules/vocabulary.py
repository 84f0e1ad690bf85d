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
