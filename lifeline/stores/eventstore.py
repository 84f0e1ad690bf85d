"""Event-store configuration for a service's eventsourcing application.

SQLite under the data directory by default, PostgreSQL when a database URL is
configured (one schema per service, so stores stay separate even when they share
a server). Tracking is multi-row: a consumed event is remembered by its own
identity (source service, position in that service's log), not by "the highest
position seen", because events from one source reach us over several partitions
and in any order. Stored events are compressed and encrypted on every configuration
(the key from LIFELINE_CIPHER_KEY, or the data directory's secret), and hash-chained by the
recorder (lifeline/stores/chain.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from urllib.parse import unquote, urlparse

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import Compressor
from eventsourcing.utils import Environment

from lifeline.settings import Settings
from lifeline.stores.sealing import lifeline_secret


class SmallStatesPlain(Compressor):
    """zlib for a stored state of 1 KiB or more; a smaller one is stored as it is.

    Most events are a few hundred bytes, which zlib barely shrinks (825 bytes to 400 for a
    payment) at a cost that dominated a million-payment run: setting up its 256 KiB of state
    for every event. A state is JSON, which starts with `{`; zlib's header never does, so
    states written by the library's ZlibCompressor still read.
    """

    threshold = 1024

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 1) if len(data) >= self.threshold else data

    def decompress(self, data: bytes) -> bytes:
        return data if data[:1] == b"{" else zlib.decompress(data)


class KeptKeyAESCipher(AESCipher):
    """The library's `cryptography` AES-GCM cipher with its key schedule set up once rather
    than for every event (half its cost); the same stored form: nonce, tag, ciphertext."""

    def __init__(self, environment: Environment):
        super().__init__(environment)
        self._aesgcm = AESGCM(self.key)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        sealed = self._aesgcm.encrypt(nonce, plaintext, None)
        return nonce + sealed[-16:] + sealed[:-16]

    def decrypt(self, ciphertext: bytes) -> bytes:
        nonce, tag, body = ciphertext[:12], ciphertext[12:28], ciphertext[28:]
        if len(nonce) != 12 or len(tag) != 16:
            raise ValueError("Damaged cipher text: invalid nonce or tag length")
        try:
            return self._aesgcm.decrypt(nonce, body + tag, None)
        except InvalidTag as e:
            raise ValueError("Invalid cipher tag") from e


def schema_name(settings: Settings, service: str) -> str:
    return f"{settings.db_schema_prefix}_{service}".replace("-", "_").replace(".", "_")


def cipher_key(settings: Settings) -> str:
    """AES key for eventsourcing's AESCipher, derived from the configured secret
    (LIFELINE_CIPHER_KEY, or in the embedded mode the data directory's sealing.secret,
    generated once and shared by every process of that Lifeline).

    Operators give any secret string; AES-256 needs exactly 32 bytes, so we
    derive them (SHA-256) rather than ask people to generate base64 keys.
    """
    digest = hashlib.sha256(lifeline_secret(settings).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def event_store_env(settings: Settings, service: str) -> dict[str, str]:
    env: dict[str, str] = {"SINGLE_ROW_TRACKING": "n"}
    if settings.database_url:
        url = urlparse(settings.database_url)
        if url.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"unsupported database URL scheme: {url.scheme!r}")
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": url.path.lstrip("/") or "lifeline",
                "POSTGRES_HOST": url.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": unquote(url.username or "lifeline"),
                "POSTGRES_PASSWORD": unquote(url.password or ""),
                "POSTGRES_SCHEMA": schema_name(settings, service),
                "POSTGRES_POOL_SIZE": "5",
                "POSTGRES_MAX_OVERFLOW": "10",
                "POSTGRES_CONN_MAX_AGE": "300",
                "POSTGRES_PRE_PING": "y",
            }
        )
        ensure_postgres_schema(settings, service)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(settings.data_dir / f"{service}.events.sqlite"),
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        )
    # Encrypted at rest always: with LIFELINE_CIPHER_KEY, or on the embedded default with the
    # data directory's own secret. Compress (large states) before encrypting: ciphertext does not compress.
    # The `cryptography` AES-GCM cipher: the same stored form (nonce, tag, ciphertext) as the
    # library's pycryptodome one, which older stores were written with, at a fraction of the cost.
    env["COMPRESSOR_TOPIC"] = "lifeline.stores.eventstore:SmallStatesPlain"
    env["CIPHER_TOPIC"] = "lifeline.stores.eventstore:KeptKeyAESCipher"
    env["CIPHER_KEY"] = cipher_key(settings)
    return env


def ensure_postgres_schema(settings: Settings, service: str) -> None:
    # eventsourcing creates tables but expects the schema to exist already.
    import psycopg

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema_name(settings, service)}"')
