"""The federation feed across processes: intake's referral to charity becomes a need no fund
covers, charity publishes it masked, and the federation simulator (its own process) receives it
by signed webhook (verified with the reference `standardwebhooks` package) and reads it from
the cursor feed; a receiver that fails gets everything it missed, in order, once it answers
again; the federation's acceptance and fulfilment come back as events intake hears.

Timing settings are small here (retries capped at 2 s, a scan every half second).
"""

from __future__ import annotations

import json
import re

import pytest

from lifeline.contracts import registry
from tests.e2e.conftest import new_people, running_lifeline
from tests.harness import NAMES, household, wait_for

pytestmark = pytest.mark.e2e

VILLAGE = "370502101001"
TOWNSHIP = VILLAGE[:9]
ID_NUMBER = re.compile(r"\d{17}[\dX]")
ORGANISATION = "中华慈善总会（模拟）"  # LIFELINE_FEDERATION_ORGANISATION's default


@pytest.fixture(scope="module")
def lifeline(infra):
    with running_lifeline(infra, extra_env={
        "LIFELINE_TEST_CLOCK": "1", "LIFELINE_WEBHOOK_RETRY_MAX_SECONDS": "2",
        "LIFELINE_WEBHOOK_TIMEOUT_SECONDS": "2", "LIFELINE_WEBHOOK_SCAN_SECONDS": "0.5",
    }) as system:
        yield system


def referral(lifeline, *, consent: bool = True, amount_fen: int = 800_000,
             category: str = "disaster") -> tuple[str, str, list[str]]:
    """A household's case and its referral to charity (no fund helps with disasters here):
    (case id, need id, the household's ID numbers)."""
    people = new_people(2)
    with lifeline.client("intake", role="clerk", region=TOWNSHIP) as c:
        r = c.post("/v1/applications", json=household(people, VILLAGE))
        assert r.status_code == 201, r.text
        case_id = r.json()["case_id"]
        r = c.post(f"/v1/cases/{case_id}/referrals", json={
            "target": "charity", "need_category": category, "amount_asked_fen": amount_fen,
            "urgency": "urgent", "due_date": "2030-06-28", "consent_to_share": consent,
        })
    assert r.status_code == 201, r.text
    referral_id = r.json()["referral_id"]
    return case_id, "N-" + referral_id.split("-", 1)[1], people


def received(lifeline) -> dict:
    with lifeline.client("federation") as sim:
        r = sim.get("/v1/received")
    assert r.status_code == 200, r.text
    return r.json()


def received_ids(lifeline) -> list[str]:
    return [item["id"] for item in received(lifeline)["items"]]


def feed(lifeline) -> list[dict]:
    with lifeline.client("charity", role="charity_federation") as c:
        r = c.get("/v1/federation/feed", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def endpoint(lifeline) -> dict:
    with lifeline.client("federation") as sim:
        endpoint_id = wait_for(lambda: sim.get("/v1/subscription").json().get("endpoint_id"),
                               what="the simulator subscribed")
    with lifeline.client("charity", role="charity_federation") as c:
        r = c.get(f"/v1/federation/webhooks/{endpoint_id}")
    assert r.status_code == 200, r.text
    return r.json()


def assert_masked(items: list[dict], case_ids: list[str], people: list[str]) -> None:
    text = json.dumps(items, ensure_ascii=False)
    assert not ID_NUMBER.search(text) and not any(p in text for p in people)
    assert not any(case_id in text for case_id in case_ids)
    assert VILLAGE not in text and not any(name in text for name in NAMES)
    for item in items:
        assert item["data"]["region_code"] == TOWNSHIP and item["data"]["name_masked"] == "王*明"


def test_an_unmatched_need_reaches_the_federation_signed_and_by_the_feed_never_with_an_id_number(lifeline):
    secret_case, secret_need, secret_people = referral(lifeline, consent=False)
    case_id, need_id, people = referral(lifeline)
    published = f"{need_id}/published"
    wait_for(lambda: published in received_ids(lifeline), what="the need delivered by webhook")
    got = received(lifeline)
    assert got["bad_signatures"] == 0
    (item,) = [i for i in got["items"] if i["id"] == published]
    assert item["type"] == "need.published" and item["data"]["amount_still_needed_fen"] == 800_000
    assert item["data"]["need_category"] == "disaster" and item["data"]["status"] == "published"
    # The cursor feed, read by the simulator as the federation would.
    with lifeline.client("federation") as sim:
        r = sim.post("/v1/feed/pull", json={})
        assert r.status_code == 200, r.text
        pulled = sim.get("/v1/feed").json()["items"]
    assert [i for i in pulled if i["id"] == published] == [item]
    # Never the need without consent; never an ID number, a case, a village or a name.
    everything = got["items"] + pulled + feed(lifeline)
    assert not [i for i in everything if i["data"]["need_id"] == secret_need]
    assert_masked(everything, [case_id, secret_case], people + secret_people)
    with lifeline.client("charity", role="caseworker", region=TOWNSHIP) as c:
        (secret,) = c.get("/v1/needs", params={"case_id": secret_case}).json()["items"]
    assert secret["published"] is False and secret["status"] == "open"
    state = endpoint(lifeline)
    assert state["status"] == "active" and "secret" not in state


def test_a_receiver_that_fails_gets_everything_it_missed_in_order_once_it_answers(lifeline):
    endpoint(lifeline)  # subscribed
    with lifeline.client("federation") as sim:
        assert sim.put("/v1/behaviour", json={"mode": "fail"}).status_code == 200
    try:
        needs = [referral(lifeline, amount_fen=100_000 * (n + 1))[1] for n in range(3)]
        wait_for(lambda: {f"{n}/published" for n in needs} <= {i["id"] for i in feed(lifeline)},
                 what="three needs on the feed")
        failing = wait_for(lambda: (e := endpoint(lifeline))["attempts"] >= 3 and e,
                           what="deliveries failing and retried")
        assert failing["pending"] >= 3 and "HTTP 503" in failing["last_error"]
        assert not {f"{n}/published" for n in needs} & set(received_ids(lifeline))
    finally:
        with lifeline.client("federation") as sim:
            assert sim.put("/v1/behaviour", json={"mode": "ok"}).status_code == 200
    wait_for(lambda: {f"{n}/published" for n in needs} <= set(received_ids(lifeline)),
             what="everything missed delivered")
    order = {i["id"]: i["cursor"] for i in feed(lifeline)}
    cursors = [order[i] for i in received_ids(lifeline)]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)  # in feed order, each once
    done = wait_for(lambda: (e := endpoint(lifeline))["pending"] == 0 and e, what="caught up")
    assert done["attempts"] == 0 and done["last_error"] is None and done["delivered_up_to"] == max(order.values())
    assert received(lifeline)["bad_signatures"] == 0


def test_the_federation_accepts_and_fulfils_a_need_and_intake_hears_of_it(lifeline):
    case_id, need_id, people = referral(lifeline, amount_fen=300_000)
    wait_for(lambda: f"{need_id}/published" in received_ids(lifeline), what="published")
    with lifeline.client("federation") as sim:
        r = sim.post(f"/v1/needs/{need_id}/accept", json={})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        r = sim.post(f"/v1/needs/{need_id}/fulfil", json={"amount_fen": 300_000})
        assert r.status_code == 200 and r.json()["status"] == "fulfilled", r.text
        r = sim.post(f"/v1/needs/{need_id}/fulfil", json={"amount_fen": 300_000})  # again: no change
        assert r.status_code == 200, r.text
    wait_for(lambda: {f"{need_id}/accepted", f"{need_id}/fulfilled"} <= set(received_ids(lifeline)),
             what="acceptance and fulfilment on the webhook")

    def on_the_topic() -> list:
        return [e for e in map(registry.decode, lifeline.published())
                if e.name in ("NeedAccepted", "NeedFulfilled") and e.data["need_id"] == need_id]

    events = wait_for(lambda: len(found := on_the_topic()) == 2 and found, what="NeedAccepted, NeedFulfilled")
    accepted, fulfilled = sorted(events, key=lambda e: e.name)
    assert accepted.data["organisation"] == ORGANISATION and accepted.data["case_id"] == case_id
    assert (fulfilled.data["by"], fulfilled.data["amount_fen"], fulfilled.data["organisation"]) == (
        "federation", 300_000, ORGANISATION)

    def answered() -> dict:
        with lifeline.client("intake", role="clerk", region=TOWNSHIP) as c:
            refs = c.get(f"/v1/cases/{case_id}").json()["referrals"]
        return refs[0] if refs and refs[0]["status"] == "answered" else {}

    ref = wait_for(answered, what="the referral answered in intake")
    assert ref["outcome"] == "accepted" and ref["answered_by"] == "department"
    with lifeline.client("charity", role="caseworker", region=TOWNSHIP) as c:
        (need,) = c.get("/v1/needs", params={"case_id": case_id}).json()["items"]
    assert (need["status"], need["accepted_by"], need["fulfilled_by"]) == ("fulfilled", ORGANISATION, "federation")
    # An unpublished need: 409 naming the rule, passed on by the simulator.
    unpublished_case, unpublished, _ = referral(lifeline, consent=False)
    with lifeline.client("charity", role="caseworker", region=TOWNSHIP) as c:
        wait_for(lambda: c.get("/v1/needs", params={"case_id": unpublished_case}).json()["items"],
                 what="the need without consent opened")
    with lifeline.client("federation") as sim:
        r = sim.post(f"/v1/needs/{unpublished}/accept", json={})
    assert r.status_code == 409 and r.json()["rule"] == "not_published"
    assert_masked(received(lifeline)["items"], [case_id], people)
    # The feed is a read model like any other: rebuilt from the log, it is the same.
    replay = lifeline.cli("replay", "charity")
    assert replay.returncode == 0, replay.stdout + replay.stderr
