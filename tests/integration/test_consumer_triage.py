"""What a consumer does with each kind of message, on a real broker and store."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.messaging.consumer import EventConsumer
from lifeline.messaging.kafka import Bus
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
    consumer = EventConsumer(app, bus, [T.TOPICS["intake"]], "verification", max_attempts=1, retry_delay=0)
    await bus.ensure_topics([T.dlq_topic(T.TOPICS["intake"], "verification")])
    try:
        yield consumer
    finally:
        await bus.stop()
        app.close()


def broken(event) -> bytes:
    """The event with data its schema refuses (a negative amount)."""
    wire = json.loads(event.to_json())
    wire["data"]["declared_monthly_income_fen"] = -1
    return json.dumps(wire).encode()


async def handle(consumer, raw: bytes) -> str:
    return await consumer.handle(consumer.bus.topic(T.TOPICS["intake"]), raw, b"k", 0, 0)


async def test_each_kind_of_message(consumer):
    good = application(900)
    assert await handle(consumer, good.to_json()) == "processed"
    assert await handle(consumer, good.to_json()) == "duplicate"
    # Handled here and broken: dead-lettered, nothing stored.
    before = consumer.app.recorder.max_notification_id()
    assert await handle(consumer, broken(application(901))) == "dead_lettered"
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
