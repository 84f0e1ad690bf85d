"""The HTTP edge of a service: health, metrics, problem+json, region checks.

`create_http_app` puts a service's API, the operations endpoints and the error
handling in front of its `ServiceRuntime`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lifeline.contracts.envelope import ContractError
from lifeline.http.auth import Principal, ensure_region
from lifeline.http.problems import BodySizeLimit, Problem, install_problem_handlers
from lifeline.ops.metrics import HTTP_REQUESTS, REGISTRY
from lifeline.runtime.service import ServiceRuntime, ServiceSpec
from lifeline.settings import Settings

log = logging.getLogger(__name__)


def found_in_region(
    load: Callable[[str], Any], ident: str, missing: type[LookupError], what: str, principal: Principal
) -> Any:
    """`load(ident)`, or 404 when `missing` is raised; 403 when it lies outside the caller's region."""
    try:
        found = load(ident)
    except missing:
        raise Problem(404, f"{what} not found", f"no {what.lower()} {ident}") from None
    ensure_region(principal, found.region_code)
    return found


def idempotent_id(prefix: str, principal_id: str, key: str | None) -> str | None:
    """A business id derived from the Idempotency-Key: even if Redis forgot the
    key, the event store refuses a second aggregate with the same id."""
    if not key:
        return None
    digest = hashlib.sha256(f"{principal_id}\0{key}".encode()).hexdigest()[:20].upper()
    return f"{prefix}-{digest}"


def create_http_app(spec: ServiceSpec, settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    runtime = runtime or ServiceRuntime(spec, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=spec.title or f"Lifeline {spec.name}",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)

    @app.exception_handler(ContractError)
    async def contract_error(request: Request, exc: ContractError):
        # Input that passed the API model but not the event's schema: still the
        # caller's to fix, and nothing was stored.
        return Problem(422, "Request does not fit the event contract", str(exc)).response(str(request.url.path))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(StoreOperationalError)
    @app.exception_handler(StoreInterfaceError)
    async def dependency_down(request: Request, exc: Exception):
        # A store or Redis is unreachable: nothing was decided, the caller may retry.
        log.warning("%s: dependency unavailable: %r", spec.name, exc)
        return Problem(
            503, "Service temporarily unavailable", "A backing store is unreachable; retry shortly.",
            headers={"Retry-After": "5"},
        ).response(str(request.url.path))

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        HTTP_REQUESTS.labels(spec.name, request.method, str(response.status_code)).inc()
        return response

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["operations"])
    async def readyz():
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics():
        return PlainTextResponse(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4")

    app.include_router(spec.router(runtime))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
