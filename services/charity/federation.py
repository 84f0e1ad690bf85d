"""The federation feed (一案一策): what no fund covers goes to the charity federation, masked.

- **Publication** (`publish_uncovered`, a step of the background worker): every open need whose
  household consented to sharing and that is not published yet is matched against the funds
  (the documented ranking policy, services/charity/matching.py; candidates in priority order
  on one ledger, so two needs are never both "covered" by the same yuan). A need the
  proposal leaves short (or one that asks for help in kind, 0 fen) is published once
  (`NeedPublished`) with what is still needed; a need without consent never is. A need the
  funds' proposal covers is looked at again at the next scan after anything changed (a fund
  drawn down by others can leave it short later).
- **The feed** (`project_federation`, part of charity's read models): `NeedPublished`, then
  `NeedAccepted` and `NeedFulfilled` of a published need, each an item keyed by a 12-digit
  sequence (the cursor) in log order: `{"id": "<need_id>/<published|accepted|fulfilled>",
  "cursor", "type": "need.<...>", "timestamp", "data": {masked profile, amount still needed,
  status}}`. A published need later covered by funds (or by the federation) is withdrawn by
  its `need.fulfilled` item (amount still needed 0). The counter is a document of the read
  model, so a rebuild from the log numbers the items the same way (`lifeline replay`).
- **Reading it**: `GET /v1/federation/feed?cursor=&limit=`, or signed webhooks
  (services/charity/webhooks.py) registered with `POST /v1/federation/webhooks`.
- **Feedback**: `POST /v1/federation/needs/{need_id}/acceptance` (`NeedAccepted`) and
  `/fulfilment` (`NeedFulfilled`, by the federation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator

from lifeline.domain.aggregate import Meta, new_id
from lifeline.http.app import COMMAND_ERRORS, CREATE_ERRORS, LIST_ERRORS, READ_ERRORS, idempotent_id, strict
from lifeline.http.auth import Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules.periods import business_date
from lifeline.rules.vocabulary import HOUSEHOLD_TYPES, NEED_CATEGORIES, URGENCIES
from lifeline.stores.sealing import Sealer, sealer_for
from lifeline.stores.sidestore import SideStore, SideTx
from lifeline.runtime.service import nap
from services.charity.domain import Need, NeedRuleViolation
from services.charity.webhooks import (
    ENDPOINT_DOC,
    FEED_ITEM,
    START_CURSOR,
    Deliverer,
    WebhookEndpoint,
    check_url,
    delivery_store,
    in_region,
    new_secret,
    project_endpoint,
    secret_key,
)

if TYPE_CHECKING:
    from lifeline.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

SYSTEM = Meta("system:charity", "system")
FEED_HEAD = "feed_head"              # key "seq": the last cursor given
PUBLISHED_NEED = "federation_need"   # key need_id: the masked profile as last sent
CANDIDATE = "federation_candidate"   # key need_id: open, consented, not yet published
KINDS = ("published", "accepted", "fulfilled")
FEED_READERS = ("charity_federation", "admin", "auditor")
ENDPOINT_WRITERS = ("charity_federation", "admin")
ENDPOINT_READERS = ("charity_federation", "admin", "auditor")
FEDERATION = ("charity_federation",)
CURSOR = r"^\d{12}$"


# --- the feed (read model) -------------------------------------------------------------------------
def feed_data(event: Need.Published) -> dict[str, Any]:
    """What the federation sees of a need: never an ID number, a case id, a village or a name."""
    return {
        "need_id": event.need_id, "name_masked": event.name_masked, "region_code": event.region_code,
        "members_count": event.members_count, "household_type": event.household_type,
        "need_category": event.need_category, "amount_still_needed_fen": event.amount_still_needed_fen,
        "urgency": event.urgency, "due_date": event.due_date, "status": "published",
    }


def _append(tx: SideTx, need_id: str, kind: str, timestamp: str, data: dict[str, Any]) -> None:
    head = tx.get(FEED_HEAD, "seq") or {"seq": 0}
    seq = head["seq"] + 1
    tx.put(FEED_HEAD, "seq", {"seq": seq})
    cursor = f"{seq:012d}"
    tx.put(FEED_ITEM, cursor, {"id": f"{need_id}/{kind}", "cursor": cursor, "type": f"need.{kind}",
                               "timestamp": timestamp, "data": data}, ref=need_id)


def project_federation(event: Any, tx: SideTx) -> None:
    """The feed, its candidates and the webhook endpoints (charity's read models)."""
    if isinstance(event, Need.Opened):
        if event.consent_to_share:
            tx.put(CANDIDATE, event.need_id, {"need_id": event.need_id}, ref=event.case_id)
    elif isinstance(event, Need.Published):
        tx.delete(CANDIDATE, event.need_id)
        data = feed_data(event)
        tx.put(PUBLISHED_NEED, event.need_id, data, ref=event.need_id)
        _append(tx, event.need_id, "published", event.published_at, data)
    elif isinstance(event, (Need.Accepted, Need.Fulfilled)):
        tx.delete(CANDIDATE, event.need_id)
        data = tx.get(PUBLISHED_NEED, event.need_id)
        if data is None:
            return  # never published: nothing to tell the federation
        if isinstance(event, Need.Accepted):
            if data["status"] != "published":
                return
            data = {**data, "status": "accepted"}
            kind, at = "accepted", event.accepted_at
        else:
            data = {**data, "status": "fulfilled", "amount_still_needed_fen": 0}
            kind, at = "fulfilled", event.fulfilled_at
        tx.put(PUBLISHED_NEED, event.need_id, data, ref=event.need_id)
        _append(tx, event.need_id, kind, at, data)
    else:
        project_endpoint(event, tx)


# --- publication ------------------------------------------------------------------------------------
def publish_uncovered(app: Any, views: SideStore, meta: Meta = SYSTEM) -> list[str]:
    """Publish every consenting open need the funds leave short (or that asks 0 fen: help in
    kind), once, with what is still needed. The need ids published now."""
    from services.charity import views as charity_views
    from services.charity.matching import Matcher

    now = app.clock.now()
    on = business_date(now).isoformat()
    with views.transaction() as tx:
        docs = []
        for _, _, _, candidate in tx.all(CANDIDATE):
            doc = tx.get("need", candidate["need_id"])
            if doc is not None and doc["status"] == "open" and doc["consent_to_share"] and not doc["published"]:
                docs.append(doc)
        if not docs:
            return []
        matcher = Matcher(charity_views.fund_views(tx, on), on)
        need_views = [charity_views.need_view(tx, doc, on) for doc in docs]
    asked = {doc["need_id"]: doc["amount_asked_fen"] for doc in docs}
    published = []
    for proposal in matcher.match_all(need_views):
        if proposal.shortfall_fen <= 0 and asked[proposal.need_id] > 0:
            continue
        need: Need = app.repository.get(Need.create_id(proposal.need_id))
        try:
            if not need.publish(proposal.shortfall_fen, now.isoformat(), meta):
                continue
        except NeedRuleViolation:  # pragma: no cover - candidates consented
            continue
        try:
            app.save(need)
        except IntegrityError:
            continue  # another replica published it, or the need changed: the next scan decides
        published.append(proposal.need_id)
    return published


# --- feedback ---------------------------------------------------------------------------------------
def _load_need(app: Any, need_id: str) -> Need:
    from services.charity.application import NeedNotFound

    return app.load(Need.create_id(need_id), NeedNotFound(need_id))


def _change_need(app: Any, need_id: str, change: Any) -> Need:
    """Apply `change(need, now)` (True: new events) and save; again on a concurrent write."""
    for _ in range(10):
        need = _load_need(app, need_id)
        if not change(need, app.clock.now().isoformat()):
            return need
        try:
            app.save(need)
            return need
        except IntegrityError:
            continue
    raise Problem(409, "Busy", f"{need_id} kept changing; retry", slug="busy", rule="busy")


def accept_need(app: Any, need_id: str, organisation: str, note: str, meta: Meta) -> Need:
    """NeedAccepted, once; the same organisation again changes nothing."""
    return _change_need(app, need_id, lambda need, at: need.accept(organisation, note, at, meta))


def fulfil_need(app: Any, need_id: str, organisation: str, amount_fen: int, note: str, meta: Meta) -> Need:
    """NeedFulfilled by the federation, once; again changes nothing."""
    return _change_need(app, need_id,
                        lambda need, at: need.fulfil_by_federation(organisation, amount_fen, note, at, meta))


def need_state(need: Need) -> dict[str, Any]:
    if need.status == "fulfilled":
        status = "fulfilled"
    elif need.accepted_by is not None:
        status = "accepted"
    else:
        status = "published" if need.published else "open"
    return {"need_id": need.need_id, "status": status, "published": need.published,
            "accepted_by": need.accepted_by}


# --- endpoints ----------------------------------------------------------------------------------------
def register_endpoint(app: Any, sealer: Sealer, url: str, secret: str | None, principal: Principal,
                      endpoint_id: str | None = None) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret in clear (shown once). With an `endpoint_id` derived from an
    Idempotency-Key, a retried request gets the first answer back (the same URL) or 409."""
    from lifeline.stores.application import DuplicateRequest

    endpoint_id = endpoint_id or new_id("W")
    secret = secret or new_secret()
    endpoint = WebhookEndpoint.register(
        endpoint_id, url=url, secret=secret, region_code=principal.region, org_code=principal.org_code,
        registered_at=app.clock.now().isoformat(), sealer=sealer, by=Meta.of(principal))
    try:
        app.save_new(endpoint, endpoint_id)
    except DuplicateRequest:
        endpoint = app.repository.get(WebhookEndpoint.create_id(endpoint_id))
        if endpoint.url != url:
            raise Problem(409, "Idempotency-Key reused", "this key registered another URL",
                          slug="idempotency-key-reused", rule="idempotency_key_reused") from None
        return endpoint, endpoint.secret(sealer)
    return endpoint, secret


# --- the process's federation: sealer, delivery store, deliverer, wake-up ----------------------------
class Federation:
    def __init__(self, runtime: ServiceRuntime):
        settings = runtime.settings
        self.runtime = runtime
        self.sealer = sealer_for(settings)
        self.deliveries = delivery_store(settings)
        self.deliverer = Deliverer(runtime.app, runtime.side, self.deliveries, self.sealer,
                                   timeout=float(settings.webhook_timeout_seconds),
                                   retry_max=float(settings.webhook_retry_max_seconds))
        self.wakeup = asyncio.Event()
        self._scanned: tuple[int, str] | None = None

    def publish_step(self) -> list[str]:
        """Publication, when anything changed since the last scan (or the business day did)."""
        runtime = self.runtime
        runtime.projection.catch_up()
        with runtime.side.transaction() as tx:
            position = tx.position("views")
        marker = (position, business_date(runtime.app.clock.now()).isoformat())
        if marker == self._scanned:
            return []
        published = publish_uncovered(runtime.app, runtime.side)
        self._scanned = marker
        if published:
            runtime.projection.catch_up()  # the items, before they are delivered
        return published

    def close(self) -> None:
        self.deliverer.close()
        self.deliveries.close()


def federation_of(runtime: ServiceRuntime) -> Federation:
    fed = getattr(runtime, "charity_federation", None)
    if fed is None:
        fed = runtime.charity_federation = Federation(runtime)
    return fed


def wake(runtime: ServiceRuntime) -> None:
    federation_of(runtime).wakeup.set()


def _deliver(fed: Federation, endpoint_id: str) -> int:
    try:
        return fed.deliverer.deliver(endpoint_id)
    except Exception:
        log.exception("webhook %s: delivery failed; retrying", endpoint_id)
        return 0


async def federation_worker(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Every `webhook_scan_seconds`, or at once when woken: publish what no fund covers, then
    deliver each active endpoint's items (a task per endpoint: a slow receiver holds up no other)."""
    fed = federation_of(runtime)
    interval = float(runtime.settings.webhook_scan_seconds)
    running: dict[str, asyncio.Task] = {}
    try:
        while not stop.is_set():
            fed.wakeup.clear()
            try:
                published = await asyncio.to_thread(fed.publish_step)
                if published:
                    log.info("charity: published %d need(s) to the federation feed", len(published))
                    runtime.saved()
                for endpoint_id in await asyncio.to_thread(fed.deliverer.endpoint_ids):
                    task = running.get(endpoint_id)
                    if task is None or task.done():
                        running[endpoint_id] = asyncio.create_task(asyncio.to_thread(_deliver, fed, endpoint_id))
            except Exception:
                log.exception("charity: federation feed step failed; retrying")
            await nap(stop, fed.wakeup, interval)
    finally:
        fed.deliverer.stopping = True
        pending = [t for t in running.values() if not t.done()]
        if pending:  # each ends after its current attempt (at most the webhook timeout)
            await asyncio.wait(pending, timeout=float(runtime.settings.webhook_timeout_seconds) + 2)
        with contextlib.suppress(Exception):
            fed.close()
        runtime.charity_federation = None


# --- HTTP -----------------------------------------------------------------------------------------------
EXAMPLE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class WebhookIn(BaseModel):
    """A federation's webhook receiver; the secret is generated when not given."""

    model_config = strict({"url": "https://federation.example.org/lifeline/webhooks"},
                          {"url": "https://federation.example.org/lifeline/webhooks", "secret": EXAMPLE_SECRET})
    url: str = Field(min_length=1, max_length=2000, description="an http:// or https:// URL")
    secret: str | None = Field(default=None, description="whsec_<base64 of 24 to 64 bytes>; generated when absent")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None:
            secret_key(value)
        return value


class AcceptanceIn(BaseModel):
    """The federation takes the need on (it stays the organisation's until fulfilled)."""

    model_config = strict({"organisation": "东营区慈善总会", "note": "已认领，三日内入户对接"})
    organisation: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)


class FulfilmentIn(BaseModel):
    """What the federation gave the household (0 for help in kind)."""

    model_config = strict({"organisation": "东营区慈善总会", "amount_fen": 300000, "note": "医疗救助金已拨付"})
    organisation: str = Field(min_length=1, max_length=100)
    amount_fen: int = Field(ge=0, le=10**10, strict=True)
    note: str = Field(default="", max_length=500)


class WebhookCreatedOut(BaseModel):
    endpoint_id: str = Field(examples=["W-5C4B3A2918F7E6D5C4B3"])
    url: str
    secret: str = Field(description="shown only in this answer: keep it to verify the signatures")


class WebhookEndpointOut(BaseModel):
    """An endpoint and its delivery state (never its secret)."""

    endpoint_id: str
    url: str
    status: Literal["active", "disabled"]
    region_code: str = Field(description="the feed's items within this region are delivered")
    registered_at: str
    disabled_at: str | None
    delivered_up_to: str = Field(description="the cursor of the last item the receiver acknowledged")
    delivered: int
    last_delivered_at: str | None
    pending: int = Field(description="items after delivered_up_to, not yet acknowledged")
    attempts: int = Field(description="failed attempts in a row at the next item")
    last_error: str | None
    next_attempt_at: str | None = Field(description="RFC 3339, wall clock: the next attempt after a failure")


class WebhookEndpointsOut(BaseModel):
    items: list[WebhookEndpointOut]


class FeedItemData(BaseModel):
    need_id: str
    name_masked: str
    region_code: str = Field(description="the township (9 digits), never the village")
    members_count: int
    household_type: Literal[HOUSEHOLD_TYPES]  # type: ignore[valid-type]
    need_category: Literal[NEED_CATEGORIES]  # type: ignore[valid-type]
    amount_still_needed_fen: int
    urgency: Literal[URGENCIES]  # type: ignore[valid-type]
    due_date: str
    status: Literal["published", "accepted", "fulfilled"]


class FeedItem(BaseModel):
    id: str = Field(description="<need_id>/<published|accepted|fulfilled>: stable, the receiver dedups on it")
    cursor: str = Field(description="12 digits; the feed is in cursor order")
    type: Literal["need.published", "need.accepted", "need.fulfilled"]
    timestamp: str = Field(description="RFC 3339: when it happened")
    data: FeedItemData


class FeedOut(BaseModel):
    items: list[FeedItem]
    next_cursor: str = Field(description="ask again with this cursor for what follows")


class NeedFederationOut(BaseModel):
    need_id: str
    status: Literal["open", "published", "accepted", "fulfilled"]
    published: bool
    accepted_by: str | None


def _rule(exc: NeedRuleViolation) -> Problem:
    return Problem(409, "Not possible now", str(exc), slug=exc.rule.replace("_", "-"), rule=exc.rule)


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["federation"])
    app = runtime.app

    def endpoint_in_reach(doc: dict[str, Any] | None, endpoint_id: str, principal: Principal) -> dict[str, Any]:
        if doc is None or (principal.role == "charity_federation" and doc["org_code"] != principal.org_code):
            raise Problem(404, "Webhook endpoint not found", f"no webhook endpoint {endpoint_id}")
        return doc

    @api.post("/federation/webhooks", status_code=201, response_model=WebhookCreatedOut, responses=CREATE_ERRORS)
    async def register_webhook(body: WebhookIn, request: Request,
                               principal: Principal = runtime.auth.require(*ENDPOINT_WRITERS)):
        """Register a receiver of the feed: each item is POSTed to it, signed the Standard Webhooks
        way with the secret answered here (and only here), in order, retried until it answers 2xx."""
        fed = federation_of(runtime)
        endpoint_id = idempotent_id("W", principal.user_id, request.headers.get("Idempotency-Key"))
        endpoint, secret = await asyncio.to_thread(register_endpoint, app, fed.sealer, body.url, body.secret,
                                                   principal, endpoint_id)
        wake(runtime)
        return {"endpoint_id": endpoint.endpoint_id, "url": endpoint.url, "secret": secret}

    @api.get("/federation/webhooks", response_model=WebhookEndpointsOut, responses=LIST_ERRORS)
    async def list_webhooks(principal: Principal = runtime.auth.require(*ENDPOINT_READERS)):
        fed = federation_of(runtime)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [d for _, _, _, d in tx.all(ENDPOINT_DOC)]
        if principal.role == "charity_federation":
            docs = [d for d in docs if d["org_code"] == principal.org_code]
        return {"items": await asyncio.to_thread(lambda: [fed.deliverer.view(d) for d in docs])}

    @api.get("/federation/webhooks/{endpoint_id}", response_model=WebhookEndpointOut, responses=READ_ERRORS)
    async def get_webhook(endpoint_id: str, principal: Principal = runtime.auth.require(*ENDPOINT_READERS)):
        fed = federation_of(runtime)
        views = await runtime.views()
        with views.transaction() as tx:
            doc = endpoint_in_reach(tx.get(ENDPOINT_DOC, endpoint_id), endpoint_id, principal)
        return await asyncio.to_thread(fed.deliverer.view, doc)

    @api.delete("/federation/webhooks/{endpoint_id}", response_model=WebhookEndpointOut, responses=COMMAND_ERRORS)
    async def disable_webhook(endpoint_id: str, principal: Principal = runtime.auth.require(*ENDPOINT_WRITERS)):
        """No more deliveries to this endpoint (its state stays readable)."""
        fed = federation_of(runtime)
        views = await runtime.views()
        with views.transaction() as tx:
            endpoint_in_reach(tx.get(ENDPOINT_DOC, endpoint_id), endpoint_id, principal)

        def disable() -> None:
            for _ in range(10):
                endpoint = app.repository.get(WebhookEndpoint.create_id(endpoint_id))
                if not endpoint.disable(app.clock.now().isoformat(), Meta.of(principal)):
                    return
                try:
                    app.save(endpoint)
                    return
                except IntegrityError:
                    continue

        await asyncio.to_thread(disable)
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get(ENDPOINT_DOC, endpoint_id)
        return await asyncio.to_thread(fed.deliverer.view, doc)

    @api.get("/federation/feed", response_model=FeedOut, responses=LIST_ERRORS)
    async def feed(
        cursor: Annotated[str | None, Query(pattern=CURSOR, description="the next_cursor of the previous page "
                                                                         "(12 digits); absent: from the start")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        principal: Principal = runtime.auth.require(*FEED_READERS),
    ):
        """The feed after `cursor`, in order, within the caller's region: needs no fund covers
        (masked), then whether the federation accepted and fulfilled them."""
        views = await runtime.views()
        after = cursor or START_CURSOR
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            with views.transaction() as tx:
                rows = tx.page(FEED_ITEM, after, limit)
            for key, item in rows:
                after = key
                if in_region(item, principal.region):
                    items.append(item)
                    if len(items) == limit:
                        break
            if len(rows) < limit:
                break
        return {"items": items, "next_cursor": after}

    async def feedback(need_id: str, principal: Principal, change: Any) -> dict[str, Any]:
        need = await asyncio.to_thread(_found, need_id)
        ensure_region(principal, need.region_code)
        try:
            need = await asyncio.to_thread(change)
        except NeedRuleViolation as exc:
            raise _rule(exc) from None
        runtime.saved()
        wake(runtime)
        return need_state(need)

    def _found(need_id: str) -> Need:
        from services.charity.application import NeedNotFound

        try:
            return _load_need(app, need_id)
        except NeedNotFound:
            raise Problem(404, "Need not found", f"no need {need_id}") from None

    @api.post("/federation/needs/{need_id}/acceptance", response_model=NeedFederationOut, responses=COMMAND_ERRORS)
    async def accept(need_id: str, body: AcceptanceIn, principal: Principal = runtime.auth.require(*FEDERATION)):
        """The federation takes a published need on (NeedAccepted); the same organisation again
        changes nothing; another organisation's 409 `accepted_by_another`."""
        return await feedback(need_id, principal, lambda: accept_need(
            app, need_id, body.organisation, body.note, Meta.of(principal, body.note)))

    @api.post("/federation/needs/{need_id}/fulfilment", response_model=NeedFederationOut, responses=COMMAND_ERRORS)
    async def fulfil(need_id: str, body: FulfilmentIn, principal: Principal = runtime.auth.require(*FEDERATION)):
        """The federation helped the household (NeedFulfilled, by federation); once."""
        return await feedback(need_id, principal, lambda: fulfil_need(
            app, need_id, body.organisation, body.amount_fen, body.note, Meta.of(principal, body.note)))

    return api
