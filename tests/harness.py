"""Runs Lifeline's services as separate OS processes for end-to-end tests.

Each service is started with `python -m lifeline.cli serve NAME`, exactly as in
production, against the session's broker, Redis and store backend; a test can
kill -9 any of them and start it again on the same data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lifeline.cli import COMMANDS, SIMULATORS
from lifeline.contracts.envelope import CloudEvent
from lifeline.contracts.signing import KeyDirectory
from lifeline.dev.embedded import wait_ready
from lifeline.http.auth import mint_token
from tests import logscan

SERVICES = ("intake", "verification", "payment", "charity", "notify")
T = TypeVar("T")


NAMES = ["王小明", "李红", "王乐", "王安", "王父", "王母"]


def household(id_numbers: list[str], region_code: str = "370502101001", *,
              names: list[str] | None = None, **overrides: Any) -> dict:
    """A valid application body; the first ID number is the applicant's."""
    relations = ["self", "spouse", "child", "child", "parent", "parent"]
    body = {
        "assistance_type": "dibao",
        "channel": "window",
        "region_code": region_code,
        "area": "urban",
        "members": [
            {
                "id_number": n, "name": name, "relation": relations[i],
                "disability_grade": None, "disability_kind": None,
                "serious_illness": False, "work_ability": "full",
            }
            for i, (n, name) in enumerate(zip(id_numbers, names or NAMES))
        ],
        "declared_monthly_income_fen": 0,
        "declared_assets_fen": 0,
        "bank_account": {"channel": "RCC", "account_number": "6228480012345670001",
                         "account_name": (names or NAMES)[0]},
        "authorisation_signed": True,
        "urgency": "normal",
    }
    body.update(overrides)
    return body


class Lifeline:
    def __init__(self, infra: Any, namespace: str, data_dir: Path, extra_env: dict[str, str] | None = None):
        self.infra = infra
        self.namespace = namespace
        self.data_dir = data_dir
        self.env = {**infra.env(namespace, data_dir), **(extra_env or {})}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = data_dir / "logs"
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs may name cases: 0700/0600
        # Every process's environment, for the session's scan of these logs (tests/logscan.py).
        self.seen_env: dict[str, str] = dict(self.env)
        logscan.register(data_dir, self.seen_env)

    # --- processes -----------------------------------------------------------
    def port(self, name: str) -> int:
        return int(self.env[f"LIFELINE_{name.upper()}_PORT"])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name)}"

    def start(self, *names: str, extra_env: dict[str, str] | None = None, wait: bool = True) -> None:
        names = names or (*SERVICES, *SIMULATORS)
        for name in names:
            argv = [sys.executable, "-m", "lifeline.cli", *(("serve", name) if name in SERVICES else COMMANDS[name])]
            log = self._log(name)
            # Each process connects to Kafka as its own principal (real backend).
            self.procs[name] = subprocess.Popen(
                argv, env=self._seen(name, {**self.env, **self.infra.kafka_env(name),
                                            **self.infra.redis_env(name), **(extra_env or {})}),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if wait:
            for name in names:
                self.wait_ready(name)

    def start_replica(self, name: str, replica: str, port: int, extra_env: dict[str, str] | None = None,
                      ready_path: str = "/readyz") -> None:
        """A second process of the same service: same stores, same consumer group."""
        argv = [sys.executable, "-m", "lifeline.cli", "serve", name]
        log = self._log(replica)
        env = self._seen(replica, {**self.env, **self.infra.kafka_env(name), **self.infra.redis_env(name),
                                   f"LIFELINE_{name.upper()}_PORT": str(port), **(extra_env or {})})
        self.procs[replica] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.env[f"LIFELINE_{replica.upper()}_PORT"] = str(port)
        self.wait_ready(replica, path=ready_path)

    def _log(self, name: str):
        """The process's log file, 0600 from the start."""
        return open(os.open(self.logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")

    def _seen(self, name: str, env: dict[str, str]) -> dict[str, str]:
        self.seen_env.update({f"{k} ({name})": v for k, v in env.items() if k.startswith("LIFELINE_")})
        return env

    def wait_ready(self, name: str, timeout: float = 60, path: str = "/readyz") -> None:
        wait_ready(self.url(name) + path, self.procs[name], name, timeout, lambda: self.log_tail(name))

    def kill(self, name: str) -> None:
        """kill -9: no shutdown hooks, no flush, no offset commit."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def wait_exit(self, name: str, timeout: float = 60) -> int:
        return self.procs[name].wait(timeout)

    def stop(self, name: str | None = None) -> None:
        for n in [name] if name else list(self.procs):
            proc = self.procs.get(n)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # --- HTTP ------------------------------------------------------------------
    def token(self, role: str = "admin", region: str = "000000", user: str | None = None) -> str:
        return mint_token(
            self.env["LIFELINE_JWT_SECRET"], role=role, region=region,
            user_id=user or f"{role}@{region}", org_code=region,
        )

    def client(self, name: str, role: str = "admin", region: str = "000000", user: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url(name), timeout=30,
            headers={"Authorization": f"Bearer {self.token(role, region, user)}"},
        )

    def settled_log_sizes(self, services: Iterable[str], quiet: float = 1.5) -> dict[str, int]:
        """Every service's log size once none has grown for `quiet` seconds (work in flight done)."""
        sizes = {s: self.log_size(s) for s in services}
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = {s: self.log_size(s) for s in sizes}
            if now == sizes:
                return sizes
            sizes = now
        raise TimeoutError(f"event logs still growing: {sizes}")

    def log_size(self, service: str) -> int:
        """How many events the service's own store holds (read directly)."""
        import importlib

        from lifeline.settings import Settings

        spec = importlib.import_module(f"services.{service}.bootstrap").SPEC
        app = spec.application(Settings.from_env(self.env))
        try:
            return app.recorder.max_notification_id() or 0
        finally:
            app.close()

    def signed(self, event: CloudEvent | dict) -> bytes:
        """The event as its source would send it: signed with that source's key in this
        Lifeline's key directory (the test stands in for the source, as an operator could)."""
        wire = event if isinstance(event, dict) else event.to_dict()
        signer = KeyDirectory(self.data_dir / "keys").signer(wire["source"], generate=True)
        return json.dumps(signer.sign(wire), ensure_ascii=False).encode()

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments for a test's own Kafka client: this Lifeline's broker, as the admin
        on the real backend (a test stands in for any producer or reader)."""
        from lifeline.messaging.kafka import kafka_client_options
        from lifeline.settings import Settings

        return kafka_client_options(Settings.from_env(self.env))

    def published(self) -> list[bytes]:
        """Every message value on this Lifeline's topics (SPEC §3), read from the broker now."""
        import asyncio

        from aiokafka import AIOKafkaConsumer

        from lifeline.contracts.topics import ALL_TOPICS

        async def read_all() -> list[bytes]:
            # No group: the consumer is assigned every partition of the topics that exist.
            consumer = AIOKafkaConsumer(*(self.namespace + t for t in ALL_TOPICS),
                                        **self.kafka_options(), group_id=None, auto_offset_reset="earliest",
                                        enable_auto_commit=False, metadata_max_age_ms=1000)
            await consumer.start()
            try:
                for _ in range(100):
                    if consumer.assignment():
                        break
                    await asyncio.sleep(0.1)
                parts = sorted(consumer.assignment())
                ends = await consumer.end_offsets(parts) if parts else {}
                values: list[bytes] = []
                while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                    for batch in (await consumer.getmany(timeout_ms=1000)).values():
                        values.extend(m.value for m in batch if m.value is not None)
                return values
            finally:
                await consumer.stop()

        return asyncio.run(read_all())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lifeline.cli", *args], env=self.env,
            capture_output=True, text=True, timeout=120,
        )

    # --- the statutory procedure (docs/PROCEDURE.md) -----------------------------------
    # Each step by the township's people: a clerk accepts, a caseworker surveys and proposes,
    # a reviewer (another person: four eyes) decides.
    def accept(self, case_id: str, region: str = "370502") -> dict:
        """The clerk accepts the application (受理); the check starts."""
        with self.client("intake", "clerk", region) as c:
            r = c.post(f"/v1/cases/{case_id}/acceptance",
                       json={"decision": "accept", "reason": "材料齐全，予以受理"})
        assert r.status_code == 200, r.text
        return r.json()

    def verification(self, case_id: str) -> dict:
        """The procedure as verification shows it (AssertionError until it knows the case,
        which `wait_for` retries)."""
        with self.client("verification", "auditor") as c:
            r = c.get(f"/v1/verifications/{case_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def step(self, case_id: str, path: str, body: dict | None = None, role: str = "caseworker",
             region: str = "370502") -> httpx.Response:
        with self.client("verification", role, region) as c:
            return c.post(f"/v1/verifications/{case_id}/{path}", json=body)

    def through_procedure(self, case_id: str, proposal: str = "include", region: str = "370502") -> dict:
        """Survey, initial review, public notice (and an appraisal when one is due) on a case
        whose check is completed, then the shared clock moved to the notice's end: the case is
        ready for a decision. Needs a Lifeline started with LIFELINE_TEST_CLOCK=1."""
        view = self.prepare_decision(case_id, proposal, region)
        if proposal == "refuse":
            return view
        self.pass_notices(view)
        return view

    def prepare_decision(self, case_id: str, proposal: str = "include", region: str = "370502",
                         post: Callable[[str, dict | None], dict] | None = None) -> dict:
        """Survey, initial review and (for an inclusion) public notice, with an appraisal when
        one is due, on a case whose check is completed; the clock is not moved (see
        `pass_notices`). Answers the procedure as the last step left it.

        `post(path, body)` takes one step and answers the procedure's view; by default
        `step` as the caseworker of `region`, which must answer 200."""
        if post is None:
            def post(path: str, body: dict | None) -> dict:
                r = self.step(case_id, path, body, region=region)
                assert r.status_code == 200, r.text
                return r.json()
        today = self.clock("show").date().isoformat()
        post("survey", {
            "surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
            "visited_on": today, "findings": "入户调查情况与申报一致"})
        view = post("initial-review", {"proposal": proposal, "reason": "初审意见"})
        if proposal == "refuse":
            return view
        view = post("public-notice", None)
        if view["next_step"] and view["next_step"]["step"] == "democratic_appraisal":
            view = post("appraisal", {
                "held_on": today, "participants": 9, "votes_for": 7, "votes_against": 1,
                "abstentions": 1, "opinion": "多数同意"})
        return view

    def pass_notices(self, *views: dict) -> datetime:
        """Move the shared clock (forward only) to the end of the latest public notice of these
        procedures' views; answers the clock's moment."""
        now = self.clock("show")
        ends = [datetime.fromisoformat(v["public_notice"]["ends_at"]) for v in views]
        if ends and now < max(ends):
            now = self.clock_set(max(ends))
        return now

    # --- the shared test clock (a Lifeline started with LIFELINE_TEST_CLOCK=1) ----------
    def clock(self, *args: str) -> datetime:
        """`lifeline clock ARGS` on this Lifeline's data dir; the moment every process now reads."""
        r = self.cli("clock", *args)
        if r.returncode != 0:
            raise RuntimeError(f"lifeline clock {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return datetime.fromisoformat(r.stdout.strip())

    def clock_set(self, moment: str | datetime) -> datetime:
        """Freeze every process's time at `moment` (ISO 8601 with an offset)."""
        return self.clock("set", moment.isoformat() if isinstance(moment, datetime) else moment)

    def clock_advance(self, duration: str) -> datetime:
        """Move every process's time forward: 7d, 3h, 30m or 10s."""
        return self.clock("advance", duration)

    def clock_reset(self) -> datetime:
        """Every process reads the system time again."""
        return self.clock("reset")


def wait_for(fn: Callable[[], T], timeout: float = 45, interval: float = 0.25, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (httpx.HTTPError, KeyError, IndexError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}; last: {last!r}")
