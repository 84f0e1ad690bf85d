"""Kafka consumer groups whose effects happen once.

Each message is decoded (JSON, envelope, upcast, schema), handed to the
service's process application, and only then is its offset committed. The
application saves the effects together with a tracking record keyed by the
event's own identity (source, sequence) in one transaction, so a redelivery
after a crash, a duplicate, or a republished log finds the tracking record and
changes nothing. Offsets are only a bookmark: they can go back (a restarted
memory-only broker, a rebalance) without harm.

A partition's fetched records are handled as a batch: every message judged as
alone, then the accepted events given to the application at once
(`ServiceApplication.process_batch`: the duplicates found by one query, the new
events' effects and tracking records in one transaction). When that stops short
(a handler or the transaction failed), the rest of the batch goes one message at
a time through `process`, with its retries and dead letters, exactly as before.
Judging (JSON, envelope, signature, schema) runs in threads of its own, the next
fetch's while this one's effects are stored.

A poison message — not JSON, unknown type, a handled event that is not signed by a
key registered for its source, from a source that may not publish it, that fails its
schema, or a handler that keeps failing — goes to `<topic>.dlq.<group>` with the
reason, and the consumer goes on with the next one. An event of a known type that this
group does not handle is skipped without reading its data.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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

IGNORED = "ignored"
# Records fetched at once (all partitions): a backlog is worked through in transactions of
# a few hundred events (one per partition and fetch), not of a few dozen.
FETCH_RECORDS = 500
# Threads judging one batch side by side, and the fewest messages worth a thread of their own.
JUDGE_THREADS = 2
JUDGE_AT_LEAST = 16


@dataclass(frozen=True)
class Refused:
    """A message for the dead-letter topic, and why."""

    reason: str


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
        # Judging threads of their own: fetched batches queue there, not before the store's work.
        self._judges: ThreadPoolExecutor | None = None

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
            max_poll_records=FETCH_RECORDS,
            session_timeout_ms=self.bus.settings.kafka_session_timeout_ms,
            fetch_max_wait_ms=self.bus.settings.kafka_fetch_max_wait_ms,
            heartbeat_interval_ms=max(self.bus.settings.kafka_session_timeout_ms // 4, 250),
            metadata_max_age_ms=5000,
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        if self._judges is not None:
            self._judges.shutdown(wait=False)
            self._judges = None

    async def run(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        # The next fetch is made and judged while this one is processed, so that judging (above
        # all its Ed25519 checks, which release the GIL) and the store's work overlap. Records
        # fetched ahead and not handled when the consumer stops are fetched again from the
        # committed offsets by whoever resumes; offsets are committed only after a batch's effects.
        ahead = asyncio.ensure_future(self._fetch())
        try:
            while not stop.is_set():
                fetched = await ahead
                ahead = asyncio.ensure_future(self._fetch())
                for tp, messages, judged in fetched:
                    await self.handle_batch(messages, await judged)
                    try:
                        await self.consumer.commit({tp: messages[-1].offset + 1})
                    except (CommitFailedError, KafkaError) as exc:
                        # Partition moved to another replica mid-batch: it will
                        # redeliver, and the tracking records make that harmless.
                        log.warning("%s: commit failed (%r); redelivery is deduplicated", self.group, exc)
        finally:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)

    async def _fetch(self) -> list[tuple[Any, list, asyncio.Future]]:
        """One fetch: each partition's records with their verdicts to come (`judge_all`, every
        partition's started at once, in threads)."""
        assert self.consumer is not None
        try:
            batches = await self.consumer.getmany(timeout_ms=300, max_records=FETCH_RECORDS)
        except KafkaError:
            log.exception("%s: fetch failed; retrying", self.group)
            await asyncio.sleep(1.0)
            return []
        return [(tp, messages, asyncio.ensure_future(self.judge_all(messages))) for tp, messages in batches.items()]

    def _plain_topic(self, topic: str) -> str:
        ns = self.bus.settings.namespace
        return topic[len(ns):] if ns and topic.startswith(ns) else topic

    def judge(self, value: bytes | None) -> CloudEvent | Refused | str:
        """What one message is: the accepted event (signature checked, upcast, valid), IGNORED
        (a known event this group does not handle), or Refused with the dead letter's reason."""
        try:
            obj = parse_json(value or b"")
            envelope = CloudEvent.from_dict(obj)
            registry.require_known(envelope)
            # A known event this group does not handle is skipped before its signature and data
            # are checked (most traffic on a shared topic); the groups that handle it judge it.
            if envelope.name not in self.app.handled_events:
                CONSUMED.labels(self.app.service, envelope.name, "ignored").inc()
                return IGNORED
            self.verifier.check(obj)
            return registry.accept(envelope)
        except EventRejected as exc:
            return Refused(exc.reason)
        except ContractError as exc:
            return Refused(f"contract: {exc}")

    async def judge_all(self, messages: list) -> list[CloudEvent | Refused | str]:
        """`judge` of each message, in order, in JUDGE_THREADS threads side by side."""
        if self._judges is None:
            self._judges = ThreadPoolExecutor(JUDGE_THREADS, thread_name_prefix=f"{self.group}-judge")
        loop = asyncio.get_running_loop()
        values = [m.value for m in messages]
        size = max(-(-len(values) // JUDGE_THREADS), JUDGE_AT_LEAST)
        parts = await asyncio.gather(*(loop.run_in_executor(self._judges, self._judge_many, values[i:i + size])
                                       for i in range(0, len(values), size)))
        return [verdict for part in parts for verdict in part]

    def _judge_many(self, values: list[bytes | None]) -> list[CloudEvent | Refused | str]:
        return [self.judge(v) for v in values]

    async def handle(self, topic: str, value: bytes | None, key: bytes | None, partition: int, offset: int) -> str:
        """One message on its own: judged, then processed (with retries) or dead-lettered."""
        verdict = self.judge(value)
        if isinstance(verdict, CloudEvent):
            return await self.process(verdict, topic, value, key, partition, offset)
        return await self._refuse(verdict, topic, value, key, partition, offset)

    async def handle_batch(self, messages: list, verdicts: list | None = None) -> list[str]:
        """One partition's fetched records, in order: each judged as `handle` judges it (or
        `verdicts`, what `judge_all` made of them), the accepted events processed together
        (`ServiceApplication.process_batch`), and the rest of them one at a time from where that
        stopped. The outcome of each, in order."""
        if verdicts is None:
            verdicts = await self.judge_all(messages)
        events = [v for v in verdicts if isinstance(v, CloudEvent)]
        done: list[bool] = []
        if events:
            try:
                done = await asyncio.to_thread(self.app.process_batch, events)
            except Exception as exc:  # noqa: BLE001 - e.g. the store away: one at a time, with retries
                log.warning("%s: batch of %d failed (%r); one at a time", self.group, len(events), exc)
        service, outcomes, j = self.app.service, [], 0
        for m, verdict in zip(messages, verdicts):
            if not isinstance(verdict, CloudEvent):
                outcomes.append(await self._refuse(verdict, m.topic, m.value, m.key, m.partition, m.offset))
                continue
            if j < len(done):  # its effects and tracking record are committed
                outcome = "processed" if done[j] else "duplicate"
                CONSUMED.labels(service, verdict.name, outcome).inc()
                if done[j]:
                    faults.maybe_crash("consumer_after_save", verdict.name)
            else:
                outcome = await self.process(verdict, m.topic, m.value, m.key, m.partition, m.offset)
            outcomes.append(outcome)
            j += 1
        return outcomes

    async def _refuse(self, verdict: Refused | str, topic, value, key, partition, offset) -> str:
        if verdict == IGNORED:
            return IGNORED
        await self.dead_letter(topic, value, key, partition, offset, verdict.reason)
        CONSUMED.labels(self.app.service, "unknown", "dead_lettered").inc()
        return "dead_lettered"

    async def process(self, event: CloudEvent, topic: str, value: bytes | None, key: bytes | None,
                      partition: int, offset: int) -> str:
        """One accepted event: processed once, retried on failure, dead-lettered after
        `max_attempts`."""
        service = self.app.service
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
