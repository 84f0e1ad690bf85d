"""The SMS gateway simulator (lifeline/simulators/sms.py): a message sent once per
Idempotency-Key (the same key answers the same message id, and another message under it is
refused), numbers that are not mobiles or are marked invalid refused as invalid-number, and the
behaviours notify must survive: fail (503, nothing sent), slow (sent, answered late), timeout
(sent, the answer held past the sender's timeout until the behaviour changes). What it sent is
kept across a restart.

The simulator's real app is served on a free port in a thread and called over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lifeline.dev.embedded import free_port
from lifeline.settings import Settings
from lifeline.simulators.sms import create_app
from tests.unit import served

PHONE = "13812345678"
TEXT = "【社会救助】王*明：您的社会救助申请（案件号 C-1）有一份《受理通知书》。"


def settings(data_dir: Path) -> Settings:
    return Settings.from_env({"LIFELINE_DATA_DIR": str(data_dir), "LIFELINE_SMS_TIMEOUT_SECONDS": "0.2"})


def gateway(data_dir: Path) -> Iterator[httpx.Client]:
    port = free_port()
    app = create_app(settings(data_dir))
    with served(app, port, "the SMS gateway simulator"), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client


@pytest.fixture
def sms(tmp_path) -> Iterator[httpx.Client]:
    yield from gateway(tmp_path)


def send(client: httpx.Client, key: str | None = "N-1:sms", to: str = PHONE, text: str = TEXT) -> httpx.Response:
    return client.post("/v1/messages", json={"to": to, "text": text},
                       headers={"Idempotency-Key": key} if key else {})


def test_a_message_is_sent_once_per_idempotency_key(sms):
    first = send(sms)
    assert first.status_code == 201
    message_id = first.json()["message_id"]
    assert first.json() == {"message_id": message_id, "to_masked": "138****5678", "duplicate": False}
    again = send(sms)
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}
    other = send(sms, key="N-2:sms")
    assert other.status_code == 201 and other.json()["message_id"] != message_id
    listed = sms.get("/v1/messages").json()
    assert [(m["idempotency_key"], m["requests"]) for m in listed["items"]] == [("N-1:sms", 2), ("N-2:sms", 1)]
    assert (listed["count"], listed["requests"], listed["duplicates"]) == (2, 3, 1)
    assert sms.get("/v1/messages", params={"key": "N-1:sms"}).json()["items"][0]["text"] == TEXT


def test_another_message_under_a_used_key_is_refused(sms):
    assert send(sms).status_code == 201
    r = send(sms, text="【社会救助】另一条")
    assert r.status_code == 409 and r.json()["type"].endswith("/key-reused")
    r = send(sms, to="13900000000")
    assert r.status_code == 409
    assert sms.get("/v1/messages").json()["count"] == 1


def test_without_a_key_every_request_is_a_new_message(sms):
    ids = {send(sms, key=None).json()["message_id"] for _ in range(3)}
    assert len(ids) == 3 and sms.get("/v1/messages").json()["count"] == 3


@pytest.mark.parametrize("to", ["12812345678", "1381234567", "138123456789", "+8613812345678", "0546-1234567"])
def test_a_number_that_is_not_a_mainland_mobile_is_refused(sms, to):
    r = send(sms, to=to)
    assert r.status_code == 422 and r.json()["type"].endswith("/invalid-number")
    assert to not in r.text  # a problem never echoes the number
    assert sms.get("/v1/messages").json()["count"] == 0


def test_a_number_marked_invalid_is_refused_until_marked_working(sms):
    assert sms.put(f"/v1/numbers/{PHONE}", json={"status": "invalid"}).status_code == 200
    assert send(sms).status_code == 422
    sms.put(f"/v1/numbers/{PHONE}", json={"status": "ok"})
    assert send(sms).status_code == 201


def test_told_to_fail_it_answers_503_and_sends_nothing(sms):
    sms.put("/v1/behaviour", json={"mode": "fail"})
    r = send(sms)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    listed = sms.get("/v1/messages").json()
    assert (listed["count"], listed["failures_answered"]) == (0, 1)
    sms.put("/v1/behaviour", json={"mode": "ok"})
    assert send(sms).status_code == 201


def test_slow_it_sends_and_answers_late(sms):
    sms.put("/v1/behaviour", json={"mode": "slow", "slow_seconds": 0.3})
    started = time.monotonic()
    assert send(sms).status_code == 201
    assert time.monotonic() - started >= 0.3


def test_timing_out_it_sends_but_holds_the_answer_until_told_otherwise(sms):
    sms.put("/v1/behaviour", json={"mode": "timeout"})
    with pytest.raises(httpx.TimeoutException):
        sms.post("/v1/messages", json={"to": PHONE, "text": TEXT}, headers={"Idempotency-Key": "N-1:sms"},
                 timeout=0.2)
    assert sms.get("/v1/messages").json()["count"] == 1  # it went
    answers: list[httpx.Response] = []
    held = threading.Thread(target=lambda: answers.append(send(sms)))
    held.start()
    time.sleep(0.3)
    assert not answers  # still held
    sms.put("/v1/behaviour", json={"mode": "ok"})
    held.join(10)
    assert answers[0].status_code == 200 and answers[0].json()["duplicate"] is True
    listed = sms.get("/v1/messages").json()
    assert (listed["count"], listed["items"][0]["requests"], listed["held"]) == (1, 2, 2)


def test_what_it_sent_is_kept_across_a_restart(tmp_path):
    clients = gateway(tmp_path)
    client = next(clients)
    message_id = send(client).json()["message_id"]
    client.put(f"/v1/numbers/{PHONE[:-1]}9", json={"status": "invalid"})
    clients.close()
    clients = gateway(tmp_path)
    client = next(clients)
    try:
        again = send(client)
        assert again.status_code == 200 and again.json()["message_id"] == message_id
        assert send(client, key="N-2:sms", to=PHONE[:-1] + "9").status_code == 422
        assert client.get("/v1/behaviour").json()["mode"] == "ok"  # a restarted gateway works
    finally:
        clients.close()


def test_bad_bodies_and_behaviours_are_refused(sms):
    assert sms.post("/v1/messages", json={"to": PHONE}).status_code == 422
    assert sms.post("/v1/messages", json={"to": PHONE, "text": "x" * 501}).status_code == 422
    assert sms.put("/v1/behaviour", json={"mode": "down"}).status_code == 422
    assert sms.get("/healthz").json() == {"status": "ok", "service": "sms"}
    assert sms.delete("/v1/messages").status_code == 204
