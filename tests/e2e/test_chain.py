"""The hash-chained logs end to end (SPEC §5, issue 13): five service processes chain every
event they store and publish their heads (LogSealed, every second here) on Kafka; then
`lifeline audit verify`, another process, proves every log intact — and, intake stopped and
its stored rows edited directly (SQLite on the embedded backend, PostgreSQL on the real one),
names each tampering with a non-zero exit status: one byte changed, a row deleted, two rows
swapped, the last rows removed with their chain records (caught against what was published)."""

from __future__ import annotations

import pytest

from lifeline.settings import SERVICES, Settings
from lifeline.stores import chain
from services.intake.bootstrap import SPEC as INTAKE
from tests.e2e.conftest import make_poor, new_people, running_lifeline
from tests.e2e.test_flows import submit
from tests.harness import wait_for
from tests.integration.test_chain import Store

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sealing_lifeline(infra):
    with running_lifeline(infra, extra_env={"LIFELINE_LOG_SEAL_SECONDS": "1"}) as system:
        yield system


def verify(lifeline, *service: str):
    done = lifeline.cli("audit", "verify", *service)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, done.stdout


def test_every_log_verifies_against_its_published_seals_and_each_tampering_is_named(sealing_lifeline):
    lifeline = sealing_lifeline
    for _ in range(3):
        people = new_people(2)
        make_poor(lifeline, people)
        lifeline.accept(submit(lifeline, people))
    settings = Settings.from_env(lifeline.env)
    intake = INTAKE.application(settings)
    try:
        # Intake's latest events are sealed and the seal published (a second or so).
        def sealed() -> bool:
            ev = chain.evidence_for(settings, intake, "intake")
            return ev.source == "kafka" and any(s.notification_id >= 6 for s in ev.seals)
        wait_for(sealed, what="intake's log sealed on Kafka")
        rc, out = verify(lifeline)
        assert rc == 0, out
        assert out.rstrip().endswith(f"audit verify: all {len(SERVICES)} logs intact"), out
        assert "intake: OK" in out and "seals from Kafka match" in out and "events/s" in out

        lifeline.stop("intake")  # a clean stop seals once more; nothing writes to the store now
        store = Store(settings, "intake", intake)
        rows = {e.notification_id: e for e in chain.read_chain(intake)}
        assert len(rows) >= 12 and all(e.hash is not None for e in rows.values())

        store.change_byte(3)
        rc, out = verify(lifeline, "intake")
        assert rc == 1 and "NOT INTACT" in out and f"the first: intake: notification 3 (originator " \
            f"{rows[3].originator_id}, version {rows[3].originator_version}): changed" in out, out
        store.change_byte(3)  # flipped back
        assert verify(lifeline, "intake")[0] == 0

        taken = store.take(5)
        store.put_back(([], taken[1]))  # the event gone, its chain record kept
        rc, out = verify(lifeline, "intake")
        assert rc == 1 and "the first: intake: notification 5 " in out and ": missing:" in out, out
        store.put_back((taken[0], []))

        store.swap(4, 8)
        rc, out = verify(lifeline, "intake")
        assert rc == 1 and "the first: intake: notification 4 " in out and ": out of order:" in out, out
        assert "now at notification 8" in out
        store.swap(4, 8)
        assert verify(lifeline, "intake")[0] == 0

        # Cut short at the end, events and chain records both: only what was published tells.
        published = chain.evidence_for(settings, intake, "intake").last_published
        last = store.last()
        assert published >= 6
        taken_tail = [store.take(n) for n in range(last, published - 1, -1)]
        assert chain.verify(intake).ok
        rc, out = verify(lifeline, "intake")
        assert rc == 1 and "last event(s) removed" in out and f"notification {published}" in out, out
        for t in reversed(taken_tail):
            store.put_back(t)
        assert verify(lifeline, "intake")[0] == 0
    finally:
        intake.close()
