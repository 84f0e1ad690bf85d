"""One service's process: event store, read models, outbox relay, consumers, HTTP.

A service module describes itself with a `ServiceSpec`; `ServiceRuntime` wires
the infrastructure the settings ask for, and `create_http_app` puts the API, the
health endpoints and the error handling in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lifeline.contracts.envelope import ContractError
from lifeline.infra.application import ServiceApplication
from lifeline.infra.auth import Authenticator, Principal, ensure_region
from lifeline.infra.consumer import EventConsumer
from lifeline.infra.eventstore import event_store_env
from lifeline.infra.idempotency import IdempotencyStore, idempotent_response
from lifeline.infra.kafka import Bus, all_topics
from lifeline.infra.metrics import HTTP_REQUESTS, OUTBOX_POSITION, REGISTRY
from lifeline.infra.outbox import OutboxRelay
from lifeline.infra.problems import BodySizeLimit, Problem, install_problem_handlers
from lifeline.infra.projection import Projection, Projector
from lifeline.infra.sidestore import SideStore
from lifeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServiceSpec:
    name: str
    application: type[ServiceApplication]
    project: Projector
    router: Callable[["ServiceRuntime"], APIRouter]
    consumes: list[str] = field(default_factory=list)
    title: str = ""


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or (embedded mode) one generated once under var/."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.data_dir / "jwt.secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class ServiceRuntime:
    def __init__(self, spec: ServiceSpec, settings: Settings, *, consume: bool = True, relay: bool = True):
        self.spec = spec
        self.settings = settings
        self.app = spec.application(env=event_store_env(settings, spec.name))
        self.side = SideStore(settings, spec.name)
        self.projection = Projection(self.app, self.side, spec.project)
        self.bus = Bus(settings, client_id=f"lifeline-{spec.name}")
        self.relay = OutboxRelay(self.app, self.side, self.bus) if relay else None
        self.consumer = (
            EventConsumer(self.app, self.bus, spec.consumes, group=spec.name)
            if consume and spec.consumes
            else None
        )
        self.auth = Authenticator(jwt_secret(settings), settings.jwt_issuer)
        self.idempotency = IdempotencyStore(settings.redis_url, namespace=settings.namespace)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.started = False

    # --- lifecycle -----------------------------------------------------
    async def start(self) -> None:
        await self.bus.start()
        await self.bus.ensure_topics(all_topics())
        if self.consumer is not None:
            await self.consumer.start()
            self._tasks.append(asyncio.create_task(self.consumer.run(self._stop)))
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop)))
        self._tasks.append(asyncio.create_task(self._project_forever()))
        self.started = True

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.consumer is not None:
            await self.consumer.stop()
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.relay.resign)
        await self.bus.stop()
        with contextlib.suppress(Exception):
            await self.idempotency.aclose()
        self.side.close()
        self.app.close()

    async def _project_forever(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.projection.catch_up)
                if self.relay is not None:
                    OUTBOX_POSITION.labels(self.spec.name).set(await asyncio.to_thread(self.relay.position))
            except Exception:
                log.exception("%s: projection failed; retrying", self.spec.name)
            await asyncio.sleep(0.25)

    # --- helpers for use cases and routes --------------------------------
    def saved(self) -> None:
        """Call after saving: publish soon rather than at the next poll."""
        if self.relay is not None:
            self.relay.wakeup.set()

    async def views(self) -> SideStore:
        """Read models, caught up with everything saved so far (read your writes)."""
        await asyncio.to_thread(self.projection.catch_up)
        return self.side

    async def items_of_case(self, kind: str, case_id: str, principal: Principal) -> dict[str, Any]:
        """A case's read-model documents of one kind, limited to the caller's region."""
        views = await self.views()
        with views.transaction() as tx:
            docs = tx.find(kind, case_id)
        return {"case_id": case_id, "items": [d for d in docs if principal.can_access(d["region_code"])]}

    async def idempotent(
        self, request: Request, principal_id: str, handler: Callable[[], Awaitable[tuple[int, dict]]]
    ) -> JSONResponse:
        """Run a POST under its Idempotency-Key, scoped to this service, caller and path."""
        scope = f"{self.spec.name}:{principal_id}:{request.url.path}"
        return await idempotent_response(self.idempotency, request, scope, handler)

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            await asyncio.to_thread(self.app.recorder.max_notification_id)
            checks["event_store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["event_store"] = f"error: {exc!r}"
        checks["kafka"] = "ok" if self.bus.producer is not None and self.started else "starting"
        try:
            client = aioredis.from_url(self.settings.redis_url)
            await client.ping()
            await client.aclose()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {exc!r}"
        return checks


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
