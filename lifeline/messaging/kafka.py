"""Kafka plumbing shared by relays, consumers and the simulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from lifeline.settings import Settings

log = logging.getLogger(__name__)


class Bus:
    """Names topics within the configured namespace and owns one producer."""

    def __init__(self, settings: Settings, client_id: str):
        self.settings = settings
        self.client_id = client_id
        self.producer: AIOKafkaProducer | None = None
        self.idempotent = False

    def topic(self, name: str) -> str:
        return f"{self.settings.namespace}{name}"

    def group(self, name: str) -> str:
        return f"{self.settings.namespace}{name}"

    async def start(self) -> None:
        # The idempotent producer removes duplicates a broker retry could make,
        # where the broker supports it. Tansu answers InitProducerId with an
        # error, so we fall back to acks=all; exactly-once effects never depend
        # on this (consumers deduplicate by event identity).
        for idempotent in (True, False):
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=idempotent,
                linger_ms=5,
                request_timeout_ms=30000,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                if not idempotent:
                    raise
                log.warning("idempotent producer refused by broker (%r); using acks=all", exc)
                continue
            self.producer, self.idempotent = producer, idempotent
            return

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send(self, topic: str, value: bytes, key: str, headers=None) -> asyncio.Future:
        """Queue one record; await the returned future for the broker's ack."""
        assert self.producer is not None, "Bus.start() first"
        return await self.producer.send(
            self.topic(topic), value=value, key=key.encode("utf-8"), headers=headers
        )

    async def ensure_topics(self, names: Iterable[str], partitions: int | None = None) -> None:
        names = [self.topic(n) for n in names]
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, client_id=f"{self.client_id}-admin"
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if not missing:
                return
            try:
                await admin.create_topics(
                    [
                        NewTopic(n, partitions or self.settings.partitions, 1)
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another process created it first
        finally:
            await admin.close()
