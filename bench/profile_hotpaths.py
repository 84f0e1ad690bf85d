"""Profile the CPU-side hot paths of the relay and the consumer, without a broker.

    .venv/bin/python bench/profile_hotpaths.py --events 2000
    # with pyinstrument (kept out of the project's dependencies): install it in a
    # throw-away venv and put its site-packages on PYTHONPATH, e.g.
    python3 -m venv /tmp/prof && /tmp/prof/bin/pip install pyinstrument
    PYTHONPATH=/tmp/prof/lib/python3.11/site-packages .venv/bin/python bench/profile_hotpaths.py

Three synchronous loops over N events, each timed plainly first (µs/event), then
profiled (pyinstrument if importable, else cProfile's top functions):
  relay.map     mapper.to_domain_event + outbox.to_cloud_events + to_json
                for N stored ApplicationSubmitted (IntakeApplication, SQLite temp file)
  consumer.decode   registry.decode of N serialized ApplicationSubmitted CloudEvents
  consumer.triage   envelope + type check only: what a group pays for an event it ignores
  consumer.process  NotifyApplication.process_cloud_event for N new events (SQLite temp file)
Also: jsonschema validation alone (registry.validate) for comparison.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from eventsourcing.utils import get_topic  # noqa: E402

from lifeline.contracts import registry  # noqa: E402
from lifeline.contracts.envelope import CloudEvent  # noqa: E402
from lifeline.domain.aggregate import Meta  # noqa: E402
from lifeline.messaging.outbox import to_cloud_events  # noqa: E402
from services.intake.bootstrap import SPEC as INTAKE  # noqa: E402
from services.intake.domain import Case  # noqa: E402
from services.notify.bootstrap import SPEC as NOTIFY  # noqa: E402

try:
    from pyinstrument import Profiler
except ImportError:  # pragma: no cover - optional
    Profiler = None


def profiled(label: str, fn, n: int, top: int) -> None:
    t0 = time.perf_counter()
    fn(plain=True)
    dt = time.perf_counter() - t0
    print(f"\n=== {label}: {dt * 1e6 / n:,.1f} µs/event ({n / dt:,.0f} ev/s, unprofiled)")
    if Profiler is not None:
        prof = Profiler(interval=0.0005)
        prof.start()
        fn(plain=False)
        prof.stop()
        print(prof.output_text(unicode=True, color=False, show_all=False, short_mode=False))
    else:
        prof = cProfile.Profile()
        prof.enable()
        fn(plain=False)
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(top)
        print(s.getvalue())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    n = args.events
    print(f"# profile_hotpaths events={n} profiler={'pyinstrument' if Profiler else 'cProfile'}")
    print(f"# {C.machine_line()}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")

    with tempfile.TemporaryDirectory(prefix="lifeline-bench-prof-", dir="/tmp") as tmp:
        settings = C.Settings.from_env({"LIFELINE_DATA_DIR": tmp})
        intake = INTAKE.application(settings)
        clerk = Meta("clerk-bench", "clerk", "370502101")
        for i in range(n):
            intake.submit_application(C.application_body(i), clerk)
        # The applications only (each also saved its people's index entries, persons.py).
        notes = intake.recorder.select_notifications(1, n, topics=[get_topic(Case.Submitted)])

        def relay_map(plain: bool) -> None:
            for note in notes:
                ev = intake.mapper.to_domain_event(note)
                for _t, _k, ce in to_cloud_events("intake", note.id, ev, intake.outbound):
                    ce.to_json()

        profiled("relay.map (to_domain_event + to_cloud_events + to_json)", relay_map, n, args.top)

        raws = []
        for note in notes:
            for _t, _k, ce in to_cloud_events("intake", note.id, intake.mapper.to_domain_event(note), intake.outbound):
                raws.append(ce.to_json())
        events = [registry.decode(r) for r in raws]

        def validate_only(plain: bool) -> None:
            for ev in events:
                registry.validate(ev)

        profiled("registry.validate alone (jsonschema, current version)", validate_only, n, args.top)

        def decode(plain: bool) -> None:
            for r in raws:
                registry.decode(r)

        profiled("consumer.decode (registry.decode)", decode, n, args.top)

        def triage_ignored(plain: bool) -> None:
            # What a group that does not handle the type pays: envelope and type only.
            for r in raws:
                registry.require_known(CloudEvent.from_json(r))

        profiled("consumer.triage of an event the group ignores (envelope + type)", triage_ignored, n, args.top)

        apps = []

        def process(plain: bool) -> None:
            settings2 = C.Settings.from_env({"LIFELINE_DATA_DIR": f"{tmp}/notify-{len(apps)}"})
            app = NOTIFY.application(settings2)
            apps.append(app)
            for ev in events:
                assert app.process_cloud_event(ev)

        profiled("consumer.process (NotifyApplication.process_cloud_event, new events)", process, n, args.top)

        def duplicates(plain: bool) -> None:
            for ev in events:
                assert not apps[0].process_cloud_event(ev)

        profiled("consumer.process, all duplicates", duplicates, n, args.top)
        for app in apps:
            app.close()
        intake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
