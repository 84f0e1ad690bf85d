"""A service's own log, sealed: the head of its hash chain (lifeline/stores/chain.py) recorded
in the log and published as `LogSealed` on the service's topic, so that what was published
pins what the store must still hash to (`lifeline audit verify`).

One `LogSeal` aggregate per service. A seal recorded at log position P covers the log up to the
head it names (`notification_id` < P): never itself, since its own hash cannot be known before
it is written. The next seal covers the previous one.
"""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta


class LogSeal(LifelineAggregate):
    id_kind = "log-seal"

    class Opened(LifelineAggregate.Created):
        service: str

    class Sealed(LifelineAggregate.Event):
        """Published as LogSealed.v1 (the same fields)."""

        service: str
        notification_id: int  # the last event the seal covers
        head_hash: str  # that event's chain hash, 64 hex digits
        events: int  # chained events up to and including it
        sealed_at: str

        def apply(self, seal: "LogSeal") -> None:
            seal.notification_id = self.notification_id
            seal.head_hash = self.head_hash

    @classmethod
    def open(cls, service: str) -> "LogSeal":
        by = Meta(f"system:{service}", "system")
        return cls._create(cls.Opened, id=cls.create_id(service), service=service, meta=by.as_dict())

    def __init__(self, service: str, **recorded: Any):
        self.service = service
        self.notification_id = 0
        self.head_hash = ""

    def seal(self, notification_id: int, head_hash: str, events: int, sealed_at: str) -> None:
        self.trigger_event(self.Sealed, service=self.service, notification_id=notification_id,
                           head_hash=head_hash, events=events, sealed_at=sealed_at,
                           meta=Meta(f"system:{self.service}", "system").as_dict())
