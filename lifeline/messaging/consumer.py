"""Kafka consumer groups whose effects happen once.

Each message is decoded (JSON, envelope, upcast, schema), handed to the
service's process application, and only then is its offset committed. The
application saves the effects together with a tracking record keyed by the
event's own identity (source, sequence) in one transaction, so a redelivery
after a crash, a duplicate, or a republished log finds the tracking record and
changes nothing. Offsets are only a bookmark: they can go back (a restarted
memory-only broker, a rebalance) without harm.

A poison message — not JSON, unknown type, a handled event that is not signed by a
key registered for its source, from a source that may not publish it, that fails its
schema, or a handler that keeps failing — goes to `<topic>.dlq.<group>` with the
reason, and the consumer goes on with the next one. An event of a known type that this
group does not handle is skipped without reading its data.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent, ContractError, parse_json
from lifeline.contracts.signing import EventRejected, Verifier
from lifeline.ops import faults
from lifeline.stores.application import ServiceApplication
from lifeline.messaging.kafka import Bus, kafka_client_options
from lifeline.ops.metrics import CONSUMED

log = logging.getLogger(__name__)


class EventConsumer:
    def __init__(
        self,
        app: ServiceApplication,
        bus: Bus,
        topics: list[str],
        group: str,
        verifier: Verifier,
        max_attempts: int = 5,
        retry_delay: float = 0.2,
    ):
        self.app = app
        self.verifier = verifier
        self.bus = bus
        self.topics = topics
        self.group = group
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await self.bus.ensure_topics(
            [*self.topics, *(T.dlq_topic(t, self.group) for t in self.topics)]
        )
        self.consumer = AIOKafkaConsumer(
            *(self.bus.topic(t) for t in self.topics),
            **kafka_client_options(self.bus.settings),
            group_id=self.bus.group(self.group),
            client_id=f"{self.bus.client_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=100,
            session_timeout_ms=self.bus.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(self.bus.settings.kafka_session_timeout_ms // 4, 250),
            metadata_max_age_ms=5000,
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        while not stop.is_set():
            try:
                batches = await self.consumer.getmany(timeout_ms=300, max_records=100)
            except KafkaError:
                log.exception("%s: fetch failed; retrying", self.group)
                await asyncio.sleep(1.0)
                continue
            for tp, messages in batches.items():
                for message in messages:
                    await self.handle(message.topic, message.value, message.key, message.partition, message.offset)
                try:
                    await self.consumer.commit({tp: messages[-1].offset + 1})
                except (CommitFailedError, KafkaError) as exc:
                    # Partition moved to another replica mid-batch: it will
                    # redeliver, and the tracking records make that harmless.
                    log.warning("%s: commit failed (%r); redelivery is deduplicated", self.group, exc)

    def _plain_topic(self, topic: str) -> str:
        ns = self.bus.settings.namespace
        return topic[len(ns):] if ns and topic.startswith(ns) else topic

    async def handle(self, topic: str, value: bytes | None, key: bytes | None, partition: int, offset: int) -> str:
        service = self.app.service
        try:
            obj = parse_json(value or b"")
            envelope = CloudEvent.from_dict(obj)
            registry.require_known(envelope)
            # A known event this group does not handle is skipped before its signature and data
            # are checked (most traffic on a shared topic); the groups that handle it judge it.
            if envelope.name not in self.app.handled_events:
                CONSUMED.labels(service, envelope.name, "ignored").inc()
                return "ignored"
            self.verifier.check(obj)
            event = registry.accept(envelope)
        except EventRejected as exc:
            await self.dead_letter(topic, value, key, partition, offset, exc.reason)
            CONSUMED.labels(service, "unknown", "dead_lettered").inc()
            return "dead_lettered"
        except ContractError as exc:
            await self.dead_letter(topic, value, key, partition, offset, f"contract: {exc}")
            CONSUMED.labels(service, "unknown", "dead_lettered").inc()
            return "dead_lettered"
        last_error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                done = await asyncio.to_thread(self.app.process_cloud_event, event)
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                last_error = exc
                log.warning("%s: %s attempt %d failed: %r", self.group, event.name, attempt, exc)
                await asyncio.sleep(self.retry_delay * attempt)
                continue
            outcome = "processed" if done else "duplicate"
            CONSUMED.labels(service, event.name, outcome).inc()
            if done:
                faults.maybe_crash("consumer_after_save", event.name)
            return outcome
        await self.dead_letter(
            topic, value, key, partition, offset,
            f"handler failed after {self.max_attempts} attempts: {last_error!r}",
        )
        CONSUMED.labels(service, event.name, "dead_lettered").inc()
        return "dead_lettered"

    async def dead_letter(self, topic, value, key, partition, offset, reason: str) -> None:
        plain = self._plain_topic(topic)
        log.error("%s: dead-lettering %s[%d]@%d: %s", self.group, plain, partition, offset, reason)
        headers = [
            ("dlq.reason", reason.encode("utf-8")[:4000]),
            ("dlq.topic", plain.encode()),
            ("dlq.partition", str(partition).encode()),
            ("dlq.offset", str(offset).encode()),
            ("dlq.group", self.group.encode()),
        ]
        ack = await self.bus.send(
            T.dlq_topic(plain, self.group),
            value or b"",
            (key or b"").decode("utf-8", "replace"),
            headers=headers,
        )
        await ack
