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
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.clock import clock_for
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
from lifeline.rules.periods import business_date
from lifeline.settings import Settings

XML = "application/xml"
# What the bank says about a transfer to an account, by the account's state.
REJECTIONS = {"incorrect": "AC01", "closed": "AC04", "blocked": "AC06", "deceased": "MD07"}
ACCOUNT_STATES = ("open", *REJECTIONS)
_ACCOUNT = re.compile(r"\d{12,30}")


class BehaviourIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    down: bool = Field(default=False, description="answer every file with 503")
    slow_seconds: float = Field(default=0, ge=0, le=60, description="wait this long before answering")
    duplicate_status: bool = Field(default=False, description="keep (and send) each status report twice")
    drop_statement_entry: bool = Field(default=False, description="leave one booked entry out of the next statement")


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

    # --- persistence: the files themselves and a small state file beside them ------------------
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _load(self) -> Book:
        path = self._state_path()
        return Book(**json.loads(path.read_text())) if path.exists() else Book()

    def _save(self) -> None:
        tmp = self._state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.book), ensure_ascii=False))
        tmp.replace(self._state_path())

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
        with self.lock:
            if batch.msg_id in self.book.answered:
                return (self.dir / self.book.answered[batch.msg_id]).read_bytes()
            now = self.clock.now()
            statuses = []
            entries = self.book.booked.setdefault(batch.debtor_account, [])
            for t in batch.transfers:
                state = self.status_of(t.creditor_account)
                if state == "open":
                    statuses.append(TransactionStatus(t.end_to_end_id, "ACSC"))
                    entries.append({"end_to_end_id": t.end_to_end_id, "amount_fen": t.amount_fen,
                                    "booking_date": business_date(now).isoformat()})
                else:
                    statuses.append(TransactionStatus(t.end_to_end_id, "RJCT", REJECTIONS[state]))
            report = build_pain002(batch.msg_id, statuses, now, self._id("pain002", batch.msg_id))
            received, answer = f"{batch.msg_id}.pain001.xml", f"{batch.msg_id}.pain002.xml"
            self._keep(received, "pain.001.001.09", "received", content)
            self._keep(answer, "pain.002.001.12", "sent", report)
            if self.behaviour.duplicate_status:
                self._keep(f"{batch.msg_id}.pain002.again.xml", "pain.002.001.12", "sent", report)
            self.book.answered[batch.msg_id] = answer
            self._save()
            return report

    def statement(self, account: str) -> bytes:
        """A camt.053 of the paying account: every debit booked since the last statement."""
        with self.lock:
            pending = self.book.booked.get(account, [])
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
            self.book.booked[account] = []
            if self.behaviour.drop_statement_entry:
                self.behaviour = self.behaviour.model_copy(update={"drop_statement_entry": False})
            self._save()
            return doc


def create_app(settings: Settings) -> FastAPI:
    bank = BankSimulator(settings)
    app = FastAPI(title="Lifeline bank simulator (ISO 20022)")
    app.state.bank = bank
    install_problem_handlers(app)

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
        return body.model_dump()

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
