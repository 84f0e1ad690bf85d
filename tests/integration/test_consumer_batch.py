"""A fetched batch handled at once ends as the same messages handled one at a time: the same
outcomes, the same stored events (each recording the moment its cause was handled), the same
tracking records and the same dead letters (read back from the broker). On a real broker and
store, notify's real handlers: a batch with duplicates (of the store and of itself), poison in the
middle, two events of one aggregate (the second must see the first's effects), a handler that
fails once and one that always fails; and a clean batch is one transaction found by one query."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import pytest_asyncio

import lifeline.stores.application as application_module
from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.signing import KeyDirectory, Verifier, services_publishing
from lifeline.domain.clock import FixedClock
from lifeline.messaging.consumer import EventConsumer
from lifeline.messaging.kafka import Bus
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import Settings
from lifeline.stores import chain
from lifeline.stores.eventstore import event_store_env
from services.notify.application import NotifyApplication
from services.notify.consumers import HANDLERS
from tests.integration.test_consumer_triage import dead_letter_reasons
from tests.unit.contract_examples import example

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
_sequence = itertools.count(1)


@dataclass
class Record:
    """What the consumer reads of a fetched record."""

    topic: str
    value: bytes
    key: bytes
    partition: int
    offset: int


class Flaky:
    """A handler that fails its first `failures` calls (a store or a service away for a moment),
    then does what notify's own handler does."""

    def __init__(self, name: str, failures: int):
        self.real, self.left = HANDLERS[name], failures

    def __call__(self, app, event, pe):
        if self.left:
            self.left -= 1
            raise RuntimeError("not now")
        self.real(app, event, pe)


class Side:
    """One notify: its own namespace (topics, schemas) and store, the shared keys."""

    def __init__(self, consumer: EventConsumer, settings: Settings):
        self.consumer, self.app, self.settings = consumer, consumer.app, settings
        self.offsets = itertools.count()


def records(side: Side, values: list[bytes]) -> list[Record]:
    """The values as records fetched from the side's intake topic, one partition."""
    topic = side.consumer.bus.topic(T.TOPICS["intake"])
    return [Record(topic, v, b"k", 0, next(side.offsets)) for v in values]


async def side(infra, namespace: str, data_dir: Path, keys: Path) -> Side:
    settings = Settings.from_env(infra.env(namespace, data_dir))
    app = NotifyApplication(env=event_store_env(settings, "notify"), clock=FixedClock(NOW))
    # The same handlers, two of them failing: MaterialsRequested once, BenefitRefused always.
    app.handlers = {**HANDLERS, "MaterialsRequested": Flaky("MaterialsRequested", 1),
                    "BenefitRefused": Flaky("BenefitRefused", 10**6)}
    bus = Bus(settings, client_id="batch-test")
    await bus.start()
    await bus.ensure_topics([T.TOPICS["intake"], T.dlq_topic(T.TOPICS["intake"], "notify")])
    consumer = EventConsumer(app, bus, [T.TOPICS["intake"]], "notify", verifier=Verifier(KeyDirectory(keys)),
                             max_attempts=2, retry_delay=0)
    return Side(consumer, settings)


@pytest_asyncio.fixture(loop_scope="function")
async def sides(infra, namespace, tmp_data_dir):
    """(one at a time, batches): two notifys fed the same bytes."""
    keys = tmp_data_dir / "keys"
    made = [await side(infra, namespace, tmp_data_dir / "single", keys),
            await side(infra, namespace.rstrip(".") + "b.", tmp_data_dir / "batch", keys)]
    try:
        yield made
    finally:
        for s in made:
            await s.consumer.bus.stop()
            s.app.close()


class Messages:
    """Signed events as their sources publish them."""

    def __init__(self, keys: Path):
        self.keys = KeyDirectory(keys)

    def event(self, name: str, case_id: str, **data) -> bytes:
        source = "lifeline/" + sorted(services_publishing(name))[-1]
        event = registry.new_event(name, example(name, case_id=case_id, **data), subject=case_id, source=source,
                                   sequence=next(_sequence), actor=example_actor())
        return json.dumps(self.keys.signer(source, generate=True).sign(event.to_dict())).encode()



def example_actor() -> dict:
    return {"user_id": "clerk-001", "role": "clerk", "org_code": "320583101"}


def stored(app: NotifyApplication) -> list[tuple]:
    """Every stored event in log order, as its topic, aggregate, version and state (all but the
    stored timestamp, which is the host's clock)."""
    out = []
    for n in app.recorder.select_notifications(1, 100_000):
        e = app.mapper.to_domain_event(n)
        out.append((n.topic, n.originator_id, n.originator_version,
                    {k: v for k, v in e.__dict__.items() if k != "timestamp"}))
    return out


def tracked(app: NotifyApplication) -> set[tuple[str, int]]:
    rec = app.recorder
    if hasattr(rec.datastore, "schema"):  # PostgreSQL
        from psycopg.sql import SQL, Identifier

        with rec.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT application_name, notification_id FROM {0}.{1}").format(
                Identifier(rec.datastore.schema), Identifier(rec.tracking_table_name)))
            rows = [(r["application_name"], r["notification_id"]) for r in curs.fetchall()]
    else:
        with rec.datastore.transaction(commit=False) as c:
            c.execute("SELECT application_name, notification_id FROM tracking")
            rows = [(r[0], r[1]) for r in c.fetchall()]
    return {row for row in rows if not row[0].startswith("__")}  # not the library's migration row


def identity(value: bytes) -> tuple[str, int]:
    obj = json.loads(value)
    return obj["source"], obj["sequence"]


async def test_a_batch_ends_as_one_message_at_a_time(sides, tmp_data_dir):
    single, batch = sides
    m = Messages(tmp_data_dir / "keys")
    accepted_b = m.event("ApplicationAccepted", "C-B")
    unsigned = json.loads(m.event("ApplicationAccepted", "C-C"))
    del unsigned["signature"]
    first = [
        m.event("ApplicationSubmitted", "C-A"),      # remembers C-A's mobile number (a Contact)
        m.event("ApplicationAccepted", "C-A"),       # its notice goes by SMS too: reads that Contact
        b"\x00 not json",
        accepted_b,
        m.event("DeadlineSet", "C-D", deadline_id="C-D/household_survey"),
        json.dumps(unsigned).encode(),
        m.event("MaterialsRequested", "C-B"),        # its handler fails once
        m.event("DeadlineCleared", "C-D", deadline_id="C-D/household_survey"),  # the Deadline set above
        accepted_b,                                  # the same event twice in one fetch
        m.event("BenefitRefused", "C-E"),            # its handler always fails: dead-lettered
        m.event("ApplicationAccepted", "C-F"),
    ]
    # Redelivered (a crash before the offsets were committed), with a new event among them.
    second = [*first[:5], m.event("ApplicationAccepted", "C-G"), *first[5:]]

    singles = [[await single.consumer.handle(r.topic, r.value, r.key, r.partition, r.offset)
                for r in records(single, values)] for values in (first, second)]
    batches = [await batch.consumer.handle_batch(records(batch, values)) for values in (first, second)]

    assert batches == singles
    assert batches[0] == ["processed", "processed", "dead_lettered", "processed", "processed", "dead_lettered",
                          "processed", "processed", "duplicate", "dead_lettered", "processed"]
    assert batches[1] == ["duplicate", "duplicate", "dead_lettered", "duplicate", "duplicate", "processed",
                          "dead_lettered", "duplicate", "duplicate", "duplicate", "dead_lettered", "duplicate"]
    # The same effects in the same order, each stamped with its cause's moment.
    assert stored(batch.app) == stored(single.app)
    # C-A's acceptance saw the Contact the event before it in the same fetch made.
    channels = [s[3]["channel"] for s in stored(batch.app) if s[0].endswith(":Delivery.Scheduled")
                and s[3].get("case_id") == "C-A"]
    assert sorted(channels) == ["in_app", "letter", "sms"]
    # Tracked: exactly the events processed.
    processed = {identity(v) for values, outcomes in zip((first, second), batches)
                 for v, o in zip(values, outcomes) if o == "processed"}
    assert tracked(batch.app) == tracked(single.app) == processed
    assert chain.verify(batch.app).ok
    # The same dead letters, with the same reasons, in the same order.
    reasons = [await dead_letter_reasons(s.consumer, 6) for s in (single, batch)]
    assert reasons[0] == reasons[1]
    assert reasons[1][:3] == reasons[1][3:] == ["contract: not JSON: JSONDecodeError",
                              "signature: missing (the keyid and signature attributes)",
                              "handler failed after 2 attempts: RuntimeError('not now')"]


async def test_a_clean_batch_is_one_query_and_one_transaction(sides, tmp_data_dir, monkeypatch):
    _, batch = sides
    m = Messages(tmp_data_dir / "keys")
    old = [m.event("ApplicationAccepted", f"C-OLD{i}") for i in range(10)]
    assert await batch.consumer.handle_batch(records(batch, old)) == ["processed"] * 10
    new = [m.event("ApplicationAccepted", f"C-NEW{i}") for i in range(20)]
    mixed = [v for pair in itertools.zip_longest(new, old) for v in pair if v is not None]

    queries, transactions = [], []
    real_query, real_insert = application_module.tracked_among, batch.app.recorder.insert_events_tracked
    monkeypatch.setattr(application_module, "tracked_among",
                        lambda rec, keys: queries.append(len(keys)) or real_query(rec, keys))
    monkeypatch.setattr(batch.app.recorder, "insert_events_tracked",
                        lambda events, trackings: transactions.append(len(trackings)) or real_insert(events, trackings))
    outcomes = await batch.consumer.handle_batch(records(batch, mixed))
    assert outcomes == ["processed" if v in new else "duplicate" for v in mixed]
    assert queries == [30]         # which were processed already: one query
    assert transactions == [20]    # the new ones' effects and tracking records: one transaction
    assert tracked(batch.app) == {identity(v) for v in old + new}
    # A notice and its deliveries per new acceptance, besides the old ones'.
    assert sum(1 for s in stored(batch.app) if s[0].endswith(":Notice.Issued")) == 30
    assert sum(1 for s in stored(batch.app) if s[0].endswith(":Delivery.Scheduled")) == 60


async def test_a_batch_overtaken_by_a_replica_saves_nothing_and_goes_one_at_a_time(sides, tmp_data_dir,
                                                                                   monkeypatch):
    _, batch = sides
    m = Messages(tmp_data_dir / "keys")
    values = [m.event("ApplicationAccepted", f"C-R{i}") for i in range(5)]
    # Another replica of notify, on the same store, processes one of them first...
    replica = NotifyApplication(env=event_store_env(batch.settings, "notify"), clock=FixedClock(NOW))
    try:
        assert replica.process_cloud_event(registry.decode(values[2])) is True
    finally:
        replica.close()
    # ...after this batch looked (the lookup raced it): its transaction fails whole. Only the
    # batch's lookup (of all five) is raced; one event's own check (has_exact_tracking) reads.
    real_query = application_module.tracked_among
    monkeypatch.setattr(application_module, "tracked_among",
                        lambda rec, keys: set() if len(keys) == len(values) else real_query(rec, keys))
    before = len(stored(batch.app))
    assert batch.app.process_batch([registry.decode(v) for v in values]) == []
    assert len(stored(batch.app)) == before
    # The consumer then goes one at a time: the replica's event is a duplicate, the rest processed.
    outcomes = await batch.consumer.handle_batch(records(batch, values))
    assert outcomes == ["processed", "processed", "duplicate", "processed", "processed"]
    assert tracked(batch.app) == {identity(v) for v in values}
    assert sum(1 for s in stored(batch.app) if s[0].endswith(":Notice.Issued")) == 5


async def test_the_consumer_commits_an_offset_only_after_its_batch_is_stored(sides, tmp_data_dir):
    _, batch = sides
    m = Messages(tmp_data_dir / "keys")
    cases = [f"C-K{i}" for i in range(24)]
    values = [m.event("ApplicationAccepted", c) for c in cases]
    values[5] = b"\x00 not json"
    stream = [*values, *values[:8]]  # the first eight again: duplicates
    for value, case in zip(stream, itertools.cycle(cases)):
        await (await batch.consumer.bus.send(T.TOPICS["intake"], value, case))

    consumer = batch.consumer
    await consumer.start()
    fetched: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value, as fetched
    seen: dict[tuple[int, int], str] = {}  # (partition, offset) -> outcome
    real_getmany, real_batch, real_commit = consumer.consumer.getmany, consumer.handle_batch, consumer.consumer.commit
    early: list[tuple] = []

    async def getmany(*args, **kwargs):
        batches = await real_getmany(*args, **kwargs)
        fetched.update({(r.partition, r.offset): r.value for records in batches.values() for r in records})
        return batches

    async def handle_batch(messages, verdicts=None):
        outcomes = await real_batch(messages, verdicts)
        seen.update({(r.partition, r.offset): o for r, o in zip(messages, outcomes)})
        return outcomes

    async def commit(offsets):
        # Every event below a committed offset is stored with its tracking record already.
        now = tracked(batch.app)
        for tp, upto in offsets.items():
            early.extend(key for key, value in fetched.items() if key[0] == tp.partition and key[1] < upto
                         and value != b"\x00 not json" and identity(value) not in now)
        return await real_commit(offsets)

    consumer.consumer.getmany, consumer.handle_batch, consumer.consumer.commit = getmany, handle_batch, commit
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(seen) < len(stream) and loop.time() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
    outcomes = sorted(seen.values())
    assert outcomes == sorted(["processed"] * 23 + ["dead_lettered"] * 2 + ["duplicate"] * 7)
    assert early == []  # no offset committed ahead of its batch's effects
    assert tracked(batch.app) == {identity(v) for v in values if v != b"\x00 not json"}
