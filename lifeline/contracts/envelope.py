"""The CloudEvents 1.0 envelope every Lifeline event travels in (SPEC §3).

Structured JSON mode: the Kafka message value is one JSON object holding the
context attributes and the payload in ``data``. Extensions (CloudEvents requires
lowercase alphanumeric names): ``correlationid``, ``causationid``, ``actor`` and
``sequence``. ``actor`` is an object (user_id, role, org_code) by the SPEC's
choice, although CloudEvents extension values are normally scalars.

This module checks the envelope only; the payload is checked against its JSON
Schema in :mod:`lifeline.contracts.registry`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"
TYPE_PREFIX = "cn.gov.mca.lifeline."

_TYPE_RE = re.compile(r"cn\.gov\.mca\.lifeline\.([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)", re.ASCII)
_SOURCE_RE = re.compile(r"(lifeline/[a-z][a-z0-9_-]*|partner/[a-z][a-z0-9_]*)", re.ASCII)
# RFC 3339 date-time: the offset is mandatory (Z or +hh:mm).
_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


class ContractError(ValueError):
    """A message does not honour the event contract. ``reason`` says why.

    Reasons name attributes and JSON paths but never echo values, because
    payloads carry personal data and reasons end up in logs and dead-letter
    headers.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def event_type(name: str, version: int) -> str:
    """``event_type("BenefitApproved", 1) == "cn.gov.mca.lifeline.BenefitApproved.v1"``."""
    t = f"{TYPE_PREFIX}{name}.v{version}"
    if isinstance(version, bool) or not isinstance(version, int) or not _TYPE_RE.fullmatch(t):
        raise ContractError(f"invalid event name/version: {name!r} v{version!r}")
    return t


def parse_type(type_: str) -> tuple[str, int]:
    """Split a CloudEvents ``type`` into (EventName, version)."""
    m = _TYPE_RE.fullmatch(type_) if isinstance(type_, str) else None
    if m is None:
        raise ContractError(f"unparseable event type {type_!r}")
    return m.group(1), int(m.group(2))


def is_datetime_with_offset(value: object) -> bool:
    """RFC 3339 date-time with an explicit offset (used for ``time`` and ``format: date-time``)."""
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13, hour 25
        return False
    return True


def now_iso() -> str:
    """Current time in Asia/Shanghai, millisecond precision, with offset."""
    from lifeline.domain.clock import SystemClock

    return SystemClock().now().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Actor:
    """Who caused the event: a person, or ``system`` for automated steps."""

    user_id: str
    role: str
    org_code: str

    def to_dict(self) -> dict[str, str]:
        return {"user_id": self.user_id, "role": self.role, "org_code": self.org_code}

    @classmethod
    def coerce(cls, value: "Actor | Mapping[str, Any]") -> "Actor":
        if isinstance(value, Actor):
            actor = value
        elif isinstance(value, Mapping):
            missing = [k for k in ("user_id", "role", "org_code") if k not in value]
            if missing:
                raise ContractError(f"actor: missing {', '.join(missing)}")
            actor = cls(value["user_id"], value["role"], value["org_code"])
        else:
            raise ContractError("actor: must be an object with user_id, role, org_code")
        for name in ("user_id", "role"):
            v = getattr(actor, name)
            if not isinstance(v, str) or not v:
                raise ContractError(f"actor.{name}: must be a non-empty string")
        # org_code may be empty: automated (system) steps act for no office.
        if not isinstance(actor.org_code, str):
            raise ContractError("actor.org_code: must be a string")
        return actor


@dataclass(frozen=True)
class CloudEvent:
    """One event in CloudEvents 1.0 structured JSON mode.

    Construction validates the envelope (not ``data``; see registry.validate).
    ``actor`` may be given as an :class:`Actor` or a plain mapping.
    ``data`` is a dict, so instances are not hashable; treat it as read-only.
    """

    id: str
    source: str
    type: str
    subject: str
    time: str
    data: dict[str, Any] = field(hash=False)
    correlationid: str
    actor: Actor
    sequence: int
    causationid: str | None = None
    datacontenttype: str = DATACONTENTTYPE
    specversion: str = SPECVERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "actor", Actor.coerce(self.actor))
        _require_uuid("id", self.id)
        if not isinstance(self.source, str) or not _SOURCE_RE.fullmatch(self.source):
            raise ContractError("source: must be lifeline/<service> or partner/<department>")
        parse_type(self.type)
        _require_str("subject", self.subject)
        if not is_datetime_with_offset(self.time):
            raise ContractError("time: must be an ISO 8601 / RFC 3339 date-time with offset")
        if not isinstance(self.data, dict):
            raise ContractError("data: must be a JSON object")
        _require_str("correlationid", self.correlationid)
        if self.causationid is not None:
            _require_str("causationid", self.causationid)
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int) or self.sequence < 1:
            raise ContractError("sequence: must be an integer >= 1")
        if self.datacontenttype != DATACONTENTTYPE:
            raise ContractError(f"datacontenttype: must be {DATACONTENTTYPE!r}")
        if self.specversion != SPECVERSION:
            raise ContractError(f"specversion: must be {SPECVERSION!r}")

    @property
    def name(self) -> str:
        return parse_type(self.type)[0]

    @property
    def version(self) -> int:
        return parse_type(self.type)[1]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
            "correlationid": self.correlationid,
            "actor": self.actor.to_dict(),
            "sequence": self.sequence,
            "data": self.data,
        }
        # CloudEvents: an absent attribute is omitted, not null.
        if self.causationid is not None:
            d["causationid"] = self.causationid
        return d

    def to_json(self) -> bytes:
        """UTF-8 JSON, compact, keys sorted so equal events give equal bytes (hash chains)."""
        return json.dumps(
            self.to_dict(), ensure_ascii=False, separators=(",", ":"), sort_keys=True
        ).encode("utf-8")

    @classmethod
    def from_dict(cls, obj: Any) -> "CloudEvent":
        if not isinstance(obj, dict):
            raise ContractError("envelope: must be a JSON object")
        required = ("specversion", "id", "source", "type", "subject", "time",
                    "datacontenttype", "data", "correlationid", "actor", "sequence")
        missing = [k for k in required if k not in obj]
        if missing:
            raise ContractError(f"envelope: missing attribute(s) {', '.join(missing)}")
        # Unknown extension attributes are ignored (CloudEvents: consumers must
        # tolerate extensions they do not understand).
        try:
            return cls(
                id=obj["id"], source=obj["source"], type=obj["type"], subject=obj["subject"],
                time=obj["time"], data=obj["data"], correlationid=obj["correlationid"],
                actor=obj["actor"], sequence=obj["sequence"], causationid=obj.get("causationid"),
                datacontenttype=obj["datacontenttype"], specversion=obj["specversion"],
            )
        except TypeError as exc:  # pragma: no cover - defensive
            raise ContractError(f"envelope: {exc}") from None

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview | str) -> "CloudEvent":
        return cls.from_dict(parse_json(raw))


def parse_json(raw: bytes | bytearray | memoryview | str) -> Any:
    """A message's JSON value (ContractError when it is not JSON)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ContractError(f"not JSON: {type(exc).__name__}") from None


def _require_str(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ContractError(f"{name}: must be a non-empty string")


def _require_uuid(name: str, value: object) -> None:
    _require_str(name, value)
    try:
        uuid.UUID(value)  # type: ignore[arg-type]
    except ValueError:
        raise ContractError(f"{name}: must be a UUID") from None
