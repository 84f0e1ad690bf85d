"""One service's process: event store, read models, outbox relay, consumers, HTTP.

A service module describes itself with a `ServiceSpec`; `ServiceRuntime` wires
the infrastructure the settings ask for (`lifeline.http.app` puts the HTTP edge
in front of it).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lifeline.contracts import topics as T
from lifeline.contracts.signing import KeyDirectory, Signer, Verifier
from lifeline.domain.clock import Clock, clock_for
from lifeline.http.auth import Authenticator, Principal
from lifeline.http.idempotency import IdempotencyStore, idempotent_response
from lifeline.messaging.consumer import EventConsumer
from lifeline.messaging.kafka import Bus
from lifeline.messaging.outbox import OutboxRelay
from lifeline.ops.faults import install_faults
from lifeline.ops.metrics import OUTBOX_POSITION
from lifeline.ops.redisauth import key_namespace, redis_url
from lifeline.rules.setup import install_rules
from lifeline.settings import Settings, SettingsError
from lifeline.stores import chain
from lifeline.stores.application import ServiceApplication
from lifeline.stores.eventstore import event_store_env
from lifeline.stores.sealing import generated_secret
from lifeline.stores.projection import Projection, Projector
from lifeline.stores.sidestore import SideStore

log = logging.getLogger(__name__)

SAVING_THREADS = 32


@dataclass
class ServiceSpec:
    """What a service's composition root (`services/<name>/bootstrap.py`) declares."""

    name: str
    # Builds the application on a given event store: wires the clock and the service's
    # own dependencies (e.g. verification's policy book) from the settings.
    build: Callable[[Settings, Clock, dict[str, str]], ServiceApplication]
    project: Projector
    router: Callable[["ServiceRuntime"], APIRouter]
    consumes: list[str] = field(default_factory=list)
    title: str = ""
    # Raise it when `project` changes what it writes: the read models are rebuilt from the
    # log at the next start (Projection.ensure_version).
    views_version: int = 1
    # Background loops beside the consumer and the relay (e.g. notify's deadline watch): each
    # is called with the runtime and the stop event and runs until that event is set.
    workers: tuple[Callable[["ServiceRuntime", asyncio.Event], Awaitable[None]], ...] = ()
    # Path prefixes of bulk uploads, allowed LIFELINE_MAX_UPLOAD_BYTES instead of MAX_BODY_BYTES.
    upload_paths: tuple[str, ...] = ()

    def application(self, settings: Settings, clock: Clock | None = None) -> ServiceApplication:
        """The service's application on its configured event store."""
        return self.build(settings, clock or clock_for(settings), event_store_env(settings, self.name))


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or (embedded mode) one generated once under the data directory."""
    if settings.jwt_secret:
        return settings.jwt_secret
    return generated_secret(settings.data_dir / "jwt.secret")


def event_keys(settings: Settings) -> KeyDirectory:
    """The deployment's signing keys: LIFELINE_KEYS_DIR, or data_dir/keys."""
    return KeyDirectory(settings.keys_dir or settings.data_dir / "keys")


def signer_for(settings: Settings, source: str) -> Signer:
    """What `source` signs its events with. In development its key is generated at the first start
    when missing; production starts only with the keys `lifeline keys generate` made."""
    keys = event_keys(settings)
    if settings.environment == "production" and not keys.private_path(source).exists():
        raise SettingsError(f"LIFELINE_KEYS_DIR: no signing key for {source} in {keys.path} "
                            "(make the deployment's keys with: lifeline keys generate)")
    return keys.signer(source, generate=settings.environment != "production")


def verifier_for(settings: Settings) -> Verifier:
    return Verifier(event_keys(settings))


async def nap(stop: asyncio.Event, wakeup: asyncio.Event, seconds: float) -> None:
    """A background worker's pause: `seconds`, or less when it is stopped or woken."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()


class ServiceRuntime:
    def __init__(
        self, spec: ServiceSpec, settings: Settings, *, consume: bool = True, relay: bool = True,
        clock: Clock | None = None,
    ):
        self.spec = spec
        self.settings = settings
        # The composition root: the rules data (calendar, region register) and the test faults
        # come from the settings before anything uses them; a bad operator file stops here.
        install_rules(settings)
        install_faults(settings)
        self.clock = clock or clock_for(settings)
        self.app = spec.application(settings, self.clock)
        self.side = SideStore(settings, spec.name)
        self.projection = Projection(self.app, self.side, spec.project, spec.views_version)
        self.bus = Bus(settings, client_id=f"lifeline-{spec.name}")
        self.relay = OutboxRelay(self.app, self.side, self.bus, signer_for(settings, f"lifeline/{spec.name}")) \
            if relay else None
        self.consumer = (
            EventConsumer(self.app, self.bus, spec.consumes, group=spec.name, verifier=verifier_for(settings))
            if consume and spec.consumes
            else None
        )
        self.auth = Authenticator(jwt_secret(settings), settings.jwt_issuer)
        # Its Redis keys start with <namespace><service>: (its Redis user may touch no others).
        self.redis_namespace = key_namespace(settings.namespace, spec.name)
        self.idempotency = IdempotencyStore(redis_url(settings), namespace=self.redis_namespace)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.started = False

    # --- lifecycle -----------------------------------------------------
    async def start(self) -> None:
        # Enough threads that the saves of concurrent requests meet in one transaction
        # (lifeline/stores/groupcommit.py); asyncio's default is the cores + 4.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=SAVING_THREADS, thread_name_prefix=self.spec.name))
        await asyncio.to_thread(self.projection.ensure_version)
        await self.bus.start()
        await self.bus.ensure_topics(T.ALL_TOPICS)
        if self.consumer is not None:
            await self.consumer.start()
            self._tasks.append(asyncio.create_task(self.consumer.run(self._stop)))
        if self.relay is not None:
            # Woken by every transaction that stores events, whichever thread saved them.
            loop = asyncio.get_running_loop()
            self.app.saved_listeners.append(lambda: loop.call_soon_threadsafe(self.relay.wakeup.set))
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop)))
        self._tasks.append(asyncio.create_task(self._project_forever()))
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self._seal_forever()))
        for worker in self.spec.workers:
            self._tasks.append(asyncio.create_task(worker(self, self._stop)))
        self.started = True

    async def stop(self) -> None:
        if self.relay is not None and self.started and not self._stop.is_set():
            with contextlib.suppress(Exception):
                await self._seal_and_publish()
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

    async def _seal_forever(self) -> None:
        """Record the log's chain head now and then (LogSealed); the relay publishes it."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.settings.log_seal_seconds)
            except asyncio.TimeoutError:
                pass
            if self._stop.is_set():
                return
            try:
                if await asyncio.to_thread(chain.seal, self.app, self.spec.name) is not None:
                    self.saved()
            except Exception:
                log.exception("%s: sealing the log failed; retrying", self.spec.name)

    async def _seal_and_publish(self, timeout: float = 3.0) -> None:
        """On a clean stop: seal the log and give the relay (when it is this replica's that
        publishes) a moment to publish the seal; else it goes out with the next start."""
        sealed = await asyncio.to_thread(chain.seal, self.app, self.spec.name)
        if sealed is None or self.relay is None or not await asyncio.to_thread(self.relay.is_leader):
            return
        own = await asyncio.to_thread(self.app.recorder.position_of, sealed.originator_id, sealed.originator_version)
        self.saved()
        deadline = asyncio.get_running_loop().time() + timeout
        while own is not None and asyncio.get_running_loop().time() < deadline:
            if await asyncio.to_thread(self.relay.position) >= own:
                return
            await asyncio.sleep(0.05)

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
            client = aioredis.from_url(redis_url(self.settings))
            await client.ping()
            await client.aclose()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {exc!r}"
        return checks
