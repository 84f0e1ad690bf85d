"""`lifeline demo`: N new households pushed through the real commands to approval.

For trying Lifeline and for tests. Each household gets new valid resident ID numbers, which the
partner simulator is told to report as poor (`PUT /v1/records/{department}/{id_number}`); then,
through the services' public APIs and with the roles the procedure names (docs/PROCEDURE.md):

1. a clerk submits the application and accepts it (intake);
2. the economic check completes (verification, the departments answering from the simulator);
3. a caseworker records the household survey, proposes inclusion and posts the public notice
   (with a democratic appraisal when the check warned);
4. the shared test clock moves past the last notice's end (`lifeline clock set`): this needs
   every process of the Lifeline started with LIFELINE_TEST_CLOCK=1;
5. a reviewer (another person: four eyes) approves, and payment's entitlement is waited for.

Steps 1-3 and 5 run for several households at once (threads, `--concurrency`); step 4 once for
all. Every POST carries an Idempotency-Key derived from the seed, the household and the step, so a
request retried after a dropped connection is one request; a step the procedure shows done
already is not taken again, so the same `--seed` again continues where a run stopped.

Whether the services read the shared clock is checked at once: the clock is frozen when the
demo starts, and intake's acceptance must carry exactly that moment (verification's notice
too); otherwise the demo stops and says how to start Lifeline for it.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable, TextIO, TypeVar

from lifeline.cli import (
    EXIT_API_ERROR, EXIT_OK, EXIT_USAGE, ApiError, ServiceClient, mint, plural, yuan,
)
from lifeline.domain.clock import SharedClock, clock_for
from lifeline.rules.ids import make_resident_id
from lifeline.rules.periods import SHANGHAI, first_payment_period, next_period, period_start, previous_period
from lifeline.rules.regions import InvalidRegionCode, region_contains, validate_region_code
from lifeline.rules.vocabulary import MONTHLY_FUND_SOURCES
from lifeline.settings import Settings

T = TypeVar("T")

MAX_HOUSEHOLDS = 1000
# What the departments report for every member: 200 元 a month, no assets (eligible for 低保).
MONTHLY_INCOME_FEN = 20_000
CHANNELS = ("ICBC", "ABC", "BOC", "CCB", "BOCOM", "PSBC", "RCC")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ("建国", "秀英", "志强", "丽娟", "海燕", "国庆", "春梅", "子涵", "浩然", "雨桐", "明", "芳", "伟", "静",
         "磊", "敏", "军", "霞", "涛", "燕")
RELATIONS = ("self", "spouse", "child")
HOW_TO_START = (
    "Start every Lifeline process with the shared test clock and run the demo with it too, with the "
    "same LIFELINE_DATA_DIR (the clock is the file clock.json there):\n"
    "  LIFELINE_TEST_CLOCK=1 lifeline up            # or: LIFELINE_TEST_CLOCK=1 bash scripts/run.sh\n"
    "  LIFELINE_TEST_CLOCK=1 lifeline demo --households 3 --budget\n"
    "(development only: production refuses LIFELINE_TEST_CLOCK)")


class ClockNotShared(Exception):
    """A service does not read the shared test clock the demo moves."""


class Stopped(Exception):
    """Another household found a reason to stop the demo."""


class HouseholdFailed(Exception):
    """This household cannot go on (the others do)."""


@dataclass
class Household:
    index: int
    people: list[str]
    names: list[str]
    channel: str
    account: str
    case_id: str | None = None
    view: dict | None = None         # the procedure once its notice is posted
    decision: dict | None = None     # the approval: its benefit
    entitlement: dict | None = None  # payment's entitlement
    error: str | None = None

    @property
    def account_ref(self) -> str:
        return f"{self.channel}:…{self.account[-4:]}"


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def make_households(seed: str, n: int, county: str) -> list[Household]:
    """N households of 1-3 people, with resident ID numbers of the county that are new for the
    seed (and distinct within it), names, and each its own account at one of the channels."""
    taken: set[str] = set()
    out = []
    for i in range(n):
        size = 1 + i % 3
        people, names = [], []
        surname = SURNAMES[_digest(seed, i, "surname") % len(SURNAMES)]
        for j in range(size):
            attempt = 0
            while True:
                h = _digest(seed, i, j, attempt)
                # Adults: the applicant and spouse born 1955-1984, a child 1995-2005.
                first, span = (date(1995, 1, 1), 11 * 365) if RELATIONS[j] == "child" else (date(1955, 1, 1), 30 * 365)
                number = make_resident_id(county, first + timedelta(days=h % span), (h >> 16) % 500,
                                          female=bool((h >> 32) & 1))
                if number not in taken:
                    break
                attempt += 1
            taken.add(number)
            people.append(number)
            own = surname if j != 1 else SURNAMES[_digest(seed, i, j, "spouse") % len(SURNAMES)]
            names.append(own + GIVEN[_digest(seed, i, j, "given") % len(GIVEN)])
        account = "6228" + f"{_digest(seed, i, 'account') % 10**15:015d}"
        out.append(Household(i + 1, people, names, CHANNELS[i % len(CHANNELS)], account))
    return out


def application_body(h: Household, village: str) -> dict:
    """A valid application (as tests/harness.py household() builds one)."""
    return {
        "assistance_type": "dibao",
        "channel": "window",
        "region_code": village,
        "area": "urban",
        "members": [
            {"id_number": number, "name": name, "relation": RELATIONS[j], "disability_grade": None,
             "disability_kind": None, "serious_illness": False, "work_ability": "full"}
            for j, (number, name) in enumerate(zip(h.people, h.names))
        ],
        "declared_monthly_income_fen": MONTHLY_INCOME_FEN * len(h.people),
        "declared_assets_fen": 0,
        "bank_account": {"channel": h.channel, "account_number": h.account, "account_name": h.names[0]},
        "authorisation_signed": True,
        "urgency": "normal",
    }


def _ceil_second(moment: datetime) -> datetime:
    return moment if not moment.microsecond else moment.replace(microsecond=0) + timedelta(seconds=1)


@dataclass
class Demo:
    settings: Settings
    households: int
    county: str
    village: str
    period: str | None
    budget: bool
    concurrency: int
    timeout: float
    seed: str
    out: TextIO
    err: TextIO
    transport: Any = None
    poll_interval: float = 0.25
    clock: SharedClock = field(init=False)
    frozen: datetime | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.stop_reason: Exception | None = None
        self.lock = threading.Lock()
        self.clients: dict[tuple[str, str], ServiceClient] = {}

    # --- clients -----------------------------------------------------------------------------
    def client(self, service: str, role: str | None = None) -> ServiceClient:
        """One client per service and role (shared by the threads), the user `<role>@<county>`:
        the clerk, the caseworker and the reviewer are three people."""
        with self.lock:
            key = (service, role or "")
            if key not in self.clients:
                base = self.settings.simulator_url if service == "simulator" else self.settings.service_url(service)
                token = mint(self.settings, role, self.county) if role else None
                self.clients[key] = ServiceClient(base, token, retry_seconds=self.timeout, transport=self.transport)
            return self.clients[key]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def key(self, h: Household | None, step: str) -> str:
        return f"demo-{self.seed}-{h.index if h else 0}-{step}"

    def unreachable(self) -> str | None:
        """What does not answer /readyz of the processes the demo talks to (None: all ready)."""
        import httpx

        for name in ("intake", "verification", "payment", "simulator"):
            base = self.settings.simulator_url if name == "simulator" else self.settings.service_url(name)
            try:
                with httpx.Client(timeout=5, transport=self.transport) as c:
                    r = c.get(base + "/readyz")
            except httpx.HTTPError as exc:
                return f"{name} at {base} cannot be reached ({type(exc).__name__})"
            if r.status_code != 200:
                return f"{name} at {base} is not ready ({r.status_code}: {r.text[:200]})"
        return None

    # --- the shared clock ----------------------------------------------------------------------
    def freeze_clock(self) -> datetime:
        """Freeze the shared clock (at the next whole second, or where it stands when it is set;
        with --period at the start of the month before it at the latest), so that a service's
        answers show whether it reads it."""
        now = self.clock.now()
        moment = now if self.clock.path.exists() else _ceil_second(now)
        if self.period:
            decide_in = previous_period(self.period)
            start = datetime.combine(period_start(decide_in), datetime.min.time(), SHANGHAI) + timedelta(hours=9)
            if first_payment_period(moment) > self.period:
                raise ValueError(
                    f"--period {self.period}: the shared clock is at {moment.isoformat()} already, so the "
                    f"first payment period is {first_payment_period(moment)} at the earliest (the clock only "
                    "moves forward)")
            moment = max(moment, start)
        if moment != now or not self.clock.path.exists():
            moment = self.clock.set(moment)
        self.frozen = moment
        return moment

    def check_clock(self, service: str, answered: str | None) -> None:
        if answered is None or self.frozen is None:
            return
        if datetime.fromisoformat(answered) != self.frozen:
            raise ClockNotShared(
                f"{service} does not read the shared test clock: the clock {self.clock.path} is frozen at "
                f"{self.frozen.isoformat()}, {service} recorded {answered}. The demo passes the 7-day public "
                f"notice by moving that clock, so every process must read it.\n{HOW_TO_START}")

    # --- helpers ---------------------------------------------------------------------------------
    def wait_for(self, what: str, probe: Callable[[], T | None]) -> T:
        """Poll `probe` until it answers something truthy; a 404 (not known yet) is waited out."""
        import time

        deadline = time.monotonic() + self.timeout
        while True:
            if self.stopping.is_set():
                raise Stopped()
            try:
                found = probe()
            except ApiError as exc:
                if exc.status != 404:
                    raise
                found = None
            if found:
                return found
            if time.monotonic() >= deadline:
                raise HouseholdFailed(f"timed out after {self.timeout:g} s waiting for {what}")
            time.sleep(self.poll_interval)

    def verification(self, h: Household) -> dict:
        return self.client("verification", "auditor").get(f"/v1/verifications/{h.case_id}")

    def step(self, h: Household, path: str, body: dict | None) -> tuple[dict, bool]:
        """One step of the procedure by the caseworker: the procedure after it, and whether it was
        taken now (not an answer replayed for the same Idempotency-Key)."""
        if self.stopping.is_set():
            raise Stopped()
        r = self.client("verification", "caseworker").send(
            "POST", f"/v1/verifications/{h.case_id}/{path}", json=body, key=self.key(h, path))
        return r.json(), r.headers.get("Idempotent-Replayed") != "true"

    # --- one household -------------------------------------------------------------------------
    def prepare(self, h: Household) -> None:
        """Submitted, accepted, checked, surveyed, proposed and publicly noticed."""
        simulator = self.client("simulator")
        for number in h.people:
            simulator.put(f"/v1/records/hrss/{number}", {"monthly_income_fen": MONTHLY_INCOME_FEN})
            simulator.put(f"/v1/records/bank/{number}", {"assets_fen": 0})
        clerk = self.client("intake", "clerk")
        h.case_id = clerk.post("/v1/applications", application_body(h, self.village),
                               key=self.key(h, "application"))["case_id"]
        try:
            r = clerk.send("POST", f"/v1/cases/{h.case_id}/acceptance",
                           json={"decision": "accept", "reason": "申请材料齐全，予以受理"}, key=self.key(h, "acceptance"))
        except ApiError as exc:
            # Accepted before (a demo run again with its seed, the key forgotten): go on.
            if exc.rule != "acceptance_decided_once" or exc.problem.get("case_status") != "accepted":
                raise
        else:
            if r.headers.get("Idempotent-Replayed") != "true":
                self.check_clock("intake", r.json().get("accepted_at"))
        view = self.wait_for(f"the economic check of {h.case_id}", lambda: (
            v if (v := self.verification(h))["state"] not in ("awaiting_acceptance", "requested") else None))
        if view["benefit"] is not None or view["state"] == "approved":
            h.view = view
            return
        outcome = (view.get("assessment") or {}).get("outcome")
        if outcome != "eligible":
            raise HouseholdFailed(f"the economic check found the household {outcome}, not eligible")
        today = self.clock.now().date().isoformat()
        if view["survey"] is None:
            view, _ = self.step(h, "survey", {
                "surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
                "visited_on": today, "findings": "入户调查情况与申报一致"})
        if view["initial_review"] is None:
            view, _ = self.step(h, "initial-review", {"proposal": "include", "reason": "初审同意纳入低保"})
        if view["public_notice"] is None:
            view, now = self.step(h, "public-notice", None)
            if now:
                self.check_clock("verification", view["public_notice"]["posted_at"])
        if (view.get("next_step") or {}).get("step") == "democratic_appraisal":
            view, _ = self.step(h, "appraisal", {
                "held_on": today, "participants": 9, "votes_for": 7, "votes_against": 1, "abstentions": 1,
                "opinion": "多数同意"})
        h.view = view

    def approve(self, h: Household) -> None:
        """The reviewer's approval, and payment's entitlement from it."""
        if self.stopping.is_set():
            raise Stopped()
        view = h.view or {}
        if view.get("benefit") is not None:
            h.decision = {"decision": "approve", **view["benefit"]}
        else:
            h.decision = self.client("verification", "reviewer").post(
                f"/v1/verifications/{h.case_id}/decision",
                {"decision": "approve", "reason": "经审核确认小组会议研究，同意纳入最低生活保障"},
                key=self.key(h, "decision"))
        payment = self.client("payment", "auditor")
        h.entitlement = self.wait_for(f"payment's entitlement of {h.case_id}", lambda: next(
            iter(payment.get("/v1/entitlements", case_id=h.case_id)["items"]), None))

    def _guarded(self, h: Household, work: Callable[[Household], None]) -> None:
        if h.error:
            return
        try:
            work(h)
        except Stopped:
            h.error = "stopped"
        except ClockNotShared as exc:
            h.error = "stopped: the clock is not shared"
            with self.lock:
                self.stop_reason = self.stop_reason or exc
            self.stopping.set()
        except ApiError as exc:
            h.error = "\n    ".join(exc.lines())
        except HouseholdFailed as exc:
            h.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - an answer of an unexpected shape: this household stops
            h.error = f"{type(exc).__name__}: {exc}"

    def each(self, households: list[Household], work: Callable[[Household], None]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(households)))) as pool:
            list(pool.map(lambda h: self._guarded(h, work), households))

    # --- the whole demo ---------------------------------------------------------------------------
    def run(self) -> int:
        self.clock = clock_for(self.settings)  # type: ignore[assignment]
        if not isinstance(self.clock, SharedClock):
            where = "in production" if self.settings.environment == "production" else "without LIFELINE_TEST_CLOCK=1"
            print(f"lifeline demo: refused {where}: the demo passes the 7-day public notice by moving the shared "
                  f"test clock, which every process must read.\n{HOW_TO_START}", file=self.err)
            return EXIT_USAGE
        down = self.unreachable()
        if down:
            print(f"lifeline demo: {down}; is Lifeline running?\n{HOW_TO_START}", file=self.err)
            return EXIT_API_ERROR
        try:
            frozen = self.freeze_clock()
        except ValueError as exc:
            print(f"lifeline demo: {exc}", file=self.err)
            return EXIT_USAGE
        print(f"Lifeline demo (seed {self.seed}): {plural(self.households, 'household')} in {self.village}; "
              f"the shared clock is frozen at {frozen.isoformat()}", file=self.out, flush=True)
        households = make_households(self.seed, self.households, self.county)
        try:
            return self._run(households)
        finally:
            self.close()

    def _run(self, households: list[Household]) -> int:
        self.each(households, self.prepare)
        if self.stop_reason is not None:
            print(f"lifeline demo: {self.stop_reason}", file=self.err)
            return EXIT_USAGE
        ready = [h for h in households if not h.error]
        print(f"{plural(len(ready), 'household')} publicly noticed", file=self.out, flush=True)
        ends = [datetime.fromisoformat(h.view["public_notice"]["ends_at"]) for h in ready
                if h.view and h.view.get("public_notice") and h.view.get("benefit") is None]
        if ends and self.clock.now() < max(ends):
            moved = self.clock.set(max(ends))
            print(f"The shared clock moved past the public notices, to {moved.isoformat()}", file=self.out,
                  flush=True)
        if self.period and ready and first_payment_period(self.clock.now()) != self.period:
            print(f"lifeline demo: --period {self.period}: the notices end at {self.clock.now().isoformat()}, so "
                  f"the first payment period is {first_payment_period(self.clock.now())}; nothing was decided. "
                  f"Run the demo again with --period {first_payment_period(self.clock.now())} or later.",
                  file=self.err)
            return EXIT_USAGE
        self.each(ready, self.approve)
        if self.stop_reason is not None:
            print(f"lifeline demo: {self.stop_reason}", file=self.err)
            return EXIT_USAGE
        return self.summary(households)

    def summary(self, households: list[Household]) -> int:
        approved = [h for h in households if not h.error and h.entitlement]
        for h in households:
            people = plural(len(h.people), "person", "people")
            if h.error:
                print(f"  {h.index:>3}  {h.case_id or '(no case)'}  {people}  FAILED: {h.error}", file=self.out)
                continue
            e = h.entitlement or {}
            amount = e.get("monthly_amount_fen") or 0
            print(f"  {h.index:>3}  {h.case_id}  {people}  {h.account_ref}  approved: {yuan(amount)} a month "
                  f"from {e.get('first_period')}, entitlement {e.get('entitlement_id')}", file=self.out)
        if not approved:
            print(f"{plural(0, 'household')} approved of {len(households)}", file=self.out)
            return EXIT_API_ERROR
        monthly: dict[str, int] = defaultdict(int)  # by the fund source payment charges
        for h in approved:
            e = h.entitlement
            if e.get("kind") == "monthly" and e.get("payable", True):
                monthly[e.get("fund_source") or MONTHLY_FUND_SOURCES[e["benefit_type"]]] += e["monthly_amount_fen"] or 0
        first = max(h.entitlement["first_period"] for h in approved)
        total = sum(monthly.values())
        funds = ", ".join(f"{fund} {yuan(amount)}" for fund, amount in sorted(monthly.items()))
        print(f"{len(approved)} of {plural(len(households), 'household')} approved: "
              f"{plural(len(approved), 'entitlement')}, {yuan(total)} a month ({funds}); "
              f"first period {first}", file=self.out)
        code = EXIT_OK if len(approved) == len(households) else EXIT_API_ERROR
        officer = self.client("payment", "county_officer")
        try:
            runs = officer.get("/v1/payment-runs", county_code=self.county)["items"]
        except ApiError as exc:
            print("lifeline demo: the county's payment runs cannot be read: " + "\n".join(exc.lines()), file=self.err)
            runs = []
        period = first
        while any(r["period"] == period for r in runs):
            # A period is paid once: a run that exists already does not pay these households.
            status = next(r["status"] for r in runs if r["period"] == period)
            print(f"Note: the run for {period} in {self.county} exists already ({status}): these households "
                  f"are paid from {next_period(period)} on.", file=self.out)
            period = next_period(period)
        if self.budget:
            try:
                self.set_budgets(period, monthly, runs)
            except ApiError as exc:
                print("lifeline demo: setting the budget failed: " + "\n".join(exc.lines()), file=self.err)
                code = EXIT_API_ERROR
        print(f"Next: lifeline payment-run --period {period} --county {self.county}", file=self.out)
        return code

    def set_budgets(self, period: str, monthly: dict[str, int], runs: list[dict]) -> None:
        """A budget for each fund source of the county's run for `period`, big enough for it: these
        households' monthly amounts, plus the budget already set for that period and what the
        county's latest earlier run planned (the households it paid are paid again)."""
        officer = self.client("payment", "county_officer")
        earlier = sorted((r for r in runs if r["period"] < period and r.get("planned")), key=lambda r: r["period"])
        budgets = {b["fund_source"]: b for b in officer.get("/v1/budgets", county_code=self.county,
                                                            period=period)["items"]}
        for fund, ours in sorted(monthly.items()):
            before = budgets.get(fund, {}).get("amount_fen", 0)
            paid_before = (earlier[-1]["planned"]["by_fund_source"].get(fund, {}).get("total_fen", 0)
                           if earlier else 0)
            amount = ours + before + paid_before
            body = {"county_code": self.county, "period": period, "fund_source": fund, "amount_fen": amount}
            officer.post("/v1/budgets", body, key=self.key(None, f"budget-{fund}-{period}-{amount}"))
            print(f"Budget: {fund} for {period} in {self.county} set to {yuan(amount)}", file=self.out)


def run_demo(args: argparse.Namespace, settings: Settings, *, out: TextIO, err: TextIO,
             transport: Any = None) -> int:
    if not 1 <= args.households <= MAX_HOUSEHOLDS:
        print(f"lifeline demo: --households must be between 1 and {MAX_HOUSEHOLDS}", file=err)
        return EXIT_USAGE
    if args.concurrency < 1:
        print("lifeline demo: --concurrency must be at least 1", file=err)
        return EXIT_USAGE
    village = args.village or f"{args.county}101001"
    try:
        validate_region_code(village)
        if len(village) != 12 or not region_contains(args.county, village):
            raise InvalidRegionCode(f"{village} is not a village (12 digits) of {args.county}")
    except InvalidRegionCode as exc:
        print(f"lifeline demo: --village: {exc}", file=err)
        return EXIT_USAGE
    demo = Demo(settings, households=args.households, county=args.county, village=village, period=args.period,
                budget=args.budget, concurrency=args.concurrency, timeout=args.timeout,
                seed=args.seed or uuid.uuid4().hex[:8], out=out, err=err, transport=transport)
    return demo.run()
