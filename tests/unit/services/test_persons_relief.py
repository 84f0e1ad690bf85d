"""Intake's person index and emergency relief through the use cases and the routes (issue 11):
two replicas registering one person at once hold exactly one; the index follows the case
(approved, refused, not accepted, withdrawn, terminated); grants within and above the caps, four
eyes on the post-approval, problem+json with nothing stored."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lifeline.contracts import registry
from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.http.problems import PROBLEM_JSON
from lifeline.settings import Settings
from services.intake import persons, relief
from services.intake.application import IntakeApplication
from services.intake.bootstrap import SPEC
from services.intake.domain import AcceptanceNotAllowed, Case
from services.intake.outbound import OUTBOUND
from services.intake.relief import EmergencyRelief, ReliefRuleBroken
from lifeline.rules.ids import make_resident_id
from tests.unit.contract_examples import example

from . import (
    CASEWORKER,
    CLERK,
    COUNTY_OFFICER,
    MEMORY_ENV,
    REVIEWER,
    SEALER,
    application_body,
    benefit_data,
    cloud,
    log_length,
    one_off_benefit_data,
    stored,
)

NOW = "2026-11-25T10:00:00+08:00"
_numbers = itertools.count()


def people(n: int) -> list[str]:
    """New people (a birth date no other unit test uses)."""
    return [make_resident_id("370502", date(1962, 2, 2), next(_numbers), female=False) for _ in range(n)]


@pytest.fixture
def intake() -> Iterator[IntakeApplication]:
    app = IntakeApplication(dict(MEMORY_ENV), clock=FixedClock(NOW), sealer=SEALER)
    yield app
    app.close()


def public(event) -> dict:
    out = OUTBOUND(event)
    registry.validate_data(out.name, out.data)
    assert set(out.data) == set(registry.schema(out.name)["properties"])
    return out.data


def verification_event(name: str, data: dict, case_id: str):
    return cloud(name, data, subject=case_id, source="lifeline/verification")


# --- one person, one file per benefit ---------------------------------------------------------
def test_two_replicas_registering_one_person_at_once_hold_exactly_one_naming_the_other(tmp_path, monkeypatch):
    env = {**MEMORY_ENV, "SQLITE_DBNAME": str(tmp_path / "intake.events.sqlite"), "SQLITE_LOCK_TIMEOUT": "30"}
    one = IntakeApplication(env, clock=FixedClock(NOW), sealer=SEALER)
    two = IntakeApplication(env, clock=FixedClock(NOW), sealer=SEALER)
    try:
        shared, own_one, own_two = people(3)
        first: list[str] = []
        attempts: list[int] = []
        save = two.save

        def save_after_the_other_replica(*aggregates):
            # Replica two read the index before replica one registered: its save comes second.
            attempts.append(len(aggregates))
            if not first:
                first.append(one.submit_application(application_body([shared, own_one]), CLERK))
            return save(*aggregates)

        monkeypatch.setattr(two, "save", save_after_the_other_replica)
        held = two.submit_application(application_body([own_two, shared]), CLERK)
        assert len(attempts) == 2  # refused by the version check once, then held on the fresh index
        assert one.get_case(first[0]).status == "submitted"
        case = one.get_case(held)
        assert (case.status, case.duplicate_of) == ("suspected_duplicate", first)
        (suspected,) = stored(one, Case.DuplicateSuspected)
        assert public(suspected) == {
            "case_id": held, "region_code": "370502101001", "assistance_type": "dibao",
            "other_case_ids": first, "reasons": ["open_application"], "suspected_at": NOW}
        assert persons.coverage_of(one, shared).open_cases == {first[0]: "dibao", held: "dibao"}
        assert persons.coverage_of(two, own_two).open_cases == {held: "dibao"}
        # The index holds no ID number, in clear or as its first digits.
        for n in one.recorder.select_notifications(1, 100):
            if "persons:Person" in n.topic:
                assert shared.encode() not in n.state and shared[:14].encode() not in n.state
    finally:
        one.close()
        two.close()


def test_the_index_follows_the_case(intake):
    (p,) = people(1)
    body = application_body([p])
    approved = intake.submit_application(body, CLERK)
    intake.process_cloud_event(verification_event("BenefitApproved", benefit_data(approved), approved))
    assert persons.coverage_of(intake, p) == persons.Coverage({}, {"dibao": approved})

    covered = intake.submit_application(body, CLERK)       # covered already: held
    assert intake.get_case(covered).status == "suspected_duplicate"
    assert public(stored(intake, Case.DuplicateSuspected)[-1])["reasons"] == ["covered"]
    persons.decide_duplicate(intake, covered, "withdraw", "已享受低保", CASEWORKER)
    assert intake.get_case(covered).status == "withdrawn"
    assert persons.coverage_of(intake, p).open_cases == {}

    intake.process_cloud_event(verification_event(
        "BenefitTerminated", example("BenefitTerminated", case_id=approved), approved))
    assert persons.coverage_of(intake, p) == persons.Coverage({}, {})
    refused = intake.submit_application(body, CLERK)       # covered no more
    assert intake.get_case(refused).status == "submitted"
    intake.process_cloud_event(verification_event(
        "BenefitRefused", example("BenefitRefused", case_id=refused), refused))
    not_accepted = intake.submit_application(body, CLERK)
    assert intake.get_case(not_accepted).status == "submitted"
    intake.decide_acceptance(not_accepted, "refuse", "户籍不在本辖区", None, CLERK)
    one_off = intake.submit_application({**body, "assistance_type": "linshi_jinan"}, CLERK)
    intake.process_cloud_event(verification_event("BenefitApproved", one_off_benefit_data(one_off), one_off))
    assert persons.coverage_of(intake, p) == persons.Coverage({}, {})   # one-off relief covers nobody after
    assert intake.get_case(intake.submit_application(body, CLERK)).status == "submitted"


def test_proceed_releases_the_hold_and_acceptance_follows(intake):
    ids = people(2)
    first = intake.submit_application(application_body(ids), CLERK)
    held = intake.submit_application(application_body(ids[1:]), CLERK)
    with pytest.raises(AcceptanceNotAllowed) as info:
        intake.decide_acceptance(held, "accept", "材料齐全", None, CLERK)
    assert info.value.rule == "suspected_duplicate"
    answer = persons.decide_duplicate(intake, held, "proceed", "同名不同人，核实后继续办理", COUNTY_OFFICER)
    assert answer == {"case_id": held, "decision": "proceed", "status": "submitted", "other_case_ids": [first],
                      "version": 3}
    (decided,) = stored(intake, Case.DuplicateDecided)
    assert public(decided)["decided_by"] == COUNTY_OFFICER.user_id
    assert intake.decide_acceptance(held, "accept", "材料齐全", None, CLERK)["status"] == "accepted"
    # Proceeding releases nothing: both applications stay open (never merged).
    assert set(persons.coverage_of(intake, ids[1]).open_cases) == {first, held}


# --- the emergency green channel ----------------------------------------------------------------
def test_grants_within_and_above_the_caps_through_the_use_case(intake):
    case_id = intake.submit_application(application_body(people(1), urgency="urgent"), CLERK)
    grant, new = relief.grant_relief(intake, case_id, 300000, "突发重病住院", REVIEWER, "ER-FIRST")
    assert new and grant["state"] == "granted" and grant["post_approval_due_date"] == "2026-12-02"
    again, new = relief.grant_relief(intake, case_id, 300000, "突发重病住院", REVIEWER, "ER-FIRST")
    assert (again, new) == (grant, False)
    before = log_length(intake)
    with pytest.raises(ReliefRuleBroken) as info:
        relief.grant_relief(intake, case_id, 1, "再次", CASEWORKER)
    assert (info.value.rule, info.value.details["cap_fen"]) == ("emergency_cap", 300000)
    assert log_length(intake) == before
    relief.grant_relief(intake, case_id, 1200000, "县级审批", COUNTY_OFFICER)
    granted = [public(e) for e in stored(intake, EmergencyRelief.Granted)]
    assert [(g["amount_fen"], g["approval_level"]) for g in granted] == [(300000, "township"), (1200000, "county")]
    assert granted[0]["bank_account"]["number_masked"] == "6228***********0001"
    sets = [public(e) for e in stored(intake, EmergencyRelief.DeadlineSet)]
    assert [d["deadline_id"] for d in sets] == [f"{case_id}/emergency_post_approval",
                                                f"{case_id}/emergency_post_approval/2"]
    decided = relief.decide_post_approval(intake, case_id, "ER-FIRST", "approve", "补充审批通过",
                                          Meta("reviewer-002", "reviewer", "370502101"))
    assert decided["state"] == "post_approved"
    (cleared,) = [public(e) for e in stored(intake, EmergencyRelief.DeadlineCleared)]
    assert (cleared["deadline_id"], cleared["outcome"]) == (f"{case_id}/emergency_post_approval", "met")
    assert [g["state"] for g in relief.grants_of(intake, case_id)] == ["post_approved", "granted"]
    assert relief.grants_of(intake, "C-NONE") == []


# --- the routes ---------------------------------------------------------------------------------
SECRET = "test-persons-relief-secret-not-for-production-0123456789"
CLOSED = "127.0.0.1:1"  # nothing listens: no Kafka, no Redis (no Idempotency-Key is sent)


@pytest.fixture(scope="module")
def http(tmp_path_factory) -> Iterator[FastAPI]:
    settings = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path_factory.mktemp("persons-relief")),
        "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED,
        "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
    })
    app = create_http_app(SPEC, settings)
    yield app
    app.state.runtime.side.close()
    app.state.runtime.app.close()


@pytest.fixture
def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


def bearer(role: str = "clerk", region: str = "370502", user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    return r.json()


def submit(client, ids: list[str], **overrides) -> str:
    r = client.post("/v1/applications", json=application_body(ids, **overrides), headers=bearer())
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def test_a_held_case_on_the_routes(client):
    ids = people(2)
    first = submit(client, ids)
    held = submit(client, [ids[1]])
    r = client.get(f"/v1/cases/{held}", headers=bearer("reviewer"))
    assert (r.json()["status"], r.json()["duplicate_of"]) == ("suspected_duplicate", [first])
    body = problem(client.post(f"/v1/cases/{held}/acceptance", json={"decision": "accept", "reason": "齐全"},
                               headers=bearer()), 409)
    assert (body["rule"], body["case_status"]) == ("suspected_duplicate", "suspected_duplicate")
    path = f"/v1/cases/{held}/duplicate-decision"
    decision = {"decision": "proceed", "reason": "同名不同人"}
    problem(client.post(path, json=decision, headers=bearer("clerk")), 403)
    assert problem(client.post(path, json=decision, headers=bearer("caseworker", "370502101")), 403)[
        "rule"] == "county_decides"
    problem(client.post(path, json={**decision, "decision": "merge"}, headers=bearer("caseworker")), 422)
    r = client.post(path, json=decision, headers=bearer("caseworker"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted"
    assert problem(client.post(path, json=decision, headers=bearer("caseworker")), 409)["rule"] == "not_held"
    r = client.post(f"/v1/cases/{held}/acceptance", json={"decision": "accept", "reason": "齐全"}, headers=bearer())
    assert r.status_code == 200, r.text


def test_emergency_relief_on_the_routes(client, http):
    intake = http.state.runtime.app
    case_id = submit(client, people(1), urgency="critical")
    path = f"/v1/cases/{case_id}/emergency-relief"
    before = log_length(intake)
    body = problem(client.post(path, json={"amount_fen": 300001, "reason": "突发"}, headers=bearer("reviewer")), 422)
    assert (body["rule"], body["cap_fen"], body["approval_level"]) == ("emergency_cap", 300000, "township")
    problem(client.post(path, json={"amount_fen": 0, "reason": "突发"}, headers=bearer("reviewer")), 422)
    problem(client.post(path, json={"amount_fen": 100, "reason": "突发"}, headers=bearer("clerk")), 403)
    assert log_length(intake) == before
    r = client.post(path, json={"amount_fen": 300000, "reason": "突发重病"}, headers=bearer("reviewer"))
    assert r.status_code == 201, r.text
    grant = r.json()
    assert (grant["approval_level"], grant["granted_by"], grant["state"]) == ("township", "reviewer@370502", "granted")
    decide = f"{path}/{grant['grant_id']}/post-approval"
    approve = {"decision": "approve", "reason": "补充审批通过"}
    assert problem(client.post(decide, json=approve, headers=bearer("reviewer")), 409)["rule"] == "four_eyes"
    problem(client.post(decide, json=approve, headers=bearer("caseworker", user="cw-2")), 403)
    problem(client.post(f"{path}/ER-NOPE/post-approval", json=approve, headers=bearer("reviewer", user="r-2")), 404)
    r = client.post(decide, json=approve, headers=bearer("reviewer", user="r-2"))
    assert r.status_code == 200, r.text
    assert problem(client.post(decide, json=approve, headers=bearer("county_officer")), 409)["rule"] == "decided_once"
    r = client.get(path, headers=bearer("auditor"))
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    assert (item["state"], item["decided_by"], item["post_approval_due_date"]) == (
        "post_approved", "r-2", grant["post_approval_due_date"])
    calm = submit(client, people(1))
    assert problem(client.post(f"/v1/cases/{calm}/emergency-relief", json={"amount_fen": 100, "reason": "x"},
                               headers=bearer("reviewer")), 409)["rule"] == "not_urgent"
