"""Consumer throughput: EventConsumer + a real service application vs a plain aiokafka consumer.

    .venv/bin/python bench/consumer_throughput.py --broker embedded --events 2000
    .venv/bin/python bench/consumer_throughput.py --broker real --events 2000
    .venv/bin/python bench/consumer_throughput.py --broker embedded --database postgres

What is measured (each of --repeat runs uses fresh topics, a fresh consumer group
and a fresh event store, so every run processes N new events)
  input      N ApplicationSubmitted v2 CloudEvents built with registry.new_event
             (distinct case ids, source lifeline/intake, sequences 1..N), produced
             keyed by case id to the namespaced lifeline.intake.v1 (3 partitions).
  baseline   AIOKafkaConsumer (max_poll_records=100 and getmany(max_records=100),
             as EventConsumer; partitions assigned by hand, so no group join)
             reading the N records and json-decoding each value; 3 passes per run
             (seek to beginning), the median over all passes is reported.
  process    EventConsumer (group "notify") feeding NotifyApplication on its real
             event store: decode + envelope + upcast + schema validation, the
             exact-tracking lookup, the handler (one acceptance Notice per case),
             events + tracking row in one transaction, offset commit per batch.
  duplicate  the same N serialized events produced again and consumed by the same
             group: every one must come back "duplicate" and the store must not grow.
  Clock: from the first record handed out by the client (group join excluded, reported
  separately) to the last record handled (EventConsumer: to its batch's offset commit).
  ratio      process (or duplicate) events/s divided by baseline events/s, medians.
  breakdown  one extra, instrumented run (not part of the figures) splitting the
             consumer's wall time into its steps.

Every broker, database and temp dir the benchmark starts is stopped/removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from eventsourcing.utils import get_topic  # noqa: E402

from lifeline.contracts import registry  # noqa: E402
from lifeline.contracts import topics as T  # noqa: E402
from lifeline.messaging.consumer import EventConsumer  # noqa: E402
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
    "consumer.getmany (fetches with records)", "registry.decode (json+envelope+schema)",
    "to_thread await (total, incl. below)", "process_cloud_event (in thread)",
    "is_processed (exact tracking lookup)", "policy (handler: exists + build Notice)",
    "_record (insert events+tracking, commit)", "consumer.commit (offsets)",
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
            intake.submit_application(C.application_body(i), clerk, f"C-BENCH{i:013d}")
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
                                auto_offset_reset="earliest", max_poll_records=100)
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
                batches = await consumer.getmany(timeout_ms=300, max_records=100)
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
    """Counts EventConsumer.handle outcomes and notes when the batch holding the Nth is committed."""

    def __init__(self, ec: EventConsumer, n: int):
        self.ec, self.n = ec, n
        self.outcomes: Counter[str] = Counter()
        self.t_first: float | None = None
        self.t_done: float | None = None
        self.done = asyncio.Event()
        real_handle = ec.handle

        async def handle(*a, **kw):
            if self.t_first is None:
                self.t_first = time.perf_counter()
            outcome = await real_handle(*a, **kw)
            self.outcomes[outcome] += 1
            return outcome

        ec.handle = handle
        real_commit = ec.consumer.commit

        async def commit(*a, **kw):
            result = await real_commit(*a, **kw)
            if sum(self.outcomes.values()) >= self.n and not self.done.is_set():
                self.t_done = time.perf_counter()
                self.done.set()
            return result

        ec.consumer.commit = commit

    def reset(self) -> None:
        self.outcomes.clear()
        self.t_first = self.t_done = None
        self.done.clear()

    async def run_until_done(self, deadline_s: float) -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(self.ec.run(stop))
        try:
            await asyncio.wait_for(self.done.wait(), deadline_s)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        return self.n / (self.t_done - self.t_first)


def install_breakdown(ec: EventConsumer, app: NotifyApplication) -> tuple[dict[str, float], callable]:
    spent: dict[str, float] = defaultdict(float)

    timed_sync, timed_async = C.timers(spent)

    real_decode, real_to_thread = registry.decode, asyncio.to_thread
    registry.decode = timed_sync("registry.decode (json+envelope+schema)", real_decode)
    asyncio.to_thread = timed_async("to_thread await (total, incl. below)", real_to_thread)
    app.process_cloud_event = timed_sync("  process_cloud_event (in thread)", app.process_cloud_event)
    app.is_processed = timed_sync("    is_processed (exact tracking lookup)", app.is_processed)
    app.policy = timed_sync("    policy (handler: exists + build Notice)", app.policy)
    app._record = timed_sync("    _record (insert events+tracking, commit)", app._record)
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
        registry.decode, asyncio.to_thread = real_decode, real_to_thread
        for attr in ("process_cloud_event", "is_processed", "policy", "_record"):
            delattr(app, attr)

    return spent, undo


async def one_run(infra: C.Infra, msgs, n: int, deadline_s: float, breakdown: bool = False):
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
        base_rates = await baseline(settings, topic, n, 3, deadline_s)

        ec = EventConsumer(app, bus, [TOPIC], group="notify", verifier=verifier_for(settings))
        t0 = time.perf_counter()
        await ec.start()
        spent, undo = install_breakdown(ec, app) if breakdown else (None, None)
        w = Watched(ec, n)
        t_run = time.perf_counter()
        proc_rate = await w.run_until_done(deadline_s)
        join = w.t_first - t_run + (t_run - t0)
        assert w.outcomes == Counter(processed=n), w.outcomes
        stored = app.recorder.max_notification_id()
        assert stored == n, stored  # one acceptance Notice per event
        proc_spent = dict(spent) if spent is not None else None
        if spent is not None:
            spent.clear()

        await produce(settings, topic, msgs)  # the same N events again
        w.reset()
        dup_rate = await w.run_until_done(deadline_s)
        assert w.outcomes == Counter(duplicate=n), w.outcomes
        assert app.recorder.max_notification_id() == n  # nothing new stored
        dup_spent = dict(spent) if spent is not None else None
        if undo:
            undo()
        return {
            "produce": n / produce_s, "baseline": base_rates, "process": proc_rate,
            "duplicate": dup_rate, "join_consumer": join,
            "spent": (proc_spent, dup_spent),
        }
    finally:
        if ec is not None:
            await ec.stop()
        await bus.stop()
        app.close()


async def main() -> int:
    parser = C.common_args(__doc__.splitlines()[0])
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()
    n = args.events
    deadline_s = 100.0

    print(f"# consumer_throughput  broker={args.broker} database={args.database} events={n} "
          f"repeat={args.repeat} partitions={args.partitions}")
    print(f"# {C.machine_line()}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    msgs = build_events(n)
    print(f"payload: {n} ApplicationSubmitted v2 CloudEvents, mean "
          f"{sum(len(v) for _, v in msgs) / n:,.0f} bytes")
    with C.infrastructure(args, "consumer") as infra:
        print("# started: " + ", ".join(f"{k} {v:.1f}s" for k, v in infra.startup_s.items()))
        res: dict[str, list[float]] = defaultdict(list)
        for r in range(args.repeat):
            out = await one_run(infra, msgs, n, deadline_s)
            for k in ("produce", "process", "duplicate", "join_consumer"):
                res[k].append(out[k])
            res["baseline"] += out["baseline"]
            print(f"run {r + 1}: produce {out['produce']:,.0f}  baseline "
                  f"{'/'.join(f'{b:,.0f}' for b in out['baseline'])}  "
                  f"process {out['process']:,.0f}  duplicate {out['duplicate']:,.0f} (ev/s)  "
                  f"EventConsumer start+join {out['join_consumer']:.2f}s")
        base = C.median(res["baseline"])
        print()
        print(f"{'variant':<34}{'median ev/s':>14}{'min':>10}{'max':>10}{'ratio vs baseline':>19}")
        for k, label in (("baseline", "baseline: aiokafka read+json"),
                         ("process", "EventConsumer -> NotifyApplication"),
                         ("duplicate", "EventConsumer, all duplicates")):
            v = res[k]
            print(f"{label:<34}{C.median(v):>14,.0f}{min(v):>10,.0f}{max(v):>10,.0f}"
                  f"{C.median(v) / base:>19.3f}")
        print(f"RESULT baseline={base:.0f} ev/s process={C.median(res['process']):.0f} ev/s "
              f"ratio={C.median(res['process']) / base:.3f} duplicate={C.median(res['duplicate']):.0f} ev/s "
              f"dup_ratio={C.median(res['duplicate']) / base:.3f}")

        if not args.no_breakdown:
            out = await one_run(infra, msgs, n, deadline_s, breakdown=True)
            for label, spent, rate in (("process", out["spent"][0], out["process"]),
                                       ("duplicate", out["spent"][1], out["duplicate"])):
                total = n / rate
                print()
                print(f"breakdown, {label} (one instrumented run: {rate:,.0f} ev/s, {total * 1000:.0f} ms "
                      f"for {n}; indented rows are inside the row above):")
                for k, v in sorted(spent.items(), key=lambda kv: ORDER.index(kv[0].strip())):
                    print(f"  {k:<46}{v * 1000:>9.1f} ms  {100 * v / total:>5.1f}%  "
                          f"{v / n * 1e6:>7.1f} µs/event")
                top = sum(v for k, v in spent.items() if not k.startswith(" "))
                print(f"  {'rest (event loop, handle(), metrics, hops)':<46}{(total - top) * 1000:>9.1f} ms  "
                      f"{100 * (total - top) / total:>5.1f}%  {(total - top) / n * 1e6:>7.1f} µs/event")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
