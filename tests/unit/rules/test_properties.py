"""Hypothesis properties of the amount rules and the assessment."""
from __future__ import annotations

from dataclasses import replace
from datetime import date

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.verification.assessment import (
    DepartmentRecord,
    assess,
    gap_payment,
    monthly_amount,
)
from tests.unit.rules.helpers import household, member, pid, records

D26 = date(2026, 3, 1)
SETTINGS = settings(max_examples=150, deadline=None)

fen = st.integers(min_value=0, max_value=400_000)
sizes = st.integers(min_value=1, max_value=8)


@SETTINGS
@given(standard=st.integers(0, 300_000), a=fen, b=fen, n=sizes)
def test_gap_payment_bounds_and_monotone(standard, a, b, n):
    lo, hi = sorted((a, b))
    pay_lo, pay_hi = gap_payment(standard, lo, n), gap_payment(standard, hi, n)
    assert 0 <= pay_hi <= pay_lo <= standard * n


@SETTINGS
@given(a=fen, b=fen, n=sizes, area=st.sampled_from(["urban", "rural"]), full=st.booleans(),
       which=st.sampled_from(["dongying_2026", "dongying_2025", "zhifu_2026"]))
def test_monthly_amount_bounds_and_monotone(request_policies, a, b, n, area, full, which):
    policy = request_policies[which]
    lo, hi = sorted((a, b))
    m_lo = monthly_amount(policy, area, lo, n, full_class=full).monthly_fen
    m_hi = monthly_amount(policy, area, hi, n, full_class=full).monthly_fen
    standard = policy.standard_for(area)
    assert 0 <= m_hi <= m_lo <= standard * n


member_spec = st.tuples(st.integers(0, 300_000),              # income
                        st.integers(0, 20_000),               # social insurance
                        st.sampled_from(["full", "partial", "none"]))


@SETTINGS
@given(specs=st.lists(member_spec, min_size=1, max_size=6), bump=st.integers(0, 200_000),
       who=st.integers(0, 5), perm=st.randoms(use_true_random=False),
       area=st.sampled_from(["urban", "rural"]),
       which=st.sampled_from(["dongying_2026", "zhifu_2026"]))   # 据实补差 and 分档发放
def test_assessment_invariants(request_policies, specs, bump, who, perm, area, which):
    policy = request_policies[which]
    region = "370502001001" if which.startswith("dongying") else "370602001001"
    members = [member(i, work_ability=ability) for i, (_, _, ability) in enumerate(specs)]
    rows = [{"id_number": pid(i), "monthly_income_fen": inc, "social_insurance_fen": si}
            for i, (inc, si, _) in enumerate(specs)]

    def run(ms, rs):
        hh = replace(household(ms, area=area), region_code=region)
        return assess(hh, records(policy, {"hrss": rs}), policy, D26)

    base = run(members, rows)
    n = len(members)
    assert 0 <= base.monthly_amount_fen <= policy.standard_for(area) * n
    assert base.outcome in ("eligible", "ineligible")      # every department answered
    for r in base.reasons:                                 # code, rule, Chinese text, figures
        assert r.code and r.rule and r.message_zh and isinstance(r.figures, dict)

    # independent of member order
    order = list(range(n))
    perm.shuffle(order)
    shuffled = run([members[i] for i in order], [rows[i] for i in order])
    assert (shuffled.monthly_amount_fen, shuffled.outcome, shuffled.tier) == (
        base.monthly_amount_fen, base.outcome, base.tier)

    # more income never gives more money
    k = who % n
    richer_rows = [dict(r) for r in rows]
    richer_rows[k]["monthly_income_fen"] += bump
    richer = run(members, richer_rows)
    assert richer.monthly_amount_fen <= base.monthly_amount_fen


@SETTINGS
@given(specs=st.lists(st.integers(0, 200_000), min_size=1, max_size=4),
       missing=st.sets(st.sampled_from(["public_security", "hrss", "housing", "market_regulation",
                                        "tax", "housing_fund", "bank", "medical_insurance"]),
                       min_size=1),
       kind=st.sampled_from(["dibao", "tekun", "low_income", "linshi_jinan", "linshi_zhichu"]),
       which=st.sampled_from(["dongying_2026", "dongying_2025", "zhifu_2026"]),
       single=st.booleans(), unavailable=st.booleans())
def test_missing_department_never_eligible(request_policies, specs, missing, kind, which, single,
                                           unavailable):
    policy = request_policies[which]
    # a 支出型 case also needs medical insurance and education; others only the mandatory list
    required = set(policy.mandatory_departments)
    if kind == "linshi_zhichu":
        required |= set(policy.expenditure_departments)
    missing = set(missing) & required
    assume(missing)
    members = [member(i, born=date(1950, 1, 1), work_ability="none", disability_grade=1,
                      disability_kind="physical") for i in range(len(specs))]
    rows = {"hrss": [{"id_number": pid(i, date(1950, 1, 1)), "monthly_income_fen": v}
                     for i, v in enumerate(specs)]}
    recs = records(policy, rows, skip=() if unavailable else missing,
                   extra=("medical_insurance", "education"))
    if unavailable:   # the department answered "unavailable" instead of not answering at all
        recs = {**recs, **{d: DepartmentRecord(d, (), status="unavailable") for d in missing}}
    hh = household(members, kind=kind,
                   single_person_member_id=members[0].id_number if single else None)
    if which == "zhifu_2026":
        hh = replace(hh, region_code="370602001001")
    a = assess(hh, recs, policy, D26)
    assert a.outcome == "needs_appraisal"
    assert a.monthly_amount_fen == 0 and a.one_off_amount_fen == 0
    assert set(missing) <= set(a.departments_missing)
