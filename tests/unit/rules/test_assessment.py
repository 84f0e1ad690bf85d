from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timezone

import pytest

from lifeline.rules.periods import SHANGHAI
from services.verification.assessment import (
    DepartmentRecord,
    Member,
    assess,
    assess_with_book,
    gap_payment,
    monthly_amount,
    per_capita_income,
)
from lifeline.rules.policy import PolicyError
from tests.unit.rules.helpers import household, income_rows, member, pid, records

D26 = date(2026, 3, 1)


def run(policy, hh, rows=None, **kw):
    return assess(hh, records(policy, rows, **kw), policy, D26)


def one(policy, income, *, area="urban", kind="dibao", ability="partial", **kw):
    hh = household([member(1, work_ability=ability)], area=area, kind=kind, **kw)
    return run(policy, hh, income_rows([(pid(1), income)]))


# -- the amount rules -------------------------------------------------------------------------
@pytest.mark.parametrize("standard, pci, n, amount", [
    (103000, 0, 1, 103000), (103000, 50000, 3, 159000), (103000, 103000, 2, 0),
    (103000, 200000, 2, 0), (80000, 79999, 4, 4),
])
def test_gap_payment(standard, pci, n, amount):
    assert gap_payment(standard, pci, n) == amount


def test_per_capita_rounds_down():
    assert per_capita_income(100001, 3) == 33333
    assert per_capita_income(100002, 3) == 33334


@pytest.mark.parametrize("bad", [(-1, 0, 1), (103000, -1, 1), (103000, 0, 0), (103000.0, 0, 1)])
def test_gap_payment_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        gap_payment(*bad)


# -- boundaries with the example county's own numbers (东营区 2026: urban 103000, ×1.5) ---------
@pytest.mark.parametrize("income, outcome, recommended, tier, amount", [
    (0, "eligible", "dibao", "B", 103000),
    (41200, "eligible", "dibao", "B", 61800),      # gap 61800 = 0.6 × standard: B edge, inclusive
    (41201, "eligible", "dibao", "C", 61799),
    (72100, "eligible", "dibao", "C", 49000),      # gap 30900 = 0.3 × standard: C; topped up
    (72101, "eligible", "dibao", "D", 49000),
    (54000, "eligible", "dibao", "C", 49000),      # gap 49000 = the minimum top-up exactly
    (53999, "eligible", "dibao", "C", 49001),
    (102999, "eligible", "dibao", "D", 49000),     # gap 1 fen, raised to the 490-yuan minimum
    (103000, "ineligible", "low_income", None, 0),  # exactly at the standard: not below it
    (154500, "ineligible", "low_income", None, 0),  # exactly 1.5×: still low-income (以内)
    (154501, "ineligible", None, None, 0),
])
def test_dibao_urban_boundaries(dongying_2026, income, outcome, recommended, tier, amount):
    a = one(dongying_2026, income)
    assert (a.outcome, a.recommended_assistance_type, a.tier, a.monthly_amount_fen) == (
        outcome, recommended, tier, amount)
    assert a.standard_applied_fen == 103000 and a.per_capita_income_fen == income


@pytest.mark.parametrize("income, amount", [(0, 86000), (85999, 35500), (86000, 0), (50500, 35500),
                                            (50499, 35501)])
def test_dibao_rural_uses_rural_standard_and_top_up(dongying_2026, income, amount):
    a = one(dongying_2026, income, area="rural")
    assert a.monthly_amount_fen == amount and a.standard_applied_fen == 86000


@pytest.mark.parametrize("income, kind, outcome, recommended", [
    (154500, "low_income", "eligible", "low_income"),
    (154501, "low_income", "ineligible", None),
    (103000, "low_income", "eligible", "low_income"),
    (102999, "low_income", "eligible", "dibao"),
])
def test_low_income_line_1_5(dongying_2026, income, kind, outcome, recommended):
    a = one(dongying_2026, income, kind=kind)
    assert (a.outcome, a.recommended_assistance_type, a.monthly_amount_fen) == (outcome, recommended, 0)


@pytest.mark.parametrize("income, outcome", [(220000, "eligible"), (220001, "ineligible")])
def test_low_income_line_2x_where_configured(zhifu_2026, income, outcome):
    hh = household([member(1)], kind="low_income")
    hh = hh.__class__(**{**hh.__dict__, "region_code": "370602001"})
    a = assess(hh, records(zhifu_2026, income_rows([(pid(1), income)])), zhifu_2026, D26)
    assert a.outcome == outcome


@pytest.mark.parametrize("income, tier, amount", [
    (44000, "B", 90000),     # gap 66000 = 0.6 × 110000
    (44001, "C", 60000),
    (77000, "C", 60000),     # gap 33000 = 0.3 × 110000
    (77001, "D", 30000),
    (109999, "D", 30000),
    (110000, None, 0),
])
def test_tier_payment_edges(zhifu_2026, income, tier, amount):
    hh = household([member(1)])
    hh = hh.__class__(**{**hh.__dict__, "region_code": "370602001"})
    a = assess(hh, records(zhifu_2026, income_rows([(pid(1), income)])), zhifu_2026, D26)
    assert (a.tier, a.monthly_amount_fen) == (tier, amount)


def test_class_a_full_standard(dongying_2026):
    hh = household([member(1, work_ability="none"), member(2, work_ability="none")])
    a = run(dongying_2026, hh, income_rows([(pid(1), 90000)]))
    assert (a.tier, a.monthly_amount_fen) == ("A", 206000)


def test_rounding_rule_multi_member(dongying_2026):
    hh = household([member(1), member(2), member(3)])
    a = run(dongying_2026, hh, income_rows([(pid(1), 100001)]))
    # per-capita income 33333.67 rounds down to 33333; (103000 − 33333) × 3
    assert a.per_capita_income_fen == 33333 and a.monthly_amount_fen == 209001


def test_tax_and_social_insurance_deducted(dongying_2026):
    rows = {"tax": [{"id_number": pid(1), "monthly_income_fen": 150000, "income_tax_fen": 2000}],
            "hrss": [{"id_number": pid(1), "social_insurance_fen": 15000}]}
    a1 = run(dongying_2026, household([member(1)]), rows)
    assert a1.per_capita_income_fen == 133000 and a1.outcome == "ineligible"
    a2 = run(dongying_2026, household([member(1), member(2)]), rows)
    assert a2.per_capita_income_fen == 66500 and a2.outcome == "eligible"
    assert a2.monthly_amount_fen == 49000 * 2   # gap 36500 raised to the 490-yuan minimum


def test_counted_members_and_obligor_support(dongying_2026):
    obligor = member(5, co_resident=False, support_obligor=True, support_paid_fen=20000)
    away = member(6, co_resident=False)            # e.g. military service: not counted, not used
    hh = household([member(1), member(2), obligor, away])
    rows = income_rows([(pid(1), 60000), (pid(5), 500000), (pid(6), 300000)])
    a = run(dongying_2026, hh, rows)
    assert a.household_size == 2
    assert a.per_capita_income_fen == (60000 + 20000) // 2
    assert any(r.code == "OBLIGOR_CAN_SUPPORT" and r.severity == "warning" for r in a.reasons)


def test_declared_income_above_verified_is_used(dongying_2026):
    a = run(dongying_2026, household([member(1)], declared_monthly_income_fen=110000))
    assert a.per_capita_income_fen == 110000 and a.outcome == "ineligible"


def test_under_declared_income_is_a_warning(dongying_2026):
    a = run(dongying_2026, household([member(1)], declared_monthly_income_fen=10000),
            income_rows([(pid(1), 50000)]))
    assert a.outcome == "eligible"
    assert [w.code for w in a.warnings] == ["INCOME_UNDER_DECLARED"]


@pytest.mark.parametrize("assets, outcome", [(2472000 * 2, "eligible"), (2472000 * 2 + 1, "ineligible")])
def test_asset_limit_per_capita(dongying_2026, assets, outcome):
    rows = {"bank": [{"id_number": pid(1), "assets_fen": assets}]}
    a = run(dongying_2026, household([member(1), member(2)]), rows)
    assert a.outcome == outcome and a.assets_total_fen == assets
    assert a.assets_within_limit is (outcome == "eligible") and a.asset_limit_total_fen == 4944000


# -- missing departments -------------------------------------------------------------------------
@pytest.mark.parametrize("skip", [("bank",), ("tax", "hrss"), ("public_security",)])
def test_missing_department_needs_appraisal(dongying_2026, skip):
    a = run(dongying_2026, household([member(1)]), {}, skip=skip)   # zero income elsewhere
    assert a.outcome == "needs_appraisal" and a.monthly_amount_fen == 0
    assert set(a.departments_missing) == set(skip)
    assert not set(skip) & set(a.departments_answered)
    blocking = [r for r in a.reasons if r.code == "DEPARTMENTS_MISSING"]
    assert blocking and blocking[0].figures["provisional_outcome"] == "eligible"


def test_unavailable_answer_counts_as_missing(dongying_2026):
    recs = records(dongying_2026)
    recs["bank"] = DepartmentRecord("bank", (), status="unavailable")
    a = assess(household([member(1)]), recs, dongying_2026, D26)
    assert a.outcome == "needs_appraisal" and a.departments_missing == ("bank",)


# -- single-person inclusion (单人户保) ---------------------------------------------------------
@pytest.mark.parametrize("kw, included", [
    ({"disability_grade": 1, "disability_kind": "physical"}, True),
    ({"disability_grade": 2, "disability_kind": "visual"}, True),
    ({"disability_grade": 3, "disability_kind": "intellectual"}, True),
    ({"disability_grade": 3, "disability_kind": "mental"}, True),
    ({"disability_grade": 3, "disability_kind": "physical"}, False),
    ({"disability_grade": 4, "disability_kind": "mental"}, False),
    ({"serious_illness": True}, True),
    ({}, False),
])
def test_single_person_inclusion(dongying_2026, kw, included):
    disabled = member(3, work_ability="none", **kw)
    hh = household([member(1), member(2), disabled], single_person_member_id=disabled.id_number)
    # family per capita 120000: above the standard, within 1.5× (154500) — a low-income family
    a = run(dongying_2026, hh, income_rows([(pid(1), 360000)]))
    if included:
        assert (a.outcome, a.household_size, a.monthly_amount_fen, a.tier) == (
            "eligible", 1, 103000, "A")
    else:
        assert a.outcome == "ineligible"
        assert any(r.code == "SINGLE_PERSON_NOT_QUALIFIED" for r in a.reasons)


def test_single_person_needs_low_income_family(dongying_2026):
    disabled = member(3, disability_grade=1, disability_kind="physical")
    hh = household([member(1), disabled], single_person_member_id=disabled.id_number)
    a = run(dongying_2026, hh, income_rows([(pid(1), 309001)]))   # pci 154500.5 > 1.5×
    assert a.outcome == "ineligible"
    assert any(r.code == "FAMILY_NOT_LOW_INCOME" for r in a.reasons)


def test_single_person_suggested(dongying_2026):
    hh = household([member(1), member(2), member(3, serious_illness=True)])
    a = run(dongying_2026, hh, income_rows([(pid(1), 360000)]))
    assert a.recommended_assistance_type == "low_income"
    assert any(r.code == "SINGLE_PERSON_POSSIBLE" for r in a.reasons)


# -- expenditure-type hardship (支出型) ---------------------------------------------------------
def test_zhichu_deducts_rigid_expenditure(dongying_2026):
    rows = {**income_rows([(pid(1), 220000)]),
            "medical_insurance": [{"id_number": pid(2), "medical_expense_fen": 50000}],
            "education": [{"id_number": pid(2), "education_expense_fen": 10000}]}
    hh = household([member(1), member(2)], kind="linshi_zhichu")
    a = run(dongying_2026, hh, rows)
    assert a.outcome == "eligible" and a.recommended_assistance_type == "linshi_zhichu"
    assert a.per_capita_income_fen == 80000            # (220000 − 60000) / 2
    assert a.one_off_amount_fen == (103000 - 80000) * 2 * 3 and a.approval_level == "township"
    assert a.monthly_amount_fen == 0


def test_zhichu_missing_medical_insurance(dongying_2026):
    rows = income_rows([(pid(1), 220000)])
    hh = household([member(1), member(2)], kind="linshi_zhichu")
    a = run(dongying_2026, hh, rows, skip=("medical_insurance",), extra=("education",))
    assert a.outcome == "needs_appraisal" and "medical_insurance" in a.departments_missing


def test_zhichu_without_expense_not_eligible(dongying_2026):
    hh = household([member(1), member(2)], kind="linshi_zhichu")
    a = run(dongying_2026, hh, income_rows([(pid(1), 220000)]),
            extra=("medical_insurance", "education"))
    assert a.outcome == "ineligible"


# -- 特困 ----------------------------------------------------------------------------------------
def test_tekun(dongying_2026):
    elder = member(1, born=date(1950, 1, 1), work_ability="none")
    a = run(dongying_2026, household([elder], kind="tekun"))
    assert (a.outcome, a.monthly_amount_fen, a.standard_applied_fen) == ("eligible", 133900, 133900)
    son = member(2, co_resident=False, support_obligor=True)
    b = run(dongying_2026, household([elder, son], kind="tekun"))
    assert b.outcome == "ineligible" and b.recommended_assistance_type == "dibao"
    c = run(dongying_2026, household([member(3, work_ability="none")], kind="tekun"))
    assert c.outcome == "ineligible"   # 46 years old, not disabled


@pytest.mark.parametrize("born, limit, outcome", [
    (date(2008, 6, 1), 18, "eligible"),     # 17 on 2026-03-01: covered up to 18 (seed 002)
    (date(2008, 3, 1), 18, "ineligible"),   # 18 that very day: not a minor any more
    (date(2008, 3, 2), 18, "eligible"),     # 18 tomorrow
    (date(2008, 6, 1), 16, "ineligible"),   # a county still at the national 16
    (date(2010, 6, 1), 16, "eligible"),     # 15
])
def test_tekun_minor_age_limit_from_the_policy(dongying_2026, born, limit, outcome):
    policy = dataclasses.replace(dongying_2026, tekun_minor_age_limit=limit)
    orphan = member(5, born=born, work_ability="none")
    a = run(policy, household([orphan], kind="tekun"))
    assert (a.outcome, a.monthly_amount_fen) == (outcome, 133900 if outcome == "eligible" else 0)
    if outcome == "ineligible":
        [r] = [r for r in a.reasons if r.code == "TEKUN_MEMBER_NOT_QUALIFIED"]
        assert r.figures["minor_age_limit"] == limit and f"未满{limit}周岁" in r.message_zh


# -- 急难型 caps and approval level ---------------------------------------------------------------
@pytest.mark.parametrize("asked, amount, level", [
    (250000, 250000, "township"), (300000, 300000, "township"), (300001, 300001, "county"),
    (2000000, 1500000, "county"),
])
def test_jinan_caps(dongying_2026, asked, amount, level):
    a = run(dongying_2026, household([member(1)], kind="linshi_jinan", requested_amount_fen=asked))
    assert (a.outcome, a.one_off_amount_fen, a.approval_level) == ("eligible", amount, level)


# -- policy in force on the decision date ---------------------------------------------------------
@pytest.mark.parametrize("decided, outcome, standard", [
    (date(2025, 12, 31), "ineligible", 98000), (date(2026, 1, 1), "eligible", 103000)])
def test_policy_by_decision_date(book, decided, outcome, standard):
    p = book.policy_for("370502", decided)
    a = assess_with_book(household([member(1)]), records(p, income_rows([(pid(1), 100000)])),
                         book, decided)
    assert (a.outcome, a.standard_applied_fen) == (outcome, standard)
    assert a.policy_effective_from == p.effective_from


def test_assess_refuses_wrong_policy(dongying_2026):
    with pytest.raises(PolicyError, match="not in force"):
        assess(household([member(1)]), records(dongying_2026), dongying_2026, date(2025, 12, 31))
    hh = household([member(1)])
    hh = hh.__class__(**{**hh.__dict__, "region_code": "370602001"})
    with pytest.raises(PolicyError, match="county"):
        assess(hh, records(dongying_2026), dongying_2026, D26)


def test_to_dict_is_json(dongying_2026):
    a = one(dongying_2026, 50000)
    data = json.loads(json.dumps(a.to_dict(), ensure_ascii=False))
    assert data["outcome"] == "eligible" and data["reasons"][0]["message_zh"]
    for r in data["reasons"]:
        assert set(r) >= {"code", "rule", "message_zh", "figures"}


def test_bad_records_refused():
    with pytest.raises(ValueError):
        DepartmentRecord("civil_affairs")
    with pytest.raises(ValueError):
        DepartmentRecord("bank", ({"id_number": "x", "assets_fen": -1},))
    with pytest.raises(ValueError):
        DepartmentRecord("bank", ({"id_number": "x", "assets_fen": 1.5},))
    with pytest.raises(ValueError):
        DepartmentRecord("bank", ({"id_number": "x", "salary_fen": 1},))
    # descriptive keys are ignored, not refused
    assert DepartmentRecord("bank", ({"id_number": "x", "name": "张三"},)).answered


def test_monthly_amount_direct(dongying_2026):
    amt = monthly_amount(dongying_2026, "urban", 100000, 2)
    assert (amt.monthly_fen, amt.tier, amt.topped_up) == (98000, "D", True)


def test_lower_case_x_matches_department_rows(dongying_2026):
    from lifeline.rules.ids import make_resident_id
    number = next(n for n in (make_resident_id("370502", date(1980, 1, 1), s, False)
                              for s in range(500)) if n.endswith("X"))
    hh = household([member(1), Member(id_number=number.lower(), name="x")])
    a = run(dongying_2026, hh, {"hrss": [{"id_number": number, "monthly_income_fen": 300000}]})
    assert a.per_capita_income_fen == 150000



# -- the decision date is the Beijing business date of the decision moment -------------------------
@pytest.mark.parametrize("moment, standard, effective", [
    # 23:30 Beijing time on 31 December (15:30 UTC): still a 2025 decision, the 2025 standard
    (datetime(2025, 12, 31, 23, 30, tzinfo=SHANGHAI), 98000, date(2025, 7, 1)),
    (datetime(2025, 12, 31, 15, 30, tzinfo=timezone.utc), 98000, date(2025, 7, 1)),
    # 16:30 UTC on 31 December is already 1 January in Beijing: the raised 2026 standard
    (datetime(2025, 12, 31, 16, 30, tzinfo=timezone.utc), 103000, date(2026, 1, 1)),
])
def test_decision_moment_read_in_shanghai(book, moment, standard, effective):
    a = assess_with_book(household([member(1)]), records(book.policy_for("370502", effective)),
                         book, moment)
    assert (a.standard_applied_fen, a.policy_effective_from) == (standard, effective)
    assert a.decision_date == moment.astimezone(SHANGHAI).date()


def test_naive_decision_moment_refused(dongying_2026):
    with pytest.raises(ValueError, match="timezone-aware"):
        assess(household([member(1)]), records(dongying_2026), dongying_2026,
               datetime(2026, 3, 1, 10, 0))


def test_reasons_name_rule_and_figures(dongying_2026):
    """Each reason: a machine code, the rule, a Chinese message, and the figures it used."""
    a = one(dongying_2026, 54000)
    by_code = {r.code: r for r in a.reasons}
    below = by_code["INCOME_BELOW_STANDARD"]
    assert below.rule == "eligibility.dibao"
    assert (below.figures["per_capita_income_fen"], below.figures["standard_fen"],
            below.figures["members"]) == (54000, 103000, 1)
    assert below.figures["low_income_line_fen"] == 154500
    amount = by_code["AMOUNT"]
    assert (amount.figures["gap_per_capita_fen"], amount.figures["min_top_up_fen"],
            amount.figures["monthly_amount_fen"]) == (49000, 49000, 49000)
    for r in a.reasons:
        assert r.code.isupper() and r.rule and any("\u4e00" <= ch <= "\u9fff" for ch in r.message_zh)
