"""The federation's webhook endpoints, Standard Webhooks signing, and the delivery loop.

- `WebhookEndpoint`: an aggregate of charity's store (its events are not public): the URL a
  federation registered, the region it may see (its token's), and its secret, sealed
  (`lifeline.stores.sealing.Sealer`) wherever it is stored, unsealed only to sign.
- `sign` / `signed_headers`: the Standard Webhooks signature
  (https://www.standardwebhooks.com): `webhook-signature: v1,<base64 HMAC-SHA256(key,
  "<webhook-id>.<webhook-timestamp>.<body>")>`, the key being the base64 after `whsec_`;
  `webhook-timestamp` is the WALL clock's unix seconds (receivers refuse a timestamp more than
  5 minutes from their own clock, and a test clock may be days away).
- `Deliverer`: delivers each endpoint's feed items after its cursor, one at a time, in cursor
  order. A 2xx answer advances the cursor; anything else (or no answer within
  `webhook_timeout_seconds`) retries the same item after 1 s, 2 s, 4 s ... at most
  `webhook_retry_max_seconds` (wall clock): at least once, in order, and a receiver that was
  down gets everything it missed soon after it is back. One replica delivers to an endpoint at
  a time (a lease in the delivery store, checked again in the transaction that advances the
  cursor).

Delivery state (cursor, attempts, last error, next attempt) is kept in a side store of its own
(`<data_dir>/charity.webhooks.sqlite`, or the `webhooks_*` tables of charity's PostgreSQL
schema), not in events and not among the read models: it is bookkeeping of a conversation with
one receiver, changed on every attempt (an event per attempt would grow the log without
bound and publish nothing anyone reads), and the read models are rebuilt from the log and
compared with it (`lifeline replay`), which state that is not derived from events cannot be.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.runtime.backoff import backoff_seconds
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideStore

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
URL_MAX = 2000
ENDPOINT_DOC = "webhook_endpoint"  # read model (views store): the endpoint without its secret
FEED_ITEM = "feed_item"            # read model (views store): the feed, keyed by cursor
DELIVERY_DOC = "delivery"          # delivery store: one per endpoint
START_CURSOR = "0" * 12


# --- secrets and URLs -----------------------------------------------------------------------
def new_secret() -> str:
    """A fresh secret: whsec_ and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret names; ValueError when it is not whsec_<base64 of 24-64 bytes>."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret is {SECRET_PREFIX}<base64 of at least {SECRET_MIN_BYTES} bytes>")
    text = secret[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a secret is {SECRET_PREFIX} followed by standard base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(f"a secret's key is {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes, not {len(key)}")
    return key


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host; ValueError otherwise."""
    if len(url) > URL_MAX:
        raise ValueError(f"a webhook URL is at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("a webhook URL is http:// or https://")
    if not parts.hostname:
        raise ValueError("a webhook URL names a host")
    if parts.username or parts.password:
        raise ValueError("a webhook URL carries no user name or password (the signature authenticates)")
    if parts.fragment:
        raise ValueError("a webhook URL has no #fragment")
    if any(ch.isspace() for ch in url):
        raise ValueError("a webhook URL has no spaces")
    return url


# --- signing ----------------------------------------------------------------------------------
def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks v1 signature of one delivery."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def body_of(item: dict[str, Any]) -> bytes:
    """A feed item as the webhook's body: compact UTF-8 JSON (signed as sent)."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def signed_headers(secret: str, msg_id: str, body: bytes, wall_seconds: float) -> dict[str, str]:
    timestamp = int(wall_seconds)
    return {
        "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json", "user-agent": "lifeline-charity/1",
    }


def rfc3339(wall_seconds: float | None) -> str | None:
    if wall_seconds is None:
        return None
    return datetime.fromtimestamp(wall_seconds, tz=timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


# --- the aggregate ------------------------------------------------------------------------------
class WebhookEndpoint(LifelineAggregate):
    """Where a federation wants the feed pushed; its secret is only ever stored sealed."""

    id_kind = "webhook_endpoint"

    class Registered(LifelineAggregate.Created):
        endpoint_id: str
        url: str
        secret_sealed: str
        region_code: str  # the registrar's region: the endpoint gets the feed's items within it
        org_code: str
        registered_at: str

    class Disabled(LifelineAggregate.Event):
        endpoint_id: str
        disabled_at: str

        def apply(self, e: "WebhookEndpoint") -> None:
            e.status = "disabled"

    @classmethod
    def register(cls, endpoint_id: str, *, url: str, secret: str, region_code: str, org_code: str,
                 registered_at: str, sealer: Sealer, by: Meta) -> "WebhookEndpoint":
        check_url(url)
        secret_key(secret)
        return cls._create(
            cls.Registered, id=cls.create_id(endpoint_id), endpoint_id=endpoint_id, url=url,
            secret_sealed=sealer.seal(secret), region_code=region_code, org_code=org_code,
            registered_at=registered_at, meta=by.as_dict(),
        )

    def __init__(self, endpoint_id: str, url: str, secret_sealed: str, region_code: str, org_code: str,
                 registered_at: str, meta: dict):
        self.endpoint_id = endpoint_id
        self.url = url
        self.secret_sealed = secret_sealed
        self.region_code = region_code
        self.org_code = org_code
        self.registered_at = registered_at
        self.status = "active"

    def secret(self, sealer: Sealer) -> str:
        return sealer.unseal(self.secret_sealed)

    def disable(self, disabled_at: str, by: Meta) -> bool:
        """No more deliveries; once (False when it was disabled already)."""
        if self.status == "disabled":
            return False
        self.trigger_event(self.Disabled, endpoint_id=self.endpoint_id, disabled_at=disabled_at, meta=by.as_dict())
        return True


def endpoint_doc(event: WebhookEndpoint.Registered) -> dict[str, Any]:
    """The endpoint as the read model keeps it: never the secret, not even sealed."""
    return {"endpoint_id": event.endpoint_id, "url": event.url, "region_code": event.region_code,
            "org_code": event.org_code, "registered_at": event.registered_at, "status": "active",
            "disabled_at": None}


def project_endpoint(event: Any, tx: Any) -> None:
    if isinstance(event, WebhookEndpoint.Registered):
        tx.put(ENDPOINT_DOC, event.endpoint_id, endpoint_doc(event), ref=event.org_code)
    elif isinstance(event, WebhookEndpoint.Disabled):
        doc = tx.get(ENDPOINT_DOC, event.endpoint_id)
        if doc is not None:
            tx.put(ENDPOINT_DOC, event.endpoint_id, {**doc, "status": "disabled", "disabled_at": event.disabled_at},
                   ref=doc["org_code"])


# --- delivery ---------------------------------------------------------------------------------------
def delivery_store(settings: Any) -> SideStore:
    """The side store delivery state lives in (beside the read models, never among them)."""
    return SideStore(settings, "charity", name="webhooks")


def new_state() -> dict[str, Any]:
    return {"delivered_up_to": START_CURSOR, "delivered": 0, "last_delivered_at": None, "attempts": 0,
            "last_error": None, "next_attempt_at": None}


def in_region(item: dict[str, Any], region_code: str) -> bool:
    from lifeline.rules.regions import region_contains

    try:
        return region_contains(region_code, item["data"]["region_code"])
    except Exception:  # noqa: BLE001 - a malformed code is outside every region
        return False


def items_after(views: SideStore, cursor: str, region_code: str, page: int = 200) -> Iterator[dict[str, Any]]:
    """The feed's items after `cursor` within the region, in cursor order, a page per transaction."""
    after = cursor
    while True:
        with views.transaction() as tx:
            rows = tx.page(FEED_ITEM, after, page)
        for _, item in rows:
            if in_region(item, region_code):
                yield item
        if len(rows) < page:
            return
        after = rows[-1][0]


class Deliverer:
    """Delivers the feed to webhook endpoints: `deliver(endpoint_id)` as far as it can now."""

    def __init__(self, app: Any, views: SideStore, deliveries: SideStore, sealer: Sealer, *,
                 timeout: float = 5.0, retry_max: float = 300.0, holder: str | None = None,
                 wall: Callable[[], float] = time.time, client: httpx.Client | None = None,
                 batch: int = 1000):
        self.app = app  # CharityApplication: the endpoints' aggregates (url, secret)
        self.views = views
        self.deliveries = deliveries
        self.sealer = sealer
        self.timeout = timeout
        self.retry_max = retry_max
        self.holder = holder or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.wall = wall
        self.client = client or httpx.Client(follow_redirects=False)
        self.batch = batch  # items per call: other endpoints get their turn
        self.lease_seconds = max(30.0, 3 * timeout)
        self.stopping = False

    def close(self) -> None:
        self.client.close()

    def endpoint_ids(self) -> list[str]:
        with self.views.transaction() as tx:
            docs = tx.all(ENDPOINT_DOC)
        return [doc["endpoint_id"] for _, _, _, doc in docs if doc["status"] == "active"]

    def state(self, endpoint_id: str) -> dict[str, Any]:
        with self.deliveries.transaction() as tx:
            return tx.get(DELIVERY_DOC, endpoint_id) or new_state()

    def _lease(self, endpoint_id: str) -> str:
        return f"webhook:{endpoint_id}"

    def _take(self, endpoint_id: str) -> bool:
        with self.deliveries.transaction() as tx:
            return tx.take_lease(self._lease(endpoint_id), self.holder, self.wall(), self.lease_seconds)

    def _commit(self, endpoint_id: str, state: dict[str, Any]) -> bool:
        """Write the state while this deliverer still holds the endpoint (renewing it)."""
        with self.deliveries.transaction() as tx:
            if not tx.take_lease(self._lease(endpoint_id), self.holder, self.wall(), self.lease_seconds):
                return False
            tx.put(DELIVERY_DOC, endpoint_id, state)
            return True

    def _release(self, endpoint_id: str) -> None:
        with self.deliveries.transaction() as tx:
            tx.release_lease(self._lease(endpoint_id), self.holder)

    def post(self, url: str, secret: str, item: dict[str, Any]) -> str | None:
        """One attempt: None when the receiver answered 2xx, else what went wrong."""
        body = body_of(item)
        headers = signed_headers(secret, item["id"], body, self.wall())
        try:
            r = self.client.post(url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:300]
        if 200 <= r.status_code < 300:
            return None
        return f"HTTP {r.status_code}"

    def deliver(self, endpoint_id: str) -> int:
        """Deliver the endpoint's items in order until it is caught up, an attempt fails (the
        next waits for its backoff), `batch` items went, or another replica holds it. How many
        items were delivered."""
        if not self._take(endpoint_id):
            return 0
        try:
            endpoint = self.app.repository.get(WebhookEndpoint.create_id(endpoint_id))
            if endpoint.status != "active":
                return 0
            secret = endpoint.secret(self.sealer)
            state = self.state(endpoint_id)
            delivered = 0
            while delivered < self.batch and not self.stopping:
                if state["next_attempt_at"] is not None and self.wall() < state["next_attempt_at"]:
                    break
                item = next(items_after(self.views, state["delivered_up_to"], endpoint.region_code), None)
                if item is None:
                    break
                error = self.post(endpoint.url, secret, item)
                now = self.wall()
                if error is None:
                    state = {**state, "delivered_up_to": item["cursor"], "delivered": state["delivered"] + 1,
                             "last_delivered_at": now, "attempts": 0, "next_attempt_at": None, "last_error": None}
                else:
                    attempts = state["attempts"] + 1
                    state = {**state, "attempts": attempts, "last_error": f"{item['id']}: {error}",
                             "next_attempt_at": now + backoff_seconds(attempts, self.retry_max)}
                if not self._commit(endpoint_id, state):
                    log.warning("webhook %s: taken over by another replica", endpoint_id)
                    return delivered
                if error is not None:
                    log.info("webhook %s: %s failed (attempt %d): %s", endpoint_id, item["id"],
                             state["attempts"], error)
                    break
                delivered += 1
            return delivered
        finally:
            self._release(endpoint_id)

    def view(self, doc: dict[str, Any]) -> dict[str, Any]:
        """An endpoint's read-model document and its delivery state, as the API shows them."""
        state = self.state(doc["endpoint_id"])
        pending = sum(1 for _ in items_after(self.views, state["delivered_up_to"], doc["region_code"]))
        return {
            "endpoint_id": doc["endpoint_id"], "url": doc["url"], "status": doc["status"],
            "region_code": doc["region_code"], "registered_at": doc["registered_at"],
            "disabled_at": doc["disabled_at"], "delivered_up_to": state["delivered_up_to"],
            "delivered": state["delivered"], "last_delivered_at": rfc3339(state["last_delivered_at"]),
            "pending": pending, "attempts": state["attempts"], "last_error": state["last_error"],
            "next_attempt_at": rfc3339(state["next_attempt_at"]),
        }
