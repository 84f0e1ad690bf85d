"""Notices delivered across processes (issue 13): a case accepted at intake gets its 受理通知书
from notify by SMS (through the SMS gateway simulator, exactly one message), into its inbox
(in-app) and into the print queue until a clerk marks it printed; `GET /v1/notices?case_id=`
shows each channel's status. An SMS gateway outage delays the SMS — retried with backoff — and
every notice still goes exactly once when the gateway is back, also when notify is killed -9
while the gateway holds an SMS it already sent (the resend carries the same Idempotency-Key).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from lifeline.contracts import registry
from services.notify.delivery import sms_text_problems
from tests.e2e.conftest import new_people, running_lifeline
from tests.e2e.test_flows import REGION, submit, submit_accepted
from tests.harness import Lifeline, household, wait_for

pytestmark = pytest.mark.e2e

TOWNSHIP = REGION[:9]
OTHER_TOWNSHIP = "370502102"
PHONE = "13812345678"
# Quick retries (at most 1 s apart, never given up on during the test's outage); notify waits 2 s
# for the gateway, which holds an answer 7 s in timeout mode.
ENV = {"LIFELINE_NOTICE_RETRY_MAX_SECONDS": "1", "LIFELINE_NOTICE_SCAN_SECONDS": "0.3",
       "LIFELINE_NOTICE_MAX_ATTEMPTS": "1000", "LIFELINE_SMS_TIMEOUT_SECONDS": "2"}


@pytest.fixture(scope="module")
def lifeline(infra) -> Iterator[Lifeline]:
    with running_lifeline(infra, extra_env=ENV) as system:
        yield system


def gateway(lifeline: Lifeline) -> httpx.Client:
    return httpx.Client(base_url=lifeline.url("sms"), timeout=30)


def behave(lifeline: Lifeline, mode: str) -> None:
    with gateway(lifeline) as sms:
        assert sms.put("/v1/behaviour", json={"mode": mode}).status_code == 200


def sent(lifeline: Lifeline, notice_id: str) -> list[dict]:
    with gateway(lifeline) as sms:
        return sms.get("/v1/messages", params={"key": f"{notice_id}:sms"}).json()["items"]


def notices(lifeline: Lifeline, case_id: str) -> list[dict]:
    with lifeline.client("notify", "caseworker", TOWNSHIP) as c:
        r = c.get("/v1/notices", params={"case_id": case_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def acceptance(lifeline: Lifeline, case_id: str) -> dict:
    """The case's 受理通知书 (AssertionError until notify issued it, which wait_for retries)."""
    found = [n for n in notices(lifeline, case_id) if n["kind"] == "acceptance"]
    assert len(found) == 1, found
    return found[0]


def channel(lifeline: Lifeline, case_id: str, name: str, state: str) -> dict:
    notice = acceptance(lifeline, case_id)
    assert notice["deliveries"][name]["state"] == state, notice["deliveries"]
    return notice


def published(lifeline: Lifeline, name: str) -> list[dict]:
    """Each event of that name on the topics once (a relay may publish one twice after a crash)."""
    events = {}
    for raw in lifeline.published():
        event = registry.decode(raw)
        if event.name == name:
            events[event.id] = event.data
    return list(events.values())


def test_an_accepted_case_gets_its_notice_by_sms_once_in_its_inbox_and_in_the_print_queue_until_printed(lifeline):
    case_id = submit_accepted(lifeline, new_people(2), contact_phone=PHONE)
    notice = wait_for(lambda: channel(lifeline, case_id, "sms", "delivered"), what="the SMS")
    notice_id = notice["notice_id"]
    (message,) = sent(lifeline, notice_id)
    assert (message["to"], message["requests"]) == (PHONE, 1)
    assert notice["deliveries"]["sms"]["reference"] == message["message_id"]
    assert notice["deliveries"]["sms"]["to_masked"] == "138****5678"
    # Whose notice, which case, where to read it: never an ID number, never an amount.
    assert "受理通知书" in message["text"] and case_id in message["text"]
    assert sms_text_problems(message["text"], case_id) == []
    notice = wait_for(lambda: channel(lifeline, case_id, "in_app", "delivered"), what="the inbox")
    assert notice["deliveries"]["letter"]["state"] == "pending" and notice["delivery"] == "pending"

    with lifeline.client("notify", "caseworker", TOWNSHIP) as c:
        (item,) = c.get("/v1/inbox", params={"case_id": case_id}).json()["items"]
    assert (item["notice_id"], item["legal_name"], item["body"]) == (notice_id, "受理通知书", notice["body"])

    with lifeline.client("notify", "clerk", TOWNSHIP) as clerk, \
            lifeline.client("notify", "clerk", OTHER_TOWNSHIP) as stranger:
        queue = clerk.get("/v1/print-queue").json()["items"]
        assert [q["pdf"] for q in queue if q["notice_id"] == notice_id] == [f"/v1/notices/{notice_id}.pdf"]
        assert notice_id not in {q["notice_id"] for q in stranger.get("/v1/print-queue").json()["items"]}
        assert stranger.post(f"/v1/print-queue/{notice_id}/printed", json={}).status_code == 403
        r = clerk.post(f"/v1/print-queue/{notice_id}/printed", json={"batch": "PB-E2E-1"})
        assert r.status_code == 200, r.text
        assert (r.json()["reference"], r.json()["attempt"]) == ("PB-E2E-1", 1)
        again = clerk.post(f"/v1/print-queue/{notice_id}/printed", json={})
        assert again.status_code == 409 and again.json()["rule"] == "already_delivered"
        assert notice_id not in {q["notice_id"] for q in clerk.get("/v1/print-queue").json()["items"]}
    notice = acceptance(lifeline, case_id)
    assert notice["delivery"] == "delivered"
    assert {k: v["reference"] for k, v in notice["deliveries"].items()} == {
        "sms": message["message_id"], "letter": "PB-E2E-1", "in_app": f"IN-{notice_id}"}

    delivered = wait_for(lambda: (d := [e for e in published(lifeline, "NoticeDelivered")
                                        if e["notice_id"] == notice_id]) and len(d) == 3 and d,
                         what="NoticeDelivered on the topic")
    assert sorted(d["channel"] for d in delivered) == ["in_app", "letter", "sms"]
    assert PHONE not in json.dumps(delivered)


def test_without_a_mobile_number_the_notice_goes_by_letter_and_in_app_only(lifeline):
    case_id = submit_accepted(lifeline, new_people(1))
    notice = wait_for(lambda: channel(lifeline, case_id, "in_app", "delivered"), what="the inbox")
    assert set(notice["deliveries"]) == {"letter", "in_app"}
    assert sent(lifeline, notice["notice_id"]) == []


def test_a_number_that_is_not_a_mainland_mobile_is_refused_at_intake_naming_the_field(lifeline):
    with lifeline.client("intake", role="clerk", region=TOWNSHIP) as c:
        r = c.post("/v1/applications", json=household(new_people(1), REGION, contact_phone="0546-8888888"))
    assert r.status_code == 422
    assert [e["pointer"] for e in r.json()["errors"]] == ["#/contact_phone"] and "0546-8888888" not in r.text
    case_id = submit(lifeline, new_people(1), contact_phone="13912345678")  # a good one is taken
    assert case_id


def test_an_sms_outage_delays_delivery_and_every_notice_goes_once_after_it_recovers_also_across_a_kill_9_of_notify(
        lifeline):
    behave(lifeline, "fail")
    try:
        cases = [submit_accepted(lifeline, new_people(1), contact_phone=f"1391234567{n}") for n in range(3)]
        # The outage: each SMS tried and failed (with its retry time), nothing sent; the inbox
        # has the notices all the same.
        for case_id in cases:
            notice = wait_for(lambda c=case_id: (n := channel(lifeline, c, "sms", "pending"))
                              and n["deliveries"]["sms"]["attempts"] >= 1 and n, what="a failed attempt")
            sms = notice["deliveries"]["sms"]
            assert sms["last_reason"] == "gateway_unavailable: HTTP 503" and sms["retry_at"] is not None
            assert notice["deliveries"]["in_app"]["state"] == "delivered"
            assert sent(lifeline, notice["notice_id"]) == []
        ids = [acceptance(lifeline, c)["notice_id"] for c in cases]
        failed = wait_for(lambda: (f := [e for e in published(lifeline, "NoticeFailed") if e["notice_id"] in ids])
                          and {e["notice_id"] for e in f} == set(ids) and f, what="NoticeFailed on the topic")
        assert all(e["channel"] == "sms" and e["retry_at"] for e in failed)

        # The gateway takes the next SMS but holds its answer; notify is killed -9 before it
        # could record anything.
        behave(lifeline, "timeout")
        with gateway(lifeline) as sms:
            wait_for(lambda: sms.get("/v1/messages").json()["held"] >= 1, interval=0.05, what="an SMS held")
        lifeline.kill("notify")
        (in_flight,) = [n for n in ids if sent(lifeline, n)]  # sent, its answer never reached notify
    finally:
        behave(lifeline, "ok")
    lifeline.start("notify")

    for case_id in cases:
        wait_for(lambda c=case_id: channel(lifeline, c, "sms", "delivered"), timeout=90, what="the SMS after recovery")
    requests = {}
    for case_id, notice_id in zip(cases, ids):
        notice = acceptance(lifeline, case_id)
        (message,) = sent(lifeline, notice_id)  # exactly one SMS per notice
        assert notice["deliveries"]["sms"]["reference"] == message["message_id"]
        assert notice["deliveries"]["sms"]["attempts"] >= 2
        requests[notice_id] = message["requests"]
    assert requests[in_flight] >= 2  # sent before the kill, asked again after it: one SMS
    delivered = wait_for(lambda: (d := [e for e in published(lifeline, "NoticeDelivered")
                                        if e["notice_id"] in ids and e["channel"] == "sms"])
                         and len(d) >= 3 and d, what="NoticeDelivered on the topic")
    assert Counter(d["notice_id"] for d in delivered) == Counter(ids)  # once each
