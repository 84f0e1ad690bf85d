"""`lifeline replay payment` over a log of N events: read models rebuilt from the whole log.

    .venv/bin/python bench/replay.py                     # N = 1,000,000 on SQLite
    .venv/bin/python bench/replay.py --events 200000 --database postgres

What is measured
  setup     a PaymentApplication on its real event store (SQLite under a temp data dir, or a
            PostgreSQL schema; encrypted and hash-chained, the default) holding a log of about N
            events as months of payments make it: N/10 monthly entitlements opened
            (`Entitlement.from_benefit`, each with its own sealed account; saved with `save_unit`),
            then one payment run a month over them (`start_run` + `RunEngine.advance`: a
            Payment.Instructed per entitlement, the bank batches, the run's own events) until the
            log holds about N; the live read models projected. `--entitlements E` opens E instead
            (E = N/2: one run, half the log openings). Reported, not part of the figure.
  replay    what `lifeline replay payment` does (lifeline/cli.py): `rebuild` — every event of the
            log read by a process of its own (LogReader: pages of 10,000 straight from the events
            table, decrypted and decompressed there), decoded here without the library's generic
            transcoder and projected by payment's `project` into a fresh store (PageTx: a page's
            documents written in one statement); then `compare` with the live read models,
            document by document, timed apart. CPU seconds of this process and of the reading one.
  baseline  the library's path, as `Projection.catch_up` was before: each notification through
            the application's mapper (`mapper.to_domain_event`), each document read and written
            alone (spelt by json.dumps), 500 events per transaction; over a sample of the same log
            (ten stretches evenly spread: the same mix of events), into a fresh store.
  ratio     replay rate / baseline rate.

The last line is the figure: `replay: N events in S s = R/s; mapper baseline B/s; ratio X`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import payment_run as P  # noqa: E402  - the same seeded entitlements and run

from lifeline.audit.progress import Progress  # noqa: E402
from lifeline.settings import Settings  # noqa: E402
from lifeline.stores.projection import Projection, compare, rebuild  # noqa: E402
from lifeline.stores.sealing import sealer_for  # noqa: E402
from lifeline.stores.sidestore import SideStore, SideTx  # noqa: E402
from services.payment.bootstrap import SPEC  # noqa: E402
from services.payment.files import FileWriter  # noqa: E402
from services.payment.runs import RunEngine  # noqa: E402


def next_period(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12}-{month % 12 + 1:02d}"


def seed(app, projection: Projection, settings: Settings, root: Path, entitlements: int,
         runs: int) -> float:
    """`entitlements` opened, then `runs` monthly payment runs over them, one period after another."""
    t0 = time.perf_counter()
    sealer = sealer_for(settings)
    P.seed(app, projection.side, projection, sealer, entitlements)  # with the first period's budgets
    engine = RunEngine(app, projection.side, projection, FileWriter(sealer, processes=1), root / "files",
                       unit_payments=settings.payment_unit_payments)
    period = P.PERIOD
    for k in range(runs):
        if k:
            period = next_period(period)
            for fund in ("dibao_fund", "tekun_fund"):
                app.set_budget(P.COUNTY, period, fund, 10**15, P.OFFICER)
            projection.catch_up()
        run, _ = app.start_run(P.COUNTY, period, P.OFFICER)
        engine.advance(run.run_id, P.OFFICER)
        print(f"setup: run {k + 1}/{runs} ({period}) paid", flush=True)
    engine.writer.close()
    projection.catch_up(batch_size=10_000)
    return time.perf_counter() - t0


def kinds_of_events(app) -> Counter:
    """How many events of each kind the log holds (for the setup line)."""
    table = app.recorder.events_table_name
    if hasattr(app.recorder.datastore, "schema"):
        from psycopg.sql import SQL, Identifier

        query = SQL("SELECT topic, COUNT(*) AS n FROM {0}.{1} GROUP BY topic").format(
            Identifier(app.recorder.datastore.schema), Identifier(table))
        with app.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query)
            rows = [(row["topic"], row["n"]) for row in curs.fetchall()]
    else:
        with app.recorder.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT topic, COUNT(*) FROM {table} GROUP BY topic")
            rows = [(row[0], row[1]) for row in curs.fetchall()]
    return Counter({topic.rsplit(":", 1)[-1]: n for topic, n in rows})


class LegacyTx(SideTx):
    """SideTx as it was before this change: each document spelt by json.dumps."""

    def put(self, kind: str, key: str, doc: dict, ref: str = "") -> None:
        self._x(self._PUT, (kind, key, ref, json.dumps(doc, ensure_ascii=False, sort_keys=True)))


class Sample:
    """The baseline's sample: ten stretches of the log, evenly spread (the same mix of events)."""

    def __init__(self, app, size: int, stretches: int = 10):
        self.app = app
        end = app.recorder.max_notification_id() or 0
        length = max(1, size // stretches)
        starts = sorted({1 + i * max(1, end // stretches) for i in range(stretches)})
        self.ranges = [(a, min(end, a + length - 1)) for a in starts if a <= end]

    def baseline(self) -> tuple[int, float, float]:
        """(events, seconds, process CPU seconds) of the library's path over the sample: each
        notification through the mapper, each document read and written alone, 500 a transaction."""
        fresh = SideStore.in_memory()
        mapper, project, events = self.app.mapper, SPEC.project, 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for first, last in self.ranges:
            start = first
            while start <= last:
                with fresh.transaction() as tx:
                    tx = LegacyTx(tx._c, "qmark", tx._t, False)
                    notifications = self.app.recorder.select_notifications(start, min(500, last - start + 1))
                    for notification in notifications:
                        project(mapper.to_domain_event(notification), tx)
                if not notifications:
                    break
                events += len(notifications)
                start = notifications[-1].id + 1
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        fresh.close()
        return events, elapsed, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="about how many events the log holds")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--entitlements", type=int, default=0,
                   help="entitlements opened (default a tenth of --events; the rest of the log is monthly runs)")
    p.add_argument("--baseline-sample", type=int, default=20_000, help="events replayed by the mapper path")
    p.add_argument("--one-process", action="store_true", help="read the log in this process (no reading process)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (stores) and print its path")
    p.add_argument("--root", help="work in this directory, kept; a log seeded there before is replayed again")
    args = p.parse_args()
    if args.root:  # kept, and its log reused when seeded before (seeding a million takes minutes)
        root, args.keep = Path(args.root).resolve(), True
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="lifeline-bench-replay-", dir="/tmp"))
    root.chmod(0o711)
    pg = None
    try:
        print(C.machine_line())
        settings, app, live, projection, pg = C.payment_store(root, args.database)
        entitlements = args.entitlements or max(1, args.events // 10)
        runs = max(1, round((args.events - entitlements) / entitlements))
        if app.recorder.max_notification_id():
            print(f"setup: the log seeded before in {root}", flush=True)
        else:
            print(f"setup: seeding a log of ~{args.events:,} events ({args.database}): {entitlements:,} "
                  f"entitlements opened and {runs} monthly payment runs over them ...", flush=True)
            seeded = seed(app, projection, settings, root, entitlements, runs)
            print(f"setup: seeded in {seeded:.1f} s", flush=True)
        n = app.recorder.max_notification_id() or 0
        kinds = kinds_of_events(app)
        print(f"setup: {n:,} events ({', '.join(f'{k} {v:,}' for k, v in kinds.most_common(4))}, …) and "
              "their live read models", flush=True)

        progress = Progress("replay: payment", n)
        reader0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = time.process_time(), time.perf_counter()
        rebuilt = rebuild(app, SPEC.project, progress.update, parallel=not args.one_process)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        reader1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        reader = reader1.ru_utime + reader1.ru_stime - reader0.ru_utime - reader0.ru_stime
        progress.done()
        rate = n / elapsed
        print(f"replay: {n:,} events in {elapsed:.2f} s = {rate:,.0f}/s (CPU: this process {cpu:.2f} s, "
              f"{n / cpu:,.0f}/s; its reading process {reader:.2f} s)", flush=True)

        t1 = time.perf_counter()
        diffs = compare(live, rebuilt)
        docs = rebuilt.count()
        print(f"compare: {docs:,} documents, {len(diffs)} differences, in {time.perf_counter() - t1:.2f} s",
              flush=True)
        assert not diffs, diffs[:10]
        rebuilt.close()

        sample = Sample(app, min(args.baseline_sample, n))
        events, base_s, base_cpu = sample.baseline()
        base = events / base_s
        print(f"baseline: the library's mapper path, {events:,} events (positions "
              f"{', '.join(f'{a:,}-{b:,}' for a, b in sample.ranges)}) in {base_s:.2f} s = {base:,.0f}/s "
              f"({events / base_cpu:,.0f}/s of CPU)", flush=True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {rss:.0f} MB; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        live.close()
        app.close()
        # The line, numbers without separators.
        print(f"replay: {n} events in {elapsed:.1f} s = {rate:.0f}/s; mapper baseline {base:.0f}/s; "
              f"ratio {rate / base:.1f}")
    finally:
        if pg is not None:
            pg.stop()
        C.keep_or_remove(root, args.keep)


if __name__ == "__main__":
    main()
