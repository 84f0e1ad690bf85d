"""Every documented assessment rule decides an outcome through the API, across the processes.

Each case of `test_a_documented_rule_decides_the_outcome` is one household: its members'
department records are loaded into the partner simulator (`PUT /v1/records/...`), it applies
through intake (`POST /v1/applications`) and is accepted (`POST /v1/cases/{case_id}/acceptance`),
the simulator answers verification's requests, and verification assesses it when every
department has answered. The test then reads the assessment record
(`GET /v1/verifications/{case_id}`): outcome, recommended type, amount and the reason codes of
the rule docs/RULES.md names, and approves an eligible household
(`POST /v1/verifications/{case_id}/decision`), which assesses again by the policy in force on
the decision date and builds the benefit. The figures are those of `config/policy.yaml` for
the county and the date of the Lifeline's shared clock when the households apply, so every
expectation is written from the policy in force.

All households are submitted and accepted first (one module fixture), and their checks run side
by side; the fixture waits for every check, then takes each eligible household through the
procedure (survey, initial review, public notice, an appraisal when the check warned) and moves
the shared clock once past all the notices: the checks are dated the day the households
applied, the decisions a notice period later. The file also checks the statutory clock that
runs on acceptance (the departments are asked at once, their answers due with the verification
report, on the requests and deadline verification published) and that a bad operator file
stops a service at start.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from lifeline.contracts import registry
from lifeline.dev.embedded import free_port
from lifeline.rules.calendar import default_calendar
from lifeline.rules.clocks import verification_report_due, verification_request_due
from lifeline.rules.ids import make_resident_id
from lifeline.rules.periods import SHANGHAI, business_date
from lifeline.settings import Settings
from lifeline.rules.policy import CountyPolicy, default_policy_book, ratio_text
from tests.conftest import REPO_ROOT
from tests.e2e.test_flows import completed
from tests.harness import household

pytestmark = pytest.mark.e2e

DONGYING = "370502101001"   # a village of the example county 370502 (据实补差)
ZHIFU = "370602001001"      # a village of 370602 芝罘区 (分档发放, low-income line 2x)

_seq = itertools.count(uuid.uuid4().int % 200)
# The business date on the Lifeline's shared clock when the households applied (set by the
# `submitted` fixture before any plan is made; the clock moves on as public notices end).
_applied_on: list[date] = []


def today() -> date:
    return _applied_on[-1]


def person_id(region: str, born: date | None = None) -> str:
    """A fresh valid resident ID number (adults born 1970-1989 unless `born` is given)."""
    n = next(_seq)
    born = born or date(1970 + n % 20, 1 + n % 12, 1 + n % 28)
    return make_resident_id(region[:6], born, n % 500, female=n % 2 == 1)


# --------------------------------------------------------------------------------------------
# A case: who lives there, what the departments know, what the application says, what follows
# --------------------------------------------------------------------------------------------
@dataclass
class M:
    """A member and the departments' records of them (fen per month)."""

    income: int = 0          # hrss monthly_income_fen
    social_insurance: int = 0  # hrss social_insurance_fen
    tax: int = 0             # tax income_tax_fen
    assets: int = 0          # bank assets_fen
    medical: int = 0         # medical_insurance medical_expense_fen
    education: int = 0       # education education_expense_fen
    born: date | None = None
    member: dict[str, Any] = field(default_factory=dict)  # MemberIn fields (relation, work_ability …)

    def records(self) -> dict[str, dict[str, int]]:
        return {
            "hrss": {"monthly_income_fen": self.income, "social_insurance_fen": self.social_insurance},
            "tax": {"income_tax_fen": self.tax},
            "bank": {"assets_fen": self.assets},
            "medical_insurance": {"medical_expense_fen": self.medical},
            "education": {"education_expense_fen": self.education},
        }


ANY = object()  # a figure the case does not pin


@dataclass
class Plan:
    members: list[M]
    outcome: str
    recommended: str | None
    monthly: int = 0
    one_off: int = 0
    tier: Any = ANY
    per_capita: Any = ANY
    size: Any = ANY
    standard: Any = ANY
    reasons: tuple[str, ...] = ()          # codes that must be in assessment.detail.reasons
    absent: tuple[str, ...] = ()           # codes that must not be
    warnings: tuple[str, ...] = ()         # codes that must be among assessment.warnings
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> figures it shows
    body: dict[str, Any] = field(default_factory=dict)   # ApplicationIn fields
    single_person: int | None = None       # index of the member applying alone (单人户保)
    assets_within_limit: Any = ANY


@dataclass(frozen=True)
class Case:
    id: str
    region: str
    plan: Callable[[CountyPolicy], Plan]


def _urban(p: CountyPolicy) -> tuple[int, int]:
    return p.standard_for("urban"), p.min_top_up_for("urban")


def net_of_tax_and_social_insurance(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    gross = s + 7000                      # above the standard before deductions …
    si, tax = gross * 105 // 1000, 1450
    net = gross - si - tax                # … below it after them
    pci = net // 2
    assert net < s <= gross and s - pci >= top
    return Plan(
        [M(income=gross, social_insurance=si, tax=tax), M()], "eligible", "dibao",
        monthly=(s - pci) * 2, per_capita=pci, size=2, body={"declared_monthly_income_fen": net},
        reasons=("INCOME_NET", "INCOME_BELOW_STANDARD", "AMOUNT"), absent=("INCOME_UNDER_DECLARED",),
        figures={"INCOME_NET": {"gross_fen": gross, "income_tax_fen": tax, "social_insurance_fen": si,
                                "verified_net_fen": net, "income_used_fen": net}})


def income_at_the_standard(p: CountyPolicy) -> Plan:
    s, _ = _urban(p)
    return Plan([M(income=s)], "ineligible", "low_income", per_capita=s,
                body={"declared_monthly_income_fen": s},
                reasons=("INCOME_NOT_BELOW_STANDARD", "LOW_INCOME_INSTEAD"),
                absent=("INCOME_BELOW_STANDARD", "AMOUNT"))


def one_fen_below_the_standard(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    # Eligible by one fen: the gap of 1 fen is raised to the minimum per-capita top-up.
    return Plan([M(income=s - 1)], "eligible", "dibao", monthly=top, per_capita=s - 1,
                body={"declared_monthly_income_fen": s - 1},
                reasons=("INCOME_BELOW_STANDARD", "AMOUNT"),
                figures={"AMOUNT": {"gap_per_capita_fen": 1, "per_capita_paid_fen": top,
                                    "min_top_up_fen": top, "monthly_amount_fen": top}})


def declared_income_above_verified(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    declared = 60000
    assert s - declared // 2 >= top
    return Plan([M(income=20000), M()], "eligible", "dibao", monthly=(s - declared // 2) * 2,
                per_capita=declared // 2, body={"declared_monthly_income_fen": declared},
                reasons=("INCOME_NET",), absent=("INCOME_UNDER_DECLARED",),
                figures={"INCOME_NET": {"verified_net_fen": 20000, "declared_fen": declared,
                                        "income_used_fen": declared}})


def verified_income_above_declared(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    assert s - 20000 >= top
    return Plan([M(income=40000), M()], "eligible", "dibao", monthly=(s - 20000) * 2, per_capita=20000,
                body={"declared_monthly_income_fen": 10000},
                reasons=("INCOME_NET", "INCOME_UNDER_DECLARED"), warnings=("INCOME_UNDER_DECLARED",),
                figures={"INCOME_NET": {"verified_net_fen": 40000, "declared_fen": 10000,
                                        "income_used_fen": 40000},
                         "INCOME_UNDER_DECLARED": {"verified_net_fen": 40000, "declared_fen": 10000}})


def per_capita_rounds_down(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    income = 100000                      # ÷ 3 = 33,333.33… → 33,333 fen
    assert s - income // 3 >= top
    return Plan([M(income=income), M(), M()], "eligible", "dibao", monthly=(s - 33333) * 3,
                per_capita=33333, size=3, body={"declared_monthly_income_fen": income},
                figures={"AMOUNT": {"per_capita_income_fen": 33333, "members": 3}})


def assets_over_the_limit(p: CountyPolicy) -> Plan:
    limit = p.asset_limit_fen
    return Plan([M(assets=limit + 1)], "ineligible", None, assets_within_limit=False,
                reasons=("ASSETS_OVER_LIMIT",), absent=("ASSETS_WITHIN_LIMIT", "LOW_INCOME_INSTEAD"),
                figures={"ASSETS_OVER_LIMIT": {"assets_total_fen": limit + 1, "limit_total_fen": limit}})


def assets_at_the_limit_per_member(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    limit = p.asset_limit_fen
    # Twice one person's limit, held by two counted members: within the household's limit.
    return Plan([M(income=30000, assets=limit), M(assets=limit)], "eligible", "dibao",
                monthly=(s - 15000) * 2, per_capita=15000, assets_within_limit=True,
                body={"declared_monthly_income_fen": 30000},
                reasons=("ASSETS_WITHIN_LIMIT",), absent=("ASSETS_OVER_LIMIT",),
                figures={"ASSETS_WITHIN_LIMIT": {"assets_total_fen": 2 * limit,
                                                 "limit_total_fen": 2 * limit}})


def _obligor(income: int, paid: int) -> M:
    return M(income=income, member={"relation": "child", "co_resident": False,
                                    "support_obligor": True, "support_paid_fen": paid})


def obligor_support_is_income(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    paid = 30000
    assert s - paid >= top
    # The son lives apart and earns the standard: not counted, his income not used; what he
    # pays his mother is her income.
    return Plan([M(), _obligor(income=s, paid=paid)], "eligible", "dibao", monthly=s - paid,
                per_capita=paid, size=1, body={"declared_monthly_income_fen": paid},
                reasons=("MEMBERS_COUNTED", "INCOME_NET"), absent=("OBLIGOR_CAN_SUPPORT",),
                figures={"MEMBERS_COUNTED": {"counted": 1, "not_counted": 1, "support_obligors": 1},
                         "INCOME_NET": {"gross_fen": 0, "support_received_fen": paid,
                                        "income_used_fen": paid}})


def obligor_able_to_support(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    threshold = p.obligor_warning_multiple * s
    assert threshold.denominator == 1
    paid = 20000
    # Exactly the threshold (≥ warns): the household is still assessed, with a warning (预警).
    return Plan([M(), _obligor(income=int(threshold), paid=paid)], "eligible", "dibao",
                monthly=s - paid, per_capita=paid, size=1, body={"declared_monthly_income_fen": paid},
                reasons=("OBLIGOR_CAN_SUPPORT",), warnings=("OBLIGOR_CAN_SUPPORT",),
                figures={"OBLIGOR_CAN_SUPPORT": {"obligor_net_fen": int(threshold),
                                                 "threshold_fen": int(threshold),
                                                 "support_paid_fen": paid}})


def living_apart_not_obligor(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    # The husband is away (military service): neither counted nor his income used.
    away = M(income=500000, member={"relation": "spouse", "co_resident": False})
    return Plan([M(income=10000), away], "eligible", "dibao", monthly=s - 10000, per_capita=10000,
                size=1, body={"declared_monthly_income_fen": 10000},
                figures={"MEMBERS_COUNTED": {"counted": 1, "not_counted": 1, "support_obligors": 0},
                         "INCOME_NET": {"gross_fen": 10000, "income_used_fen": 10000}})


def _family_with_a_severely_disabled_member(s: int) -> list[M]:
    """Per-capita income just above the standard, within the low-income line."""
    return [
        M(income=20000, member={"disability_grade": 1, "disability_kind": "physical",
                                "work_ability": "partial"}),
        M(income=3 * s - 10000),
        M(),
    ]


def single_person_included(p: CountyPolicy) -> Plan:
    s, top = _urban(p)
    members = _family_with_a_severely_disabled_member(s)
    total = sum(m.income for m in members)
    assert s * 3 <= total <= p.low_income_multiplier * s * 3 and s - 20000 >= top
    return Plan(members, "eligible", "dibao", monthly=s - 20000, per_capita=20000, size=1,
                single_person=0, body={"declared_monthly_income_fen": total},
                reasons=("SINGLE_PERSON_INCLUDED", "AMOUNT"),
                figures={"SINGLE_PERSON_INCLUDED": {"own_net_income_fen": 20000, "standard_fen": s,
                                                    "family_per_capita_income_fen": total // 3}})


def single_person_possible(p: CountyPolicy) -> Plan:
    s, _ = _urban(p)
    members = _family_with_a_severely_disabled_member(s)
    total = sum(m.income for m in members)
    return Plan(members, "ineligible", "low_income", per_capita=total // 3, size=3,
                body={"declared_monthly_income_fen": total},
                reasons=("INCOME_NOT_BELOW_STANDARD", "LOW_INCOME_INSTEAD", "SINGLE_PERSON_POSSIBLE"),
                figures={"SINGLE_PERSON_POSSIBLE": {"count": 1}})


def tekun_old_and_minor(p: CountyPolicy) -> Plan:
    now = today()
    grandmother = M(income=20000, born=date(now.year - 65, 1, 1), member={"work_ability": "none"})
    # 17 all this year: still a minor for 特困 (18, not 16, seed 002).
    grandson = M(born=date(now.year - 17, 1, 1),
                 member={"relation": "grandchild", "work_ability": "none"})
    tekun = p.tekun_standard_fen
    return Plan([grandmother, grandson], "eligible", "tekun", monthly=tekun * 2, per_capita=10000,
                size=2, standard=tekun, tier=None,
                body={"assistance_type": "tekun", "declared_monthly_income_fen": 20000},
                reasons=("TEKUN_STANDARD",), absent=("TEKUN_MEMBER_NOT_QUALIFIED", "TEKUN_HAS_OBLIGOR"),
                figures={"TEKUN_STANDARD": {"tekun_standard_fen": tekun, "members": 2,
                                            "monthly_amount_fen": tekun * 2}})


def class_a_full_standard(p: CountyPolicy) -> Plan:
    s, _ = _urban(p)
    none = {"work_ability": "none"}
    return Plan([M(income=20000, member=none), M(member=none)], "eligible", "dibao", monthly=s * 2,
                tier=p.full_tier.code, per_capita=10000, body={"declared_monthly_income_fen": 20000},
                figures={"AMOUNT": {"tier": p.full_tier.code, "per_capita_paid_fen": s,
                                    "monthly_amount_fen": s * 2}})


def minimum_top_up_rural(p: CountyPolicy) -> Plan:
    r, top = p.standard_for("rural"), p.min_top_up_for("rural")
    gap = 16000
    assert gap < top <= r
    return Plan([M(income=r - gap)], "eligible", "dibao", monthly=top, per_capita=r - gap,
                standard=r, body={"area": "rural", "declared_monthly_income_fen": r - gap},
                figures={"AMOUNT": {"standard_fen": r, "gap_per_capita_fen": gap,
                                    "per_capita_paid_fen": top, "min_top_up_fen": top}})


def _tier(p: CountyPolicy, code: str):
    return next(t for t in p.banded_tiers if t.code == code)


def tier_b_at_its_edge(p: CountyPolicy) -> Plan:
    assert p.payment_method == "tiers"
    s = p.standard_for("urban")
    b = _tier(p, "B")
    edge = b.min_gap_ratio * s
    assert edge.denominator == 1
    gap = int(edge)                       # the gap exactly at B's lower edge (inclusive)
    return Plan([M(income=s - gap)], "eligible", "dibao", monthly=b.amount_for("urban"), tier="B",
                per_capita=s - gap, body={"declared_monthly_income_fen": s - gap},
                figures={"AMOUNT": {"gap_per_capita_fen": gap, "tier": "B",
                                    "per_capita_paid_fen": b.amount_for("urban")}})


def tier_c_one_fen_below_b(p: CountyPolicy) -> Plan:
    s = p.standard_for("urban")
    gap = math.ceil(_tier(p, "B").min_gap_ratio * s) - 1
    c = _tier(p, "C")
    assert gap >= c.min_gap_ratio * s
    return Plan([M(income=s - gap)], "eligible", "dibao", monthly=c.amount_for("urban"), tier="C",
                per_capita=s - gap, body={"declared_monthly_income_fen": s - gap},
                figures={"AMOUNT": {"gap_per_capita_fen": gap, "tier": "C"}})


def tier_d(p: CountyPolicy) -> Plan:
    s = p.standard_for("urban")
    d = _tier(p, "D")
    gap = 10000
    assert gap < _tier(p, "C").min_gap_ratio * s
    amount = max(d.amount_for("urban"), p.min_top_up_for("urban"))
    return Plan([M(income=s - gap)], "eligible", "dibao", monthly=amount, tier="D",
                per_capita=s - gap, body={"declared_monthly_income_fen": s - gap},
                figures={"AMOUNT": {"gap_per_capita_fen": gap, "tier": "D"}})


def _low_income_line(p: CountyPolicy) -> int:
    line = p.low_income_multiplier * p.standard_for("urban")
    assert line.denominator == 1
    return int(line)


def at_the_low_income_line(p: CountyPolicy) -> Plan:
    line = _low_income_line(p)
    # Exactly the multiple of the standard: within the line (以内/以下 include the figure).
    return Plan([M(income=line)], "ineligible", "low_income", per_capita=line,
                body={"declared_monthly_income_fen": line},
                reasons=("INCOME_NOT_BELOW_STANDARD", "LOW_INCOME_INSTEAD"),
                figures={"LOW_INCOME_INSTEAD": {"per_capita_income_fen": line,
                                                "low_income_line_fen": line,
                                                "low_income_multiplier": ratio_text(p.low_income_multiplier)}})


def above_the_low_income_line(p: CountyPolicy) -> Plan:
    line = _low_income_line(p)
    return Plan([M(income=line + 1)], "ineligible", None, per_capita=line + 1,
                body={"declared_monthly_income_fen": line + 1},
                reasons=("INCOME_NOT_BELOW_STANDARD",), absent=("LOW_INCOME_INSTEAD",))


def declared_expense_above_records(p: CountyPolicy) -> Plan:
    s, _ = _urban(p)
    income, recorded, declared = s + 17000, 10000, 50000
    assert s < income <= p.low_income_multiplier * s and income - declared < s <= income - recorded
    months = p.temporary_relief_months
    one_off = (s - (income - declared)) * months
    assert one_off <= p.emergency.township_cap_fen
    # Treatment outside insurance: the household declares more than the records show; the
    # declared cost is deducted, with a warning that calls for evidence.
    return Plan([M(income=income, medical=recorded)], "eligible", "linshi_zhichu", one_off=one_off,
                per_capita=income - declared, tier=None,
                body={"assistance_type": "linshi_zhichu", "declared_monthly_income_fen": income,
                      "declared_medical_expense_fen": declared},
                reasons=("DECLARED_EXPENSE_ABOVE_RECORDS", "RIGID_EXPENSE_DEDUCTED",
                         "TEMPORARY_RELIEF_AMOUNT"),
                warnings=("DECLARED_EXPENSE_ABOVE_RECORDS",),
                figures={"DECLARED_EXPENSE_ABOVE_RECORDS": {"medical_verified_fen": recorded,
                                                            "medical_declared_fen": declared},
                         "RIGID_EXPENSE_DEDUCTED": {"rigid_expense_fen": declared,
                                                    "income_after_expense_fen": income - declared},
                         "TEMPORARY_RELIEF_AMOUNT": {"months": months, "one_off_amount_fen": one_off}})


CASES = [
    Case("net-of-tax-and-social-insurance", DONGYING, net_of_tax_and_social_insurance),
    Case("income-at-the-standard", DONGYING, income_at_the_standard),
    Case("one-fen-below-the-standard", DONGYING, one_fen_below_the_standard),
    Case("declared-income-above-verified", DONGYING, declared_income_above_verified),
    Case("verified-income-above-declared", DONGYING, verified_income_above_declared),
    Case("per-capita-rounds-down", DONGYING, per_capita_rounds_down),
    Case("assets-over-the-limit", DONGYING, assets_over_the_limit),
    Case("assets-at-the-limit-per-member", DONGYING, assets_at_the_limit_per_member),
    Case("obligor-support-is-income", DONGYING, obligor_support_is_income),
    Case("obligor-able-to-support", DONGYING, obligor_able_to_support),
    Case("living-apart-not-obligor", DONGYING, living_apart_not_obligor),
    Case("single-person-included", DONGYING, single_person_included),
    Case("single-person-possible", DONGYING, single_person_possible),
    Case("tekun-old-and-minor", DONGYING, tekun_old_and_minor),
    Case("class-a-full-standard", DONGYING, class_a_full_standard),
    Case("minimum-top-up-rural", DONGYING, minimum_top_up_rural),
    Case("low-income-line-1.5x", DONGYING, at_the_low_income_line),
    Case("above-the-low-income-line", DONGYING, above_the_low_income_line),
    Case("declared-expense-above-records", DONGYING, declared_expense_above_records),
    Case("tier-b-at-its-edge-370602", ZHIFU, tier_b_at_its_edge),
    Case("tier-c-one-fen-below-b-370602", ZHIFU, tier_c_one_fen_below_b),
    Case("tier-d-370602", ZHIFU, tier_d),
    Case("low-income-line-2x-370602", ZHIFU, at_the_low_income_line),
]


@dataclass
class Submitted:
    case_id: str
    plan: Plan
    policy: CountyPolicy
    region: str
    submitted_on: date
    checked_by: date | None = None  # the clock's date once every check was completed


def policy_for(lifeline, region: str, on: date | None = None) -> CountyPolicy:
    """The county policy the services of this Lifeline apply on `on` (default: when the
    households applied)."""
    return default_policy_book(Settings.from_env(lifeline.env)).policy_for(region[:6], on or today())


def clock_date(lifeline) -> date:
    return business_date(lifeline.clock("show"))


@pytest.fixture(scope="module")
def submitted(lifeline) -> dict[str, Submitted]:
    """Every case's household, records loaded, application submitted and accepted; once every
    check is completed, each eligible household is taken through the procedure and the shared
    clock is moved past the public notices: every case is ready for its decision."""
    _applied_on.append(clock_date(lifeline))
    out: dict[str, Submitted] = {}
    with lifeline.client("simulator") as sim:
        for case in CASES:
            policy = policy_for(lifeline, case.region)
            plan = case.plan(policy)
            ids = [person_id(case.region, m.born) for m in plan.members]
            for number, m in zip(ids, plan.members):
                for department, figures in m.records().items():
                    r = sim.put(f"/v1/records/{department}/{number}", json=figures)
                    assert r.status_code == 200, r.text
            body = household(ids, case.region, **plan.body)
            for member, m in zip(body["members"], plan.members):
                member.update(m.member)
            if plan.single_person is not None:
                body["single_person_member_id"] = ids[plan.single_person]
            with lifeline.client("intake", role="clerk", region=case.region[:9]) as intake:
                r = intake.post("/v1/applications", json=body)
            assert r.status_code == 201, f"{case.id}: {r.text}"
            out[case.id] = Submitted(r.json()["case_id"], plan, policy, case.region, today())
    for s in out.values():
        lifeline.accept(s.case_id, region=s.region[:6])
    checks = {name: completed(lifeline, s.case_id) for name, s in out.items()}
    checked_by = clock_date(lifeline)
    views = []
    for name, s in out.items():
        s.checked_by = checked_by
        # A case whose check disagrees with its plan is left undecided: its test reports it.
        if s.plan.outcome == "eligible" and checks[name]["assessment"]["outcome"] == "eligible":
            views.append(lifeline.prepare_decision(s.case_id, region=s.region[:6]))
    lifeline.pass_notices(*views)
    return out


def _reasons(assessment: dict) -> dict[str, dict]:
    return {r["code"]: r for r in assessment["detail"]["reasons"]}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_a_documented_rule_decides_the_outcome(lifeline, submitted, case):
    s = submitted[case.id]
    plan = s.plan
    v = completed(lifeline, s.case_id)
    assert v["state"] == "completed" and v["departments_missing"] == [], v
    a = v["assessment"]
    detail = a["detail"]
    reasons = _reasons(a)
    where = f"{case.id}: {json.dumps(a, ensure_ascii=False)}"

    assert a["outcome"] == plan.outcome, where
    assert a["recommended_assistance_type"] == plan.recommended, where
    assert a["monthly_amount_fen"] == plan.monthly, where
    assert detail["one_off_amount_fen"] == plan.one_off, where
    for name, expected in (("tier", plan.tier), ("per_capita_income_fen", plan.per_capita),
                           ("household_size", plan.size), ("standard_applied_fen", plan.standard)):
        if expected is not ANY:
            assert a[name] == expected, f"{name}: {where}"
    if plan.standard is ANY and plan.body.get("assistance_type", "dibao") == "dibao":
        assert a["standard_applied_fen"] == s.policy.standard_for(plan.body.get("area", "urban"))
    if plan.assets_within_limit is not ANY:
        assert a["assets_summary"]["within_limit"] is plan.assets_within_limit, where
    # The policy in force on the date of the check decided it.
    assert detail["county_code"] == s.region[:6]
    assert detail["policy_effective_from"] == s.policy.effective_from.isoformat()
    assert detail["decision_date"] in {s.submitted_on.isoformat(), s.checked_by.isoformat()}

    for code in plan.reasons:
        assert code in reasons, f"{code} missing: {where}"
    for code in plan.absent:
        assert code not in reasons, f"{code} present: {where}"
    warned = {w["code"] for w in a["warnings"]}
    for code in plan.warnings:
        assert code in warned and reasons[code]["severity"] == "warning", f"{code}: {where}"
    for code, figures in plan.figures.items():
        assert code in reasons, f"{code} missing: {where}"
        shown = reasons[code]["figures"]
        assert {k: shown.get(k) for k in figures} == figures, f"{code}: {where}"

    if plan.outcome != "eligible":
        return
    # Approval assesses again by the policy in force on the decision date and builds the benefit;
    # the expectations hold when that is still the policy of the check.
    decided_on = clock_date(lifeline)
    assert policy_for(lifeline, s.region, decided_on).effective_from == s.policy.effective_from, (
        f"{case.id}: a new policy came into force between the check and the decision ({decided_on})")
    with lifeline.client("verification", role="reviewer", region=s.region[:6]) as c:
        r = c.post(f"/v1/verifications/{s.case_id}/decision",
                   json={"decision": "approve", "reason": "审核确认小组会议决定"})
    assert r.status_code == 200, f"{case.id}: {r.text}"
    benefit = r.json()
    assert benefit["benefit_type"] == plan.recommended
    if plan.one_off:
        assert benefit["kind"] == "one_off" and benefit["one_off_amount_fen"] == plan.one_off
        assert benefit["approval_level"] == "township"
    else:
        assert benefit["kind"] == "monthly" and benefit["monthly_amount_fen"] == plan.monthly
        assert benefit["tier"] == a["tier"]


def test_the_departments_are_asked_on_acceptance_and_answer_with_the_report(lifeline, submitted):
    """verification ← ApplicationAccepted asks each department at once (the 3-working-day
    request clock is met by the acceptance itself), with the report's statutory due date: the
    end (24:00 Beijing) of the 5th working day after the request, warned after the 3rd
    (3 to 5 working days), on the statutory calendar; the same deadline is published as
    DeadlineSet (verification_report) for the deadline watch."""
    cases = {s.case_id for s in submitted.values()}
    accepted: dict[str, datetime] = {}
    requests = []
    reports: dict[str, dict] = {}
    for raw in lifeline.published():
        event = registry.decode(raw)
        if event.data.get("case_id") not in cases:
            continue
        if event.name == "ApplicationAccepted":
            accepted[event.data["case_id"]] = datetime.fromisoformat(event.data["accepted_at"])
        elif event.name == "VerificationRequested":
            requests.append(event.data)
        elif event.name == "DeadlineSet" and event.data["clock"] == "verification_report":
            reports[event.data["case_id"]] = event.data
    assert {r["case_id"] for r in requests} == cases == set(accepted) == set(reports)
    calendar = default_calendar()
    for r in requests:
        requested_at = datetime.fromisoformat(r["requested_at"])
        due_at = datetime.fromisoformat(r["due_at"])
        # Asked on acceptance: within the request clock (3 working days from acceptance).
        accepted_at = accepted[r["case_id"]]
        assert accepted_at <= requested_at < verification_request_due(accepted_at).due_at, r
        report = verification_report_due(requested_at)
        assert due_at == report.due_at, r
        deadline = reports[r["case_id"]]
        assert datetime.fromisoformat(deadline["due_at"]) == due_at, (r, deadline)
        assert datetime.fromisoformat(deadline["warn_at"]) == report.warn_at, (r, deadline)
        # Read independently: 00:00 Beijing after a working day, 5 working days after the
        # request; the warning 00:00 after the 3rd.
        start = business_date(requested_at)
        for moment, days in ((due_at, 5), (datetime.fromisoformat(deadline["warn_at"]), 3)):
            local = moment.astimezone(SHANGHAI)
            assert (local.hour, local.minute, local.second) == (0, 0, 0)
            last_day = local.date() - timedelta(days=1)
            assert calendar.is_working_day(last_day)
            between = [start + timedelta(days=i) for i in range(1, (last_day - start).days + 1)]
            assert sum(calendar.is_working_day(d) for d in between) == days, (r, days, between)


BAD_FILES = {
    # variable, service, file name, content or source to copy, what the message names
    "policy": ("LIFELINE_POLICY_FILE", "verification", "policy.yaml",
               "schema_version: 1\ncounties:\n  - county_code: \"370502\"\n    name: 东营区\n"
               "    effective_from: 2026-01-01\n    standards: {urban_fen: -1, rural_fen: 86000, "
               "tekun_fen: 133900}\n    low_income_multiplier: \"1.5\"\n",
               "counties[0].standards.urban_fen"),
    # The shipped 2027 example saved as if it were the published notice.
    "calendar": ("LIFELINE_CALENDAR_DIR", "intake", "2027.yaml",
                 REPO_ROOT / "config" / "calendar" / "2027.example.yaml", "example"),
    "regions": ("LIFELINE_REGIONS_DIR", "intake", "2027.tsv", "370599\t示例新区\t1\n", "2027.tsv:1"),
}


def test_a_bad_rules_file_stops_the_service_at_start(infra):
    """`lifeline serve` reads the operator's policy, calendar and region files at start: a bad
    one (here also the 2027 example passed off as the notice) stops it, naming the file."""
    root = Path(tempfile.mkdtemp(prefix="lifeline-badrules-"))

    def start(name: str) -> tuple[str, subprocess.CompletedProcess]:
        variable, service, filename, content, _ = BAD_FILES[name]
        folder = root / name
        folder.mkdir()
        target = folder / filename
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_text(content, encoding="utf-8")
        env = infra.env(f"b{uuid.uuid4().hex[:6]}.", folder / "data")  # its own namespace
        env[f"LIFELINE_{service.upper()}_PORT"] = str(free_port())
        env[variable] = str(target if variable == "LIFELINE_POLICY_FILE" else folder)
        return name, subprocess.run([sys.executable, "-m", "lifeline.cli", "serve", service],
                                    env=env, capture_output=True, text=True, timeout=60)

    try:
        with ThreadPoolExecutor(len(BAD_FILES)) as pool:
            results = dict(pool.map(start, BAD_FILES))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, proc in results.items():
        said = proc.stdout + proc.stderr
        assert proc.returncode == 2, f"{name}: not a clean configuration error (exit 2):\n{said}"
        assert "Traceback" not in said, f"{name}: a traceback instead of a message:\n{said}"
        assert BAD_FILES[name][4] in said, f"{name}:\n{said}"
        assert BAD_FILES[name][2] in said, f"{name}: the file is not named:\n{said}"
