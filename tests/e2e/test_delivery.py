"""Delivery faults straight on the wire: duplicates, poison messages, replays."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from tests.e2e.conftest import make_poor, new_people
from services.intake.domain import Case
from services.intake.outbound import OUTBOUND as INTAKE_OUTBOUND
from tests.e2e.test_flows import REGION, completed, decide, items, metric, submit_accepted
from tests.harness import wait_for
from tests.unit.services import CLERK, application, submitted_data

pytestmark = pytest.mark.e2e


async def _produce(lifeline, topic: str, values: list[bytes], key: str = "k") -> None:
    producer = AIOKafkaProducer(**lifeline.kafka_options(), acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(lifeline.namespace + topic, value, key=key.encode())
    finally:
        await producer.stop()


async def _read_all(lifeline, topic: str, expect: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(
        lifeline.namespace + topic, **lifeline.kafka_options(),
        group_id=f"reader-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    found = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < expect and loop.time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(messages)
    finally:
        await consumer.stop()
    return found


def _application_event(case_id: str, people: list[str], sequence: int) -> CloudEvent:
    # The data as intake's own mapping produces it (Application.to_wire), not built by hand.
    data = submitted_data(case_id, people, region_code=REGION)
    return registry.new_event(
        "ApplicationSubmitted", data, subject=case_id, source="lifeline/intake", sequence=sequence,
        actor={"user_id": "clerk-1", "role": "clerk", "org_code": REGION[:9]},
    )


def _acceptance_event(case_id: str, people: list[str], accepted_at: str, sequence: int) -> CloudEvent:
    # The data as intake's own case and mapping produce it (Case.accept, OUTBOUND).
    case = Case.register(application(case_id, people, region_code=REGION), CLERK)
    case.accept("材料齐全，予以受理", accepted_at, CLERK)
    out = INTAKE_OUTBOUND(case.pending_events[-1])
    return registry.new_event(
        out.name, out.data, subject=case_id, source="lifeline/intake", sequence=sequence,
        actor={"user_id": "clerk-1", "role": "clerk", "org_code": REGION[:9]},
    )


def _consumed(lifeline, service: str, event: str, outcome: str = "duplicate") -> float:
    return metric(lifeline, service, "lifeline_events_consumed_total", event=event, outcome=outcome)


def test_the_same_cloud_event_delivered_twice_has_one_effect(lifeline):
    people = new_people(1)
    case_id = f"C-DUP{uuid.uuid4().hex[:12].upper()}"
    # Positions far beyond the real intake log, so they are these events' own identities.
    sequence = 10**9 + random.randrange(10**6)
    submitted = lifeline.signed(_application_event(case_id, people, sequence=sequence))
    accepted = lifeline.signed(_acceptance_event(case_id, people, lifeline.clock("show").isoformat(),
                                                 sequence=sequence + 1))
    watched = [("verification", "ApplicationSubmitted"), ("verification", "ApplicationAccepted"),
               ("notify", "ApplicationAccepted")]
    duplicates = {w: _consumed(lifeline, *w) for w in watched}
    asyncio.run(_produce(lifeline, T.TOPICS["intake"], [submitted, submitted, accepted, accepted], key=case_id))
    started = wait_for(
        lambda: (v := _verification(lifeline, case_id)) and v["state"] != "awaiting_acceptance" and v,
        what="verification started")
    for w in watched:
        wait_for(lambda: _consumed(lifeline, *w) >= duplicates[w] + 1, what=f"second delivery recognised: {w}")
    # The read model follows the store on its own beat: wait for it, then count.
    notices = wait_for(lambda: items(lifeline, "notify", "/v1/notices", case_id), what="notice")
    assert [n["kind"] for n in notices] == ["acceptance"]
    requested = started["departments_requested"]
    assert requested and len(requested) == len(set(requested))
    assert _verification(lifeline, case_id)["departments_requested"] == requested


def _verification(lifeline, case_id):
    with lifeline.client("verification") as c:
        r = c.get(f"/v1/verifications/{case_id}")
    return r.json() if r.status_code == 200 else None


def test_poison_messages_go_to_the_dead_letter_topic_and_the_next_one_is_processed(lifeline):
    unknown_type = json.dumps({
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "lifeline/intake",
        "type": "cn.gov.mca.lifeline.SomethingElse.v1", "subject": "C-1",
        "time": "2026-11-25T10:00:00+08:00", "datacontenttype": "application/json", "data": {},
        "correlationid": str(uuid.uuid4()), "actor": {"user_id": "x", "role": "clerk", "org_code": ""},
        "sequence": 1,
    }).encode()
    bad_schema = _application_event("C-BAD", new_people(1), sequence=10**9 + 7).to_dict()
    bad_schema["data"]["declared_monthly_income_fen"] = -5
    # Signed by intake's key: what intake itself could never store, judged by its schema.
    poison = [b"\x00\x01 not json at all", unknown_type, lifeline.signed(bad_schema)]
    asyncio.run(_produce(lifeline, T.TOPICS["intake"], poison))

    # The consumer goes on: a good application right after is processed.
    people = new_people(1)
    make_poor(lifeline, people)
    case_id = submit_accepted(lifeline, people)
    completed(lifeline, case_id)

    dlq = T.dlq_topic(T.TOPICS["intake"], "verification")
    dead = asyncio.run(_read_all(lifeline, dlq, expect=3))
    reasons = [dict(m.headers)["dlq.reason"].decode() for m in dead]
    assert len(dead) == 3, reasons
    assert {m.value for m in dead} == set(poison)
    assert any("SomethingElse" in r for r in reasons)
    assert any("declared_monthly_income_fen" in r for r in reasons)
    assert all(dict(m.headers)["dlq.group"] == b"verification" for m in dead)


def test_a_handler_that_keeps_failing_is_dead_lettered_after_bounded_retries(lifeline):
    # Records for a case verification never heard of: the handler fails every time.
    orphan = registry.new_event(
        "DepartmentRecordsReported",
        {"request_id": "Q-ORPHAN", "case_id": "C-ORPHAN", "department": "tax",
         "members": [], "reported_at": "2026-11-25T10:00:00+08:00"},
        subject="C-ORPHAN", source="partner/tax", sequence=10**9 + random.randrange(10**6),
        actor={"user_id": "adapter:tax", "role": "partner", "org_code": "tax"},
    )
    orphan = lifeline.signed(orphan)
    asyncio.run(_produce(lifeline, T.PARTNER_RECORDS, [orphan], key="C-ORPHAN"))
    dlq = T.dlq_topic(T.PARTNER_RECORDS, "verification")
    dead = asyncio.run(_read_all(lifeline, dlq, expect=1, timeout=40))
    assert len(dead) == 1
    assert "attempts" in dict(dead[0].headers)["dlq.reason"].decode()


def test_replay_rebuilds_every_services_read_models_identically(lifeline):
    people = new_people(1)
    make_poor(lifeline, people)
    case_id = submit_accepted(lifeline, people)
    completed(lifeline, case_id)
    # Through the procedure to a decision: deadlines, the board entry and the notices are read
    # models too.
    lifeline.through_procedure(case_id)
    assert decide(lifeline, case_id, "approve").status_code == 200
    wait_for(lambda: len(items(lifeline, "notify", "/v1/notices", case_id)) == 2, what="notices")
    wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what="entitlement")
    lifeline.settled_log_sizes(("intake", "verification", "payment", "charity", "notify"))
    for service in ("intake", "verification", "payment", "charity", "notify"):
        r = lifeline.cli("replay", service)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "identical" in r.stdout
