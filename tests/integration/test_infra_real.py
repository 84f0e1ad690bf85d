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
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    # Real Kafka accepts the idempotent producer (Tansu does not).
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"survives", key=b"case-1")
    finally:
        await producer.stop()

    await asyncio.to_thread(infra.restart_broker)

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap,
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
