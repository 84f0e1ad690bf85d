"""Real backend: Kafka authenticates every principal (SASL/SCRAM-SHA-512 over TLS) and lets each
do only what its ACLs grant (lifeline/messaging/acls.py); the embedded Tansu knows no principals."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from lifeline.contracts import topics as T
from lifeline.messaging import acls

pytestmark = [pytest.mark.integration, pytest.mark.real_only]


@pytest.fixture
def ns(infra, namespace, tmp_data_dir) -> str:
    """A namespace whose topics and ACLs exist (infra.env makes them, as for every Lifeline)."""
    infra.env(namespace, tmp_data_dir)
    return namespace


async def produce(options: dict, topic: str, value: bytes = b"{}") -> None:
    producer = AIOKafkaProducer(**options, acks="all", request_timeout_ms=15000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), 30)
    finally:
        await producer.stop()


async def consume_one(options: dict, topic: str, group: str) -> bytes:
    consumer = AIOKafkaConsumer(topic, **options, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
        await consumer.commit()  # the group's offsets: READ on the group
        return message.value
    finally:
        await consumer.stop()


async def test_a_partner_may_not_write_what_verification_decided(infra, ns):
    partner = infra.kafka_options(acls.PARTNER)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(partner, ns + T.TOPICS["verification"], b'{"type": "BenefitApproved"}')
    # The same connection writes its own topic and reads the requests addressed to it.
    await produce(partner, ns + T.PARTNER_RECORDS)
    await produce(infra.kafka_options(acls.service_principal("verification")), ns + T.PARTNER_REQUESTS, b"asked")
    assert await consume_one(partner, ns + T.PARTNER_REQUESTS, ns + "partner-hrss") == b"asked"
    # And the partner simulator no more than the departments it stands in for.
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(infra.kafka_options(acls.PARTNER_SIMULATOR), ns + T.TOPICS["verification"])


async def test_a_service_writes_its_own_topic_and_reads_what_it_consumes(infra, ns):
    intake = infra.kafka_options(acls.service_principal("intake"))
    verification = infra.kafka_options(acls.service_principal("verification"))
    await produce(intake, ns + T.TOPICS["intake"], b"submitted")
    await produce(intake, ns + T.REFERRALS, b"referred")  # ReferralRaised's fan-out
    assert await consume_one(verification, ns + T.TOPICS["intake"], ns + "verification") == b"submitted"
    # Its own dead letters of a topic it consumes, not another group's.
    await produce(verification, ns + T.dlq_topic(T.TOPICS["intake"], "verification"))
    for topic in (T.TOPICS["payment"], T.dlq_topic(T.TOPICS["intake"], "notify"), T.TOPICS["intake"]):
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(verification, ns + topic)
    # Not a topic it does not consume, nor in another service's group.
    with pytest.raises(TopicAuthorizationFailedError):
        await consume_one(verification, ns + T.TOPICS["payment"], ns + "verification")
    with pytest.raises(GroupAuthorizationFailedError):
        await consume_one(verification, ns + T.TOPICS["intake"], ns + "payment")


async def test_the_federation_reads_only_what_it_is_given(infra, ns):
    await produce(infra.kafka_options(acls.service_principal("intake")), ns + T.REFERRALS, b"referred")
    federation = infra.kafka_options(acls.FEDERATION)
    assert await consume_one(federation, ns + T.REFERRALS, ns + "federation-feed") == b"referred"
    with pytest.raises(TopicAuthorizationFailedError):
        await consume_one(federation, ns + T.TOPICS["intake"], ns + "federation-feed")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(federation, ns + T.REFERRALS)


async def test_a_wrong_password_is_refused_at_connect(infra, ns, caplog):
    options = {**infra.kafka_options(acls.PARTNER), "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaConnectionError):
        await produce(options, ns + T.PARTNER_RECORDS)
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text
    await produce(infra.kafka_options(acls.PARTNER), ns + T.PARTNER_RECORDS)  # the right one is let in


def test_each_process_gets_its_own_principal(infra, namespace, tmp_data_dir):
    env = infra.env(namespace, tmp_data_dir)
    assert env["LIFELINE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["LIFELINE_KAFKA_USERNAME"] == acls.ADMIN  # tests and tools
    seen = {p: infra.kafka_env(p) for p in acls.PROCESS_PRINCIPALS}
    assert {p: e["LIFELINE_KAFKA_USERNAME"] for p, e in seen.items()} == {
        "intake": "lifeline-intake", "verification": "lifeline-verification", "payment": "lifeline-payment",
        "charity": "lifeline-charity", "notify": "lifeline-notify", "simulator": "lifeline-partner-simulator",
        "federation": "federation", "bank": "", "sms": "", "console": ""}
    passwords = [e["LIFELINE_KAFKA_PASSWORD"] for e in seen.values() if e["LIFELINE_KAFKA_PASSWORD"]]
    assert len(set(passwords)) == len(passwords) == 7
    assert env["LIFELINE_KAFKA_PASSWORD"] not in passwords
