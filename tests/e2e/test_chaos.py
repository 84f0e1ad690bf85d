"""Kill -9 at random moments while households flow through: nothing lost, nothing doubled.

The targeted tests (test_delivery, test_flows) kill at chosen points; this one kills whichever
service the seeded dice pick, whenever they pick it, while applications, acceptances, checks,
the procedure's steps, decisions, entitlements and notices are in flight. Callers behave like
real clients: on a refused connection or a 5xx they retry the same request with the same
Idempotency-Key. A step whose first attempt was taken by a process that died before answering
(its idempotency claim lapsed with it) is refused when retried as already done (409 naming that
step): the caller takes it as done.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import SETTINGS
from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_flows import REGION, completed, items, verification
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e

SEED = SETTINGS.chaos_seed
HOUSEHOLDS = 8
MIN_KILLS = 6
VICTIMS = ("intake", "verification", "payment", "notify")


def post_until_answered(lifeline, service: str, path: str, body: dict, key: str, role: str, region: str) -> httpx.Response:
    """A client that retries through outages with the same key, as the API asks clients to."""
    deadline = time.monotonic() + 90
    while True:
        try:
            with lifeline.client(service, role=role, region=region) as c:
                r = c.post(path, json=body, headers={"Idempotency-Key": key}, timeout=10)
            # 409 "still in progress": the first attempt's process died holding the claim.
            if r.status_code < 500 and not (r.status_code == 409 and "in progress" in r.text):
                return r
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service}{path} never answered")
        time.sleep(0.5)


def until_done(r: httpx.Response, done: str, already: Callable[[dict], bool] = lambda _: True) -> bool:
    """True when `r` took the step; also when it is refused as done already (409 naming the
    step, as a retry after a lost answer is) and `already` confirms it."""
    if r.status_code == 200:
        return True
    assert r.status_code == 409 and r.json().get("rule") == done and already(r.json()), r.text
    return True


def view_of(lifeline, case_id: str) -> dict:
    return wait_for(lambda: verification(lifeline, case_id), what=f"procedure of {case_id}")


def take_step(lifeline, case_id: str, path: str, body: dict | None) -> dict:
    """One step by the caseworker, retried through outages; answers the procedure's view."""
    r = post_until_answered(lifeline, "verification", f"/v1/verifications/{case_id}/{path}", body,
                            key=f"chaos-{SEED}-{path}-{case_id}", role="caseworker", region=REGION[:6])
    until_done(r, DONE_RULE[path])
    return r.json() if r.status_code == 200 else view_of(lifeline, case_id)


# The rule a repeated step is refused by (docs/PROCEDURE.md: "409 naming the step already done").
DONE_RULE = {"survey": "household_survey", "initial-review": "initial_review",
             "public-notice": "public_notice", "appraisal": "appraisal_not_needed"}


class Chaos:
    """Kills one service at a time, at seeded random moments, and starts it again."""

    def __init__(self, lifeline, seed: int):
        self.lifeline = lifeline
        self.rng = random.Random(seed)
        self.kills: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        order: list[str] = []
        while not self._stop.wait(self.rng.uniform(0.5, 2.5)):
            if not order:  # every service dies once per round, in a random order
                order = self.rng.sample(VICTIMS, len(VICTIMS))
            name = order.pop()
            self.lifeline.kill(name)
            self.kills.append(name)
            time.sleep(self.rng.uniform(0.0, 1.0))
            self.lifeline.start(name)

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(120)


def test_random_kills_while_households_flow_lose_nothing_and_double_nothing(lifeline):
    cases: list[str] = []
    with Chaos(lifeline, SEED) as chaos:
        # One household after another, each from application to approval, until enough
        # households have gone through *and* every few seconds a service has died.
        while len(cases) < HOUSEHOLDS or len(chaos.kills) < MIN_KILLS:
            assert len(cases) < 60, "the dice never rolled"
            people = new_people(2)
            make_poor(lifeline, people, income_fen=20000)
            r = post_until_answered(lifeline, "intake", "/v1/applications", household(people, REGION),
                                    key=f"chaos-{SEED}-{len(cases)}", role="clerk", region=REGION[:9])
            assert r.status_code == 201, r.text
            case_id = r.json()["case_id"]
            cases.append(case_id)
            r = post_until_answered(lifeline, "intake", f"/v1/cases/{case_id}/acceptance",
                                    {"decision": "accept", "reason": "材料齐全，予以受理"},
                                    key=f"chaos-{SEED}-accept-{case_id}", role="clerk", region=REGION[:9])
            until_done(r, "acceptance_decided_once", lambda p: p.get("case_status") == "accepted")
            v = completed(lifeline, case_id)
            assert v["assessment"]["outcome"] == "eligible", v
            lifeline.pass_notices(lifeline.prepare_decision(
                case_id, post=lambda path, body, case_id=case_id: take_step(lifeline, case_id, path, body)))
            r = post_until_answered(lifeline, "verification", f"/v1/verifications/{case_id}/decision",
                                    {"decision": "approve", "reason": "审核确认小组会议决定"},
                                    key=f"chaos-{SEED}-decide-{case_id}", role="reviewer", region=REGION[:6])
            until_done(r, "decision", lambda _: view_of(lifeline, case_id)["state"] == "approved")

    assert set(chaos.kills) == set(VICTIMS), chaos.kills
    print(f"chaos seed={SEED}: {len(cases)} households, {len(chaos.kills)} kills: {chaos.kills}")

    # Everything settles: every household has exactly one of everything.
    assert len(set(cases)) == len(cases)  # a retried submission made no second case
    for case_id in cases:
        wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), timeout=90,
                 what=f"entitlement of {case_id}")
        wait_for(lambda: len(items(lifeline, "notify", "/v1/notices", case_id)) >= 2, timeout=90,
                 what=f"notices of {case_id}")
        with lifeline.client("intake") as c:
            wait_for(lambda: c.get(f"/v1/cases/{case_id}").json()["status"] == "approved", timeout=90,
                     what=f"case {case_id} approved")
    lifeline.settled_log_sizes(("intake", "verification", "payment", "notify"))
    for case_id in cases:
        assert len(items(lifeline, "payment", "/v1/entitlements", case_id)) == 1, case_id
        notices = items(lifeline, "notify", "/v1/notices", case_id)
        assert sorted(n["kind"] for n in notices) == ["acceptance", "public_notice"], case_id
