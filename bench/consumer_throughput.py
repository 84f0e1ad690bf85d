"""Consumer throughput: EventConsumer + a real service application vs a plain aiokafka consumer.

    .venv/bin/python bench/consumer_throughput.py --broker embedded --events 20000
    .venv/bin/python bench/consumer_throughput.py --broker embedded --events 20000 --database postgres
    .venv/bin/python bench/consumer_throughput.py --events 2000 --before   # + the one-at-a-time path

What is measured (each of --repeat runs uses fresh topics, a fresh consumer group
and a fresh event store, so every run processes N new events)
  input      N ApplicationSubmitted CloudEvents made by intake's own use case (distinct
             case ids, each with a mobile number, source lifeline/intake, sequences
             1..N), signed with intake's key, produced keyed by case id to the
             namespaced lifeline.intake.v1 (3 partitions).
  baseline   AIOKafkaConsumer (max_poll_records and getmany(max_records) of
             consumer.FETCH_RECORDS, as EventConsumer; partitions assigned by hand, so no group join)
             reading the N records and json-decoding each value; 3 passes per run
             (seek to beginning), the median over all passes is reported.
  process    EventConsumer (group "notify") feeding NotifyApplication on its real
             event store, batch by batch (EventConsumer.handle_batch): each message
             judged (JSON, envelope, Ed25519 signature, schema), the batch's tracked
             events found by one query, the handlers run (one sealed Contact per case),
             every effect and tracking row of the batch in one transaction (chained),
             offsets committed per batch. Checked: N x "processed", N events stored,
             N tracking rows.
  duplicate  the same N serialized events produced again and consumed by the same
             group: every one must come back "duplicate" and the store must not grow.
  before     (--before) the same N through the one-at-a-time path this replaced
             (EventConsumer.handle per message: process_cloud_event, one transaction
             each), on its own fresh store and group.
  Clock: from the first record handed out by the client (group join excluded, reported
  separately) to the last record handled (to its batch's offset commit). CPU: the
  benchmark process's CPU time (all its threads) over the same interval, per event.
  ratio      process (or duplicate) events/s divided by baseline events/s, medians.
  breakdown  one extra, instrumented run (not part of the figures) splitting the
             consumer's wall time into its steps.

Every broker, database and temp dir the benchmark starts is stopped/removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from eventsourcing.utils import get_topic  # noqa: E402

from lifeline.contracts import topics as T  # noqa: E402
from lifeline.messaging.consumer import FETCH_RECORDS, EventConsumer  # noqa: E402
from lifeline.domain.aggregate import Meta  # noqa: E402
from lifeline.messaging.kafka import Bus, kafka_client_options  # noqa: E402
from lifeline.messaging.outbox import to_cloud_events  # noqa: E402
from lifeline.runtime.service import signer_for, verifier_for  # noqa: E402
from services.intake.bootstrap import SPEC as INTAKE  # noqa: E402
from services.intake.domain import Case  # noqa: E402
from services.notify.application import NotifyApplication  # noqa: E402
from services.notify.bootstrap import SPEC as NOTIFY  # noqa: E402

TOPIC = T.TOPICS["intake"]
ORDER = [
    "consumer.getmany (fetches with records)",
    "judge (json+envelope+signature+schema; threads, beside the rest)",
    "Verifier.check (Ed25519 signature)",
    "process_batch (in a thread)", "tracked_among (one query per batch)",
    "policy (the handlers: their reads + Contact)", "_stamp_and_check (meta at + contract)",
    "_record_batch (map+encrypt, insert+chain+tracking, commit)", "consumer.commit (offsets)",
]
ACTOR = {"user_id": "clerk-bench", "role": "clerk", "org_code": "370502101"}


def build_events(n: int) -> list[tuple[bytes, bytes]]:
    """ApplicationSubmitted events as intake produces them: its own use case and outbound
    mapping, on a throw-away store (not timed)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-src-", dir="/tmp") as tmp:
        intake = INTAKE.application(C.Settings.from_env({"LIFELINE_DATA_DIR": tmp}))
        clerk = Meta("clerk-bench", "clerk", "370502101")
        for i in range(n):
            # A mobile number: notify keeps it, sealed, as the case's Contact (one event each).
            body = {**C.application_body(i), "contact_phone": f"138{i:08d}"}
            intake.submit_application(body, clerk, f"C-BENCH{i:013d}")
        # The applications only (each also saved its people's index entries, persons.py).
        for note in intake.recorder.select_notifications(1, n, topics=[get_topic(Case.Submitted)]):
            for _topic, key, ce in to_cloud_events("intake", note.id, intake.mapper.to_domain_event(note),
                                                   intake.outbound):
                out.append((key.encode(), ce.to_json()))
        intake.close()
    return out


async def produce(settings: C.Settings, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5,
                                client_id="bench-loader")
    await producer.start()
    try:
        t0 = time.perf_counter()
        acks = [await producer.send(topic, value=v, key=k) for k, v in msgs]
        await asyncio.gather(*acks)
        return time.perf_counter() - t0
    finally:
        await producer.stop()


async def baseline(settings: C.Settings, topic: str, n: int, passes: int, deadline_s: float):
    """Plain AIOKafkaConsumer, partitions assigned by hand (no group join to wait
    for), reading the topic from the beginning `passes` times; events/s of each pass."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=FETCH_RECORDS)
    await consumer.start()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        rates = []
        for _ in range(passes):
            await consumer.seek_to_beginning(*tps)
            seen, t_first, decoded = 0, None, 0
            deadline = time.monotonic() + deadline_s
            while seen < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"baseline read {seen}/{n}")
                batches = await consumer.getmany(timeout_ms=300, max_records=FETCH_RECORDS)
                for _tp, messages in batches.items():
                    if t_first is None:
                        t_first = time.perf_counter()
                    for m in messages:
                        doc = json.loads(m.value)
                        decoded += doc["sequence"] > 0
                        seen += 1
            rates.append(n / (time.perf_counter() - t_first))
            assert decoded == n
        return rates
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no partitions for {topic}")


class Watched:
    """Counts EventConsumer.handle_batch outcomes and notes when the batch holding the Nth is
    committed (wall and process CPU time)."""

    def __init__(self, ec: EventConsumer, n: int):
        self.ec, self.n = ec, n
        self.outcomes: Counter[str] = Counter()
        self.t_first: float | None = None
        self.t_done: float | None = None
        self.cpu_first = self.cpu_done = 0.0
        self.done = asyncio.Event()
        real_batch = ec.handle_batch

        async def handle_batch(messages, *rest):
            if self.t_first is None:
                self.t_first, self.cpu_first = time.perf_counter(), time.process_time()
            outcomes = await real_batch(messages, *rest)
            self.outcomes.update(outcomes)
            return outcomes

        ec.handle_batch = handle_batch
        real_commit = ec.consumer.commit

        async def commit(*a, **kw):
            result = await real_commit(*a, **kw)
            if sum(self.outcomes.values()) >= self.n and not self.done.is_set():
                self.t_done, self.cpu_done = time.perf_counter(), time.process_time()
                self.done.set()
            return result

        ec.consumer.commit = commit

    def reset(self) -> None:
        self.outcomes.clear()
        self.t_first = self.t_done = None
        self.done.clear()

    async def run_until_done(self, deadline_s: float) -> tuple[float, float]:
        """(events/s, CPU µs per event)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.ec.run(stop))
        try:
            await asyncio.wait_for(self.done.wait(), deadline_s)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        return self.n / (self.t_done - self.t_first), (self.cpu_done - self.cpu_first) / self.n * 1e6


def one_at_a_time(ec: EventConsumer) -> None:
    """The path batches replaced: every message through `handle` (process_cloud_event)."""

    async def judge_all(messages):
        return None  # judged by `handle`, one by one

    async def handle_batch(messages, verdicts=None):
        return [await ec.handle(m.topic, m.value, m.key, m.partition, m.offset) for m in messages]

    ec.judge_all, ec.handle_batch = judge_all, handle_batch


def install_breakdown(ec: EventConsumer, app: NotifyApplication) -> tuple[dict[str, float], callable]:
    import lifeline.stores.application as A

    spent: dict[str, float] = defaultdict(float)
    _, timed_async = C.timers(spent)

    def timed_sync(name, fn):
        # Wall time, and the calling thread's CPU time under "cpu:" (judging and processing run
        # in threads side by side, so wall time includes waiting for the GIL).
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t
                spent["cpu:" + name] += time.thread_time() - c
        return wrapper

    real_tracked = A.tracked_among
    A.tracked_among = timed_sync("  tracked_among (one query per batch)", real_tracked)
    ec.judge = timed_sync("judge (json+envelope+signature+schema; threads, beside the rest)", ec.judge)

    ec.verifier.check = timed_sync("  Verifier.check (Ed25519 signature)", ec.verifier.check)
    app.process_batch = timed_sync("process_batch (in a thread)", app.process_batch)
    app.policy = timed_sync("  policy (the handlers: their reads + Contact)", app.policy)
    app._stamp_and_check = timed_sync("  _stamp_and_check (meta at + contract)", app._stamp_and_check)
    app._record_batch = timed_sync("  _record_batch (map+encrypt, insert+chain+tracking, commit)",
                                   app._record_batch)
    real_getmany = ec.consumer.getmany

    async def getmany(*a, **kw):
        # Only fetches that returned records: the idle polls before the first
        # record and after the last one are outside the measured interval.
        t = time.perf_counter()
        batches = await real_getmany(*a, **kw)
        if batches:
            spent["consumer.getmany (fetches with records)"] += time.perf_counter() - t
        return batches

    ec.consumer.getmany = getmany
    ec.consumer.commit = timed_async("consumer.commit (offsets)", ec.consumer.commit)

    def undo() -> None:
        A.tracked_among = real_tracked
        for attr in ("process_batch", "policy", "_stamp_and_check", "_record_batch"):
            delattr(app, attr)
        del ec.judge, ec.verifier.check

    return spent, undo


def tracking_rows(app: NotifyApplication) -> int:
    rec = app.recorder
    if hasattr(rec.datastore, "schema"):
        from psycopg.sql import SQL, Identifier

        with rec.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT COUNT(*) AS n FROM {0}.{1} WHERE application_name = %s").format(
                Identifier(rec.datastore.schema), Identifier(rec.tracking_table_name)), ("lifeline/intake",))
            return curs.fetchone()["n"]
    with rec.datastore.transaction(commit=False) as c:
        c.execute("SELECT COUNT(*) FROM tracking WHERE application_name = ?", ("lifeline/intake",))
        return c.fetchone()[0]


async def one_run(infra: C.Infra, msgs, n: int, deadline_s: float, breakdown: bool = False,
                  before: bool = False):
    tag = C.new_tag("cons")
    settings = infra.settings(tag)
    topic = settings.namespace + TOPIC
    bus = Bus(settings, client_id="bench-notify")
    await bus.start()
    app = NOTIFY.application(settings)
    ec = None
    try:
        await bus.ensure_topics([TOPIC])
        # Signed by intake's key in this run's key directory, as intake's relay signs them (untimed).
        signer = signer_for(settings, "lifeline/intake")
        msgs = [(k, json.dumps(signer.sign(json.loads(v)), ensure_ascii=False).encode()) for k, v in msgs]
        produce_s = await produce(settings, topic, msgs)
        base_rates = [] if before else await baseline(settings, topic, n, 3, deadline_s)

        ec = EventConsumer(app, bus, [TOPIC], group="notify", verifier=verifier_for(settings))
        t0 = time.perf_counter()
        await ec.start()
        if before:
            one_at_a_time(ec)
        spent, undo = install_breakdown(ec, app) if breakdown else (None, None)
        w = Watched(ec, n)
        t_run = time.perf_counter()
        proc_rate, proc_cpu = await w.run_until_done(deadline_s)
        join = w.t_first - t_run + (t_run - t0)
        assert w.outcomes == Counter(processed=n), w.outcomes
        stored = app.recorder.max_notification_id()
        assert stored == n, stored  # one Contact per event
        assert tracking_rows(app) == n
        proc_spent = dict(spent) if spent is not None else None
        if spent is not None:
            spent.clear()

        await produce(settings, topic, msgs)  # the same N events again
        w.reset()
        dup_rate, dup_cpu = await w.run_until_done(deadline_s)
        assert w.outcomes == Counter(duplicate=n), w.outcomes
        assert app.recorder.max_notification_id() == n  # nothing new stored
        dup_spent = dict(spent) if spent is not None else None
        if undo:
            undo()
        return {
            "produce": n / produce_s, "baseline": base_rates, "process": proc_rate,
            "duplicate": dup_rate, "process_cpu": proc_cpu, "duplicate_cpu": dup_cpu,
            "join_consumer": join, "spent": (proc_spent, dup_spent),
        }
    finally:
        if ec is not None:
            await ec.stop()
        await bus.stop()
        app.close()


async def main() -> int:
    parser = C.common_args(__doc__.splitlines()[0])
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--before", action="store_true",
                        help="also measure the one-at-a-time path (process_cloud_event per message)")
    args = parser.parse_args()
    n = args.events
    deadline_s = max(100.0, n / 100)

    print(f"# consumer_throughput  broker={args.broker} database={args.database} events={n} "
          f"repeat={args.repeat} partitions={args.partitions}")
    print(f"# {C.machine_line()}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    msgs = build_events(n)
    print(f"payload: {n} ApplicationSubmitted CloudEvents, mean "
          f"{sum(len(v) for _, v in msgs) / n:,.0f} bytes (unsigned)")
    with C.infrastructure(args, "consumer") as infra:
        print("# started: " + ", ".join(f"{k} {v:.1f}s" for k, v in infra.startup_s.items()))
        res: dict[str, list[float]] = defaultdict(list)
        for r in range(args.repeat):
            out = await one_run(infra, msgs, n, deadline_s)
            for k in ("produce", "process", "duplicate", "process_cpu", "duplicate_cpu", "join_consumer"):
                res[k].append(out[k])
            res["baseline"] += out["baseline"]
            print(f"run {r + 1}: produce {out['produce']:,.0f}  baseline "
                  f"{'/'.join(f'{b:,.0f}' for b in out['baseline'])}  "
                  f"process {out['process']:,.0f} ({out['process_cpu']:.0f} µs CPU/event)  "
                  f"duplicate {out['duplicate']:,.0f} ({out['duplicate_cpu']:.0f} µs CPU/event) (ev/s)  "
                  f"EventConsumer start+join {out['join_consumer']:.2f}s")
        if args.before:
            out = await one_run(infra, msgs, n, deadline_s, before=True)
            res["before"].append(out["process"])
            res["before_duplicate"].append(out["duplicate"])
            res["before_cpu"].append(out["process_cpu"])
            res["before_duplicate_cpu"].append(out["duplicate_cpu"])
            print(f"one at a time: process {out['process']:,.0f} ({out['process_cpu']:.0f} µs CPU/event)  "
                  f"duplicate {out['duplicate']:,.0f} ({out['duplicate_cpu']:.0f} µs CPU/event) (ev/s)")

        if not args.no_breakdown:
            out = await one_run(infra, msgs, n, deadline_s, breakdown=True)
            for label, spent, rate in (("process", out["spent"][0], out["process"]),
                                       ("duplicate", out["spent"][1], out["duplicate"])):
                total = n / rate
                print()
                print(f"breakdown, {label} (one instrumented run: {rate:,.0f} ev/s, {total * 1000:.0f} ms "
                      f"for {n}; indented rows are inside the row above):")
                rows = {k: v for k, v in spent.items() if not k.startswith("cpu:")}
                for k, v in sorted(rows.items(), key=lambda kv: ORDER.index(kv[0].strip())):
                    cpu = spent.get("cpu:" + k)
                    cpu_s = f"  {cpu / n * 1e6:>7.1f} µs CPU/event" if cpu is not None else ""
                    print(f"  {k:<62}{v * 1000:>9.1f} ms  {100 * v / total:>5.1f}%  "
                          f"{v / n * 1e6:>7.1f} µs/event{cpu_s}")
                # Judging runs in threads beside the other steps: the rest is what they leave.
                top = sum(v for k, v in rows.items() if not k.startswith((" ", "judge")))
                print(f"  {'rest (waiting for judging, event loop, metrics, hops)':<62}{(total - top) * 1000:>9.1f} ms  "
                      f"{100 * (total - top) / total:>5.1f}%  {(total - top) / n * 1e6:>7.1f} µs/event")

        base = C.median(res["baseline"])
        print()
        print(f"{'variant':<40}{'median ev/s':>14}{'min':>10}{'max':>10}{'CPU µs/ev':>11}{'ratio vs baseline':>19}")
        rows = [("baseline", "baseline: aiokafka read+json", None),
                ("process", "EventConsumer -> Notify, new events", "process_cpu"),
                ("duplicate", "EventConsumer, all duplicates", "duplicate_cpu")]
        if args.before:
            rows += [("before", "one at a time (before), new events", "before_cpu"),
                     ("before_duplicate", "one at a time (before), duplicates", "before_duplicate_cpu")]
        for k, label, cpu in rows:
            v = res[k]
            cpu_s = f"{C.median(res[cpu]):>11.0f}" if cpu else f"{'':>11}"
            print(f"{label:<40}{C.median(v):>14,.0f}{min(v):>10,.0f}{max(v):>10,.0f}{cpu_s}"
                  f"{C.median(v) / base:>19.4f}")
        process, duplicate = C.median(res["process"]), C.median(res["duplicate"])
        print(f"consumer: {process:,.0f} new events/s, {duplicate:,.0f} duplicates/s; plain reader {base:,.0f}/s; "
              f"ratios {process / base:.4f}, {duplicate / base:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
