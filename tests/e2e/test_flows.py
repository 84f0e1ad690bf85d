"""The whole path across separate processes, and the faults it must survive.

Every case goes the statutory way (docs/PROCEDURE.md): submitted, accepted by a clerk (the
check starts then), surveyed, reviewed and publicly noticed by a caseworker, decided by a
reviewer once the notice is over (the shared test clock is moved past it).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import make_poor, new_people
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e

REGION = "370502101001"  # a village of a township of the example county


def submit(lifeline, people, key=None, **overrides) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    with lifeline.client("intake", role="clerk", region=REGION[:9]) as c:
        r = c.post("/v1/applications", json=household(people, REGION, **overrides), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def submit_accepted(lifeline, people, key=None, **overrides) -> str:
    """Submitted, then accepted by a clerk (受理): the check starts."""
    case_id = submit(lifeline, people, key=key, **overrides)
    lifeline.accept(case_id)
    return case_id


def verification(lifeline, case_id) -> dict:
    with lifeline.client("verification") as c:
        r = c.get(f"/v1/verifications/{case_id}")
    return r.json() if r.status_code == 200 else {}


def completed(lifeline, case_id) -> dict:
    return wait_for(
        lambda: (v := verification(lifeline, case_id)) and v["state"] not in ("awaiting_acceptance", "requested")
        and v,
        what=f"verification of {case_id} completed",
    )


def decide(lifeline, case_id, decision, reason="审核确认小组会议决定"):
    """The review group's decision (a reviewer: not whoever surveyed or proposed)."""
    with lifeline.client("verification", role="reviewer", region=REGION[:6]) as c:
        return c.post(f"/v1/verifications/{case_id}/decision", json={"decision": decision, "reason": reason})


def items(lifeline, service, path, case_id) -> list[dict]:
    with lifeline.client(service) as c:
        r = c.get(path, params={"case_id": case_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def metric(lifeline, service, name, **labels) -> float:
    with lifeline.client(service) as c:
        text = c.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def approved_case(lifeline, key=None) -> str:
    people = new_people(2)
    make_poor(lifeline, people, income_fen=20000)
    case_id = submit_accepted(lifeline, people, key=key)
    v = completed(lifeline, case_id)
    assert v["assessment"]["outcome"] == "eligible", v
    lifeline.through_procedure(case_id)
    r = decide(lifeline, case_id, "approve")
    assert r.status_code == 200, r.text
    return case_id


def test_application_to_entitlement_with_notice(lifeline):
    people = new_people(3)
    make_poor(lifeline, people, income_fen=30000)
    case_id = submit(lifeline, people)
    # Until a clerk accepts it, no department is asked and no notice is issued.
    waiting = wait_for(lambda: verification(lifeline, case_id), what="the procedure opened")
    assert waiting["state"] == "awaiting_acceptance" and waiting["departments_requested"] == []
    assert items(lifeline, "notify", "/v1/notices", case_id) == []
    lifeline.accept(case_id)

    v = completed(lifeline, case_id)
    assert v["assessment"]["outcome"] == "eligible"
    assert v["departments_missing"] == []
    assert v["assessment"]["monthly_amount_fen"] > 0

    lifeline.through_procedure(case_id)
    r = decide(lifeline, case_id, "approve")
    assert r.status_code == 200, r.text
    benefit = r.json()

    entitlements = wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what="entitlement")
    assert len(entitlements) == 1
    assert entitlements[0]["monthly_amount_fen"] == v["assessment"]["monthly_amount_fen"]
    assert entitlements[0]["first_period"] == benefit["first_period"]

    # 受理通知书 on acceptance, 审核确认公示单 with the public notice.
    notices = wait_for(lambda: (found := items(lifeline, "notify", "/v1/notices", case_id))
                       and len(found) >= 2 and found, what="notices")
    assert sorted(n["legal_name"] for n in notices) == sorted(["受理通知书", "审核确认公示单"])
    assert all("王*" in n["recipient_masked"] for n in notices) and "王小明" not in json.dumps(notices)

    with lifeline.client("intake") as c:
        wait_for(lambda: c.get(f"/v1/cases/{case_id}").json()["status"] == "approved", what="case approved")


def test_refusal_path_issues_decision_notice_and_no_entitlement(lifeline):
    people = new_people(1)
    make_poor(lifeline, people)
    case_id = submit_accepted(lifeline, people)
    completed(lifeline, case_id)
    lifeline.through_procedure(case_id, "refuse")  # a proposal to refuse is not publicly noticed
    r = decide(lifeline, case_id, "refuse", reason="家庭人均收入高于当地低保标准")
    assert r.status_code == 200, r.text

    notices = wait_for(
        lambda: [n for n in items(lifeline, "notify", "/v1/notices", case_id) if n["kind"] == "refusal"],
        what="refusal notice",
    )
    assert notices[0]["legal_name"] == "不予批准决定书"
    assert "家庭人均收入高于当地低保标准" in notices[0]["body"]
    with lifeline.client("intake") as c:
        wait_for(lambda: c.get(f"/v1/cases/{case_id}").json()["status"] == "refused", what="case refused")
    time.sleep(1.0)
    assert items(lifeline, "payment", "/v1/entitlements", case_id) == []
    # A second decision on the same case is refused and changes nothing.
    assert decide(lifeline, case_id, "approve").status_code == 409


def test_missing_department_is_reported_missing_not_zero(lifeline):
    people = new_people(1)
    make_poor(lifeline, people)
    with lifeline.client("simulator") as sim:
        sim.put("/v1/behaviour", json={"silent": ["tax"]})
    try:
        case_id = submit_accepted(lifeline, people)
        # Every department but the silent one has answered.
        wait_for(lambda: verification(lifeline, case_id).get("departments_missing") == ["tax"], what="answers")
        with lifeline.client("verification", role="reviewer", region=REGION[:6]) as c:
            r = c.post(f"/v1/verifications/{case_id}/complete")
        assert r.status_code == 200, r.text
        a = r.json()["assessment"]
        assert a["outcome"] == "needs_appraisal"
        assert "tax" in a["departments_missing"]
    finally:
        with lifeline.client("simulator") as sim:
            sim.put("/v1/behaviour", json={})


def test_a_late_department_holds_the_check_until_it_answers(lifeline):
    people = new_people(1)
    make_poor(lifeline, people)
    with lifeline.client("simulator") as sim:
        sim.put("/v1/behaviour", json={"delay_seconds": {"bank": 4.0}})
    try:
        case_id = submit_accepted(lifeline, people)
        waiting = wait_for(lambda: (v := verification(lifeline, case_id))
                           and v["departments_missing"] == ["bank"] and v, what="all but the bank")
        assert waiting["state"] == "requested"
        done = completed(lifeline, case_id)
        assert done["departments_missing"] == [] and done["assessment"]["outcome"] == "eligible"
    finally:
        with lifeline.client("simulator") as sim:
            sim.put("/v1/behaviour", json={})


def test_referral_to_charity_opens_a_need(lifeline):
    people = new_people(1)
    case_id = submit(lifeline, people)
    with lifeline.client("intake", role="clerk", region=REGION[:9]) as c:
        r = c.post(f"/v1/cases/{case_id}/referrals", json={
            "target": "charity", "need_category": "medical", "amount_asked_fen": 500000,
            "urgency": "urgent", "due_date": "2026-12-31", "consent_to_share": True,
        })
    assert r.status_code == 201, r.text
    needs = wait_for(lambda: items(lifeline, "charity", "/v1/needs", case_id), what="need")
    assert len(needs) == 1 and needs[0]["amount_asked_fen"] == 500000
    assert needs[0]["referral_id"] == r.json()["referral_id"]


def test_kill_9_after_effects_saved_before_offset_commit_gives_one_entitlement(lifeline):
    lifeline.stop("payment")
    lifeline.start("payment", extra_env={"LIFELINE_FAULTS": "consumer_after_save:BenefitApproved"})
    case_id = approved_case(lifeline)
    # The fault kills payment with SIGKILL right after saving the entitlement.
    assert lifeline.wait_exit("payment", timeout=60) == -9
    lifeline.start("payment")
    entitlements = wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what="entitlement")
    wait_for(lambda: metric(lifeline, "payment", "lifeline_events_consumed_total",
                            event="BenefitApproved", outcome="duplicate") >= 1, what="redelivery seen")
    assert len(items(lifeline, "payment", "/v1/entitlements", case_id)) == 1 == len(entitlements)


def test_kill_9_relay_mid_publish_loses_nothing_and_doubles_nothing(lifeline):
    lifeline.stop("intake")
    lifeline.start("intake", extra_env={"LIFELINE_FAULTS": "relay_before_save:*"})
    people = new_people(1)
    make_poor(lifeline, people)
    case_id = submit(lifeline, people)
    # The relay sent the event and the broker acknowledged it, then SIGKILL
    # before the position was saved: the restarted relay sends it again.
    assert lifeline.wait_exit("intake", timeout=60) == -9
    lifeline.start("intake")
    wait_for(lambda: metric(lifeline, "verification", "lifeline_events_consumed_total",
                            event="ApplicationSubmitted", outcome="duplicate") >= 1, what="duplicate seen")
    # The acceptance, which starts the check and the 受理通知书: SIGKILL right after its event
    # was handed to the producer (sent or not); the restarted relay sends it (again).
    lifeline.stop("intake")
    lifeline.start("intake", extra_env={"LIFELINE_FAULTS": "relay_after_send:ApplicationAccepted"})
    with lifeline.client("intake", role="clerk", region=REGION[:9]) as c:
        try:
            c.post(f"/v1/cases/{case_id}/acceptance", json={"decision": "accept", "reason": "材料齐全，予以受理"})
        except httpx.HTTPError:
            pass  # the SIGKILL may beat the answer: the case says whether it was accepted
    assert lifeline.wait_exit("intake", timeout=60) == -9
    lifeline.start("intake")
    with lifeline.client("intake") as c:
        assert c.get(f"/v1/cases/{case_id}").json()["status"] in ("accepted", "verified")
    v = completed(lifeline, case_id)
    assert len(v["departments_requested"]) == len(set(v["departments_requested"]))
    notices = wait_for(lambda: items(lifeline, "notify", "/v1/notices", case_id), what="acceptance notice")
    assert [n["kind"] for n in notices] == ["acceptance"]


def test_kill_9_relay_in_the_middle_of_a_batch_loses_nothing(lifeline):
    from lifeline.domain.aggregate import Meta
    from lifeline.settings import Settings
    from services.intake.api import ApplicationIn
    from services.intake.bootstrap import SPEC

    # Three applications stored while intake is down: its relay will find one batch of three.
    lifeline.stop("intake")
    store = SPEC.application(Settings.from_env(lifeline.env))
    try:
        forms = [ApplicationIn(**household(new_people(1), REGION)).model_dump() for _ in range(3)]
        cases = [store.submit_application(form, Meta("clerk-9", "clerk")) for form in forms]
    finally:
        store.close()
    # SIGKILL right after handing the second event to the producer: the first may
    # or may not have reached the broker, the third certainly has not.
    lifeline.start("intake", extra_env={"LIFELINE_FAULTS": "relay_after_send:ApplicationSubmitted:2"},
                   wait=False)
    assert lifeline.wait_exit("intake", timeout=60) == -9
    lifeline.start("intake")
    for case_id in cases:
        # Every application of the batch reached verification, which waits for the acceptance.
        wait_for(lambda: verification(lifeline, case_id).get("case_id") == case_id, what=f"check of {case_id}")
        lifeline.accept(case_id)
        notices = wait_for(lambda: items(lifeline, "notify", "/v1/notices", case_id), what=f"notice {case_id}")
        assert [n["kind"] for n in notices] == ["acceptance"]
        assert completed(lifeline, case_id)["departments_requested"]
    time.sleep(1.0)
    assert all(len(items(lifeline, "notify", "/v1/notices", c)) == 1 for c in cases)


def test_whole_log_republished_from_zero_has_no_second_effect(lifeline):
    case_id = approved_case(lifeline)
    wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what="entitlement")
    # 受理通知书 and 审核确认公示单
    wait_for(lambda: len(items(lifeline, "notify", "/v1/notices", case_id)) == 2, what="notices")
    with lifeline.client("intake") as c:  # intake has recorded the decision too: all settled
        wait_for(lambda: c.get(f"/v1/cases/{case_id}").json()["status"] == "approved", what="case approved")
    services = ("intake", "verification", "payment", "charity", "notify")
    before = lifeline.settled_log_sizes(services)
    for service in ("intake", "verification", "payment", "charity"):
        r = lifeline.cli("republish", service, "--from", "1")
        assert r.returncode == 0, r.stderr
    wait_for(lambda: metric(lifeline, "payment", "lifeline_events_consumed_total",
                            event="BenefitApproved", outcome="duplicate") >= 1, what="republished approvals")
    wait_for(lambda: metric(lifeline, "notify", "lifeline_events_consumed_total",
                            event="ApplicationAccepted", outcome="duplicate") >= 1, what="republished acceptances")
    wait_for(lambda: metric(lifeline, "notify", "lifeline_events_consumed_total",
                            event="PublicNoticePosted", outcome="duplicate") >= 1, what="republished notices")
    wait_for(lambda: metric(lifeline, "intake", "lifeline_events_consumed_total",
                            event="BenefitApproved", outcome="duplicate") >= 1, what="republished decisions")
    time.sleep(2.0)
    # Every store holds exactly what it held: no second effect anywhere.
    assert {s: lifeline.log_size(s) for s in services} == before
    assert len(items(lifeline, "payment", "/v1/entitlements", case_id)) == 1
    assert len(items(lifeline, "notify", "/v1/notices", case_id)) == 2


def test_idempotency_key_two_concurrent_requests_to_two_replicas_make_one_case(lifeline):
    from lifeline.dev.embedded import free_port

    lifeline.start_replica("intake", "intake2", free_port())
    try:
        people = new_people(2)
        key = f"idem-{uuid.uuid4()}"
        body = household(people, REGION)
        token = lifeline.token("clerk", REGION[:9], user="clerk-7")
        import httpx

        def post(url):
            return httpx.post(url + "/v1/applications", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})

        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(post, [lifeline.url("intake"), lifeline.url("intake2")] * 2))
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        case_ids = {r.json()["case_id"] for r in responses}
        assert len(case_ids) == 1
        case_id = case_ids.pop()
        lifeline.accept(case_id)
        completed(lifeline, case_id)
        wait_for(lambda: items(lifeline, "notify", "/v1/notices", case_id), what="notice")
        time.sleep(1.0)
        assert len(items(lifeline, "notify", "/v1/notices", case_id)) == 1
        # Same key, different body: refused, nothing stored.
        other = httpx.post(lifeline.url("intake") + "/v1/applications",
                           json=household(new_people(1), REGION), timeout=30,
                           headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})
        assert other.status_code == 422
        assert other.headers["content-type"].startswith("application/problem+json")
        # The second replica stood by as relay: the first holds the lease and published it.
        assert metric(lifeline, "intake2", "lifeline_events_published_total") == 0
        assert metric(lifeline, "intake", "lifeline_events_published_total") > 0
    finally:
        lifeline.stop("intake2")


def test_two_payment_replicas_with_a_rebalance_pay_each_approval_once(lifeline):
    from lifeline.dev.embedded import free_port

    cases = [approved_case(lifeline)]
    lifeline.start_replica("payment", "payment2", free_port())  # joins the group: rebalance
    cases += [approved_case(lifeline) for _ in range(2)]
    lifeline.kill("payment2")  # leaves abruptly: another rebalance after the session times out
    cases += [approved_case(lifeline) for _ in range(2)]
    for case_id in cases:
        found = wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id),
                         timeout=90, what=f"entitlement of {case_id}")
        assert len(found) == 1, found
    time.sleep(1.0)
    assert all(len(items(lifeline, "payment", "/v1/entitlements", c)) == 1 for c in cases)


@pytest.mark.real_only
def test_broker_restart_while_events_flow_loses_nothing(lifeline):
    cases = []
    for i in range(6):
        people = new_people(1)
        make_poor(lifeline, people)
        cases.append(submit_accepted(lifeline, people))
        if i == 2:
            lifeline.infra.restart_broker()
    for case_id in cases:
        completed(lifeline, case_id)
        wait_for(lambda: items(lifeline, "notify", "/v1/notices", case_id), timeout=90, what="notice")
        assert len(items(lifeline, "notify", "/v1/notices", case_id)) == 1
