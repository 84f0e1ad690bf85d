"""A fixed-window rate limit in Redis, shared by every replica: at most `limit` hits per
client in a window that starts with the client's first hit and lasts `window_seconds`.
Used on the routes anyone may call without a token (notify's public notice board and its
objections); 429 problem+json with Retry-After past the limit.

Client addresses are hashed before they become key names: Redis never holds them in clear.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis
from starlette.requests import Request

from lifeline.http.problems import Problem

# One round trip, atomic: count the hit, start the window on the first one, and say how long
# the window still runs (a key left without expiry, which nothing should do, is given one).
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


def client_address(request: Request) -> str:
    """The caller's address as the server saw it. Behind a reverse proxy that is the proxy's,
    unless uvicorn is told to trust its X-Forwarded-For (FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


class FixedWindowLimit:
    def __init__(self, redis: aioredis.Redis, name: str, limit: int, window_seconds: int = 3600,
                 namespace: str = ""):
        self.redis = redis
        self.prefix = f"{namespace}:ratelimit:{name}:" if namespace else f"ratelimit:{name}:"
        self.limit = limit
        self.window_seconds = window_seconds

    def key(self, client: str) -> str:
        return self.prefix + hashlib.sha256(client.encode("utf-8")).hexdigest()[:32]

    async def hit(self, client: str) -> int | None:
        """Count one hit: None when it is within the limit, else the seconds until the window
        ends (for Retry-After)."""
        count, ttl = await self.redis.eval(_HIT, 1, self.key(client), self.window_seconds)
        if int(count) <= self.limit:
            return None
        return max(int(ttl), 1)

    async def enforce(self, client: str, title: str, detail: str) -> None:
        """Count one hit; Problem 429 with Retry-After when it is over the limit."""
        wait = await self.hit(client)
        if wait is not None:
            raise Problem(429, title, detail, slug="rate-limited", headers={"Retry-After": str(wait)})


__all__ = ["FixedWindowLimit", "client_address"]
