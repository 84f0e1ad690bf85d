"""The `lifeline` command line.

  lifeline up                      run everything embedded on this machine
  lifeline serve SERVICE           run one service (API + outbox relay + consumers)
  lifeline simulator               run the partner-department simulator
  lifeline bank-simulator          run the bank simulator (ISO 20022 files)
  lifeline federation-simulator    run the charity-federation simulator (signed webhooks, the feed)
  lifeline sms-simulator           run the SMS gateway simulator (notices by SMS)
  lifeline console                 run the operator console (port 8000; `up` starts it too)
  lifeline token --role R --region CODE
  lifeline replay SERVICE [--from-kafka]
                                   rebuild read models into a fresh store and compare (from the
                                   event store, or from the consumed topics at offset zero)
  lifeline republish SERVICE --from N
  lifeline audit verify [SERVICE]  prove each service's hash-chained log intact (all five by default)
  lifeline audit export CASE_ID --out DIR
                                   one case's whole history across the services, with a manifest
  lifeline audit check DIR         verify a bundle against its manifest; name each file changed
  lifeline clock set MOMENT | advance DURATION | show | reset
                                   move the shared test clock (LIFELINE_TEST_CLOCK=1 only)
  lifeline payment-run --period P --county C
                                   start the county's payment run and follow it to completion
  lifeline redis-users --out DIR   make Redis's ACL file and each service's LIFELINE_REDIS_URL
  lifeline kafka-secrets --out DIR make Kafka's CA, broker certificate, a password per principal
                                   and the broker's configuration (docker-compose.yml, deploy/k8s)
  lifeline kafka-setup             create the topics and each principal's ACLs (as lifeline-admin)
  lifeline demo --households N [--budget]
                                   push N new households through the procedure to approval
                                   (a Lifeline started with LIFELINE_TEST_CLOCK=1)
  lifeline chaos --kills N --seed S
                                   the embedded default in a temp dir, households flowing, N random
                                   SIGKILLs; then nothing lost, nothing doubled, replays equal
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from lifeline.errors import ConfigurationError
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import SERVICES, Settings


def service_spec(name: str):
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of: {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.bootstrap").SPEC


def _logging(settings: Settings) -> None:
    from lifeline.ops.logmask import configure_logging

    configure_logging(settings.log_level)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lifeline.http.app import create_http_app

    settings = Settings.from_env()
    _logging(settings)
    spec = service_spec(args.service)
    # The service's runtime installs the rules data from the settings first thing
    # (lifeline.rules.setup.install_rules): a malformed operator file stops the
    # service here, before it serves, naming file and line.
    app = create_http_app(spec, settings)
    if settings.republish_on_start:
        # The embedded broker keeps nothing across a restart: publish the whole
        # log again; consumers recognise what they processed before.
        app.state.runtime.relay.rewind(0)
    uvicorn.run(app, host=settings.host, port=settings.ports[args.service], log_level="warning", log_config=None)
    return 0


# The simulators, by process name: the module whose create_app serves it, and its command.
SIMULATORS = {"simulator": "lifeline.simulators.partners", "bank": "lifeline.simulators.bank",
              "sms": "lifeline.simulators.sms", "federation": "lifeline.simulators.federation"}
COMMANDS = {"simulator": ["simulator"], "bank": ["bank-simulator"], "sms": ["sms-simulator"],
            "federation": ["federation-simulator"], "console": ["console"]}
# What `lifeline up` starts: the services, the simulators and the operator console.
UP_PROCESSES = (*SERVICES, *SIMULATORS, "console")


def _run_simulator(name: str) -> int:
    import uvicorn

    settings = Settings.from_env()
    _logging(settings)
    app = importlib.import_module(SIMULATORS[name]).create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.ports[name], log_level="warning", log_config=None)
    return 0


def cmd_simulator(_: argparse.Namespace) -> int:
    return _run_simulator("simulator")


def cmd_bank_simulator(_: argparse.Namespace) -> int:
    return _run_simulator("bank")


def cmd_federation_simulator(_: argparse.Namespace) -> int:
    return _run_simulator("federation")


def cmd_sms_simulator(_: argparse.Namespace) -> int:
    return _run_simulator("sms")


def cmd_console(_: argparse.Namespace) -> int:
    import uvicorn

    from lifeline.console.app import create_app

    settings = Settings.from_env()
    _logging(settings)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.console_port, log_level="warning",
                log_config=None)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from lifeline.http.auth import mint_token
    from lifeline.runtime.service import jwt_secret

    settings = Settings.from_env()
    try:
        token = mint_token(
            jwt_secret(settings), role=args.role, region=args.region,
            user_id=args.user or f"{args.role}@{args.region}", org_code=args.org or args.region,
            ttl_seconds=args.ttl, issuer=settings.jwt_issuer,
        )
    except ValueError as exc:  # unknown role, malformed region
        print(f"lifeline token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from lifeline.audit.progress import Progress
    from lifeline.rules.setup import install_rules
    from lifeline.stores.projection import POSITION, Projection, compare, rebuild
    from lifeline.stores.sidestore import SideStore

    settings = Settings.from_env()
    spec = service_spec(args.service)
    if args.from_kafka:
        return replay_from_kafka(settings, spec.name, args.timeout)
    install_rules(settings)  # the rules the service itself would run with
    app = spec.application(settings)
    live = SideStore(settings, spec.name)
    live_views = Projection(app, live, spec.project, spec.views_version)
    live_views.ensure_version()
    live_views.catch_up(batch_size=10_000)
    with live.transaction() as tx:
        events = tx.position(POSITION)  # where the live read models are: the replay stops there too
    # The fast read path (lifeline/stores/logreader.py: pages of 10,000 events, decoded without the
    # library's generic transcoder; a page's documents written at once): the bar and rate on stderr.
    progress = Progress(f"{spec.name}: replaying", events)
    started = time.perf_counter()
    rebuilt = rebuild(app, spec.project, progress.update, upto=events)
    rate = events / max(time.perf_counter() - started, 1e-9)
    progress.done()
    diffs = compare(live, rebuilt)
    docs = rebuilt.count()
    if diffs:
        print(f"{spec.name}: replayed {events} events ({rate:,.0f} events/s) into {docs} documents: "
              "DIFFERENT from live")
        for line in diffs[:50]:
            print("  " + line)
        return 1
    print(f"{spec.name}: replayed {events} events ({rate:,.0f} events/s) into {docs} documents: "
          "identical to live read models")
    return 0


def replay_from_kafka(settings: Settings, service: str, timeout: float) -> int:
    """`replay SERVICE --from-kafka` (lifeline/audit/kafka_replay.py): 0 identical, 1 different."""
    from lifeline.audit.kafka_replay import replay_from_kafka as replay

    report = replay(settings, service, err=sys.stderr, timeout=timeout)
    for line in report.lines():
        print(line, flush=True)
    return 0 if report.identical else 1


EXIT_TAMPERED = 1  # audit verify: a log was changed, cut short or reordered


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Read each service's whole log, recompute its hash chain, check it against the seals
    published on Kafka (or, when Kafka cannot be read, those in the store), name the first
    event changed, removed or reordered. Exit status 1 when any log is not intact."""
    from lifeline.rules.setup import install_rules
    from lifeline.stores import chain

    settings = Settings.from_env()
    install_rules(settings)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a broker away is reported, not logged
    names = [args.service] if args.service else list(SERVICES)
    tampered = []
    for name in names:
        app = service_spec(name).application(settings)
        try:
            evidence = chain.evidence_for(settings, app, name, kafka=not args.no_kafka, timeout=args.timeout)
            report = chain.verify(app, evidence, name, progress=_progress(name))
        finally:
            app.close()
        for line in audit_lines(report):
            print(line, flush=True)
        if not report.ok:
            tampered.append(name)
    if tampered:
        print(f"audit verify: {len(tampered)} of {len(names)} logs NOT intact: {', '.join(tampered)}")
        return EXIT_TAMPERED
    print(f"audit verify: {'all ' + str(len(names)) + ' logs' if len(names) > 1 else 'the log of ' + names[0]} "
          "intact")
    return 0


def _progress(name: str) -> Callable[[int], None] | None:
    if not sys.stderr.isatty():
        return None
    return lambda n: print(f"\r{name}: {n:,} events checked", end="", file=sys.stderr, flush=True)


def audit_lines(report: Any) -> list[str]:
    """A verify report as lines: what was read and how fast, what it was checked against, and
    each problem (the first one first)."""
    name, ev = report.service, report.evidence
    head = f"head {report.head[0]} {report.head[1].hex()[:16]}…" if report.head else "empty"
    lines = [f"{name}: {report.events:,} events in {report.seconds:.2f} s ({report.rate:,.0f} events/s); {head}"]
    g = report.genesis
    if g is not None and g.backfilled_to:
        lines.append(f"{name}: chained since {g.started_at}: the {g.backfilled_to:,} events stored before the "
                     f"chain existed were chained then ({g.encrypted:,} encrypted then)")
    if ev.source == "none":
        lines.append(f"{name}: no published seals read")
    else:
        where = "Kafka" if ev.source == "kafka" else "the store"
        lines.append(f"{name}: {report.seals_matched} of {len(ev.seals)} seals from {where} match"
                     + (f"; last position published {ev.last_published}"
                        if ev.source == "kafka" and ev.last_published else "")
                     + (f"; the outbox relay at {ev.relayed}" if ev.relayed else "")
                     + (f" ({ev.note})" if ev.note else ""))
    if ev.forged:
        lines.append(f"{name}: {ev.forged} message(s) on the topic in {name}'s name do not verify: "
                     "not taken as evidence")
    if report.ok:
        lines.append(f"{name}: OK: no event changed, removed or reordered")
        return lines
    first = report.first
    lines.append(f"{name}: NOT INTACT: {len(report.problems)} problem(s); the first: {first.line()}")
    others = [p for p in report.problems if p is not first]
    lines += ["  " + p.line() for p in others[:20]]
    if len(others) > 20:
        lines.append(f"  ... and {len(others) - 20} more")
    return lines


def cmd_republish(args: argparse.Namespace) -> int:
    from lifeline.messaging.outbox import POSITION
    from lifeline.stores.sidestore import SideStore

    settings = Settings.from_env()
    spec = service_spec(args.service)
    store = SideStore(settings, spec.name)
    with store.transaction() as tx:
        tx.set_position(POSITION, max(args.from_position - 1, 0))
    print(f"{spec.name}: the relay will publish again from log position {args.from_position}")
    return 0


def cmd_clock(args: argparse.Namespace) -> int:
    """Move the one clock every process of a test Lifeline reads (LIFELINE_TEST_CLOCK=1).

    Prints the resulting moment (ISO 8601, Asia/Shanghai) on stdout. Refused unless
    the test clock is switched on, so never in production (the settings refuse
    LIFELINE_TEST_CLOCK there).
    """
    from lifeline.domain.clock import SharedClock, clock_for

    settings = Settings.from_env()
    if not settings.test_clock:
        where = "in production" if settings.environment == "production" else "without LIFELINE_TEST_CLOCK=1"
        print(f"lifeline clock: refused {where}: the processes read the system time, not the shared "
              "test clock; start every process of a development or test Lifeline with "
              "LIFELINE_TEST_CLOCK=1 to move its time", file=sys.stderr)
        return 2
    clock = clock_for(settings)
    assert isinstance(clock, SharedClock)
    try:
        if args.action == "set":
            moment = clock.set(args.moment)
        elif args.action == "advance":
            moment = clock.advance(args.duration)
        elif args.action == "reset":
            clock.reset()
            moment = clock.now()
        else:
            moment = clock.now()
    except (ValueError, TypeError, KeyError) as exc:  # a malformed or naive moment, a bad duration, a bad file
        hint = {
            "set": "; MOMENT is ISO 8601 with an offset, e.g. 2026-12-31T23:59:59+08:00",
            "advance": "",  # parse_duration names the accepted forms
        }.get(args.action, f"; {clock.path} is unreadable, `lifeline clock reset` removes it")
        print(f"lifeline clock {args.action}: {exc}{hint}", file=sys.stderr)
        return 2
    print(moment.isoformat())
    if not clock.path.exists():
        print(f"(system time: the shared clock {clock.path} is not set)", file=sys.stderr)
    return 0


# --- talking to the running services (payment-run, demo) -------------------------------------
# Exit codes of the commands that talk to the services.
EXIT_OK = 0
EXIT_API_ERROR = 1          # an API answered a problem, or could not be reached
EXIT_USAGE = 2              # bad arguments or configuration (argparse exits 2 as well)
EXIT_AWAITING_APPROVAL = 3  # payment-run: the run exceeds its budget and waits for another officer
EXIT_TIMEOUT = 4            # payment-run: not completed within --timeout

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Answers after which the same request (same Idempotency-Key) is simply sent again.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


def period_arg(text: str) -> str:
    """argparse type: a payment period, YYYY-MM."""
    if not PERIOD.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a period YYYY-MM, e.g. 2026-12")
    return text


def county_arg(text: str) -> str:
    """argparse type: a county's six-digit GB/T 2260 code."""
    from lifeline.rules.regions import is_county_code

    if not is_county_code(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a county code (six digits, GB/T 2260), e.g. 370502")
    return text


def yuan(fen: int) -> str:
    """An amount in fen as 元 with two decimals: 123456 -> '1,234.56 元' (exact: no floats)."""
    fen = int(fen)
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole:,}.{cents:02d} 元"


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 payment', '3 payments', '2 batches'."""
    if n == 1:
        return f"1 {word}"
    return f"{n} {words or (word + 'es' if word.endswith(('ch', 'sh', 's', 'x')) else word + 's')}"


def mint(settings: Settings, role: str, region: str, user: str | None = None) -> str:
    """A bearer token as `lifeline token` mints it (the configured or the embedded secret)."""
    from lifeline.http.auth import mint_token
    from lifeline.runtime.service import jwt_secret

    return mint_token(jwt_secret(settings), role=role, region=region, user_id=user or f"{role}@{region}",
                      org_code=region, issuer=settings.jwt_issuer)


def problem_lines(status: int, body: Any) -> list[str]:
    """An error answer as lines: status and title, then the problem's detail, rule and the
    fields a validation error names (RFC 9457 problem+json; anything else: its text)."""
    if not isinstance(body, dict):
        text = str(body or "").strip().replace("\n", " ")
        return [f"{status} {text[:300]}" if text else str(status)]
    lines = [f"{status} {body.get('title') or 'Error'}"]
    if body.get("detail"):
        lines.append(f"  detail: {body['detail']}")
    if body.get("rule"):
        lines.append(f"  rule:   {body['rule']}")
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            where = error.get("pointer") or error.get("parameter") or error.get("header") or ""
            lines.append(f"  {where}: {error.get('detail', '')}".rstrip())
    return lines


class ApiError(Exception):
    """A service answered with an error (problem+json), or could not be reached (status None)."""

    def __init__(self, method: str, url: str, status: int | None, body: Any):
        self.method, self.url, self.status, self.body = method, url, status, body
        self.problem = body if isinstance(body, dict) else {}
        super().__init__("\n".join(self.lines()))

    @property
    def rule(self) -> str | None:
        return self.problem.get("rule")

    def lines(self) -> list[str]:
        if self.status is None:
            return [f"{self.method} {self.url}: cannot reach the service: {self.body}"]
        first, *rest = problem_lines(self.status, self.body)
        return [f"{self.method} {self.url} answered {first}", *rest]


class ServiceClient:
    """A little JSON client of one service, with a bearer token. Requests that fail on the way
    (no connection, 429, 502-504, a request with the same Idempotency-Key still in progress)
    are sent again, with the same key, until `retry_seconds` have passed; any other error
    answer raises ApiError."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30,
                 retry_seconds: float = 30, transport: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.retry_seconds = retry_seconds
        self.sleep = sleep

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ServiceClient":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def send(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
             key: str | None = None, ok: Iterable[int] = (200, 201, 202)) -> Any:
        """The answer (an httpx.Response) once its status is one of `ok`; ApiError otherwise."""
        import httpx

        headers = {"Idempotency-Key": key} if key else {}
        url = str(self.http.base_url).rstrip("/") + path
        deadline = time.monotonic() + self.retry_seconds
        wait = 0.2
        while True:
            try:
                r = self.http.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                if time.monotonic() >= deadline:
                    raise ApiError(method, url, None, f"{type(exc).__name__}: {exc}") from None
            else:
                if r.status_code in ok:
                    return r
                try:
                    body = r.json()
                except ValueError:
                    body = r.text
                in_progress = (r.status_code == 409 and isinstance(body, dict)
                               and str(body.get("type", "")).endswith("idempotency-in-progress"))
                if not (r.status_code in RETRIED_STATUSES or in_progress) or time.monotonic() >= deadline:
                    raise ApiError(method, url, r.status_code, body)
            self.sleep(wait)
            wait = min(wait * 2, 2.0)

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                key: str | None = None, ok: Iterable[int] = (200, 201, 202)) -> Any:
        """The answer's JSON body (see `send`)."""
        return self.send(method, path, json=json, params=params, key=key, ok=ok).json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, json: Any = None, *, key: str | None = None, ok: Iterable[int] = (200, 201, 202)) -> Any:
        return self.request("POST", path, json=json, key=key, ok=ok)

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)


def _print_error(command: str, exc: ApiError, err: TextIO) -> None:
    first, *rest = exc.lines()
    print(f"lifeline {command}: {first}", file=err)
    for line in rest:
        print(line, file=err)


# --- payment-run -------------------------------------------------------------------------
RUN_DONE = ("completed", "awaiting_approval")
BAR_WIDTH = 30


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """[██████░░░░]: done of total (a plan of nothing is full)."""
    filled = width if total <= 0 else min(width, done * width // total)
    return "[" + "█" * filled + "░" * (width - filled) + "]"


def run_progress(view: dict) -> str:
    """One line of a run's progress: its status, payments instructed of those planned, the
    amount instructed so far, the batches with their bank."""
    status = view["status"]
    planned = view.get("planned")
    if planned is None:
        return f"{status}: planning what the run pays"
    total, done = planned["count"], view.get("count", 0)
    percent = 100 if total == 0 else done * 100 // total
    batches = view.get("batches") or []
    submitted = sum(1 for b in batches if b.get("submitted"))
    line = (f"{status}: {done}/{total} payments instructed ({percent}%), {yuan(view.get('total_fen', 0))} "
            f"of {yuan(planned['total_fen'])}")
    if batches:
        line += f", {submitted}/{plural(len(batches), 'batch')} with the bank"
    return line


class RunProgress:
    """The run's progress on the terminal: a bar redrawn in place on a TTY, else a plain line
    each time something changed (for logs and pipes)."""

    def __init__(self, out: TextIO, tty: bool, width: int = BAR_WIDTH):
        self.out, self.tty, self.width = out, tty, width
        self.last: str | None = None
        self.drawn = False

    def update(self, view: dict) -> None:
        line = run_progress(view)
        if line == self.last:
            return
        self.last = line
        if self.tty:
            planned = view.get("planned")
            shown = bar(view.get("count", 0), planned["count"], self.width) if planned else "[" + "·" * self.width + "]"
            self.out.write(f"\r{shown} {line}\x1b[K")
            self.drawn = True
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.drawn:
            self.out.write("\n")
            self.out.flush()
        self.drawn = False


def budget_line(line: dict) -> str:
    budget = "no budget set" if line.get("budget_fen") is None else f"budget {yuan(line['budget_fen'])}"
    verdict = "EXCEEDS the budget" if line.get("exceeds") else "within the budget"
    return (f"  {line['fund_source']}: needs {yuan(line['needed_fen'])}, {budget}, used {yuan(line['used_fen'])}, "
            f"remaining {yuan(line['remaining_fen'])}: {verdict}")


def run_summary(view: dict) -> list[str]:
    """A completed run: what it paid, per channel and per fund source, and its reconciliation."""
    batches = view.get("batches") or []
    lines = [f"{plural(view.get('count', 0), 'payment')} completed, {yuan(view.get('total_fen', 0))}, "
             f"in {plural(len(batches), 'bank batch')}"]
    channels = sorted((view.get("by_channel") or {}).items())
    funds = sorted((view.get("by_fund_source") or {}).items())
    width = max([len(name) for name, _ in channels + funds] + [8])
    amounts = [yuan(line["total_fen"]) for _, line in channels + funds]
    money = max([len(a) for a in amounts] + [0])
    if channels:
        lines.append("  by channel:")
        lines += [f"    {name:<{width}}  {plural(line['count'], 'payment'):<12} {yuan(line['total_fen']):>{money}}  "
                  f"{plural(line.get('batches', 0), 'batch')}" for name, line in channels]
    if funds:
        lines.append("  by fund source:")
        lines += [f"    {name:<{width}}  {plural(line['count'], 'payment'):<12} {yuan(line['total_fen']):>{money}}"
                  for name, line in funds]
    for skipped in (view.get("planned") or {}).get("skipped") or []:
        lines.append(f"  skipped: {skipped['channel']}: {plural(skipped['count'], 'payment')}, "
                     f"{yuan(skipped['total_fen'])} ({skipped['reason'].replace('_', ' ')})")
    reconciliation = view.get("reconciliation")
    if reconciliation:
        balanced = "balanced" if reconciliation.get("balanced") else (
            f"NOT balanced, {plural(reconciliation.get('differences', 0), 'difference')}")
        lines.append(f"reconciled with the bank statements: {balanced}")
    else:
        lines.append(f"not reconciled yet (the banks' statements are pending): "
                     f"GET /v1/payment-runs/{view['run_id']}/reconciliation")
    return lines


def approval_lines(view: dict, payment_url: str) -> list[str]:
    """A run over its budget: the budget check and how another county officer approves it."""
    run_id, county = view["run_id"], view["county_code"]
    starter = view.get("started_by") or "whoever started it"
    planned = view.get("planned") or {}
    lines = [f"The run for {view['period']} in {county} is awaiting approval: it exceeds its budget.",
             f"It would pay {plural(planned.get('count', 0), 'payment')}, {yuan(planned.get('total_fen', 0))}. "
             "Budget check:"]
    lines += [budget_line(line) for line in planned.get("budget_check") or []]
    lines += [
        f"To go on, a county officer other than {starter} approves it:",
        f"  POST {payment_url}/v1/payment-runs/{run_id}/approval  {{\"reason\": \"...\"}}",
        "for example:",
        f"  curl -X POST {payment_url}/v1/payment-runs/{run_id}/approval \\",
        f"    -H \"Authorization: Bearer $(lifeline token --role county_officer --region {county} "
        "--user ANOTHER_OFFICER)\" \\",
        f"    -H 'Idempotency-Key: approve-{run_id}' -H 'content-type: application/json' \\",
        "    -d '{\"reason\": \"追加预算已报批\"}'",
        f"then follow it again: lifeline payment-run --period {view['period']} --county {county}",
    ]
    return lines


class RunTimeout(Exception):
    def __init__(self, view: dict | None):
        self.view = view
        super().__init__("timed out")


def follow_run(client: ServiceClient, run_id: str, progress: RunProgress, *, timeout: float,
               interval: float = 0.5, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll the run until it is completed or awaits approval (its last view); RunTimeout after
    `timeout` seconds. A payment process that is briefly unreachable is waited for."""
    deadline = clock() + timeout
    view: dict | None = None
    try:
        while True:
            try:
                view = client.get(f"/v1/payment-runs/{run_id}")
            except ApiError as exc:
                if exc.status is not None:
                    raise
            else:
                progress.update(view)
                if view["status"] in RUN_DONE:
                    return view
            if clock() >= deadline:
                raise RunTimeout(view)
            sleep(interval)
    finally:
        progress.close()


def payment_run(args: argparse.Namespace, settings: Settings, *, out: TextIO, err: TextIO,
                tty: bool, transport: Any = None) -> int:
    """Start the county's run for the period (or find the one that exists) and follow it."""
    base = settings.service_url("payment")
    user = args.user or f"county_officer@{args.county}"
    try:
        token = mint(settings, "county_officer", args.county, user)
    except ValueError as exc:
        print(f"lifeline payment-run: {exc}", file=err)
        return EXIT_USAGE
    # No Idempotency-Key: a period's run exists once (payment answers the existing one with
    # `started: false`), and a replayed first answer would report a stale status.
    with ServiceClient(base, token, retry_seconds=min(args.timeout, 10), transport=transport) as client:
        try:
            started = client.post("/v1/payment-runs", {"period": args.period, "county_code": args.county})
        except ApiError as exc:
            _print_error("payment-run", exc, err)
            return EXIT_API_ERROR
        run_id = started["run_id"]
        how = "started" if started.get("started") else f"exists already ({started['status']})"
        print(f"Payment run {run_id} for {started['period']} in {started['county_code']}: {how}", file=out)
        if not args.wait:
            print(f"Follow it: GET {base}/v1/payment-runs/{run_id}", file=out)
            return EXIT_OK
        try:
            view = follow_run(client, run_id, RunProgress(out, tty), timeout=args.timeout, interval=args.interval)
        except ApiError as exc:
            _print_error("payment-run", exc, err)
            return EXIT_API_ERROR
        except RunTimeout as exc:
            state = exc.view["status"] if exc.view else "unreachable"
            print(f"lifeline payment-run: the run is still {state} after {args.timeout:g} s; follow it with "
                  f"`lifeline payment-run --period {args.period} --county {args.county}` or "
                  f"GET {base}/v1/payment-runs/{run_id}", file=err)
            return EXIT_TIMEOUT
    if view["status"] == "awaiting_approval":
        for line in approval_lines(view, base):
            print(line, file=out)
        return EXIT_AWAITING_APPROVAL
    print(f"Payment run {run_id}: completed", file=out)
    for line in run_summary(view):
        print(line, file=out)
    return EXIT_OK


def cmd_payment_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    return payment_run(args, settings, out=sys.stdout, err=sys.stderr, tty=sys.stdout.isatty())


def cmd_demo(args: argparse.Namespace) -> int:
    from lifeline.dev.demo import run_demo

    return run_demo(args, Settings.from_env(), out=sys.stdout, err=sys.stderr)


def cmd_up(args: argparse.Namespace) -> int:
    from lifeline.http.auth import mint_token
    from lifeline.dev.embedded import EmbeddedBroker, EmbeddedRedis
    from lifeline.contracts.signing import lifeline_sources, partner_sources
    from lifeline.ops.redisauth import masked, redis_secret, url_password
    from lifeline.runtime.service import jwt_secret, signer_for
    from lifeline.stores.sealing import lifeline_secret

    settings = Settings.from_env()
    _logging(settings)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # one made before Lifeline narrowed its modes, too
    broker_port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    redis_port = urlsplit(settings.redis_url).port or 6379
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    broker = EmbeddedBroker(port=broker_port, log_path=logs / "broker.log")
    # The password LIFELINE_REDIS_URL names, else one generated once in the data dir (which every
    # service then reads: lifeline.ops.redisauth.redis_url).
    redis = EmbeddedRedis(port=redis_port, data_dir=settings.data_dir / "redis",
                          password=url_password(settings.redis_url) or redis_secret(settings.data_dir))
    jwt_secret(settings)  # created once here, before the services race to create it
    lifeline_secret(settings)  # likewise the secret stored events are encrypted with
    for source in [*lifeline_sources(), *partner_sources()]:
        signer_for(settings, source)  # and each source's signing key
    broker.start()
    redis.start()
    # The children read the same environment, with the data dir made absolute and
    # the relays told to publish again (the memory-only broker starts empty).
    env = {**os.environ, "LIFELINE_DATA_DIR": str(settings.data_dir), "LIFELINE_REPUBLISH_ON_START": "true"}
    # Tansu looks for new records only when half a fetch's wait has passed: short waits, or every
    # hop between services takes ~150 ms (docs/BENCHMARKS.md, the cross-service hop).
    env.setdefault("LIFELINE_KAFKA_FETCH_MAX_WAIT_MS", str(EMBEDDED_FETCH_MAX_WAIT_MS))
    procs: dict[str, subprocess.Popen] = {}

    def spawn(name: str, again: bool = False) -> None:
        argv = [sys.executable, "-m", "lifeline.cli", *(["serve", name] if name in SERVICES else COMMANDS[name])]
        # Started again beside a broker that kept what it had: nothing to publish again.
        child_env = {**env, "LIFELINE_REPUBLISH_ON_START": "false"} if again else env
        with open(logs / f"{name}.log", "ab") as out:
            procs[name] = subprocess.Popen(argv, env=child_env, stdout=out, stderr=subprocess.STDOUT)

    for name in UP_PROCESSES:
        spawn(name)

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    _wait_ready(settings, procs)
    token = mint_token(jwt_secret(settings), role="admin", region="000000", user_id="admin", org_code="000000")
    print("Lifeline is running (embedded).")
    print(f"  broker     {settings.kafka_bootstrap} (Tansu, memory-only; relays republish on start)")
    print(f"  redis      {masked(settings.redis_url)}"
          + ("" if url_password(settings.redis_url) else f" (password in {settings.data_dir / 'redis.secret'})"))
    print(f"  data       {settings.data_dir}")
    for name in UP_PROCESSES:
        print(f"  {name:<12} http://{settings.host}:{settings.ports[name]}"
              + ("  (sign in there)" if name == "console" else "  (docs at /docs)"))
    print(f"  logs       {logs}")
    print("An admin token (8 h):")
    print(f"  export TOKEN={token}")
    print("Press Ctrl-C to stop.", flush=True)
    # A process that dies (a crash, a kill -9) is started again, as a supervisor would: its stores
    # and the consumers' tracking make that safe. One that keeps dying stops everything.
    restarts: dict[str, list[float]] = {name: [] for name in procs}
    try:
        while not stopping:
            for name, proc in list(procs.items()):
                if proc.poll() is None or stopping:
                    continue
                recent = [t for t in restarts[name] if time.monotonic() - t < RESTART_WINDOW_SECONDS]
                if len(recent) >= RESTARTS_IN_WINDOW:
                    print(f"{name} exited with {proc.returncode} {len(recent)} times in "
                          f"{RESTART_WINDOW_SECONDS} s; stopping; see {logs / (name + '.log')}", flush=True)
                    stopping = True
                    break
                print(f"{name} exited with {proc.returncode}; starting it again", flush=True)
                restarts[name] = [*recent, time.monotonic()]
                spawn(name, again=True)
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
        broker.stop()
        print("Lifeline stopped; data kept in", settings.data_dir)
    return 0


EMBEDDED_FETCH_MAX_WAIT_MS = 20
# `lifeline up` gives up on a process that exits this many times within the window.
RESTARTS_IN_WINDOW = 5
RESTART_WINDOW_SECONDS = 60


def _wait_ready(settings: Settings, procs: dict[str, subprocess.Popen], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    for name in procs:
        url = f"http://{settings.host}:{settings.ports[name]}/readyz"
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if procs[name].poll() is not None:
                raise SystemExit(f"{name} failed to start; see its log under {settings.data_dir / 'logs'}")
            time.sleep(0.3)


def add_audit_parser(sub: Any) -> Any:
    """The `audit` group; returns its subcommands (verify here; export and check beside it)."""
    p = sub.add_parser("audit", help="audit the services' logs: verify the hash chains")
    audit = p.add_subparsers(dest="audit_command", required=True)
    a = audit.add_parser(
        "verify", help="prove each service's hash-chained log intact",
        description="Read each service's whole event log in order, recompute its hash chain (SHA-256 over "
                    "each event's stored bytes and the hash before it) and check it against the chain heads "
                    "the service published as LogSealed on its Kafka topic (or, when Kafka cannot be read, the "
                    "seals in its store). Names the first event that was changed, removed or reordered. Exit "
                    f"status 0 when every log is intact, {EXIT_TAMPERED} when any is not, 2 on a configuration "
                    "error.")
    a.add_argument("service", nargs="?", choices=SERVICES, help="one service (default: all five)")
    a.add_argument("--no-kafka", action="store_true",
                   help="check against the seals recorded in the store only (do not read Kafka)")
    a.add_argument("--timeout", type=float, default=10, help="seconds to wait for Kafka (default 10)")
    a.set_defaults(func=cmd_audit_verify)
    return audit


EXIT_BUNDLE_DIFFERS = 1  # audit check: a file of the bundle was changed, removed or added


def cmd_audit_export(args: argparse.Namespace) -> int:
    """One case's whole history across the five services, with a manifest of SHA-256 hashes."""
    from lifeline.audit.export import export_case

    settings = Settings.from_env()
    try:
        result = export_case(settings, args.case_id, args.out)
    except FileExistsError as exc:
        print(f"lifeline audit export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LookupError as exc:
        print(f"lifeline audit export: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{name} {n}" for name, n in result.events.items())
    print(f"case {result.case_id}: {sum(result.events.values())} events ({counts}), "
          f"{sum(result.documents.values())} read-model documents, {result.notices} notices "
          f"({result.pdfs} letters)")
    if result.note:
        print(f"note: {result.note}")
    print(f"bundle {result.out}: {result.files} files")
    print(f"manifest sha256 {result.manifest_sha256}")
    print(f"check it: lifeline audit check {result.out} --expect {result.manifest_sha256}")
    return 0


def cmd_audit_check(args: argparse.Namespace) -> int:
    """Every file of a bundle against its manifest; names each file changed, missing or added."""
    from lifeline.audit.export import check_bundle

    result = check_bundle(args.directory, args.expect)
    for line in result.lines():
        print(line)
    if not result.ok:
        print(f"audit check: {args.directory} does NOT match its manifest")
        return EXIT_BUNDLE_DIFFERS
    print(f"audit check: {args.directory} intact: {result.files} files match manifest.json"
          + (" (and the manifest its expected hash)" if args.expect else ""))
    return 0


def add_audit_bundle_parsers(audit: Any) -> None:
    """`audit export` and `audit check`, beside `audit verify`."""
    a = audit.add_parser(
        "export", help="write one case's whole history across the five services as a verifiable bundle",
        description="Read every service's event store and read models and write the case's events (who, role, "
                    "office, why, when it happened and was recorded, causation and correlation ids), its "
                    "read-model documents, its notices and their letters, a timeline and a README into DIR, "
                    "with manifest.json holding the SHA-256 of every file. Exit status 0, 1 when no service "
                    "knows the case, 2 when DIR is not empty.")
    a.add_argument("case_id", help="the case, e.g. C-0123456789ABCDEF0123")
    a.add_argument("--out", required=True, type=Path, help="a new (or empty) directory for the bundle")
    a.set_defaults(func=cmd_audit_export)
    a = audit.add_parser(
        "check", help="verify a bundle against its manifest",
        description="Recompute the SHA-256 of every file of a bundle and compare with its manifest.json; name "
                    f"every file changed, missing or added. Exit status 0 when intact, {EXIT_BUNDLE_DIFFERS} "
                    "otherwise.")
    a.add_argument("directory", type=Path, help="the bundle's directory")
    a.add_argument("--expect", metavar="SHA256", help="the manifest's own SHA-256 as the export printed it")
    a.set_defaults(func=cmd_audit_check)


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from lifeline.contracts.signing import KeyDirectory, lifeline_sources, partner_sources

    keys = KeyDirectory(Path(args.out))
    sources = args.source or [*lifeline_sources(), *partner_sources()]
    existing = {r.source for r in keys.records()}
    for source in sources:
        if source in existing and not args.rotate:
            print(f"{source}: has a key; kept (--rotate makes a new one)")
            continue
        until = (datetime.now(SHANGHAI) + timedelta(days=args.window_days)) if source in existing else None
        record = keys.generate(source, not_after_for_others=until)
        print(f"{source}: {record.keyid}" + (f" (earlier keys accepted until {until.isoformat(timespec='seconds')})"
                                            if until else ""))
    print(f"private keys: {keys.path}/<source>.ed25519 (0600, each to its own process only); "
          f"public keys: {keys.public_dir}/ (to every consumer)")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from lifeline.contracts.signing import KeyDirectory

    settings = Settings.from_env()
    keys = KeyDirectory(Path(args.dir) if args.dir else (settings.keys_dir or settings.data_dir / "keys"))
    for r in keys.records():
        print(f"{r.keyid}\t{r.source}\tcreated {r.created_at}" + (f"\tuntil {r.not_after}" if r.not_after else ""))
    return 0


def add_keys_parser(sub: Any) -> None:
    p = sub.add_parser("keys", help="the Ed25519 keys events are signed with (docs/SECURITY.md)")
    actions = p.add_subparsers(dest="keys_command", required=True)
    a = actions.add_parser(
        "generate", help="make a deployment's signing keys",
        description="One Ed25519 key per source (the five services and every partner department unless "
                    "--source is given): OUT/<source>.ed25519 (the private key: give each to its own process "
                    "only, as LIFELINE_KEYS_DIR) and OUT/public/<keyid>.json (every consumer reads all of them). "
                    "A source that has a key keeps it unless --rotate: then a new key signs from now on and "
                    "the old one is still accepted for --window-days.")
    a.add_argument("--out", required=True, help="the key directory")
    a.add_argument("--source", action="append", help="lifeline/<service> or partner/<department> (repeatable)")
    a.add_argument("--rotate", action="store_true", help="a new key for sources that have one")
    a.add_argument("--window-days", type=int, default=7, help="how long a rotated-out key is still accepted")
    a.set_defaults(func=cmd_keys_generate)
    a = actions.add_parser("list", help="the registered public keys")
    a.add_argument("--dir", help="the key directory (default LIFELINE_KEYS_DIR or data_dir/keys)")
    a.set_defaults(func=cmd_keys_list)


def cmd_redis_users(args: argparse.Namespace) -> int:
    from lifeline.ops.redisauth import user_of, write_users

    out = Path(args.out)
    write_users(out, args.host, args.namespace, args.db)
    print(f"{out}/users.acl: for redis-server --aclfile (the default user off; "
          f"{', '.join(user_of(s) for s in SERVICES)}, each with its own keys only)")
    print(f"{out}/<service>.env: each service's LIFELINE_REDIS_URL (0600; give each to its own service only)")
    return 0


def add_redis_users_parser(sub: Any) -> None:
    p = sub.add_parser(
        "redis-users", help="make Redis's ACL users: one per service, each with its own keys only",
        description="New passwords each time: OUT/users.acl for redis-server --aclfile (the default user off, "
                    "lifeline-<service> per service limited to keys <namespace><service>:* and the commands "
                    "Lifeline sends; passwords as SHA-256 only) and OUT/<service>.env with that service's "
                    "LIFELINE_REDIS_URL (redis://lifeline-<service>:PASSWORD@HOST/DB).")
    p.add_argument("--out", required=True, help="the directory to write to (made 0700)")
    p.add_argument("--host", default="redis:6379", help="host:port the services reach Redis at (default redis:6379)")
    p.add_argument("--namespace", default="", help="the deployment's LIFELINE_NAMESPACE (default empty)")
    p.add_argument("--db", type=int, default=0, help="the Redis database number (default 0)")
    p.set_defaults(func=cmd_redis_users)


def cmd_kafka_secrets(args: argparse.Namespace) -> int:
    from lifeline.messaging.acls import lifeline_consumes
    from lifeline.ops.kafka_secrets import write_bundle

    out = Path(args.out)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    # As root, the broker's files go to the user the apache/kafka image runs as; otherwise say so.
    uid = args.broker_uid if os.geteuid() == 0 else None
    write_bundle(out, hosts=hosts, namespace=args.namespace, partitions=args.partitions,
                 consumes=lifeline_consumes(), broker_uid=uid)
    print(f"{out}/ca.pem: the CA every client trusts (LIFELINE_KAFKA_CA_FILE); {out}/ca.key stays offline")
    print(f"{out}/<process>.env: each process's own principal and password (0600; give each to its process only)")
    print(f"{out}/broker/: the broker's server.properties, certificate, SCRAM users and start.sh "
          f"(docker-compose.yml mounts it at /etc/lifeline-kafka), acls.sh with Kafka's own tools")
    if uid is None:
        print(f"  the broker's container reads them as uid {args.broker_uid}: sudo chown -R "
              f"{args.broker_uid}:{args.broker_uid} {out}/broker")
    print("then, as lifeline-admin (admin.env): lifeline kafka-setup")
    return 0


def cmd_kafka_setup(_: argparse.Namespace) -> int:
    import asyncio

    from lifeline.messaging.acls import apply

    settings = Settings.from_env()
    created, acls = asyncio.run(apply(settings))
    print(f"kafka {settings.kafka_bootstrap}: {created} topics created, {acls} ACLs in force "
          f"(namespace {settings.namespace or '(none)'})")
    return 0


def add_kafka_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "kafka-secrets", help="make the CA, broker certificate and a password per Kafka principal",
        description="Writes OUT/ca.pem, ca.key, broker.pem (the broker's key and certificate, signed by the CA) "
                    "and passwords.json once (delete OUT to rotate them); OUT/<process>.env with each "
                    "process's LIFELINE_KAFKA_* (its own principal: lifeline-<service>, "
                    "lifeline-partner-simulator, federation, and admin.env for lifeline kafka-setup); "
                    "OUT/broker/ with the broker's SASL_SSL + SCRAM-SHA-512 + ACL configuration for the "
                    "apache/kafka image, and acls.sh doing what lifeline kafka-setup does with Kafka's own tools.")
    p.add_argument("--out", required=True, help="the directory to write to (made 0700)")
    p.add_argument("--hosts", default="kafka,localhost,127.0.0.1",
                   help="names the broker's certificate is valid for, the advertised one first (default "
                        "kafka,localhost,127.0.0.1)")
    p.add_argument("--namespace", default="", help="the deployment's LIFELINE_NAMESPACE (default empty)")
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic in acls.sh (default 3)")
    p.add_argument("--broker-uid", type=int, default=1000,
                   help="the user the broker's container runs as (apache/kafka: appuser, 1000)")
    p.set_defaults(func=cmd_kafka_secrets)
    sub.add_parser(
        "kafka-setup", help="create the topics and each principal's ACLs (connected as lifeline-admin)",
        description="Connected as LIFELINE_KAFKA_USERNAME (lifeline-admin, a super user), creates every topic "
                    "of LIFELINE_NAMESPACE (LIFELINE_PARTITIONS each) and the ACLs of every principal "
                    "(lifeline/messaging/acls.py), and waits until the broker enforces them. Idempotent."
    ).set_defaults(func=cmd_kafka_setup)


def add_payment_run_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "payment-run", help="start a county's payment run for a period and follow it to completion",
        description="Start the county's payment run for the period through payment's API (a county "
                    "officer's token), or find the one that exists, and show its progress until it is "
                    "completed. Exit codes: 0 completed (or --no-wait), 1 an API error, 2 bad arguments, "
                    f"{EXIT_AWAITING_APPROVAL} awaiting another officer's approval (over budget), "
                    f"{EXIT_TIMEOUT} not completed within --timeout.")
    p.add_argument("--period", required=True, type=period_arg, help="the payment period, YYYY-MM")
    p.add_argument("--county", required=True, type=county_arg, help="the paying county (six digits)")
    p.add_argument("--user", help="the county officer's user id in the token (default county_officer@COUNTY)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="follow the run until it is completed or awaits approval (default); --no-wait: "
                        "start it and return")
    p.add_argument("--timeout", type=float, default=600, help="seconds to follow the run (default 600)")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_payment_run)
    return p


def cmd_chaos(args: argparse.Namespace) -> int:
    from lifeline.dev.chaos import run

    return run(kills=args.kills, seed=args.seed, households=args.households, wave_size=args.wave,
               concurrency=args.concurrency, patience=args.patience, data_dir=args.data_dir, keep=args.keep)


def add_chaos_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "chaos", help="random SIGKILLs while households flow; then check nothing was lost or doubled",
        description="Starts the embedded default (every service and simulator, Tansu, redis-server) in a "
                    "fresh data directory on free ports, drives households through application, the "
                    "procedure, decisions, payment runs with the bank simulator, charity matches and "
                    "notices, and meanwhile SIGKILLs a random process at random moments (seeded) and starts "
                    "it again, until --kills; then checks every accepted application has one case, every "
                    "approval one entitlement, every entitlement x period at most one payment, every fund "
                    "never overdrawn, every notice once per channel, and the read models equal a replay "
                    "(lifeline/dev/chaos.py). Last line: `chaos: K kills, H households, L lost, D doubled`. "
                    "Exit status 0 only when nothing was lost or doubled and every replay is identical.")
    p.add_argument("--kills", type=int, default=200, help="SIGKILLs to make (default 200)")
    p.add_argument("--seed", type=int, default=Settings.model_fields["chaos_seed"].default,
                   help="the dice: which process, when, how long down; and the households")
    p.add_argument("--households", type=int, default=0,
                   help="at least this many households, even when the kills are done sooner (default 0)")
    p.add_argument("--wave", type=int, default=6, help="households a month (default 6)")
    p.add_argument("--concurrency", type=int, default=4, help="households in flight at once (default 4)")
    p.add_argument("--patience", type=float, default=240,
                   help="seconds a client retries one request or waits for one effect (default 240)")
    p.add_argument("--data-dir", type=Path, help="where the run keeps its stores and logs (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir even when everything held")
    p.set_defaults(func=cmd_chaos)
    return p


def add_demo_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo", help="push N new households through the procedure to approval (a test-clock Lifeline)",
        description="For trying Lifeline and for tests: N new households, each with new resident ID "
                    "numbers the partner simulator reports as poor, are submitted, accepted, checked, "
                    "surveyed, proposed and publicly noticed through the services' APIs; the shared test "
                    "clock is moved past the notices and a reviewer approves them; payment's entitlements "
                    "are waited for. Needs every Lifeline process started with LIFELINE_TEST_CLOCK=1 "
                    "(e.g. `LIFELINE_TEST_CLOCK=1 lifeline up`) and this command run with it too.")
    p.add_argument("--households", required=True, type=int, help="how many households (1-1000)")
    p.add_argument("--county", type=county_arg, default="370502", help="the county (default 370502)")
    p.add_argument("--village", help="the households' village, 12 digits in the county (default COUNTY101001)")
    p.add_argument("--period", type=period_arg,
                   help="the first payment period of the benefits, YYYY-MM: the shared clock is moved to the "
                        "month before it, where the households are decided (default: the month after today "
                        "on the shared clock, once the notices are over)")
    p.add_argument("--budget", action="store_true",
                   help="set the county's dibao_fund budget for the first period, big enough for its run")
    p.add_argument("--concurrency", type=int, default=8, help="households in flight at once (default 8)")
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds to wait for one step of one household (default 120)")
    p.add_argument("--seed", help="names, ID numbers, accounts and Idempotency-Keys derive from it: the same "
                                  "seed again repeats the same requests (default: a new one)")
    p.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything embedded").set_defaults(func=cmd_up)
    p = sub.add_parser("serve", help="run one service")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=cmd_serve)
    sub.add_parser("simulator", help="run the partner-department simulator").set_defaults(func=cmd_simulator)
    sub.add_parser("bank-simulator", help="run the bank simulator (ISO 20022 files)").set_defaults(
        func=cmd_bank_simulator)
    sub.add_parser("federation-simulator",
                   help="run the charity-federation simulator (signed webhooks, the feed)").set_defaults(
        func=cmd_federation_simulator)
    sub.add_parser("sms-simulator", help="run the SMS gateway simulator (notices by SMS)").set_defaults(
        func=cmd_sms_simulator)
    sub.add_parser("console", help="run the operator console in the browser (port 8000)").set_defaults(
        func=cmd_console)
    p = sub.add_parser("token", help="mint a bearer token (embedded mode)")
    p.add_argument("--role", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--user")
    p.add_argument("--org")
    p.add_argument("--ttl", type=int, default=8 * 3600)
    p.set_defaults(func=cmd_token)
    p = sub.add_parser(
        "replay", help="rebuild a service's read models and compare",
        description="Rebuild the service's read models into a fresh store and compare them with the live ones, "
                    "document by document: from its event store, or with --from-kafka from the topics it "
                    "consumes read from offset zero (every effect of a consumed event made again by its "
                    "handler; its own commands' and timers' events from its store). Shows a progress bar and "
                    "the rate on stderr. Exit status 0 when identical, 1 when not.")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--from-kafka", action="store_true",
                   help="rebuild from the consumed topics at offset zero (on the memory-only embedded broker: "
                        "once the relays have republished)")
    p.add_argument("--timeout", type=float, default=15, help="seconds to wait for Kafka (default 15)")
    p.set_defaults(func=cmd_replay)
    add_audit_bundle_parsers(add_audit_parser(sub))
    p = sub.add_parser("republish", help="make a service's relay publish again from a position")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--from", dest="from_position", type=int, default=1)
    p.set_defaults(func=cmd_republish)
    p = sub.add_parser("clock", help="move the shared test clock (LIFELINE_TEST_CLOCK=1 only)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("set", help="freeze the shared clock at MOMENT")
    a.add_argument("moment", help="ISO 8601 with an offset, e.g. 2026-12-31T23:59:59+08:00")
    a = actions.add_parser("advance", help="move the shared clock forward (from now when it is not set)")
    a.add_argument("duration", help="7d, 3h, 30m or 10s")
    actions.add_parser("show", help="print the moment every process reads now")
    actions.add_parser("reset", help="remove the shared clock: the processes read the system time again")
    p.set_defaults(func=cmd_clock)
    add_payment_run_parser(sub)
    add_demo_parser(sub)
    add_chaos_parser(sub)
    add_keys_parser(sub)
    add_redis_users_parser(sub)
    add_kafka_parsers(sub)
    args = parser.parse_args(argv)
    # Everything a Lifeline process creates is its own: stores, secrets, keys, logs (which may
    # name cases) are 0600 and directories 0700; children (redis-server, the broker) inherit it.
    os.umask(0o077)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        # Configuration the operator must fix: say what and where, without a traceback.
        print(f"lifeline {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
