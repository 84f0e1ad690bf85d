"""The embedded broker and Redis: start, produce/consume, restart semantics.

These use their own instances (not the session `infra`), because restarting
the embedded broker empties it and would wipe other tests' topics.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from lifeline.dev.embedded import EmbeddedBroker, EmbeddedRedis, InfraError, free_port

pytestmark = pytest.mark.integration


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str, timeout: float = 20.0):
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Tansu holds the first JoinGroup for half the session timeout (5 s at
        # the default 10 s); a short session keeps this test quick.
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout)
        await consumer.commit()
        return msg
    finally:
        await consumer.stop()


@pytest.fixture
def broker(tmp_path):
    b = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    with b:
        yield b


async def test_broker_produce_consume_and_restart_empties(broker: EmbeddedBroker):
    assert broker.is_running()
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    topic = f"t{uuid.uuid4().hex[:6]}.infra-check"
    await _create_topic(broker.bootstrap, topic)
    await _produce(broker.bootstrap, topic, b"case-1", b"hello")
    msg = await _consume_one(broker.bootstrap, topic)
    assert (msg.key, msg.value) == (b"case-1", b"hello")

    pid = broker.pid
    broker.restart()
    assert broker.is_running() and broker.pid != pid
    # Memory-only: the topic and its message are gone after a restart.
    assert topic not in await _topics(broker.bootstrap)

    broker.stop()
    assert not broker.is_running()
    broker.stop()  # idempotent


def test_broker_port_in_use_is_reported(broker: EmbeddedBroker, tmp_path):
    other = EmbeddedBroker(port=broker.port, log_path=tmp_path / "other.log")
    with pytest.raises(InfraError, match="already in use"):
        other.start()


def test_redis_without_data_dir_forgets_on_restart(tmp_path):
    with EmbeddedRedis(port=free_port(), log_path=tmp_path / "redis.log") as r:
        client = redis.Redis.from_url(r.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        r.restart()
        assert client.get("k") is None
        client.close()
    assert not r.is_running()


def test_redis_with_data_dir_persists_across_restart(tmp_path):
    r = EmbeddedRedis(port=free_port(), data_dir=tmp_path / "redis")
    with r:
        client = redis.Redis.from_url(r.url)
        client.set("idem:abc", "201")
        r.restart()
        assert client.get("idem:abc") == b"201"
        client.close()
    assert (tmp_path / "redis" / "appendonly.aof").exists()


def test_session_infra_fixture_is_shared(infra, namespace, tmp_data_dir):
    env = infra.env(namespace, tmp_data_dir)
    assert env["LIFELINE_KAFKA_BOOTSTRAP"] == infra.kafka_bootstrap
    assert env["LIFELINE_REDIS_URL"] == infra.redis_url
    assert env["LIFELINE_DATABASE_URL"] == infra.database_url
    assert env["LIFELINE_NAMESPACE"] == namespace
    assert env["LIFELINE_DATA_DIR"] == str(tmp_data_dir)
    # Same namespace -> same service ports (a restarted service keeps its address).
    assert infra.env(namespace, tmp_data_dir)["LIFELINE_INTAKE_PORT"] == env["LIFELINE_INTAKE_PORT"]
    assert redis.Redis.from_url(infra.redis_url).ping()
