"""The hash chain's own rules (lifeline/stores/chain.py), on in-memory and file SQLite stores;
tampering with stored rows is tested on both backends in tests/integration/test_chain.py."""

from __future__ import annotations

import hashlib
import struct
import threading
import uuid

from lifeline.domain.clock import FixedClock
from lifeline.domain.logseal import LogSeal
from lifeline.settings import Settings
from lifeline.stores import chain
from services.intake.application import IntakeApplication
from services.intake.bootstrap import SPEC as INTAKE

from .services import CLERK, MEMORY_ENV, SEALER, application_body, pid

NOW = "2026-11-25T09:00:00+08:00"


def intake() -> IntakeApplication:
    return IntakeApplication(dict(MEMORY_ENV), clock=FixedClock(NOW), sealer=SEALER)


def test_the_link_is_sha256_over_the_documented_canonical_bytes():
    oid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    expected = hashlib.sha256(bytes(32) + struct.pack(">Q", 7) + oid.bytes + struct.pack(">Q", 3)
                              + struct.pack(">I", 5) + b"a:b.C" + b"\x00state").digest()
    assert chain.link(chain.GENESIS, 7, oid, 3, "a:b.C", b"\x00state") == expected
    # Each part counts: another position, version, topic or byte is another hash.
    others = {chain.link(chain.GENESIS, 8, oid, 3, "a:b.C", b"\x00state"),
              chain.link(chain.GENESIS, 7, oid, 4, "a:b.C", b"\x00state"),
              chain.link(chain.GENESIS, 7, oid, 3, "a:b.D", b"\x00state"),
              chain.link(chain.GENESIS, 7, oid, 3, "a:b.C", b"\x01state"),
              chain.link(expected, 7, oid, 3, "a:b.C", b"\x00state")}
    assert expected not in others and len(others) == 5


def test_every_event_is_chained_to_the_one_before_it_in_its_transaction():
    app = intake()
    for i in range(3):
        app.submit_application(application_body([pid(60 + i)]), CLERK)
    events = list(chain.read_chain(app))
    assert [e.notification_id for e in events] == list(range(1, len(events) + 1))
    prev = chain.GENESIS
    for e in events:
        assert e.prev_hash == prev and e.hash == chain.link(prev, e.notification_id, e.originator_id,
                                                            e.originator_version, e.topic, e.state)
        prev = e.hash
    assert app.recorder.chain_head() == (events[-1].notification_id, prev)
    assert app.recorder.genesis() == chain.Genesis(0, 0, NOW)  # a new store: nothing before the chain


def test_a_seal_covers_the_log_before_it_and_nothing_new_means_no_seal():
    app = intake()
    assert chain.seal(app) is None  # an empty log
    app.submit_application(application_body([pid(70)]), CLERK)
    head = app.recorder.chain_head()
    sealed = chain.seal(app)
    assert isinstance(sealed, LogSeal.Sealed)
    assert (sealed.service, sealed.notification_id, sealed.head_hash, sealed.events) == (
        "intake", head[0], head[1].hex(), head[0])
    assert app.recorder.position_of(sealed.originator_id, sealed.originator_version) > head[0]
    assert chain.seal(app) is None  # only the seal since: nothing to seal
    app.submit_application(application_body([pid(71)]), CLERK)
    again = chain.seal(app)
    assert again is not None and again.notification_id > sealed.notification_id
    # The second covers the first (the seal is in the log like any event).
    assert again.notification_id > app.recorder.position_of(sealed.originator_id, sealed.originator_version)
    report = chain.verify(app, chain.store_evidence(app))
    assert report.ok and report.seals_matched == 2


def test_writers_in_parallel_extend_one_chain(tmp_path):
    """Two applications on one SQLite file (two replicas) saving at once: one unbroken chain."""
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path)})
    apps = [INTAKE.application(settings, FixedClock(NOW)) for _ in range(2)]
    try:
        def work(app, base):
            for i in range(8):
                app.submit_application(application_body([pid(base + i)]), CLERK)
        threads = [threading.Thread(target=work, args=(app, 200 + 20 * k)) for k, app in enumerate(apps)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report = chain.verify(apps[0])
        assert report.ok, report.problems
        assert report.events == report.chained == apps[0].recorder.max_notification_id() >= 48
    finally:
        for app in apps:
            app.close()
