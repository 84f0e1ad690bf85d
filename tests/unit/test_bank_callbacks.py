"""The bank simulator calls payment back: each file's pain.002 to
`/v1/bank-channels/{channel_id}/status-reports`, then the camt.053 of what it booked to
`/v1/bank-channels/{channel_id}/statements`, with a `bank_channel` token and an Idempotency-Key;
retried with backoff from a durable outbox, also across a restart; off on demand.

Payment is played by a small real HTTP server (uvicorn, a free port) that checks the token with
Lifeline's own Authenticator and answers what each test scripts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from lifeline.dev.embedded import free_port
from lifeline.domain.clock import FixedClock
from lifeline.http.auth import Authenticator, Principal
from lifeline.http.problems import install_problem_handlers
from lifeline.iso20022 import BankBatch, CreditTransfer, build_pain001, parse_camt053, parse_pain002
from lifeline.settings import Settings
from lifeline.simulators import bank as bank_module
from tests.unit.test_bank_simulator import NOW, PAYING
from tests.unit import served, wait_for

SECRET = "test-jwt-secret-not-for-production-0123456789"
STATUS = "/v1/bank-channels/ICBC/status-reports"
STATEMENTS = "/v1/bank-channels/ICBC/statements"
OPEN, CLOSED = "622848000000000001", "622848000000000002"


def pain001(batch_id: str, *accounts_amounts: tuple[str, int], bic: str | None = "ICBKCNBJXXX",
            cnaps: str | None = None, paying: str = PAYING) -> bytes:
    return build_pain001(BankBatch(
        batch_id=batch_id, created_at=NOW, initiating_party="东营市东营区民政局",
        debtor_name="东营市东营区民政局", debtor_account=paying, requested_execution_date=date(2026, 12, 1),
        debtor_agent_bic=bic, debtor_agent_bank_code=cnaps,
        transfers=tuple(CreditTransfer(f"{batch_id}-{i}", amount, "王*明", account, "2026-12 低保金")
                        for i, (account, amount) in enumerate(accounts_amounts)),
    ))


@dataclass
class Received:
    path: str
    status: int                  # what the receiver answered
    at: float
    body: bytes
    headers: dict[str, str]
    principal: Principal | None  # None: the token was refused


@dataclass
class Payment:
    """Payment's two bank-channel paths, answering `script[path]` codes first, then 200."""

    port: int
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    always: int | None = None    # answer this to everything (e.g. 503: payment down)

    def delivered(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300 and (path is None or r.path == path)]


@pytest.fixture
def payment() -> Iterator[Payment]:
    state = Payment(port=free_port())
    auth = Authenticator(SECRET)
    app = FastAPI()
    install_problem_handlers(app)
    lock = threading.Lock()

    async def receive(request: Request, channel_id: str) -> Response:
        try:
            principal = auth.principal(request)
        except Exception:  # noqa: BLE001 - recorded as refused
            principal = None
        body = await request.body()
        with lock:
            queued = state.script.get(request.url.path) or []
            code = state.always or (queued.pop(0) if queued else (200 if principal else 401))
            if principal is not None and principal.role != "bank_channel":
                code = 403
            state.requests.append(Received(request.url.path, code, time.monotonic(), body,
                                           dict(request.headers), principal))
        return Response(b"", status_code=code)

    app.add_api_route("/v1/bank-channels/{channel_id}/status-reports", receive, methods=["POST"])
    app.add_api_route("/v1/bank-channels/{channel_id}/statements", receive, methods=["POST"])
    with served(app, state.port, "the payment receiver"):
        yield state


def bank_settings(tmp_path, payment: Payment) -> Settings:
    return Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_HOST": "127.0.0.1",
                              "LIFELINE_PAYMENT_PORT": str(payment.port), "LIFELINE_JWT_SECRET": SECRET})


@pytest.fixture
def bank_app(tmp_path, payment, monkeypatch) -> Callable[[], TestClient]:
    """A bank simulator on tmp_path calling `payment` (a new process image on each call)."""
    monkeypatch.setattr(bank_module, "clock_for", lambda settings: FixedClock(NOW))
    return lambda: TestClient(bank_module.create_app(bank_settings(tmp_path, payment)))


@pytest.fixture
def bank(bank_app) -> Iterator[TestClient]:
    with bank_app() as client:
        yield client


def callbacks(bank: TestClient) -> list[dict]:
    return bank.get("/v1/callbacks").json()["items"]


def settled(bank: TestClient, n: int) -> list[dict]:
    """The callbacks once there are `n` and none is pending."""
    return wait_for(f"{n} callbacks done", lambda: (items := callbacks(bank)) and len(items) == n
                    and all(c["status"] != "pending" for c in items) and items)


def test_status_then_statement_with_a_bank_channel_token(bank, payment):
    bank.put(f"/v1/accounts/{CLOSED}", json={"status": "closed"})
    answer = bank.post("/v1/files", content=pain001("C-1", (OPEN, 98000), (CLOSED, 49000))).content
    done = settled(bank, 2)
    assert [(c["kind"], c["path"], c["status"], c["attempts"]) for c in done] == [
        ("status", STATUS, "delivered", 1), ("statement", STATEMENTS, "delivered", 1)]
    status, statement = payment.requests
    assert (status.path, statement.path) == (STATUS, STATEMENTS) and status.at <= statement.at
    for r in (status, statement):
        assert r.headers["content-type"] == "application/xml"
        assert r.principal == Principal(user_id="bank:ICBC", role="bank_channel", region="000000",
                                        org_code="ICBC")  # a valid token, checked by Lifeline's auth
    # the status report: the same bytes POST /v1/files answered
    assert status.body == answer and parse_pain002(status.body).original_msg_id == "C-1"
    assert status.headers["idempotency-key"] == "C-1:status" and done[0]["file"] == "C-1.pain002.xml"
    # the statement: the paying account's, with what this file booked (the rejected one is not)
    camt = parse_camt053(statement.body)
    assert camt.account == PAYING
    assert [(e.end_to_end_id, e.amount_fen, e.credit_debit) for e in camt.entries] == [("C-1-0", 98000, "DBIT")]
    assert statement.headers["idempotency-key"] == camt.statement_id == done[1]["idempotency_key"]
    assert done[1]["file"] == f"{camt.statement_id}.camt053.xml"
    assert bank.get(f"/v1/files/{done[1]['file']}").content == statement.body  # kept, like every file
    # stated once: a pull statement does not show it again
    assert parse_camt053(bank.post(f"/v1/statements/{PAYING}").content).entries == ()
    # the same file again is answered alike and called back no more
    assert bank.post("/v1/files", content=pain001("C-1", (OPEN, 98000), (CLOSED, 49000))).content == answer
    time.sleep(0.5)
    assert len(callbacks(bank)) == 2 and len(payment.requests) == 2


def test_a_cnaps_bank_code_names_its_channel(bank, payment):
    bank.post("/v1/files", content=pain001("C-2", (OPEN, 100), bic=None, cnaps="402455000017",
                                           paying="902000000000000107"))
    assert [c["path"] for c in settled(bank, 2)] == [
        "/v1/bank-channels/RCC/status-reports", "/v1/bank-channels/RCC/statements"]
    assert {r.principal.user_id for r in payment.requests} == {"bank:RCC"}


def test_a_bank_no_channel_has_is_not_called_back(bank, payment):
    bank.post("/v1/files", content=pain001("C-3", (OPEN, 100), bic="CMBCCNBS"))
    [dropped] = settled(bank, 1)
    assert dropped["status"] == "dropped" and "no bank channel" in dropped["last_error"]
    assert payment.requests == []
    # nothing was stated for a callback, so a pull statement shows the booked entry
    assert [e.end_to_end_id for e in parse_camt053(bank.post(f"/v1/statements/{PAYING}").content).entries] == [
        "C-3-0"]


def test_503_twice_then_200_is_delivered_and_the_statement_waits_for_it(bank, payment):
    payment.script[STATUS] = [503, 503]
    bank.post("/v1/files", content=pain001("C-4", (OPEN, 100)))
    done = settled(bank, 2)
    assert [(c["kind"], c["status"], c["attempts"], c["last_status_code"]) for c in done] == [
        ("status", "delivered", 3, 200), ("statement", "delivered", 1, 200)]
    assert [(r.path, r.status) for r in payment.requests] == [
        (STATUS, 503), (STATUS, 503), (STATUS, 200), (STATEMENTS, 200)]
    first, second, third = payment.requests[:3]
    assert second.at - first.at >= 0.2 and third.at - second.at >= 0.4  # backing off
    assert {r.headers["idempotency-key"] for r in payment.requests[:3]} == {"C-4:status"}


def test_a_refusal_drops_the_callback_and_keeps_the_file(bank, payment):
    payment.script[STATUS] = [422]
    bank.post("/v1/files", content=pain001("C-5", (OPEN, 100)))
    done = settled(bank, 2)
    assert [(c["kind"], c["status"], c["attempts"], c["last_status_code"]) for c in done] == [
        ("status", "dropped", 1, 422), ("statement", "delivered", 1, 200)]
    assert "C-5.pain002.xml" in {f["name"] for f in bank.get("/v1/files").json()["items"]}


def test_a_restarted_bank_delivers_what_was_pending_once(bank_app, payment):
    payment.always = 503  # payment is down while the first bank runs
    with bank_app() as first:
        first.post("/v1/files", content=pain001("C-6", (OPEN, 700)))
        wait_for("a failed try", lambda: callbacks(first)[0]["attempts"] >= 2)
    assert all(r.path == STATUS for r in payment.requests)  # the statement waits for its status
    tries = len(payment.requests)
    time.sleep(0.6)
    assert len(payment.requests) == tries  # the stopped bank tries no more
    payment.always = None
    with bank_app() as second:
        done = settled(second, 2)
        time.sleep(0.5)
    assert [(c["kind"], c["status"]) for c in done] == [("status", "delivered"), ("statement", "delivered")]
    assert done[0]["attempts"] >= 3  # the tries before the restart counted, then the one that got through
    assert [(r.path, r.headers["idempotency-key"]) for r in payment.delivered()] == [
        (STATUS, "C-6:status"), (STATEMENTS, done[1]["idempotency_key"])]
    assert [e.end_to_end_id for e in parse_camt053(payment.delivered(STATEMENTS)[0].body).entries] == ["C-6-0"]


def test_callbacks_off_sends_nothing(bank, payment):
    assert bank.put("/v1/behaviour", json={"callbacks": False}).json()["callbacks"] is False
    bank.post("/v1/files", content=pain001("C-7", (OPEN, 100)))
    time.sleep(1.0)
    assert callbacks(bank) == [] and payment.requests == []
    # nothing was stated: the pull statement has it
    assert [e.end_to_end_id for e in parse_camt053(bank.post(f"/v1/statements/{PAYING}").content).entries] == [
        "C-7-0"]


def test_callbacks_back_on_call_back_a_file_sent_again(bank, payment):
    bank.put("/v1/behaviour", json={"callbacks": False})
    content = pain001("C-8", (OPEN, 100))
    bank.post("/v1/files", content=content)
    bank.put("/v1/behaviour", json={})
    bank.post("/v1/files", content=content)  # the same file: its callbacks were never sent
    assert [c["status"] for c in settled(bank, 2)] == ["delivered", "delivered"]
    assert [e.end_to_end_id for e in parse_camt053(payment.delivered(STATEMENTS)[0].body).entries] == ["C-8-0"]


def test_status_twice_an_entry_missing_and_a_late_statement_on_demand(bank, payment):
    bank.put("/v1/behaviour", json={"duplicate_status": True, "drop_statement_entry": True,
                                    "statement_delay_seconds": 1.0})
    answer = bank.post("/v1/files", content=pain001("C-9", (OPEN, 100), ("622848000000000005", 200))).content
    done = settled(bank, 3)
    assert [(c["kind"], c["status"]) for c in done] == [
        ("status", "delivered"), ("status", "delivered"), ("statement", "delivered")]
    first, again, statement = payment.requests
    assert first.body == again.body == answer
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"] == "C-9:status"
    assert len(parse_camt053(statement.body).entries) == 1  # one booked entry left out
    assert statement.at - first.at >= 0.9  # statement_delay_seconds
    assert bank.get("/v1/behaviour").json()["drop_statement_entry"] is False  # once
