"""Charity across processes (issue 12): a referral to charity raised at intake becomes a need,
is matched with its explanation, allocated, disbursed and fulfilled, and intake's referral is
answered; two charity replicas allocating from one fund at the same moment, with donations
arriving and one replica killed with SIGKILL in between, never overdraw it, lose nothing that
was answered, and the restarted replica serves the same figures as the topic."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import new_people
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e

COUNTY = "370502"
TOWNSHIP = "370502101"
VILLAGE = "370502101001"
TYPE = "cn.gov.mca.lifeline.{}.v1"


def ok(r: httpx.Response, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def submit(lifeline) -> str:
    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        return ok(c.post("/v1/applications", json=household(new_people(2), VILLAGE)), 201)["case_id"]


def refer(lifeline, case_id: str, amount: int, **overrides) -> str:
    body = {"target": "charity", "need_category": "medical", "amount_asked_fen": amount, "urgency": "urgent",
            "consent_to_share": True, **overrides}
    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        return ok(c.post(f"/v1/cases/{case_id}/referrals", json=body), 201)["referral_id"]


def register_fund(lifeline, url: str | None = None, **fields) -> str:
    body = {"name": "东营区救急难专项基金", "kind": "special", "need_categories": ["medical"], "region_code": COUNTY,
            "balance_fen": 500_000, **fields}
    with lifeline.client("charity", "county_officer", COUNTY) as c:
        return ok(c.post((url or "") + "/v1/funds", json=body), 201)["fund_id"]


def needs_of(lifeline, case_id: str, count: int) -> list[dict]:
    def found():
        with lifeline.client("charity", "caseworker", TOWNSHIP) as c:
            items = ok(c.get("/v1/needs", params={"case_id": case_id}))["items"]
        return items if len(items) >= count else None

    return wait_for(found, what=f"{count} needs of {case_id}")


def events(lifeline, name: str, subject: str | None = None) -> list[dict]:
    """The data of each `name` event on the topics (about `subject`), once per CloudEvent id,
    in the order of the producer's log."""
    found = {e["id"]: e for e in map(json.loads, lifeline.published())
             if e["type"] == TYPE.format(name) and (subject is None or e["subject"] == subject)}
    return [e["data"] for e in sorted(found.values(), key=lambda e: int(e["sequence"]))]


def test_a_referral_to_charity_is_matched_allocated_disbursed_and_answers_the_referral(lifeline):
    county = register_fund(lifeline, balance_fen=5_000_000, name="区救急难专项基金")
    named = register_fund(lifeline, kind="named", donor="张建华", regions=[TOWNSHIP], balance_fen=100_000,
                          name="胜利街道张氏冠名基金")
    education = register_fund(lifeline, need_categories=["education"], name="助学基金")
    case_id = submit(lifeline)
    referral_id = refer(lifeline, case_id, 300_000)
    [need] = needs_of(lifeline, case_id, 1)
    assert (need["referral_id"], need["status"], need["household_type"], need["still_needed_fen"]) == (
        referral_id, "open", "dibao", 300_000)
    assert need["name_masked"].count("*") >= 1 and need["region_code"] == VILLAGE

    with lifeline.client("charity", "caseworker", TOWNSHIP) as c:
        matches = ok(c.get(f"/v1/needs/{need['need_id']}/matches"))
        # The named fund is narrower (the township): it gives first, the county's fund the rest.
        assert [(p["fund_id"], p["amount_fen"], p["limited_by"]) for p in matches["proposal"]] == [
            (named, 100_000, "no_available_balance"), (county, 200_000, "need")]
        assert {e["fund_id"]: e["criterion"] for e in matches["excluded"]}[education] == "need_category"
        allocations = [ok(c.post(f"/v1/needs/{need['need_id']}/allocations",
                                 json={"fund_id": p["fund_id"], "amount_fen": p["amount_fen"]}), 201)
                       for p in matches["proposal"]]
        assert allocations[0]["available_fen"] == 0
        closed = [ok(c.post(f"/v1/needs/{need['need_id']}/allocations/{a['allocation_id']}/disbursement",
                            json={"reference": f"DYCS-ZF-{n}"})) for n, a in enumerate(allocations)]
        assert [x["need_status"] for x in closed] == ["open", "fulfilled"]
        fund = ok(c.get(f"/v1/funds/{county}"))
        assert (fund["balance_fen"], fund["committed_fen"], fund["available_fen"]) == (4_800_000, 0, 4_800_000)

    def answered():
        with lifeline.client("intake", "clerk", TOWNSHIP) as c:
            [r] = [r for r in ok(c.get(f"/v1/cases/{case_id}"))["referrals"] if r["referral_id"] == referral_id]
        return r if r["status"] == "answered" else None

    referral = wait_for(answered, what="the referral answered by charity")
    assert (referral["outcome"], referral["answered_by"]) == ("resolved", "department")
    [fulfilled] = events(lifeline, "NeedFulfilled", case_id)
    assert (fulfilled["by"], fulfilled["amount_fen"], fulfilled["referral_id"]) == ("funds", 300_000, referral_id)
    assert {a["allocation_id"] for a in allocations} == {
        e["allocation_id"] for e in events(lifeline, "AllocationDisbursed") if e["need_id"] == need["need_id"]}


# --- never overdrawn: two replicas, donations, kill -9 ------------------------------------------------
class Replicas:
    """Posts to one replica or the other; when one is down, to the one that is up, with the
    same Idempotency-Key until a final answer (2xx or a 4xx with its problem)."""

    def __init__(self, urls: list[str], token: str):
        self.urls = urls
        self.token = token
        self.down: set[str] = set()
        self.failovers = 0  # requests that found their replica dead and went to the other

    def post(self, first: int, path: str, body: dict, key: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
        deadline = time.monotonic() + 120
        i = first
        while time.monotonic() < deadline:
            url = self.urls[i % len(self.urls)]
            i += 1
            if url in self.down:
                continue
            try:
                r = httpx.post(url + path, json=body, headers=headers, timeout=30)
            except httpx.HTTPError:
                self.failovers += 1
                time.sleep(0.1)
                continue  # the replica died under the request: the same key on the other one
            in_progress = r.status_code == 409 and r.json().get("type", "").endswith("idempotency-in-progress")
            if r.status_code >= 500 or in_progress:
                time.sleep(0.3)
                continue
            return r
        raise TimeoutError(f"no final answer to {path}")


def ledger(lifeline, fund_id: str) -> tuple[dict[str, int], list[str]]:
    """The fund replayed from its events on the topic (in its log's order), committed checked
    against the balance after each."""
    raw = {e["id"]: e for e in map(json.loads, lifeline.published()) if e["subject"] == fund_id}
    balance = committed = 0
    allocated: dict[str, int] = {}
    for e in sorted(raw.values(), key=lambda e: int(e["sequence"])):
        name, data = e["type"].split(".")[-2], e["data"]
        if name == "FundRegistered":
            balance = data["balance_fen"]
        elif name == "DonationReceived":
            balance += data["amount_fen"]
        elif name == "FundAllocated":
            committed += data["amount_fen"]
            allocated[data["allocation_id"]] = data["amount_fen"]
        elif name == "AllocationReleased":
            committed -= data["amount_fen"]
        elif name == "AllocationDisbursed":
            committed -= data["amount_fen"]
            balance -= data["amount_fen"]
        assert 0 <= committed <= balance, (name, data, committed, balance)
    return {"balance_fen": balance, "committed_fen": committed, "available_fen": balance - committed}, list(allocated)


def test_two_replicas_allocating_concurrently_with_donations_and_a_kill_9_never_overdraw_a_fund(lifeline):
    from lifeline.dev.embedded import free_port

    lifeline.start_replica("charity", "charity2", free_port())
    replicas = Replicas([lifeline.url("charity"), lifeline.url("charity2")],
                        lifeline.token("caseworker", TOWNSHIP, user="caseworker-race"))
    officer = Replicas(replicas.urls, lifeline.token("county_officer", COUNTY, user="officer-race"))
    fund_id = register_fund(lifeline, balance_fen=1_000_000, name="并发测试基金")
    case_id = submit(lifeline)
    for _ in range(8):
        refer(lifeline, case_id, 200_000)
    needs = [n["need_id"] for n in needs_of(lifeline, case_id, 8)]

    answers: list[tuple[str, int, dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(14)
    run = uuid.uuid4().hex[:8]

    def allocate(i: int) -> None:
        rnd = random.Random(i)
        start.wait()
        for k in range(6):
            need_id = needs[rnd.randrange(len(needs))]
            r = replicas.post(i, f"/v1/needs/{need_id}/allocations",
                              {"fund_id": fund_id, "amount_fen": rnd.randrange(20_000, 90_000)}, f"{run}-a-{i}-{k}")
            with lock:
                answers.append(("allocate", r.status_code, r.json()))
            if k == 3 and r.status_code == 201 and i % 3 == 0:  # one given back while the others allocate
                a = r.json()
                r = replicas.post(i + 1, f"/v1/needs/{need_id}/allocations/{a['allocation_id']}/release",
                                  {"reason": "家庭情况变化"}, f"{run}-r-{i}")
                with lock:
                    answers.append(("release", r.status_code, a))

    def donate(i: int) -> None:
        start.wait()
        for k in range(8):
            r = officer.post(i, f"/v1/funds/{fund_id}/donations",
                             {"reference": f"{run}-{i}-{k}", "donor": "某公司", "amount_fen": 10_000}, f"{run}-d-{i}-{k}")
            with lock:
                answers.append(("donate", r.status_code, r.json()))

    with ThreadPoolExecutor(14) as pool:
        futures = [pool.submit(allocate, i) for i in range(12)] + [pool.submit(donate, i) for i in range(2)]
        wait_for(lambda: len(answers) >= 20 or None, what="the first answers")
        lifeline.kill("charity2")  # SIGKILL in the middle of the race
        replicas.down.add(replicas.urls[1])
        officer.down = replicas.down
        for f in futures:
            f.result()

    allocated = [a for kind, status, a in answers if kind == "allocate" and status == 201]
    refused = [a for kind, status, a in answers if kind == "allocate" and status != 201]
    assert len(allocated) + len(refused) == 12 * 6
    for body in refused:
        assert body["status"] == 409 and body["rule"], body
        assert isinstance(body["proposal"], list) and "shortfall_fen" in body, body
    assert refused, "the fund covered every request: no race was run"
    assert [s for kind, s, _ in answers if kind in ("donate", "release") and s not in (200, 201)] == []
    released = [a for kind, _, a in answers if kind == "release"]

    # Nothing lost: every allocation answered 201 is on the topic, and the figures agree.
    expected = sum(a["amount_fen"] for a in allocated) - sum(a["amount_fen"] for a in released)

    def settled():
        figures, on_topic = ledger(lifeline, fund_id)
        done = set(on_topic) >= {a["allocation_id"] for a in allocated} and figures["committed_fen"] == expected \
            and figures["balance_fen"] == 1_000_000 + 2 * 8 * 10_000
        return (figures, on_topic) if done else None

    figures, on_topic = wait_for(settled, timeout=90, what="every allocation and donation on the topic")
    assert sorted(on_topic) == sorted({a["allocation_id"] for a in allocated})

    lifeline.start_replica("charity", "charity2", free_port())
    for name in ("charity", "charity2"):
        with httpx.Client(base_url=lifeline.url(name), timeout=30, headers={
                "Authorization": f"Bearer {lifeline.token('county_officer', COUNTY)}"}) as c:
            fund = ok(c.get(f"/v1/funds/{fund_id}"))
        assert {k: fund[k] for k in figures} == figures, name
    lifeline.stop("charity2")
