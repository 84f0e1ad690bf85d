"""Outbox relay throughput: OutboxRelay vs a plain aiokafka producer, same run.

    .venv/bin/python bench/relay_throughput.py --broker embedded --events 2000
    .venv/bin/python bench/relay_throughput.py --broker real --events 2000
    .venv/bin/python bench/relay_throughput.py --broker embedded --database postgres

What is measured
  setup      an IntakeApplication (its real event store: SQLite file or PostgreSQL
             schema) holding N `Case` aggregates, each saved by `submit_application`
             (one ApplicationSubmitted each). Not timed as throughput, but reported.
  relay      what OutboxRelay.run() does per batch, minus its idle wait, until the
             log is exhausted from position 0: renew the relay lease (is_leader),
             then publish_pending(): read position, select a batch of notifications, map to
             domain events, build + validate CloudEvents, send (acks=all, keyed by
             case id), await every ack, save the position. events/s over the
             whole pass and the wall time of each batch.
  baseline   AIOKafkaProducer with the relay's producer settings (acks=all,
             linger_ms=5, idempotence as the broker allows) sending the *same* N
             serialized CloudEvents with the same keys: (a) all queued, then every
             ack awaited ("pipelined"); (b) in batches of --batch-size, awaiting
             each batch's acks ("batched", the relay's ack discipline).
  ratio      relay events/s divided by baseline events/s (medians of --repeat runs,
             the variants interleaved so drift hits both alike).
  breakdown  one extra, instrumented relay pass (not part of the figures above)
             splitting the relay's wall time into its steps.

Every broker, database and temp dir the benchmark starts is stopped/removed at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from aiokafka import AIOKafkaProducer  # noqa: E402

from lifeline.messaging import outbox as outbox_module  # noqa: E402
from lifeline.domain.aggregate import Meta  # noqa: E402
from lifeline.messaging.kafka import Bus, kafka_client_options  # noqa: E402
from lifeline.messaging.outbox import OutboxRelay, to_cloud_events  # noqa: E402
from lifeline.runtime.service import signer_for  # noqa: E402
from lifeline.stores.sidestore import SideStore  # noqa: E402
from services.intake.application import IntakeApplication  # noqa: E402
from services.intake.bootstrap import SPEC as INTAKE  # noqa: E402

CLERK = Meta("clerk-bench", "clerk", "370502101")


def seed(app: IntakeApplication, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        app.submit_application(C.application_body(i), CLERK)
    return time.perf_counter() - t0


def serialized(app: IntakeApplication, n: int) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) exactly as the relay would send them."""
    out: list[tuple[str, bytes, bytes]] = []
    start = 1
    while True:
        notes = app.recorder.select_notifications(start, 500)
        if not notes:
            break
        for note in notes:
            event = app.mapper.to_domain_event(note)
            for topic, key, ce in to_cloud_events(app.service, note.id, event, app.outbound):
                out.append((topic, key.encode(), ce.to_json()))
        start = notes[-1].id + 1
    assert len(out) == n, (len(out), n)
    return out


async def baseline_run(producer: AIOKafkaProducer, ns: str, msgs, batch: int | None) -> float:
    t0 = time.perf_counter()
    if batch is None:
        acks = [await producer.send(ns + topic, value=value, key=key) for topic, key, value in msgs]
        await asyncio.gather(*acks)
    else:
        for i in range(0, len(msgs), batch):
            acks = [await producer.send(ns + t, value=v, key=k) for t, k, v in msgs[i:i + batch]]
            await asyncio.gather(*acks)
    return time.perf_counter() - t0


async def relay_run(relay: OutboxRelay) -> tuple[float, list[float], int]:
    await asyncio.to_thread(relay.rewind, 0)
    published = 0
    batch_times: list[float] = []
    t0 = time.perf_counter()
    while True:
        b0 = time.perf_counter()
        # What OutboxRelay.run does per batch (less its idle wait): renew the lease, publish.
        if hasattr(relay, "is_leader") and not await asyncio.to_thread(relay.is_leader):
            raise RuntimeError("relay lost its lease")
        moved = await relay.publish_pending()  # log entries: one message each here
        if not moved:
            break
        published += moved
        batch_times.append(time.perf_counter() - b0)
    return time.perf_counter() - t0, batch_times, published


async def breakdown_run(relay: OutboxRelay) -> tuple[float, dict[str, float]]:
    """One relay pass with each step timed by wrappers around the real code."""
    spent: dict[str, float] = defaultdict(float)
    app, bus = relay.app, relay.bus

    timed_sync, timed_async = C.timers(spent)

    real_to_thread = asyncio.to_thread
    real_to_ce = outbox_module.to_cloud_events
    real_gather = asyncio.gather
    saved = {
        "is_leader": getattr(relay, "is_leader", None),
        "position": relay.position, "_save": relay._save,
        "select": app.recorder.select_notifications, "map": app.mapper.to_domain_event,
        "send": bus.send,
    }
    relay.position = timed_sync("position (in thread)", saved["position"])
    if saved["is_leader"] is not None:
        relay.is_leader = timed_sync("lease renewal (in thread)", saved["is_leader"])
    relay._save = timed_sync("save position (in thread)", saved["_save"])
    app.recorder.select_notifications = timed_sync("select_notifications (in thread)", saved["select"])
    app.mapper.to_domain_event = timed_sync("mapper.to_domain_event", saved["map"])
    outbox_module.to_cloud_events = timed_sync("to_cloud_events (build+validate)", real_to_ce)
    bus.send = timed_async("bus.send (queue record)", saved["send"])
    asyncio.to_thread = timed_async("to_thread awaits (total)", real_to_thread)

    def gather(*aws, **kw):
        fut = real_gather(*aws, **kw)
        t = time.perf_counter()
        fut.add_done_callback(lambda _f: spent.__setitem__(
            "await acks (gather)", spent["await acks (gather)"] + time.perf_counter() - t))
        return fut

    asyncio.gather = gather
    try:
        await real_to_thread(saved["_save"].__self__.rewind, 0)
        t0 = time.perf_counter()
        while True:
            if hasattr(relay, "is_leader"):
                await asyncio.to_thread(relay.is_leader)
            if not await relay.publish_pending():
                break
        total = time.perf_counter() - t0
    finally:
        asyncio.to_thread, asyncio.gather = real_to_thread, real_gather
        outbox_module.to_cloud_events = real_to_ce
        for attr in ("position", "_save", "is_leader"):
            if attr in vars(relay):
                delattr(relay, attr)
        del app.recorder.select_notifications, app.mapper.to_domain_event, bus.send
    return total, dict(spent)


async def main() -> int:
    parser = C.common_args(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=200, help="relay batch (Lifeline's default 200)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes of each variant first")
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()
    n = args.events

    print(f"# relay_throughput  broker={args.broker} database={args.database} events={n} "
          f"batch={args.batch_size} repeat={args.repeat} warmup={args.warmup} partitions={args.partitions}")
    print(f"# {C.machine_line()}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    with C.infrastructure(args, "relay") as infra:
        print("# started: " + ", ".join(f"{k} {v:.1f}s" for k, v in infra.startup_s.items()))
        tag = C.new_tag("relay")
        settings = infra.settings(tag)
        app = INTAKE.application(settings)
        side = SideStore(settings, "intake")
        bus = Bus(settings, client_id="bench-relay")
        producer = None
        try:
            seed_s = await asyncio.to_thread(seed, app, n)
            print(f"setup: {n} x submit_application in {seed_s:.2f}s ({n / seed_s:,.0f}/s)")
            msgs = await asyncio.to_thread(serialized, app, n)
            mean_bytes = sum(len(v) for _, _, v in msgs) / len(msgs)
            topics = sorted({t for t, _, _ in msgs})
            print(f"payload: {len(msgs)} CloudEvents, mean {mean_bytes:,.0f} bytes, topics {topics}")

            await bus.start()
            await bus.ensure_topics(topics)
            base_ns = f"{tag}-base."
            base_bus = Bus(C.Settings.from_env({"LIFELINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                                                 "LIFELINE_NAMESPACE": base_ns,
                                                 "LIFELINE_PARTITIONS": str(args.partitions),
                                                 "LIFELINE_DATA_DIR": str(settings.data_dir)}),
                           client_id="bench-base-admin")
            await base_bus.ensure_topics(topics)
            producer = AIOKafkaProducer(
                **kafka_client_options(settings), client_id="bench-baseline",
                acks="all", enable_idempotence=bus.idempotent, linger_ms=5, request_timeout_ms=30000,
            )
            await producer.start()
            print(f"producer: acks=all linger_ms=5 idempotent={bus.idempotent}")
            # Warm-up: metadata for every topic, connections, one round trip each.
            for t in topics:
                await (await producer.send(base_ns + t, value=b"{}", key=b"warmup"))
                await (await bus.send(t, b"{}", "warmup"))

            relay = OutboxRelay(app, side, bus, signer_for(settings, f"lifeline/{app.service}"), batch_size=args.batch_size)
            # Untimed warm-up passes of every variant: JIT of a real Kafka broker,
            # jsonschema validators compiled, connections and buffers sized.
            for _ in range(args.warmup):
                await baseline_run(producer, base_ns, msgs, None)
                await baseline_run(producer, base_ns, msgs, args.batch_size)
                await relay_run(relay)
            res: dict[str, list[float]] = defaultdict(list)
            all_batches: list[float] = []
            for r in range(args.repeat):
                dt = await baseline_run(producer, base_ns, msgs, None)
                res["baseline pipelined"].append(len(msgs) / dt)
                dt = await baseline_run(producer, base_ns, msgs, args.batch_size)
                res[f"baseline batched {args.batch_size}"].append(len(msgs) / dt)
                dt, batches, published = await relay_run(relay)
                assert published == len(msgs), (published, len(msgs))
                res["relay"].append(published / dt)
                all_batches += batches
                print(f"run {r + 1}: " + "  ".join(f"{k} {v[-1]:,.0f}" for k, v in res.items()) + "  (ev/s)")

            relay_rate = C.median(res["relay"])
            print()
            print(f"{'variant':<24}{'median ev/s':>14}{'min':>10}{'max':>10}{'relay ratio':>13}")
            for k, v in res.items():
                ratio = relay_rate / C.median(v)
                print(f"{k:<24}{C.median(v):>14,.0f}{min(v):>10,.0f}{max(v):>10,.0f}{ratio:>13.2f}")
            ms = [b * 1000 for b in all_batches]
            print(f"relay per batch ({args.batch_size} events, {len(ms)} batches): "
                  f"mean {sum(ms) / len(ms):.1f} ms, p50 {C.pct(ms, .5):.1f} ms, "
                  f"p95 {C.pct(ms, .95):.1f} ms, max {max(ms):.1f} ms")
            print(f"RESULT relay={relay_rate:.0f} ev/s baseline={C.median(res['baseline pipelined']):.0f} ev/s "
                  f"ratio={relay_rate / C.median(res['baseline pipelined']):.3f} "
                  f"ratio_vs_batched={relay_rate / C.median(res[f'baseline batched {args.batch_size}']):.3f}")

            if not args.no_breakdown:
                total, spent = await breakdown_run(relay)
                print()
                print(f"breakdown (one instrumented pass, {len(msgs)} events in {total * 1000:.0f} ms, "
                      f"{len(msgs) / total:,.0f} ev/s; indented rows are inside the row above):")
                order = ["to_thread awaits (total)", "lease renewal (in thread)", "position (in thread)",
                         "select_notifications (in thread)", "save position (in thread)",
                         "mapper.to_domain_event", "to_cloud_events (build+validate)",
                         "bus.send (queue record)", "await acks (gather)"]
                for k in order:
                    v = spent.get(k, 0.0)
                    indent = "    " if "(in thread)" in k else "  "
                    print(f"{indent}{k:<36}{v * 1000:>9.1f} ms  {100 * v / total:>5.1f}%  "
                          f"{v / len(msgs) * 1e6:>7.1f} µs/event")
                top = sum(spent.get(k, 0.0) for k in order if "(in thread)" not in k)
                rest = total - top
                print(f"  {'rest (to_json, loop, faults hooks)':<36}{rest * 1000:>9.1f} ms  "
                      f"{100 * rest / total:>5.1f}%  {rest / len(msgs) * 1e6:>7.1f} µs/event")
        finally:
            if producer is not None:
                await producer.stop()
            await bus.stop()
            side.close()
            app.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
