"""Notify delivers every notice exactly once per channel (services/notify/delivery.py): letter
(the print queue, marked printed) and in-app (the case's inbox) always, SMS when the household
gave a mobile number; a failed SMS is retried with backoff and fails for good after its last
attempt or when the number is refused; a resend after a crash between the gateway's answer and
the record is the same message to the gateway (its Idempotency-Key), never a second SMS. An SMS
never carries an ID number or an amount.

The gateway is the SMS gateway simulator's real app (lifeline/simulators/sms.py), served on a
free port in a thread and reached over HTTP by notify's `HttpSmsGateway`; notify runs on an
in-memory store fed CloudEvents, its read models projected into an in-memory side store.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import httpx
import pytest

from lifeline.contracts import registry
from lifeline.dev.embedded import free_port
from lifeline.domain.clock import FixedClock
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import Settings
from lifeline.simulators.sms import create_app as sms_app
from lifeline.stores.sealing import Sealer
from lifeline.stores.projection import Projection
from lifeline.stores.sidestore import SideStore
from services.notify.application import NotifyApplication, project
from services.notify.delivery import (
    Contact,
    Deliverer,
    Delivery,
    DeliveryNotAllowed,
    GatewayError,
    HttpSmsGateway,
    print_queue,
    sms_text_problems,
)
from services.notify.domain import Notice
from services.notify.outbound import OUTBOUND
from tests.unit import served

from . import CLERK, MEMORY_ENV, SEALER, accepted_data, cloud, new_case_id, pid, stored, submitted_data

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
PHONE = "13812345678"


# --- notify, end to end in process ------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    port = free_port()
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path_factory.mktemp("sms")),
                                  "LIFELINE_SMS_TIMEOUT_SECONDS": "0.5"})
    app = sms_app(settings)
    with served(app, port, "the SMS gateway simulator"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def gateway(gateway_url):
    client = httpx.Client(base_url=gateway_url, timeout=10)
    client.put("/v1/behaviour", json={"mode": "ok"})
    client.delete("/v1/messages")
    yield client
    client.put("/v1/behaviour", json={"mode": "ok"})
    client.close()


class Notify:
    """Notify on an in-memory store, its read models projected, its deliverer on a wall clock
    the test moves."""

    def __init__(self, gateway_url: str, timeout: float = 0.5, max_attempts: int = 3):
        self.app = NotifyApplication(dict(MEMORY_ENV), clock=FixedClock(NOW))
        self.side = SideStore.in_memory()
        self.projection = Projection(self.app, self.side, project)
        self.wall = 1_000.0
        self.gateway = HttpSmsGateway(gateway_url, timeout)
        self.deliverer = Deliverer(self.app, self.side, SEALER, self.gateway, retry_max=4, max_attempts=max_attempts,
                                   catch_up=self.projection.catch_up, wall=lambda: self.wall)

    def close(self) -> None:
        self.gateway.close()
        self.side.close()
        self.app.close()

    def apply_for(self, phone: str | None = PHONE) -> str:
        case_id = new_case_id()
        data = submitted_data(case_id, [pid(11), pid(12, female=True)])
        data["contact"] = dataclasses.asdict(SEALER.contact(phone)) if phone else None
        for name, payload in (("ApplicationSubmitted", data),
                              ("ApplicationAccepted", accepted_data(case_id, NOW.isoformat()))):
            assert self.app.process_cloud_event(cloud(name, payload, subject=case_id, source="lifeline/intake"))
        return case_id

    def deliver(self, **advance: float) -> dict[str, int]:
        self.wall += advance.get("seconds", 0.0)
        return self.deliverer.deliver_due()

    def notices(self, case_id: str) -> list[dict]:
        self.projection.catch_up()
        with self.side.transaction() as tx:
            return tx.find("notice", case_id)

    def docs(self, kind: str, ref: str) -> list[dict]:
        self.projection.catch_up()
        with self.side.transaction() as tx:
            return tx.find(kind, ref)

    def published(self, name: str) -> list[dict]:
        return [OUTBOUND(e).data for e in stored(self.app) if (o := OUTBOUND(e)) is not None and o.name == name]


@pytest.fixture
def notify(gateway_url, gateway):
    n = Notify(gateway_url)
    yield n
    n.close()


def messages(gateway: httpx.Client, **params: str) -> dict:
    return gateway.get("/v1/messages", params=params).json()


def test_each_notice_goes_by_letter_in_app_and_sms_once(notify, gateway):
    case_id = notify.apply_for()
    (doc,) = notify.notices(case_id)
    assert set(doc["deliveries"]) == {"letter", "in_app", "sms"} and doc["delivery"] == "pending"
    assert doc["deliveries"]["sms"]["to_masked"] == "138****5678"
    assert notify.deliver() == {"in_app": 1, "delivered": 1}
    assert notify.deliver(seconds=60) == {}  # nothing more, however often it scans
    (sent,) = messages(gateway)["items"]
    assert (sent["to"], sent["idempotency_key"], sent["requests"]) == (PHONE, f"{doc['notice_id']}:sms", 1)
    assert sms_text_problems(sent["text"], case_id) == [] and "受理通知书" in sent["text"]

    (doc,) = notify.notices(case_id)
    assert doc["deliveries"]["sms"]["state"] == doc["deliveries"]["in_app"]["state"] == "delivered"
    assert doc["deliveries"]["sms"]["reference"] == sent["message_id"]
    assert doc["deliveries"]["letter"]["state"] == "pending" and doc["delivery"] == "pending"
    (inbox,) = notify.docs("inbox", case_id)
    assert (inbox["notice_id"], inbox["legal_name"], inbox["body"]) == (doc["notice_id"], "受理通知书", doc["body"])
    with notify.side.transaction() as tx:
        assert [q["notice_id"] for q in print_queue(tx)] == [doc["notice_id"]]

    answer = notify.app.mark_printed(doc["notice_id"], None, CLERK)
    assert answer["reference"] == "PRINT-20261125-370502101" and answer["attempt"] == 1
    with pytest.raises(DeliveryNotAllowed):
        notify.app.mark_printed(doc["notice_id"], "PRINT-AGAIN", CLERK)
    (doc,) = notify.notices(case_id)
    assert doc["delivery"] == "delivered"
    with notify.side.transaction() as tx:
        assert print_queue(tx) == []
    delivered = notify.published("NoticeDelivered")
    assert sorted(d["channel"] for d in delivered) == ["in_app", "letter", "sms"]
    for data in delivered:
        registry.validate_data("NoticeDelivered", data)


def test_without_a_mobile_number_a_notice_goes_by_letter_and_in_app(notify, gateway):
    case_id = notify.apply_for(phone=None)
    (doc,) = notify.notices(case_id)
    assert set(doc["deliveries"]) == {"letter", "in_app"}
    assert notify.deliver() == {"in_app": 1}
    assert messages(gateway)["count"] == 0


def test_a_notice_that_overtook_the_mobile_number_still_goes_by_sms_once(notify, gateway):
    """The public notice (verification's topic) consumed before the application (intake's), as
    after a restart (bench/chaos.py found it): issued without a number known, its SMS is
    scheduled when the number arrives, once however often the application comes."""
    from tests.unit.services.test_notify_board import posted_data, posted_event

    case_id = new_case_id()
    assert notify.app.process_cloud_event(posted_event(posted_data(case_id)))
    (doc,) = notify.notices(case_id)
    assert set(doc["deliveries"]) == {"letter", "in_app"}
    data = submitted_data(case_id, [pid(11), pid(12, female=True)])
    data["contact"] = dataclasses.asdict(SEALER.contact(PHONE))
    submitted = cloud("ApplicationSubmitted", data, subject=case_id, source="lifeline/intake")
    assert notify.app.process_cloud_event(submitted)
    assert not notify.app.process_cloud_event(submitted)
    (doc,) = notify.notices(case_id)
    assert set(doc["deliveries"]) == {"letter", "in_app", "sms"}
    assert notify.deliver() == {"in_app": 1, "delivered": 1}
    (sent,) = messages(gateway)["items"]
    assert sent["idempotency_key"] == f"{doc['notice_id']}:sms" and "审核确认公示单" in sent["text"]


def test_the_mobile_number_is_kept_sealed_and_never_projected(notify):
    case_id = notify.apply_for()
    (contact,) = stored(notify.app, Contact.Recorded)
    assert contact.phone_masked == "138****5678" and PHONE not in contact.phone_sealed
    assert SEALER.unseal(contact.phone_sealed) == PHONE
    assert PHONE not in json.dumps(notify.side.dump(), ensure_ascii=False)
    assert notify.app.contact_of(case_id).phone(SEALER) == PHONE


def test_an_outage_delays_the_sms_with_backoff_and_it_goes_once_when_the_gateway_is_back(notify, gateway):
    case_id = notify.apply_for()
    gateway.put("/v1/behaviour", json={"mode": "fail"})
    assert notify.deliver() == {"in_app": 1, "retry": 1}
    assert notify.deliver(seconds=0.5) == {}          # within its backoff (1 s): not tried
    assert notify.deliver(seconds=0.6) == {"retry": 1}  # tried again, failed again: 2 s now
    assert notify.deliver(seconds=1.5) == {}
    (doc,) = notify.notices(case_id)
    sms = doc["deliveries"]["sms"]
    assert (sms["state"], sms["attempts"], sms["last_reason"]) == ("pending", 2, "gateway_unavailable: HTTP 503")
    assert sms["retry_at"] == "2026-11-25T15:00:02+08:00"
    gateway.put("/v1/behaviour", json={"mode": "ok"})
    assert notify.deliver(seconds=0.6) == {"delivered": 1}
    assert messages(gateway)["count"] == 1 and messages(gateway)["failures_answered"] == 2
    (doc,) = notify.notices(case_id)
    assert (doc["deliveries"]["sms"]["state"], doc["deliveries"]["sms"]["attempts"]) == ("delivered", 3)
    failed = notify.published("NoticeFailed")
    assert [(f["attempt"], f["retry_at"] is not None) for f in failed] == [(1, True), (2, True)]


def test_an_outage_stops_the_scan_rather_than_spend_every_notices_attempts(notify, gateway):
    first, second = notify.apply_for(), notify.apply_for()
    gateway.put("/v1/behaviour", json={"mode": "fail"})
    assert notify.deliver() == {"in_app": 2, "retry": 1}  # one tried; the other waits
    attempts = {c: notify.notices(c)[0]["deliveries"]["sms"]["attempts"] for c in (first, second)}
    assert sorted(attempts.values()) == [0, 1]
    gateway.put("/v1/behaviour", json={"mode": "ok"})
    assert notify.deliver(seconds=1) == {"delivered": 2}
    assert messages(gateway)["count"] == 2


def test_after_its_last_attempt_an_sms_fails_for_good_and_the_other_channels_stand(notify, gateway):
    case_id = notify.apply_for()
    gateway.put("/v1/behaviour", json={"mode": "fail"})
    assert notify.deliver() == {"in_app": 1, "retry": 1}
    assert notify.deliver(seconds=1) == {"retry": 1}
    assert notify.deliver(seconds=2) == {"failed": 1}  # the third of three
    gateway.put("/v1/behaviour", json={"mode": "ok"})
    assert notify.deliver(seconds=3600) == {}
    (doc,) = notify.notices(case_id)
    notify.app.mark_printed(doc["notice_id"], "PB-1", CLERK)
    (doc,) = notify.notices(case_id)
    assert doc["deliveries"]["sms"]["state"] == "failed" and doc["delivery"] == "partly_delivered"
    assert notify.published("NoticeFailed")[-1]["retry_at"] is None
    assert messages(gateway)["count"] == 0


def test_a_number_the_gateway_refuses_fails_at_once(notify, gateway):
    gateway.put(f"/v1/numbers/{PHONE}", json={"status": "invalid"})
    try:
        case_id = notify.apply_for()
        assert notify.deliver() == {"in_app": 1, "failed": 1}
    finally:
        gateway.put(f"/v1/numbers/{PHONE}", json={"status": "ok"})
    (doc,) = notify.notices(case_id)
    sms = doc["deliveries"]["sms"]
    assert (sms["state"], sms["attempts"], sms["retry_at"]) == ("failed", 1, None)
    assert sms["last_reason"].startswith("invalid_number") and PHONE not in sms["last_reason"]


class CrashAfterSending:
    """The gateway takes the message; the sender dies before it records the answer (kill -9)."""

    def __init__(self, gateway: HttpSmsGateway):
        self.gateway = gateway

    def send(self, to: str, text: str, key: str) -> str:
        self.gateway.send(to, text, key)
        raise SystemExit("killed between the gateway's answer and the record")


def test_a_crash_between_sending_and_recording_sends_no_second_sms(notify, gateway):
    case_id = notify.apply_for()
    notify.deliverer.gateway = CrashAfterSending(notify.gateway)
    with pytest.raises(SystemExit):
        notify.deliver()
    assert messages(gateway)["count"] == 1
    assert notify.notices(case_id)[0]["deliveries"]["sms"]["state"] == "pending"  # nothing recorded
    notify.deliverer.gateway = notify.gateway  # started again
    notify.deliver(seconds=31)  # the dead holder's lease has run out
    (sent,) = messages(gateway)["items"]
    assert sent["requests"] == 2  # asked twice, sent once
    (doc,) = notify.notices(case_id)
    assert doc["deliveries"]["sms"]["state"] == "delivered"
    assert doc["deliveries"]["sms"]["reference"] == sent["message_id"]


def test_an_answer_that_never_comes_is_retried_and_the_gateway_sends_once(notify, gateway):
    """Timeout mode: the gateway sends but holds its answer past notify's timeout."""
    case_id = notify.apply_for()
    gateway.put("/v1/behaviour", json={"mode": "timeout"})
    assert notify.deliver() == {"in_app": 1, "retry": 1}
    (doc,) = notify.notices(case_id)
    assert doc["deliveries"]["sms"]["last_reason"] == "gateway_timeout: no answer within 0.5 s"
    assert messages(gateway)["count"] == 1  # it went all the same
    gateway.put("/v1/behaviour", json={"mode": "ok"})
    assert notify.deliver(seconds=1) == {"delivered": 1}
    (sent,) = messages(gateway)["items"]
    assert sent["requests"] == 2
    assert notify.notices(case_id)[0]["deliveries"]["sms"]["reference"] == sent["message_id"]


def test_one_replica_delivers_at_a_time(notify, gateway):
    notify.apply_for()
    other = Deliverer(notify.app, notify.side, SEALER, notify.gateway, retry_max=4, max_attempts=3,
                      wall=lambda: notify.wall)
    with notify.side.transaction() as tx:
        assert tx.take_lease(Deliverer.LEASE, other.holder, notify.wall, 30)
    assert notify.deliver() == {}
    with notify.side.transaction() as tx:
        tx.release_lease(Deliverer.LEASE, other.holder)
    assert notify.deliver() == {"in_app": 1, "delivered": 1}


def test_the_gateway_client_reads_every_answer(gateway_url, gateway):
    client = HttpSmsGateway(gateway_url, 0.5)
    try:
        message_id = client.send(PHONE, "【社会救助】测试", "K-1")
        assert client.send(PHONE, "【社会救助】测试", "K-1") == message_id
        with pytest.raises(GatewayError) as refused:
            client.send(PHONE, "【社会救助】另一条", "K-1")
        assert (refused.value.reason, refused.value.final) == ("gateway_refused: HTTP 409", True)
        with pytest.raises(GatewayError) as refused:
            client.send("12345", "【社会救助】测试", "K-2")
        assert refused.value.final and refused.value.reason.startswith("invalid_number")
        with pytest.raises(GatewayError) as down:
            HttpSmsGateway(f"http://127.0.0.1:{free_port()}", 0.5).send(PHONE, "x", "K-3")
        assert not down.value.final and down.value.reason.startswith("gateway_unreachable")
    finally:
        client.close()


def test_a_notice_issued_on_a_case_whose_number_is_known_schedules_sms_in_the_same_transaction(notify):
    case_id = notify.apply_for()
    (issued,) = stored(notify.app, Notice.Issued)
    scheduled = [e for e in stored(notify.app, Delivery.Scheduled) if e.case_id == case_id]
    assert {e.channel for e in scheduled} == {"letter", "in_app", "sms"}
    assert all(e.notice_id == issued.notice_id for e in scheduled)
    # A repeated ApplicationAccepted issues nothing and schedules nothing more.
    notify.app.process_cloud_event(cloud("ApplicationAccepted", accepted_data(case_id, NOW.isoformat()),
                                         subject=case_id, source="lifeline/intake"))
    assert len(stored(notify.app, Delivery.Scheduled)) == 3


def test_a_number_sealed_with_another_key_is_retried_not_sent(notify, gateway):
    case_id = notify.apply_for()
    notify.deliverer.sealer = Sealer("another-secret")  # a misconfigured cipher key
    assert notify.deliver() == {"in_app": 1, "retry": 1}
    sms = notify.notices(case_id)[0]["deliveries"]["sms"]
    assert (sms["state"], sms["last_reason"]) == (
        "pending", "contact_unreadable: the sealed number does not open with this key")
    assert messages(gateway)["count"] == 0
    notify.deliverer.sealer = SEALER  # fixed: it goes
    assert notify.deliver(seconds=1) == {"delivered": 1}
