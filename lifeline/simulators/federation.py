"""Charity-federation simulator: the 慈善联合会 side of charity's federation feed.

A real federation cannot be reached from here, so this process plays one over the public contract
(SPEC §4 "Charity"), as an outside organisation would, with a `charity_federation` token:

- It subscribes: `POST {charity}/v1/federation/webhooks` with its receiver's URL
  (`<federation_url>/webhooks`) and keeps the endpoint id and the secret charity answers. At start a
  background task does this once, retrying with backoff until charity answers, so any start order
  works (`LIFELINE_FEDERATION_SUBSCRIBE=false` turns it off); `POST /v1/subscription` does it on
  demand (the same subscription again, a new one with `{"renew": true}`).
- It receives the webhooks (`POST /webhooks`) and verifies every one with the reference
  `standardwebhooks` package (`webhook-id`, `webhook-timestamp` within 5 minutes of the wall clock,
  `webhook-signature`) against the secrets charity gave it. A bad or missing signature is answered
  400, counted and never stored; a good one is stored once by its `webhook-id` (a repeat, as
  at-least-once delivery allows, is answered 200 and counted as a duplicate), in arrival order:
  `GET /v1/received`.
- It reads the cursor feed on command (`POST /v1/feed/pull`: from its saved cursor to the end,
  items kept once by id: `GET /v1/feed`).
- It reports back on command: `POST /v1/needs/{need_id}/accept` and `/fulfil` call charity's
  `/v1/federation/needs/{need_id}/acceptance` and `/fulfilment` as LIFELINE_FEDERATION_ORGANISATION
  and answer with charity's status and body (problem+json passed through). With `auto_accept` on,
  every need.published it receives is accepted at once (once per need, retried while charity
  answers 5xx or cannot be reached).

It misbehaves on purpose when told (`PUT /v1/behaviour`): `fail` answers every delivery 503;
`silent` holds each delivery without answering, longer than charity waits
(LIFELINE_WEBHOOK_TIMEOUT_SECONDS + 5 s) or until the behaviour changes, then answers 503 and keeps
nothing. The behaviour is not kept across a restart (a restarted receiver is a working one).

Everything else is durable: subscription, secrets, received and pulled items, the feed cursor,
the counters and the auto-accepts not yet answered live in <data_dir>/federation/state.json,
written atomically after each change, so a restart keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from standardwebhooks import Webhook, WebhookVerificationError

from lifeline.domain.clock import clock_for
from lifeline.http.app import lifespan_of
from lifeline.http.hardening import harden
from lifeline.http.problems import Problem, install_problem_handlers
from lifeline.settings import Settings
from lifeline.simulators import RememberingSimulator

log = logging.getLogger(__name__)

WEBHOOKS_PATH = "/v1/federation/webhooks"
FEED_PATH = "/v1/federation/feed"
NEED_PATH = "/v1/federation/needs/{need_id}/{what}"
CHARITY_TIMEOUT_SECONDS = 10.0
BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 5.0
MAX_FEED_PAGES = 100_000
ACCEPT_NOTE = "联合会已认领，对接帮扶（模拟）"
FULFIL_NOTE = "联合会已完成帮扶（模拟）"
_STRICT = ConfigDict(extra="forbid", strict=True)


class BehaviourIn(BaseModel):
    model_config = _STRICT
    mode: Literal["ok", "fail", "silent"] = Field(
        default="ok", description="ok: take deliveries; fail: answer 503; silent: hold them unanswered")
    auto_accept: bool = Field(default=False, description="accept every need.published received at once")


class SubscriptionIn(BaseModel):
    model_config = _STRICT
    renew: bool = Field(default=False, description="register a new endpoint even when subscribed")


class AcceptIn(BaseModel):
    model_config = _STRICT
    note: str = Field(default=ACCEPT_NOTE, max_length=500)
    organisation: str | None = Field(default=None, description="default: LIFELINE_FEDERATION_ORGANISATION")


class FulfilIn(BaseModel):
    model_config = _STRICT
    amount_fen: int = Field(description="what the federation gave, in fen (charity checks it)")
    note: str = Field(default=FULFIL_NOTE, max_length=500)
    organisation: str | None = Field(default=None, description="default: LIFELINE_FEDERATION_ORGANISATION")


class PullIn(BaseModel):
    model_config = _STRICT
    limit: int | None = Field(default=None, ge=1, le=1000, description="items per page asked of charity "
                                                                        "(its default when absent)")


@dataclass
class State:
    """What the federation remembers (state.json)."""

    subscription: dict | None = None                     # endpoint_id, url, secret, subscribed_at
    secrets: list[str] = field(default_factory=list)     # every secret charity gave it, oldest first
    pending_key: str | None = None                       # Idempotency-Key of a subscription in flight
    items: list[dict] = field(default_factory=list)      # webhook bodies, in arrival order
    ids: list[str] = field(default_factory=list)         # their webhook-ids, same order
    duplicates: int = 0
    bad_signatures: int = 0
    failures_answered: int = 0                           # 503s answered in fail mode
    held: int = 0                                        # deliveries held unanswered in silent mode
    feed: list[dict] = field(default_factory=list)       # items pulled from the cursor feed, in order
    feed_cursor: str | None = None
    to_accept: list[str] = field(default_factory=list)   # auto-accepts not yet answered by charity
    accepted: list[str] = field(default_factory=list)    # need ids auto-accept took (once each)
    actions: list[dict] = field(default_factory=list)    # every call to charity on a need, with its answer


class CharityAnswer(Exception):
    """Charity answered a call with something other than success: passed on as it is."""

    def __init__(self, response: httpx.Response):
        self.response = response
        super().__init__(f"charity answered {response.status_code}")


def backoff_seconds(attempts: int) -> float:
    return min(BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


def passed_on(r: httpx.Response) -> Response:
    """Charity's answer as it came: status, body and content type (problem+json stays so)."""
    return Response(r.content, status_code=r.status_code,
                    media_type=r.headers.get("content-type", "application/json"))


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


class FederationSimulator(RememberingSimulator):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = clock_for(settings)
        self._remember(settings.data_dir, "federation", State, BehaviourIn())
        self._ids = set(self.state.ids)
        self.receiver_url = settings.federation_url + "/webhooks"
        self.hold_seconds = settings.webhook_timeout_seconds + 5  # longer than charity waits for an answer
        self._client: httpx.AsyncClient | None = None
        self._subscribing: asyncio.Lock | None = None
        self._pulling: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []

    # --- the receiver ----------------------------------------------------------------------------
    async def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        """One delivery: (status, answer). Stored once by webhook-id when its signature is good."""
        if self.behaviour.mode == "fail":
            with self.lock:
                self.state.failures_answered += 1
                self._save()
            return 503, {"title": "Federation unavailable", "detail": "told to fail"}
        if self.behaviour.mode == "silent":
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=self.hold_seconds)
            with self.lock:
                self.state.held += 1
                self._save()
            return 503, {"title": "Federation unavailable", "detail": "held without an answer (silent)"}
        payload, error = self.verify(body, headers)
        webhook_id = {k.lower(): v for k, v in headers.items()}.get("webhook-id", "")
        with self.lock:
            if error is not None:
                self.state.bad_signatures += 1
                self._save()
                return 400, {"title": "Bad webhook signature", "detail": error}
            if webhook_id in self._ids:
                self.state.duplicates += 1
                self._save()
                return 200, {"webhook_id": webhook_id, "duplicate": True}
            self.state.ids.append(webhook_id)
            self._ids.add(webhook_id)
            self.state.items.append(payload)
            queued = self._queue_accept(payload)
            self._save()
        if queued:
            self._notify()
        return 200, {"webhook_id": webhook_id, "duplicate": False}

    def verify(self, body: bytes, headers: dict[str, str]) -> tuple[Any, str | None]:
        """(the JSON body, None) when some secret charity gave verifies it; (None, why) otherwise."""
        with self.lock:
            secrets = list(reversed(self.state.secrets))  # the newest first
        if not secrets:
            return None, "not subscribed: no secret to verify with"
        error = "no secret"
        for secret in secrets:
            try:
                return Webhook(secret).verify(body, headers), None
            except (WebhookVerificationError, ValueError, TypeError) as exc:  # malformed headers/body too
                error = f"{type(exc).__name__}: {exc}"[:300]
        return None, error

    def _queue_accept(self, item: Any) -> bool:
        """With auto_accept on, a need.published item's need is queued for acceptance, once.
        Under the lock."""
        if not (self.behaviour.auto_accept and isinstance(item, dict) and item.get("type") == "need.published"):
            return False
        need_id = (item.get("data") or {}).get("need_id")
        if not isinstance(need_id, str) or need_id in self.state.accepted:
            return False
        self.state.accepted.append(need_id)
        self.state.to_accept.append(need_id)
        return True

    def received(self) -> dict:
        with self.lock:
            s = self.state
            return {"items": list(s.items), "count": len(s.items), "duplicates": s.duplicates,
                    "bad_signatures": s.bad_signatures, "failures_answered": s.failures_answered,
                    "held": s.held}

    def clear_received(self) -> None:
        with self.lock:
            s = self.state
            s.items, s.ids = [], []
            self._ids = set()
            s.duplicates = s.bad_signatures = s.failures_answered = s.held = 0
            self._save()

    # --- calling charity -------------------------------------------------------------------------
    def _headers(self, key: str | None = None) -> dict[str, str]:
        from lifeline.http.auth import mint_token
        from lifeline.runtime.service import jwt_secret

        region = self.settings.federation_region
        token = mint_token(jwt_secret(self.settings), role="charity_federation", region=region,
                           user_id="federation-simulator", org_code=region, ttl_seconds=600,
                           issuer=self.settings.jwt_issuer)
        return {"Authorization": f"Bearer {token}", **({"Idempotency-Key": key} if key else {})}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise Problem(503, "Not started", "the federation simulator is starting or stopping")
        return self._client

    def subscription_view(self) -> dict:
        sub = self.state.subscription
        return {"subscribed": sub is not None, **(sub or {}), "receiver_url": self.receiver_url}

    async def subscribe(self, renew: bool = False) -> tuple[int, dict]:
        """Register the receiver at charity (once; again when `renew`). (status, answer); raises
        CharityAnswer when charity refuses, httpx.HTTPError when it cannot be reached."""
        assert self._subscribing is not None
        async with self._subscribing:
            if self.state.subscription is not None and not renew:
                return 200, self.subscription_view()
            with self.lock:
                if self.state.pending_key is None:  # kept until charity answers: a retry is the same request
                    self.state.pending_key = f"federation-subscribe-{uuid.uuid4().hex}"
                    self._save()
                key = self.state.pending_key
            r = await self._http().post(self.settings.charity_url + WEBHOOKS_PATH, json={"url": self.receiver_url},
                                        headers=self._headers(key))
            if r.status_code not in (200, 201):
                if 400 <= r.status_code < 500:
                    with self.lock:  # refused: nothing was registered, the next try is a new request
                        self.state.pending_key = None
                        self._save()
                raise CharityAnswer(r)
            answer = r.json()
            with self.lock:
                self.state.subscription = {"endpoint_id": answer["endpoint_id"], "url": answer["url"],
                                           "secret": answer["secret"],
                                           "subscribed_at": self.clock.now().isoformat()}
                if answer["secret"] not in self.state.secrets:
                    self.state.secrets.append(answer["secret"])
                self.state.pending_key = None
                self._save()
            log.info("federation simulator: subscribed at %s as endpoint %s", self.settings.charity_url,
                     answer["endpoint_id"])
            return 201, self.subscription_view()

    async def _subscribe_until_done(self) -> None:
        attempts = 0
        while self.state.subscription is None:
            try:
                await self.subscribe()
                return
            except asyncio.CancelledError:
                raise
            except CharityAnswer as exc:
                why = f"charity answered {exc.response.status_code}: {exc.response.text[:200]}"
            except Exception as exc:  # noqa: BLE001 - charity not up yet, or anything else: try again
                why = f"{type(exc).__name__}: {exc}"
            attempts += 1
            if attempts == 1 or attempts % 20 == 0:
                log.warning("federation simulator: cannot subscribe at %s yet (%s); retrying",
                            self.settings.charity_url, why)
            await asyncio.sleep(backoff_seconds(attempts))

    async def report(self, need_id: str, what: Literal["acceptance", "fulfilment"], body: dict,
                     key: str | None = None) -> httpx.Response:
        """Tell charity the need was accepted or fulfilled; its answer, recorded in `actions`."""
        url = self.settings.charity_url + NEED_PATH.format(need_id=quote(need_id, safe=""), what=what)
        r = await self._http().post(url, json=body, headers=self._headers(key or f"federation-{uuid.uuid4().hex}"))
        with self.lock:
            self.state.actions.append({"need_id": need_id, "what": what, "request": body,
                                       "status": r.status_code, "answer": _json(r),
                                       "at": self.clock.now().isoformat()})
            self._save()
        return r

    async def accept(self, need_id: str, body: AcceptIn, key: str | None = None) -> httpx.Response:
        return await self.report(need_id, "acceptance", {
            "organisation": body.organisation or self.settings.federation_organisation, "note": body.note}, key)

    async def fulfil(self, need_id: str, body: FulfilIn, key: str | None = None) -> httpx.Response:
        return await self.report(need_id, "fulfilment", {
            "organisation": body.organisation or self.settings.federation_organisation,
            "amount_fen": body.amount_fen, "note": body.note}, key)

    # --- auto-accept: a durable queue, worked by a background task ------------------------------
    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _accept_forever(self) -> None:
        assert self._wake is not None
        attempts = 0
        while True:
            with self.lock:
                need_id = self.state.to_accept[0] if self.state.to_accept else None
            if need_id is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            try:
                r = await self.accept(need_id, AcceptIn(), key=f"federation-auto-accept-{need_id}")
                done = r.status_code < 500
                why = f"charity answered {r.status_code}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - charity unreachable: try again
                done, why = False, f"{type(exc).__name__}: {exc}"
            if done:
                attempts = 0
                with self.lock:
                    self.state.to_accept.remove(need_id)
                    self._save()
                continue
            attempts += 1
            log.info("federation simulator: auto-accept of %s failed (%s); retrying", need_id, why)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff_seconds(attempts))
            self._wake.clear()

    # --- the cursor feed ---------------------------------------------------------------------------
    async def pull(self, limit: int | None = None) -> dict:
        """Read charity's feed from the saved cursor to its end; new items kept (by id)."""
        assert self._pulling is not None
        async with self._pulling:
            pulled, queued = 0, False
            for _ in range(MAX_FEED_PAGES):
                cursor = self.state.feed_cursor
                params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
                r = await self._http().get(self.settings.charity_url + FEED_PATH, params=params,
                                           headers=self._headers())
                if r.status_code != 200:
                    raise CharityAnswer(r)
                page = r.json()
                items = page.get("items") or []
                with self.lock:
                    known = {i.get("id") for i in self.state.feed if isinstance(i, dict)}
                    for item in items:
                        if item.get("id") not in known:
                            known.add(item.get("id"))
                            self.state.feed.append(item)
                            pulled += 1
                            queued = self._queue_accept(item) or queued
                    self.state.feed_cursor = page.get("next_cursor") or cursor
                    self._save()
                if not items or self.state.feed_cursor == cursor:
                    break
            if queued:
                self._notify()
            return {"pulled": pulled, "cursor": self.state.feed_cursor}

    def feed(self) -> dict:
        with self.lock:
            return {"items": list(self.state.feed), "count": len(self.state.feed), "cursor": self.state.feed_cursor}

    def clear_feed(self) -> None:
        with self.lock:
            self.state.feed, self.state.feed_cursor = [], None
            self._save()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=CHARITY_TIMEOUT_SECONDS)
        self._subscribing, self._pulling, self._wake = asyncio.Lock(), asyncio.Lock(), asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks = [asyncio.create_task(self._accept_forever())]
        if self.settings.federation_subscribe and self.state.subscription is None:
            self._tasks.append(asyncio.create_task(self._subscribe_until_done()))

    async def stop(self) -> None:
        self._changed.set()  # let held deliveries go
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._client is not None:
            await self._client.aclose()
        self._tasks, self._client = [], None


def create_app(settings: Settings) -> FastAPI:
    fed = FederationSimulator(settings)
    app = FastAPI(title="Lifeline charity-federation simulator (Standard Webhooks)",
                  lifespan=lifespan_of(fed.start, fed.stop))
    app.state.federation = fed
    install_problem_handlers(app)
    harden(app, settings)

    async def charity(call) -> Any:
        try:
            return await call
        except CharityAnswer as exc:
            return passed_on(exc.response)
        except httpx.HTTPError as exc:
            raise Problem(502, "Charity unreachable", f"{type(exc).__name__}: {exc}"[:300],
                          slug="charity-unreachable") from None

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "service": "federation"}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ok"}

    @app.post("/webhooks")
    async def webhooks(request: Request):
        """Receive one Standard Webhooks delivery from charity (verified, stored once by id)."""
        status, answer = await fed.receive(await request.body(), dict(request.headers))
        if status >= 400:
            raise Problem(status, answer["title"], answer["detail"])
        return JSONResponse(answer, status_code=status)

    @app.get("/v1/behaviour")
    async def get_behaviour():
        return fed.behaviour.model_dump()

    @app.put("/v1/behaviour")
    async def set_behaviour(body: BehaviourIn):
        fed.set_behaviour(body)
        return body.model_dump()

    @app.get("/v1/received")
    async def received():
        """The deliveries taken, in arrival order, and the counters."""
        return fed.received()

    @app.delete("/v1/received", status_code=204)
    async def clear_received():
        fed.clear_received()
        return Response(status_code=204)

    @app.get("/v1/subscription")
    async def get_subscription():
        return fed.subscription_view()

    @app.post("/v1/subscription")
    async def subscribe(body: SubscriptionIn | None = None):
        """Register the receiver at charity (idempotent; `renew`: a new endpoint and secret)."""
        answer = await charity(fed.subscribe(renew=bool(body and body.renew)))
        if isinstance(answer, Response):
            return answer
        status, view = answer
        return JSONResponse(view, status_code=status)

    @app.post("/v1/needs/{need_id}/accept")
    async def accept(need_id: str, request: Request, body: AcceptIn | None = None):
        """Accept the need at charity (NeedAccepted); charity's answer passed on."""
        r = await charity(fed.accept(need_id, body or AcceptIn(), request.headers.get("Idempotency-Key")))
        return r if isinstance(r, Response) else passed_on(r)

    @app.post("/v1/needs/{need_id}/fulfil")
    async def fulfil(need_id: str, body: FulfilIn, request: Request):
        """Report the need fulfilled by the federation (NeedFulfilled); charity's answer passed on."""
        r = await charity(fed.fulfil(need_id, body, request.headers.get("Idempotency-Key")))
        return r if isinstance(r, Response) else passed_on(r)

    @app.get("/v1/actions")
    async def actions():
        """Every acceptance and fulfilment sent to charity (on command or auto), with its answer."""
        with fed.lock:
            return {"items": list(fed.state.actions), "auto_accept_pending": list(fed.state.to_accept)}

    @app.post("/v1/feed/pull")
    async def pull(body: PullIn | None = None):
        """Read charity's cursor feed from the saved cursor to its end."""
        return await charity(fed.pull(body.limit if body else None))

    @app.get("/v1/feed")
    async def feed():
        return fed.feed()

    @app.delete("/v1/feed", status_code=204)
    async def clear_feed():
        """Forget the pulled items and the cursor: the next pull starts from the beginning."""
        fed.clear_feed()
        return Response(status_code=204)

    return app
