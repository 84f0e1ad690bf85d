"""The `lifeline` command line.

  lifeline up                      run everything embedded on this machine
  lifeline serve SERVICE           run one service (API + outbox relay + consumers)
  lifeline simulator               run the partner-department simulator
  lifeline bank-simulator          run the bank simulator (ISO 20022 files)
  lifeline token --role R --region CODE
  lifeline replay SERVICE          rebuild read models into a fresh store and compare
  lifeline republish SERVICE --from N
  lifeline clock set MOMENT | advance DURATION | show | reset
                                   move the shared test clock (LIFELINE_TEST_CLOCK=1 only)
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import time

from lifeline.errors import ConfigurationError
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
SIMULATORS = {"simulator": "lifeline.simulators.partners", "bank": "lifeline.simulators.bank"}
COMMANDS = {"simulator": ["simulator"], "bank": ["bank-simulator"]}


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
    from lifeline.rules.setup import install_rules
    from lifeline.stores.projection import Projection, compare, rebuild
    from lifeline.stores.sidestore import SideStore

    settings = Settings.from_env()
    spec = service_spec(args.service)
    install_rules(settings)  # the rules the service itself would run with
    app = spec.application(settings)
    live = SideStore(settings, spec.name)
    live_views = Projection(app, live, spec.project, spec.views_version)
    live_views.ensure_version()
    live_views.catch_up()
    rebuilt = rebuild(app, spec.project)
    diffs = compare(live, rebuilt)
    events = app.recorder.max_notification_id() or 0
    docs = len(rebuilt.dump())
    if diffs:
        print(f"{spec.name}: replayed {events} events into {docs} documents: DIFFERENT from live")
        for line in diffs[:50]:
            print("  " + line)
        return 1
    print(f"{spec.name}: replayed {events} events into {docs} documents: identical to live read models")
    return 0


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


def cmd_up(args: argparse.Namespace) -> int:
    from lifeline.http.auth import mint_token
    from lifeline.dev.embedded import EmbeddedBroker, EmbeddedRedis
    from lifeline.runtime.service import jwt_secret

    settings = Settings.from_env()
    _logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker_port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    redis_port = int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    broker = EmbeddedBroker(port=broker_port, log_path=logs / "broker.log")
    redis = EmbeddedRedis(port=redis_port, data_dir=settings.data_dir / "redis")
    jwt_secret(settings)  # created once here, before the services race to create it
    broker.start()
    redis.start()
    # The children read the same environment, with the data dir made absolute and
    # the relays told to publish again (the memory-only broker starts empty).
    env = {**os.environ, "LIFELINE_DATA_DIR": str(settings.data_dir), "LIFELINE_REPUBLISH_ON_START": "true"}
    procs: dict[str, subprocess.Popen] = {}
    for name in [*SERVICES, *SIMULATORS]:
        argv = [sys.executable, "-m", "lifeline.cli", *(["serve", name] if name in SERVICES else COMMANDS[name])]
        out = open(logs / f"{name}.log", "ab")
        procs[name] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

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
    print(f"  redis      {settings.redis_url}")
    print(f"  data       {settings.data_dir}")
    for name in [*SERVICES, *SIMULATORS]:
        print(f"  {name:<12} http://{settings.host}:{settings.ports[name]}  (docs at /docs)")
    print(f"  logs       {logs}")
    print("An admin token (8 h):")
    print(f"  export TOKEN={token}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None and not stopping:
                    print(f"{name} exited with {proc.returncode}; see {logs / (name + '.log')}", flush=True)
                    stopping = True
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
    p = sub.add_parser("token", help="mint a bearer token (embedded mode)")
    p.add_argument("--role", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--user")
    p.add_argument("--org")
    p.add_argument("--ttl", type=int, default=8 * 3600)
    p.set_defaults(func=cmd_token)
    p = sub.add_parser("replay", help="rebuild a service's read models and compare")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=cmd_replay)
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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        # Configuration the operator must fix: say what and where, without a traceback.
        print(f"lifeline {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
