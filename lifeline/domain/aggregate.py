"""The domain's shared building blocks: ids, who acted and why, aggregates.

- `Meta`: who did it and what caused it, carried by every domain event so the
  audit trail and the CloudEvent envelope (actor, correlationid, causationid)
  come from the stored event itself.
- `LifelineAggregate`: the base of every service's aggregates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, datetime_now_with_tzinfo

from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.clock import current_unit


def new_id(prefix: str) -> str:
    """Readable, unique business ids (case C-…, referral R-…). While a consumed event is handled
    (clock.one_moment) they derive from that event's id, so handling it again mints the same."""
    unit = current_unit()
    if unit is None:
        return f"{prefix}-{uuid.uuid4().hex[:20].upper()}"
    unit.minted += 1
    digest = hashlib.sha256(f"{unit.cause}\0{prefix}\0{unit.minted}".encode()).hexdigest()
    return f"{prefix}-{digest[:20].upper()}"


def aggregate_id(kind: str, business_id: str) -> uuid.UUID:
    """uuid5(NAMESPACE_URL, "lifeline:<kind>:<business id>").

    Deterministic: the same business id always names the same aggregate, which makes a
    repeated command collide in the store instead of doubling. Computed from a hash of the
    prefix kept per kind (the same value as `uuid.uuid5`, in half the time: a payment run
    derives a million)."""
    prefix = _PREFIXES.get(kind)
    if prefix is None:
        prefix = _PREFIXES[kind] = hashlib.sha1(uuid.NAMESPACE_URL.bytes + f"lifeline:{kind}:".encode())
    digest = prefix.copy()
    digest.update(business_id.encode())
    value = int.from_bytes(digest.digest()[:16], "big")
    return uuid.UUID(int=(value & _CLEAR_VERSION) | _VERSION_5)


_PREFIXES: dict[str, Any] = {}
# RFC 4122 version 5 and variant bits, as uuid.UUID(version=5) sets them.
_CLEAR_VERSION = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_5 = (5 << 76) | (0x8000 << 48)


@dataclass(frozen=True)
class Meta:
    user_id: str
    role: str
    org_code: str = ""
    correlation_id: str = ""
    causation_id: str = ""
    reason: str = ""

    def actor(self) -> dict[str, str]:
        return {"user_id": self.user_id, "role": self.role, "org_code": self.org_code}

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, principal: Any, reason: str = "") -> "Meta":
        """Meta for a person's command: the authenticated caller acts."""
        return cls(principal.user_id, principal.role.value, principal.org_code or "", reason=reason)

    @classmethod
    def caused_by(cls, event: CloudEvent, service: str) -> "Meta":
        """Meta for an effect of a consumed event: the service acts, the chain goes on."""
        return cls(
            user_id=f"system:{service}",
            role="system",
            org_code="",
            correlation_id=event.correlationid or event.id,
            causation_id=event.id,
        )


class LifelineAggregate(Aggregate):
    """Events carry `meta` (who, why, what caused it); aggregates are created through
    their own class methods, with ids from `create_id` where a natural key exists."""

    # What a class's natural key names (e.g. "case"): `create_id(key...)` derives the
    # aggregate id from it, so a repeated command or event collides in the store
    # instead of making a second aggregate.
    id_kind: ClassVar[str] = ""

    @classmethod
    def create_id(cls, *natural_key: str) -> uuid.UUID:
        if not cls.id_kind:
            raise NotImplementedError(f"{cls.__name__} has no natural key")
        return aggregate_id(cls.id_kind, ":".join(natural_key))

    class Event(Aggregate.Event):
        meta: dict[str, str]

        @staticmethod
        def create_timestamp() -> datetime:
            # One stored timestamp for the events of one consumed event's handling (clock.one_moment).
            unit = current_unit()
            return unit.stamp if unit is not None else datetime_now_with_tzinfo()
