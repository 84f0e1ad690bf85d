"""The statutory procedure across processes (issue 9): a household accepted on Monday
2026-09-28 goes through survey, initial review, a public notice across National Day, an
objection from the board, a democratic appraisal and a decision by a second person; every
due date is asserted as counted by hand. A deadline nobody meets is breached once and
escalated once, even when notify is killed in between.

2026 around National Day: Oct 1-7 rest; Sat 10-10 a make-up working day; Sun 10-11 rest.
"""

from __future__ import annotations

import json
import re

import httpx

from tests.e2e.conftest import make_poor, new_people
from tests.harness import household, wait_for

VILLAGE = "370502101001"
TOWNSHIP_USER = "caseworker-9"  # surveys and proposes
REVIEWER_USER = "reviewer-9"    # decides: another person
SURVEY = {"surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
          "visited_on": "2026-09-29", "findings": "住房简陋，两人患病，无机动车辆"}


def at(day: str, time: str = "10:00") -> str:
    return f"{day}T{time}:00+08:00"


def submit(lifeline, people: list[str]) -> str:
    with lifeline.client("intake", "clerk", "370502") as c:
        r = c.post("/v1/applications", json=household(people, VILLAGE))
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def step(lifeline, case_id: str, path: str, body: dict | None = None, user: str = TOWNSHIP_USER,
         role: str = "caseworker") -> httpx.Response:
    with lifeline.client("verification", role, "370502", user=user) as c:
        return c.post(f"/v1/verifications/{case_id}/{path}", json=body)


def dues(view: dict) -> dict[str, tuple[str, str]]:
    return {d["deadline_id"].split("/", 1)[1]: (d["due_date"], d["state"]) for d in view["deadlines"]}


def problem(r: httpx.Response, status: int, rule: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["rule"] == rule, r.json()


def test_a_household_through_the_whole_procedure_across_national_day(lifeline):
    people = new_people(2)
    make_poor(lifeline, people)
    lifeline.clock_set(at("2026-09-28", "09:00"))
    case_id = submit(lifeline, people)
    # Before acceptance nothing may be recorded, and no department is asked.
    view = wait_for(lambda: lifeline.verification(case_id), what="the procedure opened")
    assert view["state"] == "awaiting_acceptance" and not view["deadlines"]
    problem(step(lifeline, case_id, "survey", SURVEY), 409, "acceptance")

    lifeline.clock_set(at("2026-09-28"))
    lifeline.accept(case_id)
    view = wait_for(lambda: (v := lifeline.verification(case_id))["state"] == "completed" and v,
                    what="the check completed")
    # Accepted Mon 09-28: survey in 3 working days (09-29, 09-30, 10-08); the report in 5
    # (…, 10-09, 10-10); the whole procedure in 20 (10-30).
    assert dues(view) == {"verification_report": ("2026-10-10", "met"),
                          "household_survey": ("2026-10-08", "open"),
                          "whole_procedure": ("2026-10-30", "open")}

    lifeline.clock_set(at("2026-09-29", "16:00"))
    problem(step(lifeline, case_id, "survey", {**SURVEY, "surveyors": SURVEY["surveyors"][:1]}), 422,
            "survey_two_people")
    problem(step(lifeline, case_id, "survey", {**SURVEY, "surveyors": [
        {"name": "甲", "role": "township_staff"}, {"name": "乙", "role": "other"}]}), 422, "survey_village_cadre")
    problem(step(lifeline, case_id, "survey", {**SURVEY, "visited_on": "2026-09-30"}), 422, "date_in_future")
    r = step(lifeline, case_id, "survey", {**SURVEY, "unknown": 1})
    assert r.status_code == 422 and "unknown" in r.text
    r = step(lifeline, case_id, "survey", SURVEY)
    assert r.status_code == 200, r.text
    # The initial review within 3 working days of the visit (09-30, 10-08, 10-09).
    assert dues(r.json())["initial_review"] == ("2026-10-09", "open")
    problem(step(lifeline, case_id, "survey", SURVEY), 409, "household_survey")  # repeated

    lifeline.clock_set(at("2026-09-30"))
    r = step(lifeline, case_id, "initial-review", {"proposal": "include", "reason": "拟纳入低保"})
    assert r.status_code == 200, r.text
    r = step(lifeline, case_id, "public-notice")
    assert r.status_code == 200, r.text
    notice = r.json()["public_notice"]
    # 7 days from 09-30 end on 10-07, a holiday: the notice runs to the next working day.
    assert (notice["notice_from"], notice["notice_until"]) == ("2026-10-01", "2026-10-08")
    assert dues(r.json())["decision"] == ("2026-10-12", "open")  # 10-09, 10-10, 10-12

    # The board: no token; only the masked name, the people, the amount, the period, the hotline.
    board_url = lifeline.url("notify") + f"/v1/boards/{VILLAGE}"
    board = wait_for(lambda: (b := httpx.get(board_url, timeout=10).json())["entries"] and b,
                     what="the board entry")
    (entry,) = [e for e in board["entries"] if e["public_notice_id"] == notice["public_notice_id"]]
    assert entry["applicant_name_masked"] == "王*明" and entry["members_count"] == 2
    assert (entry["notice_from"], entry["notice_until"]) == ("2026-10-01", "2026-10-08")
    assert board["hotline"]
    page = httpx.get(board_url, timeout=10).text
    assert not re.search(r"\d{17}[\dXx]", page) and "王小明" not in page and case_id not in page

    # An objection on a holiday (Mon 10-05): an appraisal becomes due in 3 working days of it
    # (10-08, 10-09, 10-10 make-up) and the decision waits for it.
    lifeline.clock_set(at("2026-10-05", "20:00"))
    r = httpx.post(board_url + "/objections", timeout=10, json={
        "public_notice_id": notice["public_notice_id"], "text": "该户有小轿车一辆", "contact": None})
    assert r.status_code == 201, r.text
    view = wait_for(lambda: (v := lifeline.verification(case_id))["objections"] and v, what="ObjectionRaised")
    assert dues(view)["democratic_appraisal"] == ("2026-10-10", "open")
    assert dues(view)["decision"] == ("2026-10-12", "cancelled")

    lifeline.clock_set(at("2026-10-09"))
    problem(step(lifeline, case_id, "decision", {"decision": "approve", "reason": "同意"},
                 user=REVIEWER_USER, role="reviewer"), 409, "democratic_appraisal")
    r = step(lifeline, case_id, "appraisal", {"held_on": "2026-10-09", "participants": 11, "votes_for": 9,
                                              "votes_against": 1, "abstentions": 1,
                                              "opinion": "车辆已于2025年出售，同意纳入"})
    assert r.status_code == 200, r.text
    assert dues(r.json())["decision/2"] == ("2026-10-13", "open")  # 10-10, 10-12, 10-13

    lifeline.clock_set(at("2026-10-12"))
    # Four eyes: the caseworker who surveyed and proposed cannot confirm alone, even as a reviewer.
    problem(step(lifeline, case_id, "decision", {"decision": "approve", "reason": "同意"},
                 user=TOWNSHIP_USER, role="reviewer"), 403, "four_eyes")
    r = step(lifeline, case_id, "decision", {"decision": "approve", "reason": "经审核确认，同意纳入低保"},
             user=REVIEWER_USER, role="reviewer")
    assert r.status_code == 200, r.text
    assert r.json()["first_period"] == "2026-11"
    view = lifeline.verification(case_id)
    assert view["state"] == "approved" and not [d for d in view["deadlines"] if d["state"] == "open"]
    assert dues(view)["whole_procedure"] == ("2026-10-30", "met")

    # Everything the procedure published is on the verification topic, in order.
    names = [e["type"].split(".")[-2] for e in map(json.loads, lifeline.published()) if e["subject"] == case_id]
    order = [n for n in names if n in ("HouseholdSurveyRecorded", "InitialReviewProposed", "PublicNoticePosted",
                                       "ObjectionRaised", "DemocraticAppraisalHeld", "BenefitApproved")]
    assert order == ["HouseholdSurveyRecorded", "InitialReviewProposed", "PublicNoticePosted",
                     "ObjectionRaised", "DemocraticAppraisalHeld", "BenefitApproved"]


def test_a_breach_is_published_and_escalated_once_across_a_notify_restart(lifeline):
    people = new_people(1)
    make_poor(lifeline, people)
    lifeline.clock_set(at("2026-11-02", "09:00"))  # Monday
    case_id = submit(lifeline, people)
    lifeline.accept(case_id)
    # Survey due 3 working days later: 11-05, warned from its start.
    wait_for(lambda: dues(lifeline.verification(case_id)).get("household_survey") == ("2026-11-05", "open"),
             what="the survey deadline")
    deadline_id = f"{case_id}/household_survey"

    def listed(state: str) -> list[dict]:
        with lifeline.client("notify", "county_officer", "370502") as c:
            r = c.get("/v1/deadlines", params={"region": "370502", "state": state})
        assert r.status_code == 200, r.text
        return [d for d in r.json()["items"] if d["deadline_id"] == deadline_id]

    wait_for(lambda: listed("open"), what="the deadline watched")
    lifeline.clock_set(at("2026-11-05", "08:00"))
    wait_for(lambda: listed("warned"), what="the warning")
    lifeline.kill("notify")
    lifeline.clock_set(at("2026-11-06", "00:00"))  # past 24:00 of 11-05
    lifeline.start("notify")
    (breached,) = wait_for(lambda: listed("breached"), what="the breach")
    assert breached["escalated_to"] == {"office": "370502", "level": "county"}
    lifeline.kill("notify")
    lifeline.start("notify")  # a second restart replays nothing twice

    def published(name: str) -> list[dict]:
        return [e for e in map(json.loads, lifeline.published())
                if e["type"] == f"cn.gov.mca.lifeline.{name}.v1" and e["data"]["deadline_id"] == deadline_id]

    wait_for(lambda: published("DeadlineBreached"), what="DeadlineBreached on the topic")
    import time
    time.sleep(3)  # several scans of the watch after the restart
    # One event each. The relay publishes at least once: killed after the broker took a message
    # and before it saved its position, it sends that message again, the same CloudEvent (same
    # id), which consumers see as one; a second warning would be another id.
    assert len({e["id"] for e in published("DeadlineWarning")}) == 1
    (event,) = {e["id"]: e for e in published("DeadlineBreached")}.values()
    assert event["data"]["escalated_to"] == {"office": "370502", "level": "county"}
    assert event["data"]["due_date"] == "2026-11-05"


def test_a_year_without_a_known_holiday_arrangement_is_said_on_the_case(lifeline):
    people = new_people(1)
    make_poor(lifeline, people)
    lifeline.clock_set(at("2026-12-21"))  # 20 working days run into 2027, not yet published
    case_id = submit(lifeline, people)
    lifeline.accept(case_id)
    view = wait_for(lambda: (v := lifeline.verification(case_id))["deadlines"] and v, what="deadlines")
    (whole,) = [d for d in view["deadlines"] if d["clock"] == "whole_procedure"]
    assert whole["calendar_known"] is False
    assert any(w.startswith("CALENDAR_UNKNOWN:2027") for w in view["calendar_warnings"])


def test_an_upheld_grievance_is_decided_again_on_the_old_evidence_and_both_decisions_are_kept(lifeline):
    people = new_people(2)
    make_poor(lifeline, people)
    lifeline.clock_set(at("2027-01-04"))
    case_id = submit(lifeline, people)
    lifeline.accept(case_id)
    wait_for(lambda: lifeline.verification(case_id)["state"] == "completed", what="the check completed")
    lifeline.through_procedure(case_id, "refuse")
    r = step(lifeline, case_id, "decision", {"decision": "refuse", "reason": "家庭财产超过规定标准"},
             user=REVIEWER_USER, role="reviewer")
    assert r.status_code == 200, r.text

    with lifeline.client("verification", "clerk", "370502") as c:
        r = c.post("/v1/grievances", json={"case_id": case_id, "against": "refusal",
                                           "text": "财产系借款购置，认定有误"})
        assert r.status_code == 201, r.text
        (grievance,) = r.json()["grievances"]
        assert [d for d in r.json()["deadlines"] if d["clock"] == "grievance"][0]["state"] == "open"
    with lifeline.client("verification", "reviewer", "370502", user=REVIEWER_USER) as c:
        r = c.post(f"/v1/grievances/{grievance['grievance_id']}/outcome",
                   json={"outcome": "upheld", "reason": "复核属实", "evidence": "original"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "completed" and r.json()["next_step"]["step"] == "initial_review"

    r = step(lifeline, case_id, "initial-review", {"proposal": "include", "reason": "复核后拟纳入"})
    assert r.status_code == 200, r.text
    r = step(lifeline, case_id, "public-notice")
    assert r.status_code == 200, r.text
    lifeline.clock_set(r.json()["public_notice"]["ends_at"])
    r = step(lifeline, case_id, "decision", {"decision": "approve", "reason": "复核后同意纳入"},
             user=REVIEWER_USER, role="reviewer")
    assert r.status_code == 200, r.text
    view = lifeline.verification(case_id)
    assert [d["decision"] for d in view["decisions"]] == ["refuse", "approve"]
    first, second = view["decisions"]
    # Decided again on the evidence as it stood: the same records, the same figures.
    assert second["evidence_version"] == first["evidence_version"]
    assert second["assessment"]["per_capita_income_fen"] == first["assessment"]["per_capita_income_fen"]
    with lifeline.client("verification", "auditor") as c:
        r = c.get("/v1/grievances", params={"case_id": case_id})
    assert r.json()["items"][0]["outcome"] == "upheld"
    # Both decisions are on the topic: the refusal and then the approval.
    names = [e["type"].split(".")[-2] for e in map(json.loads, lifeline.published()) if e["subject"] == case_id]
    assert [n for n in names if n in ("BenefitRefused", "BenefitApproved")] == ["BenefitRefused", "BenefitApproved"]


def test_a_cadres_relative_is_flagged_for_filing_declared_or_found_in_the_register(lifeline):
    people = new_people(2)
    make_poor(lifeline, people)
    lifeline.clock_set(at("2027-02-01"))
    body = household(people, VILLAGE)
    body["members"][1]["cadre_relation"] = "close_relative"  # declared at the window
    with lifeline.client("intake", "clerk", "370502") as c:
        r = c.post("/v1/applications", json=body)
        assert r.status_code == 201, r.text
        declared = r.json()["case_id"]
    # The applicant of another household is a cadre in the register the county loaded.
    others = new_people(1)
    make_poor(lifeline, others)
    with lifeline.client("verification", "county_officer", "370502") as c:
        r = c.put("/v1/cadre-registers/370502", json={"entries": [
            {"id_number": others[0], "name": "王小明", "relation": "cadre", "post": "某村党支部书记"}]})
        assert r.status_code == 200, r.text
    found = submit(lifeline, others)
    for case_id in (declared, found):
        lifeline.accept(case_id)
    flagged = wait_for(lambda: all(lifeline.verification(c)["filing"] for c in (declared, found)),
                       what="both flagged")
    assert flagged
    assert lifeline.verification(declared)["filing"][0]["reason"] == "declared"
    assert lifeline.verification(found)["filing"][0] == {
        "reason": "register", "relation": "cadre", "member": "王*明", "post": "某村党支部书记"}
    with lifeline.client("verification", "county_officer", "370502") as c:
        r = c.get("/v1/filings", params={"region": "370502"})
    assert r.status_code == 200, r.text
    listed = {item["case_id"] for item in r.json()["items"]}
    assert {declared, found} <= listed
    assert others[0] not in r.text and people[1] not in r.text  # never an ID number
