"""Emergency relief intake grants, paid at once from the township's reserve fund (or held until
the fund holds it), and recoveries (追回): of a grant whose post-approval was refused after it was
paid, and of what a recorded fraud made the household be overpaid. The real payment application
on SQLite files, with the fixed clock, the run engine and the bank's answers of
test_payment_runs' `World`; the consumed events as intake and verification publish them."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.iso20022.pain001 import parse_pain001
from lifeline.settings import Settings
from services.payment.bootstrap import SPEC
from services.payment.domain import (
    Payment, PaymentConflict, Recovery, ReliefGrant, ReserveFund, overpaid, payment_id_of, recovery_id_of,
)
from services.payment.runs import Jobs

from . import cloud, log_length, new_case_id
from .test_payment_runs import CHANNELS_YAML, COUNTY, OFFICER, TOWNSHIP, VILLAGE, FakeBank, World, submit_all

NOW = "2026-12-01T09:00:00+08:00"
CASEWORKER = Meta("caseworker-001", "caseworker", TOWNSHIP)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


# --- the consumed events, as intake and verification publish them -----------------------------
def grant_data(w: World, case_id: str, amount_fen: int, *, number: str = "6222021234567890123",
               granted_at: str = NOW, grant_id: str | None = None) -> dict[str, Any]:
    """EmergencyReliefGranted v1: the account sealed with the deployment's sealer."""
    return {
        "grant_id": grant_id or f"ER-{uuid.uuid4().hex[:20].upper()}", "case_id": case_id, "region_code": VILLAGE,
        "township_code": TOWNSHIP, "amount_fen": amount_fen, "reason": "火灾致住房损毁，先行救助",
        "approval_level": "township", "granted_by": "officer-zhao", "bank_account": w.sealed("ICBC", number, "李红"),
        "post_approval_due_date": "2026-12-08", "granted_at": granted_at,
    }


def grant(w: World, case_id: str, amount_fen: int, **kw: Any) -> dict[str, Any]:
    data = grant_data(w, case_id, amount_fen, **kw)
    assert w.deliver("EmergencyReliefGranted", data, case_id, source="lifeline/intake")
    return data


def post_approval(w: World, granted: dict[str, Any], decision: str) -> Any:
    """EmergencyReliefPostApprovalDecided v1 (not delivered)."""
    return cloud("EmergencyReliefPostApprovalDecided", {
        "grant_id": granted["grant_id"], "case_id": granted["case_id"], "region_code": granted["region_code"],
        "township_code": granted["township_code"], "decision": decision,
        "reason": "经核查不符合临时救助条件" if decision == "refused" else "符合急难型临时救助条件",
        "amount_fen": granted["amount_fen"], "decided_by": "county-001", "decided_at": "2026-12-07T10:00:00+08:00",
    }, subject=granted["case_id"], source="lifeline/intake")


def fraud(case_id: str, benefit_id: str, since: str, terminated_from: str = "2027-05") -> Any:
    """FraudRecorded v1 (not delivered)."""
    return cloud("FraudRecorded", {
        "case_id": case_id, "benefit_id": benefit_id, "benefit_type": "dibao", "region_code": VILLAGE,
        "applicant_name_masked": "王*明", "applicant_id_number_masked": "370502********0012",
        "fraud_kinds": ["concealment"], "fraud_since": since, "terminated_from_period": terminated_from,
        "reported_by": "county-001", "confirmed_by": "county-002", "recorded_at": "2027-04-10T10:00:00+08:00",
    }, subject=case_id, source="lifeline/verification")


def fund(w: World) -> dict[str, Any]:
    doc = w.doc("reserve_fund", TOWNSHIP) or {"balance_fen": 0}
    with w.side.transaction() as tx:
        held = sorted(tx.find("relief_held", TOWNSHIP), key=lambda d: d["granted_at"])
    return {**doc, "held": [(h["grant_id"], h["amount_fen"], h["problem"]) for h in held]}


def settle(w: World, *payment_ids: str, channel: str = "ICBC") -> None:
    """The bank's statement books these payments on the clock's day."""
    entries = [(p, w.app.get_payment(p).amount_fen) for p in payment_ids]
    w.receive_statement(channel, w.statement(channel, entries, f"STMT{uuid.uuid4().hex[:16].upper()}"))


def recoveries(w: World, case_id: str) -> list[dict[str, Any]]:
    w.projection.catch_up()
    with w.side.transaction() as tx:
        return tx.find("recovery", case_id)


# === emergency relief paid from the reserve fund ====================================================
def test_a_grant_is_paid_at_once_from_the_reserve_fund_once_however_often_it_comes(world):
    w = world
    w.app.replenish(TOWNSHIP, 300_000, "拨付-2026-12", OFFICER)
    case_id = new_case_id()
    data = grant_data(w, case_id, 200_000)
    event = cloud("EmergencyReliefGranted", data, subject=case_id, source="lifeline/intake")
    assert w.app.process_cloud_event(event)
    assert not w.app.process_cloud_event(event)  # delivered again
    republished = cloud("EmergencyReliefGranted", data, subject=case_id, source="lifeline/intake")
    assert w.app.process_cloud_event(republished)  # another copy: processed, and changes nothing
    (paid,) = w.events(Payment.Instructed)
    assert (paid.amount_fen, paid.fund_source, paid.case_id, paid.entitlement_id) == (
        200_000, "township_reserve_fund", case_id, data["grant_id"])
    assert paid.payment_id == payment_id_of(data["grant_id"], "2026-12") and len(paid.payment_id) <= 35
    assert len(w.events(ReserveFund.Advanced)) == 1 and len(w.events(ReliefGrant.Recorded)) == 1
    assert fund(w)["balance_fen"] == 100_000 and fund(w)["held"] == []
    (batch,) = w.batches()
    assert (batch.purpose, batch.count, batch.requested_execution_date) == ("one_off", 1, "2026-12-01")
    # The same day, through the worker's submission: the account in clear in the bank's file only.
    bank = FakeBank(w.clock)
    assert submit_all(w, Jobs(w.engine, bank)) == 1
    (sent,) = [parse_pain001(content) for _, _, content in bank.received]
    assert [(t.end_to_end_id, t.creditor_account, t.amount_fen) for t in sent.transfers] == [
        (paid.payment_id, "6222021234567890123", 200_000)]
    doc = w.doc("relief_grant", data["grant_id"])
    assert (doc["status"], doc["payment_id"], doc["batch_id"]) == ("paid", paid.payment_id, batch.batch_id)
    assert "6222021234567890123" not in str(doc)


def test_a_grant_the_fund_cannot_cover_is_held_and_paid_once_the_fund_is_replenished(world):
    w = world
    jobs = Jobs(w.engine, None)
    w.app.replenish(TOWNSHIP, 100_000, "拨付-1", OFFICER)
    big = grant(w, new_case_id(), 200_000, granted_at="2026-12-01T09:00:00+08:00")
    small = grant(w, new_case_id(), 50_000, granted_at="2026-12-01T10:00:00+08:00")
    assert fund(w)["held"] == [(big["grant_id"], 200_000, "reserve_fund_balance")]
    assert fund(w)["balance_fen"] == 50_000  # the smaller one, granted after, fitted
    length = log_length(w.app)
    assert jobs.pay_held_grants(OFFICER) == 0
    assert log_length(w.app) == length  # held once: trying again records nothing
    w.app.replenish(TOWNSHIP, 100_000, "拨付-2", OFFICER)
    w.projection.catch_up()
    assert jobs.pay_held_grants(OFFICER) == 0  # 150,000 fen: still short
    w.app.replenish(TOWNSHIP, 60_000, "拨付-3", OFFICER)
    w.projection.catch_up()
    assert jobs.pay_held_grants(OFFICER) == 1
    w.engine.wait_for_files()
    w.projection.catch_up()
    assert jobs.pay_held_grants(OFFICER) == 0
    assert fund(w)["balance_fen"] == 10_000 and fund(w)["held"] == []
    assert sorted(p.amount_fen for p in w.events(Payment.Instructed)) == [50_000, 200_000]
    assert all(a.balance_fen >= 0 for a in w.events(ReserveFund.Advanced))
    assert w.doc("relief_grant", big["grant_id"])["status"] == "paid"
    assert small["grant_id"] in w.doc("relief_grant", small["grant_id"])["payment_id"]


def test_in_the_order_granted_each_held_grant_is_paid_as_soon_as_the_fund_holds_it(world):
    w = world
    jobs = Jobs(w.engine, None)
    first = grant(w, new_case_id(), 200_000, granted_at="2026-12-01T09:00:00+08:00")
    second = grant(w, new_case_id(), 80_000, granted_at="2026-12-01T09:30:00+08:00")
    third = grant(w, new_case_id(), 20_000, granted_at="2026-12-01T10:00:00+08:00")
    assert [g for g, _, _ in fund(w)["held"]] == [first["grant_id"], second["grant_id"], third["grant_id"]]
    w.app.replenish(TOWNSHIP, 100_000, "拨付-1", OFFICER)
    w.projection.catch_up()
    assert jobs.pay_held_grants(OFFICER) == 2  # the first does not fit; the next two do, in order
    w.projection.catch_up()
    assert [g for g, _, _ in fund(w)["held"]] == [first["grant_id"]] and fund(w)["balance_fen"] == 0


def test_two_replicas_consuming_two_grants_at_once_never_take_the_fund_below_zero(world):
    """Each consumer retries a delivery that lost the race (as lifeline/messaging/consumer.py does)."""
    w = world
    w.app.replenish(TOWNSHIP, 150_000, "拨付-1", OFFICER)
    replicas = [w.replica() for _ in range(2)]
    events = [cloud("EmergencyReliefGranted", grant_data(w, case_id, 100_000), subject=case_id,
                    source="lifeline/intake") for case_id in (new_case_id(), new_case_id())]
    try:
        barrier = threading.Barrier(2)
        retried: list[int] = []

        def consume(i: int) -> None:
            barrier.wait()
            for attempt in range(5):
                try:
                    replicas[i].app.process_cloud_event(events[i])
                    return
                except IntegrityError:
                    retried.append(i)
            raise AssertionError("never processed")

        threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(w.events(ReliefGrant.Recorded)) == 2
        (advance,) = w.events(ReserveFund.Advanced)
        assert advance.balance_fen == 50_000 and len(w.events(Payment.Instructed)) == 1
        assert len(fund(w)["held"]) == 1 and fund(w)["balance_fen"] == 50_000
    finally:
        for r in replicas:
            r.close()


def test_a_grant_without_a_paying_account_at_its_channel_waits(world):
    w = world
    w.app.replenish(TOWNSHIP, 100_000, "拨付-1", OFFICER)
    case_id = new_case_id()
    data = grant_data(w, case_id, 10_000)
    data["bank_account"] = w.sealed("BOC", "6222021234567890999")  # BOC pays nothing in 370502
    assert w.deliver("EmergencyReliefGranted", data, case_id, source="lifeline/intake")
    assert fund(w)["held"] == [(data["grant_id"], 10_000, "no_paying_account")]
    assert fund(w)["balance_fen"] == 100_000 and not w.events(Payment.Instructed)


# === recoveries of a refused post-approval ==============================================================
def test_a_post_approval_refused_after_payment_opens_one_recovery_of_the_advance(world):
    w = world
    w.app.replenish(TOWNSHIP, 300_000, "拨付-1", OFFICER)
    case_id = new_case_id()
    data = grant(w, case_id, 123_456)
    payment_id = payment_id_of(data["grant_id"], "2026-12")
    settle(w, payment_id)
    refused = post_approval(w, data, "refused")
    assert w.app.process_cloud_event(refused) and not w.app.process_cloud_event(refused)
    assert w.app.process_cloud_event(post_approval(w, data, "refused"))  # republished
    assert w.app.process_cloud_event(post_approval(w, data, "approved"))  # a contradicting one: ignored
    (opened,) = w.events(Recovery.Opened)
    assert (opened.recovery_id, opened.ground, opened.amount_fen, opened.since, opened.cause) == (
        recovery_id_of(data["grant_id"]), "emergency_post_approval_refused", 123_456, None, data["grant_id"])
    assert opened.payments == [{"payment_id": payment_id, "period": "2026-12", "amount_fen": 123_456}]
    (doc,) = recoveries(w, case_id)
    assert (doc["balance_fen"], doc["status"], doc["region_code"]) == (123_456, "open", VILLAGE)
    grant_doc = w.doc("relief_grant", data["grant_id"])
    assert grant_doc["recovery_id"] == opened.recovery_id and grant_doc["post_approval"]["decision"] == "refused"
    assert fund(w)["balance_fen"] == 300_000 - 123_456  # the money went out: recovered, not refunded


def test_a_post_approval_approved_opens_nothing(world):
    w = world
    w.app.replenish(TOWNSHIP, 300_000, "拨付-1", OFFICER)
    data = grant(w, new_case_id(), 100_000)
    assert w.app.process_cloud_event(post_approval(w, data, "approved"))
    assert not w.events(Recovery.Opened)
    assert w.doc("relief_grant", data["grant_id"])["post_approval"]["decision"] == "approved"


def test_a_post_approval_refused_while_held_cancels_the_grant_and_the_fund_keeps_its_balance(world):
    w = world
    jobs = Jobs(w.engine, None)
    w.app.replenish(TOWNSHIP, 50_000, "拨付-1", OFFICER)
    data = grant(w, new_case_id(), 200_000)
    assert w.app.process_cloud_event(post_approval(w, data, "refused"))
    assert not w.events(Recovery.Opened) and not recoveries(w, data["case_id"])
    assert w.doc("relief_grant", data["grant_id"])["status"] == "cancelled"
    w.app.replenish(TOWNSHIP, 500_000, "拨付-2", OFFICER)
    w.projection.catch_up()
    assert jobs.pay_held_grants(OFFICER) == 0 and w.app.pay_held_grant(data["grant_id"], OFFICER) is None
    assert fund(w)["balance_fen"] == 550_000 and fund(w)["held"] == []
    assert not w.events(Payment.Instructed)


def test_a_decision_on_a_grant_never_seen_changes_nothing(world):
    w = world
    data = grant_data(w, new_case_id(), 10_000)
    length = log_length(w.app)
    assert w.app.process_cloud_event(post_approval(w, data, "refused"))
    assert log_length(w.app) == length  # only the tracking record: nothing to cancel, nothing to recover


# === recoveries of a fraud ===========================================================================
def paid_months(w: World, entitlement_id: str, periods: list[str]) -> list[str]:
    """A run per period, each settled on the clock's day: the payments' ids."""
    out = []
    for period in periods:
        w.budget(period)
        w.run(period)
        out.append(payment_id_of(entitlement_id, period))
    return out


def test_fraud_recovers_the_settled_payments_from_the_month_it_began_to_the_fen(world):
    w = world
    case_id = new_case_id()
    e = w.approve("ICBC", 50_123, case_id=case_id)  # from 2026-12
    entitlement = w.app.get_entitlement(e)
    dec, jan, feb, mar, apr = paid_months(w, e, ["2026-12", "2027-01", "2027-02", "2027-03", "2027-04"])
    w.clock.set("2027-04-05T09:00:00+08:00")
    settle(w, dec, jan, mar)
    # February's came back (a closed account): nothing was paid. April's is still with the bank.
    w.receive_report("ICBC", w.status_report(w.app.get_payment(feb).batch_id, [(feb, "RJCT", "AC04")], "RJ-FEB"))
    assert w.app.process_cloud_event(w.change(e, "adjust", "2027-03", 61_000)) is True  # no effect on what was paid
    event = fraud(case_id, entitlement.benefit_id, "2027-01-20")
    assert w.app.process_cloud_event(event) and not w.app.process_cloud_event(event)
    assert w.app.process_cloud_event(fraud(case_id, entitlement.benefit_id, "2027-01-20"))  # republished
    (opened,) = w.events(Recovery.Opened)
    assert [p["payment_id"] for p in opened.payments] == [jan, mar]
    assert opened.amount_fen == 50_123 * 2
    assert (opened.ground, opened.since, opened.cause, opened.case_id) == (
        "fraud", "2027-01-20", entitlement.benefit_id, case_id)
    # What was not paid out is never paid: April's (instructed) and February's (held) are recalled.
    assert {r.payment_id for r in w.events(Payment.RecallRequested)} == {feb, apr}
    (doc,) = recoveries(w, case_id)
    assert doc["amount_fen"] == doc["balance_fen"] == 100_246


def test_fraud_counts_one_off_relief_and_grants_booked_on_or_after_the_day_it_began(world):
    w = world
    case_id = new_case_id()
    e = w.approve("ICBC", 40_000, case_id=case_id)
    benefit_id = w.app.get_entitlement(e).benefit_id
    w.app.replenish(TOWNSHIP, 500_000, "拨付-1", OFFICER)
    early = grant(w, case_id, 30_000, granted_at="2026-12-01T09:00:00+08:00")
    settle(w, payment_id_of(early["grant_id"], "2026-12"))  # booked 2026-12-01: before the fraud began
    w.clock.set("2026-12-20T09:00:00+08:00")
    late = grant(w, case_id, 70_000, granted_at="2026-12-20T09:00:00+08:00")
    settle(w, payment_id_of(late["grant_id"], "2026-12"))  # booked 2026-12-20
    refused = grant(w, case_id, 25_000, granted_at="2026-12-20T10:00:00+08:00")
    settle(w, payment_id_of(refused["grant_id"], "2026-12"))
    assert w.app.process_cloud_event(post_approval(w, refused, "refused"))  # recovered already on its own
    (dec,) = paid_months(w, e, ["2026-12"])
    settle(w, dec)
    assert w.app.process_cloud_event(fraud(case_id, benefit_id, "2026-12-10"))
    by_ground = {r.ground: r for r in w.events(Recovery.Opened)}
    assert by_ground["emergency_post_approval_refused"].amount_fen == 25_000
    assert sorted(p["payment_id"] for p in by_ground["fraud"].payments) == sorted(
        [dec, payment_id_of(late["grant_id"], "2026-12")])
    assert by_ground["fraud"].amount_fen == 40_000 + 70_000


def test_fraud_with_nothing_paid_opens_a_recovery_of_nothing_once(world):
    w = world
    case_id = new_case_id()
    e = w.approve("ICBC", 40_000, case_id=case_id, first_period="2027-03")
    benefit_id = w.app.get_entitlement(e).benefit_id
    assert w.app.process_cloud_event(fraud(case_id, benefit_id, "2026-10-01"))
    assert w.app.process_cloud_event(fraud(case_id, benefit_id, "2026-10-01"))
    (opened,) = w.events(Recovery.Opened)
    assert (opened.amount_fen, opened.payments) == (0, [])
    assert recoveries(w, case_id)[0]["status"] == "closed"


# === the rule, and its property against the real application =========================================
def test_overpaid_takes_settled_payments_in_scope():
    rows = [
        {"payment_id": "E-1-202612", "period": "2026-12", "amount_fen": 100, "kind": "monthly", "status": "settled",
         "settled_on": "2026-12-02"},
        {"payment_id": "E-1-202701", "period": "2027-01", "amount_fen": 101, "kind": "monthly", "status": "settled",
         "settled_on": "2027-01-02"},
        {"payment_id": "E-1-202702", "period": "2027-02", "amount_fen": 102, "kind": "monthly", "status": "returned",
         "settled_on": "2027-02-02"},
        {"payment_id": "E-2-202701", "period": "2027-01", "amount_fen": 5000, "kind": "one_off",
         "status": "settled", "settled_on": "2027-01-14"},
        {"payment_id": "E-3-202701", "period": "2027-01", "amount_fen": 7000, "kind": "one_off",
         "status": "settled", "settled_on": "2027-01-15"},
    ]
    assert overpaid(rows, date(2027, 1, 15)) == [
        {"payment_id": "E-1-202701", "period": "2027-01", "amount_fen": 101},
        {"payment_id": "E-3-202701", "period": "2027-01", "amount_fen": 7000}]


PERIODS = ["2026-12", "2027-01", "2027-02", "2027-03"]
FATES = ("unpaid", "instructed", "settled", "returned", "returned_after_booking")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(fates=st.lists(st.sampled_from(FATES), min_size=4, max_size=4),
       amounts=st.lists(st.integers(1, 3_000_000), min_size=4, max_size=4),
       since=st.dates(date(2026, 11, 1), date(2027, 4, 30)))
def test_a_fraud_recovery_sums_exactly_the_settled_payments_in_scope(fates, amounts, since):
    root = Path(tempfile.mkdtemp(prefix="lifeline-recovery-"))
    w = World(root)
    try:
        case_id = new_case_id()
        e = w.approve("ICBC", amounts[0], case_id=case_id)
        entitlement = w.app.get_entitlement(e)
        expected = 0
        for i, (period, fate, amount) in enumerate(zip(PERIODS, fates, amounts)):
            if i:  # each month's amount as adjusted by a review before its run
                assert w.app.process_cloud_event(w.change(e, "adjust", period, amount))
            if fate == "unpaid":
                continue
            (pid,) = paid_months(w, e, [period])
            if fate in ("settled", "returned_after_booking"):
                settle(w, pid)
            if fate == "returned":
                batch = w.app.get_payment(pid).batch_id
                w.receive_report("ICBC", w.status_report(batch, [(pid, "RJCT", "AC04")], f"RJ{i}"))
            if fate == "returned_after_booking":
                w.receive_statement("ICBC", w.statement("ICBC", [(pid, amount)], f"RT{i}", returns={pid: "AC04"}))
            if fate == "settled" and period >= f"{since.year:04d}-{since.month:02d}":
                expected += amount
        assert w.app.process_cloud_event(fraud(case_id, entitlement.benefit_id, since.isoformat()))
        (opened,) = w.events(Recovery.Opened)
        assert opened.amount_fen == expected == sum(p["amount_fen"] for p in opened.payments)
        for p in opened.payments:
            assert w.app.get_payment(p["payment_id"]).status == "settled"
    finally:
        w.close()
        shutil.rmtree(root, ignore_errors=True)


# === repayments ===================================================================================
def test_repayments_never_take_a_recovery_below_zero_and_a_reference_counts_once(world):
    w = world
    w.app.replenish(TOWNSHIP, 300_000, "拨付-1", OFFICER)
    data = grant(w, new_case_id(), 100_000)
    assert w.app.process_cloud_event(post_approval(w, data, "refused"))
    rid = recovery_id_of(data["grant_id"])
    assert w.app.repay(rid, 60_000, "SK-1", CASEWORKER).balance_fen == 40_000
    assert w.app.repay(rid, 60_000, "SK-1", CASEWORKER).balance_fen == 40_000  # the same receipt again
    with pytest.raises(PaymentConflict) as exc:
        w.app.repay(rid, 40_001, "SK-2", CASEWORKER)
    assert exc.value.rule == "recovery_balance"
    assert w.app.repay(rid, 40_000, "SK-2", CASEWORKER).balance_fen == 0
    (doc,) = recoveries(w, data["case_id"])
    assert (doc["repaid_fen"], doc["balance_fen"], doc["status"], len(doc["repayments"])) == (
        100_000, 0, "closed", 2)


# === the routes =====================================================================================
SECRET = "test-recoveries-secret-0123456789abcdef"
CLOSED = "127.0.0.1:1"  # no broker, no Redis: requests carry no Idempotency-Key


def bearer(role: str, region: str = COUNTY) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


@pytest.fixture
def http(tmp_path):
    channels = tmp_path / "bank-channels.yaml"
    channels.write_text(CHANNELS_YAML, encoding="utf-8")
    settings_ = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path / "data"), "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_BANK_CHANNELS_FILE": str(channels),
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED, "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
    })
    app = create_http_app(SPEC, settings_)
    runtime = app.state.runtime
    runtime.app.clock = FixedClock(NOW)
    yield app, runtime
    runtime.side.close()
    runtime.app.close()


def test_the_routes_show_recoveries_and_held_grants_within_the_region_and_record_repayments(http):
    app, runtime = http
    payment = runtime.app
    client = TestClient(app, raise_server_exceptions=False)
    sealed = payment.sealer.account("ICBC", "6222021234567890123", "李红")
    case_id = new_case_id()
    held = {
        "grant_id": "ER-HELD0000000000000001", "case_id": case_id, "region_code": VILLAGE, "township_code": TOWNSHIP,
        "amount_fen": 900_000, "reason": "先行救助", "approval_level": "county", "granted_by": "county-001",
        "bank_account": {"channel": sealed.channel, "account_name": sealed.account_name,
                         "number_masked": sealed.number_masked, "number_sealed": sealed.number_sealed},
        "post_approval_due_date": "2026-12-08", "granted_at": NOW,
    }
    paid = {**held, "grant_id": "ER-PAID0000000000000001", "amount_fen": 100_000}
    r = client.post(f"/v1/reserve-funds/{TOWNSHIP}/replenishments", headers=bearer("county_officer"),
                    json={"amount_fen": 150_000, "reference": "拨付-1"})
    assert r.status_code == 200, r.text
    for data in (held, paid):
        assert payment.process_cloud_event(cloud("EmergencyReliefGranted", data, subject=case_id,
                                                 source="lifeline/intake"))
    r = client.get(f"/v1/reserve-funds/{TOWNSHIP}", headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    assert r.json()["balance_fen"] == 50_000
    assert [(g["grant_id"], g["problem"]) for g in r.json()["held_grants"]] == [
        ("ER-HELD0000000000000001", "reserve_fund_balance")]
    r = client.get("/v1/relief-grants", params={"case_id": case_id}, headers=bearer("auditor"))
    assert sorted(g["status"] for g in r.json()["items"]) == ["held", "paid"]
    assert payment.process_cloud_event(cloud("EmergencyReliefPostApprovalDecided", {
        "grant_id": paid["grant_id"], "case_id": case_id, "region_code": VILLAGE, "township_code": TOWNSHIP,
        "decision": "refused", "reason": "不符合条件", "amount_fen": 100_000, "decided_by": "county-001",
        "decided_at": "2026-12-07T10:00:00+08:00"}, subject=case_id, source="lifeline/intake"))
    rid = recovery_id_of(paid["grant_id"])
    r = client.get("/v1/recoveries", params={"case_id": case_id}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200 and [d["recovery_id"] for d in r.json()["items"]] == [rid], r.text
    assert client.get("/v1/recoveries", params={"case_id": case_id},
                      headers=bearer("county_officer", "370602")).json()["items"] == []
    r = client.get(f"/v1/recoveries/{rid}", headers=bearer("county_officer"))
    assert r.status_code == 200 and r.json()["amount_fen"] == 100_000, r.text
    assert client.get(f"/v1/recoveries/{rid}", headers=bearer("auditor", "370602")).status_code == 403
    assert client.get("/v1/recoveries/RC-NOTHING", headers=bearer("auditor")).status_code == 404
    assert client.get(f"/v1/recoveries/{rid}", headers=bearer("clerk", TOWNSHIP)).status_code == 403
    path = f"/v1/recoveries/{rid}/repayments"
    length = log_length(payment)
    for body, field in (({"amount_fen": 0, "reference": "SK-1"}, "amount_fen"),
                        ({"amount_fen": 10, "reference": ""}, "reference"),
                        ({"amount_fen": 10, "reference": "SK-1", "extra": 1}, "extra")):
        r = client.post(path, json=body, headers=bearer("caseworker", TOWNSHIP))
        assert r.status_code == 422 and field in r.text, r.text
    r = client.post(path, json={"amount_fen": 100_001, "reference": "SK-1"}, headers=bearer("county_officer"))
    assert r.status_code == 409 and r.json()["rule"] == "recovery_balance", r.text
    assert log_length(payment) == length
    r = client.post(path, json={"amount_fen": 30_000, "reference": "SK-1"}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200 and (r.json()["balance_fen"], r.json()["repaid_fen"]) == (70_000, 30_000), r.text
    assert client.post(path, json={"amount_fen": 1, "reference": "SK-2"},
                       headers=bearer("auditor")).status_code == 403
    assert client.post(f"/v1/recoveries/{rid}/repayments", json={"amount_fen": 1, "reference": "SK-3"},
                       headers=bearer("caseworker", "370602001")).status_code == 403
