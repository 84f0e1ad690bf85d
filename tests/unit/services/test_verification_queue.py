"""Verification's `GET /v1/verifications` in process (issue 15): each accepted case's stage, the
next step and whose work it is, the deadline due first with its state on injected days (Asia/
Shanghai), the reviewer's queue (`?stage=decision`: exactly the cases Verification.check_decidable
lets another person decide now) with the four-eyes flag the decision route enforces; region
scoping, bad filters as problem+json naming the parameter; the read model it answers from agrees
with the aggregates and with a rebuild from the log. No broker, no Redis."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from lifeline.stores.projection import compare, rebuild
from services.verification.application import project
from services.verification.bootstrap import SPEC
from services.verification.domain import ProcedureError
from services.verification.queue import VerificationsOut

from . import (
    SURVEYORS, SYSTEM, accepted_data, feed, log_length, new_case_id, pid, problem, record_row, report, service_http,
    submitted_data,
)

SECRET = "test-verification-queue-secret-0123456789abcdef"
COUNTY, TOWNSHIP, OTHER_TOWNSHIP = "370502", "370502101", "370502102"
OTHER_VILLAGE = "370502102001"


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=SHANGHAI)


ACCEPTED = at("2026-11-23")      # a Monday: the statutory clocks start here
CHECKED = at("2026-11-24")       # the departments answer
LISTED = at("2026-12-04")        # when the stages are looked at
CW1 = Meta("cw-1", "caseworker", TOWNSHIP)
RV1 = Meta("rv-1", "reviewer", TOWNSHIP)
RV9 = Meta("rv-9", "reviewer", TOWNSHIP)
_people = iter(range(1, 499))


def bearer(role: str, region: str = COUNTY, user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, ACCEPTED) as app:
        # One injected clock for the use cases and the routes.
        app.state.runtime.clock = app.state.runtime.app.clock = FixedClock(ACCEPTED)
        yield app


def clock(http) -> FixedClock:
    return http.state.runtime.clock


def accepted(http, region_code: str = "370502101001", checked: bool = True) -> str:
    """A case accepted at ACCEPTED; with `checked`, every department answers at CHECKED (nobody
    earns anything: eligible, no warning)."""
    app = http.state.runtime.app
    n = next(_people)
    ids = [pid(n), pid(n, female=True)]
    case_id = new_case_id()
    clock(http).set(ACCEPTED)
    feed(app, "ApplicationSubmitted", submitted_data(case_id, ids, region_code=region_code), case_id,
         "lifeline/intake")
    feed(app, "ApplicationAccepted", accepted_data(case_id, ACCEPTED.isoformat(), region_code), case_id,
         "lifeline/intake")
    if checked:
        clock(http).set(CHECKED)
        for department, request_id in app.get_verification(case_id).requests.items():
            feed(app, "DepartmentRecordsReported",
                 report(case_id, department, request_id, [record_row(i) for i in ids]), case_id,
                 f"partner/{department}")
    return case_id


def step(http, case_id: str, take) -> None:
    app = http.state.runtime.app
    v = app.get_verification(case_id)
    take(v)
    app.save(v)


def survey(v, moment: datetime, by: Meta = CW1) -> None:
    v.record_survey(SURVEYORS, moment.date(), "入户调查情况与申报一致", moment, by)


@pytest.fixture
def cases(http) -> dict[str, str]:
    """One case at each stage on LISTED, in township 370502101; `elsewhere` in township 102."""
    made = {"survey": accepted(http, checked=False)}
    made["check"] = accepted(http, checked=False)
    step(http, made["check"], lambda v: survey(v, at("2026-11-24")))
    made["initial_review"] = accepted(http)
    step(http, made["initial_review"], lambda v: survey(v, at("2026-11-24")))
    made["notice"] = accepted(http)
    step(http, made["notice"], lambda v: (survey(v, at("2026-11-24")),
                                          v.propose("include", "拟纳入", at("2026-11-25"), CW1)))
    made["notice_running"] = accepted(http)
    step(http, made["notice_running"], lambda v: (survey(v, at("2026-11-24")),
                                                  v.propose("include", "拟纳入", at("2026-11-30"), CW1),
                                                  v.post_notice("P-RUN", at("2026-12-01"), CW1)))
    made["appraisal"] = accepted(http)
    step(http, made["appraisal"], lambda v: (survey(v, at("2026-11-24")),
                                             v.propose("include", "拟纳入", at("2026-11-25"), CW1),
                                             v.post_notice("P-OBJ", at("2026-11-25"), CW1),
                                             v.raise_objection("OBJ-1", "P-OBJ", "该户有车辆", None,
                                                               at("2026-11-27"), at("2026-11-27"), SYSTEM)))
    # Surveyed by a reviewer, proposed by a caseworker; the notice ended on 2026-12-02.
    made["decide_include"] = accepted(http)
    step(http, made["decide_include"], lambda v: (survey(v, at("2026-11-24"), RV1),
                                                  v.propose("include", "拟纳入", at("2026-11-25"), CW1),
                                                  v.post_notice("P-INC", at("2026-11-25"), CW1)))
    # A proposed refusal goes to the review group at once (no notice).
    made["decide_refuse"] = accepted(http)
    step(http, made["decide_refuse"], lambda v: (survey(v, at("2026-11-24")),
                                                 v.propose("refuse", "拟不予纳入", at("2026-11-25"), CW1)))
    made["approved"] = accepted(http)
    step(http, made["approved"], lambda v: (survey(v, at("2026-11-24")),
                                            v.propose("include", "拟纳入", at("2026-11-25"), CW1),
                                            v.post_notice("P-APP", at("2026-11-25"), CW1)))
    clock(http).set(at("2026-12-03"))
    http.state.runtime.app.decide(made["approved"], "approve", "符合低保条件", RV9)
    made["elsewhere"] = accepted(http, OTHER_VILLAGE, checked=False)
    clock(http).set(LISTED)
    return made


def listing(http, role: str = "caseworker", region: str = COUNTY, user: str | None = None, **params) -> dict:
    r = TestClient(http, raise_server_exceptions=False).get("/v1/verifications", params=params,
                                                           headers=bearer(role, region, user))
    assert r.status_code == 200, r.text
    assert VerificationsOut.model_validate(r.json()).model_dump() == r.json()
    return r.json()


def items(answer: dict) -> dict[str, dict]:
    return {i["case_id"]: i for i in answer["items"]}


def test_each_case_is_listed_at_its_stage_with_the_next_step_and_whose_work_it_is(http, cases):
    answer = listing(http, region=TOWNSHIP)
    assert answer["today"] == "2026-12-04" and answer["total"] == 8 == len(answer["items"])
    assert cases["approved"] not in items(answer)  # decided: out of the procedure, listed when asked for
    listed = {**items(answer), **items(listing(http, region=TOWNSHIP, stage="approved"))}
    expected = {
        "survey": ("household_survey", "household_survey", "caseworker", "requested"),
        "check": ("verification_report", "verification_report", None, "requested"),
        "initial_review": ("initial_review", "initial_review", "caseworker", "completed"),
        "notice": ("public_notice", "public_notice", "caseworker", "completed"),
        "notice_running": ("public_notice_running", "public_notice", None, "completed"),
        "appraisal": ("democratic_appraisal", "democratic_appraisal", "caseworker", "completed"),
        "decide_include": ("decision", "decision", "reviewer", "completed"),
        "decide_refuse": ("decision", "decision", "reviewer", "completed"),
        "approved": ("approved", None, None, "approved"),
    }
    for name, (stage, next_step, by, state) in expected.items():
        item = listed[cases[name]]
        assert (item["stage"], item["state"]) == (stage, state), name
        assert (item["next_step"] and (item["next_step"]["step"], item["next_step"]["by"])) == (
            (next_step, by) if next_step else None), name
        assert (item["region_code"], item["applicant_name_masked"], item["assistance_type"],
                item["accepted_at"]) == ("370502101001", "王*明", "dibao", ACCEPTED.isoformat()), name
    assert listed[cases["notice_running"]]["notice_until"] == "2026-12-08"
    assert (listed[cases["decide_refuse"]]["proposal"], listed[cases["decide_refuse"]]["notice_until"]) == (
        "refuse", None)
    # The deadline due first: the survey's (breached since 24:00 on 2026-11-26), the decision's
    # after the notice (3 working days from its last day, 2026-12-02), nothing once approved.
    survey_deadline = listed[cases["survey"]]["deadline"]
    assert (survey_deadline["clock"], survey_deadline["due_date"], listed[cases["survey"]]["deadline_state"]) == (
        "household_survey", "2026-11-26", "breached")
    decision = listed[cases["decide_include"]]
    assert (decision["deadline"]["clock"], decision["deadline"]["due_date"], decision["deadline_state"]) == (
        "decision", "2026-12-07", "open")
    assert (listed[cases["approved"]]["deadline"], listed[cases["approved"]]["deadline_state"]) == (None, None)
    # The deadline due first first.
    dues = [i["deadline"]["due_at"] for i in answer["items"]]
    assert dues == sorted(dues)


def test_stage_filters_and_the_decision_stage_is_exactly_what_check_decidable_allows(http, cases):
    assert set(items(listing(http, stage="decision"))) == {cases["decide_include"], cases["decide_refuse"]}
    assert set(items(listing(http, stage="household_survey"))) == {cases["survey"], cases["elsewhere"]}
    assert set(items(listing(http, stage="approved"))) == {cases["approved"]}
    assert listing(http, stage="refused")["items"] == []
    app = http.state.runtime.app
    another = Meta("someone-else", "reviewer", TOWNSHIP)
    decidable = set()
    for case_id in cases.values():
        try:
            app.get_verification(case_id).check_decidable(LISTED, another)
            decidable.add(case_id)
        except ProcedureError:
            pass
    assert decidable == set(items(listing(http, stage="decision")))
    # The running notice ends at 24:00 on 2026-12-08: a reviewer decides from then on.
    clock(http).set(at("2026-12-08", 23))
    assert cases["notice_running"] not in items(listing(http, stage="decision"))
    clock(http).set(at("2026-12-09", 0))
    assert cases["notice_running"] in items(listing(http, stage="decision"))
    app.get_verification(cases["notice_running"]).check_decidable(at("2026-12-09", 0), another)


def test_the_deadline_state_on_given_days(http, cases):
    """The survey clock (3 working days from Monday 2026-11-23: warned and due on Thursday 26th),
    and the whole procedure's on a case waiting for its notice (20 working days: due Monday
    2026-12-21, warned from Thursday 17th)."""
    def state_of(name: str, moment: datetime) -> tuple[str, str, str, str]:
        clock(http).set(moment)
        item = items(listing(http))[cases[name]]
        return (item["deadline"]["clock"], item["deadline"]["due_date"], item["deadline"]["warn_date"],
                item["deadline_state"])

    survey = ("household_survey", "2026-11-26", "2026-11-26")
    assert state_of("survey", at("2026-11-25", 23)) == (*survey, "open")
    assert state_of("survey", at("2026-11-26", 0)) == (*survey, "due_today")
    assert state_of("survey", at("2026-11-26", 23)) == (*survey, "due_today")
    assert state_of("survey", at("2026-11-27", 0)) == (*survey, "breached")
    whole = ("whole_procedure", "2026-12-21", "2026-12-17")
    assert state_of("notice", at("2026-12-16", 23)) == (*whole, "open")
    assert state_of("notice", at("2026-12-17", 0)) == (*whole, "warned")
    assert state_of("notice", at("2026-12-18")) == (*whole, "warned")
    assert state_of("notice", at("2026-12-21")) == (*whole, "due_today")
    assert state_of("notice", at("2026-12-22", 0)) == (*whole, "breached")
    clock(http).set(at("2026-12-17"))
    assert set(items(listing(http, deadline_state="warned"))) == {cases["notice"]}


def test_the_four_eyes_flag_is_what_the_decision_route_enforces(http, cases):
    include, refuse = cases["decide_include"], cases["decide_refuse"]

    def flags(role: str, user: str) -> dict[str, tuple[bool, str | None]]:
        queue = items(listing(http, role, TOWNSHIP, user, stage="decision"))
        return {case_id: (queue[case_id]["you_may_decide"], queue[case_id]["four_eyes_reason"])
                for case_id in (include, refuse)}

    assert flags("reviewer", "rv-9") == {include: (True, None), refuse: (True, None)}
    assert flags("reviewer", "rv-1") == {include: (False, "recorded_survey"), refuse: (True, None)}
    assert flags("caseworker", "cw-1") == {include: (False, "proposed"),
                                           refuse: (False, "recorded_survey_and_proposed")}
    assert flags("county_officer", "co-1") == {include: (True, None), refuse: (True, None)}
    assert flags("auditor", "au-1") == {include: (False, None), refuse: (False, None)}  # not a deciding role
    # Not at the decision stage: nobody may decide, the reason is still said.
    assert items(listing(http, "caseworker", TOWNSHIP, "cw-1"))[cases["notice"]]["four_eyes_reason"] == \
        "recorded_survey_and_proposed"
    assert not any(i["you_may_decide"] for i in listing(http, "reviewer", TOWNSHIP, "rv-9")["items"]
                   if i["stage"] != "decision")

    client = TestClient(http, raise_server_exceptions=False)
    body = {"decision": "approve", "reason": "符合低保条件"}
    r = client.post(f"/v1/verifications/{include}/decision", json=body, headers=bearer("reviewer", TOWNSHIP, "rv-1"))
    assert problem(r, 403)["rule"] == "four_eyes"
    r = client.post(f"/v1/verifications/{include}/decision", json=body, headers=bearer("reviewer", TOWNSHIP, "rv-9"))
    assert r.status_code == 200, r.text
    assert items(listing(http, "reviewer", TOWNSHIP, "rv-9", stage="approved"))[include]["stage"] == "approved"
    assert include not in items(listing(http, stage="decision"))


def test_a_refusal_contested_waits_for_the_grievance_and_an_upheld_one_starts_again_at_the_initial_review(http, cases):
    app = http.state.runtime.app
    case_id = cases["decide_refuse"]
    app.decide(case_id, "refuse", "家庭人均收入高于当地低保标准", RV9)
    app.raise_grievance(case_id, "G-1", "refusal", "申请人认为事实认定有误", "window", None, CW1)
    item = items(listing(http, stage="refused"))[case_id]
    assert (item["next_step"]["step"], item["next_step"]["by"], item["deadline"]["clock"]) == (
        "grievance", "reviewer", "grievance")
    app.decide_grievance(case_id, "G-1", "upheld", "原认定有误", "original", RV9)
    item = items(listing(http))[case_id]
    assert (item["stage"], item["state"], item["proposal"], item["deadline"]["clock"]) == (
        "initial_review", "completed", None, "initial_review")


def test_a_caller_sees_its_own_region_only(http, cases):
    assert set(items(listing(http, region=OTHER_TOWNSHIP))) == {cases["elsewhere"]}
    assert cases["elsewhere"] not in items(listing(http, "caseworker", TOWNSHIP))
    assert items(listing(http, "reviewer", OTHER_TOWNSHIP)).keys() == {cases["elsewhere"]}
    elsewhere = listing(http, "reviewer", "320583")
    assert (elsewhere["items"], elsewhere["total"]) == ([], 0)
    assert listing(http, "auditor", "000000")["total"] == 9
    client = TestClient(http, raise_server_exceptions=False)
    problem(client.get("/v1/verifications", params={"region": TOWNSHIP}, headers=bearer("caseworker", OTHER_TOWNSHIP)),
            403)
    problem(client.get("/v1/verifications", headers=bearer("partner")), 403)
    problem(client.get("/v1/verifications"), 401)


def test_limit_bounds_the_items_and_total_counts_them_all(http, cases):
    full = listing(http)
    bounded = listing(http, limit=3)
    assert (bounded["items"], bounded["total"], bounded["limit"]) == (full["items"][:3], 9, 3)


@pytest.mark.parametrize("params, parameter", [
    ({"stage": "checking"}, "stage"),
    ({"deadline_state": "late"}, "deadline_state"),
    ({"region": "37050210"}, "region"),
    ({"region": "990000"}, "region"),
    ({"limit": "0"}, "limit"),
])
def test_a_bad_filter_is_422_naming_the_parameter(http, params, parameter):
    r = TestClient(http, raise_server_exceptions=False).get("/v1/verifications", params=params,
                                                           headers=bearer("reviewer"))
    problem(r, 422, parameter)
    assert "checking" not in r.text  # nothing sent is echoed


def procedure_of(v: Any) -> dict[str, Any]:
    """What the read model's `procedure` should say, from the aggregate itself."""
    return {
        "accepted_at": v.accepted_at,
        "surveyed_by": v.survey.recorded_by if v.survey else None,
        "proposal": v.proposal.proposal if v.proposal else None,
        "proposed_by": v.proposal.proposed_by if v.proposal else None,
        "notice_until": v.notice.notice_until if v.notice else None,
        "notice_ends_at": v.notice.ends_at if v.notice else None,
        "check_warned": v.check_warned, "appraisal_due": v.appraisal_due,
        "deadlines": {d.deadline_id: {"deadline_id": d.deadline_id, "clock": d.clock, "label_zh": d.label_zh,
                                      "due_date": d.due_date, "due_at": d.due_at, "warn_at": d.warn_at}
                      for d in v.deadlines.values() if d.is_open},
        "open_grievances": [g.grievance_id for g in v.grievances.values() if g.state == "open"],
    }


def test_the_read_model_agrees_with_the_aggregates_and_with_a_rebuild(http, cases):
    app = http.state.runtime.app
    app.decide(cases["decide_refuse"], "refuse", "家庭人均收入高于当地低保标准", RV9)
    app.raise_grievance(cases["decide_refuse"], "G-2", "refusal", "不服", "window", None, CW1)
    app.decide_grievance(cases["decide_refuse"], "G-2", "upheld", "重新审核", "new", RV9)  # asked again
    step(http, cases["appraisal"], lambda v: v.hold_appraisal(date(2026, 11, 30), 9, 7, 1, 1, "多数同意",
                                                             at("2026-11-30"), CW1))
    runtime = http.state.runtime
    runtime.projection.catch_up()
    with runtime.side.transaction() as tx:
        for case_id in cases.values():
            assert tx.get("verification", case_id)["procedure"] == procedure_of(app.get_verification(case_id))
    assert compare(runtime.side, rebuild(app, project)) == []
    before = log_length(app)
    listing(http)
    listing(http, stage="decision")
    assert log_length(app) == before  # reading records nothing
    assert items(listing(http))[cases["appraisal"]]["stage"] == "decision"
    assert items(listing(http))[cases["decide_refuse"]]["stage"] == "verification_report"


def test_what_listed_at_the_same_moment_agrees_with_each_case_view(http, cases):
    client = TestClient(http, raise_server_exceptions=False)
    for case_id, item in items(listing(http)).items():
        view = client.get(f"/v1/verifications/{case_id}", headers=bearer("auditor")).json()
        assert (view["state"], view["region_code"]) == (item["state"], item["region_code"])
        open_ = sorted((d for d in view["deadlines"] if d["state"] == "open"),
                       key=lambda d: (d["due_at"], d["deadline_id"]))
        assert (open_[0]["deadline_id"] if open_ else None) == (item["deadline"] or {}).get("deadline_id")
        missing = view["next_step"]["step"] if view["next_step"] else None
        # The view's next_step is what a decision still waits for (the check before the survey).
        if item["stage"] in ("initial_review", "public_notice", "democratic_appraisal"):
            assert missing == item["stage"]
