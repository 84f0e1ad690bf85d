"""One person, one file per benefit, and the emergency green channel, across processes (issue 11):
two applications naming one person at the same moment on two intake replicas give exactly one
hold, naming the other; a hold is released (proceed) or ends the case (withdraw), and acceptance
waits for it; emergency relief within and above the caps, four eyes on its post-approval, and a
post-approval nobody decides is breached and escalated by notify's deadline watch.

Clock moments: Monday 2026-11-02; 5 working days after it end on Monday 11-09.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import new_people
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e

VILLAGE = "370502101001"
TOWNSHIP = VILLAGE[:9]


def at(day: str, time: str = "10:00") -> str:
    return f"{day}T{time}:00+08:00"


def case(lifeline, case_id: str) -> dict:
    with lifeline.client("intake", "reviewer", "370502") as c:
        r = c.get(f"/v1/cases/{case_id}")
    assert r.status_code == 200, r.text
    return r.json()


def submit(lifeline, people: list[str], **overrides) -> dict:
    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        r = c.post("/v1/applications", json=household(people, VILLAGE, **overrides))
    assert r.status_code == 201, r.text
    return r.json()


def problem(r: httpx.Response, status: int, rule: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if rule is not None:
        assert r.json()["rule"] == rule, r.json()
    return r.json()


def published(lifeline, name: str, case_id: str) -> list[dict]:
    """The data of each `name` event about the case on the topics, once per CloudEvent id."""
    found = {e["id"]: e["data"] for e in map(json.loads, lifeline.published())
             if e["type"] == f"cn.gov.mca.lifeline.{name}.v1" and e["subject"] == case_id}
    return list(found.values())


def test_two_applications_naming_one_person_on_two_replicas_hold_exactly_one(clocked_lifeline):
    from lifeline.dev.embedded import free_port

    lifeline = clocked_lifeline
    lifeline.start_replica("intake", "intake2", free_port())
    try:
        urls = [lifeline.url("intake"), lifeline.url("intake2")]
        token = lifeline.token("clerk", TOWNSHIP, user="clerk-dup")
        rounds = []
        for _ in range(3):
            shared, one, two = new_people(3)
            bodies = [household([one, shared], VILLAGE), household([two, shared], VILLAGE)]
            start = threading.Barrier(2)

            def post(url_body, start=start):
                url, body = url_body
                start.wait()  # both requests leave together, one to each replica
                return httpx.post(url + "/v1/applications", json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"})

            with ThreadPoolExecutor(2) as pool:
                responses = list(pool.map(post, zip(urls, bodies)))
            assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
            answers = {r.json()["case_id"]: r.json()["status"] for r in responses}
            held = [c for c, status in answers.items() if status == "suspected_duplicate"]
            assert len(held) == 1, answers
            (other,) = set(answers) - set(held)
            assert answers[other] == "submitted"
            view = case(lifeline, held[0])
            assert (view["status"], view["duplicate_of"]) == ("suspected_duplicate", [other])
            assert case(lifeline, other)["status"] == "submitted"
            rounds.append((held[0], other, shared))
    finally:
        lifeline.stop("intake2")

    (held, other, shared), (released, _, _), _ = rounds
    suspected = wait_for(lambda: published(lifeline, "DuplicateSuspected", held), what="DuplicateSuspected")
    assert suspected == [{"case_id": held, "region_code": VILLAGE, "assistance_type": "dibao",
                          "other_case_ids": [other], "reasons": ["open_application"],
                          "suspected_at": suspected[0]["suspected_at"]}]
    assert shared not in json.dumps(suspected)

    # Acceptance waits for the hold; only the county decides it.
    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        problem(c.post(f"/v1/cases/{held}/acceptance", json={"decision": "accept", "reason": "齐全"}), 409,
                "suspected_duplicate")
    with lifeline.client("intake", "caseworker", TOWNSHIP) as c:
        problem(c.post(f"/v1/cases/{held}/duplicate-decision", json={"decision": "withdraw", "reason": "x"}), 403,
                "county_decides")
    with lifeline.client("intake", "caseworker", "370502", user="caseworker-dup") as c:
        r = c.post(f"/v1/cases/{held}/duplicate-decision",
                   json={"decision": "withdraw", "reason": "同一人已有在办申请，申请人同意撤回"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "withdrawn"
        r = c.post(f"/v1/cases/{released}/duplicate-decision",
                   json={"decision": "proceed", "reason": "核实为同户重新申请，继续办理"})
        assert r.status_code == 200, r.text
    assert case(lifeline, held)["status"] == "withdrawn"
    lifeline.accept(released)
    assert case(lifeline, released)["status"] == "accepted"
    (decided,) = wait_for(lambda: published(lifeline, "DuplicateDecided", held), what="DuplicateDecided")
    assert (decided["decision"], decided["decided_by"], decided["other_case_ids"]) == (
        "withdraw", "caseworker-dup", [other])
    # Withdrawn, the person's entry is released: a new application is held by the open one only.
    again = submit(lifeline, [shared])
    assert again["status"] == "suspected_duplicate"
    assert case(lifeline, again["case_id"])["duplicate_of"] == [other]


def test_emergency_relief_within_and_above_the_caps_with_four_eyes(clocked_lifeline):
    lifeline = clocked_lifeline
    case_id = submit(lifeline, new_people(2), urgency="critical")["case_id"]
    path = f"/v1/cases/{case_id}/emergency-relief"
    with lifeline.client("intake", "reviewer", "370502", user="reviewer-er1") as c:
        body = problem(c.post(path, json={"amount_fen": 300001, "reason": "突发重病住院"}), 422, "emergency_cap")
        assert (body["cap_fen"], body["approval_level"]) == (300000, "township")
        r = c.post(path, json={"amount_fen": 300000, "reason": "突发重病住院，急需医疗费用"},
                   headers={"Idempotency-Key": f"er-{case_id}"})
        assert r.status_code == 201, r.text
        township = r.json()
        again = c.post(path, json={"amount_fen": 300000, "reason": "突发重病住院，急需医疗费用"},
                       headers={"Idempotency-Key": f"er-{case_id}"})
        assert again.status_code == 201 and again.json()["grant_id"] == township["grant_id"]
        problem(c.post(path, json={"amount_fen": 1, "reason": "再次"}), 422, "emergency_cap")  # counted together
    with lifeline.client("intake", "county_officer", "370502", user="county-er1") as c:
        problem(c.post(path, json={"amount_fen": 1200001, "reason": "县级"}), 422, "emergency_cap")
        r = c.post(path, json={"amount_fen": 1200000, "reason": "重大疾病，县民政局审批"})
        assert r.status_code == 201, r.text
        county = r.json()
    assert (township["approval_level"], county["approval_level"]) == ("township", "county")

    granted = wait_for(lambda: len(found := published(lifeline, "EmergencyReliefGranted", case_id)) == 2 and found,
                       what="two EmergencyReliefGranted")
    assert sorted(g["amount_fen"] for g in granted) == [300000, 1200000]  # nothing of the refused requests
    g = next(g for g in granted if g["grant_id"] == township["grant_id"])
    assert set(g) == {"grant_id", "case_id", "region_code", "township_code", "amount_fen", "reason",
                      "approval_level", "granted_by", "bank_account", "post_approval_due_date", "granted_at"}
    assert (g["township_code"], g["granted_by"], g["bank_account"]["number_masked"]) == (
        TOWNSHIP, "reviewer-er1", "6228***********0001")

    decide = f"{path}/{township['grant_id']}/post-approval"
    approve = {"decision": "approve", "reason": "补充审批材料齐全，予以批准"}
    with lifeline.client("intake", "reviewer", "370502", user="reviewer-er1") as c:
        problem(c.post(decide, json=approve), 409, "four_eyes")
        problem(c.post(f"{path}/{county['grant_id']}/post-approval", json=approve), 403, "approval_level")
    with lifeline.client("intake", "reviewer", "370502", user="reviewer-er2") as c:
        r = c.post(decide, json=approve)
        assert r.status_code == 200, r.text
        problem(c.post(decide, json={"decision": "refuse", "reason": "again"}), 409, "decided_once")
    with lifeline.client("intake", "auditor", "370502") as c:
        items = {i["grant_id"]: i for i in c.get(path).json()["items"]}
    assert {k: i["state"] for k, i in items.items()} == {
        township["grant_id"]: "post_approved", county["grant_id"]: "granted"}
    (decided,) = wait_for(lambda: published(lifeline, "EmergencyReliefPostApprovalDecided", case_id),
                          what="EmergencyReliefPostApprovalDecided")
    assert (decided["decision"], decided["decided_by"], decided["amount_fen"]) == ("approved", "reviewer-er2", 300000)
    cleared = wait_for(lambda: [d for d in published(lifeline, "DeadlineCleared", case_id)
                                if d["deadline_id"] == township["deadline_id"]], what="DeadlineCleared")
    assert cleared[0]["outcome"] == "met"

    calm = submit(lifeline, new_people(1))["case_id"]
    with lifeline.client("intake", "reviewer", "370502") as c:
        problem(c.post(f"/v1/cases/{calm}/emergency-relief", json={"amount_fen": 100, "reason": "x"}), 409,
                "not_urgent")


def test_a_post_approval_nobody_decides_is_breached_and_escalated(clocked_lifeline):
    lifeline = clocked_lifeline
    try:
        lifeline.clock_set(at("2026-11-02", "09:00"))  # Monday
        case_id = submit(lifeline, new_people(1), urgency="urgent")["case_id"]
        with lifeline.client("intake", "caseworker", TOWNSHIP, user="caseworker-er") as c:
            r = c.post(f"/v1/cases/{case_id}/emergency-relief", json={"amount_fen": 150000, "reason": "火灾受灾"})
        assert r.status_code == 201, r.text
        grant = r.json()
        assert (grant["post_approval_due_date"], grant["deadline_id"]) == (
            "2026-11-09", f"{case_id}/emergency_post_approval")

        def listed(state: str) -> list[dict]:
            with lifeline.client("notify", "county_officer", "370502") as c:
                r = c.get("/v1/deadlines", params={"region": "370502", "state": state})
            assert r.status_code == 200, r.text
            return [d for d in r.json()["items"] if d["deadline_id"] == grant["deadline_id"]]

        (watched,) = wait_for(lambda: listed("open"), what="the post-approval deadline watched")
        assert (watched["clock"], watched["responsible_office"], watched["due_date"]) == (
            "emergency_post_approval", TOWNSHIP, "2026-11-09")
        lifeline.clock_set(at("2026-11-09", "08:00"))
        wait_for(lambda: listed("warned"), what="the warning")
        lifeline.clock_set(at("2026-11-10", "00:00"))  # past 24:00 of 11-09
        (breached,) = wait_for(lambda: listed("breached"), what="the breach")
        assert breached["escalated_to"] == {"office": "370502", "level": "county"}
        # The county the breach went to decides it, late.
        with lifeline.client("intake", "county_officer", "370502", user="county-er2") as c:
            r = c.post(f"/v1/cases/{case_id}/emergency-relief/{grant['grant_id']}/post-approval",
                       json={"decision": "refuse", "reason": "经核实不符合救助条件，先行救助资金予以追回"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "post_approval_refused"
        (cleared,) = wait_for(lambda: listed("cleared"), what="the deadline cleared")
        assert cleared["outcome"] == "late"
        breaches = [e for e in map(json.loads, lifeline.published())
                    if e["type"] == "cn.gov.mca.lifeline.DeadlineBreached.v1"
                    and e["data"]["deadline_id"] == grant["deadline_id"]]
        assert len({e["id"] for e in breaches}) == 1
    finally:
        lifeline.clock_reset()
