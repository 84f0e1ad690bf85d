"""Household economic assessment and benefit amounts — pure functions, no I/O.

Every figure is integer fen. Comparisons with multiplied standards use exact fractions.

Rounding rule (the only place a division happens): per-capita income is the household's monthly
net income divided by the counted members, **rounded down to whole fen** (in the household's
favour, by less than 1 fen per person). Amounts are then computed from that per-capita figure,
``(standard − per-capita income) × members``, so an officer can re-do every amount by hand.
Eligibility tests use the exact totals (``total < standard × members``), which for an integer
standard gives the same answer as comparing the rounded-down per-capita income.

Work incentives (issue 17, seed 002 就业成本抵扣、收入豁免) come before the per-capita division: a
share-of-earnings deduction is rounded **up** to whole fen (again in the household's favour).
"""
from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any, Iterable, Literal, Mapping

from lifeline.domain.values import Household, Member
from lifeline.domain.values import fen as _fen
from lifeline.rules.departments import DEPARTMENTS
from lifeline.rules.ids import mask_resident_id
from lifeline.rules.periods import business_date
from lifeline.rules.regions import county_of
from lifeline.rules.policy import CountyPolicy, PolicyError, ratio_text

Outcome = Literal["eligible", "ineligible", "needs_appraisal"]
RECORD_FIELDS = ("monthly_income_fen", "income_tax_fen", "social_insurance_fen", "assets_fen",
                 "medical_expense_fen", "education_expense_fen")
# 人社 (hrss) only: the day the person's current registered employment began (就业登记), YYYY-MM-DD.
# The income such a row reports is earned income (wages), the base of the work incentives.
EMPLOYED_SINCE = "employed_since"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DepartmentRecord:
    """One department's answer: per-person monthly figures in fen (missing keys are 0).

    ``status`` other than ``answered`` (e.g. ``unavailable``) means the department did not
    answer: it is reported missing, never read as zero.
    """

    department: str
    members: tuple[Mapping[str, Any], ...] = ()
    status: str = "answered"

    def __post_init__(self) -> None:
        if self.department not in DEPARTMENTS:
            raise ValueError(f"unknown department code {self.department!r}")
        # null: the department answered but holds no such record for this person,
        # the same as an absent key. (A department that did not answer has no
        # DepartmentRecord at all and is reported missing.)
        rows = tuple({k: v for k, v in r.items() if v is not None} for r in self.members)
        for row in rows:
            if "id_number" not in row:
                raise ValueError(f"{self.department}: every row needs an id_number")
            for key, value in row.items():
                if key == "id_number":
                    continue
                if key in RECORD_FIELDS:
                    _fen(value, f"{self.department}.{key}")
                elif key == EMPLOYED_SINCE:
                    _employment_date(value, f"{self.department}.{key}")
                elif key.endswith("_fen"):
                    # a money figure we do not know how to treat must not be dropped silently
                    raise ValueError(f"{self.department}: unknown figure {key!r}")
                # other keys (names, source references) are descriptive and ignored
        object.__setattr__(self, "members", rows)

    @property
    def answered(self) -> bool:
        return self.status == "answered"


def _employment_date(value: Any, what: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a date YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class Reason:
    code: str
    rule: str
    message_zh: str
    figures: dict[str, int | str] = field(default_factory=dict)
    severity: Literal["info", "warning", "blocking"] = "info"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "rule": self.rule, "message_zh": self.message_zh,
                "figures": dict(self.figures), "severity": self.severity}


@dataclass(frozen=True)
class Assessment:
    outcome: Outcome
    recommended_assistance_type: str | None
    tier: str | None
    monthly_amount_fen: int
    standard_applied_fen: int
    per_capita_income_fen: int
    household_size: int
    assets_total_fen: int
    departments_answered: tuple[str, ...]
    departments_missing: tuple[str, ...]
    reasons: tuple[Reason, ...]
    assistance_type: str = "dibao"
    one_off_amount_fen: int = 0
    approval_level: str | None = None
    county_code: str = ""
    policy_effective_from: date | None = None
    decision_date: date | None = None
    assets_within_limit: bool = True
    asset_limit_total_fen: int = 0
    # 收入豁免: the last day a member's new earnings are left out (the earliest, when several are)
    earnings_exempt_until: date | None = None

    @property
    def warnings(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == "warning")

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "assistance_type": self.assistance_type,
            "recommended_assistance_type": self.recommended_assistance_type,
            "tier": self.tier,
            "monthly_amount_fen": self.monthly_amount_fen,
            "one_off_amount_fen": self.one_off_amount_fen,
            "approval_level": self.approval_level,
            "standard_applied_fen": self.standard_applied_fen,
            "per_capita_income_fen": self.per_capita_income_fen,
            "household_size": self.household_size,
            "assets_total_fen": self.assets_total_fen,
            "assets_within_limit": self.assets_within_limit,
            "asset_limit_total_fen": self.asset_limit_total_fen,
            "earnings_exempt_until": (self.earnings_exempt_until.isoformat()
                                      if self.earnings_exempt_until else None),
            "departments_answered": list(self.departments_answered),
            "departments_missing": list(self.departments_missing),
            "county_code": self.county_code,
            "policy_effective_from": (self.policy_effective_from.isoformat()
                                      if self.policy_effective_from else None),
            "decision_date": self.decision_date.isoformat() if self.decision_date else None,
            "reasons": [r.to_dict() for r in self.reasons],
            "warnings": [r.to_dict() for r in self.warnings],
        }


# --------------------------------------------------------------------------------------------
# Amount rules
# --------------------------------------------------------------------------------------------
def per_capita_income(total_fen: int, members: int) -> int:
    """Household monthly net income ÷ counted members, rounded down to whole fen."""
    _fen(total_fen, "total income")
    if members < 1:
        raise ValueError("members must be >= 1")
    return total_fen // members


def gap_payment(standard_fen: int, per_capita_income_fen: int, members: int) -> int:
    """补差 = (standard − per-capita income) × members; 0 when income reaches the standard."""
    _fen(standard_fen, "standard_fen")
    _fen(per_capita_income_fen, "per_capita_income_fen")
    if not isinstance(members, int) or members < 1:
        raise ValueError("members must be a positive integer")
    return max(0, standard_fen - per_capita_income_fen) * members


@dataclass(frozen=True)
class Amount:
    monthly_fen: int
    tier: str
    per_capita_fen: int
    gap_per_capita_fen: int
    topped_up: bool


def monthly_amount(policy: CountyPolicy, area: str, per_capita_income_fen: int, members: int,
                   *, full_class: bool = False) -> Amount:
    """The 低保 monthly amount for an eligible unit.

    1. class A (全额保障) is paid the whole standard per person;
    2. otherwise the per-person payment is the gap (``gap``) or the tier amount (``tiers``), the
       tier being the band the gap falls in (edges inclusive, seed 002 分档不少于三档);
    3. raised to the minimum per-capita top-up (月人均补差不低于…);
    4. never above the standard per person, never negative. Income at or above the standard
       gives 0 (the unit is not eligible).
    """
    standard = policy.standard_for(area)  # type: ignore[arg-type]
    gap_pc = max(0, standard - per_capita_income_fen)
    if members < 1:
        raise ValueError("members must be >= 1")
    if gap_pc == 0:
        return Amount(0, "", 0, 0, False)
    full = policy.full_tier
    if full_class and full is not None:
        return Amount(standard * members, full.code, standard, gap_pc, False)
    tier = policy.tier_for_gap(gap_pc, standard)
    per_capita = gap_pc if policy.payment_method == "gap" else tier.amount_for(area)  # type: ignore[arg-type]
    floor = policy.min_top_up_for(area)  # type: ignore[arg-type]
    topped = per_capita < floor
    per_capita = min(max(per_capita, floor), standard)
    return Amount(per_capita * members, tier.code, per_capita, gap_pc, topped)


def approval_level(amount_fen: int, policy: CountyPolicy) -> str:
    """Emergency relief: township up to its cap (inclusive), county above."""
    return "township" if amount_fen <= policy.emergency.township_cap_fen else "county"


# --------------------------------------------------------------------------------------------
# Assessment
# --------------------------------------------------------------------------------------------
class _Figures(dict[str, int]):
    """A person's (or the household's) monthly figures in fen, by record field."""

    def __missing__(self, key: str) -> int:
        return 0

    def add(self, row: Mapping[str, Any]) -> None:
        for key in RECORD_FIELDS:
            self[key] += row.get(key, 0)

    @property
    def net(self) -> int:
        return self["monthly_income_fen"] - self["income_tax_fen"] - self["social_insurance_fen"]


def _sum(figs: Iterable[_Figures]) -> _Figures:
    total = _Figures()
    for f in figs:
        total.add(f)
    return total


def _masked(members: Iterable[Member]) -> str:
    return ",".join(mask_resident_id(m.id_number) for m in members)


def decision_day(decision_date: date | datetime) -> date:
    """The business date of a decision: a moment is read in Asia/Shanghai (an approval at
    23:30 Beijing time on 31 December is a December decision, although it is 15:30 UTC), a
    plain date is taken as it is. Naive datetimes are refused."""
    if isinstance(decision_date, datetime):
        return business_date(decision_date)
    if not isinstance(decision_date, date):
        raise TypeError(f"decision_date must be a date or an aware datetime, "
                        f"got {type(decision_date).__name__}")
    return decision_date


def assess(household: Household, records: Mapping[str, DepartmentRecord], policy: CountyPolicy,
           decision_date: date | datetime) -> Assessment:
    """Assess a household against the policy in force on ``decision_date`` (a date, or an
    aware moment read in Asia/Shanghai)."""
    decision_date = decision_day(decision_date)
    _check_policy(household, policy, decision_date)
    kind = household.assistance_type
    reasons: list[Reason] = []
    area = household.area
    standard = policy.standard_for(area)

    counted, obligors = _who_counts(household, reasons)
    answered, missing, per_person = _department_figures(household, records, policy, reasons)
    fam = _sum(per_person[m.id_number] for m in counted)
    work = _work_incentives(policy, decision_date, _earners(counted, records, answered), per_person)
    income_total = _income_used(household, policy, standard, fam, obligors, per_person, work, reasons)
    assets_total, asset_limit_total, assets_ok = _assets(household, policy, fam, len(counted), reasons)

    n = len(counted)
    pci = per_capita_income(income_total, n)
    low_line_total = policy.low_income_multiplier * standard * n   # exact Fraction
    below_standard = income_total < standard * n                 # 低于低保标准 (strict)
    within_low = Fraction(income_total) <= low_line_total         # 1.5倍以内 (incl., 民法典1259条)
    figs_std = {"per_capita_income_fen": pci, "standard_fen": standard, "members": n,
                "income_used_fen": income_total,
                "low_income_multiplier": ratio_text(policy.low_income_multiplier),
                "low_income_line_fen": int(policy.low_income_multiplier * standard)}

    ctx = _Ctx(household, policy, decision_date, reasons, standard, area, work.reductions)
    if kind == "dibao":
        result = _dibao(ctx, counted, per_person, pci, n, below_standard, within_low, assets_ok,
                        figs_std)
    elif kind == "tekun":
        result = _tekun(ctx, counted, obligors, pci, n, below_standard, within_low, assets_ok,
                        figs_std)
    elif kind == "low_income":
        result = _low_income(ctx, counted, pci, n, below_standard, within_low, assets_ok,
                             figs_std)
    elif kind == "linshi_zhichu":
        result = _zhichu(ctx, fam, pci, n, income_total, within_low, assets_ok, figs_std)
    else:
        result = _jinan(ctx, pci, n, within_low, figs_std)

    outcome, recommended, tier, monthly, one_off, size, pci_out = result
    level = approval_level(one_off, policy) if one_off else None
    if missing:
        # Never eligible on an incomplete report; missing data is never read as zero.
        reasons.append(Reason(
            "DEPARTMENTS_MISSING", "verification.mandatory_departments",
            "以下必需部门核对数据缺失，不按零收入处理，需民主评议或补充核对："
            + "、".join(DEPARTMENTS[d] for d in missing),
            {"missing": ",".join(missing), "provisional_outcome": outcome,
             "provisional_monthly_amount_fen": monthly, "provisional_one_off_amount_fen": one_off},
            "blocking"))
        outcome, tier, monthly, one_off, level = "needs_appraisal", None, 0, 0, None

    return Assessment(
        outcome=outcome, recommended_assistance_type=recommended, tier=tier,
        monthly_amount_fen=monthly, standard_applied_fen=(
            policy.tekun_standard_fen if kind == "tekun" else standard),
        per_capita_income_fen=pci_out, household_size=size, assets_total_fen=assets_total,
        departments_answered=answered, departments_missing=missing, reasons=tuple(reasons),
        assistance_type=kind, one_off_amount_fen=one_off, approval_level=level,
        county_code=policy.county_code, policy_effective_from=policy.effective_from,
        decision_date=decision_date, assets_within_limit=assets_ok,
        asset_limit_total_fen=asset_limit_total, earnings_exempt_until=work.exempt_until)


def _check_policy(household: Household, policy: CountyPolicy, decision_date: date) -> None:
    if county_of(household.region_code) != policy.county_code:
        raise PolicyError(f"county_code: household region {household.region_code} is not in "
                          f"county {policy.county_code}", field="county_code")
    if policy.effective_from > decision_date:
        raise PolicyError(f"effective_from: policy of {policy.effective_from} is not in force on "
                          f"{decision_date}", field="effective_from")


def _who_counts(household: Household, reasons: list[Reason]) -> tuple[list[Member], list[Member]]:
    """Counted (co-resident) members, and legal supporters living apart."""
    counted = [m for m in household.members if m.counted]
    obligors = [m for m in household.members if not m.co_resident and m.support_obligor]
    if not counted:
        raise ValueError("a household needs at least one co-resident member")
    not_counted = [m for m in household.members if not m.counted]
    reasons.append(Reason(
        "MEMBERS_COUNTED", "household.members",
        f"共同生活家庭成员{len(counted)}人计入；非共同生活人员{len(not_counted)}人不计入人数",
        {"counted": len(counted), "not_counted": len(not_counted),
         "support_obligors": len(obligors)}))
    return counted, obligors


def _department_figures(
    household: Household, records: Mapping[str, DepartmentRecord], policy: CountyPolicy,
    reasons: list[Reason],
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, _Figures]]:
    """Departments answered and missing, and each person's figures from those that answered."""
    mandatory = policy.departments_for(household.assistance_type)
    answered = tuple(sorted(code for code, rec in records.items() if rec.answered))
    missing = tuple(d for d in mandatory if d not in answered)
    per_person: dict[str, _Figures] = {m.id_number: _Figures() for m in household.members}
    unknown_rows = 0
    for code in answered:
        for row in records[code].members:
            figs = per_person.get(str(row["id_number"]).strip().upper())
            if figs is None:
                unknown_rows += 1
                continue
            figs.add(row)
    if unknown_rows:
        reasons.append(Reason("RECORD_FOR_UNKNOWN_PERSON", "verification.records",
                              f"部门记录中有{unknown_rows}条不属于申请家庭成员，未计入",
                              {"rows": unknown_rows}, "warning"))
    return answered, missing, per_person


def _add_months(d: date, months: int) -> date:
    """Same day ``months`` later, clamped to the month's end (31 Aug + 6 → 28/29 Feb)."""
    index = d.year * 12 + d.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return date(year, month, min(d.day, _calendar.monthrange(year, month)[1]))


def _earners(counted: list[Member], records: Mapping[str, DepartmentRecord],
             answered: tuple[str, ...]) -> dict[str, tuple[int, date]]:
    """Counted members with earned income: what 人社 (hrss) reports in rows that carry a
    registered employment (``employed_since``), and the day the latest such employment began.
    Income in rows without one (pensions, unemployment benefit) is not earned income."""
    if "hrss" not in answered:
        return {}
    ids = {m.id_number for m in counted}
    found: dict[str, tuple[int, date]] = {}
    for row in records["hrss"].members:
        number = str(row["id_number"]).strip().upper()
        if number not in ids or EMPLOYED_SINCE not in row:
            continue
        since = _employment_date(row[EMPLOYED_SINCE], f"hrss.{EMPLOYED_SINCE}")
        earned, latest = found.get(number, (0, since))
        found[number] = (earned + row.get("monthly_income_fen", 0), max(latest, since))
    return {n: v for n, v in found.items() if v[0] > 0}


@dataclass
class _WorkIncentives:
    """What the work incentives take off the household's income: per member (exempt earnings
    or the employment-cost deduction), the totals, the reasons, the earliest exemption end."""

    reductions: dict[str, int] = field(default_factory=dict)
    exempt_fen: int = 0
    deduction_fen: int = 0
    reasons: list[Reason] = field(default_factory=list)
    exempt_until: date | None = None


def _work_incentives(policy: CountyPolicy, on: date, earners: Mapping[str, tuple[int, date]],
                     per_person: Mapping[str, _Figures]) -> _WorkIncentives:
    """就业成本抵扣、收入豁免 (seed 002), per earning member, in the order of the ID numbers:

    - 收入豁免: from the day work began and for ``income_exemption_months`` months after it
      (the decision date before the same day that many months later), the member's net
      earnings are left out of the income test;
    - 就业成本抵扣: otherwise the deduction of the county's kind (a fixed amount, or a share of
      the gross earnings rounded up to whole fen and capped) is taken off.
    Neither is ever more than the member's net earnings (earnings less the member's tax and
    social insurance, the member's net income when that is less)."""
    rules = policy.work_incentives
    out = _WorkIncentives()
    for number in sorted(earners):
        earned, since = earners[number]
        net_earned = min(earned, max(0, per_person[number].net))
        who = mask_resident_id(number)
        months = rules.exemption_months
        ends = _add_months(since, months)
        if months and on < ends:
            until = ends - timedelta(days=1)
            out.reductions[number] = net_earned
            out.exempt_fen += net_earned
            out.exempt_until = min(until, out.exempt_until or until)
            out.reasons.append(Reason(
                "EARNINGS_EXEMPT", "income.income_exemption",
                f"收入豁免：家庭成员{who}于{since.isoformat()}就业，就业后{months}个月内"
                f"（至{until.isoformat()}）新增就业收入{net_earned}分不计入家庭收入",
                {"member": who, "work_started_on": since.isoformat(),
                 "exempt_until": until.isoformat(), "exemption_months": months,
                 "earned_fen": earned, "earnings_exempt_fen": net_earned}))
            continue
        ded = rules.deduction
        if ded is None:
            continue
        amount = min(ded.for_earnings(earned), net_earned)
        out.reductions[number] = amount
        out.deduction_fen += amount
        if ded.kind == "fixed":
            how, terms = f"每人每月{ded.fixed_fen}分", {"fixed_fen": ded.fixed_fen}
        else:
            cap = "" if ded.max_fen is None else f"，每人每月最多{ded.max_fen}分"
            how = f"按就业收入的{ratio_text(ded.share)}（向上取整到分）{cap}"
            terms = {"share": ratio_text(ded.share),
                     **({} if ded.max_fen is None else {"max_fen": ded.max_fen})}
        out.reasons.append(Reason(
            "EMPLOYMENT_COST_DEDUCTED", "income.employment_cost_deduction",
            f"就业成本抵扣：家庭成员{who}就业收入{earned}分，{how}，扣减{amount}分",
            {"member": who, "work_started_on": since.isoformat(), "earned_fen": earned,
             "kind": ded.kind, **terms, "deduction_fen": amount}))
    return out


def _income_used(household: Household, policy: CountyPolicy, standard: int, fam: _Figures,
                 obligors: list[Member], per_person: dict[str, _Figures], work: _WorkIncentives,
                 reasons: list[Reason]) -> int:
    """Net household income with support received; the declared figure when it is higher.
    Exempt earnings are left out of the verified income; the employment-cost deduction is
    taken off the income used (verified or declared)."""
    support = sum(m.support_paid_fen for m in obligors)
    verified_net = max(0, fam.net) + support
    declared = household.declared_monthly_income_fen
    counted_net = max(0, fam.net - work.exempt_fen) + support
    income_total = max(0, max(counted_net, declared) - work.deduction_fen)
    reasons.append(Reason(
        "INCOME_NET", "income.net_of_tax_and_social_insurance",
        "家庭月收入按扣除个人所得税和社会保险缴费后计算；核对收入与申报收入取较高者"
        + ("；扣除收入豁免和就业成本抵扣" if work.reasons else ""),
        {"gross_fen": fam["monthly_income_fen"], "income_tax_fen": fam["income_tax_fen"],
         "social_insurance_fen": fam["social_insurance_fen"], "support_received_fen": support,
         "verified_net_fen": verified_net, "declared_fen": declared,
         "earnings_exempt_fen": work.exempt_fen, "employment_cost_deduction_fen": work.deduction_fen,
         "income_used_fen": income_total}))
    reasons.extend(work.reasons)
    if verified_net > declared:
        reasons.append(Reason("INCOME_UNDER_DECLARED", "income.declared_vs_verified",
                              "核对收入高于申报收入（预警）",
                              {"verified_net_fen": verified_net, "declared_fen": declared},
                              "warning"))
    for ob in obligors:
        ob_net = max(0, per_person[ob.id_number].net)
        if Fraction(ob_net) >= policy.obligor_warning_multiple * standard:
            reasons.append(Reason(
                "OBLIGOR_CAN_SUPPORT", "income.support_obligor",
                "非共同生活的法定赡养（抚养、扶养）义务人收入较高，请核实赡养费（预警）",
                {"obligor": mask_resident_id(ob.id_number), "obligor_net_fen": ob_net,
                 "support_paid_fen": ob.support_paid_fen,
                 "threshold_fen": int(policy.obligor_warning_multiple * standard)}, "warning"))
    return income_total


def _assets(household: Household, policy: CountyPolicy, fam: _Figures, counted: int,
            reasons: list[Reason]) -> tuple[int, int, bool]:
    """Assets used (the higher of verified and declared), the household's limit, within it?"""
    assets_total = max(fam["assets_fen"], household.declared_assets_fen)
    asset_limit_total = policy.asset_limit_fen * counted
    assets_ok = assets_total <= asset_limit_total
    reasons.append(Reason(
        "ASSETS_WITHIN_LIMIT" if assets_ok else "ASSETS_OVER_LIMIT", "assets.limit",
        "家庭财产符合规定" if assets_ok else "家庭财产超过规定限额",
        {"assets_verified_fen": fam["assets_fen"], "assets_declared_fen": household.declared_assets_fen,
         "assets_total_fen": assets_total, "limit_per_capita_fen": policy.asset_limit_fen,
         "limit_total_fen": asset_limit_total}, "info" if assets_ok else "blocking"))
    return assets_total, asset_limit_total, assets_ok


@dataclass
class _Ctx:
    household: Household
    policy: CountyPolicy
    decision_date: date
    reasons: list[Reason]
    standard: int
    area: str
    # the work incentives' reduction of each earning member's income (ID number → fen)
    work_reductions: dict[str, int] = field(default_factory=dict)


_Result = tuple[str, str | None, str | None, int, int, int, int]


def _pay(ctx: _Ctx, pci: int, n: int, full_class: bool) -> Amount:
    amt = monthly_amount(ctx.policy, ctx.area, pci, n, full_class=full_class)
    method = "全额保障" if full_class else (
        "据实补差" if ctx.policy.payment_method == "gap" else "分档发放")
    ctx.reasons.append(Reason(
        "AMOUNT", f"amount.{ctx.policy.payment_method}",
        f"保障金按{method}计算：({ctx.standard}−{pci})×{n}，类别{amt.tier}"
        + ("，已按月人均最低补差补足" if amt.topped_up else ""),
        {"standard_fen": ctx.standard, "per_capita_income_fen": pci, "members": n,
         "gap_per_capita_fen": amt.gap_per_capita_fen, "per_capita_paid_fen": amt.per_capita_fen,
         "min_top_up_fen": ctx.policy.min_top_up_for(ctx.area),  # type: ignore[arg-type]
         "tier": amt.tier, "monthly_amount_fen": amt.monthly_fen}))
    return amt


def _single_person_candidates(counted: list[Member]) -> list[Member]:
    return [m for m in counted if m.severe_for_single_person]


def _dibao(ctx: _Ctx, counted: list[Member], per_person: dict[str, _Figures], pci: int, n: int,
           below: bool, within_low: bool, assets_ok: bool, figs: dict) -> _Result:
    hh = ctx.household
    if hh.single_person_member_id is not None:
        return _single_person(ctx, counted, per_person, pci, n, within_low, assets_ok, figs)
    if below and assets_ok:
        ctx.reasons.append(Reason("INCOME_BELOW_STANDARD", "eligibility.dibao",
                                  "家庭月人均收入低于当地低保标准", figs))
        full_class = all(m.work_ability == "none" for m in counted)
        amt = _pay(ctx, pci, n, full_class)
        return "eligible", "dibao", amt.tier, amt.monthly_fen, 0, n, pci
    if not below:
        ctx.reasons.append(Reason("INCOME_NOT_BELOW_STANDARD", "eligibility.dibao",
                                  "家庭月人均收入不低于当地低保标准", figs, "blocking"))
    recommended = "low_income" if within_low and assets_ok else None
    if recommended:
        ctx.reasons.append(Reason("LOW_INCOME_INSTEAD", "eligibility.low_income",
                                  "家庭月人均收入在低收入家庭认定标准以内，可认定为低收入家庭", figs))
        candidates = _single_person_candidates(counted)
        if candidates and not below and n > 1:
            ctx.reasons.append(Reason(
                "SINGLE_PERSON_POSSIBLE", "eligibility.single_person",
                "低收入家庭中的重残、重病人员经个人申请可按单人户纳入低保",
                {"members": _masked(candidates), "count": len(candidates)}))
    return "ineligible", recommended, None, 0, 0, n, pci


def _single_person(ctx: _Ctx, counted: list[Member], per_person: dict[str, _Figures], pci: int,
                   n: int, within_low: bool, assets_ok: bool, figs: dict) -> _Result:
    hh = ctx.household
    person = next((m for m in counted if m.id_number == hh.single_person_member_id), None)
    if person is None or not person.severe_for_single_person:
        ctx.reasons.append(Reason(
            "SINGLE_PERSON_NOT_QUALIFIED", "eligibility.single_person",
            "单人户保仅适用于共同生活的一、二级重度残疾人，三级智力、精神残疾人或重病患者",
            {"member": mask_resident_id(hh.single_person_member_id or "")}, "blocking"))
        return "ineligible", None, None, 0, 0, 1, pci
    if not (within_low and assets_ok):
        ctx.reasons.append(Reason(
            "FAMILY_NOT_LOW_INCOME", "eligibility.single_person",
            "单人户保要求所在家庭为低收入家庭（收入、财产符合认定条件）", figs, "blocking"))
        return "ineligible", None, None, 0, 0, 1, pci
    own = max(0, per_person[person.id_number].net - ctx.work_reductions.get(person.id_number, 0))
    own_figs = {"own_net_income_fen": own, "standard_fen": ctx.standard,
                "family_per_capita_income_fen": pci,
                "low_income_line_fen": figs["low_income_line_fen"]}
    if own >= ctx.standard:
        ctx.reasons.append(Reason("INCOME_NOT_BELOW_STANDARD", "eligibility.single_person",
                                  "申请人本人月收入不低于低保标准", own_figs, "blocking"))
        return "ineligible", "low_income", None, 0, 0, 1, own
    ctx.reasons.append(Reason("SINGLE_PERSON_INCLUDED", "eligibility.single_person",
                              "低收入家庭中的重残、重病人员按单人户纳入低保", own_figs))
    amt = _pay(ctx, own, 1, person.work_ability == "none")
    return "eligible", "dibao", amt.tier, amt.monthly_fen, 0, 1, own


def _tekun(ctx: _Ctx, counted: list[Member], obligors: list[Member], pci: int, n: int,
           below: bool, within_low: bool, assets_ok: bool, figs: dict) -> _Result:
    problems: list[str] = []
    minor_limit = ctx.policy.tekun_minor_age_limit
    for m in counted:
        age = m.age_on(ctx.decision_date)
        # 特困: 无劳动能力的老年人(60+)、残疾人、未成年人(< policy.tekun_minor_age_limit: seed
        # 002 延长至18周岁)
        covered = (age is not None and (age >= 60 or age < minor_limit)) or m.disability_grade is not None
        if m.work_ability != "none" or not covered:
            problems.append(mask_resident_id(m.id_number))
    able_obligors = [o for o in obligors if o.work_ability != "none"]
    ok = not problems and not able_obligors and below and assets_ok
    if problems:
        ctx.reasons.append(Reason("TEKUN_MEMBER_NOT_QUALIFIED", "eligibility.tekun",
                                  f"特困供养仅适用于无劳动能力的老年人、残疾人和未满{minor_limit}周岁的未成年人",
                                  {"members": ",".join(problems), "minor_age_limit": minor_limit},
                                  "blocking"))
    if able_obligors:
        ctx.reasons.append(Reason("TEKUN_HAS_OBLIGOR", "eligibility.tekun",
                                  "有具备赡养、抚养、扶养能力的法定义务人",
                                  {"obligors": _masked(able_obligors)}, "blocking"))
    if not below:
        ctx.reasons.append(Reason("INCOME_NOT_BELOW_STANDARD", "eligibility.tekun",
                                  "月人均收入不低于当地低保标准", figs, "blocking"))
    if ok:
        amount = ctx.policy.tekun_standard_fen * n
        ctx.reasons.append(Reason("TEKUN_STANDARD", "amount.tekun",
                                  "按特困人员基本生活标准全额供养",
                                  {"tekun_standard_fen": ctx.policy.tekun_standard_fen,
                                   "members": n, "monthly_amount_fen": amount}))
        return "eligible", "tekun", None, amount, 0, n, pci
    if below and assets_ok:
        return "ineligible", "dibao", None, 0, 0, n, pci
    return "ineligible", ("low_income" if within_low and assets_ok else None), None, 0, 0, n, pci


def _low_income(ctx: _Ctx, counted: list[Member], pci: int, n: int, below: bool,
                within_low: bool, assets_ok: bool, figs: dict) -> _Result:
    if within_low and assets_ok:
        ctx.reasons.append(Reason("WITHIN_LOW_INCOME_LINE", "eligibility.low_income",
                                  "家庭月人均收入在低保标准的规定倍数以内，财产符合规定", figs))
        if below:
            ctx.reasons.append(Reason("DIBAO_POSSIBLE", "eligibility.dibao",
                                      "家庭月人均收入低于低保标准，可申请低保", figs))
        return "eligible", ("dibao" if below else "low_income"), None, 0, 0, n, pci
    if not within_low:
        ctx.reasons.append(Reason("ABOVE_LOW_INCOME_LINE", "eligibility.low_income",
                                  "家庭月人均收入超过低收入家庭认定标准", figs, "blocking"))
    return "ineligible", None, None, 0, 0, n, pci


def _zhichu(ctx: _Ctx, fam: _Figures, pci: int, n: int, income_total: int, within_low: bool,
            assets_ok: bool, figs: dict) -> _Result:
    hh = ctx.household
    # Declared rigid costs count where the departments know less (e.g. treatment outside
    # insurance), but only as a warning (预警) that calls for evidence and appraisal.
    medical = max(fam["medical_expense_fen"], hh.declared_medical_expense_fen)
    education = max(fam["education_expense_fen"], hh.declared_education_expense_fen)
    rigid = medical + education
    if medical > fam["medical_expense_fen"] or education > fam["education_expense_fen"]:
        ctx.reasons.append(Reason(
            "DECLARED_EXPENSE_ABOVE_RECORDS", "income.rigid_expenditure",
            "申报的刚性支出高于部门核对数据，需提供票据并经民主评议（预警）",
            {"medical_verified_fen": fam["medical_expense_fen"], "medical_declared_fen": hh.declared_medical_expense_fen,
             "education_verified_fen": fam["education_expense_fen"],
             "education_declared_fen": hh.declared_education_expense_fen}, "warning"))
    adjusted_total = max(0, income_total - rigid)
    adj_pci = per_capita_income(adjusted_total, n)
    zfigs = {**figs, "medical_expense_fen": medical, "education_expense_fen": education,
             "rigid_expense_fen": rigid, "income_after_expense_fen": adjusted_total,
             "per_capita_after_expense_fen": adj_pci}
    ctx.reasons.append(Reason("RIGID_EXPENSE_DEDUCTED", "income.rigid_expenditure",
                              "支出型困难：扣除刚性医疗、教育支出后计算家庭月人均收入", zfigs))
    below_after = adjusted_total < ctx.standard * n
    if within_low and assets_ok and rigid > 0 and below_after:
        months = ctx.policy.temporary_relief_months
        monthly_gap = gap_payment(ctx.standard, adj_pci, n)
        one_off = min(monthly_gap * months, ctx.policy.emergency.county_cap_fen)
        ctx.reasons.append(Reason(
            "TEMPORARY_RELIEF_AMOUNT", "amount.linshi_zhichu",
            f"支出型临时救助：({ctx.standard}−{adj_pci})×{n}×{months}个月，不超过县级审批上限",
            {"monthly_gap_fen": monthly_gap, "months": months,
             "county_cap_fen": ctx.policy.emergency.county_cap_fen, "one_off_amount_fen": one_off}))
        return "eligible", "linshi_zhichu", None, 0, one_off, n, adj_pci
    if not within_low:
        ctx.reasons.append(Reason("ABOVE_LOW_INCOME_LINE", "eligibility.linshi_zhichu",
                                  "家庭月人均收入超过低收入家庭认定标准", zfigs, "blocking"))
    elif rigid == 0 or not below_after:
        ctx.reasons.append(Reason("EXPENSE_NOT_DECISIVE", "eligibility.linshi_zhichu",
                                  "扣除刚性支出后家庭月人均收入仍不低于低保标准", zfigs, "blocking"))
    return "ineligible", ("low_income" if within_low and assets_ok else None), None, 0, 0, n, adj_pci


def _jinan(ctx: _Ctx, pci: int, n: int, within_low: bool, figs: dict) -> _Result:
    policy = ctx.policy
    asked = ctx.household.requested_amount_fen
    default = ctx.standard * n * policy.temporary_relief_months
    wanted = asked if asked > 0 else default
    one_off = min(wanted, policy.emergency.county_cap_fen)
    ctx.reasons.append(Reason(
        "EMERGENCY_RELIEF_AMOUNT", "amount.linshi_jinan",
        "急难型临时救助不以收入为前置条件，金额不超过县级审批上限；未申请具体金额的按"
        f"{policy.temporary_relief_months}个月低保标准计",
        {"requested_fen": asked, "default_fen": default,
         "township_cap_fen": policy.emergency.township_cap_fen,
         "county_cap_fen": policy.emergency.county_cap_fen, "one_off_amount_fen": one_off},
        "warning" if wanted > policy.emergency.county_cap_fen else "info"))
    if not within_low:
        ctx.reasons.append(Reason("ABOVE_LOW_INCOME_LINE", "eligibility.linshi_jinan",
                                  "家庭月人均收入超过低收入家庭认定标准（预警）", figs, "warning"))
    return "eligible", "linshi_jinan", None, 0, one_off, n, pci


def assess_with_book(household: Household, records: Mapping[str, DepartmentRecord], book: Any,
                     decision_date: date | datetime) -> Assessment:
    """Pick the policy in force on ``decision_date`` from a PolicyBook/PolicyHolder and assess."""
    decision_date = decision_day(decision_date)
    policy = book.policy_for(county_of(household.region_code), decision_date)
    return assess(household, records, policy, decision_date)
