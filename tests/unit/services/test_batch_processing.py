"""`ServiceApplication.process_batch` on an in-memory store (no broker): a batch ends as its events
processed one at a time do, and is cut where a handler reads what an earlier event of the open
batch changed (tests/integration/test_consumer_batch.py does the same through the consumer, on the
real broker and stores)."""

from __future__ import annotations

import dataclasses

from lifeline.domain.clock import FixedClock
from lifeline.stores import chain
from services.notify.application import NotifyApplication

from . import MEMORY_ENV, SEALER, accepted_data, cloud, new_case_id, pid, stored, submitted_data
from .test_deadline_watch import BEFORE, deadline_cleared, deadline_set, set_data


def events() -> list:
    """Per case: its number, then its acceptance (whose SMS needs that number); a deadline set and
    cleared; and the first acceptance again."""
    out = []
    for k in range(3):
        case_id = new_case_id()
        data = submitted_data(case_id, [pid(11 + k), pid(12 + k, female=True)])
        data["contact"] = dataclasses.asdict(SEALER.contact("13812345678"))
        out.append(cloud("ApplicationSubmitted", data, subject=case_id, source="lifeline/intake"))
        out.append(cloud("ApplicationAccepted", accepted_data(case_id, BEFORE), subject=case_id,
                         source="lifeline/intake"))
    deadline = set_data(new_case_id())
    return [*out, deadline_set(deadline), deadline_cleared(deadline), out[1]]


def state(app: NotifyApplication) -> list:
    return [(type(e).__qualname__, e.originator_id, e.originator_version,
             {k: v for k, v in e.__dict__.items() if k != "timestamp"}) for e in stored(app)]


def test_a_batch_is_cut_where_a_handler_reads_what_the_batch_changed():
    batch = NotifyApplication(dict(MEMORY_ENV), clock=FixedClock(BEFORE))
    single = NotifyApplication(dict(MEMORY_ENV), clock=FixedClock(BEFORE))
    units: list[int] = []
    record = batch._record_batch
    batch._record_batch = lambda unit: (units.append(len(unit)), record(unit))[1]
    stream = events()

    outcomes = batch.process_batch(stream)
    assert outcomes == [single.process_cloud_event(e) for e in stream]
    assert outcomes == [True] * 8 + [False]
    # Each acceptance read its case's Contact, made just before it: cut there; so is the clearing
    # of the deadline set just before it. Then the rest went on together.
    assert units == [1, 2, 2, 2, 1]
    assert state(batch) == state(single)
    assert chain.verify(batch).ok
    # All again: duplicates, found by one query, nothing stored.
    before = len(stored(batch))
    assert batch.process_batch(stream) == [False] * 9
    assert len(stored(batch)) == before
    batch.close()
    single.close()


def test_a_failing_handler_stops_the_batch_after_what_came_before_it_is_saved():
    app = NotifyApplication(dict(MEMORY_ENV), clock=FixedClock(BEFORE))
    stream = events()

    def boom(*args):
        raise RuntimeError("down")

    app.handlers = {**app.handlers, "DeadlineSet": boom}
    # The six events before the DeadlineSet are saved; it and what follows are left to the caller.
    assert app.process_batch(stream) == [True] * 6
    assert [app.is_processed(e) for e in stream] == [True] * 6 + [False, False, True]
    app.close()
