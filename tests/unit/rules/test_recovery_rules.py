"""Payment's rules for emergency grants and recoveries (docs/RULES.md §8), as pure functions and
aggregate methods (tests/unit/services/test_recoveries.py drives them through the application)."""

from __future__ import annotations

from datetime import date

import pytest

from lifeline.domain.aggregate import Meta
from lifeline.domain.values import BankAccount
from services.payment.domain import (
    PaymentConflict, Recovery, ReliefGrant, grant_payment_id, overpaid, recovery_id_of,
)

SYSTEM = Meta("system:payment", "system")
AT = "2026-12-01T09:00:00+08:00"
ACCOUNT = BankAccount("RCC", "王小明", "6228***********0001", "sealed==")


def row(payment_id: str, period: str, amount: int, status: str = "settled", kind: str = "monthly",
        settled_on: str | None = None) -> dict:
    return {"payment_id": payment_id, "period": period, "amount_fen": amount, "kind": kind, "status": status,
            "settled_on": settled_on or f"{period}-02"}


def test_a_fraud_recovers_the_settled_payments_from_the_period_it_began_to_the_fen():
    rows = [
        row("E-1-202612", "2026-12", 206_000),                      # before the fraud's month
        row("E-1-202701", "2027-01", 206_000),                      # its month: in, whatever the day
        row("E-1-202702", "2027-02", 150_001, status="returned"),   # came back: nothing was paid
        row("E-1-202703", "2027-03", 150_001, status="instructed"),  # still with the bank: recalled
        row("E-1-202704", "2027-04", 150_001),
        row("E-2-202701", "2027-01", 90_000, kind="one_off", settled_on="2027-01-19"),  # booked the day before
        row("E-3-202701", "2027-01", 70_000, kind="one_off", settled_on="2027-01-20"),  # booked that day
    ]
    lines = overpaid(rows, date(2027, 1, 20))
    assert [p["payment_id"] for p in lines] == ["E-1-202701", "E-3-202701", "E-1-202704"]
    assert sum(p["amount_fen"] for p in lines) == 206_000 + 70_000 + 150_001
    assert overpaid(rows, date(2027, 5, 1)) == []


def test_a_grant_is_held_once_per_reason_paid_once_and_cancelled_if_refused_while_held():
    grant = ReliefGrant.record({
        "grant_id": "ER-0123456789ABCDEF0123", "case_id": "C-1", "region_code": "370502101001",
        "township_code": "370502101", "amount_fen": 200_000, "reason": "火灾", "approval_level": "township",
        "granted_by": "t-1", "post_approval_due_date": "2026-12-08", "granted_at": AT}, ACCOUNT, AT, SYSTEM)
    assert grant.payment == "ER-0123456789ABCDEF0123-202612" == grant_payment_id(grant.grant_id, "2026-12")
    assert len(grant_payment_id("ER-" + "A" * 61, "2026-12")) <= 35  # an EndToEndId, however long the grant id
    assert grant.hold("reserve_fund_balance", "short", AT, SYSTEM)
    assert not grant.hold("reserve_fund_balance", "short again", AT, SYSTEM)
    assert grant.decide_post_approval("refused", "不符合条件", "c-1", AT, SYSTEM)
    assert (grant.status, grant.payable) == ("cancelled", False)
    assert not grant.decide_post_approval("approved", "again", "c-1", AT, SYSTEM)
    with pytest.raises(PaymentConflict) as exc:
        grant.pay(grant.payment, "B-1", AT, SYSTEM)
    assert exc.value.rule == "grant_not_payable"


def test_a_recovery_is_one_per_cause_and_is_never_repaid_below_zero():
    lines = [{"payment_id": "ER-1-202612", "period": "2026-12", "amount_fen": 100_000}]
    recovery = Recovery.open("C-1", "370502101001", "emergency_post_approval_refused", lines, None, "ER-1", AT,
                             SYSTEM)
    assert recovery.recovery_id == recovery_id_of("ER-1") == "RC-ER-1"
    assert recovery.id == Recovery.open("C-1", "370502101001", "emergency_post_approval_refused", [], None,
                                        "ER-1", AT, SYSTEM).id  # the same cause, the same recovery
    assert recovery.repay(60_000, "SK-1", AT, SYSTEM) and not recovery.repay(60_000, "SK-1", AT, SYSTEM)
    with pytest.raises(PaymentConflict) as exc:
        recovery.repay(40_001, "SK-2", AT, SYSTEM)
    assert exc.value.rule == "recovery_balance" and recovery.balance_fen == 40_000
    assert recovery.repay(40_000, "SK-2", AT, SYSTEM) and recovery.balance_fen == 0
