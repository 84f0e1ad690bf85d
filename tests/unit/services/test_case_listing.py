"""Intake's `GET /v1/cases` in process (issue 15): the cases a caller may see from the case read
model, filtered by status, region and assistance type, the newest application first, bounded by
`limit` with the `total`; region scoping; bad filters are problem+json naming the parameter; and
reading changes nothing. No broker, no Redis."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.regions import scope_prefix
from lifeline.stores.sidestore import SideStore
from services.intake.bootstrap import SPEC
from services.intake.listing import CasesOut
from services.intake.outreach_api import PERSON_EXAMPLE, REPORTER_EXAMPLE

from . import application_body, log_length, pid, problem, service_http

SECRET = "test-case-listing-secret-0123456789abcdef0123"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI)
COUNTY, TOWNSHIP, OTHER_TOWNSHIP = "370502", "370502101", "370502102"
VILLAGE, OTHER_VILLAGE = "370502101001", "370502102001"


def bearer(role: str, region: str = COUNTY) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    with service_http(SPEC, tmp_path_factory.mktemp("case-listing"), SECRET, NOW) as app:
        yield app


@pytest.fixture(scope="module")
def cases(http) -> dict[str, str]:
    """Five cases, an hour apart: submitted, accepted, waiting for materials (township 101, 低保),
    a 特困 case in township 102, and one discovered (reserved by a report, not applied for)."""
    client = TestClient(http, raise_server_exceptions=False)
    clock = http.state.runtime.app.clock
    made: dict[str, str] = {}
    for n, (name, region, kind) in enumerate((("submitted", VILLAGE, "dibao"), ("accepted", VILLAGE, "dibao"),
                                              ("materials", VILLAGE, "dibao"), ("other", OTHER_VILLAGE, "tekun"))):
        clock.set(NOW + timedelta(hours=n))
        body = application_body([pid(10 + n), pid(10 + n, female=True)], region_code=region, assistance_type=kind)
        r = client.post("/v1/applications", json=body, headers=bearer("clerk"))
        assert r.status_code == 201, r.text
        made[name] = r.json()["case_id"]
    for name, decision in (("accepted", {"decision": "accept", "reason": "材料齐全"}),
                           ("materials", {"decision": "request_materials", "reason": "缺身份证和授权书",
                                          "missing_materials": ["resident_id", "authorisation"]})):
        r = client.post(f"/v1/cases/{made[name]}/acceptance", json=decision, headers=bearer("clerk"))
        assert r.status_code == 200, r.text
    r = client.post("/v1/discovery-reports", headers=bearer("clerk"), json={
        "reporter": REPORTER_EXAMPLE, "person": {**PERSON_EXAMPLE, "region_code": VILLAGE},
        "seen": "独居老人，无人照料", "urgency": "urgent"})
    assert r.status_code == 201, r.text
    made["discovered"] = r.json()["case_id"]
    clock.set(NOW + timedelta(hours=5))
    return made


def listing(http, role: str = "caseworker", region: str = COUNTY, **params) -> dict:
    r = TestClient(http, raise_server_exceptions=False).get("/v1/cases", params=params, headers=bearer(role, region))
    assert r.status_code == 200, r.text
    assert CasesOut.model_validate(r.json()).model_dump() == r.json()
    return r.json()


def ids(answer: dict) -> list[str]:
    return [item["case_id"] for item in answer["items"]]


def test_the_county_sees_every_case_the_newest_application_first_with_the_clerks_fields(http, cases):
    answer = listing(http)
    assert ids(answer) == [cases["other"], cases["materials"], cases["accepted"], cases["submitted"],
                           cases["discovered"]]  # discovered: not applied for, last
    assert (answer["total"], answer["limit"]) == (5, 200)
    by_id = {item["case_id"]: item for item in answer["items"]}
    assert by_id[cases["materials"]] == {
        "case_id": cases["materials"], "status": "materials_requested", "region_code": VILLAGE,
        "assistance_type": "dibao", "applicant_name_masked": "王*明", "members_count": 2, "urgency": "normal",
        "submitted_at": (NOW + timedelta(hours=2)).isoformat(), "accepted_at": None,
        "missing_materials": ["resident_id", "authorisation"], "verification_outcome": None,
        "discovery_report_id": None,
    }
    assert (by_id[cases["accepted"]]["status"], by_id[cases["accepted"]]["accepted_at"]) == (
        "accepted", (NOW + timedelta(hours=3)).isoformat())  # decided when the last one was submitted
    discovered = by_id[cases["discovered"]]
    assert (discovered["status"], discovered["submitted_at"], discovered["applicant_name_masked"],
            discovered["assistance_type"]) == ("discovered", None, None, None)
    assert discovered["discovery_report_id"].startswith("D-")
    # The same figures as the case itself shows a clerk.
    client = TestClient(http, raise_server_exceptions=False)
    for case_id, item in by_id.items():
        if case_id == cases["discovered"]:
            continue
        case = client.get(f"/v1/cases/{case_id}", headers=bearer("clerk")).json()
        assert {k: case[k] for k in ("status", "region_code", "assistance_type", "members_count", "urgency",
                                     "submitted_at", "accepted_at", "missing_materials")} == {
            k: item[k] for k in ("status", "region_code", "assistance_type", "members_count", "urgency",
                                 "submitted_at", "accepted_at", "missing_materials")}


def test_filters_status_region_and_assistance_type(http, cases):
    assert ids(listing(http, status="materials_requested")) == [cases["materials"]]
    assert ids(listing(http, status="accepted")) == [cases["accepted"]]
    assert ids(listing(http, status="approved")) == []
    assert ids(listing(http, assistance_type="tekun")) == [cases["other"]]
    assert ids(listing(http, region=OTHER_TOWNSHIP)) == [cases["other"]]
    assert ids(listing(http, region=VILLAGE, status="submitted")) == [cases["submitted"]]
    assert ids(listing(http, region=TOWNSHIP, assistance_type="dibao")) == [
        cases["materials"], cases["accepted"], cases["submitted"]]


def test_limit_bounds_the_items_and_total_counts_them_all(http, cases):
    answer = listing(http, limit=2)
    assert (ids(answer), answer["total"], answer["limit"]) == ([cases["other"], cases["materials"]], 5, 2)


def test_a_caller_sees_only_its_own_region(http, cases):
    township = listing(http, "clerk", TOWNSHIP)
    assert set(ids(township)) == {cases["submitted"], cases["accepted"], cases["materials"], cases["discovered"]}
    assert ids(listing(http, "reviewer", OTHER_TOWNSHIP)) == [cases["other"]]
    elsewhere = listing(http, "caseworker", "320583")
    assert (elsewhere["items"], elsewhere["total"]) == ([], 0)
    assert listing(http, "auditor", "000000")["total"] == 5
    client = TestClient(http, raise_server_exceptions=False)
    problem(client.get("/v1/cases", params={"region": TOWNSHIP}, headers=bearer("clerk", OTHER_TOWNSHIP)), 403)
    problem(client.get("/v1/cases", params={"region": COUNTY}, headers=bearer("clerk", TOWNSHIP)), 403)
    problem(client.get("/v1/cases", headers=bearer("partner")), 403)
    problem(client.get("/v1/cases"), 401)


@pytest.mark.parametrize("params, parameter", [
    ({"status": "pending"}, "status"),
    ({"assistance_type": "pension"}, "assistance_type"),
    ({"region": "3705021"}, "region"),
    ({"region": "990000"}, "region"),  # well-formed, not a division
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
])
def test_a_bad_filter_is_422_naming_the_parameter(http, cases, params, parameter):
    r = TestClient(http, raise_server_exceptions=False).get("/v1/cases", params=params, headers=bearer("clerk"))
    body = problem(r, 422, parameter)
    assert "pension" not in r.text and "pending" not in r.text  # nothing sent is echoed
    assert body["title"] == "Request validation failed"


def test_listing_changes_nothing(http, cases):
    before = log_length(http.state.runtime.app)
    listing(http)
    listing(http, status="accepted")
    assert log_length(http.state.runtime.app) == before


def test_find_prefix_reads_the_documents_whose_region_ref_lies_within():
    store = SideStore.in_memory()
    refs = {"a": "370502101001", "b": "370502102001", "c": "370503101001", "d": "37050", "e": "380000",
            "f": "990101001", "g": "99"}
    with store.transaction() as tx:
        for key, ref in refs.items():
            tx.put("case", key, {"key": key}, ref=ref)
        tx.put("other", "x", {"key": "x"}, ref="370502101001")

        def keys(prefix: str) -> list[str]:
            return [d["key"] for d in tx.find_prefix("case", prefix)]

        assert keys(scope_prefix("370502")) == ["a", "b"]
        assert keys(scope_prefix("370502101")) == ["a"]
        assert keys(scope_prefix("370000")) == ["a", "b", "c", "d"]
        assert keys(scope_prefix("000000")) == list(refs)
        assert keys("99") == ["f", "g"]  # no bound above the last prefix of its length
        with pytest.raises(ValueError):
            tx.find_prefix("case", "37%")
