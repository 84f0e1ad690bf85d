"""What a consumer does with each kind of message, on a real broker and store: signed events of
a source that may publish them are processed once; anything else is dead-lettered with its
reason (read back from the dead-letter topic) and stores nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.signing import KeyDirectory, Verifier
from lifeline.messaging.consumer import EventConsumer
from lifeline.messaging.kafka import Bus, kafka_client_options
from lifeline.settings import Settings
from services.verification.bootstrap import SPEC
from tests.integration.test_tracking import application

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop (session is the default)
async def consumer(infra, namespace, tmp_data_dir):
    settings = Settings.from_env(infra.env(namespace, tmp_data_dir))
    app = SPEC.application(settings)
    bus = Bus(settings, client_id="triage-test")
    await bus.start()
    keys = KeyDirectory(tmp_data_dir / "keys")
    consumer = EventConsumer(app, bus, [T.TOPICS["intake"]], "verification", verifier=Verifier(keys),
                             max_attempts=1, retry_delay=0)
    consumer.signers = {s: keys.signer(s, generate=True) for s in ("lifeline/intake", "partner/hrss")}
    await bus.ensure_topics([T.dlq_topic(T.TOPICS["intake"], "verification")])
    try:
        yield consumer
    finally:
        await bus.stop()
        app.close()


def signed(consumer, event_or_wire, source: str = "lifeline/intake") -> bytes:
    wire = event_or_wire if isinstance(event_or_wire, dict) else event_or_wire.to_dict()
    return json.dumps(consumer.signers[source].sign(wire)).encode()


def broken(consumer, event) -> bytes:
    """The event with data its schema refuses (a negative amount), signed by its source."""
    wire = event.to_dict()
    wire["data"]["declared_monthly_income_fen"] = -1
    return signed(consumer, wire)


async def handle(consumer, raw: bytes) -> str:
    return await consumer.handle(consumer.bus.topic(T.TOPICS["intake"]), raw, b"k", 0, 0)


def changed(raw: bytes, **data) -> bytes:
    wire = json.loads(raw)
    wire["data"].update(data)
    return json.dumps(wire).encode()


async def dead_letter_reasons(consumer, n: int) -> list[str]:
    """The reasons of the first `n` messages on the consumer's dead-letter topic of intake's topic, in order."""
    topic = consumer.bus.topic(T.dlq_topic(T.TOPICS["intake"], consumer.group))
    reader = AIOKafkaConsumer(topic, **kafka_client_options(consumer.bus.settings), group_id=None,
                              auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    reasons: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(reasons) < n and loop.time() < deadline:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                reasons += [dict(m.headers)["dlq.reason"].decode() for m in batch]
    finally:
        await reader.stop()
    return reasons


async def test_each_kind_of_message(consumer):
    good = application(900)
    assert await handle(consumer, signed(consumer, good)) == "processed"
    assert await handle(consumer, signed(consumer, good)) == "duplicate"
    # Handled here and broken: dead-lettered, nothing stored.
    before = consumer.app.recorder.max_notification_id()
    assert await handle(consumer, broken(consumer, application(901))) == "dead_lettered"
    assert consumer.app.recorder.max_notification_id() == before
    # Not an event at all, or a type nobody declared: dead-lettered by every group.
    assert await handle(consumer, b"\x00 not json") == "dead_lettered"
    unknown = json.loads(good.to_json())
    unknown["type"] = "cn.gov.mca.lifeline.MoonLanded.v1"
    assert await handle(consumer, json.dumps(unknown).encode()) == "dead_lettered"
    # A declared type this group does not handle: skipped unread, whatever its data;
    # judging it is the business of the groups that handle it.
    other = json.loads(good.to_json())
    other.update(type="cn.gov.mca.lifeline.FundRegistered.v1", data={"fund_id": "F-1"})
    with pytest.raises(registry.ContractError):  # it would fail its schema
        registry.decode(json.dumps(other).encode())
    assert await handle(consumer, json.dumps(other).encode()) == "ignored"


async def test_only_a_source_s_own_key_may_speak_for_it_and_only_of_what_it_may_publish(consumer):
    before = consumer.app.recorder.max_notification_id()
    forged = application(910).to_dict()
    cases = {
        "unsigned": json.dumps(forged).encode(),
        # Signed, then changed (what a forger wants believed).
        "changed": changed(signed(consumer, forged), declared_monthly_income_fen=1),
        # A partner's own key, its signature good, claiming to be intake.
        "other source's key": signed(consumer, {**forged, "source": "lifeline/intake"}, source="partner/hrss"),
        # A partner's key in its own name, publishing what only intake may.
        "not its type": signed(consumer, {**application(911).to_dict(), "source": "partner/hrss"},
                               source="partner/hrss"),
        "unknown key": json.dumps({**json.loads(signed(consumer, forged)),
                                   "keyid": "lifeline-intake-000000000000"}).encode(),
    }
    for name, raw in cases.items():
        assert await handle(consumer, raw) == "dead_lettered", name
    assert consumer.app.recorder.max_notification_id() == before  # no effect
    reasons = await dead_letter_reasons(consumer, len(cases))
    assert reasons == [
        "signature: missing (the keyid and signature attributes)",
        "signature: does not verify (changed or forged)",
        f"signature: key {consumer.signers['partner/hrss'].keyid} is not registered for the event's source",
        "source may not publish: partner/hrss may not publish ApplicationSubmitted",
        "signature: unknown key lifeline-intake-000000000000",
    ]
    # The control: the same event signed by intake is processed.
    assert await handle(consumer, signed(consumer, application(910))) == "processed"
