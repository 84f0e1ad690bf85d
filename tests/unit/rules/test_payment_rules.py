"""Payment's rules (docs/RULES.md §8), as pure functions and aggregate methods."""

from __future__ import annotations

from datetime import datetime

import pytest

from lifeline.domain.aggregate import Meta
from lifeline.rules.periods import SHANGHAI
from services.payment.channels import shipped_channel_book
from services.payment.domain import (
    BankBatch, Household, Payment, PaymentConflict, PaymentRun, ReserveFund, amount_for, payment_id_of, status_of,
)
from services.payment.runs import requested_execution_date

OFFICER = Meta("officer-zhang", "county_officer", "370502")
OTHER = Meta("officer-li", "county_officer", "370502")
SYSTEM = Meta("system:payment", "system")


def test_a_payment_is_named_by_entitlement_and_period():
    pid = payment_id_of("E-0123456789ABCDEF0123", "2026-12")
    assert pid == "E-0123456789ABCDEF0123-202612" and len(pid) <= 35  # ISO EndToEndId: Max35Text
    assert Payment.create_id(pid) == Payment.create_id(payment_id_of("E-0123456789ABCDEF0123", "2026-12"))
    assert Payment.create_id(pid) != Payment.create_id(payment_id_of("E-0123456789ABCDEF0123", "2027-01"))


def change(kind: str, period: str, amount: int | None = None) -> dict:
    return {"change": kind, "from_period": period, "monthly_amount_fen": amount}


def test_what_a_monthly_entitlement_pays_follows_its_changes_in_order():
    changes = [change("adjust", "2027-01", 150000), change("suspend", "2027-02"), change("resume", "2027-04"),
               change("terminate", "2027-06")]
    pays = {p: amount_for("monthly", "2026-12", 206000, None, changes, p)
            for p in ("2026-11", "2026-12", "2027-01", "2027-02", "2027-03", "2027-04", "2027-05", "2027-06",
                      "2027-09")}
    assert pays == {"2026-11": 0, "2026-12": 206000, "2027-01": 150000, "2027-02": 0, "2027-03": 0,
                    "2027-04": 150000, "2027-05": 150000, "2027-06": 0, "2027-09": 0}
    assert status_of(changes[:2]) == "suspended" and status_of(changes[:3]) == "active"
    assert status_of(changes) == "terminated"


def test_one_off_relief_pays_once_in_its_period_and_a_recognition_never():
    assert amount_for("one_off", "2026-12", None, 300000, [], "2026-12") == 300000
    assert amount_for("one_off", "2026-12", None, 300000, [], "2027-01") == 0
    assert amount_for("one_off", "2026-12", None, 300000, [change("terminate", "2026-12")], "2026-12") == 0
    assert amount_for("recognition", "2026-12", None, None, [], "2026-12") == 0


def test_a_death_stops_the_household_when_it_is_the_applicant_or_the_only_member():
    household = Household.register("C-1", SYSTEM)
    household.record_members("applicant", ["applicant", "spouse"], SYSTEM)
    assert household.stops_on_death_of("applicant") and not household.stops_on_death_of("spouse")
    alone = Household.register("C-2", SYSTEM)
    alone.record_members("only", ["only"], SYSTEM)
    assert alone.stops_on_death_of("only")


def budget_line(fund: str, needed: int, budget: int | None) -> dict:
    remaining = (budget or 0)
    return {"fund_source": fund, "needed_fen": needed, "budget_fen": budget, "used_fen": 0,
            "remaining_fen": remaining, "exceeds": needed > remaining}


def test_a_run_over_its_budget_waits_for_another_officer():
    run = PaymentRun.start("370502", "2026-12", "2026-12-01T09:00:00+08:00", OFFICER)
    run.plan(2, 412000, {"dibao_fund": {"count": 2, "total_fen": 412000}},
             [budget_line("dibao_fund", 412000, 411999)], [], "2026-12-01T09:00:01+08:00", OFFICER)
    assert run.status == "awaiting_approval"
    with pytest.raises(PaymentConflict) as refused:
        run.approve("2026-12-01T10:00:00+08:00", "追加预算", OFFICER)
    assert refused.value.rule == "four_eyes"
    run.approve("2026-12-01T10:00:00+08:00", "追加预算", OTHER)
    assert run.status == "instructing"
    within = PaymentRun.start("370502", "2027-01", "2027-01-01T09:00:00+08:00", OFFICER)
    within.plan(2, 412000, {"dibao_fund": {"count": 2, "total_fen": 412000}},
                [budget_line("dibao_fund", 412000, 412000)], [], "2027-01-01T09:00:01+08:00", OFFICER)
    assert within.status == "instructing"
    nothing_set = PaymentRun.start("370502", "2027-02", "2027-02-01T09:00:00+08:00", OFFICER)
    nothing_set.plan(1, 1, {"dibao_fund": {"count": 1, "total_fen": 1}}, [budget_line("dibao_fund", 1, None)], [],
                     "2027-02-01T09:00:01+08:00", OFFICER)
    assert nothing_set.status == "awaiting_approval"


def payment(batch_id: str = "B-1") -> Payment:
    state = Payment.instruction(
        entitlement_id="E-1", case_id="C-1", period="2026-12", amount_fen=206000, fund_source="dibao_fund",
        channel="RCC", account_name="王建国", number_sealed="sealed-old", bank_account_ref="RCC:6228****0001",
        region_code="370502101001", run_id="PR-370502-202612", batch_id=batch_id,
        instructed_at="2026-12-01T09:00:00+08:00", meta=SYSTEM.as_dict())
    return Payment._create(Payment.Instructed, id=Payment.create_id(state["payment_id"]), **state)


def test_a_returned_payment_is_held_and_released_once_and_settled_once():
    from lifeline.domain.values import BankAccount

    p = payment()
    assert p.return_("B-OTHER", "AC04", "closed", "M-1", "t", SYSTEM) is False  # not the batch it is in
    assert p.return_("B-1", "AC04", "closed", "M-1", "t", SYSTEM) is True
    assert p.return_("B-1", "AC04", "closed", "M-1", "t", SYSTEM) is False  # the same report again
    account = BankAccount(channel="RCC", account_name="王建国", number_masked="6228****0002", number_sealed="new")
    p.release("B-RL-1", account, "t", SYSTEM)
    with pytest.raises(PaymentConflict) as twice:
        p.release("B-RL-2", account, "t", SYSTEM)
    assert twice.value.rule == "release_only_returned"
    with pytest.raises(PaymentConflict) as wrong:
        p.settle("B-RL-1", 1, "2026-12-02", "S-1", SYSTEM)
    assert wrong.value.rule == "amount_mismatch"
    assert p.settle("B-RL-1", 206000, "2026-12-02", "S-1", SYSTEM) is True
    assert p.settle("B-RL-1", 206000, "2026-12-02", "S-1", SYSTEM) is False
    assert p.status == "settled" and p.number_sealed == "new"
    assert p.request_recall("死亡", "t", SYSTEM) is False  # settled: recovered by the review, not recalled


def test_the_reserve_fund_never_goes_below_zero():
    fund = ReserveFund.open("370502101", OFFICER)
    assert fund.replenish(300000, "T-1", "t", OFFICER) and not fund.replenish(300000, "T-1", "t", OFFICER)
    assert fund.advance(200000, "EM-1-202612", "C-1", "t", OFFICER)
    with pytest.raises(PaymentConflict) as short:
        fund.advance(100001, "EM-2-202612", "C-2", "t", OFFICER)
    assert short.value.rule == "reserve_fund_balance" and fund.balance_fen == 100000
    assert fund.advance(200000, "EM-1-202612", "C-1", "t", OFFICER) is False  # the same advance again


def test_a_file_sent_after_the_cut_off_or_on_a_rest_day_is_executed_the_next_working_day():
    channel = shipped_channel_book().channel("ICBC")  # cut-off 16:00
    before = datetime(2026, 9, 30, 15, 59, tzinfo=SHANGHAI)
    after = datetime(2026, 9, 30, 16, 0, tzinfo=SHANGHAI)
    assert requested_execution_date(channel, before) == "2026-09-30"
    assert requested_execution_date(channel, after) == "2026-10-08"  # National Day: Oct 1-7 rest days
    assert requested_execution_date(channel, datetime(2026, 10, 10, 9, 0, tzinfo=SHANGHAI)) == "2026-10-10"  # 调休


def test_a_bank_batch_carries_at_least_one_payment_and_its_control_sum():
    batch = BankBatch.assemble(batch_id="B-1", run_id="PR-1", county_code="370502", period="2026-12",
                               channel="RCC", purpose="monthly", payments=[("P-1", 100), ("P-2", 250)],
                               requested_execution_date="2026-12-01", assembled_at="t", by=SYSTEM)
    assert (batch.count, batch.total_fen) == (2, 350)
    with pytest.raises(ValueError):
        BankBatch.assemble(batch_id="B-2", run_id="PR-1", county_code="370502", period="2026-12", channel="RCC",
                           purpose="monthly", payments=[], requested_execution_date="2026-12-01", assembled_at="t",
                           by=SYSTEM)
