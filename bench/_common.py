"""Shared pieces of the benchmarks: infrastructure, settings, test data, figures.

Nothing here is imported by Lifeline itself; the benchmarks only *use* the
project's own classes (EmbeddedBroker, RealKafka, RealPostgres, Settings,
event_store_env, SideStore, Bus) exactly as a service process does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from lifeline.dev.embedded import EmbeddedBroker, free_port  # noqa: E402
from lifeline.rules.ids import make_resident_id  # noqa: E402
from lifeline.settings import Settings  # noqa: E402
from tests.harness import household  # noqa: E402  - the same valid body the e2e tests submit

VILLAGE = "370502101001"


def common_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--broker", choices=("embedded", "real"), default="embedded",
                   help="embedded: Tansu on a free port; real: Apache Kafka (RealKafka) in a temp dir")
    p.add_argument("--events", type=int, default=2000, help="events per measured run (default 2000)")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                   help="event store of the service application (postgres: RealPostgres in a temp dir)")
    p.add_argument("--repeat", type=int, default=3, help="measured runs per variant; the median is reported")
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic (default 3, as Lifeline)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, stores) for inspection")
    return p


def machine_line() -> str:
    return (f"{platform.node()} · {os.cpu_count()} cores · {platform.platform(terse=True)} · "
            f"Python {platform.python_version()}")


def resident_ids(i: int) -> list[str]:
    """Two valid, distinct resident ID numbers for application number i."""
    born = date(1950, 1, 1) + timedelta(days=i // 250)
    seq = (i % 250) * 2
    return [make_resident_id("370502", born, seq, False),
            make_resident_id("370502", born - timedelta(days=10000), seq + 1, True)]


def application_body(i: int) -> dict:
    """The intake form (the API's validated body, defaults included)."""
    from services.intake.api import ApplicationIn

    return ApplicationIn(**household(resident_ids(i), VILLAGE)).model_dump()


@dataclass
class Infra:
    root: Path
    bootstrap: str
    database_url: str
    broker_kind: str
    database_kind: str
    startup_s: dict

    def settings(self, tag: str) -> Settings:
        """Settings for one isolated run: its own data dir, topic namespace, PG schemas."""
        data_dir = self.root / "data" / tag
        env = {
            "LIFELINE_DATA_DIR": str(data_dir),
            "LIFELINE_KAFKA_BOOTSTRAP": self.bootstrap,
            "LIFELINE_DATABASE_URL": self.database_url,
            "LIFELINE_NAMESPACE": f"{tag}.",
            "LIFELINE_DB_SCHEMA_PREFIX": tag.replace("-", "_"),
            "LIFELINE_PARTITIONS": str(self._partitions),
            # Real Kafka refuses less than 6 s; Tansu is happy with the default too.
            "LIFELINE_KAFKA_SESSION_TIMEOUT_MS": "10000",
            "LIFELINE_REDIS_URL": "redis://127.0.0.1:1/0",  # unused: no HTTP edge here
        }
        return Settings.from_env(env)

    _partitions: int = 3


@contextlib.contextmanager
def infrastructure(args: argparse.Namespace, label: str) -> Iterator[Infra]:
    """Start the broker (and PostgreSQL) the arguments ask for; stop them afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"lifeline-bench-{label}-", dir="/tmp"))
    root.chmod(0o711)  # as root, RealPostgres runs as user postgres and must traverse it
    started: list = []
    startup: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        if args.broker == "embedded":
            broker = EmbeddedBroker(port=free_port(), log_path=root / "tansu.log")
        else:
            from lifeline.dev.realinfra import RealKafka

            broker = RealKafka(root / "kafka", partitions=args.partitions,
                               jars_dir=Settings.from_env().kafka_jars_dir)
        started.append(broker)
        broker.start()
        startup["broker"] = time.perf_counter() - t0
        database_url = ""
        if args.database == "postgres":
            from lifeline.dev.realinfra import RealPostgres

            t0 = time.perf_counter()
            pg = RealPostgres(root / "postgres")
            started.append(pg)
            pg.start()
            startup["postgres"] = time.perf_counter() - t0
            database_url = pg.url
        infra = Infra(root, broker.bootstrap, database_url, args.broker, args.database, startup)
        infra._partitions = args.partitions
        yield infra
    finally:
        for thing in reversed(started):
            with contextlib.suppress(Exception):
                thing.stop()
        keep_or_remove(root, args.keep)


def keep_or_remove(root: Path, keep: bool) -> None:
    """A benchmark's work directory at its end: kept (and named) or removed."""
    if keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def payment_store(root: Path, database: str) -> tuple[Settings, Any, Any, Any, Any]:
    """Payment's event store and read models as its service opens them, under `root`, on the test
    clock: (settings, application, side store, projection, the RealPostgres or None). On
    PostgreSQL the caller stops the server at its end."""
    from services.payment.bootstrap import SPEC
    from lifeline.stores.projection import Projection
    from lifeline.stores.sidestore import SideStore

    env = {"LIFELINE_DATA_DIR": str(root / "data"), "LIFELINE_REDIS_URL": "redis://127.0.0.1:1/0",
           "LIFELINE_TEST_CLOCK": "1"}
    pg = None
    if database == "postgres":
        from lifeline.dev.realinfra import RealPostgres

        pg = RealPostgres(root / "postgres")
        pg.start()
        env["LIFELINE_DATABASE_URL"] = pg.url
    try:
        settings = Settings.from_env(env)
        app = SPEC.application(settings)
        side = SideStore(settings, "payment")
        projection = Projection(app, side, SPEC.project, SPEC.views_version)
        projection.ensure_version()
    except BaseException:
        if pg is not None:
            pg.stop()
        raise
    return settings, app, side, projection, pg


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f} ev/s"


def timers(spent: dict[str, float]):
    """Wrappers that add the time spent in a sync or async callable to spent[name]."""

    def timed_sync(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    def timed_async(name, fn):
        async def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return await fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    return timed_sync, timed_async
