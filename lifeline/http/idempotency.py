"""``Idempotency-Key`` for POST requests, shared by all replicas through Redis.

The same (scope, key) with the same body returns the FIRST response and runs
the handler at most once, even when several processes receive the request at
the same moment:

1. Claim: ``SET k <pending> NX PX lease`` - exactly one caller wins.
2. The winner runs the handler, renewing its lease while it runs, then swaps
   the pending marker for the stored response (only if it still owns it).
3. Losers poll until the response appears (bounded by ``wait_timeout``, then
   409 "still in progress"). If the marker vanishes because the winner's
   handler raised or the winner died and its lease expired, a waiter claims the
   key itself and runs the handler.

A body whose hash differs from the first one is refused (422). Only 2xx and
4xx responses are stored: a 5xx or an exception releases the claim so that the
client's retry runs again. Handlers that want a 4xx remembered return it;
raising means "not final".

FastAPI usage (the helper reads the header and raw body itself)::

    store = IdempotencyStore(settings.redis_url, namespace=settings.namespace)

    @app.post("/cases", status_code=201)
    async def create_case(request: Request, who: Principal = auth.require(Role.clerk)):
        async def handler() -> tuple[int, dict]:
            case = await service.register(await request.json(), who)
            return 201, {"case_id": case.id}
        return await idempotent_response(store, request, "intake:create-case", handler)

Replays carry the header ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from typing import Awaitable, Callable

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse

from lifeline.http.problems import Problem

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
Handler = Callable[[], Awaitable[tuple[int, dict]]]

# Compare-and-set on the pending marker: only the current owner may finish,
# release or extend a claim (a winner that stalled past its lease must not
# overwrite the work of whoever took over).
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def check_key(key: str | None) -> str:
    """1-255 printable ASCII characters, else 400."""
    if key is None or not (1 <= len(key) <= 255) or not all(" " <= c <= "~" for c in key):
        raise Problem(
            400, "Invalid Idempotency-Key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            slug="invalid-idempotency-key",
        )
    return key


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


REDIS_CONNECTIONS = 64
REDIS_POOL_WAIT_SECONDS = 5


class IdempotencyStore:
    def __init__(
        self,
        redis_url: str,
        namespace: str = "",
        ttl_seconds: int = 24 * 3600,
        *,
        lease_seconds: float = 30.0,
        wait_timeout: float = 10.0,
        poll_interval: float = 0.05,
    ):
        # Requests beyond the pool's connections wait for one (a burst is not an outage: the
        # default pool raises past 100 connections, which became 503s under load).
        self.redis = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_POOL_WAIT_SECONDS))
        self.prefix = f"{namespace}:idem:" if namespace else "idem:"
        self.ttl_ms = int(ttl_seconds * 1000)
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> "IdempotencyStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def redis_key(self, scope: str, key: str) -> str:
        # Hashed so arbitrary scopes/keys cannot collide or bloat key names.
        digest = hashlib.sha256(f"{scope}\0{key}".encode("utf-8")).hexdigest()
        return self.prefix + digest

    async def run(self, scope: str, key: str, body: bytes, handler: Handler) -> tuple[int, dict, bool]:
        """(status, json body, replayed?) - see the module docstring for the semantics."""
        check_key(key)
        rkey = self.redis_key(scope, key)
        digest = body_hash(body)
        deadline = time.monotonic() + self.wait_timeout
        while True:
            token = uuid.uuid4().hex
            pending = json.dumps({"state": "pending", "hash": digest, "owner": token})
            if await self.redis.set(rkey, pending, nx=True, px=self.lease_ms):
                status, payload = await self._execute(rkey, pending, handler)
                return status, payload, False
            raw = await self.redis.get(rkey)
            if raw is None:
                continue  # released or expired between SET and GET: try to claim again
            record = json.loads(raw)
            if record["hash"] != digest:
                raise Problem(
                    422, "Idempotency-Key reused with a different body",
                    "This Idempotency-Key was first used with a different request body.",
                    slug="idempotency-key-reused",
                )
            if record["state"] == "done":
                return int(record["status"]), record["body"], True
            if time.monotonic() >= deadline:
                raise Problem(
                    409, "Request still in progress",
                    "A request with this Idempotency-Key is still being processed; retry later.",
                    slug="idempotency-in-progress", headers={"Retry-After": "1"},
                )
            await asyncio.sleep(self.poll_interval)

    async def _execute(self, rkey: str, pending: str, handler: Handler) -> tuple[int, dict]:
        # The lease is renewed only for a handler still running after a third of it (most answer
        # in milliseconds: no task made and cancelled for each of them).
        renewer: list[asyncio.Task] = []
        later = asyncio.get_running_loop().call_later(
            self.lease_ms / 3000, lambda: renewer.append(asyncio.create_task(self._renew(rkey, pending))))
        try:
            status, payload = await handler()
        except BaseException:
            later.cancel()
            for task in renewer:
                task.cancel()
            await self._release(rkey, pending)
            raise
        later.cancel()
        for task in renewer:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if 200 <= status < 300 or 400 <= status < 500:
            done = json.dumps(
                {"state": "done", "hash": json.loads(pending)["hash"], "status": status, "body": payload},
                ensure_ascii=False,
            )
            if not await self.redis.eval(_FINISH, 1, rkey, pending, done, self.ttl_ms):
                log.warning("idempotency claim lost before completion (lease %d ms too short?)", self.lease_ms)
        else:
            await self._release(rkey, pending)
        return status, payload

    async def _renew(self, rkey: str, pending: str) -> None:
        # Keep the claim alive while a slow handler runs; if this process dies
        # the renewals stop and the lease lets someone else take over.
        # Started a third of the lease in: renew at once, then every third.
        interval = self.lease_ms / 3000
        while True:
            try:
                if not await self.redis.eval(_EXTEND, 1, rkey, pending, self.lease_ms):
                    return
            except Exception:  # pragma: no cover - Redis hiccup: the next tick retries
                log.warning("could not renew idempotency lease", exc_info=True)
            await asyncio.sleep(interval)

    async def _release(self, rkey: str, pending: str) -> None:
        try:
            # Shielded: the handler may have been cancelled, the release must still happen.
            await asyncio.shield(self.redis.eval(_RELEASE, 1, rkey, pending))
        except Exception:  # pragma: no cover - the lease expires anyway
            log.warning("could not release idempotency claim", exc_info=True)


async def idempotent_response(
    store: IdempotencyStore,
    request: Request,
    scope: str,
    handler: Handler,
    *,
    required: bool = False,
) -> JSONResponse:
    """Run ``handler`` under the request's Idempotency-Key and build the JSON response.

    Without the header the handler simply runs (or 400 when ``required``).
    ``scope`` should name the operation and, where keys are per caller, the
    caller (e.g. ``f"intake:create-case:{who.user_id}"``).
    """
    key = request.headers.get(HEADER)
    if key is None:
        if required:
            raise Problem(400, "Idempotency-Key required", f"Send an {HEADER} header with this POST.",
                          slug="idempotency-key-required")
        status, payload = await handler()
        return JSONResponse(payload, status_code=status)
    status, payload, replayed = await store.run(scope, key, await request.body(), handler)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return JSONResponse(payload, status_code=status, headers=headers)


__all__ = ["HEADER", "IdempotencyStore", "body_hash", "check_key", "idempotent_response"]
