"""Bank simulator: a bank channel's side of the payment service, over ISO 20022.

Real banks cannot be reached from here, so this process plays one the way a bank's host-to-host
interface does: it receives `pain.001.001.09` credit-transfer files (`POST /v1/files`), answers
each with a `pain.002.001.12` status report (accepted, or rejected per transaction with the ISO
reason: AC01 incorrect account, AC04 closed, AC06 blocked, MD07 beneficiary deceased), books what
it accepted, and on request writes a `camt.053.001.08` statement of the paying account
(`POST /v1/statements/{account}`). Every document in and out is valid against its official XSD
(lifeline.iso20022), and every one is kept (`GET /v1/files`, `GET /v1/files/{name}`).

It is deterministic: identifiers derive from the seed and the documents they answer, times come
from the injected clock. It misbehaves on purpose when told (`PUT /v1/behaviour`): down (503),
slow, a status report sent twice, a statement with one entry missing; and an account can be
closed, blocked or its holder deceased (`PUT /v1/accounts/{account}`).

A file received twice (same MsgId) is recognised: the first answer is given again, nothing is
booked twice.

It also calls the payment service back, as a bank channel pushes its reports: after a file, the
same pain.002 to `POST {payment}/v1/bank-channels/{channel_id}/status-reports`, then a camt.053
of the paying account for what that file booked to `.../statements` (XML bodies, a `bank_channel`
bearer token, `Idempotency-Key` the file's MsgId + ":status" or the statement's Id). The channel
is the one of `LIFELINE_BANK_CHANNELS_FILE` whose bank code is the file's debtor agent. The
callbacks wait in a durable outbox (state.json) and are retried with backoff until payment
answers 2xx; a 4xx other than 401/404/408/409/425/429 drops one (logged, the file kept).
`GET /v1/callbacks` lists them. A booked entry is stated once: in the statement a callback
carries, or else in the next `POST /v1/statements/{account}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.clock import clock_for
from lifeline.http.app import lifespan_of
from lifeline.http.hardening import harden
from lifeline.http.problems import Problem, install_problem_handlers
from lifeline.iso20022 import (
    Balance,
    Iso20022Error,
    Statement,
    StatementEntry,
    TransactionStatus,
    build_camt053,
    build_pain002,
    parse_pain001,
)
from lifeline.iso20022._xml import Reader, safe_parser
from lifeline.rules.periods import business_date
from lifeline.settings import Settings
from lifeline.simulators import load_state, save_state

XML = "application/xml"
# What the bank says about a transfer to an account, by the account's state.
REJECTIONS = {"incorrect": "AC01", "closed": "AC04", "blocked": "AC06", "deceased": "MD07"}
ACCOUNT_STATES = ("open", *REJECTIONS)
_ACCOUNT = re.compile(r"\d{12,30}")

log = logging.getLogger(__name__)

# Callbacks to payment: answers after which a delivery is tried again (with backoff) rather than
# dropped; any other 4xx drops it. 408/409/425: payment still working on the same Idempotency-Key.
RETRIED_4XX = frozenset({401, 404, 408, 409, 425, 429})
BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 30.0
CALLBACK_TIMEOUT_SECONDS = 10.0
STATUS_PATH = "/v1/bank-channels/{channel_id}/status-reports"
STATEMENT_PATH = "/v1/bank-channels/{channel_id}/statements"


class BehaviourIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    down: bool = Field(default=False, description="answer every file with 503")
    slow_seconds: float = Field(default=0, ge=0, le=60, description="wait this long before answering")
    duplicate_status: bool = Field(default=False, description="keep (and send) each status report twice")
    drop_statement_entry: bool = Field(default=False, description="leave one booked entry out of the next statement")
    callbacks: bool = Field(default=True, description="call payment back with each file's status report and statement")
    statement_delay_seconds: float = Field(
        default=0, ge=0, le=3600, description="send a file's statement callback this long after the file")


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal[ACCOUNT_STATES]


@dataclass
class Book:
    """What the bank remembers: account states, booked entries per paying account, the files."""

    accounts: dict[str, str] = field(default_factory=dict)
    booked: dict[str, list[dict]] = field(default_factory=dict)   # paying account -> entries not yet stated
    answered: dict[str, str] = field(default_factory=dict)        # pain.001 MsgId -> pain.002 file name
    files: list[dict] = field(default_factory=list)               # name, kind, direction, at, size
    outbox: list[dict] = field(default_factory=list)              # callbacks to payment, in order


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """How long to wait after the `attempts`-th failed try: doubling from 0.25 s up to 30 s, or
    the receiver's Retry-After when longer (also at most 30 s)."""
    wait = min(BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)
    if retry_after is not None:
        wait = max(wait, min(retry_after, BACKOFF_MAX_SECONDS))
    return wait


def debtor_agent(content: bytes) -> str | None:
    """The paying bank a (valid) pain.001 names: its BICFI, or its CNAPS member id (行号)."""
    root = etree.fromstring(content, safe_parser())
    r = Reader("pain.001.001.09")
    for pmt in r.findall(r.find(root, "CstmrCdtTrfInitn"), "PmtInf"):
        code = r.text(pmt, "DbtrAgt/FinInstnId/BICFI") or r.text(pmt, "DbtrAgt/FinInstnId/ClrSysMmbId/MmbId")
        if code:
            return code
    return None


def _bic8(code: str) -> str:
    return code[:8] if len(code) in (8, 11) and not code.isdigit() else code


class BankSimulator:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = clock_for(settings)
        self.seed = settings.simulator_seed
        self.dir = settings.data_dir / "bank-simulator"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.behaviour = BehaviourIn()
        self.lock = threading.Lock()
        self.book = self._load()
        self._channels = None  # services.payment.channels.ChannelBook, loaded on first use
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    # --- persistence: the files themselves and a small state file beside them ------------------
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _load(self) -> Book:
        return load_state(self._state_path(), Book)

    def _save(self) -> None:
        save_state(self._state_path(), self.book)

    def _keep(self, name: str, kind: str, direction: str, content: bytes) -> None:
        (self.dir / name).write_bytes(content)
        self.book.files.append({"name": name, "kind": kind, "direction": direction,
                                "at": self.clock.now().isoformat(), "size": len(content)})

    def _id(self, kind: str, of: str) -> str:
        return kind.upper()[:4] + hashlib.sha256(f"{self.seed}|{kind}|{of}".encode()).hexdigest()[:24].upper()

    # --- what the bank does ----------------------------------------------------------------------
    def status_of(self, account: str) -> str:
        if not _ACCOUNT.fullmatch(account):
            return "incorrect"
        return self.book.accounts.get(account, "open")

    def receive(self, content: bytes) -> bytes:
        """A pain.001 in; its pain.002 out (the same one again for a file received before)."""
        batch = parse_pain001(content)
        agent = debtor_agent(content)
        with self.lock:
            if batch.msg_id in self.book.answered:
                report = (self.dir / self.book.answered[batch.msg_id]).read_bytes()
                # Called back already (or still calling): nothing more. A file first received
                # while callbacks were off is called back now.
                if self.behaviour.callbacks and not any(d["msg_id"] == batch.msg_id for d in self.book.outbox):
                    self._enqueue(batch.msg_id, batch.debtor_account, [t.end_to_end_id for t in batch.transfers],
                                  agent)
                    self._save()
                    self._notify()
                return report
            now = self.clock.now()
            statuses = []
            entries = self.book.booked.setdefault(batch.debtor_account, [])
            for t in batch.transfers:
                state = self.status_of(t.creditor_account)
                if state == "open":
                    statuses.append(TransactionStatus(t.end_to_end_id, "ACSC"))
                    entries.append({"end_to_end_id": t.end_to_end_id, "amount_fen": t.amount_fen,
                                    "booking_date": business_date(now).isoformat(), "msg_id": batch.msg_id})
                else:
                    statuses.append(TransactionStatus(t.end_to_end_id, "RJCT", REJECTIONS[state]))
            report = build_pain002(batch.msg_id, statuses, now, self._id("pain002", batch.msg_id))
            received, answer = f"{batch.msg_id}.pain001.xml", f"{batch.msg_id}.pain002.xml"
            self._keep(received, "pain.001.001.09", "received", content)
            self._keep(answer, "pain.002.001.12", "sent", report)
            if self.behaviour.duplicate_status:
                self._keep(f"{batch.msg_id}.pain002.again.xml", "pain.002.001.12", "sent", report)
            self.book.answered[batch.msg_id] = answer
            if self.behaviour.callbacks:
                self._enqueue(batch.msg_id, batch.debtor_account, [t.end_to_end_id for t in batch.transfers],
                              agent)
            self._save()
        self._notify()
        return report

    def statement(self, account: str) -> bytes:
        """A camt.053 of the paying account: every debit booked since the last statement."""
        with self.lock:
            _, doc = self._state(account, list(self.book.booked.get(account, [])))
            self._save()
            return doc

    def _state(self, account: str, pending: list[dict]) -> tuple[str, bytes]:
        """Write (and keep) the statement of `pending`, booked entries of `account`, and take them
        off the account's entries to state: each booked entry is stated once. Under the lock."""
        now = self.clock.now()
        shown = pending[1:] if self.behaviour.drop_statement_entry and pending else pending
        entries = tuple(
            StatementEntry(amount_fen=e["amount_fen"], credit_debit="DBIT",
                           booking_date=date.fromisoformat(e["booking_date"]),
                           end_to_end_id=e["end_to_end_id"])
            for e in shown)
        n = sum(1 for f in self.book.files if f["kind"].startswith("camt.053")) + 1
        statement_id = self._id("stmt", f"{account}|{n}")
        doc = build_camt053(Statement(
            msg_id=statement_id, statement_id=statement_id, created_at=now, account=account,
            entries=entries,
            closing_balance=Balance(-sum(e.amount_fen for e in entries), business_date(now)),
        ))
        self._keep(f"{statement_id}.camt053.xml", "camt.053.001.08", "sent", doc)
        stated = {id(e) for e in pending}
        self.book.booked[account] = [e for e in self.book.booked.get(account, []) if id(e) not in stated]
        if len(shown) < len(pending):  # one entry left out, once
            self.behaviour = self.behaviour.model_copy(update={"drop_statement_entry": False})
        return statement_id, doc

    # --- callbacks to payment: a durable outbox in state.json --------------------------------------
    def channel_for(self, agent: str | None) -> str | None:
        """The channel id whose bank code is the file's debtor agent (BIC: its first 8 letters)."""
        if not agent:
            return None
        if self._channels is None:
            from services.payment.channels import BankChannelsError, load_channel_book

            try:
                self._channels = load_channel_book(self.settings.bank_channels_file)
            except BankChannelsError as exc:
                log.error("bank simulator: cannot read the bank channels, no callbacks: %s", exc)
                return None
        for channel in self._channels:
            if channel.bank_code == agent or _bic8(channel.bank_code) == _bic8(agent):
                return channel.channel_id
        return None

    def _enqueue(self, msg_id: str, account: str, end_to_end_ids: list[str], agent: str | None) -> None:
        """Queue a file's callbacks: its status report (twice when told), then the statement of
        what it booked and has not been stated yet. Under the lock."""
        now, at = time.time(), self.clock.now().isoformat()
        channel_id = self.channel_for(agent)

        def entry(id_: str, kind: str, file: str, key: str, not_before: float, path: str) -> dict:
            return {"id": id_, "msg_id": msg_id, "kind": kind, "channel_id": channel_id,
                    "path": path.format(channel_id=channel_id), "file": file, "idempotency_key": key,
                    "status": "pending", "attempts": 0, "not_before": not_before, "created_at": at,
                    "last_status_code": None, "last_error": None, "delivered_at": None}

        if channel_id is None:
            log.warning("bank simulator: no bank channel has the bank code of file %s's debtor agent; "
                        "no callbacks", msg_id)
            dropped = entry(f"{msg_id}:status", "status", f"{msg_id}.pain002.xml", f"{msg_id}:status", now,
                            STATUS_PATH)
            dropped.update(status="dropped", last_error="no bank channel with the debtor agent's bank code")
            self.book.outbox.append(dropped)
            return
        self.book.outbox.append(entry(f"{msg_id}:status", "status", f"{msg_id}.pain002.xml",
                                      f"{msg_id}:status", now, STATUS_PATH))
        if self.behaviour.duplicate_status:
            again = f"{msg_id}.pain002.again.xml"
            self.book.outbox.append(entry(f"{msg_id}:status:again", "status",
                                          again if (self.dir / again).exists() else f"{msg_id}.pain002.xml",
                                          f"{msg_id}:status", now, STATUS_PATH))
        ids = set(end_to_end_ids)  # this file's entries (booked before the msg_id was kept: by id)
        pending = [e for e in self.book.booked.get(account, [])
                   if e.get("msg_id", msg_id) == msg_id and e["end_to_end_id"] in ids]
        statement_id, _ = self._state(account, pending)
        self.book.outbox.append(entry(statement_id, "statement", f"{statement_id}.camt053.xml", statement_id,
                                      now + self.behaviour.statement_delay_seconds, STATEMENT_PATH))

    def callbacks(self) -> list[dict]:
        with self.lock:
            return [dict(d) for d in self.book.outbox]

    def _notify(self) -> None:
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._wake.set)

    def _token(self, channel_id: str) -> str:
        from lifeline.http.auth import mint_token
        from lifeline.runtime.service import jwt_secret

        return mint_token(jwt_secret(self.settings), role="bank_channel", region="000000",
                          user_id=f"bank:{channel_id}", org_code=channel_id, ttl_seconds=600,
                          issuer=self.settings.jwt_issuer)

    def _due(self) -> tuple[list[dict], float | None]:
        """The deliveries to try now, in order (each file's after its earlier ones are done), and
        when the next one not due yet will be (epoch seconds)."""
        now, due, later, waiting = time.time(), [], None, set()
        with self.lock:
            for d in self.book.outbox:
                if d["status"] != "pending" or d["msg_id"] in waiting:
                    continue
                waiting.add(d["msg_id"])  # a file's next callback waits for this one
                if d["not_before"] <= now:
                    due.append(d)
                else:
                    later = d["not_before"] if later is None else min(later, d["not_before"])
        return due, later

    async def _attempt(self, d: dict) -> None:
        assert self._client is not None
        code, error, retry_after = None, None, None
        try:
            body = await asyncio.to_thread((self.dir / d["file"]).read_bytes)
            r = await self._client.post(
                self.settings.payment_url + d["path"], content=body,
                headers={"Content-Type": XML, "Authorization": f"Bearer {self._token(d['channel_id'])}",
                         "Idempotency-Key": d["idempotency_key"]})
            code = r.status_code
            with contextlib.suppress(ValueError):
                retry_after = float(r.headers["retry-after"]) if "retry-after" in r.headers else None
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        except OSError as exc:  # the file went missing
            error = f"{type(exc).__name__}: {exc}"[:300]
        with self.lock:
            d["attempts"] += 1
            d["last_status_code"], d["last_error"] = code, error
            if code is not None and 200 <= code < 300:
                d["status"], d["delivered_at"] = "delivered", self.clock.now().isoformat()
            elif code is not None and 400 <= code < 500 and code not in RETRIED_4XX:
                d["status"] = "dropped"
                log.warning("bank simulator: payment answered %s to %s (%s); callback dropped, file %s kept",
                            code, d["path"], d["idempotency_key"], d["file"])
            else:
                d["not_before"] = time.time() + backoff_seconds(d["attempts"], retry_after)
                log.info("bank simulator: callback %s to %s failed (%s); retry in %.2fs", d["id"], d["path"],
                         code or error, d["not_before"] - time.time())
            self._save()

    async def deliver_due(self) -> float | None:
        """Try every due callback once; seconds until the next try (None: nothing pending)."""
        if not self.behaviour.callbacks:
            return None
        due, later = self._due()
        for d in due:
            await self._attempt(d)
        if due:
            return 0.0  # what follows them (a statement after its status) may be due now
        return None if later is None else max(later - time.time(), 0.0)

    async def _deliver_forever(self) -> None:
        assert self._wake is not None
        while True:
            try:
                wait = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bank simulator: callback delivery failed; retrying")
                wait = 1.0
            if wait == 0.0:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait if wait is not None else 1.0, 1.0))
            self._wake.clear()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_SECONDS)
        self._worker = asyncio.create_task(self._deliver_forever())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(BaseException):
                await self._worker
        if self._client is not None:
            await self._client.aclose()
        self._loop = self._wake = self._worker = self._client = None


def create_app(settings: Settings) -> FastAPI:
    bank = BankSimulator(settings)
    app = FastAPI(title="Lifeline bank simulator (ISO 20022)", lifespan=lifespan_of(bank.start, bank.stop))
    app.state.bank = bank
    install_problem_handlers(app)
    harden(app, settings)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "service": "bank"}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ok"}

    async def misbehave() -> None:
        if bank.behaviour.down:
            raise Problem(503, "Bank unavailable", "the bank simulator was told to be down",
                          headers={"Retry-After": "5"})
        if bank.behaviour.slow_seconds:
            await asyncio.sleep(bank.behaviour.slow_seconds)

    @app.post("/v1/files", response_class=Response,
              responses={200: {"content": {XML: {}}, "description": "the pain.002 status report"}})
    async def receive(request: Request):
        """Receive a pain.001.001.09 file; answer its pain.002.001.12 status report."""
        await misbehave()
        content = await request.body()
        try:
            report = await asyncio.to_thread(bank.receive, content)
        except Iso20022Error as exc:
            raise Problem(422, "Not a valid pain.001.001.09", str(exc), slug="invalid-pain001") from None
        return Response(report, media_type=XML)

    @app.post("/v1/statements/{account}", response_class=Response,
              responses={200: {"content": {XML: {}}, "description": "the camt.053 statement"}})
    async def statement(account: str):
        """The paying account's camt.053.001.08: what was booked since the last statement."""
        await misbehave()
        return Response(await asyncio.to_thread(bank.statement, account), media_type=XML)

    @app.put("/v1/accounts/{account}")
    async def set_account(account: str, body: AccountIn):
        with bank.lock:
            bank.book.accounts[account] = body.status
            bank._save()
        return {"account": account, "status": body.status}

    @app.get("/v1/accounts/{account}")
    async def get_account(account: str):
        return {"account": account, "status": bank.status_of(account)}

    @app.get("/v1/behaviour")
    async def get_behaviour():
        return bank.behaviour.model_dump()

    @app.put("/v1/behaviour")
    async def set_behaviour(body: BehaviourIn):
        bank.behaviour = body
        bank._notify()  # callbacks may have been turned back on
        return body.model_dump()

    @app.get("/v1/callbacks")
    async def callbacks():
        """The callbacks to payment, in order: path, file, Idempotency-Key, attempts, status
        (pending, delivered or dropped), the last answer's status code or error."""
        return {"items": [{k: v for k, v in d.items() if k != "not_before"} for d in bank.callbacks()]}

    @app.get("/v1/files")
    async def files():
        return {"items": list(bank.book.files)}

    @app.get("/v1/files/{name}", response_class=Response)
    async def file(name: str):
        known = {f["name"] for f in bank.book.files}
        if name not in known:
            raise Problem(404, "File not found", f"no file {name}")
        return Response((bank.dir / name).read_bytes(), media_type=XML)

    return app
