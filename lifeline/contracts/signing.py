"""Signed events: only a registered key of a source may speak for it (SPEC §3, issue 16).

Every CloudEvent on Lifeline's topics carries two extension attributes:

- ``keyid``: the id of the Ed25519 key that signed it, registered for the event's ``source``;
- ``signature``: base64 (RFC 4648, padded) of the Ed25519 signature over the event's canonical
  form: the JSON object as sent **without** ``signature`` (``keyid`` included), serialised with
  keys sorted, no whitespace, UTF-8 (RFC 8785 JSON canonicalisation; for Lifeline's events,
  whose keys are ASCII and numbers integers, exactly ``json.dumps(obj, sort_keys=True,
  separators=(",", ":"), ensure_ascii=False)``).

A consumer accepts an event only when its key is registered for its source, not past its
rotation window, the signature verifies, and the source may publish that type
(`may_publish`: a service its own events, a partner department records and referral answers).
Anything else is dead-lettered with a reason starting ``signature`` or ``source may not
publish``, and has no effect.

Keys: a private key per source (PKCS#8 PEM) and a directory of public-key records
(``<keyid>.json``: keyid, source, public_key as base64 of the 32 raw bytes, created_at,
not_after). `lifeline keys generate` makes them for a deployment; on the embedded default each
process generates its own source's key under ``<data_dir>/keys`` at its first start, as it does
the JWT secret. A rotation adds a new key and gives the old one a ``not_after``: both verify
until then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent, ContractError, parse_type
from lifeline.rules.departments import DEPARTMENTS

SIGNATURE = "signature"
KEYID = "keyid"
_KEYID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}", re.ASCII)


class EventRejected(ContractError):
    """An event no consumer may act on: unsigned, forged, or from a source that may not
    publish it. `reason` starts with "signature" or "source may not publish"."""


# --- who may publish what ------------------------------------------------------------------------
def services_publishing(name: str) -> set[str]:
    """The services whose own topic carries `name` (shared events: each of them)."""
    owners = {service for service, topic in T.TOPICS.items() if T.EVENT_TOPIC.get(name) == topic}
    owners.update(T.SHARED_EVENTS.get(name, ()))
    if T.EVENT_TOPIC.get(name) == T.PARTNER_REQUESTS:
        owners.add("verification")  # verification asks the departments
    return owners


def may_publish(source: str, name: str) -> bool:
    """Whether `source` may publish events of type `name`: a Lifeline service its own events, a
    partner department what departments report (records, deaths, life events, referral
    answers) and nothing else."""
    kind, _, who = source.partition("/")
    if kind == "lifeline":
        return who in services_publishing(name)
    if kind == "partner":
        return T.EVENT_TOPIC.get(name) == T.PARTNER_RECORDS
    return False


# --- keys ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicKeyRecord:
    keyid: str
    source: str
    public_key: str  # base64 of the 32 raw bytes
    created_at: str
    not_after: str | None = None  # the end of a rotation window: not accepted after it

    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))

    def expired(self, now: datetime) -> bool:
        return self.not_after is not None and now > datetime.fromisoformat(self.not_after)


def source_slug(source: str) -> str:
    """File-name form of a source: ``lifeline/intake`` -> ``lifeline-intake``."""
    return source.replace("/", "-")


def key_id(source: str, public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{source_slug(source)}-{hashlib.sha256(raw).hexdigest()[:12]}"


def _write_new(path: Path, data: bytes) -> bool:
    """Create `path` with `data` (mode 0600) unless it exists: written whole to a temporary file
    and linked into place, so a process starting at the same moment reads all of it or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _now() -> datetime:
    from lifeline.domain.clock import SystemClock

    return SystemClock().now()


class KeyDirectory:
    """A deployment's keys in one directory: ``<source-slug>.ed25519`` private keys (each
    process reads only its own) and ``public/<keyid>.json`` records (every consumer reads all).
    Directory 0700, files 0600."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.public_dir = self.path / "public"

    def _ensure(self) -> None:
        for d in (self.path, self.public_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    def private_path(self, source: str) -> Path:
        return self.path / f"{source_slug(source)}.ed25519"

    def generate(self, source: str, not_after_for_others: datetime | None = None) -> PublicKeyRecord:
        """A new key for `source`; with `not_after_for_others`, its earlier keys are accepted until
        then only (a rotation). Its private key replaces the one the source signs with."""
        self._ensure()
        private = Ed25519PrivateKey.generate()
        record = self._record(source, private)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        if not_after_for_others is not None:
            for old in self.records():
                if old.source == source and old.not_after is None:
                    self._write_record(PublicKeyRecord(**{**asdict(old),
                                                          "not_after": not_after_for_others.isoformat()}))
        self._write_record(record)
        target = self.private_path(source)
        tmp = target.with_name(f".{target.name}.new")
        tmp.write_bytes(pem)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        return record

    def ensure(self, source: str) -> PublicKeyRecord:
        """The source's key, generated at its first use when there is none (embedded default):
        processes starting together agree on the first one written."""
        self._ensure()
        target = self.private_path(source)
        if not target.exists():
            private = Ed25519PrivateKey.generate()
            record = self._record(source, private)
            # The public record first: a consumer may meet the key's first event at once.
            self._write_record(record)
            pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            if _write_new(target, pem):
                return record
            (self.public_dir / f"{record.keyid}.json").unlink(missing_ok=True)  # another process won
        return self._record(source, self.private_key(source))

    def private_key(self, source: str) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.private_path(source).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{self.private_path(source)}: not an Ed25519 private key")
        return key

    def _record(self, source: str, private: Ed25519PrivateKey) -> PublicKeyRecord:
        public = private.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKeyRecord(key_id(source, public), source, base64.b64encode(raw).decode("ascii"),
                               _now().isoformat(timespec="seconds"))

    def _write_record(self, record: PublicKeyRecord) -> None:
        path = self.public_dir / f"{record.keyid}.json"
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_text(json.dumps(asdict(record), ensure_ascii=False, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def record(self, keyid: str) -> PublicKeyRecord | None:
        """The public record `public/<keyid>.json`, or None (absent, unreadable, or not that key)."""
        try:
            found = PublicKeyRecord(**json.loads((self.public_dir / f"{keyid}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return found if found.keyid == keyid else None

    def records(self) -> list[PublicKeyRecord]:
        out = []
        if self.public_dir.is_dir():
            for path in sorted(self.public_dir.glob("*.json")):
                try:
                    out.append(PublicKeyRecord(**json.loads(path.read_text())))
                except (OSError, ValueError, TypeError):
                    continue  # half-written or foreign: not a key anyone may sign with
        return out

    def signer(self, source: str, generate: bool) -> "Signer":
        """The signer of `source`: its newest registered key (generated first when `generate`)."""
        record = self.ensure(source) if generate else None
        private = self.private_key(source)
        if record is None:
            record = self._record(source, private)
        return Signer(source, private, record.keyid)


# --- signing -------------------------------------------------------------------------------------
def canonical(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the event object as sent, but for the signature itself."""
    body = {k: v for k, v in obj.items() if k != SIGNATURE}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class Signer:
    """Signs the events one source publishes."""

    def __init__(self, source: str, private: Ed25519PrivateKey, keyid: str):
        self.source = source
        self.private = private
        self.keyid = keyid

    def sign(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The event object with its keyid and signature (over the object with the keyid: a
        signature cannot be moved to another key's name)."""
        out = {k: v for k, v in obj.items() if k not in (SIGNATURE, KEYID)}
        out[KEYID] = self.keyid
        out[SIGNATURE] = base64.b64encode(self.private.sign(canonical(out))).decode("ascii")
        return out

    def signed_json(self, event: CloudEvent) -> bytes:
        """What a producer sends: the event as JSON, signed."""
        if event.source != self.source:
            raise ValueError(f"{self.source} cannot sign an event of {event.source}")
        return json.dumps(self.sign(event.to_dict()), ensure_ascii=False, separators=(",", ":"),
                          sort_keys=True).encode("utf-8")


# --- verifying -----------------------------------------------------------------------------------
class Verifier:
    """Checks events against the registered public keys. A key id it has not seen is looked up
    in the directory at once (a process started later registered it a moment before its first
    event); the whole directory is read again now and then for rotation windows set since."""

    REREAD_SECONDS = 60.0

    def __init__(self, keys: KeyDirectory, now=_now):
        self.keys = keys
        self.now = now
        self._records: dict[str, PublicKeyRecord] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        records = {r.keyid: r for r in self.keys.records()}
        with self._lock:
            self._records = records
            self._public = {}
            self._loaded_at = time.monotonic()

    def record(self, keyid: str) -> PublicKeyRecord | None:
        if time.monotonic() - self._loaded_at >= self.REREAD_SECONDS:
            self._reload()
        found = self._records.get(keyid)
        if found is None:
            found = self.keys.record(keyid)  # keyid is checked against _KEYID_RE: a plain file name
            if found is not None:
                with self._lock:
                    self._records[keyid] = found
        return found

    def check(self, obj: Mapping[str, Any]) -> None:
        """EventRejected unless `obj` (a received event object) is signed by a key registered for
        its source and the source may publish its type."""
        keyid, signature, source = obj.get(KEYID), obj.get(SIGNATURE), obj.get("source")
        if not isinstance(keyid, str) or not isinstance(signature, str) or not signature:
            raise EventRejected("signature: missing (the keyid and signature attributes)")
        if not _KEYID_RE.fullmatch(keyid):
            raise EventRejected("signature: malformed keyid")
        record = self.record(keyid)
        if record is None:
            raise EventRejected(f"signature: unknown key {keyid}")
        if record.source != source:
            raise EventRejected(f"signature: key {keyid} is not registered for the event's source")
        if record.expired(self.now()):
            raise EventRejected(f"signature: key {keyid} expired at {record.not_after}")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise EventRejected("signature: not base64") from None
        public = self._public.get(keyid)
        if public is None:
            public = self._public[keyid] = record.key()
        try:
            public.verify(raw, canonical(obj))
        except InvalidSignature:
            raise EventRejected("signature: does not verify (changed or forged)") from None
        try:
            name = parse_type(obj.get("type"))[0]
        except ContractError:
            return  # the envelope check names it
        if not may_publish(source, name):
            raise EventRejected(f"source may not publish: {source} may not publish {name}")


# --- the sources of a deployment -----------------------------------------------------------------
def lifeline_sources() -> list[str]:
    return [f"lifeline/{service}" for service in T.TOPICS]


def partner_sources(departments: Iterable[str] = DEPARTMENTS) -> list[str]:
    return [f"partner/{d}" for d in departments]


def generation_window(days: int) -> datetime:
    return _now() + timedelta(days=days)
