"""The partner simulator, as its own process against the test broker, reports deaths:
`POST /v1/deaths` publishes one DeathReported on `lifeline.partner.records.v1`, keyed by its
record id; the same death reported again is the same record, byte for byte, which consumers
deduplicate (across a restart too: tests/unit/test_partner_simulator.py)."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from aiokafka import AIOKafkaConsumer

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.rules.ids import make_resident_id
from tests.harness import Lifeline

pytestmark = pytest.mark.integration

PERSON = make_resident_id("370502", date(1941, 3, 9), 17, female=False)
OTHER = make_resident_id("370502", date(1938, 11, 2), 4, female=True)


def records(lifeline: Lifeline, n: int, timeout: float = 30.0) -> list[tuple[str, bytes]]:
    """(key, value) of the first `n` messages on the Lifeline's partner records topic."""

    async def read() -> list[tuple[str, bytes]]:
        consumer = AIOKafkaConsumer(lifeline.namespace + T.PARTNER_RECORDS,
                                    **lifeline.kafka_options(),
                                    group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                    metadata_max_age_ms=1000)
        await consumer.start()
        got: list[tuple[str, bytes]] = []
        try:
            async with asyncio.timeout(timeout):
                while len(got) < n:
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend((m.key.decode(), m.value) for m in batch)
            await asyncio.sleep(0.5)  # and nothing more
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((m.key.decode(), m.value) for m in batch)
            return got
        finally:
            await consumer.stop()

    return asyncio.run(read())


@pytest.fixture
def simulator(infra, namespace, tmp_data_dir):
    system = Lifeline(infra, namespace, tmp_data_dir)
    system.start("simulator")
    try:
        yield system
    finally:
        system.stop()


def test_a_death_is_reported_once_per_record_and_again_alike(simulator):
    death = {"id_number": PERSON, "name": "王老汉", "date_of_death": "2026-11-20"}
    with simulator.client("simulator") as sim:
        first = sim.post("/v1/deaths", json=death)
        again = sim.post("/v1/deaths", json=death)  # the command repeated
        cremation = sim.post("/v1/deaths", json={"id_number": OTHER, "name": "李老太",
                                                 "date_of_death": "2026-11-21", "department": "civil_affairs"})
        # refused before anything is published
        wrong_check = PERSON[:-1] + ("1" if PERSON[-1] == "0" else "0")
        assert sim.post("/v1/deaths", json={**death, "id_number": wrong_check}).status_code == 422
        assert sim.post("/v1/deaths", json={**death, "department": "tax"}).status_code == 422
        assert sim.post("/v1/deaths", json={**death, "date_of_death": "2026-02-30"}).status_code == 422
        assert sim.post("/v1/deaths", json={**death, "date_of_death": "2999-01-01"}).status_code == 422
    assert (first.status_code, again.status_code, cremation.status_code) == (202, 202, 202), first.text
    record = first.json()
    assert record == again.json()  # the same record
    assert set(record) == {"record_id", "department", "id_number", "name", "date_of_death", "reported_at"}
    assert (record["department"], record["id_number"], record["name"], record["date_of_death"]) == (
        "public_security", PERSON, "王老汉", "2026-11-20")
    assert cremation.json()["department"] == "civil_affairs"
    assert cremation.json()["record_id"] != record["record_id"]

    published = records(simulator, 3)
    assert len(published) == 3
    (k1, v1), (k2, v2), (k3, v3) = sorted(published, key=lambda kv: kv[0] != record["record_id"])
    assert v1 == v2  # republished byte for byte
    events = [registry.decode(v) for v in (v1, v3)]  # valid against DeathReported.v1
    for (key, _), event in zip(((k1, v1), (k3, v3)), events):
        assert event.name == "DeathReported" and event.version == 1
        assert key == event.subject == event.data["record_id"]
        assert event.source == f"partner/{event.data['department']}"
        assert event.actor.role == "partner"
    assert events[0].data == record and events[1].data == cremation.json()

