"""Charity's federation feed in process: webhook delivery against a real HTTP receiver in the test
(every delivery verified with the reference `standardwebhooks` package), its order, backoff,
timeout and lease; and the federation routes' answers to good and bad requests.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook, WebhookVerificationError

from lifeline.http.auth import mint_token
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideStore
from services.charity.bootstrap import SPEC
from services.charity.domain import Need
from services.charity.federation import accept_need, publish_uncovered
from services.charity.webhooks import Deliverer, WebhookEndpoint, new_secret
from tests.unit.rules.test_federation_rules import FEDERATION, NOW, Charity

from . import log_length, service_http

SEALER = Sealer("test-secret")
SECRET = "test-charity-federation-secret-0123456789abcdef"


class Receiver:
    """A federation's webhook receiver: verifies each delivery, answers as its mode says."""

    def __init__(self, secret: str):
        self.secret = secret
        self.mode = "ok"           # ok | fail | slow
        self.received: list[str] = []
        self.attempts: list[str] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts.append(self.headers.get("webhook-id", ""))
                if receiver.mode == "slow":
                    time.sleep(1.0)
                status = 503 if receiver.mode == "fail" else 200
                if status == 200:
                    try:
                        item = Webhook(receiver.secret).verify(body, dict(self.headers))
                        receiver.received.append(item["id"])
                    except WebhookVerificationError:
                        receiver.bad_signatures += 1
                        status = 400
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the deliverer gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class WallClock:
    """The deliverer's wall clock, moved by the test (near the real time: receivers allow 5 minutes)."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def charity():
    c = Charity()
    c.deliveries = SideStore.in_memory(name="webhooks")
    yield c
    c.deliveries.close()
    c.side.close()
    c.app.close()


@pytest.fixture
def receiver():
    secret = new_secret()
    r = Receiver(secret)
    yield r
    r.close()


def endpoint(charity, url: str, secret: str, region: str = "000000") -> str:
    e = WebhookEndpoint.register("W-TEST", url=url, secret=secret, region_code=region, org_code=region,
                                 registered_at=NOW, sealer=SEALER, by=FEDERATION)
    charity.app.save(e)
    charity.projection.catch_up()
    return e.endpoint_id


def deliverer(charity, wall=time.time, **kw) -> Deliverer:
    return Deliverer(charity.app, charity.side, charity.deliveries, SEALER, wall=wall,
                     **{"timeout": 2.0, "retry_max": 5.0, **kw})


def ids(charity) -> list[str]:
    return [i["id"] for i in charity.items()]


def test_items_are_delivered_in_order_retried_with_backoff_and_each_acknowledged_once(charity, receiver):
    for n in range(3):
        charity.need(100_000 + n)
    charity.publish()
    endpoint_id = endpoint(charity, receiver.url, receiver.secret)
    wall = WallClock()
    d = deliverer(charity, wall)
    receiver.mode = "fail"
    waits = []
    for _ in range(5):
        assert d.deliver(endpoint_id) == 0
        state = d.state(endpoint_id)
        waits.append(state["next_attempt_at"] - wall.now)
        assert d.deliver(endpoint_id) == 0  # not before its time: no attempt
        wall.now = state["next_attempt_at"]
    assert waits == [1, 2, 4, 5, 5]  # 1 s doubling, capped at retry_max
    first = ids(charity)[0]
    assert receiver.attempts == [first] * 5 and state["attempts"] == 5
    assert state["last_error"] == f"{first}: HTTP 503"
    receiver.mode = "ok"
    assert d.deliver(endpoint_id) == 3
    assert receiver.received == ids(charity) and receiver.bad_signatures == 0
    state = d.state(endpoint_id)
    assert (state["delivered_up_to"], state["attempts"], state["last_error"], state["next_attempt_at"]) == (
        "000000000003", 0, None, None)
    assert d.deliver(endpoint_id) == 0
    accept_need(charity.app, charity.events(Need.Published)[0].need_id, "东营区慈善总会", "", FEDERATION)
    charity.projection.catch_up()
    assert d.deliver(endpoint_id) == 1
    assert receiver.received == ids(charity) and len(set(receiver.received)) == 4


def test_a_receiver_that_does_not_answer_in_time_is_retried(charity, receiver):
    charity.need(100_000)
    charity.publish()
    endpoint_id = endpoint(charity, receiver.url, receiver.secret)
    wall = WallClock()
    d = deliverer(charity, wall, timeout=0.2)
    receiver.mode = "slow"
    assert d.deliver(endpoint_id) == 0
    assert "Timeout" in d.state(endpoint_id)["last_error"]
    receiver.mode = "ok"
    wall.now += 1
    assert d.deliver(endpoint_id) == 1
    assert receiver.received == ids(charity)


def test_one_replica_delivers_to_an_endpoint_at_a_time(charity, receiver):
    for n in range(20):
        charity.need(100_000 + n)
    charity.publish()
    endpoint_id = endpoint(charity, receiver.url, receiver.secret)
    first, second = deliverer(charity, holder="replica-1"), deliverer(charity, holder="replica-2")
    assert first._take(endpoint_id)
    assert second.deliver(endpoint_id) == 0 and receiver.attempts == []
    first._release(endpoint_id)
    # Both at once, again and again: every item once, in order.
    done = []

    def run(d):
        for _ in range(30):
            done.append(d.deliver(endpoint_id))

    threads = [threading.Thread(target=run, args=(d,)) for d in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(done) == 20
    assert receiver.received == ids(charity) and len(receiver.received) == 20


def test_an_endpoint_gets_the_items_of_its_region_only(charity, receiver):
    charity.need(100_000)
    charity.publish()
    in_other_county = endpoint(charity, receiver.url, receiver.secret, region="370602")
    d = deliverer(charity)
    assert d.deliver(in_other_county) == 0 and receiver.attempts == []
    with charity.side.transaction() as tx:
        doc = tx.get("webhook_endpoint", in_other_county)
    assert d.view(doc)["pending"] == 0
    assert d.view({**doc, "region_code": "370502"})["pending"] == 1


# --- the routes -----------------------------------------------------------------------------------------
def bearer(role: str = "charity_federation", region: str = "000000", org: str | None = None) -> dict:
    token = mint_token(SECRET, role=role, region=region, user_id=f"{role}@{region}", org_code=org or region)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path):
    from datetime import datetime

    with service_http(SPEC, tmp_path, SECRET, datetime.fromisoformat(NOW)) as app:
        runtime = app.state.runtime
        yield TestClient(app, raise_server_exceptions=False), runtime
        fed = getattr(runtime, "charity_federation", None)
        if fed is not None:
            fed.close()


def open_needs(runtime, *amounts: int, consent: bool = True) -> list[str]:
    charity = Charity(runtime)
    need_ids = [charity.need(a, consent=consent) for a in amounts]
    runtime.projection.catch_up()
    return need_ids


def test_webhook_registration_answers_the_secret_once_and_bad_input_changes_nothing(api):
    client, runtime = api
    before = log_length(runtime.app)
    for body, field in (({"url": "ftp://federation.example.org/x"}, "url"), ({"url": "not a url"}, "url"),
                        ({}, "url"), ({"url": "https://f.example.org/x", "secret": "whsec_c2hvcnQ="}, "secret"),
                        ({"url": "https://f.example.org/x", "events": ["all"]}, "events")):
        r = client.post("/v1/federation/webhooks", json=body, headers=bearer())
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["pointer"] for e in r.json()["errors"]] == [f"#/{field}"]
    r = client.post("/v1/federation/webhooks", json={"url": "https://f.example.org/x"}, headers=bearer("caseworker"))
    assert r.status_code == 403
    assert log_length(runtime.app) == before
    r = client.post("/v1/federation/webhooks", json={"url": "https://f.example.org/x"}, headers=bearer())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["url"] == "https://f.example.org/x"
    chosen = new_secret()
    r = client.post("/v1/federation/webhooks", json={"url": "http://127.0.0.1:9/h", "secret": chosen},
                    headers=bearer())
    assert r.status_code == 201 and r.json()["secret"] == chosen
    r = client.get(f"/v1/federation/webhooks/{created['endpoint_id']}", headers=bearer())
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["status"] == "active" and shown["delivered_up_to"] == "000000000000" and shown["attempts"] == 0
    listed = client.get("/v1/federation/webhooks", headers=bearer()).json()["items"]
    assert len(listed) == 2
    everything = json.dumps(listed) + json.dumps(runtime.side.dump(), ensure_ascii=False)
    assert created["secret"] not in everything and chosen not in everything
    assert created["secret"][6:] not in json.dumps([str(e.__dict__) for e in _events(runtime)])
    # Another federation organisation sees neither.
    assert client.get("/v1/federation/webhooks", headers=bearer(org="other-org")).json()["items"] == []
    assert client.get(f"/v1/federation/webhooks/{created['endpoint_id']}",
                      headers=bearer(org="other-org")).status_code == 404
    r = client.delete(f"/v1/federation/webhooks/{created['endpoint_id']}", headers=bearer())
    assert r.status_code == 200 and r.json()["status"] == "disabled"


def _events(runtime):
    notes = runtime.app.recorder.select_notifications(1, 10_000)
    return [runtime.app.mapper.to_domain_event(n) for n in notes]


def test_the_feed_pages_from_a_cursor_and_refuses_a_bad_one(api):
    client, runtime = api
    open_needs(runtime, 100_000, 200_000, 300_000)
    open_needs(runtime, 400_000, consent=False)
    assert len(publish_uncovered(runtime.app, runtime.side)) == 3
    r = client.get("/v1/federation/feed", params={"limit": 2}, headers=bearer())
    assert r.status_code == 200, r.text
    page = r.json()
    assert [i["cursor"] for i in page["items"]] == ["000000000001", "000000000002"]
    assert page["next_cursor"] == "000000000002"
    rest = client.get("/v1/federation/feed", params={"cursor": page["next_cursor"]}, headers=bearer()).json()
    assert [i["cursor"] for i in rest["items"]] == ["000000000003"] and rest["next_cursor"] == "000000000003"
    end = client.get("/v1/federation/feed", params={"cursor": rest["next_cursor"]}, headers=bearer()).json()
    assert end == {"items": [], "next_cursor": "000000000003"}
    for bad in ("3", "abc", "0000000000001"):
        r = client.get("/v1/federation/feed", params={"cursor": bad}, headers=bearer())
        assert r.status_code == 422 and r.json()["errors"][0]["parameter"] == "cursor"
    # Within the caller's region: the needs are in 370502.
    other = client.get("/v1/federation/feed", headers=bearer(region="370602")).json()
    assert other["items"] == [] and other["next_cursor"] == "000000000003"
    assert client.get("/v1/federation/feed", headers=bearer("caseworker", "370502")).status_code == 403
    assert client.get("/v1/federation/feed", headers=bearer("auditor")).status_code == 200


def test_acceptance_and_fulfilment_move_a_published_need_once(api):
    client, runtime = api
    (unpublished,) = open_needs(runtime, 100_000, consent=False)
    (need_id,) = open_needs(runtime, 200_000)
    publish_uncovered(runtime.app, runtime.side)
    body = {"organisation": "东营区慈善总会", "note": "已认领"}
    r = client.post(f"/v1/federation/needs/{unpublished}/acceptance", json=body, headers=bearer())
    assert r.status_code == 409 and r.json()["rule"] == "not_published"
    assert client.post("/v1/federation/needs/N-NOPE/acceptance", json=body, headers=bearer()).status_code == 404
    assert client.post(f"/v1/federation/needs/{need_id}/acceptance", json=body,
                       headers=bearer("caseworker", "370502")).status_code == 403
    before = log_length(runtime.app)
    for bad, field in (({**body, "amount_fen": -1}, "amount_fen"), ({**body, "amount_fen": "100"}, "amount_fen"),
                       ({"organisation": "东营区慈善总会", "amount_fen": 1, "via": "x"}, "via")):
        r = client.post(f"/v1/federation/needs/{need_id}/fulfilment", json=bad, headers=bearer())
        assert r.status_code == 422 and [e["pointer"] for e in r.json()["errors"]] == [f"#/{field}"], r.text
    assert log_length(runtime.app) == before
    for _ in range(2):
        r = client.post(f"/v1/federation/needs/{need_id}/acceptance", json=body, headers=bearer())
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    r = client.post(f"/v1/federation/needs/{need_id}/acceptance", json={**body, "organisation": "另一慈善会"},
                    headers=bearer())
    assert r.status_code == 409 and r.json()["rule"] == "accepted_by_another"
    fulfil = {"organisation": "东营区慈善总会", "amount_fen": 200_000, "note": "已拨付"}
    for _ in range(2):
        r = client.post(f"/v1/federation/needs/{need_id}/fulfilment", json=fulfil, headers=bearer())
        assert r.status_code == 200 and r.json()["status"] == "fulfilled", r.text
    assert log_length(runtime.app) == before + 2
    types = [i["type"] for i in client.get("/v1/federation/feed", headers=bearer()).json()["items"]]
    assert types == ["need.published", "need.accepted", "need.fulfilled"]
