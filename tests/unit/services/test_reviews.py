"""Dynamic management through verification's routes and consumer (issue 11): the benefits due
for review, a review that asks the departments again and ends in a change, a suspension when the
household cannot be reached, a member's death found through the keyed fingerprint index, and
fraud confirmed by a second county officer. Bad input is problem+json naming the field or the
rule, and stores nothing."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from services.verification.api import VerificationOut
from services.verification.bootstrap import SPEC
from services.verification.domain import Verification
from services.verification.dynamic import FraudOut, ReviewDoc, ReviewsDueOut
from services.verification.outbound import OUTBOUND
from lifeline.domain.people import Person

from . import (
    approved_in_process, feed, log_length, pid, record_row, report, service_http, stored,
)

SECRET = "test-reviews-secret-0123456789abcdef0123456789"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # approved now: paid from 2026-12
TOWNSHIP = "370502101"


def bearer(role: str, region: str = "370502", user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app






def approved_case(http, ids: list[str]) -> str:
    """Checked (nobody earns anything), taken through the procedure and approved now."""
    return approved_in_process(http.state.runtime.app, ids, NOW)


def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


def show(http, case_id: str) -> dict:
    r = client(http).get(f"/v1/verifications/{case_id}", headers=bearer("admin", "000000"))
    assert r.status_code == 200, r.text
    return r.json()


def due(http, role: str = "caseworker", office: str = TOWNSHIP, **params) -> dict:
    http.state.runtime.projection.catch_up()
    r = client(http).get("/v1/reviews/due", params=params, headers=bearer(role, office))
    assert r.status_code == 200, r.text
    assert ReviewsDueOut.model_validate(r.json()).model_dump() == r.json()
    return r.json()


def answer_review(http, case_id: str, incomes: dict[str, int]) -> None:
    """Each department answers the running review's request (人社 with these incomes)."""
    app = http.state.runtime.app
    v = app.get_verification(case_id)
    for department, request_id in v.review_requests.items():
        rows = [record_row(n, monthly_income_fen=incomes.get(n, 0) if department == "hrss" else 0)
                for n in v.living_household.id_numbers]
        feed(app, "DepartmentRecordsReported", report(case_id, department, request_id, rows), case_id,
             f"partner/{department}")


def test_approved_monthly_benefits_are_listed_when_due_within_the_region(http):
    case_id = approved_case(http, [pid(311), pid(312, female=True)])
    # No wage 人社 records and both can work: half-yearly, from the approval on 2026-11-25.
    assert (show(http, case_id)["review_cycle_months"], show(http, case_id)["next_review_date"]) == (6, "2027-05-25")
    assert due(http)["items"] == []  # not due today
    listed = due(http, before="2027-05-25")
    assert listed["before"] == "2027-05-25"
    assert [(d["case_id"], d["next_review_date"], d["cycle_months"], d["benefit_status"], d["monthly_amount_fen"],
             d["review_id"]) for d in listed["items"]] == [(case_id, "2027-05-25", 6, "paying", 206000, None)]
    assert due(http, before="2027-05-24")["items"] == []
    assert due(http, "county_officer", "370502", before="2027-06-01", region=TOWNSHIP)["items"] == listed["items"]
    assert due(http, "caseworker", "370502102", before="2027-06-01")["items"] == []  # another township's office
    r = client(http).get("/v1/reviews/due", params={"region": TOWNSHIP}, headers=bearer("caseworker", "370502102"))
    assert r.status_code == 403
    r = client(http).get("/v1/reviews/due", params={"before": "2027-13-01"}, headers=bearer("caseworker"))
    assert r.status_code == 422


def test_a_review_through_the_route_asks_the_departments_again_and_adjusts_from_the_next_period(http):
    ids = [pid(313), pid(314, female=True)]
    case_id = approved_case(http, ids)
    app = http.state.runtime.app
    requested_before = len(stored(app, Verification.Requested))
    r = client(http).post(f"/v1/reviews/{case_id}", json={"reason": "半年复核"}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 201, r.text
    review = r.json()
    assert ReviewDoc.model_validate(review).model_dump() == review
    assert (review["state"], review["scheduled_for"], review["departments_answered"]) == ("open", "2027-05-25", [])
    requests = stored(app, Verification.ReviewRequested)
    assert len(requests) == len(review["departments_requested"])
    assert {OUTBOUND(e).name for e in requests} == {"VerificationRequested"}
    assert len(stored(app, Verification.Requested)) == requested_before  # the first check's stay as they were
    r = client(http).post(f"/v1/reviews/{case_id}", json={}, headers=bearer("caseworker", TOWNSHIP))
    assert (r.status_code, r.json()["rule"]) == (409, "review_open")

    answer_review(http, case_id, {ids[0]: 80000})
    http.state.runtime.projection.catch_up()
    r = client(http).get("/v1/reviews", params={"case_id": case_id}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    [done] = r.json()["items"]
    assert (done["outcome"], done["monthly_amount_fen"], done["from_period"], done["next_review_date"]) == (
        "adjusted", 126000, "2026-12", "2027-11-25")
    assert done["departments_answered"] == done["departments_requested"]
    view = show(http, case_id)
    assert VerificationOut.model_validate(view).model_dump(mode="json") == view
    assert (view["current_monthly_amount_fen"], view["benefit_changes"][-1]["from_period"]) == (126000, "2026-12")
    assert [(d["next_review_date"], d["monthly_amount_fen"], d["review_id"])
            for d in due(http, before="2027-12-31")["items"]] == [("2027-11-25", 126000, None)]


@pytest.mark.parametrize(("body", "status", "where"), [
    ({"grace_months": 6}, 422, "#/grace_months"),
    ({"grace_reason": "bogus"}, 422, "#/grace_reason"),
    ({"grace_reason": "epidemic", "grace_months": 7}, 422, "grace_months"),
    ({"grace_reason": "public_employment", "grace_months": 12}, 422, "grace_months"),
    ({"reason": ""}, 422, "#/reason"),
    ({"reason": "x", "by": "me"}, 422, "#/by"),
])
def test_a_bad_review_request_is_problem_json_and_stores_nothing(http, body, status, where):
    case_id = approved_case(http, [pid(315)])
    app = http.state.runtime.app
    before = log_length(app)
    r = client(http).post(f"/v1/reviews/{case_id}", json=body, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert where in [e.get("pointer") for e in problem.get("errors", [])] or problem.get("rule") == where, problem
    assert log_length(app) == before


def test_who_may_start_a_review_and_on_what(http):
    case_id = approved_case(http, [pid(316)])
    assert client(http).post(f"/v1/reviews/{case_id}", json={}, headers=bearer("clerk", TOWNSHIP)).status_code == 403
    assert client(http).post(f"/v1/reviews/{case_id}", json={},
                             headers=bearer("caseworker", "370502102")).status_code == 403
    assert client(http).post("/v1/reviews/C-NOSUCHCASE", json={}, headers=bearer("caseworker")).status_code == 404
    r = client(http).post(f"/v1/reviews/{case_id}/suspension", json={"reason": "联系不上"},
                          headers=bearer("caseworker", TOWNSHIP))
    assert (r.status_code, r.json()["rule"]) == (409, "review_not_open")


def test_a_review_concluded_with_a_suspension(http):
    case_id = approved_case(http, [pid(317), pid(318, female=True)])
    assert client(http).post(f"/v1/reviews/{case_id}", json={}, headers=bearer("caseworker", TOWNSHIP)).status_code == 201
    r = client(http).post(f"/v1/reviews/{case_id}/suspension", json={"reason": "多次入户未找到申请人"},
                          headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    assert (r.json()["outcome"], r.json()["from_period"], r.json()["next_review_date"]) == (
        "suspended", "2026-12", "2027-05-25")
    assert show(http, case_id)["benefit_status"] == "suspended"
    assert [(d["benefit_status"], d["next_review_date"]) for d in due(http, before="2027-12-31")["items"]] == [
        ("suspended", "2027-05-25")]


def death(id_number: str, record_id: str, day: str = "2026-12-03") -> dict:
    return {"record_id": record_id, "department": "public_security", "id_number": id_number, "name": "王乐",
            "date_of_death": day, "reported_at": "2026-12-04T09:00:00+08:00"}


def test_a_death_is_found_by_its_fingerprint_and_adjusts_the_household_once(http):
    ids = [pid(321), pid(322, female=True), pid(323)]
    case_id = approved_case(http, ids)
    app = http.state.runtime.app
    # The index holds keyed fingerprints only: no ID number is in its events.
    people = stored(app, Person.Registered, Person.CaseLinked)
    assert people and not any(n in str(vars(e)) for e in people for n in ids)
    http.state.runtime.projection.catch_up()
    with http.state.runtime.side.transaction() as tx:
        assert not any(n in str(doc) for _, _, _, doc in tx.all() for n in ids)

    feed(app, "DeathReported", death(ids[2], "PS-DEATH-1"), "PS-DEATH-1", "partner/public_security")
    changes = stored(app, Verification.BenefitChanged)
    assert [(type(e).__name__, e.from_period, e.monthly_amount_fen) for e in changes] == [
        ("BenefitAdjusted", "2027-01", 206000)]
    # The same record again (another delivery), the same death from another department, a stranger's.
    feed(app, "DeathReported", death(ids[2], "PS-DEATH-1"), "PS-DEATH-1", "partner/public_security")
    feed(app, "DeathReported", {**death(ids[2], "CA-DEATH-1"), "department": "civil_affairs"}, "CA-DEATH-1",
         "partner/civil_affairs")
    feed(app, "DeathReported", death(pid(324), "PS-DEATH-2"), "PS-DEATH-2", "partner/public_security")
    assert len(stored(app, Verification.BenefitChanged)) == 1
    assert [d["member"] for d in show(http, case_id)["deaths"]] == ["王*"]


def test_the_death_of_the_only_member_terminates(http):
    ids = [pid(325)]
    case_id = approved_case(http, ids)
    app = http.state.runtime.app
    feed(app, "DeathReported", death(ids[0], "PS-DEATH-3", "2026-11-30"), "PS-DEATH-3", "partner/public_security")
    [ended] = stored(app, Verification.BenefitTerminated)
    assert (ended.case_id, ended.from_period) == (case_id, "2026-12")
    http.state.runtime.projection.catch_up()
    assert due(http, before="2030-01-01")["items"] == []  # nothing to review any more


def test_fraud_is_confirmed_by_a_second_county_officer_only(http):
    case_id = approved_case(http, [pid(331), pid(332, female=True)])
    app = http.state.runtime.app
    zhang, li = bearer("county_officer", "370502", "officer-zhang"), bearer("county_officer", "370502", "officer-li")
    body = {"kinds": ["concealment"], "evidence": "隐瞒配偶工资收入", "fraud_since": "2026-06-01"}
    for bad, where in (({**body, "kinds": []}, "#/kinds"), ({**body, "kinds": ["forgery", "forgery"]}, "#/kinds"),
                       ({**body, "kinds": ["lying"]}, "#/kinds/0"), ({**body, "fraud_since": "2026-11-26"}, "date_in_future"),
                       ({**body, "address": "x"}, "#/address")):
        before = log_length(app)
        r = client(http).post(f"/v1/cases/{case_id}/fraud", json=bad, headers=zhang)
        assert r.status_code == 422, r.text
        assert where in [e.get("pointer") for e in r.json().get("errors", [])] or r.json().get("rule") == where
        assert log_length(app) == before
    assert client(http).post(f"/v1/cases/{case_id}/fraud", json=body, headers=bearer("reviewer")).status_code == 403
    assert client(http).post(f"/v1/cases/{case_id}/fraud", json=body,
                             headers=bearer("county_officer", "370602")).status_code == 403
    r = client(http).post(f"/v1/cases/{case_id}/fraud", json=body, headers=zhang)
    assert r.status_code == 201, r.text
    assert FraudOut.model_validate(r.json()).model_dump() == r.json()
    assert (r.json()["state"], r.json()["reported_by"]) == ("reported", "officer-zhang")

    before = log_length(app)
    r = client(http).post(f"/v1/cases/{case_id}/fraud/confirm", headers=zhang)
    assert (r.status_code, r.json()["rule"]) == (409, "four_eyes")
    assert r.headers["content-type"].startswith("application/problem+json")
    assert log_length(app) == before
    r = client(http).post(f"/v1/cases/{case_id}/fraud/confirm", headers=li)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["decided_by"], r.json()["terminated_from_period"]) == (
        "recorded", "officer-li", "2026-12")
    [recorded] = stored(app, Verification.FraudRecorded)
    data = OUTBOUND(recorded).data
    assert data["applicant_id_number_masked"] == pid(331)[:6] + "*" * 8 + pid(331)[-4:]
    assert (data["reported_by"], data["confirmed_by"], data["fraud_kinds"]) == (
        "officer-zhang", "officer-li", ["concealment"])
    assert show(http, case_id)["benefit_status"] == "terminated"


def test_fraud_found_during_a_grace_period_ends_the_benefit_from_the_next_period(http):
    ids = [pid(333), pid(334, female=True)]
    case_id = approved_case(http, ids)
    app = http.state.runtime.app
    r = client(http).post(f"/v1/reviews/{case_id}", json={"reason": "年度复核", "grace_reason": "public_employment"},
                          headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 201, r.text
    answer_review(http, case_id, {ids[0]: 600000})  # well above the line: 24 months' grace, then no more
    graced = show(http, case_id)["benefit_changes"]
    assert [(c["change"], c["from_period"]) for c in graced] == [("terminate", "2028-12")]

    zhang, li = bearer("county_officer", "370502", "officer-zhang"), bearer("county_officer", "370502", "officer-li")
    body = {"kinds": ["forgery"], "evidence": "伪造推荐就业证明", "fraud_since": "2026-10-01"}
    assert client(http).post(f"/v1/cases/{case_id}/fraud", json=body, headers=zhang).status_code == 201
    r = client(http).post(f"/v1/cases/{case_id}/fraud/confirm", headers=li)
    assert r.status_code == 200, r.text
    assert r.json()["terminated_from_period"] == "2026-12"
    # The grace's end stays in the log; fraud ends the benefit sooner, and payment takes the earlier end.
    ended = stored(app, Verification.BenefitTerminated)
    assert [e.from_period for e in ended] == ["2028-12", "2026-12"]
    assert OUTBOUND(ended[-1]).name == "BenefitTerminated"
    [recorded] = stored(app, Verification.FraudRecorded)
    assert recorded.terminated_from_period == "2026-12"
