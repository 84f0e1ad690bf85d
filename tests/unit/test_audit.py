"""Audit (issue 13, parts 5, 6, 7, 8) in process, no broker: records as of a past moment rebuilt
from their events; one case's bundle, its manifest and `audit check`; which events belong to a
case; the effects of consumed events made again from the events themselves (the core of
`replay --from-kafka`); the auditor reads everywhere and writes nowhere."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from lifeline import cli
from lifeline.audit.asof import parse_moment
from lifeline.audit.export import case_events, check_bundle
from lifeline.audit.kafka_replay import rebuild
from lifeline.domain.aggregate import new_id
from lifeline.domain.clock import FixedClock, one_moment
from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.settings import SERVICES, Settings
from services.charity.bootstrap import SPEC as CHARITY
from services.charity.domain import need_id_of
from services.payment.bootstrap import SPEC as PAYMENT
from services.verification.bootstrap import SPEC as VERIFICATION

from .services import (
    REVIEWER, accepted_data, benefit_data, cloud, feed, pid, ready_to_decide, record_row, report, service_http,
    submitted_data,
)
from .services import new_case_id
from .services.test_charity import NOW, SECRET, TOWNSHIP, allocate, bearer, register, referral

SHANGHAI_NOW = NOW


def client(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def moment() -> datetime:
    """Now, between two steps: what was recorded before is before it, what comes after is after."""
    time.sleep(0.01)
    at = datetime.now(timezone.utc)
    time.sleep(0.01)
    return at


def validation_problem(r, parameter: str = "as_of") -> dict:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert parameter in [e.get("parameter") for e in r.json()["errors"]], r.json()
    return r.json()


# --- as of --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T10:00:00+08:00", datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)),
    ("2026-12-01T02:00:00Z", datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)),
    ("2026-12-01t02:00:00.123456789z", datetime(2026, 12, 1, 2, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2026-12-01T10:00:00 08:00", datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)),  # '+' unencoded in a URL
])
def test_as_of_is_an_rfc_3339_moment(text, expected):
    assert parse_moment(text) == expected


@pytest.mark.parametrize("text", ["2026-12-01", "2026-12-01T10:00:00", "yesterday", "2026-13-01T10:00:00+08:00",
                                  "1764500000"])
def test_a_malformed_as_of_is_refused(text):
    with pytest.raises(ValueError):
        parse_moment(text)


@pytest.fixture
def charity(tmp_path):
    with service_http(CHARITY, tmp_path, SECRET, NOW) as app:
        yield app


def open_need(app, **kw) -> tuple[dict, object]:
    data = referral(**kw)
    event = cloud("ReferralRaised", data, subject=data["case_id"], source="lifeline/intake")
    app.state.runtime.app.process_cloud_event(event)
    return {**data, "need_id": need_id_of(data["referral_id"])}, event


def test_a_need_as_of_a_moment_is_rebuilt_from_its_events(charity):
    fund = register(charity, balance_fen=1_000_000)
    need, _ = open_need(charity)
    url, h = f"/v1/needs/{need['need_id']}", bearer("auditor", TOWNSHIP)
    before_allocation = moment()
    assert allocate(charity, need["need_id"], fund, 100_000).status_code == 201
    live = client(charity).get(url, headers=h).json()
    assert live["allocated_fen"] == 100_000 and live["still_needed_fen"] == 200_000

    then = client(charity).get(url, params={"as_of": before_allocation.isoformat()}, headers=h)
    assert then.status_code == 200, then.text
    assert then.json() == {**live, "allocations": [], "allocated_fen": 0, "still_needed_fen": 300_000}
    # As of now: exactly what the live route answers (the same shape, the same values).
    assert client(charity).get(url, params={"as_of": moment().isoformat()}, headers=h).json() == live

    gone = client(charity).get(url, params={"as_of": "2020-01-01T00:00:00+08:00"}, headers=h)
    assert gone.status_code == 404 and gone.json()["title"] == "Need not found"
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    validation_problem(client(charity).get(url, params={"as_of": later}, headers=h))
    validation_problem(client(charity).get(url, params={"as_of": "2026-12-01"}, headers=h))
    # As of a past moment, the need is still read within the caller's region only.
    other = client(charity).get(url, params={"as_of": moment().isoformat()}, headers=bearer("auditor", "370502102"))
    assert other.status_code == 403


@pytest.fixture
def verification(tmp_path):
    with service_http(VERIFICATION, tmp_path, SECRET, NOW) as app:
        yield app


def test_the_verification_as_of_the_decision_shows_what_the_reviewer_saw(verification):
    app = verification.state.runtime.app
    ids = [pid(401), pid(402, female=True)]
    case_id = new_case_id()
    feed(app, "ApplicationSubmitted", submitted_data(case_id, ids), case_id, "lifeline/intake")
    feed(app, "ApplicationAccepted", accepted_data(case_id, (NOW - timedelta(days=14)).isoformat()), case_id,
         "lifeline/intake")
    for department, request_id in app.get_verification(case_id).requests.items():
        feed(app, "DepartmentRecordsReported", report(case_id, department, request_id, [record_row(n) for n in ids]),
             case_id, f"partner/{department}")
    v = app.get_verification(case_id)
    ready_to_decide(v, NOW)
    app.save(v)
    before_decision = moment()
    app.decide(case_id, "approve", "符合低保条件", REVIEWER)

    url, h = f"/v1/verifications/{case_id}", bearer("auditor", "370502")
    live = client(verification).get(url, headers=h).json()
    then = client(verification).get(url, params={"as_of": before_decision.isoformat()}, headers=h)
    assert then.status_code == 200, then.text
    assert live["decisions"] and live["benefit"] is not None
    seen = then.json()
    assert seen["decisions"] == [] and seen["benefit"] is None and seen["version"] < live["version"]
    assert seen["state"] != live["state"] == "approved"
    # What the reviewer saw: the assessment, the survey and the notice, as they stood.
    assert seen["assessment"] == live["assessment"] and seen["public_notice"] == live["public_notice"]
    assert client(verification).get(url, params={"as_of": moment().isoformat()}, headers=h).json() == live
    assert client(verification).get(url, params={"as_of": "2020-01-01T00:00:00Z"}, headers=h).status_code == 404


@pytest.fixture
def payment(tmp_path):
    with service_http(PAYMENT, tmp_path, SECRET, NOW) as app:
        yield app


def test_a_cases_entitlements_as_of_a_moment(payment):
    case_id = new_case_id()
    url, h = "/v1/entitlements", bearer("auditor", "370502")
    before = moment()
    feed(payment.state.runtime.app, "BenefitApproved", benefit_data(case_id), case_id, "lifeline/verification")
    live = client(payment).get(url, params={"case_id": case_id}, headers=h).json()
    assert len(live["items"]) == 1
    then = client(payment).get(url, params={"case_id": case_id, "as_of": before.isoformat()}, headers=h)
    assert then.status_code == 200 and then.json() == {"case_id": case_id, "items": []}
    now = client(payment).get(url, params={"case_id": case_id, "as_of": moment().isoformat()}, headers=h)
    assert now.json() == live
    validation_problem(client(payment).get(url, params={"case_id": case_id, "as_of": "soon"}, headers=h))


# --- which events belong to a case, and the bundle ------------------------------------------------
def test_a_case_takes_every_event_naming_it_and_only_its_own_of_a_shared_fund(charity):
    app = charity.state.runtime.app
    fund = register(charity, balance_fen=1_000_000)
    mine, _ = open_need(charity)
    other, _ = open_need(charity)
    assert allocate(charity, mine["need_id"], fund, 100_000).status_code == 201
    assert allocate(charity, other["need_id"], fund, 50_000).status_code == 201
    taken = [(type(e).__qualname__, getattr(e, "case_id", None)) for _, e in case_events(app, mine["case_id"])]
    # The need's AllocationRecorded names no case: it comes with its need, which names only this one.
    assert taken == [("Need.Opened", mine["case_id"]), ("Fund.Allocated", mine["case_id"]),
                     ("Need.AllocationRecorded", None)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIFELINE_JWT_SECRET", SECRET)
    return tmp_path


def test_a_bundle_verifies_and_any_file_changed_missing_or_added_is_named(env, capsys):
    with service_http(CHARITY, env / "data", SECRET, NOW) as app:
        fund = register(app, balance_fen=1_000_000)
        need, _ = open_need(app)
        assert allocate(app, need["need_id"], fund, 100_000).status_code == 201
    out = env / "bundle"
    assert cli.main(["audit", "export", need["case_id"], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    manifest_hash = re.search(r"manifest sha256 ([0-9a-f]{64})", printed).group(1)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"README.txt", "case.json", "timeline.txt", "manifest.json",
                     *(f"events/{s}.jsonl" for s in SERVICES), *(f"readmodels/{s}.json" for s in SERVICES)}
    records = [json.loads(line) for line in (out / "events/charity.jsonl").read_text().splitlines()]
    assert sorted(r["event"] for r in records) == ["Fund.Allocated", "Need.AllocationRecorded", "Need.Opened"]
    assert [r["recorded_at"] for r in records] == sorted(r["recorded_at"] for r in records)
    [allocated] = [r for r in records if r["event"] == "Fund.Allocated"]
    assert allocated["who"] == {"user_id": "caseworker@370502101", "role": "caseworker", "office": TOWNSHIP}
    assert allocated["public_event"] == "FundAllocated" and allocated["cloudevent_id"]
    assert allocated["happened_field"] == "allocated_at" and allocated["recorded_at"]
    [opened] = [r for r in records if r["event"] == "Need.Opened"]  # an effect of the referral: caused by it
    assert opened["causation_id"] and opened["who"]["role"] == "system"
    docs = json.loads((out / "readmodels/charity.json").read_text())
    assert ("need", need["need_id"]) in {(d["kind"], d["key"]) for d in docs}
    assert "Need.Opened" in (out / "timeline.txt").read_text()

    assert cli.main(["audit", "check", str(out), "--expect", manifest_hash]) == 0
    assert "intact" in capsys.readouterr().out
    # One byte changed.
    path = out / "events/charity.jsonl"
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"amount_fen": 100000', b'"amount_fen": 900000', 1))
    assert cli.main(["audit", "check", str(out)]) == 1
    assert "changed: events/charity.jsonl" in capsys.readouterr().out
    path.write_bytes(original)
    # A file removed, another added, the manifest itself rewritten.
    (out / "readmodels/charity.json").rename(out / "extra.json")
    result = check_bundle(out)
    assert (result.missing, result.added, result.changed) == (["readmodels/charity.json"], ["extra.json"], [])
    (out / "extra.json").rename(out / "readmodels/charity.json")
    assert check_bundle(out).ok
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["events/charity.jsonl"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert check_bundle(out).changed == ["events/charity.jsonl"]
    assert check_bundle(out, manifest_hash).manifest_problem
    # A case no service knows is no bundle; a directory in use is not overwritten.
    assert cli.main(["audit", "export", "C-NOBODY", "--out", str(env / "none")]) == 1
    assert cli.main(["audit", "export", need["case_id"], "--out", str(out)]) == 2


# --- the effects of consumed events, made again -------------------------------------------------------
def test_a_consumed_events_effects_are_made_again_from_it_and_the_read_models_compared(charity):
    runtime = charity.state.runtime
    fund = register(charity, balance_fen=1_000_000)
    topics = {}
    for _ in range(3):
        need, event = open_need(charity)
        topics[event.id] = event
        assert allocate(charity, need["need_id"], fund, 100_000).status_code == 201
    runtime.projection.catch_up()
    again = rebuild(CHARITY, runtime.settings, runtime.app, runtime.side, topics, err=io.StringIO())
    assert again.identical, again.lines()
    assert (again.remade, again.remade_events, again.copied) == (3, 3, 7)

    first = next(iter(topics))
    missing = rebuild(CHARITY, runtime.settings, runtime.app, runtime.side,
                      {k: v for k, v in topics.items() if k != first}, err=io.StringIO())
    assert not missing.identical and any("not on the topics" in p for p in missing.problems)
    changed = dict(topics)
    changed[first] = dataclasses.replace(topics[first], data={**topics[first].data, "amount_asked_fen": 1})
    different = rebuild(CHARITY, runtime.settings, runtime.app, runtime.side, changed, err=io.StringIO())
    assert any("amount_asked_fen: 300000 != 1" in p for p in different.problems)
    assert any(d.startswith("differs: ('need'") for d in different.diffs)


def test_a_consumed_event_is_handled_at_one_moment_and_mints_ids_from_itself():
    clock = FixedClock("2026-12-01T10:00:00+08:00")
    with one_moment(clock, "event-1") as unit:
        clock.advance("1d")
        assert clock.now() == unit.moment == datetime.fromisoformat("2026-12-01T10:00:00+08:00")
        first = [new_id("Q"), new_id("Q")]
    assert clock.now() == datetime.fromisoformat("2026-12-02T10:00:00+08:00")
    with one_moment(clock, "event-1"):
        assert [new_id("Q"), new_id("Q")] == first and first[0] != first[1]
    with one_moment(clock, "event-2"):
        assert new_id("Q") not in first
    assert new_id("Q") != new_id("Q")  # outside, as ever


# --- the auditor --------------------------------------------------------------------------------------
# Reads the auditor may not make, each for a reason.
AUDITOR_NOT_READING = {
    # The bank file itself holds every account number in clear: only the paying county's officer
    # fetches it for the bank. The auditor reads the same payments with masked accounts.
    ("payment", "GET", "/v1/bank-batches/{batch_id}/pain001"),
}
# Writes that take no bearer token at all: the public leaves an objection on a notice board.
PUBLIC_WRITES = {("notify", "POST", "/v1/boards/{village_code}/objections")}
CLOSED = "127.0.0.1:1"


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    settings = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path_factory.mktemp("auditor")), "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED, "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
    })
    built = {name: create_http_app(importlib.import_module(f"services.{name}.bootstrap").SPEC, settings)
             for name in SERVICES}
    yield built
    for app in built.values():
        app.state.runtime.side.close()
        app.state.runtime.app.close()


def operations(apps):
    for name, app in apps.items():
        for path, item in app.openapi()["paths"].items():
            for method in ("get", "post", "put", "delete", "patch"):
                if method in item:
                    yield name, method.upper(), path, item[method]


def test_the_auditor_reads_every_route_within_its_region_and_writes_none(apps):
    token = {"Authorization": "Bearer " + mint_token(SECRET, role="auditor", region="370502"),
             "content-type": "application/json"}
    reads = writes = 0
    for name, method, path, op in operations(apps):
        if (name, method, path) in PUBLIC_WRITES:
            assert "security" not in op and method != "GET"
            continue
        url = re.sub(r"\{[^}]+\}", "X", path)
        r = client(apps[name]).request(method, url, headers=token, content=b"{}")
        refused = r.status_code == 403 and r.json()["type"].endswith("/role-forbidden")
        if method == "GET":
            reads += 1
            assert refused == ((name, method, path) in AUDITOR_NOT_READING), (name, method, path, r.status_code)
        else:
            writes += 1
            assert refused, (name, method, path, r.status_code, r.text[:200])
            assert "auditor" not in r.json()["allowed_roles"]
    assert reads > 40 and writes > 40


def test_an_auditor_reads_within_its_region_only(charity):
    need, _ = open_need(charity)
    url = f"/v1/needs/{need['need_id']}"
    assert client(charity).get(url, headers=bearer("auditor", "370502")).status_code == 200
    assert client(charity).get(url, headers=bearer("auditor", "370503")).status_code == 403
