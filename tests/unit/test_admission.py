"""Admission control (lifeline/http/admission.py): over LIFELINE_MAX_IN_FLIGHT a request is shed at
once with 503 problem+json and Retry-After, its handler never runs; health and metrics are always
answered; the requests admitted are answered as usual."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from lifeline.http.admission import Admission
from lifeline.http.problems import PROBLEM_JSON, install_problem_handlers


def slow_app(release: asyncio.Event, ran: list[int]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/things", status_code=201)
    async def make(n: int):
        ran.append(n)
        await release.wait()
        return {"n": n}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    app.add_middleware(Admission, service="test", max_in_flight=2)
    return app


async def test_over_capacity_is_shed_at_once_and_never_handled():
    release, ran = asyncio.Event(), []
    transport = httpx.ASGITransport(app=slow_app(release, ran))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        held = [asyncio.create_task(client.post("/v1/things", params={"n": n})) for n in (1, 2)]
        while len(ran) < 2:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        shed = await asyncio.gather(*(client.post("/v1/things", params={"n": n}) for n in (3, 4, 5)))
        took = time.perf_counter() - started
        health = await client.get("/healthz")
        release.set()
        answered = await asyncio.gather(*held)
    assert [r.status_code for r in shed] == [503, 503, 503]
    assert took < 0.1
    for r in shed:
        assert r.headers["content-type"] == PROBLEM_JSON
        assert r.headers["retry-after"] == "1"
        assert r.json()["type"].endswith("/at-capacity") and r.json()["status"] == 503
    assert health.status_code == 200  # an orchestrator sees a busy service alive
    assert [r.status_code for r in answered] == [201, 201]
    assert sorted(ran) == [1, 2]  # the shed ones never reached their handler


async def test_capacity_comes_back_when_requests_finish():
    release, ran = asyncio.Event(), []
    release.set()
    transport = httpx.ASGITransport(app=slow_app(release, ran))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for n in range(6):  # one after another: never more than one in flight
            assert (await client.post("/v1/things", params={"n": n})).status_code == 201
    assert ran == list(range(6))
