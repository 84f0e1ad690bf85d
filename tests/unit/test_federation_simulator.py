"""The charity-federation simulator (lifeline/simulators/federation.py): every webhook delivery
verified with the reference `standardwebhooks` package and stored once by its id; bad signatures,
missing headers and old timestamps refused (400) and counted; fail (503) and silent (held) on
command; its state kept across a restart. It subscribes at charity at start (retrying until charity
answers), accepts and fulfils needs on command (charity's answer passed on), auto-accepts what it
receives when told, and pulls the cursor feed from its saved cursor.

The deliveries are signed here with `standardwebhooks.Webhook.sign` and the wall clock, as charity
signs them. Charity is played by a small real HTTP server (uvicorn on a free port) that checks the
`charity_federation` token with Lifeline's own Authenticator and answers what each test scripts;
the simulator against the real charity service is the e2e test's."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from lifeline.dev.embedded import free_port
from lifeline.http.auth import Authenticator
from lifeline.http.problems import Problem, install_problem_handlers
from lifeline.settings import Settings
from lifeline.simulators.federation import create_app
from tests.unit import served, wait_for

SECRET = "test-jwt-secret-not-for-production-0123456789"


def whsec(n: int) -> str:
    return "whsec_" + base64.b64encode(bytes([n]) * 32).decode()


def need_item(need_id: str, kind: str = "published", seq: int = 1) -> dict:
    """A feed item / webhook body as the federation contract shapes it."""
    return {"id": f"{need_id}/{kind}", "cursor": f"{seq:012d}", "type": f"need.{kind}",
            "timestamp": "2026-12-01T09:00:00+08:00",
            "data": {"need_id": need_id, "name_masked": "王*明", "region_code": "370502101",
                     "members_count": 3, "household_type": "dibao", "need_category": "medical",
                     "amount_still_needed_fen": 500000, "urgency": "urgent", "due_date": "2026-12-15",
                     "status": kind}}


def signed(item: dict, secret: str, *, at: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a delivery, signed the Standard Webhooks way (wall clock)."""
    body = json.dumps(item, ensure_ascii=False)
    at = at or datetime.now(timezone.utc)
    return body.encode(), {"webhook-id": item["id"], "webhook-timestamp": str(int(at.timestamp())),
                           "webhook-signature": Webhook(secret).sign(item["id"], at, body),
                           "content-type": "application/json"}


# --- charity, played by a small HTTP server ------------------------------------------------------
@dataclass
class Charity:
    port: int
    calls: list[tuple[str, str, dict, dict | None]] = field(default_factory=list)  # method, path, query, json
    principals: list[object] = field(default_factory=list)
    subscribe_script: list[int] = field(default_factory=list)  # statuses answered first, then 201
    endpoints: list[dict] = field(default_factory=list)
    needs: dict[str, str] = field(default_factory=dict)        # need_id -> status
    feed: list[dict] = field(default_factory=list)

    def called(self, path_part: str) -> list[tuple[str, str, dict, dict | None]]:
        return [c for c in self.calls if path_part in c[1]]


@pytest.fixture
def charity() -> Iterator[Charity]:
    state = Charity(port=free_port())
    auth = Authenticator(SECRET)
    app = FastAPI()
    install_problem_handlers(app)
    lock = threading.Lock()

    async def record(request: Request) -> dict | None:
        principal = auth.principal(request)  # 401 problem unless a valid token
        if principal.role != "charity_federation":
            raise Problem(403, "Forbidden", "charity_federation only")
        body = await request.body()
        with lock:
            state.principals.append(principal)
            state.calls.append((request.method, request.url.path, dict(request.query_params),
                                json.loads(body) if body else None))
            return json.loads(body) if body else None

    @app.post("/v1/federation/webhooks", status_code=201)
    async def webhooks(request: Request):
        body = await record(request)
        if state.subscribe_script:
            raise Problem(state.subscribe_script.pop(0), None, "scripted")
        endpoint = {"endpoint_id": f"WH-{len(state.endpoints) + 1}", "url": body["url"],
                    "secret": whsec(len(state.endpoints) + 1)}
        state.endpoints.append(endpoint)
        return endpoint

    @app.post("/v1/federation/needs/{need_id}/acceptance")
    async def acceptance(need_id: str, request: Request):
        body = await record(request)
        if state.needs.get(need_id) != "published":
            raise Problem(409, "Need not published", f"{need_id} is {state.needs.get(need_id)}",
                          slug="need-not-published", rule="federation_accepts_published_needs")
        state.needs[need_id] = "accepted"
        return {"need_id": need_id, "status": "accepted", "accepted_by": body["organisation"]}

    @app.post("/v1/federation/needs/{need_id}/fulfilment")
    async def fulfilment(need_id: str, request: Request):
        body = await record(request)
        if body["amount_fen"] <= 0:
            raise Problem(422, "Invalid amount", "amount_fen must be positive")
        state.needs[need_id] = "fulfilled"
        return {"need_id": need_id, "status": "fulfilled", "fulfilled_by": "federation"}

    @app.get("/v1/federation/feed")
    async def feed(request: Request, cursor: str | None = None, limit: int = 2):
        await record(request)
        after = [i for i in state.feed if cursor is None or i["cursor"] > cursor][:limit]
        return JSONResponse({"items": after, "next_cursor": after[-1]["cursor"] if after else (cursor or "")})

    with served(app, state.port, "the charity stand-in"):
        yield state


@pytest.fixture
def federation_app(tmp_path, charity) -> Callable[..., TestClient]:
    """A federation simulator on tmp_path calling `charity` (a new process image on each call)."""
    def make(**env: str) -> TestClient:
        settings = Settings.from_env({
            "LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_HOST": "127.0.0.1", "LIFELINE_JWT_SECRET": SECRET,
            "LIFELINE_CHARITY_PORT": str(charity.port), "LIFELINE_FEDERATION_PORT": "18012",
            "LIFELINE_FEDERATION_REGION": "370502", **env})
        return TestClient(create_app(settings))
    return make


def subscribed(fed: TestClient) -> dict:
    return wait_for("the subscription", lambda: (s := fed.get("/v1/subscription").json())["subscribed"] and s)


@pytest.fixture
def fed(federation_app) -> Iterator[TestClient]:
    with federation_app() as client:
        subscribed(client)
        yield client


def deliver(fed: TestClient, item: dict, secret: str, **kw) -> int:
    body, headers = signed(item, secret, **kw)
    return fed.post("/webhooks", content=body, headers=headers).status_code


def received(fed: TestClient) -> dict:
    return fed.get("/v1/received").json()


# --- receiving -------------------------------------------------------------------------------------
def test_it_subscribes_at_start_with_a_charity_federation_token(fed, charity):
    sub = fed.get("/v1/subscription").json()
    assert sub == {"subscribed": True, "endpoint_id": "WH-1", "url": "http://127.0.0.1:18012/webhooks",
                   "secret": whsec(1), "subscribed_at": sub["subscribed_at"],
                   "receiver_url": "http://127.0.0.1:18012/webhooks"}
    [(method, path, _, body)] = charity.calls
    assert (method, path, body) == ("POST", "/v1/federation/webhooks", {"url": "http://127.0.0.1:18012/webhooks"})
    assert charity.principals[0].role == "charity_federation" and charity.principals[0].region == "370502"


def test_a_good_delivery_is_stored_once_in_arrival_order(fed):
    secret = fed.get("/v1/subscription").json()["secret"]
    a, b = need_item("N-A"), need_item("N-B", seq=2)
    assert deliver(fed, a, secret) == 200
    assert deliver(fed, b, secret) == 200
    assert deliver(fed, a, secret) == 200  # at least once: a repeat is fine, and not stored again
    got = received(fed)
    assert got == {"items": [a, b], "count": 2, "duplicates": 1, "bad_signatures": 0, "failures_answered": 0,
                   "held": 0}
    assert fed.delete("/v1/received").status_code == 204
    assert received(fed)["count"] == 0 and received(fed)["duplicates"] == 0


def test_what_charity_signs_is_what_the_simulator_verifies(fed):
    """The two sides of the contract meet: charity's signing (services/charity/webhooks.py, UTF-8
    compact JSON with Chinese in it) against the reference package's verification."""
    from services.charity.webhooks import body_of, signed_headers

    secret = fed.get("/v1/subscription").json()["secret"]
    item = need_item("N-C")
    headers = signed_headers(secret, item["id"], body_of(item), time.time())
    r = fed.post("/webhooks", content=body_of(item), headers=headers)
    assert r.status_code == 200 and received(fed)["items"] == [item]


@pytest.mark.parametrize("spoil", ["tampered body", "other secret", "missing headers", "old timestamp",
                                   "future timestamp", "garbage signature", "not json"])
def test_a_bad_delivery_is_refused_counted_and_never_stored(fed, spoil):
    secret = fed.get("/v1/subscription").json()["secret"]
    item = need_item("N-BAD")
    body, headers = signed(item, whsec(99) if spoil == "other secret" else secret, at={
        "old timestamp": datetime.now(timezone.utc) - timedelta(minutes=10),
        "future timestamp": datetime.now(timezone.utc) + timedelta(minutes=10)}.get(spoil))
    if spoil == "tampered body":
        body = body.replace("500000".encode(), b"900000")
    elif spoil == "missing headers":
        del headers["webhook-signature"]
    elif spoil == "garbage signature":
        headers["webhook-signature"] = "v1"
    elif spoil == "not json":
        body = b"not json"
        headers["webhook-signature"] = Webhook(secret).sign(item["id"], datetime.now(timezone.utc), "not json")
    r = fed.post("/webhooks", content=body, headers=headers)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    got = received(fed)
    assert got["items"] == [] and got["bad_signatures"] == 1
    # the same id, properly signed, is still taken: a refused delivery was not remembered
    assert deliver(fed, item, secret) == 200 and received(fed)["items"] == [item]


def test_fail_answers_503_and_keeps_nothing_until_told_otherwise(fed):
    secret = fed.get("/v1/subscription").json()["secret"]
    assert fed.put("/v1/behaviour", json={"mode": "fail"}).json() == {"mode": "fail", "auto_accept": False}
    assert deliver(fed, need_item("N-F"), secret) == 503
    assert deliver(fed, need_item("N-F"), secret) == 503
    assert received(fed)["failures_answered"] == 2 and received(fed)["items"] == []
    fed.put("/v1/behaviour", json={"mode": "ok"})
    assert deliver(fed, need_item("N-F"), secret) == 200
    assert received(fed)["count"] == 1 and received(fed)["duplicates"] == 0


def test_silent_holds_a_delivery_unanswered(fed):
    secret = fed.get("/v1/subscription").json()["secret"]
    fed.put("/v1/behaviour", json={"mode": "silent"})
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(deliver(fed, need_item("N-S"), secret)))
    started = time.monotonic()
    sender.start()
    sender.join(1.0)
    assert sender.is_alive() and answers == []  # no answer: the sender's own timeout decides
    fed.put("/v1/behaviour", json={"mode": "ok"})  # told otherwise: the held one is let go, unstored
    sender.join(5)
    assert answers == [503] and time.monotonic() - started >= 1.0
    assert received(fed)["items"] == [] and received(fed)["held"] == 1
    # and held for longer than charity waits when nothing changes
    assert fed.app.state.federation.hold_seconds == Settings().webhook_timeout_seconds + 5


def test_silent_lets_go_after_the_hold(fed):
    secret = fed.get("/v1/subscription").json()["secret"]
    fed.app.state.federation.hold_seconds = 0.3
    fed.put("/v1/behaviour", json={"mode": "silent"})
    started = time.monotonic()
    assert deliver(fed, need_item("N-S2"), secret) == 503
    assert time.monotonic() - started >= 0.3 and received(fed)["items"] == []


def test_bad_behaviour_is_refused(fed):
    r = fed.put("/v1/behaviour", json={"mode": "sleepy"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert fed.put("/v1/behaviour", json={"mode": "ok", "extra": 1}).status_code == 422
    assert fed.get("/v1/behaviour").json() == {"mode": "ok", "auto_accept": False}


def test_state_survives_a_restart(federation_app, charity):
    with federation_app() as fed:
        secret = subscribed(fed)["secret"]
        item = need_item("N-R")
        assert deliver(fed, item, secret) == 200
        body, headers = signed(need_item("N-X"), secret)
        fed.post("/webhooks", content=body.replace(b"N-X", b"N-Y"), headers=headers)
    with federation_app() as fed:  # a new process on the same data dir
        assert fed.get("/v1/subscription").json()["secret"] == secret
        assert received(fed) == {"items": [item], "count": 1, "duplicates": 0, "bad_signatures": 1,
                                 "failures_answered": 0, "held": 0}
        assert deliver(fed, item, secret) == 200 and received(fed)["duplicates"] == 1  # still known
        assert deliver(fed, need_item("N-R2"), secret) == 200 and received(fed)["count"] == 2
    assert len(charity.called("/webhooks")) == 1  # subscribed once, not again after the restart


# --- subscribing -------------------------------------------------------------------------------------
def test_it_retries_the_subscription_until_charity_answers(federation_app, charity):
    charity.subscribe_script = [503, 404, 503]
    with federation_app() as fed:
        sub = subscribed(fed)
    assert sub["endpoint_id"] == "WH-1" and len(charity.called("/webhooks")) == 4


def test_no_subscription_at_start_when_told_then_on_demand_idempotent_and_renewed(federation_app, charity):
    with federation_app(LIFELINE_FEDERATION_SUBSCRIBE="false") as fed:
        time.sleep(0.3)
        assert fed.get("/v1/subscription").json()["subscribed"] is False and charity.calls == []
        # nothing to verify with yet: refused
        assert deliver(fed, need_item("N-0"), whsec(1)) == 400
        r = fed.post("/v1/subscription")
        assert r.status_code == 201 and r.json()["endpoint_id"] == "WH-1"
        again = fed.post("/v1/subscription", json={})
        assert again.status_code == 200 and again.json()["endpoint_id"] == "WH-1"
        assert len(charity.called("/webhooks")) == 1
        renewed = fed.post("/v1/subscription", json={"renew": True}).json()
        assert renewed["endpoint_id"] == "WH-2" and renewed["secret"] == whsec(2)
        # both endpoints exist at charity: what either delivers verifies, and is kept once
        assert deliver(fed, need_item("N-1"), whsec(1)) == 200
        assert deliver(fed, need_item("N-1"), whsec(2)) == 200
        assert received(fed)["count"] == 1 and received(fed)["duplicates"] == 1


def test_a_refused_subscription_is_passed_on(federation_app, charity):
    with federation_app(LIFELINE_FEDERATION_SUBSCRIBE="false") as fed:
        charity.subscribe_script = [422]
        r = fed.post("/v1/subscription")
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == "scripted"
        assert fed.post("/v1/subscription").status_code == 201  # a new request after a refusal


def test_charity_unreachable_is_502(tmp_path):
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_JWT_SECRET": SECRET,
                                  "LIFELINE_CHARITY_PORT": str(free_port()), "LIFELINE_FEDERATION_SUBSCRIBE": "0"})
    with TestClient(create_app(settings)) as fed:
        r = fed.post("/v1/needs/N-1/accept")
        assert r.status_code == 502 and r.json()["title"] == "Charity unreachable"
        assert fed.post("/v1/feed/pull").status_code == 502


# --- reporting back --------------------------------------------------------------------------------
def test_accept_and_fulfil_on_command_pass_charity_answers_on(fed, charity):
    charity.needs["N-1"] = "published"
    r = fed.post("/v1/needs/N-1/accept", json={"note": "已联系家属"})
    assert r.status_code == 200 and r.json() == {"need_id": "N-1", "status": "accepted",
                                                 "accepted_by": "中华慈善总会（模拟）"}
    assert charity.calls[-1] == ("POST", "/v1/federation/needs/N-1/acceptance", {},
                                 {"organisation": "中华慈善总会（模拟）", "note": "已联系家属"})
    again = fed.post("/v1/needs/N-1/accept")  # charity's conflict, as charity wrote it
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["rule"] == "federation_accepts_published_needs"
    r = fed.post("/v1/needs/N-1/fulfil", json={"amount_fen": 300000})
    assert r.status_code == 200 and r.json()["fulfilled_by"] == "federation"
    assert charity.calls[-1][3] == {"organisation": "中华慈善总会（模拟）", "amount_fen": 300000,
                                    "note": "联合会已完成帮扶（模拟）"}
    assert fed.post("/v1/needs/N-1/fulfil", json={"amount_fen": -5}).status_code == 422  # charity's 422
    # the simulator's own validation: a string amount, an unknown field
    assert fed.post("/v1/needs/N-1/fulfil", json={"amount_fen": "5"}).status_code == 422
    assert fed.post("/v1/needs/N-1/accept", json={"nope": 1}).status_code == 422
    assert len(charity.called("/needs/")) == 4
    assert [(a["what"], a["status"]) for a in fed.get("/v1/actions").json()["items"]] == [
        ("acceptance", 200), ("acceptance", 409), ("fulfilment", 200), ("fulfilment", 422)]


def test_auto_accept_accepts_each_published_need_once(fed, charity):
    secret = fed.get("/v1/subscription").json()["secret"]
    charity.needs.update({"N-1": "published", "N-2": "published"})
    fed.put("/v1/behaviour", json={"mode": "ok", "auto_accept": True})
    assert deliver(fed, need_item("N-1"), secret) == 200
    assert deliver(fed, need_item("N-1"), secret) == 200  # a duplicate: not accepted twice
    assert deliver(fed, need_item("N-2", "accepted", 2), secret) == 200  # not a publication
    wait_for("N-1 accepted", lambda: charity.needs["N-1"] == "accepted")
    time.sleep(0.3)
    assert [c[1] for c in charity.called("/needs/")] == ["/v1/federation/needs/N-1/acceptance"]
    assert charity.needs["N-2"] == "published"
    assert fed.get("/v1/actions").json()["auto_accept_pending"] == []


# --- the cursor feed ---------------------------------------------------------------------------------
def test_the_feed_is_pulled_from_the_saved_cursor_to_the_end(federation_app, charity):
    charity.feed = [need_item(f"N-{i}", seq=i) for i in range(1, 6)]
    with federation_app(LIFELINE_FEDERATION_SUBSCRIBE="false") as fed:
        assert fed.post("/v1/feed/pull").json() == {"pulled": 5, "cursor": "000000000005"}
        feeds = charity.called("/feed")
        assert [c[2].get("cursor") for c in feeds] == [None, "000000000002", "000000000004", "000000000005"]
        assert fed.post("/v1/feed/pull").json() == {"pulled": 0, "cursor": "000000000005"}
        charity.feed.append(need_item("N-6", seq=6))
    with federation_app(LIFELINE_FEDERATION_SUBSCRIBE="false") as fed:  # the cursor survives a restart
        assert fed.post("/v1/feed/pull").json() == {"pulled": 1, "cursor": "000000000006"}
        got = fed.get("/v1/feed").json()
        assert got["count"] == 6 and [i["id"] for i in got["items"]] == [f"N-{i}/published" for i in range(1, 7)]
        assert fed.delete("/v1/feed").status_code == 204
        assert fed.post("/v1/feed/pull", json={"limit": 10}).json() == {"pulled": 6, "cursor": "000000000006"}
        assert charity.called("/feed")[-2][2] == {"limit": "10"}
