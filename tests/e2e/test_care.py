"""特困 support across the separate processes (issue 17, parts 1-2): a 17-year-old orphan with an
intellectual disability (grade 2) applies alone for 特困, is approved, gets a guardian and a care
agreement, is supported at home (分散供养) and visited; a missed visit is breached and escalated
once by notify's deadline watch. Bad input is problem+json naming the field: nothing stored,
nothing published.

Clock moments (2026, the statutory calendar known): accepted on Monday 10-12, the notice ends at
24:00 of 10-19; support arranged on 10-20, the first visit due 11-20; visited on 11-18, the next
due 12-18 (warned from 12-16), breached at 24:00 of 12-18.
"""

from __future__ import annotations

import json
import uuid
from datetime import date

import httpx
import pytest

from lifeline.rules.ids import make_resident_id
from tests.e2e.conftest import make_poor
from tests.e2e.test_flows import completed, decide, submit_accepted
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

VILLAGE = "370502101001"
TOWNSHIP = VILLAGE[:9]
COUNTY = VILLAGE[:6]
ORPHAN = make_resident_id(COUNTY, date(2009, 3, 10), uuid.uuid4().int % 500, female=False)  # 17 in 2026
GRANDMOTHER = make_resident_id(COUNTY, date(1958, 6, 18), uuid.uuid4().int % 500, female=True)
GUARDIAN = {"name": "张桂英", "relation": "grandparent", "id_number": GRANDMOTHER,
            "confirmed_by": "designation_by_committee", "confirmed_on": "2026-10-16"}
AGREEMENT = {"kind": "guardianship_care", "carer": {"name": "张桂英", "relation": "grandparent"},
             "duties": ["日常生活照料", "陪同就医", "每月向村委会报告照料情况"], "term_from": "2026-11-01",
             "term_to": "2027-10-31", "monthly_amount_fen": 50000}
DISPERSED = {"mode": "dispersed", "chosen_by_person": False, "note": "本人无民事行为能力，监护人代为选择在家分散供养"}
VISITORS = [{"name": "赵敏", "role": "township_staff"}, {"name": "李卫东", "role": "village_cadre"}]


def at(day: str, time: str = "10:00") -> str:
    return f"{day}T{time}:00+08:00"


def caseworker(lifeline, region: str = TOWNSHIP) -> httpx.Client:
    return lifeline.client("verification", "caseworker", region, user="caseworker-care")


def problem(r: httpx.Response, status: int, pointer: str | None = None, rule: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body.get("errors", [])], body
    if rule is not None:
        assert body["rule"] == rule, body
    return body


def published(lifeline, name: str, case_id: str) -> list[dict]:
    """The data of each `name` event about the case on the topics, once per CloudEvent id."""
    found = {e["id"]: e["data"] for e in map(json.loads, lifeline.published())
             if e["type"] == f"cn.gov.mca.lifeline.{name}.v1" and e["subject"] == case_id}
    return list(found.values())


def deadlines(lifeline, state: str, deadline_id: str) -> list[dict]:
    with lifeline.client("notify", "county_officer", COUNTY) as c:
        r = c.get("/v1/deadlines", params={"region": COUNTY, "state": state})
    assert r.status_code == 200, r.text
    return [d for d in r.json()["items"] if d["deadline_id"] == deadline_id]


def visits_due(lifeline, case_id: str) -> dict:
    with caseworker(lifeline) as c:
        r = c.get("/v1/visits/due", params={"region": TOWNSHIP})
    assert r.status_code == 200, r.text
    [item] = [d for d in r.json()["items"] if d["case_id"] == case_id]
    return item


@pytest.fixture(scope="module")
def orphan(clocked_lifeline):
    """The orphan's 特困 case, approved at the end of its notice; the clock is reset afterwards."""
    lifeline = clocked_lifeline
    try:
        lifeline.clock_set(at("2026-10-12", "09:00"))
        make_poor(lifeline, [ORPHAN])
        case_id = submit_accepted(lifeline, [ORPHAN], assistance_type="tekun", members=[{
            "id_number": ORPHAN, "name": "王小明", "relation": "self", "disability_grade": 2,
            "disability_kind": "intellectual", "serious_illness": False, "work_ability": "none"}])
        assessment = completed(lifeline, case_id)["assessment"]
        assert (assessment["outcome"], assessment["recommended_assistance_type"]) == ("eligible", "tekun")
        lifeline.pass_notices(lifeline.prepare_decision(case_id))
        r = decide(lifeline, case_id, "approve")
        assert r.status_code == 200, r.text
        assert (r.json()["benefit_type"], r.json()["monthly_amount_fen"]) == ("tekun", assessment["monthly_amount_fen"])
        yield case_id
    finally:
        lifeline.clock_reset()


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored_or_published(clocked_lifeline, orphan):
    lifeline, case_id = clocked_lifeline, orphan
    before = lifeline.settled_log_sizes(["verification"])
    on_topic = len(lifeline.published())
    with caseworker(lifeline) as c:
        url = f"/v1/care/{case_id}"
        problem(c.put(f"{url}/arrangement", json={**DISPERSED, "mode": "concentrated"}), 422, "#/care_home_code",
                "care_home_required")
        problem(c.put(f"{url}/arrangement", json={**DISPERSED, "mode": "concentrated",
                                                  "care_home_code": "12370502MB1234567E"}), 422, "#/care_home_code")
        problem(c.put(f"{url}/arrangement", json={**DISPERSED, "note": ""}), 422, "#/note", "choice_reason")
        problem(c.put(f"{url}/guardian", json={**GUARDIAN, "id_number": GRANDMOTHER[:-1] + (
            "0" if GRANDMOTHER[-1] != "0" else "1")}), 422, "#/id_number")
        problem(c.put(f"{url}/guardian", json={**GUARDIAN, "id_number": ORPHAN}), 422, "#/id_number",
                "guardian_not_ward")
        problem(c.put(f"{url}/guardian", json={**GUARDIAN, "relation": "spouse"}), 422, "#/relation",
                "guardian_of_a_minor")
        problem(c.put(f"{url}/guardian", json={**GUARDIAN, "confirmed_on": "2027-01-01"}), 422, "#/confirmed_on",
                "not_in_future")
        problem(c.put(f"{url}/care-agreement", json={**AGREEMENT, "term_to": "2026-10-01"}), 422, "#/term_to",
                "term")
        problem(c.put(f"{url}/care-agreement", json={**AGREEMENT, "monthly_amount_fen": 12.5}), 422,
                "#/monthly_amount_fen")
        problem(c.post(f"{url}/visits", json={"visited_on": "2026-10-20", "visitors": [], "findings": "x",
                                              "care_quality": "good"}), 422, "#/visitors")
        # Not yet arranged at home: no visit; the guardian before the agreement (409, by rule).
        problem(c.post(f"{url}/visits", json={"visited_on": "2026-10-19", "visitors": VISITORS, "findings": "x",
                                              "care_quality": "good"}), 409, rule="not_dispersed")
        problem(c.put(f"{url}/care-agreement", json=AGREEMENT), 409, rule="guardian_required")
    with caseworker(lifeline, "370502102") as other:  # another township's caseworker
        problem(other.put(f"/v1/care/{case_id}/arrangement", json=DISPERSED), 403)
    assert lifeline.settled_log_sizes(["verification"]) == before
    assert len(lifeline.published()) == on_topic


def test_an_orphan_gets_a_guardian_and_care_is_visited_and_a_missed_visit_escalates_once(clocked_lifeline, orphan):
    lifeline, case_id = clocked_lifeline, orphan
    lifeline.clock_set(at("2026-10-20", "09:00"))
    with caseworker(lifeline) as c:
        r = c.put(f"/v1/care/{case_id}/guardian", json=GUARDIAN)
        assert r.status_code == 200, r.text
        assert (r.json()["legal_capacity"], r.json()["guardian"]["id_number_masked"]) == (
            "none", GRANDMOTHER[:6] + "********" + GRANDMOTHER[-4:])
        r = c.put(f"/v1/care/{case_id}/care-agreement", json=AGREEMENT)
        assert r.status_code == 200, r.text
        r = c.put(f"/v1/care/{case_id}/arrangement", json=DISPERSED)
        assert r.status_code == 200, r.text
        first = f"{case_id}/care_visit"
        assert r.json()["next_visit"] == {"deadline_id": first, "due_date": "2026-11-20",
                                          "due_at": "2026-11-21T00:00:00+08:00", "overdue": False}
    (watched,) = wait_for(lambda: deadlines(lifeline, "open", first), what="the visit clock watched")
    assert (watched["clock"], watched["responsible_office"], watched["due_date"]) == ("care_visit", TOWNSHIP,
                                                                                      "2026-11-20")
    assert visits_due(lifeline, case_id)["next_visit_due_date"] == "2026-11-20"

    # Visited in time: the clock is met, the next runs a month from the visit.
    lifeline.clock_set(at("2026-11-18", "16:00"))
    with caseworker(lifeline) as c:
        r = c.post(f"/v1/care/{case_id}/visits", json={
            "visited_on": "2026-11-18", "visitors": VISITORS, "findings": "住房整洁，饮食正常，监护人照料到位。",
            "care_quality": "good"})
    assert r.status_code == 201, r.text
    [visit] = r.json()["visits"]
    second = f"{case_id}/care_visit/2"
    assert (visit["deadline_outcome"], visit["next_visit_due_date"], r.json()["next_visit"]["deadline_id"]) == (
        "met", "2026-12-18", second)
    (cleared,) = wait_for(lambda: deadlines(lifeline, "cleared", first), what="the first visit clock cleared")
    assert cleared["outcome"] == "met"

    # The next visit is missed: warned three days before, breached after 24:00 of 12-18, escalated to the county.
    wait_for(lambda: deadlines(lifeline, "open", second), what="the next visit clock watched")
    lifeline.clock_set(at("2026-12-16", "08:00"))
    wait_for(lambda: deadlines(lifeline, "warned", second), what="the warning")
    lifeline.clock_set(at("2026-12-19", "00:00"))
    (breached,) = wait_for(lambda: deadlines(lifeline, "breached", second), what="the breach")
    assert breached["escalated_to"] == {"office": COUNTY, "level": "county"}
    due = visits_due(lifeline, case_id)
    assert (due["next_visit_due_date"], due["overdue"], due["last_visited_on"]) == ("2026-12-18", True, "2026-11-18")
    lifeline.clock_set(at("2026-12-21", "10:00"))  # the watch goes on scanning: no second breach
    lifeline.settled_log_sizes(["notify"])

    # Visited late at last: cleared late, a new clock.
    with caseworker(lifeline) as c:
        r = c.post(f"/v1/care/{case_id}/visits", json={
            "visited_on": "2026-12-21", "visitors": VISITORS[:1], "findings": "监护人外出务工，照料不及时。",
            "care_quality": "poor", "follow_up": "约谈监护人，委托村委会每周探视，两周后复访"})
    assert r.status_code == 201, r.text
    assert r.json()["visits"][-1]["deadline_outcome"] == "late"
    (late,) = wait_for(lambda: deadlines(lifeline, "cleared", second), what="the missed clock cleared late")
    assert late["outcome"] == "late"

    breaches = [e for e in map(json.loads, lifeline.published())
                if e["type"] == "cn.gov.mca.lifeline.DeadlineBreached.v1" and e["data"]["deadline_id"] == second]
    assert len({e["id"] for e in breaches}) == 1
    assert not [e for e in map(json.loads, lifeline.published())
                if e["type"] == "cn.gov.mca.lifeline.DeadlineBreached.v1" and e["data"]["deadline_id"] == first]
    # On verification's topic: each step once, the guardian's ID number and the names masked.
    for name, count in (("GuardianConfirmed", 1), ("CareAgreementSigned", 1), ("SupportArranged", 1),
                        ("CareVisitRecorded", 2)):
        assert len(published(lifeline, name, case_id)) == count, name
    everything = b"".join(lifeline.published()).decode()
    assert GRANDMOTHER not in everything and "张桂英" not in everything
    with lifeline.client("verification", "auditor", COUNTY) as c:
        r = c.get(f"/v1/care/{case_id}")
    assert r.status_code == 200, r.text
    care = r.json()
    assert (care["arrangement"]["mode"], care["guardian"]["relation"], len(care["care_agreements"]),
            [v["care_quality"] for v in care["visits"]]) == ("dispersed", "grandparent", 1, ["good", "poor"])
