"""The acceptance step in intake (受理, 不予受理, 补正材料一次性告知): the Case's rules, the use
case on an in-memory store, the public events against their schemas, and the route through
FastAPI (problem+json answers, nothing stored when refused)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.domain.values import mask_name
from lifeline.http.app import create_http_app
from lifeline.http.auth import Principal, Role, mint_token
from lifeline.http.problems import PROBLEM_JSON
from lifeline.messaging.outbox import to_cloud_events
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.vocabulary import REQUIRED_MATERIALS
from lifeline.settings import Settings
from lifeline.stores.projection import rebuild
from services.intake.application import IntakeApplication, case_view
from services.intake.application import project as intake_project
from services.intake.bootstrap import SPEC
from services.intake.domain import (
    CASE_STATUSES,
    AcceptanceNotAllowed,
    AcceptanceRuleBroken,
    Case,
    later_status,
)
from services.intake.outbound import OUTBOUND

from . import (
    APPLICANT_NAME,
    CLERK,
    MEMORY_ENV,
    SEALER,
    SYSTEM,
    VILLAGE,
    application,
    application_body,
    log_length,
    pid,
    replay,
    stored,
)

CASE_ID = "C-ACCEPT000000000001"
IDS = [pid(51), pid(52, female=True)]
AT = "2026-11-26T10:00:00+08:00"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=SHANGHAI)
ACCEPTANCE_EVENTS = (Case.Accepted, Case.AcceptanceRefused, Case.MaterialsRequested)


def new_case() -> Case:
    case = Case.register(application(CASE_ID, IDS), CLERK)
    case.collect_events()
    return case


def public(event) -> dict:
    """The event's wire data by intake's outbound map, valid for its schema."""
    out = OUTBOUND(event)
    assert out is not None and out.subject == event.case_id
    registry.validate_data(out.name, out.data)
    assert set(out.data) == set(registry.schema(out.name)["properties"])
    return {"name": out.name, **out.data}


# === the aggregate ===========================================================================
def test_accept_from_submitted():
    case = new_case()
    clerk = Principal("clerk-9", Role.clerk, "370502", "370502101")
    case.accept("材料齐全", AT, Meta.of(clerk, "材料齐全"))
    (event,) = case.collect_events()
    assert isinstance(event, Case.Accepted)
    assert (case.status, case.accepted_at, case.missing_materials) == ("accepted", AT, [])
    assert event.meta["reason"] == "材料齐全" and event.meta["user_id"] == "clerk-9"
    assert event.meta["role"] == "clerk" and event.meta["org_code"] == "370502101"
    data = public(event)
    assert data == {
        "name": "ApplicationAccepted", "case_id": CASE_ID, "region_code": VILLAGE,
        "assistance_type": "dibao", "applicant_name_masked": mask_name(APPLICANT_NAME),
        "members_count": 2, "reason": "材料齐全", "accepted_at": AT,
    }
    assert data["applicant_name_masked"] == "王*明"


def test_refuse_acceptance_from_submitted_ends_the_case():
    case = new_case()
    case.refuse_acceptance("户籍不在本辖区", AT, CLERK)
    (event,) = case.collect_events()
    assert isinstance(event, Case.AcceptanceRefused)
    assert (case.status, case.accepted_at) == ("not_accepted", None)
    assert public(event) == {
        "name": "ApplicationRefused", "case_id": CASE_ID, "region_code": VILLAGE,
        "assistance_type": "dibao", "applicant_name_masked": "王*明", "reason": "户籍不在本辖区",
        "refused_at": AT,
    }


def test_request_materials_lists_everything_at_once_in_one_order():
    case = new_case()
    case.request_materials(["authorisation", "resident_id", "authorisation"], "缺身份证和授权书", AT, CLERK)
    (event,) = case.collect_events()
    assert isinstance(event, Case.MaterialsRequested)
    assert case.status == "materials_requested"
    assert case.missing_materials == ["resident_id", "authorisation"]
    assert public(event) == {
        "name": "MaterialsRequested", "case_id": CASE_ID, "region_code": VILLAGE,
        "assistance_type": "dibao", "applicant_name_masked": "王*明",
        "missing_materials": ["resident_id", "authorisation"], "repeat": False,
        "reason": "缺身份证和授权书", "requested_at": AT,
    }


def test_a_second_request_names_what_is_still_missing_and_says_repeat():
    case = new_case()
    case.request_materials(["resident_id", "authorisation"], "缺身份证和授权书", AT, CLERK)
    case.request_materials(["authorisation"], "身份证已补交，仍缺授权书", AT, CLERK)
    first, second = case.collect_events()
    assert (first.repeat, second.repeat) == (False, True)
    assert case.missing_materials == ["authorisation"] and case.status == "materials_requested"
    assert public(second)["repeat"] is True
    # a third one may repeat what is still missing, nothing else
    case.request_materials(["authorisation"], "仍缺授权书", AT, CLERK)
    with pytest.raises(AcceptanceRuleBroken) as info:
        case.request_materials(["resident_id"], "again", AT, CLERK)
    assert info.value.rule == "missing_materials_at_once"
    assert "resident_id" in str(info.value) and "一次性告知" in str(info.value)
    assert case.missing_materials == ["authorisation"]


def test_an_item_not_asked_for_before_is_refused():
    case = new_case()
    case.request_materials(["authorisation"], "缺授权书", AT, CLERK)
    case.collect_events()
    with pytest.raises(AcceptanceRuleBroken) as info:
        case.request_materials(["authorisation", "resident_id"], "还缺身份证", AT, CLERK)
    assert info.value.rule == "missing_materials_at_once"
    assert case.collect_events() == [] and case.missing_materials == ["authorisation"]


@pytest.mark.parametrize("missing", [["hukou_booklet"], ["resident_id", "income_certificate"]])
def test_only_the_id_and_the_authorisation_may_be_asked_for(missing):
    case = new_case()
    with pytest.raises(AcceptanceRuleBroken) as info:
        case.request_materials(missing, "缺户口本", AT, CLERK)
    assert info.value.rule == "one_id_one_authorisation"
    assert "一证一书" in str(info.value)
    assert case.collect_events() == [] and case.status == "submitted"


def test_a_request_names_something():
    case = new_case()
    with pytest.raises(AcceptanceRuleBroken) as info:
        case.request_materials([], "缺材料", AT, CLERK)
    assert info.value.rule == "missing_materials_required"
    assert case.collect_events() == []


@pytest.mark.parametrize("decide", ["accept", "refuse_acceptance"])
def test_accept_or_refuse_after_materials_were_requested(decide):
    case = new_case()
    case.request_materials(["resident_id"], "缺身份证", AT, CLERK)
    getattr(case, decide)("材料已补齐" if decide == "accept" else "逾期未补正", AT, CLERK)
    assert case.status == ("accepted" if decide == "accept" else "not_accepted")
    assert case.missing_materials == []


def _decided(status: str) -> Case:
    case = new_case()
    if status == "accepted":
        case.accept("ok", AT, CLERK)
    elif status == "not_accepted":
        case.refuse_acceptance("no", AT, CLERK)
    else:
        case.accept("ok", AT, CLERK)
        case.note_verification("eligible", 1000, SYSTEM)
        if status in ("approved", "refused"):
            case.note_decision(status, "B-1" if status == "approved" else "", "x", SYSTEM)
    case.collect_events()
    assert case.status == status
    return case


@pytest.mark.parametrize("status", ["accepted", "not_accepted", "verified", "approved", "refused"])
@pytest.mark.parametrize("decide", ["accept", "refuse_acceptance", "request_materials"])
def test_acceptance_is_decided_once(status, decide):
    case = _decided(status)
    args = (["resident_id"],) if decide == "request_materials" else ()
    with pytest.raises(AcceptanceNotAllowed) as info:
        getattr(case, decide)(*args, "again", AT, CLERK)
    assert str(info.value) == f"acceptance already decided: the case is {status}"
    assert (info.value.rule, info.value.case_status) == ("acceptance_decided_once", status)
    assert case.collect_events() == [] and case.status == status


def test_a_decision_states_its_reason():
    case = new_case()
    with pytest.raises(AcceptanceRuleBroken) as info:
        case.accept("  ", AT, CLERK)
    assert info.value.rule == "reason_required"


def test_state_is_rebuilt_from_the_events():
    case = Case.register(application(CASE_ID, IDS), CLERK)
    case.request_materials(["resident_id", "authorisation"], "缺", AT, CLERK)
    case.request_materials(["resident_id"], "仍缺身份证", AT, CLERK)
    case.accept("已补齐", "2026-11-27T09:00:00+08:00", CLERK)
    again = replay(case.collect_events())
    assert (again.status, again.accepted_at, again.missing_materials) == (
        "accepted", "2026-11-27T09:00:00+08:00", [])
    assert again.version == case.version == 4


def test_statuses_move_forward_only_and_not_accepted_is_final():
    order = ["submitted", "materials_requested", "accepted", "verified", "approved"]
    for earlier, later in zip(order, order[1:]):
        assert later_status(earlier, later) == later
        assert later_status(later, earlier) == later
    for new in CASE_STATUSES:
        assert later_status("not_accepted", new) == "not_accepted"
    assert later_status("submitted", "not_accepted") == "not_accepted"
    assert later_status("materials_requested", "not_accepted") == "not_accepted"
    assert {"materials_requested", "accepted", "not_accepted"} <= set(CASE_STATUSES)


# === the use case ============================================================================
@pytest.fixture
def intake() -> Iterator[IntakeApplication]:
    app = IntakeApplication(dict(MEMORY_ENV), clock=FixedClock(NOW), sealer=SEALER)
    yield app
    app.close()


def test_accept_through_the_use_case(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    answer = intake.decide_acceptance(case_id, "accept", "材料齐全", None, CLERK)
    assert answer == {
        "case_id": case_id, "decision": "accept", "status": "accepted", "accepted_at": NOW.isoformat(),
        "missing_materials": [], "repeat": False, "version": 2,
    }
    (event,) = stored(intake, Case.Accepted)
    assert event.accepted_at == "2026-11-26T10:00:00+08:00"
    ((topic, key, cloud),) = to_cloud_events("intake", 2, event, intake.outbound)
    assert (topic, key, cloud.subject) == (T.TOPICS["intake"], case_id, case_id)
    assert cloud.type == "cn.gov.mca.lifeline.ApplicationAccepted.v1"
    registry.validate(cloud)
    view = case_view(intake.get_case(case_id))
    assert (view["status"], view["accepted_at"], view["missing_materials"]) == ("accepted", NOW.isoformat(), [])


def test_materials_twice_then_accept_through_the_use_case(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    first = intake.decide_acceptance(case_id, "request_materials", "缺", ["resident_id", "authorisation"], CLERK)
    assert (first["status"], first["missing_materials"], first["repeat"]) == (
        "materials_requested", ["resident_id", "authorisation"], False)
    second = intake.decide_acceptance(case_id, "request_materials", "仍缺授权书", ["authorisation"], CLERK)
    assert (second["missing_materials"], second["repeat"]) == (["authorisation"], True)
    views = rebuild(intake, intake_project)
    with views.transaction() as tx:
        doc = tx.get("case", case_id)
    assert (doc["status"], doc["missing_materials"]) == ("materials_requested", ["authorisation"])
    intake.decide_acceptance(case_id, "accept", "已补齐", None, CLERK)
    requested = stored(intake, Case.MaterialsRequested)
    assert [public(e)["repeat"] for e in requested] == [False, True]
    views = rebuild(intake, intake_project)
    with views.transaction() as tx:
        doc = tx.get("case", case_id)
    assert (doc["status"], doc["accepted_at"], doc["missing_materials"]) == ("accepted", NOW.isoformat(), [])


def test_refusal_through_the_use_case_and_the_read_model(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    answer = intake.decide_acceptance(case_id, "refuse", "户籍不在本辖区", None, CLERK)
    assert (answer["status"], answer["accepted_at"]) == ("not_accepted", None)
    (event,) = stored(intake, Case.AcceptanceRefused)
    assert public(event)["refused_at"] == NOW.isoformat()
    views = rebuild(intake, intake_project)
    with views.transaction() as tx:
        assert tx.get("case", case_id)["status"] == "not_accepted"


@pytest.mark.parametrize(
    ("decision", "missing", "error", "rule"),
    [
        ("request_materials", ["hukou_booklet"], AcceptanceRuleBroken, "one_id_one_authorisation"),
        ("request_materials", [], AcceptanceRuleBroken, "missing_materials_required"),
        ("accept", ["resident_id"], AcceptanceRuleBroken, "missing_materials_with_request_only"),
        ("refuse", ["resident_id"], AcceptanceRuleBroken, "missing_materials_with_request_only"),
    ],
)
def test_a_broken_rule_stores_nothing(intake, decision, missing, error, rule):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    before = log_length(intake)
    with pytest.raises(error) as info:
        intake.decide_acceptance(case_id, decision, "x", missing, CLERK)
    assert info.value.rule == rule
    assert log_length(intake) == before and intake.get_case(case_id).status == "submitted"


def test_a_second_decision_is_refused_and_stores_nothing(intake):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    intake.decide_acceptance(case_id, "accept", "ok", None, CLERK)
    before = log_length(intake)
    for decision, missing in (("accept", None), ("refuse", None), ("request_materials", ["resident_id"])):
        with pytest.raises(AcceptanceNotAllowed, match="acceptance already decided: the case is accepted"):
            intake.decide_acceptance(case_id, decision, "again", missing, CLERK)
    assert log_length(intake) == before


def test_a_concurrent_decision_is_a_conflict(intake, monkeypatch):
    case_id = intake.submit_application(application_body(IDS), CLERK)
    stale = intake.get_case(case_id)  # loaded before someone else decided
    intake.decide_acceptance(case_id, "refuse", "户籍不在本辖区", None, CLERK)
    monkeypatch.setattr(intake, "get_case", lambda _: stale)
    with pytest.raises(AcceptanceNotAllowed) as info:
        intake.decide_acceptance(case_id, "accept", "ok", None, CLERK)
    assert info.value.rule == "changed_meanwhile"
    assert str(info.value) == "the case changed meanwhile; reload and retry"
    monkeypatch.undo()
    assert intake.get_case(case_id).status == "not_accepted"
    assert not stored(intake, Case.Accepted)


# === the route ===============================================================================
SECRET = "test-acceptance-secret-not-for-production-0123456789"
CLOSED = "127.0.0.1:1"  # nothing listens: no Kafka, no Redis (no Idempotency-Key is sent)
PATH = "/v1/cases/{case_id}/acceptance"


@pytest.fixture(scope="module")
def http(tmp_path_factory) -> Iterator[FastAPI]:
    settings = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path_factory.mktemp("acceptance")),
        "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED,
        "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
    })
    app = create_http_app(SPEC, settings)
    yield app
    app.state.runtime.side.close()
    app.state.runtime.app.close()


def bearer(role: str = "clerk", region: str = "370502") -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    body = r.json()
    assert body["status"] == status and body["title"]
    return body


@pytest.fixture
def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


_FRESH = iter(range(500))  # each test's household is new people: the same people again are held (persons.py)


@pytest.fixture
def case_id(client) -> str:
    n = next(_FRESH)
    people = [pid(n, born=date(1981, 6, 1)), pid(n, born=date(1981, 6, 1), female=True)]
    r = client.post("/v1/applications", json=application_body(people), headers=bearer())
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def decide(client, case_id: str, body: dict, **kw):
    return client.post(PATH.format(case_id=case_id), json=body, headers=kw.get("headers") or bearer())


def test_route_accepts_and_the_case_shows_it(client, http, case_id):
    r = decide(client, case_id, {"decision": "accept", "reason": "材料齐全"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["case_id"], body["decision"], body["status"], body["missing_materials"]) == (
        case_id, "accept", "accepted", [])
    assert body["accepted_at"] and body["repeat"] is False
    r = client.get(f"/v1/cases/{case_id}", headers=bearer("reviewer"))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["accepted_at"], r.json()["missing_materials"]) == (
        "accepted", body["accepted_at"], [])
    assert r.json() == {**case_view(http.state.runtime.app.get_case(case_id)), "referrals": []}

    r = decide(client, case_id, {"decision": "refuse", "reason": "again"})
    body = problem(r, 409)
    assert body["detail"] == "acceptance already decided: the case is accepted"
    assert (body["rule"], body["case_status"]) == ("acceptance_decided_once", "accepted")


def test_route_requests_materials_twice(client, case_id):
    r = decide(client, case_id, {"decision": "request_materials", "reason": "缺",
                                 "missing_materials": ["resident_id", "authorisation"]})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["repeat"]) == ("materials_requested", False)
    r = decide(client, case_id, {"decision": "request_materials", "reason": "仍缺授权书",
                                 "missing_materials": ["authorisation"]})
    assert r.status_code == 200, r.text
    assert (r.json()["missing_materials"], r.json()["repeat"]) == (["authorisation"], True)
    r = decide(client, case_id, {"decision": "request_materials", "reason": "又缺身份证",
                                 "missing_materials": ["resident_id"]})
    assert problem(r, 422)["rule"] == "missing_materials_at_once"
    r = client.get(f"/v1/cases/{case_id}", headers=bearer())
    assert (r.json()["status"], r.json()["missing_materials"]) == ("materials_requested", ["authorisation"])


@pytest.mark.parametrize(
    ("body", "pointer", "rule"),
    [
        ({"decision": "accept", "reason": "x", "surprise": 1}, "#/surprise", None),
        ({"decision": "accept", "reason": "x", "missing_materials": ["resident_id"]}, "#/missing_materials", None),
        ({"decision": "request_materials", "reason": "x"}, "#/missing_materials", None),
        ({"decision": "request_materials", "reason": "x", "missing_materials": ["resident_id", "resident_id"]},
         "#/missing_materials", None),
        ({"decision": "approve", "reason": "x"}, "#/decision", None),
        ({"decision": "accept", "reason": "   "}, "#/reason", None),
        ({"decision": "accept"}, "#/reason", None),
        ({"decision": "accept", "reason": "x" * 2001}, "#/reason", None),
        ({"decision": "request_materials", "reason": "x", "missing_materials": ["hukou_booklet"]}, None,
         "one_id_one_authorisation"),
    ],
)
def test_route_bad_bodies_are_422_and_store_nothing(client, http, case_id, body, pointer, rule):
    before = log_length(http.state.runtime.app)
    answer = problem(decide(client, case_id, body), 422)
    if pointer:
        assert pointer in [e.get("pointer") for e in answer["errors"]], answer
    else:
        assert answer["rule"] == rule and "一证一书" in answer["detail"]
    assert "hukou_booklet" not in str(answer)  # nothing submitted is echoed
    assert log_length(http.state.runtime.app) == before
    assert http.state.runtime.app.get_case(case_id).status == "submitted"


def test_route_roles_regions_and_missing_cases(client, http, case_id):
    body = {"decision": "accept", "reason": "ok"}
    before = log_length(http.state.runtime.app)
    problem(decide(client, case_id, body, headers=bearer("reviewer")), 403)
    problem(decide(client, case_id, body, headers=bearer("clerk", "320583")), 403)
    problem(client.post(PATH.format(case_id=case_id), json=body), 401)
    problem(decide(client, "C-NOSUCHCASE", body), 404)
    assert log_length(http.state.runtime.app) == before


def test_route_is_documented_with_examples(http):
    op = http.openapi()["paths"][PATH]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AcceptanceOut"}
    assert {"404", "409", "422"} <= set(op["responses"])
    schema = http.openapi()["components"]["schemas"]["AcceptanceIn"]
    assert {e["decision"] for e in schema["examples"]} == {"accept", "refuse", "request_materials"}
    items = schema["properties"]["missing_materials"]["anyOf"][0]["items"]
    assert items["enum"] == list(REQUIRED_MATERIALS)
