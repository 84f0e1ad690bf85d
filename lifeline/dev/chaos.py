"""`lifeline chaos` and bench/chaos.py: random SIGKILLs while households flow; then the invariants.

The embedded default as `lifeline up` runs it (Tansu memory-only, redis-server with its append-only
file, SQLite stores, every service and simulator its own process), started in a fresh data
directory on free ports. While households go through the whole flow, seeded dice pick a process
at random moments, SIGKILL it (its whole process group: a service's pain.001 writer or Chromium
die with it) and start it again:

- the five services. A service's outbox relay, its consumers, its projection and its background
  workers (payment's run engine and bank files, notify's delivery and deadline watch, charity's
  federation feed) are asyncio tasks *inside* the service's process, not processes of their own:
  killing the service is how a relay or a consumer is killed;
- the four simulators (partner departments, bank, SMS gateway, charity federation);
- the broker: Tansu keeps nothing, so it comes back empty; every service is then started again
  with LIFELINE_REPUBLISH_ON_START, as a supervisor of the embedded default must do (`lifeline
  up` starts a dead service or simulator again, but does not watch the broker or Redis): its
  relay publishes its whole log again, and its consumers, whose offsets went with the broker,
  read everything again and recognise it;
- redis-server (idempotency keys and rate limits; back from its append-only file).

A household's flow (one wave of households a month on the shared test clock): application,
acceptance, the economic check (the partner simulator answers), survey, initial review, public
notice (and an appraisal when due), the clock past the notice, the decision, payment's
entitlement, the county's payment run for the next month with the bank simulator (pain.001,
pain.002, camt.053), a referral to charity matched against the wave's fund and disbursed, and
every notice delivered in-app, by SMS and by letter (marked printed). Callers behave as real
clients: every POST carries an Idempotency-Key and is retried with it through refused
connections, 5xx and "still in progress".

Then everything settles and the invariants are checked against what each service stored (its
own log read through its own outbound mapping: exactly what its relay publishes), the services'
APIs, the simulators' records and `lifeline replay SERVICE`:

  every accepted application has one case; every approval one entitlement; every entitlement ×
  period at most one payment (and every completed run paid each entitlement due); every fund
  never overdrawn; every notice once per channel (and delivered); the read models equal a replay.

The last line is `chaos: K kills, H households, 0 lost, 0 doubled`, or what broke.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lifeline.settings import SERVICES

SIMULATOR_COMMANDS = {"simulator": "simulator", "bank": "bank-simulator", "sms": "sms-simulator",
                      "federation": "federation-simulator"}
INFRA = ("broker", "redis")
PROCESSES = (*SERVICES, *SIMULATOR_COMMANDS, *INFRA)

# Quick retries and scans, so a run settles in seconds after the last kill rather than minutes;
# the same settings an operator can give `lifeline up` (README lists each).
QUICK = {
    "LIFELINE_NOTICE_RETRY_MAX_SECONDS": "2", "LIFELINE_NOTICE_SCAN_SECONDS": "0.5",
    "LIFELINE_NOTICE_MAX_ATTEMPTS": "1000", "LIFELINE_SMS_TIMEOUT_SECONDS": "3",
    "LIFELINE_PAYMENT_SCAN_SECONDS": "1", "LIFELINE_WEBHOOK_RETRY_MAX_SECONDS": "2",
    "LIFELINE_WEBHOOK_SCAN_SECONDS": "0.5", "LIFELINE_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "LIFELINE_LOG_LEVEL": "WARNING",
}


class Stack:
    """Every process of the embedded default, each one killable and startable on its own."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None):
        from lifeline.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
        from lifeline.ops.redisauth import redis_secret

        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs = self.data_dir / "logs"
        self.logs.mkdir(mode=0o700, exist_ok=True)
        self.broker = EmbeddedBroker(port=free_port(), log_path=self.logs / "broker.log")
        self.redis = EmbeddedRedis(port=free_port(), data_dir=self.data_dir / "redis",
                                   password=redis_secret(self.data_dir))
        ports = {f"LIFELINE_{name.upper()}_PORT": str(free_port()) for name in (*SERVICES, *SIMULATOR_COMMANDS)}
        self.env = {
            **os.environ, **QUICK, **ports,
            "LIFELINE_DATA_DIR": str(self.data_dir), "LIFELINE_REPUBLISH_ON_START": "true",
            "LIFELINE_TEST_CLOCK": "1", "LIFELINE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "LIFELINE_REDIS_URL": self.redis.url, **(extra_env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()

    # --- settings and addresses -------------------------------------------------------------
    def settings(self):
        from lifeline.settings import Settings

        return Settings.from_env(self.env)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env[f'LIFELINE_{name.upper()}_PORT']}"

    # --- lifecycle ----------------------------------------------------------------------------
    def start_all(self) -> None:
        from lifeline.contracts.signing import lifeline_sources, partner_sources
        from lifeline.runtime.service import jwt_secret, signer_for
        from lifeline.stores.sealing import lifeline_secret

        settings = self.settings()
        # Created once here, before the processes race to create them (as `lifeline up` does).
        jwt_secret(settings)
        lifeline_secret(settings)
        for source in [*lifeline_sources(), *partner_sources()]:
            signer_for(settings, source)
        self.broker.start()
        self.redis.start()
        names = [*SERVICES, *SIMULATOR_COMMANDS]
        for name in names:
            self._spawn(name)
        for name in names:
            self.wait_ready(name)

    def _spawn(self, name: str, republish: bool = True) -> None:
        """Start one process; a service started again beside a broker that kept what it had
        publishes nothing again (as `lifeline up` restarts it)."""
        argv = [sys.executable, "-m", "lifeline.cli",
                *(("serve", name) if name in SERVICES else (SIMULATOR_COMMANDS[name],))]
        env = self.env if republish else {**self.env, "LIFELINE_REPUBLISH_ON_START": "false"}
        log = open(os.open(self.logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        try:
            self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def wait_ready(self, name: str, timeout: float = 120) -> None:
        from lifeline.dev.embedded import wait_ready

        wait_ready(self.url(name) + "/readyz", self.procs[name], name, timeout, lambda: self.log_tail(name))

    def pid(self, name: str) -> int | None:
        if name == "broker":
            return self.broker.pid
        if name == "redis":
            return self.redis.pid
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook, no flush, no offset commit; its whole process group."""
        with self.lock:
            if name in INFRA:
                part = self.broker if name == "broker" else self.redis
                if part.pid is not None:
                    with_group_kill(part.pid)
                part.stop()  # reaps it (dead already: no SIGTERM reaches anything)
                return
            proc = self.procs.get(name)
            if proc is not None:
                with_group_kill(proc.pid)
                proc.wait(30)

    def restart(self, name: str) -> None:
        """Start a killed process again and wait until it is ready, as `lifeline up` does for a
        service or a simulator. The broker comes back empty: every service is started again too,
        its relay publishing its whole log (LIFELINE_REPUBLISH_ON_START), its consumers reading
        every topic from the start (their offsets went with the broker) and recognising what
        they handled; `lifeline up` watches its children but not the broker or Redis, so this is
        what a supervisor of the embedded default does."""
        with self.lock:
            if name in INFRA:
                part = self.broker if name == "broker" else self.redis
                part.start()
            else:
                self._spawn(name, republish=False)
        if name == "broker":
            for service in SERVICES:
                self.kill(service)
                self._spawn(service)
            for service in SERVICES:
                self.wait_ready(service)
        elif name not in INFRA:
            self.wait_ready(name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc in self.procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with_group_kill(proc.pid)
                proc.wait(10)
        self.redis.stop()
        self.broker.stop()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def with_group_kill(pid: int) -> None:
    """SIGKILL to the process group `pid` leads (each process here has its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- the dice ----------------------------------------------------------------------------------
class Killer:
    """Kills one process at a time at seeded random moments and starts it again, until `wanted`
    kills were made (or it is stopped): every process once a round, in a random order."""

    def __init__(self, stack: Stack, rng: random.Random, wanted: int, say: Callable[[str], None],
                 victims: tuple[str, ...] = PROCESSES, gap: tuple[float, float] = (0.3, 2.5)):
        self.stack = stack
        self.rng = rng
        self.wanted = wanted
        self.say = say
        self.victims = victims
        self.gap = gap
        self.kills: list[str] = []
        self.failure: str | None = None  # a process that did not come back
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-killer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(600)

    def _run(self) -> None:
        try:
            order: list[str] = []
            while len(self.kills) < self.wanted and not self._stop.wait(self.rng.uniform(*self.gap)):
                if not order:  # every process dies once a round, in a random order
                    order = self.rng.sample(self.victims, len(self.victims))
                name = order.pop()
                down = self.rng.uniform(0.0, 1.0)
                began = time.monotonic()
                self.stack.kill(name)
                self.kills.append(name)
                time.sleep(down)
                for attempt in range(3):
                    try:
                        self.stack.restart(name)
                        break
                    except (RuntimeError, TimeoutError, OSError) as exc:
                        if attempt == 2:
                            self.failure = f"{name} did not come back after a kill: {exc}"
                            self.say(self.failure)
                            return
                        self.stack.kill(name)
                        time.sleep(1.0)
                self.say(f"kill {len(self.kills)}/{self.wanted}: {name} (down {down:.1f} s, ready again after "
                         f"{time.monotonic() - began:.1f} s)")
        finally:
            self.done.set()


# --- the households ------------------------------------------------------------------------------
COUNTY = "370502"
VILLAGE = "370502101001"
TOWNSHIP = VILLAGE[:9]
CHANNELS = ("ICBC", "ABC", "BOC", "CCB", "BOCOM", "PSBC", "RCC")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ("建国", "秀英", "志强", "丽娟", "海燕", "国庆", "春梅", "子涵", "浩然", "雨桐")
RELATIONS = ("self", "spouse", "child")
# A repeated step is refused naming the rule of the step already done (docs/PROCEDURE.md).
DONE_RULE = {"survey": "household_survey", "initial-review": "initial_review", "public-notice": "public_notice",
             "appraisal": "appraisal_not_needed", "decision": "decision"}


class Broke(Exception):
    """A household's flow met an answer it cannot take, or waited in vain: what broke."""


@dataclass
class Household:
    index: int
    wave: int
    people: list[str]
    names: list[str]
    channel: str
    account: str
    phone: str
    consent: bool
    asked_fen: int
    case_id: str | None = None
    view: dict | None = None
    approved: bool = False
    entitlement: dict | None = None
    referral_id: str | None = None
    need_id: str | None = None
    allocations: list[str] = field(default_factory=list)
    error: str | None = None


def poor_people(rng: random.Random, n: int, seed: str, taken: set[str]) -> list[str]:
    """New resident ID numbers of the county whom the partner simulator's seeded data set
    (lifeline.simulators.partners.default_figures) reports with no income, tax, assets or medical
    costs: eligible for dibao without records loaded into the simulator, which keeps them in memory
    only (a kill would forget them)."""
    from datetime import date, timedelta

    from lifeline.rules.ids import make_resident_id
    from lifeline.simulators.partners import default_figures

    out: list[str] = []
    while len(out) < n:
        number = make_resident_id(COUNTY, date(1950, 1, 1) + timedelta(days=rng.randrange(50 * 365)),
                                  rng.randrange(500), female=rng.random() < 0.5)
        if number in taken:
            continue
        if all(not any(default_figures(seed, d, number).values()) for d in ("hrss", "tax", "bank", "medical_insurance")):
            taken.add(number)
            out.append(number)
    return out


def application_body(h: Household) -> dict:
    return {
        "assistance_type": "dibao", "channel": "window", "region_code": VILLAGE, "area": "urban",
        "members": [{"id_number": number, "name": name, "relation": RELATIONS[j], "disability_grade": None,
                     "disability_kind": None, "serious_illness": False, "work_ability": "full"}
                    for j, (number, name) in enumerate(zip(h.people, h.names))],
        "declared_monthly_income_fen": 0, "declared_assets_fen": 0,
        "bank_account": {"channel": h.channel, "account_number": h.account, "account_name": h.names[0]},
        "contact_phone": h.phone, "authorisation_signed": True, "urgency": "normal",
    }


class Api:
    """The services' and simulators' HTTP APIs as a patient client uses them: a POST carries an
    Idempotency-Key and is sent again, with it, after a refused connection, a 5xx, 429 or "still
    in progress", until `patience` seconds have passed."""

    def __init__(self, stack: Stack, patience: float, say: Callable[[str], None] = lambda _: None):
        import httpx

        from lifeline.cli import mint

        settings = stack.settings()
        self.stack = stack
        self.patience = patience
        self.say = say
        self.tokens = {role: mint(settings, role, COUNTY) for role in
                       ("clerk", "caseworker", "reviewer", "county_officer", "auditor", "admin")}
        self.http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))

    def close(self) -> None:
        self.http.close()

    def call(self, service: str, method: str, path: str, role: str | None = None, *, json: Any = None,
             key: str | None = None, params: dict | None = None) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        if key:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + self.patience
        wait = 0.2
        while True:
            try:
                r = self.http.request(method, self.stack.url(service) + path, json=json, params=params,
                                      headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            else:
                in_progress = r.status_code == 409 and "idempotency-in-progress" in r.text
                if r.status_code < 500 and r.status_code != 429 and not in_progress:
                    return r
                last = f"{r.status_code} {r.text[:200]}"
            if time.monotonic() >= deadline:
                raise Broke(f"{method} {service}{path} never answered in {self.patience:g} s (last: {last})")
            time.sleep(wait)
            wait = min(wait * 1.5, 2.0)

    def get(self, service: str, path: str, role: str | None = "auditor", **params: Any) -> Any:
        r = self.call(service, "GET", path, role, params=params or None)
        if r.status_code != 200:
            raise Broke(f"GET {service}{path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def until(self, what: str, probe: Callable[[], Any], timeout: float | None = None) -> Any:
        """Poll `probe` until it answers something truthy (an answer not there yet, 404 or an
        outage is waited out)."""
        began = time.monotonic()
        deadline = began + (timeout or self.patience)
        last: Any = None
        while time.monotonic() < deadline:
            try:
                found = probe()
            except Broke as exc:
                found, last = None, exc
            if found:
                if time.monotonic() - began > 30:
                    self.say(f"  (waited {time.monotonic() - began:.0f} s for {what})")
                return found
            time.sleep(0.3)
        raise Broke(f"waited {timeout or self.patience:g} s in vain for {what}" + (f" ({last})" if last else ""))


# --- the flow ----------------------------------------------------------------------------------
class Flow:
    """Households through the whole flow, a wave a month on the shared test clock."""

    def __init__(self, stack: Stack, api: Api, seed: str, rng: random.Random, say: Callable[[str], None],
                 wave_size: int, concurrency: int):
        from lifeline.domain.clock import clock_for

        self.stack = stack
        self.api = api
        self.seed = seed
        self.rng = rng
        self.say = say
        self.wave_size = wave_size
        self.concurrency = concurrency
        self.clock = clock_for(stack.settings())
        self.households: list[Household] = []
        self.taken: set[str] = set()
        self.funds: list[str] = []
        self.runs: list[dict] = []  # the payment runs completed
        self.errors: list[str] = []  # flows that broke (counted as lost)

    def key(self, h: Household | None, step: str) -> str:
        return f"chaos-{self.seed}-{h.index if h else 0}-{step}"

    # --- one household's steps ------------------------------------------------------------------
    def post_step(self, h: Household, service: str, path: str, role: str, body: Any, step: str,
                  done: Callable[[dict], bool] = lambda _: True) -> Any:
        """POST one step; 2xx is taken. A 409 that names the step as done already is taken too when
        `done(problem)` confirms it: a retry whose first attempt was taken by a process that died
        before answering, its Idempotency-Key forgotten by a Redis killed before writing it."""
        r = self.api.call(service, "POST", path, role, json=body, key=self.key(h, step))
        if r.status_code < 300:
            return r.json()
        if r.status_code == 409:
            problem = r.json()
            if done(problem):
                return None
        raise Broke(f"{step} of {h.case_id} answered {r.status_code}: {r.text[:300]}")

    def view(self, h: Household) -> dict:
        return self.api.get("verification", f"/v1/verifications/{h.case_id}")

    def procedure_step(self, h: Household, path: str, body: Any) -> dict:
        answer = self.post_step(h, "verification", f"/v1/verifications/{h.case_id}/{path}", "caseworker", body,
                                path, done=lambda p: p.get("rule") == DONE_RULE[path])
        return answer if answer is not None else self.view(h)

    def prepare(self, h: Household) -> None:
        """Submitted, accepted, checked, surveyed, proposed and publicly noticed."""
        answer = self.post_step(h, "intake", "/v1/applications", "clerk", application_body(h), "application")
        if answer is None or "case_id" not in answer:
            raise Broke(f"household {h.index}: the application was not answered with a case")
        h.case_id = answer["case_id"]
        self.post_step(h, "intake", f"/v1/cases/{h.case_id}/acceptance", "clerk",
                       {"decision": "accept", "reason": "申请材料齐全，予以受理"}, "acceptance",
                       # accepted, and maybe checked or decided since (a later status)
                       done=lambda p: p.get("rule") == "acceptance_decided_once"
                       and p.get("case_status") in ("accepted", "verified", "approved", "refused"))
        view = self.api.until(f"the economic check of {h.case_id}", lambda: (
            v if (v := self._view_or_none(h)) and v["state"] not in ("awaiting_acceptance", "requested") else None))
        outcome = (view.get("assessment") or {}).get("outcome")
        if outcome != "eligible":
            raise Broke(f"the check of {h.case_id} found it {outcome}, not eligible: {view.get('assessment')}")
        today = self.clock.now().date().isoformat()
        if view["survey"] is None:
            view = self.procedure_step(h, "survey", {
                "surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
                "visited_on": today, "findings": "入户调查情况与申报一致"})
        if view["initial_review"] is None:
            view = self.procedure_step(h, "initial-review", {"proposal": "include", "reason": "初审同意纳入低保"})
        if view["public_notice"] is None:
            view = self.procedure_step(h, "public-notice", None)
        if (view.get("next_step") or {}).get("step") == "democratic_appraisal":
            view = self.procedure_step(h, "appraisal", {
                "held_on": today, "participants": 9, "votes_for": 7, "votes_against": 1, "abstentions": 1,
                "opinion": "多数同意"})
        h.view = view

    def _view_or_none(self, h: Household) -> dict | None:
        r = self.api.call("verification", "GET", f"/v1/verifications/{h.case_id}", "auditor")
        return r.json() if r.status_code == 200 else None

    def approve(self, h: Household) -> None:
        self.post_step(h, "verification", f"/v1/verifications/{h.case_id}/decision", "reviewer",
                       {"decision": "approve", "reason": "经审核确认小组会议研究，同意纳入最低生活保障"}, "decision",
                       done=lambda p: p.get("rule") == "decision" and self.view(h)["state"] == "approved")
        h.approved = True
        h.entitlement = self.api.until(f"payment's entitlement of {h.case_id}", lambda: next(iter(
            self.api.get("payment", "/v1/entitlements", case_id=h.case_id)["items"]), None))

    def help_from_charity(self, h: Household) -> None:
        """A referral to charity, its need matched against the funds, allocated and disbursed."""
        body = {"target": "charity", "need_category": "medical", "amount_asked_fen": h.asked_fen,
                "urgency": "urgent", "consent_to_share": h.consent}
        answer = self.post_step(h, "intake", f"/v1/cases/{h.case_id}/referrals", "clerk", body, "referral")
        h.referral_id = answer["referral_id"]
        need = self.api.until(f"the need of referral {h.referral_id}", lambda: next(
            (n for n in self.api.get("charity", "/v1/needs", "caseworker", case_id=h.case_id)["items"]
             if n["referral_id"] == h.referral_id), None))
        h.need_id = need["need_id"]
        proposal = self.api.get("charity", f"/v1/needs/{h.need_id}/matches", "caseworker")["proposal"]
        for portion in proposal:
            r = self.api.call("charity", "POST", f"/v1/needs/{h.need_id}/allocations", "caseworker",
                              json={"fund_id": portion["fund_id"], "amount_fen": portion["amount_fen"]},
                              key=self.key(h, f"allocation-{portion['fund_id']}"))
            if r.status_code == 201:
                h.allocations.append(r.json()["allocation_id"])
            elif r.status_code != 409:  # 409: another need came first, or the federation took it
                raise Broke(f"allocation for {h.need_id} answered {r.status_code}: {r.text[:300]}")
        for allocation_id in h.allocations:
            self.post_step(h, "charity", f"/v1/needs/{h.need_id}/allocations/{allocation_id}/disbursement",
                           "caseworker", {"reference": f"CHAOS-{self.seed}-{allocation_id}"[:64]},
                           f"disbursement-{allocation_id}",
                           done=lambda p, a=allocation_id: self.allocation_status(h, a) == "disbursed")

    def allocation_status(self, h: Household, allocation_id: str) -> str | None:
        need = self.api.get("charity", f"/v1/needs/{h.need_id}", "caseworker")
        return next((a["status"] for a in need["allocations"] if a["allocation_id"] == allocation_id), None)

    # --- a wave -----------------------------------------------------------------------------------
    def each(self, households: list[Household], work: Callable[[Household], None]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def guarded(h: Household) -> None:
            if h.error:
                return
            try:
                work(h)
            except Broke as exc:
                h.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - an answer of an unexpected shape: this household stops
                h.error = f"{type(exc).__name__}: {exc}"
            if h.error:
                self.errors.append(f"household {h.index} ({h.case_id}): {h.error}")
                self.say(f"  household {h.index} broke: {h.error}")

        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(households)))) as pool:
            list(pool.map(guarded, households))

    def new_wave(self, wave: int) -> list[Household]:
        out = []
        for _ in range(self.wave_size):
            i = len(self.households) + 1
            size = 1 + self.rng.randrange(3)
            people = poor_people(self.rng, size, self.stack.settings().simulator_seed, self.taken)
            surname = self.rng.choice(SURNAMES)
            names = [(surname if j != 1 else self.rng.choice(SURNAMES)) + self.rng.choice(GIVEN) for j in range(size)]
            h = Household(i, wave, people, names, CHANNELS[i % len(CHANNELS)],
                          "6228" + f"{self.rng.randrange(10**15):015d}", f"13{self.rng.randrange(10**9):09d}",
                          consent=self.rng.random() < 0.5, asked_fen=self.rng.randrange(50_000, 300_000, 100))
            self.households.append(h)
            out.append(h)
        return out

    def wave(self, wave: int) -> None:
        """One month: the wave's households prepared, the clock past their notices, decided; a fund
        registered and the referrals matched (a donation half-way); the county's run for the next
        month with the bank; the letters printed."""
        from datetime import datetime, timedelta

        from lifeline.rules.periods import SHANGHAI

        now = self.clock.now()
        month = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
        self.clock.set(datetime(month.year, month.month, 1, 9, 0, tzinfo=SHANGHAI))
        households = self.new_wave(wave)
        began = time.monotonic()
        self.each(households, self.prepare)
        ready = [h for h in households if not h.error]
        ends = [datetime.fromisoformat(h.view["public_notice"]["ends_at"]) for h in ready
                if h.view and h.view.get("public_notice")]
        if ends and self.clock.now() < max(ends):
            self.clock.set(max(ends))
        self.each(ready, self.approve)
        approved = [h for h in ready if not h.error]
        # Charity: a fund for the wave smaller than what the wave asks, so needs compete for it.
        asked = sum(h.asked_fen for h in approved)
        fund_id = None
        if approved:
            r = self.api.call("charity", "POST", "/v1/funds", "county_officer", key=self.key(None, f"fund-{wave}"),
                              json={"name": f"救急难专项基金（第{wave}批）", "kind": "special",
                                    "need_categories": ["medical"], "region_code": COUNTY,
                                    "balance_fen": asked * 6 // 10})
            if r.status_code != 201:
                self.errors.append(f"wave {wave}: the fund was refused: {r.status_code} {r.text[:300]}")
            else:
                fund_id = r.json()["fund_id"]
                self.funds.append(fund_id)
        if fund_id:
            half = len(approved) // 2
            self.each(approved[:half], self.help_from_charity)
            r = self.api.call("charity", "POST", f"/v1/funds/{fund_id}/donations", "county_officer",
                              key=self.key(None, f"donation-{wave}"),
                              json={"reference": f"CHAOS-{self.seed}-D{wave}", "donor": "东营市某某商贸有限公司",
                                    "amount_fen": asked // 5})
            if r.status_code not in (200, 201):
                self.errors.append(f"wave {wave}: the donation was refused: {r.status_code} {r.text[:300]}")
            self.each(approved[half:], self.help_from_charity)
        periods = sorted({h.entitlement["first_period"] for h in approved if h.entitlement})
        for period in periods:
            self.pay(period)
        self.print_letters()
        self.say(f"wave {wave}: {len(households)} households, {len(approved)} approved, "
                 f"{sum(len(h.allocations) for h in households)} allocations, runs {periods} "
                 f"({time.monotonic() - began:.0f} s)")

    def pay(self, period: str) -> None:
        """The county's run for the period, over budget never: a budget set first; followed until
        completed (the bank's answers and statements come back on their own)."""
        r = self.api.call("payment", "POST", "/v1/budgets", "county_officer", key=self.key(None, f"budget-{period}"),
                          json={"county_code": COUNTY, "period": period, "fund_source": "dibao_fund",
                                "amount_fen": 10**12})
        if r.status_code != 200:
            self.errors.append(f"budget for {period}: {r.status_code} {r.text[:300]}")
            return
        r = self.api.call("payment", "POST", "/v1/payment-runs", "county_officer",
                          json={"period": period, "county_code": COUNTY})
        if r.status_code != 202:
            self.errors.append(f"the run for {period}: {r.status_code} {r.text[:300]}")
            return
        run_id = r.json()["run_id"]
        try:
            view = self.api.until(f"the run {run_id} completed", lambda: (
                v if (v := self.api.get("payment", f"/v1/payment-runs/{run_id}", "county_officer"))["status"]
                in ("completed", "awaiting_approval") else None))
        except Broke as exc:
            self.errors.append(f"the run for {period}: {exc}")
            return
        if view["status"] != "completed":
            self.errors.append(f"the run for {period} is {view['status']}")
            return
        self.runs.append(view)

    def print_letters(self) -> int:
        """Every letter in the print queue marked printed (NoticeDelivered by letter)."""
        queue = self.api.get("notify", "/v1/print-queue", "clerk")["items"]
        printed = 0
        for item in queue:
            notice_id = item["notice_id"]
            r = self.api.call("notify", "POST", f"/v1/print-queue/{notice_id}/printed", "clerk", json={},
                              key=self.key(None, f"printed-{notice_id}"))
            if r.status_code == 200 or (r.status_code == 409 and r.json().get("rule") == "already_delivered"):
                printed += 1
            else:
                self.errors.append(f"printing {notice_id}: {r.status_code} {r.text[:300]}")
        return printed


# --- the invariants ----------------------------------------------------------------------------
def published(settings: Any, service: str) -> list[tuple[int, str, dict]]:
    """(position, name, data) of every public event in the service's own log, through its own
    outbound mapping: exactly what its relay publishes (read from the store, so a broker that
    lost everything does not hide or add anything)."""
    from lifeline.audit.export import notifications
    from lifeline.cli import service_spec

    app = service_spec(service).application(settings)
    try:
        out = []
        for n in notifications(app):
            mapped = app.outbound(app.mapper.to_domain_event(n))
            if mapped is not None:
                out.append((n.id, mapped.name, mapped.data))
        return out
    finally:
        app.close()


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # read models that differ from a replay


def count_by(events: list[tuple[int, str, dict]], name: str, *fields: str) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for _, n, data in events:
        if n == name:
            k = tuple(data[f] for f in fields)
            counts[k] = counts.get(k, 0) + 1
    return counts


def check(flow: Flow, logs: dict[str, list[tuple[int, str, dict]]], sms: dict[str, int],
          at_bank: dict[str, int]) -> Findings:
    """Every invariant of the module's docstring over what the services stored."""
    f = Findings()
    intake, verification, payment, charity, notify = (logs[s] for s in SERVICES)
    ours = [h for h in flow.households if h.case_id]
    answered = {h.case_id for h in ours}

    # Every accepted application has one case (and one acceptance, one check).
    submitted = count_by(intake, "ApplicationSubmitted", "case_id")
    for h in ours:
        if submitted.get((h.case_id,), 0) == 0:
            f.lost.append(f"application of household {h.index} answered {h.case_id}: no case stored")
    f.doubled += [f"case {c}: {n} ApplicationSubmitted" for (c,), n in submitted.items() if n > 1]
    f.doubled += [f"case {c} stored, answered to no application" for (c,) in submitted if c not in answered]
    accepted = count_by(intake, "ApplicationAccepted", "case_id")
    f.doubled += [f"case {c}: accepted {n} times" for (c,), n in accepted.items() if n > 1]
    completed = count_by(verification, "VerificationCompleted", "case_id")
    f.doubled += [f"case {c}: its check completed {n} times" for (c,), n in completed.items() if n > 1]
    for h in ours:
        if (h.case_id,) in accepted and (h.case_id,) not in completed:
            f.lost.append(f"case {h.case_id}: accepted, never checked")

    # Every approval one entitlement.
    approvals = count_by(verification, "BenefitApproved", "case_id", "benefit_id")
    by_case: dict[str, int] = {}
    for (case_id, _), n in approvals.items():
        by_case[case_id] = by_case.get(case_id, 0) + n
    f.doubled += [f"case {c}: approved {n} times" for c, n in by_case.items() if n > 1]
    f.lost += [f"case {h.case_id}: approved (answered), no BenefitApproved" for h in ours
               if h.approved and h.case_id not in by_case]
    opened = count_by(payment, "EntitlementOpened", "benefit_id")
    for (case_id, benefit_id) in approvals:
        n = opened.get((benefit_id,), 0)
        if n == 0:
            f.lost.append(f"benefit {benefit_id} of case {case_id}: approved, no entitlement")
        elif n > 1:
            f.doubled.append(f"benefit {benefit_id} of case {case_id}: {n} entitlements")

    # Every entitlement x period at most one payment; each run paid every entitlement due; each
    # payment settled once.
    instructed = count_by(payment, "PaymentInstructed", "entitlement_id", "period")
    f.doubled += [f"entitlement {e} paid {n} times for {p}" for (e, p), n in instructed.items() if n > 1]
    entitlements = [d for _, n, d in payment if n == "EntitlementOpened"]
    for _, n, run in payment:
        if n != "PaymentRunCompleted" or run["county_code"] != COUNTY:
            continue
        for e in entitlements:
            if e["first_period"] <= run["period"] and (e["entitlement_id"], run["period"]) not in instructed:
                f.lost.append(f"entitlement {e['entitlement_id']}: not paid by the completed run for {run['period']}")
    f.doubled += [f"payment {p} sent to the bank in {n} files" for p, n in at_bank.items() if n > 1]
    f.lost += [f"payment {d['payment_id']} ({d['period']}) instructed, in no file the bank received" for _, n, d
               in payment if n == "PaymentInstructed" and d["payment_id"] not in at_bank]
    settled = count_by(payment, "PaymentSettled", "payment_id")
    f.doubled += [f"payment {p} settled {n} times" for (p,), n in settled.items() if n > 1]
    f.lost += [f"payment {d['payment_id']} ({d['period']}) instructed, never settled" for _, n, d in payment
               if n == "PaymentInstructed" and (d["payment_id"],) not in settled]

    # Every fund never overdrawn: its events replayed in its log's order.
    funds: dict[str, dict[str, int]] = {}
    allocated: dict[str, int] = {}
    disbursed: dict[str, int] = {}
    for position, n, d in charity:
        if n == "FundRegistered":
            funds[d["fund_id"]] = {"balance_fen": d["balance_fen"], "committed_fen": 0}
            continue
        fund = funds.get(d.get("fund_id", ""))
        if fund is None:
            continue
        if n == "DonationReceived":
            fund["balance_fen"] += d["amount_fen"]
        elif n == "FundAllocated":
            fund["committed_fen"] += d["amount_fen"]
            allocated[d["allocation_id"]] = allocated.get(d["allocation_id"], 0) + 1
        elif n == "AllocationReleased":
            fund["committed_fen"] -= d["amount_fen"]
        elif n == "AllocationDisbursed":
            fund["committed_fen"] -= d["amount_fen"]
            fund["balance_fen"] -= d["amount_fen"]
            disbursed[d["allocation_id"]] = disbursed.get(d["allocation_id"], 0) + 1
        if not 0 <= fund["committed_fen"] <= fund["balance_fen"]:
            f.doubled.append(f"fund {d['fund_id']} overdrawn at log position {position} ({n}): committed "
                             f"{fund['committed_fen']} of a balance of {fund['balance_fen']} fen")
    f.doubled += [f"allocation {a}: allocated {n} times" for a, n in allocated.items() if n > 1]
    f.doubled += [f"allocation {a}: disbursed {n} times" for a, n in disbursed.items() if n > 1]
    for h in ours:
        for a in h.allocations:
            if a not in allocated:
                f.lost.append(f"allocation {a} of {h.need_id} answered 201, not stored")
            elif a not in disbursed and not h.error:
                f.lost.append(f"allocation {a} of {h.need_id} disbursed (answered), not stored")
    donations = count_by(charity, "DonationReceived", "fund_id", "reference")
    f.doubled += [f"donation {r} to {fd} received {n} times" for (fd, r), n in donations.items() if n > 1]
    needs = count_by(charity, "NeedOpened", "referral_id")
    raised = count_by(intake, "ReferralRaised", "referral_id")
    f.doubled += [f"referral {r}: {n} needs" for (r,), n in needs.items() if n > 1]
    f.doubled += [f"referral {r} raised {n} times" for (r,), n in raised.items() if n > 1]
    f.lost += [f"referral {r} raised, no need opened" for (r,) in raised if (r,) not in needs]
    f.lost += [f"referral {h.referral_id} answered 201, not stored" for h in ours
               if h.referral_id and (h.referral_id,) not in raised]

    # Every notice once per channel (and delivered on each: in-app, letter once printed, SMS).
    issued = count_by(notify, "NoticeIssued", "case_id", "kind")
    f.doubled += [f"case {c}: notice {k} issued {n} times" for (c, k), n in issued.items() if n > 1]
    for h in ours:
        kinds = ["acceptance"] + (["public_notice"] if h.view and h.view.get("public_notice") else [])
        f.lost += [f"case {h.case_id}: no {k} notice" for k in kinds if (h.case_id, k) not in issued]
    delivered = count_by(notify, "NoticeDelivered", "notice_id", "channel")
    f.doubled += [f"notice {i} delivered {n} times by {c}" for (i, c), n in delivered.items() if n > 1]
    for _, n, d in notify:
        if n != "NoticeIssued" or d["case_id"] not in answered:
            continue
        for channel in ("in_app", "letter", "sms"):
            if (d["notice_id"], channel) not in delivered:
                f.lost.append(f"notice {d['notice_id']} ({d['kind']} of {d['case_id']}) never delivered by {channel}")
        sent = sms.get(f"{d['notice_id']}:sms", 0)
        if sent > 1:
            f.doubled.append(f"notice {d['notice_id']}: {sent} SMS sent")
        elif sent == 0 and (d["notice_id"], "sms") in delivered:
            f.lost.append(f"notice {d['notice_id']}: delivered by SMS, the gateway sent none")
    return f


# What the summary counts, to show the invariants were checked over something.
TALLIED = ("ApplicationSubmitted", "BenefitApproved", "EntitlementOpened", "PaymentInstructed", "PaymentSettled",
           "FundAllocated", "AllocationDisbursed", "NoticeIssued", "NoticeDelivered")


# --- the run -------------------------------------------------------------------------------------
def sms_sent(api: Api) -> dict[str, int]:
    """Messages the SMS gateway sent, by Idempotency-Key."""
    counts: dict[str, int] = {}
    for m in api.get("sms", "/v1/messages", None)["items"]:
        key = m.get("idempotency_key") or ""
        counts[key] = counts.get(key, 0) + 1
    return counts


def bank_transfers(api: Api) -> dict[str, int]:
    """How many distinct pain.001 files (by MsgId) the bank simulator received each payment in."""
    from lifeline.iso20022 import parse_pain001

    seen: dict[str, set[str]] = {}
    for f in api.get("bank", "/v1/files", None)["items"]:
        if f["kind"] != "pain.001.001.09":
            continue
        r = api.call("bank", "GET", f"/v1/files/{f['name']}")
        batch = parse_pain001(r.content)
        for t in batch.transfers:
            seen.setdefault(t.end_to_end_id, set()).add(batch.msg_id)
    return {payment_id: len(files) for payment_id, files in seen.items()}


def replay_all(stack: Stack) -> list[str]:
    """`lifeline replay SERVICE` for each service: what differs (empty: every read model equals a
    replay of its log)."""
    differ = []
    for service in SERVICES:
        r = subprocess.run([sys.executable, "-m", "lifeline.cli", "replay", service], env=stack.env,
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            lines = (r.stdout.strip() or r.stderr.strip()).splitlines()
            differ.append(f"{service}: read models differ from a replay: " + " | ".join(lines[:6]))
    return differ


def run(kills: int, seed: int, households: int = 0, wave_size: int = 6, concurrency: int = 4,
        patience: float = 240, data_dir: Path | None = None, keep: bool = False, out: TextIO = sys.stdout,
        gap: tuple[float, float] = (0.3, 2.5), calm_waves: int = 1) -> int:
    """The whole chaos run; prints its progress and the last line; 0 only when nothing was lost,
    nothing doubled and every read model equals a replay."""
    import shutil
    import tempfile

    started = time.monotonic()
    cpu0 = os.times()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {line}", file=out, flush=True)

    own_dir = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="lifeline-chaos-")) if data_dir is None else data_dir
    rng = random.Random(seed)
    stack = Stack(data_dir)
    say(f"chaos: seed {seed}, {kills} kills wanted, data in {data_dir}")
    try:
        stack.start_all()
    except BaseException:
        stack.stop_all()
        raise
    say(f"every process ready: {', '.join(PROCESSES)}")
    api = Api(stack, patience, say)
    flow = Flow(stack, api, str(seed), random.Random(rng.random()), say, wave_size, concurrency)
    killer = Killer(stack, random.Random(rng.random()), kills, say, gap=gap)
    findings = Findings()
    wave = 0
    calm = fire = (0, 0.0)  # (households, seconds) without kills, then under them

    def one_wave() -> None:
        nonlocal wave
        wave += 1
        try:
            flow.wave(wave)
        except Broke as exc:
            flow.errors.append(f"wave {wave}: {exc}")
            say(f"wave {wave} broke: {exc}")

    try:
        # The baseline of the same run: the first waves without a kill.
        began = time.monotonic()
        for _ in range(calm_waves):
            one_wave()
        calm = (len(flow.households), time.monotonic() - began)
        killer.start()
        began = time.monotonic()
        while not (killer.done.is_set() and len(flow.households) >= households):
            one_wave()
            if killer.failure:
                break
        fire = (len(flow.households) - calm[0], time.monotonic() - began)
        killer.stop()
        if killer.failure:
            findings.other.append(killer.failure)
        say(f"{len(killer.kills)} kills made; settling")
        for name in PROCESSES:  # whatever the dice left down comes back
            if stack.pid(name) is None:
                stack.restart(name)
        deadline = time.monotonic() + patience
        settings = stack.settings()
        while True:
            flow.print_letters()
            logs = {s: published(settings, s) for s in SERVICES}
            findings = check(flow, logs, sms_sent(api), bank_transfers(api))
            if not findings.lost or time.monotonic() > deadline:
                break
            time.sleep(3)
        # Quiet: no service's log grew for a few seconds, then the final look.
        sizes = {s: len(v) for s, v in logs.items()}
        while time.monotonic() < deadline:
            time.sleep(3)
            logs = {s: published(settings, s) for s in SERVICES}
            now = {s: len(v) for s, v in logs.items()}
            if now == sizes:
                break
            sizes = now
        findings = check(flow, logs, sms_sent(api), bank_transfers(api))
        if killer.failure:
            findings.other.append(killer.failure)
        findings.other += replay_all(stack)
    finally:
        api.close()
        killer.stop()
        stack.stop_all()
    cpu = os.times()
    events = sum(len(v) for v in logs.values()) if "logs" in locals() else 0
    by_victim = {name: killer.kills.count(name) for name in PROCESSES}
    say("kills by process: " + ", ".join(f"{n} {c}" for n, c in by_victim.items()))
    say(f"{len(flow.households)} households in {wave} waves, {len(flow.runs)} payment runs, "
        f"{len(flow.funds)} funds; {events} public events stored; {len(flow.errors)} flows broke")
    if "logs" in locals():
        say("checked: " + ", ".join(f"{n} {sum(1 for s in logs.values() for e in s if e[1] == n)}" for n in TALLIED))
    say(f"wall {time.monotonic() - started:.0f} s; this process's CPU {cpu.user - cpu0.user + cpu.system - cpu0.system:.0f} s, "
        f"its children's {cpu.children_user - cpu0.children_user + cpu.children_system - cpu0.children_system:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f}")
    per_minute = [60 * n / max(t, 1e-9) for n, t in (calm, fire)]
    if calm[0] and fire[0]:
        say(f"households through the whole flow: {per_minute[1]:.1f}/min under fire, {per_minute[0]:.1f}/min "
            f"calm (the first {calm_waves} wave(s), no kill: the baseline); ratio {per_minute[1] / per_minute[0]:.2f}")
    for line in flow.errors:
        print(f"broke: {line}", file=out)
    for kind, lines in (("lost", findings.lost), ("doubled", findings.doubled), ("other", findings.other)):
        for line in lines[:100]:
            print(f"{kind}: {line}", file=out)
    lost = len(findings.lost) + len(flow.errors)
    line = (f"chaos: {len(killer.kills)} kills, {len(flow.households)} households, {lost} lost, "
            f"{len(findings.doubled)} doubled")
    if findings.other:
        line += f"; {len(findings.other)} other problems"
    if own_dir and not keep and not (lost or findings.doubled or findings.other):
        shutil.rmtree(data_dir, ignore_errors=True)
    elif own_dir:
        print(f"data, logs and stores kept in {data_dir}", file=out)
    print(line, file=out, flush=True)
    return 0 if not (lost or findings.doubled or findings.other) else 1
