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
from urllib.parse import unquote, urlparse

from lifeline.settings import Settings
from lifeline.stores.sealing import lifeline_secret


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
    # data directory's own secret. Compress before encrypting: ciphertext does not compress.
    # The `cryptography` AES-GCM cipher: the same stored form (nonce, tag, ciphertext) as the
    # library's pycryptodome one, which older stores were written with, at a fraction of the cost.
    env["COMPRESSOR_TOPIC"] = "eventsourcing.compressor:ZlibCompressor"
    env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
    env["CIPHER_KEY"] = cipher_key(settings)
    return env


def ensure_postgres_schema(settings: Settings, service: str) -> None:
    # eventsourcing creates tables but expects the schema to exist already.
    import psycopg

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema_name(settings, service)}"')
