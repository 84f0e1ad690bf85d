"""SMS gateway simulator: the carrier-side gateway notify sends notices through.

A real SMS gateway cannot be reached from here, so this process plays one the way their HTTP
interfaces work:

- `POST /v1/messages` {"to": "13812345678", "text": "..."} with an `Idempotency-Key` header →
  201 {"message_id", "to_masked", "duplicate": false}. The same key again → 200 with the same
  message id and `"duplicate": true`: the message is not sent twice (a sender that lost the
  answer, or crashed before recording it, resends safely). The same key with another number or
  text → 409. Without a key every request is a new message. A number that is not a mainland
  mobile (1[3-9] and 9 more digits), or one marked invalid (`PUT /v1/numbers/{number}`
  {"status": "invalid"}), → 422 problem+json of type `.../invalid-number`, nothing sent.
- `GET /v1/messages` lists what was sent, in order: each message once with its key and how many
  requests asked for it (`requests`), so a test sees exactly once; `?key=` / `?to=` narrow it.
  `DELETE /v1/messages` forgets them.

It misbehaves on purpose when told (`PUT /v1/behaviour` {"mode": ...}):
- `ok`: sends and answers at once;
- `fail`: answers 503 (Retry-After) and sends nothing;
- `slow`: sends, then answers after `slow_seconds` (default 2 s: within a sender's timeout);
- `timeout`: sends, then holds the answer longer than notify waits (LIFELINE_SMS_TIMEOUT_SECONDS
  + 5 s) or until the behaviour changes: the sender sees no answer, but the message went — the
  case exactly-once delivery must survive (the resend with the same key is a duplicate).
The behaviour is not kept across a restart (a restarted gateway is a working one).

Everything else is durable: the messages, the keys and the numbers' states live in
<data_dir>/sms/state.json, written atomically after each change, so a restart keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.clock import clock_for
from lifeline.http.app import lifespan_of
from lifeline.http.hardening import harden
from lifeline.http.problems import Problem, install_problem_handlers
from lifeline.settings import Settings
from lifeline.simulators import RememberingSimulator

MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
TEXT_MAX = 500  # a long SMS, concatenated (70 characters a part)
_STRICT = ConfigDict(extra="forbid", strict=True)


class BehaviourIn(BaseModel):
    model_config = _STRICT
    mode: Literal["ok", "fail", "slow", "timeout"] = Field(
        default="ok", description="ok: send; fail: 503, nothing sent; slow: send, answer after slow_seconds; "
                                  "timeout: send, answer after the sender has given up")
    slow_seconds: float = Field(default=2.0, ge=0, le=60, description="the wait in slow mode")


class MessageIn(BaseModel):
    model_config = _STRICT
    to: str = Field(min_length=1, max_length=32, description="a mainland mobile number")
    text: str = Field(min_length=1, max_length=TEXT_MAX)


class NumberIn(BaseModel):
    model_config = _STRICT
    status: Literal["ok", "invalid"]


class Refused(Exception):
    def __init__(self, status: int, title: str, detail: str, slug: str):
        super().__init__(detail)
        self.status, self.title, self.detail, self.slug = status, title, detail, slug


@dataclass
class State:
    """What the gateway remembers (state.json)."""

    messages: list[dict] = field(default_factory=list)   # message_id, idempotency_key, to, text, sent_at, requests
    keys: dict[str, int] = field(default_factory=dict)    # Idempotency-Key -> index in messages
    numbers: dict[str, str] = field(default_factory=dict)  # number -> "invalid"
    requests: int = 0                                      # POSTs that reached the gateway
    failures_answered: int = 0                             # 503s in fail mode
    held: int = 0                                          # answers held in timeout mode


def mask(number: str) -> str:
    return number[:3] + "****" + number[-4:] if len(number) >= 7 else "****"


class SmsGateway(RememberingSimulator):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = clock_for(settings)
        self.seed = settings.simulator_seed
        self._remember(settings.data_dir, "sms", State, BehaviourIn())
        self.hold_seconds = settings.sms_timeout_seconds + 5  # longer than notify waits for an answer

    def set_number(self, number: str, status: str) -> None:
        with self.lock:
            if status == "invalid":
                self.state.numbers[number] = "invalid"
            else:
                self.state.numbers.pop(number, None)
            self._save()

    # --- sending ---------------------------------------------------------------------------------
    def _message_id(self, key: str) -> str:
        return "SMS-" + hashlib.sha256(f"{self.seed}|sms|{key}".encode()).hexdigest()[:20].upper()

    def send(self, to: str, text: str, key: str | None) -> tuple[dict, bool]:
        """Send (once per key): (the message, whether it was sent before). Refused when the
        number is not a mobile one or is marked invalid, or the key names another message."""
        with self.lock:
            self.state.requests += 1
            if not MOBILE.fullmatch(to) or self.state.numbers.get(to) == "invalid":
                self._save()
                raise Refused(422, "Invalid number", "not a mainland mobile number that can receive SMS",
                              "invalid-number")
            if key is not None and key in self.state.keys:
                message = self.state.messages[self.state.keys[key]]
                if (message["to"], message["text"]) != (to, text):
                    self._save()
                    raise Refused(409, "Idempotency-Key reused", "this key was used for another message",
                                  "key-reused")
                message["requests"] += 1
                self._save()
                return dict(message), True
            n = len(self.state.messages)
            message = {"message_id": self._message_id(key if key is not None else f"#{n}"),
                       "idempotency_key": key, "to": to, "text": text,
                       "sent_at": self.clock.now().isoformat(), "requests": 1}
            self.state.messages.append(message)
            if key is not None:
                self.state.keys[key] = n
            self._save()
            return dict(message), False

    async def answer(self, to: str, text: str, key: str | None) -> tuple[int, dict]:
        mode = self.behaviour.mode
        if mode == "fail":
            with self.lock:
                self.state.requests += 1
                self.state.failures_answered += 1
                self._save()
            raise Refused(503, "Gateway unavailable", "told to fail", "gateway-unavailable")
        message, duplicate = await asyncio.to_thread(self.send, to, text, key)
        if mode == "slow":
            await asyncio.sleep(self.behaviour.slow_seconds)
        elif mode == "timeout":
            changed = self._changed
            with self.lock:
                self.state.held += 1
                self._save()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=self.hold_seconds)
        return (200 if duplicate else 201), {"message_id": message["message_id"], "to_masked": mask(to),
                                             "duplicate": duplicate}

    def messages(self, key: str | None = None, to: str | None = None) -> dict:
        with self.lock:
            s = self.state
            items = [dict(m) for m in s.messages
                     if (key is None or m["idempotency_key"] == key) and (to is None or m["to"] == to)]
            return {"items": items, "count": len(items), "requests": s.requests,
                    "duplicates": sum(m["requests"] - 1 for m in s.messages),
                    "failures_answered": s.failures_answered, "held": s.held}

    def clear(self) -> None:
        with self.lock:
            s = self.state
            s.messages, s.keys = [], {}
            s.requests = s.failures_answered = s.held = 0
            self._save()

    async def start(self) -> None:
        self._changed = asyncio.Event()

    async def stop(self) -> None:
        self._changed.set()  # let held answers go


def create_app(settings: Settings) -> FastAPI:
    gateway = SmsGateway(settings)
    app = FastAPI(title="Lifeline SMS gateway simulator", lifespan=lifespan_of(gateway.start, gateway.stop))
    app.state.sms = gateway
    install_problem_handlers(app)
    harden(app, settings)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "service": "sms"}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ok"}

    @app.post("/v1/messages", status_code=201)
    async def send(body: MessageIn, request: Request):
        """Send one SMS; the same Idempotency-Key again answers the same message id (sent once)."""
        key = request.headers.get("Idempotency-Key") or None
        try:
            status, answer = await gateway.answer(body.to, body.text, key)
        except Refused as exc:
            headers = {"Retry-After": "1"} if exc.status == 503 else None
            raise Problem(exc.status, exc.title, exc.detail, slug=exc.slug, headers=headers) from None
        return JSONResponse(answer, status_code=status)

    @app.get("/v1/messages")
    async def messages(key: str | None = Query(None, description="only the message of this Idempotency-Key"),
                       to: str | None = Query(None, description="only the messages to this number")):
        """What was sent, in order, each message once with the number of requests for it."""
        return gateway.messages(key, to)

    @app.delete("/v1/messages", status_code=204)
    async def clear():
        gateway.clear()
        return Response(status_code=204)

    @app.get("/v1/behaviour")
    async def get_behaviour():
        return gateway.behaviour.model_dump()

    @app.put("/v1/behaviour")
    async def set_behaviour(body: BehaviourIn):
        gateway.set_behaviour(body)
        return body.model_dump()

    @app.put("/v1/numbers/{number}")
    async def set_number(number: str, body: NumberIn):
        """Mark a number invalid (the gateway refuses it, 422) or working again."""
        gateway.set_number(number, body.status)
        return {"number": number, "status": body.status}

    return app
