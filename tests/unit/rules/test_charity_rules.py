"""Charity's rules (docs/RULES.md §9): a fund's ledger never overdrawn, donations once per
reference, allocations within the criteria and the caps, a need fulfilled by what was
disbursed, as aggregate methods (services/charity/domain.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifeline.domain.aggregate import Meta
from services.charity.domain import Criteria, Fund, FundRuleViolation, Need, NeedRuleViolation, household_type_of

OFFICER = Meta("county-001", "county_officer", "370502")
VILLAGE = "370502101001"
ON = "2026-11-25"
AT = "2026-11-25T10:00:00+08:00"


def fund(balance: int = 100_000, **criteria) -> Fund:
    details = {"need_categories": ["medical"], "regions": ["370502"],
               "household_types": ["dibao", "tekun", "low_income", "none"], "per_case_cap_fen": None,
               "per_household_year_cap_fen": None, "valid_from": None, "valid_until": None, **criteria}
    return Fund.register("F-1", name="救急难专项基金", kind="special", donor=None, region_code="370502",
                         balance_fen=balance, registered_at=AT, by=OFFICER, **details)


def allocate(f: Fund, allocation_id: str, amount: int, need_id: str = "N-1", case_id: str = "C-1",
             category: str = "medical", region: str = VILLAGE, household_type: str = "dibao", on: str = ON) -> None:
    f.allocate(allocation_id=allocation_id, need_id=need_id, case_id=case_id, need_category=category,
               region_code=region, household_type=household_type, amount_fen=amount, on=on, allocated_at=AT,
               by=OFFICER)


def replayed(f: Fund) -> Fund:
    copy = None
    for event in f.collect_events():
        copy = event.mutate(copy)
    return copy


# --- never overdrawn ------------------------------------------------------------------------------
STEPS = st.lists(st.one_of(
    st.tuples(st.just("donate"), st.integers(0, 6), st.integers(1, 50_000)),     # reference, amount
    st.tuples(st.just("allocate"), st.integers(0, 9), st.integers(1, 80_000)),   # need, amount
    st.tuples(st.just("release"), st.integers(0, 40), st.just(0)),               # which allocation
    st.tuples(st.just("disburse"), st.integers(0, 40), st.just(0)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(opening=st.integers(0, 200_000), steps=STEPS, case_cap=st.one_of(st.none(), st.integers(1, 60_000)),
       year_cap=st.one_of(st.none(), st.integers(1, 120_000)))
def test_a_fund_is_never_overdrawn_whatever_the_interleaving(opening, steps, case_cap, year_cap):
    """Any interleaving of donations, allocations, releases and disbursements: what is committed
    never exceeds the balance, the balance is the opening balance plus donations less what was
    disbursed, every refused step changes nothing, and the events rebuild the same ledger."""
    f = fund(opening, per_case_cap_fen=case_cap, per_household_year_cap_fen=year_cap)
    donated = disbursed = 0
    given_to: dict[str, int] = {}  # need -> allocated or disbursed, not released
    open_allocations: dict[str, int] = {}
    made: list[str] = []
    for n, (op, key, amount) in enumerate(steps):
        before = (f.balance_fen, f.committed_fen, f.version)
        try:
            if op == "donate":
                if f.receive_donation(donation_id=f"D-{key}", reference=f"REF-{key}", donor="某人", amount_fen=amount,
                                      received_on=ON, recorded_at=AT, by=OFFICER):
                    donated += amount
            elif op == "allocate":
                need = f"N-{key}"
                allocate(f, f"A-{n}", amount, need_id=need, case_id=f"C-{key % 3}")
                made.append(f"A-{n}")
                open_allocations[f"A-{n}"] = amount
                given_to[need] = given_to.get(need, 0) + amount
            elif made:
                allocation_id = made[key % len(made)]
                if op == "release":
                    f.release(allocation_id, "不再需要", AT, OFFICER)
                    need = f.allocations[allocation_id]["need_id"]
                    given_to[need] -= open_allocations[allocation_id]
                else:
                    f.disburse(allocation_id, f"ZF-{n}", ON, AT, OFFICER)
                    disbursed += open_allocations[allocation_id]
                del open_allocations[allocation_id]
        except FundRuleViolation:
            assert (f.balance_fen, f.committed_fen, f.version) == before  # refused: nothing changed
        assert 0 <= f.committed_fen <= f.balance_fen
        assert f.balance_fen == opening + donated - disbursed
        assert f.committed_fen == sum(open_allocations.values())
        assert f.available_fen == f.balance_fen - f.committed_fen
        if case_cap is not None:
            assert all(v <= case_cap for v in given_to.values())
    if year_cap is not None:
        assert all(v <= year_cap for v in f.used_by_household_year.values())
    copy = replayed(f)
    assert (copy.balance_fen, copy.committed_fen, copy.allocations) == (f.balance_fen, f.committed_fen, f.allocations)


def test_an_allocation_larger_than_available_is_refused_naming_what_is_left():
    f = fund(100_000)
    allocate(f, "A-1", 60_000)
    with pytest.raises(FundRuleViolation) as refused:
        allocate(f, "A-2", 40_001, need_id="N-2")
    assert (refused.value.rule, refused.value.available_fen) == ("no_available_balance", 40_000)
    allocate(f, "A-2", 40_000, need_id="N-2")
    assert (f.committed_fen, f.available_fen) == (100_000, 0)


# --- donations ------------------------------------------------------------------------------------
def test_a_donation_counts_once_per_reference_and_never_after_the_fund_expired():
    f = fund(0, valid_until="2026-12-31")
    assert f.receive_donation(donation_id="D-1", reference="R-1", donor="某公司", amount_fen=5_000, received_on=ON,
                              recorded_at=AT, by=OFFICER)
    assert not f.receive_donation(donation_id="D-1", reference="R-1", donor="某公司", amount_fen=5_000,
                                  received_on=ON, recorded_at=AT, by=OFFICER)
    with pytest.raises(FundRuleViolation) as other_amount:
        f.receive_donation(donation_id="D-1", reference="R-1", donor="某公司", amount_fen=6_000, received_on=ON,
                           recorded_at=AT, by=OFFICER)
    with pytest.raises(FundRuleViolation) as expired:
        f.receive_donation(donation_id="D-2", reference="R-2", donor="某公司", amount_fen=1, received_on="2027-01-01",
                           recorded_at=AT, by=OFFICER)
    with pytest.raises(ValueError):
        f.receive_donation(donation_id="D-3", reference="R-3", donor="某公司", amount_fen=0, received_on=ON,
                           recorded_at=AT, by=OFFICER)
    assert (other_amount.value.rule, expired.value.rule, f.balance_fen) == ("donation_reference", "expired", 5_000)


# --- criteria and caps ----------------------------------------------------------------------------
def test_a_fund_helps_only_the_needs_its_criteria_fit_naming_the_first_that_fails():
    c = Criteria(need_categories=frozenset({"medical"}), regions=("370502101", "370600"),
                 household_types=frozenset({"dibao", "tekun"}), per_case_cap_fen=None, per_household_year_cap_fen=None,
                 valid_from="2026-01-01", valid_until="2026-12-31")
    assert c.excludes("medical", VILLAGE, "dibao", ON) is None
    assert c.excludes("medical", "370602001001", "tekun", ON) is None      # the prefecture 3706, any depth
    assert c.excludes("education", VILLAGE, "dibao", ON) == "need_category"
    assert c.excludes("medical", "370502102001", "dibao", ON) == "region"
    assert c.excludes("medical", VILLAGE, "none", ON) == "household_type"
    assert c.excludes("medical", VILLAGE, "dibao", "2025-12-31") == "not_yet_valid"
    assert c.excludes("medical", VILLAGE, "dibao", "2027-01-01") == "expired"
    assert [household_type_of(t) for t in ("dibao", "tekun", "low_income", "linshi_jinan", None)] == [
        "dibao", "tekun", "low_income", "none", "none"]
    f = fund(100_000, household_types=["tekun"])
    with pytest.raises(FundRuleViolation) as refused:
        allocate(f, "A-1", 1)
    assert (refused.value.rule, f.committed_fen) == ("household_type", 0)


def test_the_caps_count_this_need_and_this_household_this_calendar_year():
    f = fund(1_000_000, per_case_cap_fen=30_000, per_household_year_cap_fen=50_000)
    allocate(f, "A-1", 30_000, need_id="N-1", case_id="C-1")
    with pytest.raises(FundRuleViolation) as case_cap:
        allocate(f, "A-2", 1, need_id="N-1", case_id="C-1")
    allocate(f, "A-3", 20_000, need_id="N-2", case_id="C-1")
    with pytest.raises(FundRuleViolation) as year_cap:
        allocate(f, "A-4", 1, need_id="N-3", case_id="C-1")
    allocate(f, "A-5", 30_000, need_id="N-4", case_id="C-1", on="2027-01-04")   # a new year
    f.release("A-3", "医保已报销", AT, OFFICER)                                  # released: counts no more
    allocate(f, "A-6", 20_000, need_id="N-3", case_id="C-1")
    assert (case_cap.value.rule, year_cap.value.rule) == ("per_case_cap", "per_household_year_cap")
    assert f.room_for("N-9", "C-1", 2026) == (0, "per_household_year_cap")
    assert f.room_for("N-9", "C-2", 2026) == (30_000, "per_case_cap")


# --- needs ------------------------------------------------------------------------------------------
def need(amount: int = 300_000) -> Need:
    return Need.open_for(referral_id="R-1", case_id="C-1", need_category="medical", amount_asked_fen=amount,
                         region_code=VILLAGE, urgency="urgent", due_date="2026-12-05", consent_to_share=True,
                         household_type="dibao", name_masked="王*明", members_count=3, opened_at=AT, by=OFFICER)


def test_a_need_never_gets_more_than_it_asked_and_is_fulfilled_when_disbursements_cover_it():
    n = need(300_000)
    n.record_allocation("A-1", "F-1", 200_000, OFFICER)
    with pytest.raises(NeedRuleViolation) as more:
        n.record_allocation("A-2", "F-2", 100_001, OFFICER)
    n.record_allocation("A-2", "F-2", 100_000, OFFICER)
    n.close_allocation("A-1", "released", AT, OFFICER)
    assert (more.value.rule, n.still_needed_fen, n.status) == ("more_than_needed", 200_000, "open")
    n.record_allocation("A-3", "F-1", 200_000, OFFICER)
    n.close_allocation("A-2", "disbursed", AT, OFFICER)
    assert n.status == "open"
    n.close_allocation("A-3", "disbursed", AT, OFFICER)
    assert (n.status, n.disbursed_fen, n.still_needed_fen) == ("fulfilled", 300_000, 0)
    fulfilled = [e for e in n.collect_events() if isinstance(e, Need.Fulfilled)]
    assert [(e.by, e.amount_fen) for e in fulfilled] == [("funds", 300_000)]
    with pytest.raises(NeedRuleViolation) as done:
        n.record_allocation("A-4", "F-1", 1, OFFICER)
    assert done.value.rule == "need_fulfilled"


# --- matching ---------------------------------------------------------------------------------------
def test_a_need_is_split_across_the_fitting_funds_expiring_soonest_then_narrowest_then_largest():
    """The ranking (services/charity/matching.py): validity ending soonest, then the narrowest
    criteria, then the largest available; each gives what it can; every other fund is explained
    by the criterion that excluded it."""
    from services.charity.matching import FundView, Matcher, NeedView

    def view(fund_id: str, available: int, regions=("370502",), until=None, categories=("medical",)) -> FundView:
        return FundView(fund_id, fund_id, Criteria(
            need_categories=frozenset(categories), regions=tuple(regions),
            household_types=frozenset({"dibao", "tekun", "low_income", "none"}), per_case_cap_fen=None,
            per_household_year_cap_fen=None, valid_from=None, valid_until=until), available)

    funds = [view("F-province", 900_000, regions=("370000",)), view("F-county-big", 80_000),
             view("F-county-small", 20_000), view("F-township", 30_000, regions=("370502101",)),
             view("F-expiring", 40_000, regions=("370000",), until="2026-12-31"),
             view("F-school", 900_000, categories=("education",))]
    matcher = Matcher(funds, ON)
    need_view = NeedView("N-1", "C-1", "medical", VILLAGE, "dibao", "urgent", "2026-12-05", AT, 200_000, {}, {})
    proposal = matcher.propose(need_view)
    assert [(p.fund_id, p.amount_fen, p.limited_by) for p in proposal.portions] == [
        ("F-expiring", 40_000, "no_available_balance"), ("F-township", 30_000, "no_available_balance"),
        ("F-county-big", 80_000, "no_available_balance"), ("F-county-small", 20_000, "no_available_balance"),
        ("F-province", 30_000, "need")]
    assert proposal.shortfall_fen == 0
    assert {e.fund_id: e.criterion for e in matcher.explain(need_view, proposal)} == {"F-school": "need_category"}
