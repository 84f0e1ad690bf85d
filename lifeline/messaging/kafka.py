"""Kafka plumbing shared by relays, consumers and the simulator."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from lifeline.errors import ConfigurationError
from lifeline.settings import Settings

log = logging.getLogger(__name__)

# CreateTopics answers for topics this principal may not create (or even see): on a broker with
# ACLs the operator creates every topic beforehand (`lifeline kafka-setup`).
_NOT_AUTHORISED = {29, 31}  # TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED
_ALREADY_EXISTS = 36


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """How every Kafka client of a process reaches the broker: the bootstrap servers and this
    process's own principal (SASL over TLS on real infrastructure), as keyword arguments for
    AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient and AIOKafkaClient alike."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol.startswith("SASL_"):
        if not settings.kafka_username or not settings.kafka_password:
            raise ConfigurationError(
                f"LIFELINE_KAFKA_SECURITY_PROTOCOL={protocol} needs LIFELINE_KAFKA_USERNAME and "
                "LIFELINE_KAFKA_PASSWORD: this process's own Kafka principal")
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_username,
                       sasl_plain_password=settings.kafka_password)
    if protocol.endswith("SSL"):
        ca = settings.kafka_ca_file
        options["ssl_context"] = ssl.create_default_context(cafile=str(ca) if ca else None)
    return options


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
                **kafka_client_options(self.settings),
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
        admin = AIOKafkaAdminClient(**kafka_client_options(self.settings), client_id=f"{self.client_id}-admin")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if not missing:
                return
            try:
                answer = await admin.create_topics(
                    [
                        NewTopic(n, partitions or self.settings.partitions, 1)
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                return  # another process created it first
            for name, code, *_ in getattr(answer, "topic_errors", ()):
                if code in _NOT_AUTHORISED:
                    log.debug("topic %s is not this principal's to create", name)
                elif code not in (0, _ALREADY_EXISTS):
                    log.warning("creating topic %s failed (error code %s)", name, code)
        finally:
            await admin.close()
