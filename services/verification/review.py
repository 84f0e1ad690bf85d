"""Dynamic management (动态管理): review cycles and grace periods before stopping (渐退/延退).

Sources (seed 002):
- 审核确认 §7 动态管理: 对短期内经济状况变化不大的低保、特困家庭，每年核查1次；对收入来源不固定、
  家庭成员有劳动能力的低保家庭，每半年核查1次。
- 年审 §(一)2 七是 延退机制: 已领取养老保险金、家庭月人均收入在低保标准1倍以上2倍以下 → 6个月；
  高中或者大学毕业后实现就业 → 6至12个月；公共服务机构推荐就业的就业困难家庭 → 2年；
  公共就业服务机构推荐就业的残疾对象 → 3年；受疫情影响较大 → 3至6个月。
"""
from __future__ import annotations

import calendar as _cal
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Literal

from lifeline.rules.periods import add_periods, business_date, next_period, period_of
from services.verification.assessment import Assessment, DepartmentRecord, Household, Member
from lifeline.rules.policy import CountyPolicy, ReviewPolicy

GraceReason = Literal["pensioner", "graduate_employed", "public_employment",
                      "disabled_employment", "epidemic"]
GRACE_REASONS: tuple[str, ...] = ("pensioner", "graduate_employed", "public_employment",
                                  "disabled_employment", "epidemic")


def _review_policy(policy: CountyPolicy | ReviewPolicy | None) -> ReviewPolicy:
    if policy is None:
        return ReviewPolicy()
    return policy.review if isinstance(policy, CountyPolicy) else policy


@dataclass(frozen=True)
class ReviewCycle:
    months: int
    code: Literal["REVIEW_ANNUAL", "REVIEW_HALF_YEARLY"]
    message_zh: str


def review_cycle(household: Household, *, income_irregular: bool,
                 policy: CountyPolicy | ReviewPolicy | None = None) -> ReviewCycle:
    """Half-yearly when income is irregular *and* a counted member can work; otherwise annual."""
    rp = _review_policy(policy)
    can_work = any(m.counted and m.work_ability in ("full", "partial") for m in household.members)
    if income_irregular and can_work:
        return ReviewCycle(rp.irregular_months, "REVIEW_HALF_YEARLY",
                           "收入来源不固定、家庭成员有劳动能力，每半年核查1次")
    return ReviewCycle(rp.stable_months, "REVIEW_ANNUAL", "经济状况变化不大，每年核查1次")


def add_months(d: date, months: int) -> date:
    """Same day ``months`` later, clamped to the month's end (31 Jan + 1 → 28/29 Feb)."""
    index = d.year * 12 + d.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return date(year, month, min(d.day, _cal.monthrange(year, month)[1]))


def next_review_date(last_review: date, cycle: ReviewCycle | int, exempt_until: date | None = None) -> date:
    """`last_review` + the cycle, or the day after an income exemption ends when that is sooner:
    the earnings left out of the test until then are counted at the next review (就业收入豁免期满)."""
    months = cycle.months if isinstance(cycle, ReviewCycle) else cycle
    due = add_months(last_review, months)
    if exempt_until is not None and exempt_until >= last_review:
        due = min(due, exempt_until + timedelta(days=1))
    return due


@dataclass(frozen=True)
class GraceDecision:
    reason: str
    granted: bool
    months: int
    code: str
    message_zh: str
    figures: dict[str, int | str] = field(default_factory=dict)


def _ranged_grace(rp: ReviewPolicy, reason: str, months: int | None, code: str,
                  message_zh: str) -> GraceDecision:
    """A grace whose length the officer chooses within the policy's range (default if unsaid)."""
    lo, hi = getattr(rp, f"{reason}_min_months"), getattr(rp, f"{reason}_max_months")
    chosen = getattr(rp, f"{reason}_default_months") if months is None else months
    _in_range(chosen, lo, hi, reason)
    return GraceDecision(reason, True, chosen, code, message_zh,
                         {"months": chosen, "min_months": lo, "max_months": hi})


def grace_period(reason: GraceReason, *, policy: CountyPolicy | ReviewPolicy | None = None,
                 per_capita_income_fen: int | None = None, standard_fen: int | None = None,
                 months: int | None = None) -> GraceDecision:
    """How many months of continued payment (延退期) a household gets before it stops.

    ``months`` chooses within a configured range (graduate 6-12, epidemic 3-6); outside the
    range is refused. The pensioner rule needs the household's per-capita income and standard.
    """
    rp = _review_policy(policy)
    if reason == "pensioner":
        if per_capita_income_fen is None or standard_fen is None:
            raise ValueError("pensioner grace needs per_capita_income_fen and standard_fen")
        upper = rp.pensioner_upper_multiple * standard_fen
        figs: dict[str, int | str] = {"per_capita_income_fen": per_capita_income_fen,
                                      "standard_fen": standard_fen,
                                      "upper_fen": int(upper)}
        # 1倍以上2倍以下: both ends included (民法典第1259条: 以上、以下包括本数).
        if standard_fen <= per_capita_income_fen and Fraction(per_capita_income_fen) <= upper:
            return GraceDecision(reason, True, rp.pensioner_months, "GRACE_PENSIONER",
                                 "已领取养老保险金，家庭月人均收入在低保标准1倍以上2倍以下，给予延退期",
                                 {**figs, "months": rp.pensioner_months})
        code = "STILL_BELOW_STANDARD" if per_capita_income_fen < standard_fen else "ABOVE_GRACE_BAND"
        return GraceDecision(reason, False, 0, code,
                             "家庭月人均收入不在低保标准1倍以上2倍以下，不适用养老金延退", figs)
    if reason == "graduate_employed":
        return _ranged_grace(rp, reason, months, "GRACE_GRADUATE_EMPLOYED",
                             "共同生活的家庭成员高中或者大学毕业后实现就业，给予延退期")
    if reason == "public_employment":
        return GraceDecision(reason, True, rp.public_employment_months, "GRACE_PUBLIC_EMPLOYMENT",
                             "公共服务机构推荐就业的就业困难家庭，就业稳定后给予延退期",
                             {"months": rp.public_employment_months})
    if reason == "disabled_employment":
        return GraceDecision(reason, True, rp.disabled_employment_months,
                             "GRACE_DISABLED_EMPLOYMENT",
                             "公共就业服务机构推荐就业的残疾对象，就业稳定后给予延退期",
                             {"months": rp.disabled_employment_months})
    if reason == "epidemic":
        return _ranged_grace(rp, reason, months, "GRACE_EPIDEMIC", "受疫情影响较大，视情给予延退期")
    raise ValueError(f"unknown grace reason {reason!r}; expected one of {GRACE_REASONS}")


def _in_range(value: int, lo: int, hi: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} grace must be between {lo} and {hi} months, got {value!r}")


def first_unpaid_period(decided_at: datetime, grace_months: int = 0) -> str:
    """The first period not paid after a termination/suspension decision.

    Mirrors "payment starts the month after approval": the month of the decision is still paid,
    payment stops from the next month, and a grace period of ``g`` months pushes that ``g``
    periods further (decision 2026-03-15 → 2026-04; with 6 months' grace → 2026-10).
    """
    if grace_months < 0:
        raise ValueError("grace_months must be >= 0")
    return add_periods(next_period(period_of(business_date(decided_at))), grace_months)


def last_paid_period(decided_at: datetime, grace_months: int = 0) -> str:
    return add_periods(first_unpaid_period(decided_at, grace_months), -1)


# --------------------------------------------------------------------------------------------
# Reviews (issue 11): who reviews how often, and what a review ends in
# --------------------------------------------------------------------------------------------
# What a review ends in (ReviewCompleted.outcome).
REVIEW_OUTCOMES: tuple[str, ...] = ("no_change", "adjusted", "suspended", "terminated", "grace")
# 虚报、隐瞒、伪造 (FraudRecorded.fraud_kinds).
FRAUD_KINDS: tuple[str, ...] = ("false_report", "concealment", "forgery")
# Judgement: a counted member of this age or more whose income the human-resources and
# social-security department (人社, which pays pensions) reports is taken to draw a pension
# (已领取养老保险金); the statutory retirement age of men, the highest one.
PENSION_AGE = 60


def _rows_by_person(record: DepartmentRecord | None) -> dict[str, int]:
    """A department's monthly income per person (ID number as the assessment spells it)."""
    out: dict[str, int] = {}
    for row in (record.members if record is not None else ()):
        key = str(row["id_number"]).strip().upper()
        out[key] = out.get(key, 0) + int(row.get("monthly_income_fen", 0) or 0)
    return out


def income_irregular(household: Household, records: dict[str, DepartmentRecord]) -> bool:
    """收入来源不固定, from the check's records (judgement, docs/PROCEDURE.md): no counted member
    has a wage or a pension the human-resources department (人社, `hrss`) records, or the
    household declared more income than that department records (income from odd jobs,
    farming or informal work, which no department sees)."""
    recorded = _rows_by_person(records.get("hrss"))
    total = sum(recorded.get(m.id_number, 0) for m in household.members if m.counted)
    return total == 0 or household.declared_monthly_income_fen > total


def household_review_cycle(household: Household, records: dict[str, DepartmentRecord],
                           policy: CountyPolicy | ReviewPolicy | None = None) -> ReviewCycle:
    """The cycle of an approved monthly household: half-yearly for a 低保 household whose income
    is irregular and one of whose counted members can work, annual otherwise (特困 always:
    the seed names 低保 households only for the half-yearly check)."""
    irregular = household.assistance_type == "dibao" and income_irregular(household, records)
    return review_cycle(household, income_irregular=irregular, policy=policy)


def pensioners(household: Household, records: dict[str, DepartmentRecord], on: date) -> list[Member]:
    """Counted members taken to draw a pension: PENSION_AGE or older on `on`, with income
    the human-resources department (人社) reports."""
    recorded = _rows_by_person(records.get("hrss"))
    return [m for m in household.members if m.counted and recorded.get(m.id_number, 0) > 0
            and (m.age_on(on) or 0) >= PENSION_AGE]


def grace_months_range(reason: str, policy: CountyPolicy | ReviewPolicy | None = None) -> tuple[int, int]:
    """The months a caseworker may name for a grace reason (one value where the policy fixes it)."""
    rp = _review_policy(policy)
    if reason in ("graduate_employed", "epidemic"):
        return getattr(rp, f"{reason}_min_months"), getattr(rp, f"{reason}_max_months")
    if reason not in GRACE_REASONS:
        raise ValueError(f"unknown grace reason {reason!r}; expected one of {GRACE_REASONS}")
    fixed = getattr(rp, f"{reason}_months")
    return fixed, fixed


@dataclass(frozen=True)
class ReviewResult:
    """What a review's assessment means for the benefit: the outcome, the new amount (adjusted
    only), the first period the change applies to (None: no change), the grace granted."""

    outcome: str
    code: str
    message_zh: str
    monthly_amount_fen: int | None = None
    from_period: str | None = None
    grace: dict[str, int | str] | None = None


def review_outcome(assessment: Assessment, *, current_amount_fen: int, standard_fen: int,
                   decided_at: datetime, policy: CountyPolicy | ReviewPolicy | None = None,
                   grace_reason: str | None = None, grace_months: int | None = None,
                   pensioner: bool = False) -> ReviewResult:
    """The outcome of a review on the records it asked for again (`assessment`, by the rules
    in force on the review's completion).

    - Still eligible: the new amount from the next period (adjusted), or no change when it is
      the amount in force.
    - Income at or above the standard (`standard_fen`, the 低保标准 of the household's area) with
      assets within the limit, and a grace reason: the one the caseworker named, or a pensioner
      (`pensioner`: computed from the records) whose household lies between 1 and 2 times the
      standard: the benefit goes on for the grace months, then stops (first_unpaid_period).
    - Otherwise not eligible any more: it stops from the next period.
    A check that could not conclude (a department missing) changes nothing.
    """
    if assessment.outcome == "needs_appraisal":
        return ReviewResult("no_change", "REVIEW_INCONCLUSIVE", "核对数据不全，维持原待遇")
    if assessment.outcome == "eligible" and assessment.monthly_amount_fen > 0:
        amount = assessment.monthly_amount_fen
        if amount == current_amount_fen:
            return ReviewResult("no_change", "REVIEW_NO_CHANGE", "经复核家庭经济状况无变化，维持原保障金")
        return ReviewResult("adjusted", "REVIEW_ADJUSTED",
                            f"经复核家庭经济状况变化，保障金由{current_amount_fen}分调整为{amount}分",
                            amount, first_unpaid_period(decided_at))
    pci = assessment.per_capita_income_fen
    income_above = pci >= standard_fen and assessment.assets_within_limit
    reason = grace_reason or ("pensioner" if pensioner else None)
    if income_above and reason is not None:
        decision = grace_period(reason, policy=policy, per_capita_income_fen=pci, standard_fen=standard_fen,
                                months=grace_months if reason in ("graduate_employed", "epidemic") else None)
        if decision.granted and decision.months > 0:
            return ReviewResult(
                "grace", decision.code, decision.message_zh + f"（{decision.months}个月）", None,
                first_unpaid_period(decided_at, decision.months),
                {"reason": reason, "months": decision.months,
                 "last_paid_period": last_paid_period(decided_at, decision.months)})
    return ReviewResult("terminated", "REVIEW_NO_LONGER_ELIGIBLE", "经复核不再符合保障条件，停发",
                        None, first_unpaid_period(decided_at))
