"""Notify's deadline watch (SPEC §4 "Deadline watch"): DeadlineSet / DeadlineCleared kept as
`Deadline` aggregates, a scan that warns once at warn_at and escalates (督办) once at due_at to
the office above the responsible one, exactly once per deadline across repeated scans,
restarts and two notify instances sharing one store; and `GET /v1/deadlines`.

The scan reads its candidates from the read model (`deadlines_to_watch`) and the time from
the application's FixedClock, as the worker does with the runtime's clock.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from lifeline.contracts import registry
from lifeline.domain.clock import FixedClock
from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.rules import clocks
from lifeline.rules.periods import SHANGHAI
from lifeline.runtime.service import ServiceRuntime
from lifeline.settings import Settings
from lifeline.stores.projection import Projection, compare, rebuild
from lifeline.stores.sidestore import SideStore
from services.notify.application import NotifyApplication, deadlines_to_watch, project
from services.notify.bootstrap import SPEC
from services.notify.deadlines import deadline_watch
from services.notify.domain import Deadline, escalation_of
from services.notify.outbound import OUTBOUND

from . import MEMORY_ENV, TOWNSHIP, VILLAGE, cloud, new_case_id, stored

ACCEPTED = datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)  # a Tuesday
# household_survey, 3 working days from Tuesday 2026-11-24: due by the end of Friday 11-27.
WARN_AT = "2026-11-27T00:00:00+08:00"
DUE_AT = "2026-11-28T00:00:00+08:00"
BEFORE = "2026-11-26T12:00:00+08:00"


def set_data(case_id: str, clock: str = "household_survey", *, office: str = TOWNSHIP,
             region_code: str = VILLAGE, start: datetime = ACCEPTED, suffix: str = "") -> dict:
    """A DeadlineSet as verification publishes it, counted by lifeline.rules.clocks."""
    due = clocks.clock_due(clock, start)
    return {
        "deadline_id": f"{case_id}/{clock}{suffix}", "case_id": case_id, "clock": clock,
        "label_zh": clocks.CLOCKS[clock].label_zh, "region_code": region_code,
        "responsible_office": office, "start_date": due.start_date.isoformat(),
        "due_date": due.due_date.isoformat(), "due_at": due.due_at.isoformat(),
        "warn_at": due.warn_at.isoformat(), "period": due.period,
        "calendar_known": due.calendar_known, "warnings": list(due.warnings),
        "set_at": start.isoformat(),
    }


def deadline_set(data: dict, source: str = "lifeline/verification"):
    return cloud("DeadlineSet", data, subject=data["case_id"], source=source)


def deadline_cleared(data: dict, outcome: str = "met", at: str = BEFORE):
    return cloud("DeadlineCleared", {
        "deadline_id": data["deadline_id"], "case_id": data["case_id"], "clock": data["clock"],
        "outcome": outcome, "cleared_at": at,
    }, subject=data["case_id"], source="lifeline/verification")


class Watch:
    """A notify application, its read model and its scan, as one process of notify has them."""

    def __init__(self, env: dict[str, str] | None = None, clock: FixedClock | None = None):
        self.clock = clock or FixedClock(BEFORE)
        self.app = NotifyApplication(dict(env or MEMORY_ENV), clock=self.clock)
        self.side = SideStore.in_memory()
        self.projection = Projection(self.app, self.side, project)

    def scan(self) -> dict[str, str]:
        self.projection.catch_up()
        with self.side.transaction() as tx:
            candidates = deadlines_to_watch(tx)
        return self.app.watch_deadlines(candidates, self.clock.now())

    def doc(self, deadline_id: str) -> dict:
        self.projection.catch_up()
        with self.side.transaction() as tx:
            return tx.get("deadline", deadline_id)

    def close(self) -> None:
        self.side.close()
        self.app.close()


@pytest.fixture
def watch():
    w = Watch()
    yield w
    w.close()


def warnings_of(app) -> list:
    return stored(app, Deadline.Warned)


def breaches_of(app) -> list:
    return stored(app, Deadline.Breached)


def wire(event) -> dict:
    out = OUTBOUND(event)
    registry.validate_data(out.name, out.data)
    return out


# === warning and breach ============================================================================
def test_a_warning_once_at_warn_at(watch):
    data = set_data(new_case_id())
    assert watch.app.process_cloud_event(deadline_set(data)) is True
    assert watch.scan() == {}
    assert watch.doc(data["deadline_id"])["state"] == "open"

    watch.clock.set("2026-11-26T23:59:59+08:00")
    assert watch.scan() == {}
    watch.clock.set(WARN_AT)
    assert watch.scan() == {data["deadline_id"]: "warned"}
    assert watch.scan() == {}  # a scan repeated
    watch.clock.set("2026-11-27T18:00:00+08:00")
    assert watch.scan() == {}

    (warned,) = warnings_of(watch.app)
    out = wire(warned)
    assert (out.name, out.subject) == ("DeadlineWarning", data["case_id"])
    assert out.data == {
        "deadline_id": data["deadline_id"], "case_id": data["case_id"], "clock": "household_survey",
        "label_zh": "入户调查", "region_code": VILLAGE, "responsible_office": TOWNSHIP,
        "due_date": "2026-11-27", "due_at": DUE_AT, "warned_at": WARN_AT,
    }
    doc = watch.doc(data["deadline_id"])
    assert (doc["state"], doc["warned_at"], doc["escalated_to"]) == ("warned", WARN_AT, None)
    assert breaches_of(watch.app) == []


def test_a_breach_once_at_due_at_escalated_from_the_township_to_its_county(watch):
    data = set_data(new_case_id())
    watch.app.process_cloud_event(deadline_set(data))
    watch.clock.set(WARN_AT)
    watch.scan()
    watch.clock.set("2026-11-27T23:59:59+08:00")
    assert watch.scan() == {}
    watch.clock.set(DUE_AT)
    assert watch.scan() == {data["deadline_id"]: "breached"}
    for later in (DUE_AT, "2026-11-30T09:00:00+08:00", "2027-01-01T00:00:00+08:00"):
        watch.clock.set(later)
        assert watch.scan() == {}

    (breached,) = breaches_of(watch.app)
    out = wire(breached)
    assert (out.name, out.subject) == ("DeadlineBreached", data["case_id"])
    assert out.data["escalated_to"] == {"office": "370502", "level": "county"}
    assert out.data["breached_at"] == DUE_AT and out.data["responsible_office"] == TOWNSHIP
    assert len(warnings_of(watch.app)) == 1
    # The chain of causes goes on from the DeadlineSet.
    (opened,) = stored(watch.app, Deadline.Opened)
    assert breached.meta["correlation_id"] == opened.meta["correlation_id"]
    assert breached.meta["role"] == "system"
    doc = watch.doc(data["deadline_id"])
    assert (doc["state"], doc["escalated_to"]) == ("breached", {"office": "370502", "level": "county"})


def test_a_county_deadline_is_escalated_to_its_prefecture(watch):
    data = set_data(new_case_id(), "referral", office="370502")
    watch.app.process_cloud_event(deadline_set(data))
    watch.clock.set("2027-06-01T00:00:00+08:00")
    watch.scan()
    (breached,) = breaches_of(watch.app)
    assert breached.escalated_to == {"office": "370500", "level": "prefecture"}
    wire(breached)


@pytest.mark.parametrize(("office", "above"), [
    ("370502101", {"office": "370502", "level": "county"}),
    ("370502", {"office": "370500", "level": "prefecture"}),
    ("370500", {"office": "370000", "level": "province"}),
    ("150223", {"office": "150200", "level": "prefecture"}),
])
def test_escalation_goes_to_the_office_above(office, above):
    assert escalation_of(office) == above


def test_a_deadline_already_past_due_when_first_scanned_is_breached_without_a_warning(watch):
    data = set_data(new_case_id())
    watch.app.process_cloud_event(deadline_set(data))
    watch.clock.set("2026-12-01T10:00:00+08:00")  # the watch was down over the whole warning
    assert watch.scan() == {data["deadline_id"]: "breached"}
    assert watch.scan() == {}
    assert warnings_of(watch.app) == []
    assert len(breaches_of(watch.app)) == 1


def test_a_repeated_deadline_set_has_no_effect(watch):
    data = set_data(new_case_id())
    assert watch.app.process_cloud_event(deadline_set(data)) is True
    # The same deadline again, in another message (e.g. republished), even with other times.
    moved = {**data, "due_at": "2027-01-01T00:00:00+08:00", "warn_at": "2026-12-31T00:00:00+08:00"}
    assert watch.app.process_cloud_event(deadline_set(moved)) is True
    assert watch.app.process_cloud_event(deadline_set(data, source="lifeline/intake")) is True
    assert len(stored(watch.app, Deadline.Opened)) == 1
    watch.clock.set(DUE_AT)
    assert watch.scan() == {data["deadline_id"]: "breached"}  # by the first one's times


def test_cleared_deadlines_are_never_warned_or_breached(watch):
    met, cancelled = set_data(new_case_id()), set_data(new_case_id())
    for data in (met, cancelled):
        watch.app.process_cloud_event(deadline_set(data))
    watch.app.process_cloud_event(deadline_cleared(met, "met"))
    watch.app.process_cloud_event(deadline_cleared(cancelled, "cancelled"))
    for moment in (WARN_AT, DUE_AT, "2027-01-01T00:00:00+08:00"):
        watch.clock.set(moment)
        assert watch.scan() == {}
    assert warnings_of(watch.app) == [] and breaches_of(watch.app) == []
    assert (watch.doc(met["deadline_id"])["state"], watch.doc(met["deadline_id"])["outcome"]) == ("cleared", "met")
    assert watch.doc(cancelled["deadline_id"])["outcome"] == "cancelled"
    with watch.side.transaction() as tx:
        assert deadlines_to_watch(tx) == []


def test_a_warned_deadline_cleared_in_time_is_not_breached(watch):
    data = set_data(new_case_id())
    watch.app.process_cloud_event(deadline_set(data))
    watch.clock.set(WARN_AT)
    watch.scan()
    watch.app.process_cloud_event(deadline_cleared(data, "met", "2026-11-27T16:00:00+08:00"))
    watch.clock.set(DUE_AT)
    assert watch.scan() == {}
    assert len(warnings_of(watch.app)) == 1 and breaches_of(watch.app) == []


def test_a_breached_deadline_cleared_late_keeps_its_escalation(watch):
    data = set_data(new_case_id())
    watch.app.process_cloud_event(deadline_set(data))
    watch.clock.set(DUE_AT)
    watch.scan()
    assert watch.app.process_cloud_event(deadline_cleared(data, "late", "2026-11-30T10:00:00+08:00"))
    assert watch.app.process_cloud_event(deadline_cleared(data, "late", "2026-11-30T11:00:00+08:00"))
    assert len(stored(watch.app, Deadline.Cleared)) == 1
    doc = watch.doc(data["deadline_id"])
    assert (doc["state"], doc["outcome"], doc["cleared_at"]) == ("cleared", "late", "2026-11-30T10:00:00+08:00")
    assert doc["escalated_to"] == {"office": "370502", "level": "county"}


def test_a_cleared_event_for_an_unknown_deadline_is_ignored(watch):
    data = set_data(new_case_id())
    assert watch.app.process_cloud_event(deadline_cleared(data, "met")) is True
    assert stored(watch.app) == []


def test_a_rebuilt_read_model_equals_the_live_one(watch):
    warned, breached, cleared = (set_data(new_case_id()) for _ in range(3))
    late = set_data(new_case_id(), "whole_procedure")
    for data in (warned, breached, cleared, late):
        watch.app.process_cloud_event(deadline_set(data))
    watch.app.process_cloud_event(deadline_cleared(cleared))
    watch.clock.set(WARN_AT)
    watch.scan()
    watch.app.process_cloud_event(deadline_cleared(warned, "met", WARN_AT))
    watch.clock.set(DUE_AT)
    watch.scan()
    watch.projection.catch_up()
    assert compare(watch.side, rebuild(watch.app, project)) == []
    states = {d["deadline_id"]: d["state"] for d in (watch.doc(x["deadline_id"]) for x in (warned, breached, cleared, late))}
    assert states == {warned["deadline_id"]: "cleared", breached["deadline_id"]: "breached",
                      cleared["deadline_id"]: "cleared", late["deadline_id"]: "open"}


# === exactly once across instances ====================================================================
def shared_env(tmp_path) -> dict[str, str]:
    return {**MEMORY_ENV, "SQLITE_DBNAME": str(tmp_path / "notify.events.sqlite"), "SQLITE_LOCK_TIMEOUT": "30"}


def test_two_instances_sharing_one_store_warn_and_breach_once(tmp_path):
    clock = FixedClock(BEFORE)
    one, two = Watch(shared_env(tmp_path), clock), Watch(shared_env(tmp_path), clock)
    try:
        ids = []
        for _ in range(5):
            data = set_data(new_case_id())
            ids.append(data["deadline_id"])
            event = deadline_set(data)
            assert one.app.process_cloud_event(event) is True
            # The other replica gets the same message (a rebalance): already processed; and the
            # same deadline in another message (republished): the same deadline.
            assert two.app.process_cloud_event(event) is False
            assert two.app.process_cloud_event(deadline_set(data)) is True
        assert len(stored(one.app, Deadline.Opened)) == 5
        for moment in (WARN_AT, DUE_AT):
            clock.set(moment)
            first, second = one.scan(), two.scan()
            assert sorted(first) == sorted(ids) and second == {}
            assert one.scan() == two.scan() == {}
        assert len(warnings_of(one.app)) == len(breaches_of(one.app)) == 5

        # A third instance (a restart) with a fresh read model: nothing left to do.
        three = Watch(shared_env(tmp_path), clock)
        clock.set("2026-12-31T00:00:00+08:00")
        assert three.scan() == {}
        three.close()
        assert len(warnings_of(one.app)) == len(breaches_of(one.app)) == 5
    finally:
        one.close()
        two.close()


def test_the_replica_that_saves_second_skips(tmp_path):
    """Both replicas load the open deadline; the first saves its breach, the second's save
    conflicts (IntegrityError) and is skipped: one DeadlineBreached."""
    clock = FixedClock(BEFORE)
    one, two = Watch(shared_env(tmp_path), clock), Watch(shared_env(tmp_path), clock)
    try:
        data = set_data(new_case_id())
        one.app.process_cloud_event(deadline_set(data))
        clock.set(DUE_AT)
        load = two.app.load

        def load_then_let_the_other_replica_save(ident, missing):
            deadline = load(ident, missing)
            assert one.scan() == {data["deadline_id"]: "breached"}
            return deadline

        two.app.load = load_then_let_the_other_replica_save  # type: ignore[method-assign]
        assert two.scan() == {}
        assert len(breaches_of(one.app)) == 1 and warnings_of(one.app) == []
    finally:
        one.close()
        two.close()


def test_two_instances_scanning_at_the_same_time_breach_each_deadline_once(tmp_path):
    clock = FixedClock(BEFORE)
    one, two = Watch(shared_env(tmp_path), clock), Watch(shared_env(tmp_path), clock)
    try:
        for _ in range(20):
            one.app.process_cloud_event(deadline_set(set_data(new_case_id())))
        one.projection.catch_up()
        two.projection.catch_up()
        clock.set(DUE_AT)
        results: list[dict[str, str]] = []
        start = threading.Barrier(2)

        def scan(w: Watch) -> None:
            start.wait()
            results.append(w.scan())

        threads = [threading.Thread(target=scan, args=(w,)) for w in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 2
        done = [d for r in results for d in r]
        assert len(done) == len(set(done)) == 20
        assert len(breaches_of(one.app)) == 20
    finally:
        one.close()
        two.close()


# === the worker ============================================================================================
def runtime_settings(tmp_path, **more: str) -> Settings:
    return Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path),
        "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "LIFELINE_REDIS_URL": "redis://127.0.0.1:1/0",
        **more,
    })


SECRET = "test-deadline-secret-not-for-production-0123456789"


def test_the_spec_runs_the_watch_beside_the_consumer():
    assert deadline_watch in SPEC.workers
    assert SPEC.views_version >= 2
    assert Settings.model_fields["deadline_scan_seconds"].default == 1


@pytest.mark.asyncio(loop_scope="function")
async def test_the_worker_scans_with_the_runtimes_clock_until_stopped(tmp_path):
    clock = FixedClock(BEFORE)
    runtime = ServiceRuntime(SPEC, runtime_settings(tmp_path, LIFELINE_DEADLINE_SCAN_SECONDS="0.05"),
                             clock=clock)
    try:
        data = set_data(new_case_id())
        runtime.app.process_cloud_event(deadline_set(data))
        stop = asyncio.Event()
        task = asyncio.create_task(deadline_watch(runtime, stop))
        await asyncio.sleep(0.2)
        assert stored(runtime.app, Deadline.Warned) == []
        clock.set(WARN_AT)  # as `lifeline clock set` moves the shared clock
        for _ in range(100):
            await asyncio.sleep(0.05)
            if stored(runtime.app, Deadline.Warned):
                break
        clock.set(DUE_AT)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if stored(runtime.app, Deadline.Breached):
                break
        await asyncio.sleep(0.2)  # more scans: nothing more
        stop.set()
        await asyncio.wait_for(task, 5)
        assert len(stored(runtime.app, Deadline.Warned)) == len(stored(runtime.app, Deadline.Breached)) == 1
    finally:
        runtime.side.close()
        runtime.app.close()


# === GET /v1/deadlines ===================================================================================
OTHER_TOWNSHIP_VILLAGE = "370502102001"


@pytest.fixture
def listing(tmp_path):
    clock = FixedClock(BEFORE)
    runtime = ServiceRuntime(SPEC, runtime_settings(tmp_path), clock=clock)
    app: NotifyApplication = runtime.app  # type: ignore[assignment]
    cases = {}
    for label, region in (("open", VILLAGE), ("warned", VILLAGE), ("breached", OTHER_TOWNSHIP_VILLAGE),
                          ("cleared", VILLAGE)):
        cases[label] = set_data(new_case_id(), region_code=region, office=region[:9])
    cases["breached"] = set_data(new_case_id(), "referral", region_code=OTHER_TOWNSHIP_VILLAGE,
                                 office=OTHER_TOWNSHIP_VILLAGE[:9], start=datetime(2026, 11, 16, 9, tzinfo=SHANGHAI))
    cases["open"] = set_data(new_case_id(), "whole_procedure")
    for data in cases.values():
        app.process_cloud_event(deadline_set(data))
    app.process_cloud_event(deadline_cleared(cases["cleared"], "met"))
    clock.set(WARN_AT)
    runtime.projection.catch_up()
    with runtime.side.transaction() as tx:
        app.watch_deadlines(deadlines_to_watch(tx), clock.now())
    client = TestClient(create_http_app(SPEC, runtime.settings, runtime), raise_server_exceptions=False)
    yield client, cases
    runtime.side.close()
    app.close()


def bearer(role: str, region: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


def test_deadlines_are_listed_with_their_state_within_the_callers_region(listing):
    client, cases = listing
    r = client.get("/v1/deadlines", headers=bearer("county_officer", "370502"))
    assert r.status_code == 200, r.text
    items = {i["deadline_id"]: i for i in r.json()["items"]}
    assert {i["state"] for i in items.values()} == {"open", "warned", "breached", "cleared"}
    breached = items[cases["breached"]["deadline_id"]]
    assert breached["escalated_to"] == {"office": "370502", "level": "county"}
    assert breached["outcome"] is None
    cleared = items[cases["cleared"]["deadline_id"]]
    assert (cleared["state"], cleared["outcome"], cleared["escalated_to"]) == ("cleared", "met", None)
    assert set(breached) >= {
        "deadline_id", "case_id", "clock", "label_zh", "region_code", "responsible_office",
        "due_date", "due_at", "warn_at", "state", "outcome", "escalated_to", "calendar_known", "warnings"}

    # A township sees its own division only.
    r = client.get("/v1/deadlines", headers=bearer("caseworker", TOWNSHIP))
    assert {i["deadline_id"] for i in r.json()["items"]} == {
        cases[k]["deadline_id"] for k in ("open", "warned", "cleared")}
    r = client.get("/v1/deadlines", headers=bearer("reviewer", "370502102"))
    assert [i["deadline_id"] for i in r.json()["items"]] == [cases["breached"]["deadline_id"]]


def test_deadlines_filtered_by_state_and_region(listing):
    client, cases = listing
    county = bearer("auditor", "370502")
    r = client.get("/v1/deadlines", params={"state": "breached"}, headers=county)
    assert [i["deadline_id"] for i in r.json()["items"]] == [cases["breached"]["deadline_id"]]
    r = client.get("/v1/deadlines", params={"state": "warned", "region": TOWNSHIP}, headers=county)
    assert [i["deadline_id"] for i in r.json()["items"]] == [cases["warned"]["deadline_id"]]
    r = client.get("/v1/deadlines", params={"region": "370502102"}, headers=county)
    assert [i["deadline_id"] for i in r.json()["items"]] == [cases["breached"]["deadline_id"]]


@pytest.mark.parametrize(("params", "role", "region", "status"), [
    ({}, "clerk", "370502", 403),
    ({}, "partner", "370502", 403),
    ({"region": "370602"}, "county_officer", "370502", 403),   # another county
    ({"region": "3705"}, "county_officer", "370502", 422),
    ({"region": "990502"}, "county_officer", "370502", 422),   # no such province
    ({"state": "late"}, "county_officer", "370502", 422),
])
def test_deadline_listing_refusals(listing, params, role, region, status):
    client, _ = listing
    r = client.get("/v1/deadlines", params=params, headers=bearer(role, region))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_deadline_listing_needs_a_token(listing):
    client, _ = listing
    assert client.get("/v1/deadlines").status_code == 401
