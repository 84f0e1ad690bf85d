"""Real backend: Apache Kafka keeps messages across a broker restart; PostgreSQL
and Redis answer at the URLs the fixture hands to services."""

from __future__ import annotations

import asyncio

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = [pytest.mark.integration, pytest.mark.real_only]


async def test_message_survives_broker_restart(infra, namespace):
    assert infra.backend == "real"
    topic = f"{namespace}infra-durability"
    admin = AIOKafkaAdminClient(**infra.kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    # Real Kafka accepts the idempotent producer (Tansu does not).
    producer = AIOKafkaProducer(**infra.kafka_options(), acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"survives", key=b"case-1")
    finally:
        await producer.stop()

    await asyncio.to_thread(infra.restart_broker)

    consumer = AIOKafkaConsumer(topic, **infra.kafka_options(),
                                group_id=f"{namespace}g", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), 60)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"case-1", b"survives")


def test_postgres_and_redis_urls(infra, namespace, tmp_data_dir):
    import psycopg

    env = infra.env(namespace, tmp_data_dir)
    assert env["LIFELINE_DATABASE_URL"].startswith("postgresql://lifeline:lifeline@127.0.0.1:")
    schema = f'{env["LIFELINE_DB_SCHEMA_PREFIX"]}_intake'
    with psycopg.connect(infra.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".t (x int)')
        conn.execute(f'INSERT INTO "{schema}".t VALUES (1)')
        assert conn.execute(f'SELECT x FROM "{schema}".t').fetchone() == (1,)
    client = redis.Redis.from_url(infra.redis_url)
    client.set(f"{namespace}k", "v")
    assert client.get(f"{namespace}k") == b"v"
    client.close()


def test_redis_has_a_user_per_service_with_its_own_keys_only(infra, namespace):
    """The real Redis runs as a deployment's does (lifeline.ops.redisauth): the default user off,
    each service's user (what harness.Lifeline gives each process) limited to its own keys."""
    from lifeline.ops.redisauth import key_namespace, without_credentials

    intake = redis.Redis.from_url(infra.redis_env("intake")["LIFELINE_REDIS_URL"])
    own = f"{key_namespace(namespace, 'intake')}:idem:x"
    assert intake.set(own, "1") and intake.get(own) == b"1"
    for key in (f"{key_namespace(namespace, 'payment')}:idem:x", f"{namespace}:idem:x"):
        with pytest.raises(redis.exceptions.NoPermissionError):
            intake.set(key, "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        intake.flushall()
    intake.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(without_credentials(infra.redis_url)).get(own)
