"""POST /v1/verifications/{case_id}/benefit-changes: the route adjusts, suspends, resumes and
terminates an approved monthly benefit; bad input is problem+json naming the field or the rule,
and changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from services.verification.api import BenefitChangeOut, VerificationOut
from services.verification.bootstrap import SPEC

from . import (
    service_http,
    REVIEWER, accepted_data, cloud, log_length, new_case_id, pid, ready_to_decide, record_row, report,
    submitted_data,
)

SECRET = "test-benefit-changes-secret-0123456789abcdef"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # an approval now pays from 2026-12
IDS = [pid(301), pid(302, female=True)]
PATH = "/v1/verifications/{}/benefit-changes"


def bearer(role: str, region: str = "370502") -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app


def case(http, *, approve: bool = True) -> str:
    """A case whose check is complete; approved now (206,000 fen a month from 2026-12) unless not."""
    app = http.state.runtime.app
    case_id = new_case_id()
    assert app.process_cloud_event(cloud("ApplicationSubmitted", submitted_data(case_id, IDS),
                                         subject=case_id, source="lifeline/intake"))
    accepted_at = (NOW - timedelta(days=14)).isoformat()
    assert app.process_cloud_event(cloud("ApplicationAccepted", accepted_data(case_id, accepted_at),
                                         subject=case_id, source="lifeline/intake"))
    for department, request_id in app.get_verification(case_id).requests.items():
        rows = [record_row(n) for n in IDS]
        app.process_cloud_event(cloud("DepartmentRecordsReported", report(case_id, department, request_id, rows),
                                      subject=case_id, source=f"partner/{department}"))
    if approve:
        v = app.get_verification(case_id)
        ready_to_decide(v, NOW)
        app.save(v)
        app.decide(case_id, "approve", "符合低保条件", REVIEWER)
    return case_id


def post(http, case_id: str, body: dict, role: str = "reviewer", region: str = "370502"):
    return TestClient(http, raise_server_exceptions=False).post(
        PATH.format(case_id), json=body, headers=bearer(role, region))


def show(http, case_id: str) -> dict:
    r = TestClient(http, raise_server_exceptions=False).get(f"/v1/verifications/{case_id}", headers=bearer("admin"))
    assert r.status_code == 200, r.text
    return r.json()


def work_list_document(http, case_id: str) -> dict:
    runtime = http.state.runtime
    runtime.projection.catch_up()
    with runtime.side.transaction() as tx:
        return tx.get("verification", case_id)


def test_adjust_suspend_resume_terminate_through_the_route(http):
    case_id = case(http)
    view = show(http, case_id)
    assert (view["benefit_status"], view["current_monthly_amount_fen"], view["benefit_changes"]) == ("paying", 206000, [])
    benefit_id = view["benefit"]["benefit_id"]
    steps = [
        ({"change": "adjust", "from_period": "2027-01", "monthly_amount_fen": 150000, "reason": "收入提高"},
         "paying", 150000),
        ({"change": "suspend", "from_period": "2027-02", "reason": "情况待查"}, "suspended", 150000),
        ({"change": "resume", "from_period": "2027-04", "reason": "情况查实"}, "paying", 150000),
        ({"change": "terminate", "from_period": "2027-06", "reason": "收入超标"}, "terminated", 150000),
    ]
    for roles, (body, status, amount) in zip(("reviewer", "county_officer", "admin", "reviewer"), steps):
        r = post(http, case_id, body, roles)
        assert r.status_code == 200, r.text
        assert r.json() == {"case_id": case_id, "benefit_id": benefit_id, "change": body["change"],
                            "from_period": body["from_period"], "status": status, "monthly_amount_fen": amount}
        assert BenefitChangeOut.model_validate(r.json()).model_dump() == r.json()
        view = show(http, case_id)
        assert (view["benefit_status"], view["current_monthly_amount_fen"]) == (status, amount)
        document = work_list_document(http, case_id)
        assert (document["state"], document["benefit_status"], document["monthly_amount_fen"]) == (
            "approved", status, amount)
    assert VerificationOut.model_validate(view).model_dump(mode="json") == view
    assert [c["change"] for c in view["benefit_changes"]] == ["adjust", "suspend", "resume", "terminate"]
    assert view["benefit"]["monthly_amount_fen"] == 206000  # the approval as it was


@pytest.mark.parametrize(("body", "pointer"), [
    ({"change": "adjust", "from_period": "2027-01", "reason": "x"}, "#/monthly_amount_fen"),
    ({"change": "suspend", "from_period": "2027-01", "monthly_amount_fen": 100000, "reason": "x"},
     "#/monthly_amount_fen"),
    ({"change": "adjust", "from_period": "2027-01", "monthly_amount_fen": 0, "reason": "x"}, "#/monthly_amount_fen"),
    ({"change": "adjust", "from_period": "2027-01", "monthly_amount_fen": 1.5, "reason": "x"},
     "#/monthly_amount_fen"),
    ({"change": "pause", "from_period": "2027-01", "reason": "x"}, "#/change"),
    ({"change": "suspend", "from_period": "2027-13", "reason": "x"}, "#/from_period"),
    ({"change": "suspend", "from_period": "２０２７-01", "reason": "x"}, "#/from_period"),
    ({"change": "suspend", "from_period": "2027-01", "reason": " "}, "#/reason"),
    ({"change": "suspend", "from_period": "2027-01"}, "#/reason"),
    ({"change": "suspend", "from_period": "2027-01", "reason": "x", "by": "me"}, "#/by"),
])
def test_a_malformed_body_is_422_naming_the_field_and_changes_nothing(http, body, pointer):
    case_id = case(http)
    before = log_length(http.state.runtime.app)
    r = post(http, case_id, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert pointer in [e.get("pointer") for e in r.json()["errors"]], r.json()
    assert log_length(http.state.runtime.app) == before


@pytest.mark.parametrize(("before", "body", "status", "rule"), [
    ((), {"change": "suspend", "from_period": "2026-11", "reason": "x"}, 422, "period_before_first_period"),
    ((), {"change": "adjust", "from_period": "2027-01", "monthly_amount_fen": 206000, "reason": "x"},
     422, "adjustment_unchanged"),
    ((), {"change": "resume", "from_period": "2027-01", "reason": "x"}, 409, "benefit_not_suspended"),
    (({"change": "suspend", "from_period": "2027-03", "reason": "x"},),
     {"change": "suspend", "from_period": "2027-04", "reason": "x"}, 409, "benefit_not_paying"),
    (({"change": "suspend", "from_period": "2027-03", "reason": "x"},),
     {"change": "resume", "from_period": "2027-02", "reason": "x"}, 422, "period_before_last_change"),
    (({"change": "terminate", "from_period": "2027-03", "reason": "x"},),
     {"change": "adjust", "from_period": "2027-04", "monthly_amount_fen": 1000, "reason": "x"}, 409,
     "benefit_terminated"),
])
def test_a_change_the_rules_refuse_is_problem_json_naming_the_rule_and_changes_nothing(http, before, body, status, rule):
    case_id = case(http)
    for earlier in before:
        assert post(http, case_id, earlier).status_code == 200
    app = http.state.runtime.app
    length, view = log_length(app), show(http, case_id)
    r = post(http, case_id, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["rule"] == rule and r.json()["title"] == "Benefit not changed"
    assert log_length(app) == length and show(http, case_id) == view


def test_no_approved_benefit_no_wrong_role_no_other_region(http):
    body = {"change": "suspend", "from_period": "2027-01", "reason": "x"}
    undecided = case(http, approve=False)
    r = post(http, undecided, body)
    assert (r.status_code, r.json()["rule"]) == (409, "monthly_benefit")
    approved = case(http)
    app = http.state.runtime.app
    length = log_length(app)
    for role, region, status in (("caseworker", "370502", 403), ("clerk", "370502", 403),
                                 ("reviewer", "370503", 403)):
        r = post(http, approved, body, role, region)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert log_length(app) == length
    assert post(http, "C-NOSUCHCASE", body).status_code == 404
