"""The hash-chained log (SPEC §5, lifeline/stores/chain.py): stored rows edited directly in the
service's own store — SQLite on the embedded backend, PostgreSQL on the real one — are each
detected and named by `verify` / `lifeline audit verify`: one byte changed, a row deleted, two
rows swapped, the last row removed (the last one also with its chain record, which only what
was published can reveal: the LogSealed heads and the positions on Kafka)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import pytest

from lifeline.domain.clock import FixedClock
from lifeline.messaging.kafka import Bus
from lifeline.messaging.outbox import OutboxRelay
from lifeline.runtime.service import signer_for
from lifeline.settings import Settings
from lifeline.stores import chain
from lifeline.stores.application import Bulk
from lifeline.stores.eventstore import schema_name
from lifeline.stores.sidestore import SideStore
from services.intake.bootstrap import SPEC as INTAKE
from services.payment.bootstrap import SPEC as PAYMENT
from services.payment.domain import Payment
from tests.unit.services import CLERK, application_body, pid
from tests.unit.services.test_payment_runs import _instruction

pytestmark = pytest.mark.integration

NOW = "2026-11-25T09:00:00+08:00"


class Store:
    """A service's event store, its rows edited directly (the SQLite file or the PostgreSQL schema)."""

    def __init__(self, settings: Settings, service: str, app):
        self.settings, self.service, self.app = settings, service, app
        rec = app.recorder
        self.pg = bool(settings.database_url)
        if self.pg:
            schema = schema_name(settings, service)
            self.events = f'"{schema}"."{rec.events_table_name}"'
            self.chain = f'"{schema}"."{rec.chain_table_name}"'
            self.n = "notification_id"
        else:
            self.events, self.chain, self.n = rec.events_table_name, rec.chain_table_name, "rowid"

    def sql(self, statement: str, *params) -> list[tuple]:
        if self.pg:
            import psycopg

            with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                cur = conn.execute(statement.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        with sqlite3.connect(self.settings.data_dir / f"{self.service}.events.sqlite") as db:
            return db.execute(statement, params).fetchall()

    def last(self) -> int:
        return self.sql(f"SELECT MAX({self.n}) FROM {self.events}")[0][0]

    def change_byte(self, n: int) -> None:
        [(state,)] = self.sql(f"SELECT state FROM {self.events} WHERE {self.n} = ?", n)
        state = bytearray(state)
        state[len(state) // 2] ^= 0x01
        self.sql(f"UPDATE {self.events} SET state = ? WHERE {self.n} = ?", bytes(state), n)

    def delete(self, n: int, with_chain: bool = False) -> None:
        self.sql(f"DELETE FROM {self.events} WHERE {self.n} = ?", n)
        if with_chain:
            self.sql(f"DELETE FROM {self.chain} WHERE notification_id = ?", n)

    def swap(self, a: int, b: int) -> None:
        self.sql(f"UPDATE {self.events} SET {self.n} = -1 WHERE {self.n} = ?", a)
        self.sql(f"UPDATE {self.events} SET {self.n} = ? WHERE {self.n} = ?", a, b)
        self.sql(f"UPDATE {self.events} SET {self.n} = ? WHERE {self.n} = -1", b)

    def take(self, n: int) -> tuple[list[tuple], list[tuple]]:
        """Remove event n and its chain record; what `put_back` restores."""
        cols = f"{self.n}, originator_id, originator_version, topic, state"
        event = self.sql(f"SELECT {cols} FROM {self.events} WHERE {self.n} = ?", n)
        record = self.sql(f"SELECT * FROM {self.chain} WHERE notification_id = ?", n)
        self.delete(n, with_chain=True)
        return event, record

    def put_back(self, taken: tuple[list[tuple], list[tuple]]) -> None:
        event, record = taken
        for row in event:
            self.sql(f"INSERT INTO {self.events} ({self.n}, originator_id, originator_version, topic, state) "
                     "VALUES (?, ?, ?, ?, ?)", *row)
        for row in record:
            self.sql(f"INSERT INTO {self.chain} VALUES (?, ?, ?, ?, ?)", *row)

    def rechain(self) -> None:
        """What someone who edited events and wants the chain to agree would do: recompute it."""
        prev = chain.GENESIS
        for n, oid, version, topic, state in self.app.recorder.iter_rows(self.last()):
            h = chain.link(prev, n, oid, version, topic, state)
            self.sql(f"UPDATE {self.chain} SET prev_hash = ?, hash = ? WHERE notification_id = ?", prev, h, n)
            prev = h


@pytest.fixture
def env(infra, namespace, tmp_data_dir) -> dict[str, str]:
    return infra.env(namespace, tmp_data_dir)


@pytest.fixture
def settings(env) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
def intake(settings):
    """Intake's store with six cases (three events each) and a seal after them."""
    app = INTAKE.application(settings, FixedClock(NOW))
    for i in range(6):
        app.submit_application(application_body([pid(150 + i)]), CLERK)
    assert chain.seal(app) is not None
    yield Store(settings, "intake", app)
    app.close()


def first(report: chain.Report) -> chain.Problem:
    assert not report.ok
    return report.first


def event_at(store: Store, n: int) -> tuple:
    [row] = [(e.originator_id, e.originator_version) for e in chain.read_chain(store.app) if e.notification_id == n]
    return row


def publish(settings: Settings, app) -> int:
    """What the service's outbox relay does: its log on its Kafka topic."""
    async def run() -> int:
        side = SideStore(settings, app.service)
        bus = Bus(settings, client_id="test-chain")
        await bus.start()
        try:
            relay, moved = OutboxRelay(app, side, bus, signer_for(settings, f"lifeline/{app.service}")), 0
            while step := await relay.publish_pending():
                moved += step
            return moved
        finally:
            await bus.stop()
            side.close()
    return asyncio.run(run())


def test_an_intact_log_verifies_and_every_event_is_chained(intake):
    report = chain.verify(intake.app, chain.store_evidence(intake.app))
    assert report.ok, report.problems
    assert report.events == report.chained == intake.last() >= 20
    assert report.seals_matched == 1 and report.rate > 0
    assert all(e.hash is not None for e in chain.read_chain(intake.app))


def test_one_byte_changed_is_named(intake):
    who = event_at(intake, 7)
    intake.change_byte(7)
    p = first(chain.verify(intake.app))
    assert (p.what, p.notification_id, (p.originator_id, p.originator_version)) == (chain.CHANGED, 7, who)
    assert "intake: notification 7 (originator " in p.line()


def test_a_deleted_row_is_named(intake):
    who = event_at(intake, 5)
    intake.delete(5)
    report = chain.verify(intake.app)
    p = first(report)
    assert (p.what, p.notification_id, (p.originator_id, p.originator_version)) == (chain.MISSING, 5, who)
    assert len(report.problems) == 1  # the events after it still verify


def test_a_row_deleted_with_its_chain_record_breaks_the_chain_there(intake):
    intake.delete(5, with_chain=True)
    p = first(chain.verify(intake.app))
    assert (p.what, p.notification_id) == (chain.CHAIN_BROKEN, 6)


def test_two_swapped_rows_are_named(intake):
    a, b = event_at(intake, 4), event_at(intake, 9)
    intake.swap(4, 9)
    report = chain.verify(intake.app)
    p = first(report)
    assert (p.what, p.notification_id, (p.originator_id, p.originator_version)) == (chain.OUT_OF_ORDER, 4, a)
    assert "now at notification 9" in p.detail
    assert [(q.what, q.notification_id, (q.originator_id, q.originator_version)) for q in report.problems] == [
        (chain.OUT_OF_ORDER, 4, a), (chain.OUT_OF_ORDER, 9, b)]


def test_the_last_row_removed_is_named(intake):
    last = intake.last()
    who = event_at(intake, last)
    intake.delete(last)
    p = first(chain.verify(intake.app))
    assert (p.what, p.notification_id, (p.originator_id, p.originator_version)) == (chain.TAIL_REMOVED, last, who)


def test_the_last_rows_removed_with_their_chain_records_are_caught_by_what_was_published(env, settings, intake):
    """The store cut short cleanly (events and chain records) still verifies on its own; what
    was published does not agree: the seal's own position and head are no longer there."""
    assert publish(settings, intake.app) == intake.last()
    last = intake.last()  # the seal; before it its LogSeal's opening, before that the head it covers
    for n in (last, last - 1, last - 2):
        intake.delete(n, with_chain=True)
    assert chain.verify(intake.app).ok  # the chain alone cannot tell
    evidence = chain.evidence_for(settings, intake.app, "intake")
    assert evidence.source == "kafka" and evidence.last_published == last and len(evidence.seals) == 1
    report = chain.verify(intake.app, evidence)
    p = first(report)
    assert (p.what, p.notification_id) == (chain.TAIL_REMOVED, last - 2)  # the sealed head is gone
    assert {q.what for q in report.problems} == {chain.TAIL_REMOVED}
    assert f"published from notification {last}" in report.problems[-1].detail

    # The command names it too, with a non-zero exit status.
    done = subprocess.run([sys.executable, "-m", "lifeline.cli", "audit", "verify", "intake"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"notification {last - 2}" in done.stdout and "last event(s) removed" in done.stdout
    assert "events/s" in done.stdout and "from Kafka" in done.stdout


def test_a_log_changed_and_rechained_is_caught_by_its_published_seal(settings, intake):
    publish(settings, intake.app)
    intake.change_byte(3)
    intake.rechain()
    assert chain.verify(intake.app).ok  # consistent with itself
    report = chain.verify(intake.app, chain.evidence_for(settings, intake.app, "intake"))
    p = first(report)
    sealed = report.evidence.seals[0].notification_id
    assert (p.what, p.notification_id) == (chain.REWRITTEN, sealed)
    assert "changed and the chain recomputed" in p.detail


def test_bulk_saved_events_are_chained_in_their_transaction(settings):
    """The payment run's path: thousands of events in one executemany (SQLite) or COPY."""
    app = PAYMENT.application(settings, FixedClock(NOW))
    try:
        from datetime import datetime

        states = [_instruction(i) for i in range(2500)]
        items = [(Payment.create_id(s["payment_id"]), s) for s in states]
        app.save_unit([], Bulk(Payment.Instructed, datetime.fromisoformat(NOW), items))
        store = Store(settings, "payment", app)
        report = chain.verify(app)
        assert report.ok and report.chained == report.events == 2500, report.problems
        store.change_byte(1234)
        p = first(chain.verify(app))
        assert (p.what, p.notification_id, p.originator_id) == (chain.CHANGED, 1234, items[1233][0])
    finally:
        app.close()
