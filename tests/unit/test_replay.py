"""Replay's fast path (issue 14, goal 4) gives what the library's path gives: every stored event
decoded by LogReader is the mapper's, also the awkward ones (upcast, nested values, NaN, states
with `_type_` in them, a wrong key); a page's documents written at once (PageTx) read back as
the store would show them; every service's read models rebuilt both ways over the logs its own
tests make are the same (tests/unit/replay_crosscheck.py); `lifeline replay SERVICE` shows its
bar and rate and names a document that differs."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from lifeline import cli
from lifeline.settings import Settings
from lifeline.stores.logreader import LogReader
from lifeline.stores.projection import PageTx, compare, rebuild
from lifeline.stores.sidestore import SideStore
from services.payment.application import PaymentApplication
from services.payment.application import project as payment_project
from services.payment.bootstrap import SPEC as PAYMENT
from services.payment.domain import Entitlement, Payment

from .services import MEMORY_ENV, SEALER, SYSTEM_META, benefit_data, cloud, new_case_id

REPO = Path(__file__).resolve().parents[2]


def encrypted_env(path: Path | None = None, key: bytes = b"k" * 32) -> dict[str, str]:
    """A payment store as the services keep theirs: compressed (large states) and encrypted."""
    return {**MEMORY_ENV, **({"SQLITE_DBNAME": str(path)} if path else {}),
            "COMPRESSOR_TOPIC": "lifeline.stores.eventstore:SmallStatesPlain",
            "CIPHER_TOPIC": "lifeline.stores.eventstore:KeptKeyAESCipher",
            "CIPHER_KEY": base64.b64encode(key).decode()}


def approve(app: PaymentApplication, n: int = 3) -> list[str]:
    cases = []
    for _ in range(n):
        case_id = new_case_id()
        assert app.process_cloud_event(cloud("BenefitApproved", benefit_data(case_id, f"B-{uuid.uuid4().hex[:20]}"),
                                             subject=case_id, source="lifeline/verification"))
        cases.append(case_id)
    return cases


def stored_as(app: PaymentApplication, event_class: type, version: int = 1, **state) -> StoredEvent:
    """A row written as the mapper writes one (json with its transcodings, compressed, encrypted)
    from `state` as given: what an older class version or another writer may have stored."""
    mapper = app.mapper
    data = mapper.transcoder.encode(state)
    data = mapper.cipher.encrypt(mapper.compressor.compress(data))
    return StoredEvent(uuid.uuid4(), version, get_topic(event_class), data)


def same(a: object, b: object) -> bool:
    """Equal, NaN being equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# --- decoding --------------------------------------------------------------------------------
def test_every_stored_event_is_decoded_as_the_mapper_decodes_it(tmp_path):
    app = PaymentApplication(encrypted_env(tmp_path / "events.sqlite"), sealer=SEALER)
    approve(app)
    stamp = app.clock.now()
    common = dict(timestamp=stamp, originator_topic=get_topic(Payment), meta=SYSTEM_META)
    awkward = [
        # Entitlement.Opened v1 (no account): upcast on reading.
        stored_as(app, Entitlement.Opened, entitlement_id="E-1", case_id="C-1", benefit_id="B-1",
                  benefit_type="dibao", monthly_amount_fen=1, first_period="2026-12", bank_account_ref="R",
                  region_code="370502101001", opened_at="2026-12-01", **{**common, "originator_topic":
                                                                         get_topic(Entitlement)}),
        # json writes NaN and integers beyond 64 bits; orjson refuses both: the mapper reads them.
        stored_as(app, Payment.Instructed, payment_id="P-1", amount_fen=2**70, ratio=float("nan"), **common),
        # `_type_` as a value and as one key among three: not transcoded values, left as they are.
        stored_as(app, Payment.Instructed, payment_id="P-2", note="_type_",
                  odd={"_type_": "datetime_iso", "_data_": "x", "more": 1}, **common),
        # Transcoded values in lists and dicts, and a state over 1 KiB (compressed).
        stored_as(app, Payment.Instructed, payment_id="P-3", at=[stamp, {"when": stamp}],
                  pad="缴" * 600, **common),
    ]
    app.recorder.insert_events(awkward)
    notes = app.recorder.select_notifications(1, 100)
    assert len(notes) > len(awkward)
    for parallel in (False, True):  # read here, or by a reading process of its own
        pages = list(LogReader(app, page_size=2).pages(parallel=parallel))
        assert [n for page in pages for n, _ in page] == [n.id for n in notes]
        for note, (_, event) in zip(notes, (e for page in pages for e in page)):
            expected = app.mapper.to_domain_event(note)
            assert type(event) is type(expected) and same(event.__dict__, expected.__dict__), note.topic
    upcast = app.mapper.to_domain_event(notes[-4])
    assert upcast.bank_account is None and "class_version" not in upcast.__dict__
    assert math.isnan(app.mapper.to_domain_event(notes[-3]).ratio)
    app.close()


def test_what_the_mapper_refuses_is_refused_the_same(tmp_path):
    app = PaymentApplication(encrypted_env(tmp_path / "events.sqlite"), sealer=SEALER)
    approve(app, 1)
    app.close()
    other = PaymentApplication(encrypted_env(tmp_path / "events.sqlite", key=b"o" * 32), sealer=SEALER)
    note = other.recorder.select_notifications(1, 1)[0]
    with pytest.raises(Exception) as by_mapper:
        other.mapper.to_domain_event(note)
    for parallel in (False, True):
        with pytest.raises(type(by_mapper.value), match="Invalid cipher tag"):
            list(LogReader(other).pages(parallel=parallel))
    other.close()


# --- writing a page at once --------------------------------------------------------------------
def test_a_page_shows_the_projection_what_the_store_would():
    store = SideStore.in_memory()
    with store.transaction() as tx:
        tx.put("case", "C-0", {"n": 0}, ref="R")
    with store.transaction() as tx:
        page = PageTx(tx)
        first = page.get("case", "C-0")
        first["n"] = 99  # a document read is the caller's own copy
        assert page.get("case", "C-0") == {"n": 0}
        page.put("case", "C-1", {"n": 1, "名": "王"}, ref="R")
        assert page.get("case", "C-1") == {"n": 1, "名": "王"} and page.get("case", "C-2") is None
        page.delete("case", "C-0")
        assert page.get("case", "C-0") is None
        assert tx.get("case", "C-1") is None  # not written yet ...
        assert [d for d in page.find("case", "R")] == [{"n": 1, "名": "王"}]  # ... until asked otherwise
        page.put("case", "C-3", {"n": 3}, ref="R")
        page.clear_documents()  # writes the page first, forgets what it had read
        assert page.get("case", "C-1") is None and page.get("case", "C-3") is None
        page.put("case", "C-4", {"n": 4})
        page.flush()
    assert [(k, key) for k, key, _, _ in store.dump()] == [("case", "C-4")]


def test_a_rebuilt_store_knows_what_it_never_wrote_until_written_otherwise():
    store = SideStore.in_memory(ref_index=False)
    written: set = set()
    with store.transaction() as tx:
        tx.put("case", "C-9", {"n": 9})  # behind the page's back
        page = PageTx(tx, written, before_asking=store.index_refs)
        assert page.get("case", "C-9") is None  # never put through a page: known absent
        page.put("case", "C-1", {"n": 1}, ref="R")
        assert page.get("case", "C-1") == {"n": 1}
        page.set_position("views", 7)  # not a document
        assert page.get("case", "C-9") is None and tx.text("case", "C-1") is not None
        assert page.find("case", "R") == [{"n": 1}]  # the refs' index made first
        page._x("INSERT INTO {t}docs VALUES ('case', 'C-8', '', '{}')")  # written otherwise:
        assert page.get("case", "C-8") == {} and page.get("case", "C-9") == {"n": 9}  # asked from now on
    with store.transaction() as tx:
        assert PageTx(tx, written).get("case", "C-9") == {"n": 9}


def test_documents_spelt_differently_are_the_same_and_a_changed_one_is_named():
    old, new = SideStore.in_memory(), SideStore.in_memory()
    with old.transaction() as tx:  # as json.dumps spelt documents before
        tx._x("INSERT INTO {t}docs VALUES ('case', 'C-1', 'R', '{\"a\": 1, \"b\": [1, 2]}')")
        tx.put("case", "C-2", {"a": 2})
        tx.put("case", "C-3", {"a": 3})
    with new.transaction() as tx:
        tx.put("case", "C-1", {"b": [1, 2], "a": 1}, ref="R")
        tx.put("case", "C-2", {"a": 2.5})
        tx.put("need", "N-1", {})
    assert compare(old, new) == ["differs: ('case', 'C-2')", "only in live: ('case', 'C-3')",
                                 "only in rebuilt: ('need', 'N-1')"]


# --- every service, both paths -------------------------------------------------------------------
# Tests of each service that make logs with many kinds of event (runs, returns, recoveries, notices,
# needs, discovery, the statutory procedure, upcasts of old rows).
# (All of tests/unit/services run so gave 0 differences over 7,234 events of 329 applications.)
CROSSCHECKED = [
    "tests/unit/services/test_applications.py",
    "tests/unit/services/test_payment_runs.py",
    "tests/unit/services/test_notify_board.py",
    "tests/unit/services/test_charity_federation.py",
    "tests/unit/services/test_discovery.py",
]


def test_every_services_read_models_are_rebuilt_the_same_by_both_paths():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.unit.replay_crosscheck",
                        "-p", "no:cacheprovider", *CROSSCHECKED],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    summary = re.search(r"replay crosscheck: (\d+) applications, (\d+) events, (\d+) documents, "
                        r"(\d+) differences between the two paths; services: (.*)", r.stdout)
    assert r.returncode == 0 and summary, r.stdout[-5000:] + r.stderr[-2000:]
    apps, events, documents, differences = map(int, summary.groups()[:4])
    assert apps >= 100 and events >= 2000 and documents >= 1000 and differences == 0
    assert summary.group(5).split(", ") == ["charity", "intake", "notify", "payment", "verification"]


# --- lifeline replay ---------------------------------------------------------------------------------
def test_lifeline_replay_shows_its_bar_and_rate_and_names_a_changed_document(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIFELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LIFELINE_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = Settings.from_env()
    app = PAYMENT.application(settings)
    approve(app, 5)
    events = app.recorder.max_notification_id()
    app.close()

    assert cli.main(["replay", "payment"]) == 0
    out, err = capsys.readouterr()
    assert f"payment: replayed {events} events (" in out and "events/s) into" in out
    assert out.rstrip().endswith("identical to live read models")
    assert f"payment: replaying [{'#' * 30}] {events:,}/{events:,} events" in err and "events/s in" in err

    live = SideStore(settings, "payment")
    with live.transaction() as tx:
        key = next(key for kind, key, _, _ in tx.all("entitlement"))
        tx.put("entitlement", key, {**tx.get("entitlement", key), "monthly_amount_fen": 1})
    live.close()
    assert cli.main(["replay", "payment"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT from live" in out and f"  differs: ('entitlement', '{key}')" in out


def test_a_replay_through_the_library_path_and_the_fast_one_agree_on_an_encrypted_file_store(tmp_path):
    app = PaymentApplication(encrypted_env(tmp_path / "events.sqlite"), sealer=SEALER)
    approve(app, 7)
    by_mapper = rebuild(app, payment_project, fast=False)
    seen: list[int] = []
    by_reader = rebuild(app, payment_project, seen.append, batch_size=4)  # read by a process of its own
    assert compare(by_mapper, by_reader) == [] and by_reader.count() == by_mapper.count() > 7
    events = app.recorder.max_notification_id()
    assert seen == [*range(4, events, 4), events]
    app.close()
