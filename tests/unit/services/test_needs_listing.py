"""Charity's `GET /v1/needs` without a case (issue 15): the needs a caller may see, filtered by
status and region, the newest first, bounded by `limit` with the `total`; `?case_id=` answers
{case_id, items} exactly as before and takes no other filter; region scoping; bad filters are
problem+json naming the parameter; reading changes nothing. No broker, no Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lifeline.http.app import in_region
from lifeline.http.auth import Principal, Role
from services.charity.api import NeedDoc
from services.charity.federation import publish_uncovered

from services.charity.bootstrap import SPEC

from . import log_length, service_http
from .test_charity import COUNTY, NOW, OTHER_TOWNSHIP, SECRET, TOWNSHIP, bearer, client, open_need, problem

OTHER_VILLAGE = "370502102001"


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app


@pytest.fixture
def needs(http) -> dict[str, str]:
    """Four needs opened an hour apart: fulfilled-to-be, published (consent, no fund), open
    (no consent) in township 101, and one open in township 102."""
    runtime = http.state.runtime
    made = {}
    for n, (name, region, consent) in enumerate((("first", "370502101001", False), ("shared", "370502101001", True),
                                                 ("plain", "370502101001", False), ("other", OTHER_VILLAGE, False))):
        runtime.app.clock.set(NOW + timedelta(hours=n))
        made[name] = open_need(http, region=region, consent=consent)["need_id"]
    runtime.projection.catch_up()
    assert publish_uncovered(runtime.app, runtime.side) == [made["shared"]]
    runtime.app.clock.set(NOW + timedelta(hours=5))
    return made


def listing(http, role: str = "caseworker", region: str = COUNTY, **params) -> dict:
    r = client(http).get("/v1/needs", params=params, headers=bearer(role, region))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"items", "total", "limit"}
    for item in r.json()["items"]:
        assert NeedDoc.model_validate(item).model_dump() == item
    return r.json()


def ids(answer: dict) -> list[str]:
    return [item["need_id"] for item in answer["items"]]


def test_needs_in_the_callers_region_the_newest_first(http, needs):
    answer = listing(http)
    assert ids(answer) == [needs["other"], needs["plain"], needs["shared"], needs["first"]]
    assert (answer["total"], answer["limit"]) == (4, 200)
    assert [item["opened_at"] for item in answer["items"]] == [
        (NOW + timedelta(hours=n)).isoformat() for n in (3, 2, 1, 0)]
    assert ids(listing(http, "caseworker", TOWNSHIP)) == [needs["plain"], needs["shared"], needs["first"]]
    assert ids(listing(http, "reviewer", OTHER_TOWNSHIP)) == [needs["other"]]
    assert listing(http, "caseworker", "320583") == {"items": [], "total": 0, "limit": 200}
    # Every need the caller's region holds, as the read model keeps it.
    runtime = http.state.runtime
    with runtime.side.transaction() as tx:
        docs = [d for _, _, _, d in tx.all("need")]
    township = Principal("cw", Role.caseworker, TOWNSHIP, TOWNSHIP)
    assert sorted(listing(http, "caseworker", TOWNSHIP)["items"], key=lambda d: d["need_id"]) == sorted(
        in_region(docs, township, None), key=lambda d: d["need_id"])


def test_status_and_region_filters_and_limit(http, needs):
    assert ids(listing(http, status="published")) == [needs["shared"]]
    assert ids(listing(http, status="open")) == [needs["other"], needs["plain"], needs["first"]]
    assert listing(http, status="fulfilled")["items"] == []
    assert ids(listing(http, region=OTHER_TOWNSHIP)) == [needs["other"]]
    assert ids(listing(http, region=TOWNSHIP, status="open")) == [needs["plain"], needs["first"]]
    bounded = listing(http, limit=2)
    assert (ids(bounded), bounded["total"], bounded["limit"]) == ([needs["other"], needs["plain"]], 4, 2)


def test_a_foreign_region_a_bad_filter_or_a_wrong_role_is_refused(http, needs):
    problem(client(http).get("/v1/needs", params={"region": TOWNSHIP}, headers=bearer("caseworker", OTHER_TOWNSHIP)),
            403)
    problem(client(http).get("/v1/needs", headers=bearer("charity_federation", "000000")), 403)
    problem(client(http).get("/v1/needs"), 401)
    for params, parameter in (({"status": "matched"}, "status"), ({"region": "37050210"}, "region"),
                              ({"region": "990000"}, "region"), ({"limit": "0"}, "limit"),
                              ({"case_id": "C"}, "case_id")):
        r = client(http).get("/v1/needs", params=params, headers=bearer("caseworker"))
        body = problem(r, 422)
        assert [(e.get("parameter"), e.get("in")) for e in body["errors"]] == [(parameter, "query")], body
        assert "matched" not in r.text


def test_a_cases_needs_answer_as_before_and_take_no_other_filter(http, needs):
    app = http.state.runtime.app
    data = open_need(http)
    r = client(http).get("/v1/needs", params={"case_id": data["case_id"]}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["case_id", "items"] and r.json()["case_id"] == data["case_id"]
    assert [d["need_id"] for d in r.json()["items"]] == [data["need_id"]]
    r = client(http).get("/v1/needs", params={"case_id": data["case_id"]}, headers=bearer("caseworker", OTHER_TOWNSHIP))
    assert r.json() == {"case_id": data["case_id"], "items": []}
    before = log_length(app)
    r = client(http).get("/v1/needs", params={"case_id": data["case_id"], "status": "open", "region": TOWNSHIP},
                         headers=bearer("caseworker", TOWNSHIP))
    body = problem(r, 422)
    assert [e["parameter"] for e in body["errors"]] == ["status", "region"]
    listing(http)
    assert log_length(app) == before  # reading records nothing
