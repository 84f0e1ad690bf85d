"""特困 support through verification's routes (issue 17, parts 1-2): an approved tekun case gets
its support arranged, a guardian, a care agreement and visits; the visit clock is published like
every other; bad input is problem+json naming the field or the rule and stores nothing."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient

from lifeline.domain.clock import FixedClock
from lifeline.http.auth import mint_token
from lifeline.messaging.outbox import to_cloud_events
from lifeline.rules.ids import make_resident_id
from lifeline.rules.periods import SHANGHAI
from services.verification.bootstrap import SPEC
from services.verification.care import Care, CareOut, CareVisitsDueOut
from services.verification.outbound import OUTBOUND

from . import (
    REVIEWER, approved_in_process, log_length, pid, service_http, stored,
)

SECRET = "test-care-secret-0123456789abcdef0123456789abcd"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # a Wednesday
TOWNSHIP = "370502101"
ORPHAN = make_resident_id("370502", date(2009, 3, 10), 7, female=False)      # 17 on NOW
GRANDMOTHER = make_resident_id("370502", date(1958, 6, 18), 88, female=True)
HOME = "12370502MB1234567D"
DISPERSED = {"mode": "dispersed", "care_home_code": None, "chosen_by_person": False, "note": "监护人代为选择在家分散供养"}
GUARDIAN = {"name": "张桂英", "relation": "grandparent", "id_number": GRANDMOTHER,
            "confirmed_by": "designation_by_committee", "confirmed_on": "2026-11-20"}
AGREEMENT = {"kind": "guardianship_care", "carer": {"name": "张桂英", "relation": "grandparent"},
             "duties": ["日常生活照料", "陪同就医"], "term_from": "2026-12-01", "term_to": "2027-11-30",
             "monthly_amount_fen": 50000}
VISIT = {"visited_on": "2026-12-20", "visitors": [{"name": "赵敏", "role": "township_staff"}],
         "findings": "住房整洁，监护人照料到位。", "care_quality": "good"}


def bearer(role: str, region: str = TOWNSHIP, user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app




def approved(http, ids: list[str], **overrides) -> str:
    """Checked (nobody earns anything), taken through the procedure and approved now."""
    return approved_in_process(http.state.runtime.app, ids, NOW, "符合特困供养条件", **overrides)


def orphan(http) -> str:
    """A 17-year-old orphan with an intellectual disability (grade 2), alone: approved as 特困."""
    case_id = approved(http, [ORPHAN], assistance_type="tekun", members=[{
        "id_number": ORPHAN, "name": "王小明", "relation": "self", "disability_grade": 2,
        "disability_kind": "intellectual", "serious_illness": False, "work_ability": "none"}])
    assert http.state.runtime.app.get_verification(case_id).benefit.benefit_type == "tekun"
    return case_id


def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


def put(http, case_id: str, what: str, body: dict, status: int = 200, role: str = "caseworker",
        region: str = TOWNSHIP) -> dict:
    r = client(http).put(f"/v1/care/{case_id}/{what}", json=body, headers=bearer(role, region))
    assert r.status_code == status, r.text
    return r.json()


def visit(http, case_id: str, body: dict, status: int = 201) -> dict:
    r = client(http).post(f"/v1/care/{case_id}/visits", json=body, headers=bearer("caseworker"))
    assert r.status_code == status, r.text
    return r.json()


def due(http, role: str = "caseworker", office: str = TOWNSHIP, **params) -> dict:
    r = client(http).get("/v1/visits/due", params=params, headers=bearer(role, office))
    assert r.status_code == 200, r.text
    assert CareVisitsDueOut.model_validate(r.json()).model_dump() == r.json()
    return r.json()


def wire(app, *types: type) -> list[tuple[str, dict]]:
    """(public name, data) of each stored event of these types, as the relay publishes them."""
    out = []
    for note in app.recorder.select_notifications(1, 10_000):
        event = app.mapper.to_domain_event(note)
        if isinstance(event, types):
            out.extend((c.type.split(".")[-2], c.data) for _, _, c in to_cloud_events("verification", note.id, event,
                                                                                      OUTBOUND))
    return out


def problem(r, status: int, pointer: str | None = None, rule: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body.get("errors", [])], body
    if rule is not None:
        assert body["rule"] == rule, body
    return body


def test_an_orphan_gets_a_guardian_an_agreement_dispersed_support_and_visits(http):
    app = http.state.runtime.app
    case_id = orphan(http)
    # Without full capacity (17, intellectual disability grade 2): the guardian comes first.
    body = problem(client(http).put(f"/v1/care/{case_id}/care-agreement", json=AGREEMENT,
                                    headers=bearer("caseworker")), 409, rule="guardian_required")
    assert "none" in body["detail"]
    care = put(http, case_id, "guardian", GUARDIAN)
    assert (care["legal_capacity"], care["guardian"]["id_number_masked"], care["guardian"]["name"]) == (
        "none", GRANDMOTHER[:6] + "********" + GRANDMOTHER[-4:], "张桂英")
    care = put(http, case_id, "care-agreement", AGREEMENT)
    assert [(a["kind"], a["carer_name"], a["monthly_amount_fen"]) for a in care["care_agreements"]] == [
        ("guardianship_care", "张桂英", 50000)]
    care = put(http, case_id, "arrangement", DISPERSED)
    assert care["arrangement"]["mode"] == "dispersed" and care["dispersed_since"] == "2026-11-25"
    assert care["next_visit"] == {"deadline_id": f"{case_id}/care_visit", "due_date": "2026-12-25",
                                  "due_at": "2026-12-26T00:00:00+08:00", "overdue": False}
    size = log_length(app)
    for what, body in (("guardian", GUARDIAN), ("care-agreement", AGREEMENT), ("arrangement", DISPERSED)):
        put(http, case_id, what, body)  # the same again: nothing new
    assert log_length(app) == size
    listed = due(http)["items"]
    assert [(d["case_id"], d["next_visit_due_date"], d["overdue"], d["person_name_masked"]) for d in listed] == [
        (case_id, "2026-12-25", False, "王*明")]
    # Visited on 12-20, recorded that day: the clock met, the next one a month from the visit.
    app.clock = FixedClock(datetime(2026, 12, 20, 17, 0, tzinfo=SHANGHAI))
    care = visit(http, case_id, VISIT)
    [recorded] = care["visits"]
    assert (recorded["deadline_id"], recorded["deadline_outcome"], recorded["next_visit_due_date"]) == (
        f"{case_id}/care_visit", "met", "2027-01-20")
    assert care["next_visit"]["deadline_id"] == f"{case_id}/care_visit/2"
    # A month and more without a visit: overdue.
    app.clock = FixedClock(datetime(2027, 1, 21, 0, 0, tzinfo=SHANGHAI))
    [item] = due(http, "county_officer", "370502", region=TOWNSHIP)["items"]
    assert (item["next_visit_due_date"], item["overdue"], item["last_visited_on"], item["last_care_quality"]) == (
        "2027-01-20", True, "2026-12-20", "good")
    r = client(http).get(f"/v1/care/{case_id}", headers=bearer("auditor", "370502"))
    assert r.status_code == 200, r.text
    assert CareOut.model_validate(r.json()).model_dump() == r.json()
    assert r.json()["next_visit"]["overdue"] is True
    # On the wire: every public event, the visit clock set and cleared on verification's topic.
    published = wire(app, Care.SupportArranged, Care.GuardianConfirmed, Care.CareAgreementSigned,
                     Care.CareVisitRecorded, Care.DeadlineSet, Care.DeadlineCleared)
    assert [n for n, _ in published] == ["GuardianConfirmed", "CareAgreementSigned", "SupportArranged", "DeadlineSet",
                                         "CareVisitRecorded", "DeadlineCleared", "DeadlineSet"]
    assert GRANDMOTHER not in str(published) and "张桂英" not in str(published)
    clocks = [d for n, d in published if n.startswith("Deadline")]
    assert [(d["clock"], d["deadline_id"], d.get("due_date"), d.get("outcome")) for d in clocks] == [
        ("care_visit", f"{case_id}/care_visit", "2026-12-25", None),
        ("care_visit", f"{case_id}/care_visit", None, "met"),
        ("care_visit", f"{case_id}/care_visit/2", "2027-01-20", None)]


def test_concentrated_support_leaves_the_visits_due(http):
    case_id = orphan(http)
    put(http, case_id, "arrangement", DISPERSED)
    assert [d["case_id"] for d in due(http)["items"]] == [case_id]
    care = put(http, case_id, "arrangement", {"mode": "concentrated", "care_home_code": HOME.lower(),
                                              "chosen_by_person": False, "note": "监护人选择入住敬老院"})
    assert (care["arrangement"]["care_home_code"], care["next_visit"], len(care["arrangements"])) == (HOME, None, 2)
    assert due(http)["items"] == []
    problem(client(http).post(f"/v1/care/{case_id}/visits", json=VISIT, headers=bearer("caseworker")), 409,
            rule="not_dispersed")


def test_care_is_for_an_approved_tekun_benefit_within_the_callers_region(http):
    app = http.state.runtime.app
    dibao = approved(http, [pid(321), pid(322, female=True)])
    problem(client(http).put(f"/v1/care/{dibao}/arrangement", json=DISPERSED, headers=bearer("caseworker")), 409,
            rule="tekun_approved")
    case_id = orphan(http)
    problem(client(http).put(f"/v1/care/{case_id}/arrangement", json=DISPERSED,
                             headers=bearer("caseworker", "370502102")), 403)
    problem(client(http).put("/v1/care/C-NOPE/arrangement", json=DISPERSED, headers=bearer("caseworker")), 404)
    problem(client(http).get(f"/v1/care/{case_id}", headers=bearer("caseworker")), 404)  # nothing recorded yet
    problem(client(http).put(f"/v1/care/{case_id}/arrangement", json=DISPERSED, headers=bearer("clerk")), 403)
    put(http, case_id, "arrangement", DISPERSED)
    problem(client(http).get(f"/v1/care/{case_id}", headers=bearer("caseworker", "370502102")), 403)
    assert due(http, "caseworker", "370502102")["items"] == []
    problem(client(http).get("/v1/visits/due", params={"region": TOWNSHIP}, headers=bearer("caseworker", "370502102")),
            403)
    assert [d["case_id"] for d in due(http)["items"]] == [case_id]
    # The benefit ends: support ends with it in the same transaction, the visit clock cancelled.
    app.change_benefit(case_id, "terminate", "2027-01", None, "本人死亡", REVIEWER)
    problem(client(http).post(f"/v1/care/{case_id}/visits", json=VISIT, headers=bearer("caseworker")), 409,
            rule="tekun_approved")
    r = client(http).get(f"/v1/care/{case_id}", headers=bearer("caseworker"))
    assert (r.json()["support_ended_at"], r.json()["next_visit"]) == (NOW.isoformat(), None)
    assert due(http)["items"] == []
    cleared = [d for n, d in wire(app, Care.DeadlineCleared) if n == "DeadlineCleared"]
    assert [(d["deadline_id"], d["outcome"]) for d in cleared] == [(f"{case_id}/care_visit", "cancelled")]
    app.change_benefit(dibao, "terminate", "2027-01", None, "家庭收入超过标准", REVIEWER)  # no care: nothing to end
    assert stored(app, Care.SupportEnded) and len(stored(app, Care.SupportEnded)) == 1


@pytest.mark.parametrize("what, body, pointer, rule", [
    ("arrangement", {**DISPERSED, "mode": "nursing"}, "#/mode", None),
    ("arrangement", {**DISPERSED, "mode": "concentrated"}, "#/care_home_code", "care_home_required"),
    ("arrangement", {**DISPERSED, "mode": "concentrated", "care_home_code": HOME[:-1] + "E"}, "#/care_home_code", None),
    ("arrangement", {**DISPERSED, "care_home_code": HOME}, "#/care_home_code", "care_home_for_concentrated"),
    ("arrangement", {**DISPERSED, "note": ""}, "#/note", "choice_reason"),
    ("arrangement", {**DISPERSED, "extra": 1}, "#/extra", None),
    ("guardian", {**GUARDIAN, "id_number": GRANDMOTHER[:-1] + ("0" if GRANDMOTHER[-1] != "0" else "1")},
     "#/id_number", None),
    ("guardian", {**GUARDIAN, "id_number": make_resident_id("370502", date(2010, 1, 1), 9, female=False)},
     "#/id_number", "guardian_adult"),
    ("guardian", {**GUARDIAN, "id_number": ORPHAN}, "#/id_number", "guardian_not_ward"),
    ("guardian", {**GUARDIAN, "relation": "spouse"}, "#/relation", "guardian_of_a_minor"),
    ("guardian", {**GUARDIAN, "confirmed_by": "civil_affairs"}, "#/relation", "civil_affairs_guardian"),
    ("guardian", {**GUARDIAN, "confirmed_on": "2026-11-26"}, "#/confirmed_on", "not_in_future"),
    ("guardian", {**GUARDIAN, "legal_capacity": "full"}, "#/legal_capacity", None),
    ("guardian", {**GUARDIAN, "relation": "organisation"}, "#/id_number", None),
    ("care-agreement", {**AGREEMENT, "carer": None}, "#/carer", "carer_or_provider"),
    ("care-agreement", {**AGREEMENT, "term_to": "2026-11-30"}, "#/term_to", "term"),
    ("care-agreement", {**AGREEMENT, "monthly_amount_fen": -1}, "#/monthly_amount_fen", None),
    ("care-agreement", {**AGREEMENT, "duties": []}, "#/duties", None),
    ("visits", {**VISIT, "visited_on": "2026-11-26"}, "#/visited_on", "not_in_future"),
    ("visits", {**VISIT, "visited_on": "2026-11-24"}, "#/visited_on", "visit_before_support"),
    ("visits", {**VISIT, "visited_on": "2026-11-25", "care_quality": "poor"}, "#/follow_up", "follow_up_required"),
    ("visits", {**VISIT, "visitors": []}, "#/visitors", None),
    ("visits", {**VISIT, "care_quality": "excellent"}, "#/care_quality", None),
])
def test_bad_input_names_the_field_and_stores_nothing(http, what, body, pointer, rule):
    app = http.state.runtime.app
    case_id = orphan(http)
    put(http, case_id, "arrangement", DISPERSED)
    if what == "care-agreement":
        put(http, case_id, "guardian", GUARDIAN)
    size, events = log_length(app), len(stored(app))
    headers = bearer("caseworker")
    r = (client(http).post(f"/v1/care/{case_id}/visits", json=body, headers=headers) if what == "visits"
         else client(http).put(f"/v1/care/{case_id}/{what}", json=body, headers=headers))
    problem(r, 422, pointer, rule)
    assert (log_length(app), len(stored(app))) == (size, events)
