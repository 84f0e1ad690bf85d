"""The charity-federation simulator as its own process beside the real charity service: started
before charity, it subscribes once charity answers; killed and started again, it keeps its
subscription (no second endpoint). Deliveries, the feed and the feedback across processes are
in the charity end-to-end tests."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from tests.harness import Lifeline, wait_for

pytestmark = pytest.mark.e2e


def test_it_subscribes_at_charity_in_any_start_order_and_once(infra):
    data_dir = Path(tempfile.mkdtemp(prefix="lifeline-e2e-fed-"))
    system = Lifeline(infra, f"f{uuid.uuid4().hex[:6]}.", data_dir)
    try:
        system.start("federation")  # charity is not there yet: it keeps trying
        fed = httpx.Client(base_url=system.url("federation"), timeout=10)
        assert fed.get("/v1/subscription").json()["subscribed"] is False
        system.start("charity")
        sub = wait_for(lambda: (s := fed.get("/v1/subscription").json())["subscribed"] and s, timeout=60,
                       what="the federation simulator's subscription")
        assert sub["url"] == system.url("federation") + "/webhooks" and sub["secret"].startswith("whsec_")
        with system.client("charity", "charity_federation", "000000") as charity:
            endpoints = charity.get("/v1/federation/webhooks").json()["items"]
        assert [(e["endpoint_id"], e["url"]) for e in endpoints] == [(sub["endpoint_id"], sub["url"])]

        system.kill("federation")
        system.start("federation")
        fed = httpx.Client(base_url=system.url("federation"), timeout=10)
        assert fed.get("/v1/subscription").json()["endpoint_id"] == sub["endpoint_id"]
        assert fed.post("/v1/subscription").json()["endpoint_id"] == sub["endpoint_id"]  # idempotent
        with system.client("charity", "charity_federation", "000000") as charity:
            assert len(charity.get("/v1/federation/webhooks").json()["items"]) == 1
    finally:
        system.stop()
