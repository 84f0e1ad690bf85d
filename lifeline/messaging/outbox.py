"""Transactional outbox: a service's own event log, relayed to Kafka.

The event store *is* the outbox: an event is in the log the moment its
aggregate is saved, in the same transaction. The relay reads the log from the
position after the last one it published, sends each public event (acks=all,
keyed by case id so one household's events stay in one partition, in order),
waits for every acknowledgement, and only then saves the new position. A crash
in between re-sends events the broker may already have: consumers deduplicate
by (source, sequence), so the effect stays single.

`rewind(position)` makes the relay publish again from an earlier point, e.g.
to seed a new cluster or after the memory-only embedded broker restarted.

With several replicas of a service, one relay at a time holds a lease (beside
the position) and publishes; the others stand by and take over when the lease
runs out, e.g. after a kill -9. Two relays publishing at once would still be
correct (duplicates), only wasteful.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.contracts.signing import Signer
from lifeline.ops import faults
from lifeline.stores.application import ServiceApplication
from lifeline.messaging.outbound import Outbound
from lifeline.messaging.kafka import Bus
from lifeline.ops.metrics import PUBLISHED
from lifeline.stores.sidestore import SideStore
from lifeline.rules.periods import SHANGHAI

log = logging.getLogger(__name__)

POSITION = "outbox"


def to_cloud_events(
    service: str, notification_id: int, event: Any, outbound: Outbound
) -> list[tuple[str, str, CloudEvent]]:
    """(topic, key, CloudEvent) for each place a stored event is published to."""
    out = outbound(event)
    if out is None:
        return []
    meta = getattr(event, "meta", {}) or {}
    cloud_event = registry.new_event(
        out.name,
        out.data,
        subject=out.subject,
        source=f"lifeline/{service}",
        sequence=notification_id,
        actor={
            "user_id": meta.get("user_id", f"system:{service}"),
            "role": meta.get("role", "system"),
            "org_code": meta.get("org_code", ""),
        },
        correlationid=meta.get("correlation_id") or None,
        causationid=meta.get("causation_id") or None,
        time=event.timestamp.astimezone(SHANGHAI).isoformat(),
        # Stable id: a republished event is the same CloudEvent, not a new one.
        id=str(_event_uuid(service, notification_id)),
    )
    # Topics and key come from the contract (topics.py, mirrored by asyncapi.yaml).
    key = T.key_for(out.name, out.subject, out.data)
    return [(topic, key, cloud_event) for topic in T.topics_for(out.name, service)]


def _event_uuid(service: str, notification_id: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"lifeline:{service}:{notification_id}")


class OutboxRelay:
    def __init__(self, app: ServiceApplication, side: SideStore, bus: Bus, signer: Signer, batch_size: int = 200,
                 lease_seconds: float = 10.0):
        self.app = app
        self.signer = signer
        self.side = side
        self.bus = bus
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wakeup = asyncio.Event()

    def is_leader(self) -> bool:
        with self.side.transaction() as tx:
            return tx.take_lease(POSITION, self.holder, time.time(), self.lease_seconds)

    def resign(self) -> None:
        """On a clean stop: let a standby replica take over at once."""
        with self.side.transaction() as tx:
            tx.release_lease(POSITION, self.holder)

    def position(self) -> int:
        with self.side.transaction() as tx:
            return tx.position(POSITION)

    def rewind(self, position: int = 0) -> None:
        with self.side.transaction() as tx:
            tx.set_position(POSITION, position)

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many log entries it moved past."""
        start = await asyncio.to_thread(self.position)
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications, start + 1, self.batch_size
        )
        if not notifications:
            return 0
        acks, names = [], []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            for topic, key, cloud_event in to_cloud_events(self.app.service, notification.id, event, self.app.outbound):
                acks.append(await self.bus.send(topic, self.signer.signed_json(cloud_event), key))
                names.append(cloud_event.name)
                faults.maybe_crash("relay_after_send", cloud_event.name)
        await asyncio.gather(*acks)
        for name in names:
            PUBLISHED.labels(self.app.service, name).inc()
        faults.maybe_crash("relay_before_save", "*")
        last = notifications[-1].id
        await asyncio.to_thread(self._save, last)
        return len(notifications)

    def _save(self, position: int) -> None:
        with self.side.transaction() as tx:
            # Only forward: a concurrent rewind by an operator wins.
            if tx.position(POSITION) < position:
                tx.set_position(POSITION, position)

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.2) -> None:
        while not stop.is_set():
            try:
                leader = await asyncio.to_thread(self.is_leader)
                moved = await self.publish_pending() if leader else 0
            except asyncio.CancelledError:
                raise
            except Exception:  # broker away: keep the position, try again
                log.exception("outbox relay of %s failed; retrying", self.app.service)
                moved = 0
                await asyncio.sleep(1.0)
            if not moved:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), idle_seconds)
                except asyncio.TimeoutError:
                    pass
