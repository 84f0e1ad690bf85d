"""The bank simulator over HTTP: pain.001 in, pain.002 back, camt.053 on request, each valid
against its XSD; rejections by account state; a file received twice booked once; misbehaviour.

Its callbacks to payment are in test_bank_callbacks.py; here payment is a closed port, and the
tests that pull statements turn the callbacks off (a callback's statement states what a file
booked, so a later pull would not show it again)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient

from lifeline.dev.embedded import free_port
from lifeline.domain.clock import FixedClock
from lifeline.iso20022 import BankBatch, CreditTransfer, build_pain001, parse_camt053, parse_pain002
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import Settings
from lifeline.simulators import bank as bank_module

PAYING = "160200000000000101"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
NO_CALLBACKS = {"callbacks": False}


def bank_settings(tmp_path) -> Settings:
    """The bank's settings; payment is a closed port (never a Lifeline running on this machine)."""
    return Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_PAYMENT_PORT": str(free_port())})


def pain001(batch_id: str, *accounts_amounts: tuple[str, int]) -> bytes:
    return build_pain001(BankBatch(
        batch_id=batch_id, created_at=NOW, initiating_party="东营市东营区民政局",
        debtor_name="东营市东营区民政局", debtor_account=PAYING, requested_execution_date=date(2026, 12, 1),
        debtor_agent_bic="ICBKCNBJ",
        transfers=tuple(CreditTransfer(f"{batch_id}-{i}", amount, "王*明", account, "2026-12 低保金")
                        for i, (account, amount) in enumerate(accounts_amounts)),
    ))


@pytest.fixture
def bank(tmp_path, monkeypatch):
    monkeypatch.setattr(bank_module, "clock_for", lambda settings: FixedClock(NOW))
    app = bank_module.create_app(bank_settings(tmp_path))
    with TestClient(app) as client:
        yield client


def test_a_file_is_answered_per_transaction_by_the_account_state(bank):
    assert bank.put("/v1/accounts/622848000000000002", json={"status": "closed"}).status_code == 200
    assert bank.put("/v1/accounts/622848000000000003", json={"status": "deceased"}).status_code == 200
    r = bank.post("/v1/files", content=pain001(
        "B-1", ("622848000000000001", 98000), ("622848000000000002", 98000),
        ("622848000000000003", 49000), ("12", 100)))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    report = parse_pain002(r.content)  # valid against pain.002.001.12
    assert report.original_msg_id == "B-1"
    assert [(t.end_to_end_id, t.status, t.reason_code) for t in report.transactions] == [
        ("B-1-0", "ACSC", None), ("B-1-1", "RJCT", "AC04"), ("B-1-2", "RJCT", "MD07"), ("B-1-3", "RJCT", "AC01")]


def test_a_file_received_twice_is_answered_alike_and_booked_once(bank):
    bank.put("/v1/behaviour", json=NO_CALLBACKS)
    content = pain001("B-2", ("622848000000000001", 98000), ("622848000000000004", 1))
    first = bank.post("/v1/files", content=content)
    again = bank.post("/v1/files", content=content)
    assert first.content == again.content
    statement = parse_camt053(bank.post(f"/v1/statements/{PAYING}").content)  # valid camt.053.001.08
    assert [(e.end_to_end_id, e.amount_fen, e.credit_debit) for e in statement.entries] == [
        ("B-2-0", 98000, "DBIT"), ("B-2-1", 1, "DBIT")]
    assert statement.closing_balance.amount_fen == -98001
    assert parse_camt053(bank.post(f"/v1/statements/{PAYING}").content).entries == ()  # stated once


def test_misbehaviour_on_demand(bank):
    assert bank.put("/v1/behaviour", json={"down": True}).status_code == 200
    r = bank.post("/v1/files", content=pain001("B-3", ("622848000000000001", 100)))
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    bank.put("/v1/behaviour", json={"drop_statement_entry": True, "duplicate_status": True, **NO_CALLBACKS})
    bank.post("/v1/files", content=pain001("B-4", ("622848000000000001", 100), ("622848000000000005", 200)))
    statement = parse_camt053(bank.post(f"/v1/statements/{PAYING}").content)
    assert len(statement.entries) == 1  # one booked entry left out, once
    names = [f["name"] for f in bank.get("/v1/files").json()["items"]]
    assert names.count("B-4.pain002.xml") == 1 and "B-4.pain002.again.xml" in names


def test_garbage_is_refused_and_every_file_is_kept(bank):
    r = bank.post("/v1/files", content=b"<Document>not a payment</Document>")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert bank.get("/v1/files").json()["items"] == []
    bank.post("/v1/files", content=pain001("B-5", ("622848000000000001", 100)))
    items = bank.get("/v1/files").json()["items"]
    assert [(f["name"], f["direction"]) for f in items[:2]] == [
        ("B-5.pain001.xml", "received"), ("B-5.pain002.xml", "sent")]
    # ... and the statement of what it booked, for the callback to payment
    assert [(f["kind"], f["direction"]) for f in items[2:]] == [("camt.053.001.08", "sent")]
    assert parse_pain002(bank.get("/v1/files/B-5.pain002.xml").content).original_msg_id == "B-5"
    assert bank.get("/v1/files/nothing.xml").status_code == 404
    assert bank.put("/v1/accounts/1", json={"status": "asleep"}).status_code == 422


def test_a_restarted_bank_remembers_what_it_answered_and_booked(tmp_path, monkeypatch):
    monkeypatch.setattr(bank_module, "clock_for", lambda settings: FixedClock(NOW))
    settings = bank_settings(tmp_path)
    content = pain001("B-6", ("622848000000000001", 700))
    with TestClient(bank_module.create_app(settings)) as first:
        first.put("/v1/behaviour", json=NO_CALLBACKS)
        answer = first.post("/v1/files", content=content).content
    with TestClient(bank_module.create_app(settings)) as second:
        second.put("/v1/behaviour", json=NO_CALLBACKS)
        assert second.post("/v1/files", content=content).content == answer
        entries = parse_camt053(second.post(f"/v1/statements/{PAYING}").content).entries
    assert [(e.end_to_end_id, e.amount_fen) for e in entries] == [("B-6-0", 700)]
