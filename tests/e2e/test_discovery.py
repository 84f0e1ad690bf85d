"""Finding households and following referrals up (issue 11), across processes: a partner's life
event opens exactly one discovery report however often it is delivered; a report is contacted and
the application made from it takes its case; a referral answered by the department closes with its
clock cleared; an overdue referral is escalated once to its clerk and the office above; bad input
is refused naming the field, with nothing stored or published."""

from __future__ import annotations

import json
import time

import httpx

from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_flows import metric
from tests.harness import household, wait_for

VILLAGE = "370502101001"
TOWNSHIP = "370502101"
CLERK = "clerk-disc-1"


def published(lifeline, name: str, **match) -> list[dict]:
    """The CloudEvents of `name` on the topics whose data has these values."""
    return [e for e in map(json.loads, lifeline.published())
            if e["type"].split(".")[-2] == name
            and all(e["data"].get(k) == v for k, v in match.items())]


def reports(lifeline, **params) -> list[dict]:
    with lifeline.client("intake", "caseworker", "370502") as c:
        r = c.get("/v1/discovery-reports", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def deadlines(lifeline, deadline_id: str, state: str | None = None) -> list[dict]:
    with lifeline.client("notify", "county_officer", "370502") as c:
        r = c.get("/v1/deadlines", params={"region": "370502", **({"state": state} if state else {})})
    assert r.status_code == 200, r.text
    return [d for d in r.json()["items"] if d["deadline_id"] == deadline_id]


def referral(lifeline, referral_id: str) -> dict:
    with lifeline.client("intake", "clerk", "370502") as c:
        r = c.get(f"/v1/referrals/{referral_id}")
    assert r.status_code == 200, r.text
    return r.json()


def submit(lifeline, people: list[str], **extra) -> httpx.Response:
    with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        return c.post("/v1/applications", json=household(people, VILLAGE, **extra))


def raise_referral(lifeline, case_id: str, target: str, **extra) -> str:
    with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        r = c.post(f"/v1/cases/{case_id}/referrals", json={
            "target": target, "need_category": "medical", "amount_asked_fen": 0, "consent_to_share": True,
            **extra})
    assert r.status_code == 201, r.text
    return r.json()["referral_id"]


def problem(r: httpx.Response, status: int, pointer: str | None = None, rule: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body.get("errors", [])], body
    if rule is not None:
        assert body["rule"] == rule, body
    return body


def test_a_partner_life_event_opens_exactly_one_discovery_report_even_when_republished(clocked_lifeline):
    lifeline = clocked_lifeline
    (person,) = new_people(1)
    event = {"kind": "disaster_loss", "id_number": person, "name": "钱多多", "region_code": VILLAGE,
             "amount_fen": 1_500_000, "occurred_on": "2026-11-20"}
    with httpx.Client(base_url=lifeline.url("simulator"), timeout=30) as sim:
        first = sim.post("/v1/life-events", json=event)
        assert first.status_code == 202, first.text
        record_id = first.json()["record_id"]
        again = sim.post("/v1/life-events", json=event)          # the department sends it twice
        assert again.status_code == 202 and again.json()["record_id"] == record_id

    def mine() -> list[dict]:
        return [r for r in reports(lifeline) if record_id in r["record_ids"]]

    (report,) = wait_for(mine, what="the monitoring report")
    assert (report["rule_id"], report["reporter"]["kind"], report["state"], report["urgency"]) == (
        "disaster_loss", "monitoring", "discovered", "critical")
    assert report["responsible_office"] == TOWNSHIP and report["person"]["id_number_masked"] == (
        person[:6] + "********" + person[-4:])
    wait_for(lambda: metric(lifeline, "intake", "lifeline_events_consumed_total",
                            event="LifeEventReported", outcome="duplicate") >= 1, what="the second delivery")
    # The simulator restarted forgets what it sent and sends the record again; intake's log
    # republished from the start: no second report, no second deadline.
    lifeline.kill("simulator")
    lifeline.start("simulator")
    with httpx.Client(base_url=lifeline.url("simulator"), timeout=30) as sim:
        assert sim.post("/v1/life-events", json=event).json()["record_id"] == record_id
    r = lifeline.cli("republish", "intake", "--from", "1")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: metric(lifeline, "intake", "lifeline_events_consumed_total",
                            event="LifeEventReported", outcome="duplicate") >= 2, what="the third delivery")
    wait_for(lambda: metric(lifeline, "notify", "lifeline_events_consumed_total",
                            event="DeadlineSet", outcome="duplicate") >= 1, what="republished deadlines")
    time.sleep(2.0)
    assert len(mine()) == 1
    events = published(lifeline, "DiscoveryReported", report_id=report["report_id"])
    assert len({e["id"] for e in events}) == 1
    assert person not in json.dumps(events, ensure_ascii=False) and "钱多多" not in json.dumps(events, ensure_ascii=False)
    (deadline,) = deadlines(lifeline, f"{report['report_id']}/discovery_contact")
    assert deadline["clock"] == "discovery_contact" and deadline["responsible_office"] == TOWNSHIP


def test_a_discovery_report_is_contacted_and_the_application_takes_its_case(clocked_lifeline):
    lifeline = clocked_lifeline
    people = new_people(2)
    make_poor(lifeline, people)
    with lifeline.client("intake", "partner", "370502", user="hospital-1") as c:
        r = c.post("/v1/discovery-reports", json={
            "reporter": {"kind": "hospital", "organisation": "东营区人民医院", "name": "张医生"},
            "person": {"id_number": people[0], "name": "王小明", "address": "胜利社区3号楼", "region_code": VILLAGE},
            "seen": "住院费用无力支付，家中无其他劳动力", "urgency": "urgent"})
    assert r.status_code == 201, r.text
    reported = r.json()
    report_id, case_id = reported["report_id"], reported["case_id"]
    deadline_id = f"{report_id}/discovery_contact"
    (watched,) = wait_for(lambda: deadlines(lifeline, deadline_id, "open"), what="the contact clock watched")
    assert watched["due_date"] == reported["contact_due_date"]
    with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        r = c.post(f"/v1/discovery-reports/{report_id}/contact",
                   json={"outcome": "applying", "note": "已入户联系，协助申请"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["deadline_state"]) == ("contacted", "met")
    wait_for(lambda: deadlines(lifeline, deadline_id, "cleared"), what="the contact clock cleared")

    r = submit(lifeline, people, channel="discovery", discovery_report_id=report_id)
    assert r.status_code == 201, r.text
    assert r.json()["case_id"] == case_id                        # the link: the reserved case
    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        assert c.get(f"/v1/cases/{case_id}").json()["channel"] == "discovery"
        doc = c.get(f"/v1/discovery-reports/{report_id}").json()
    assert (doc["state"], doc["contact_outcome"], doc["case_id"]) == ("applied", "applying", case_id)
    assert [d["report_id"] for d in reports(lifeline, state="applied", region=TOWNSHIP)].count(report_id) == 1
    (submitted,) = wait_for(lambda: published(lifeline, "ApplicationSubmitted", case_id=case_id), what="submitted")
    (disc,) = published(lifeline, "DiscoveryReported", report_id=report_id)
    assert disc["data"]["case_id"] == submitted["data"]["case_id"] == case_id
    # Once per report: another application from it is refused, naming the case.
    body = problem(submit(lifeline, new_people(1), discovery_report_id=report_id), 409, rule="discovery_applied_once")
    assert body["case_id"] == case_id


def test_a_referral_answered_by_the_department_is_closed_and_its_clock_cleared(clocked_lifeline):
    lifeline = clocked_lifeline
    r = submit(lifeline, new_people(1))
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    referral_id = raise_referral(lifeline, case_id, "medical_insurance")
    deadline_id = f"{referral_id}/referral"
    wait_for(lambda: deadlines(lifeline, deadline_id, "open"), what="the referral clock watched")
    with httpx.Client(base_url=lifeline.url("simulator"), timeout=30) as sim:
        r = sim.post("/v1/referral-answers", json={"referral_id": referral_id, "case_id": case_id,
                                                   "department": "medical_insurance", "outcome": "resolved",
                                                   "note": "已落实医疗救助"})
    assert r.status_code == 202, r.text
    doc = wait_for(lambda: (d := referral(lifeline, referral_id))["status"] == "answered" and d,
                   what="the referral answered")
    assert (doc["outcome"], doc["answered_by"], doc["assignee"], doc["deadline_state"], doc["late"]) == (
        "resolved", "department", CLERK, "met", False)
    (cleared,) = wait_for(lambda: deadlines(lifeline, deadline_id, "cleared"), what="the clock cleared")
    assert cleared["deadline_id"] == deadline_id
    (recorded,) = {e["id"]: e for e in published(lifeline, "ReferralOutcomeRecorded", referral_id=referral_id)}.values()
    assert recorded["data"]["answered_by"] == "department"
    with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        problem(c.post(f"/v1/referrals/{referral_id}/outcome", json={"outcome": "declined"}), 409,
                rule="referral_answered_once")


def test_bad_input_is_refused_naming_the_field_and_nothing_is_published(clocked_lifeline):
    lifeline = clocked_lifeline
    (person,) = new_people(1)
    r = submit(lifeline, [person])
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    before = lifeline.settled_log_sizes(["intake"])
    on_topic = len(lifeline.published())
    report = {"reporter": {"kind": "school", "organisation": "东营区第一中学"},
              "person": {"name": "王乐", "region_code": VILLAGE}, "seen": "学生长期欠缴伙食费", "urgency": "normal"}
    with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        problem(c.post("/v1/discovery-reports", json={**report, "person": {
            **report["person"], "id_number": person[:-1] + ("0" if person[-1] != "0" else "1")}}),
            422, "#/person/id_number")
        problem(c.post("/v1/discovery-reports", json={**report, "person": {**report["person"],
                                                                          "region_code": "330103001001"}}),
                422, "#/person/region_code")
        problem(c.post("/v1/discovery-reports", json={**report, "reporter": {"kind": "monitoring",
                                                                            "organisation": "x"}}),
                422, "#/reporter/kind")
        problem(c.post("/v1/discovery-reports", json={**report, "urgency": "soon"}), 422, "#/urgency")
        problem(c.post("/v1/discovery-reports", json={**report, "seen": ""}), 422, "#/seen")
        # Another township's village: outside a township clerk's region.
        problem(c.post("/v1/discovery-reports", json={**report, "person": {**report["person"],
                                                                          "region_code": "370502102001"}}), 403)
        problem(c.post("/v1/discovery-reports/D-NOPE/contact", json={"outcome": "applying"}), 404)
        problem(c.post(f"/v1/cases/{case_id}/referrals", json={
            "target": "housing", "need_category": "housing", "amount_asked_fen": 0, "consent_to_share": True,
            "due_date": "2020-01-02"}), 422, "#/due_date", rule="due_date_not_before_today")
    problem(submit(lifeline, new_people(1), discovery_report_id="D-UNKNOWN"), 422, "#/discovery_report_id",
            rule="discovery_report_unknown")
    with httpx.Client(base_url=lifeline.url("simulator"), timeout=30) as sim:
        problem(sim.post("/v1/life-events", json={"kind": "lottery_win", "id_number": person, "name": "王乐",
                                                  "region_code": VILLAGE, "occurred_on": "2026-11-01"}), 422)
        problem(sim.post("/v1/referral-answers", json={"referral_id": "R-1", "case_id": case_id,
                                                       "department": "housing", "outcome": "maybe"}), 422)
    assert lifeline.settled_log_sizes(["intake"]) == before
    assert len(lifeline.published()) == on_topic


def test_an_overdue_referral_is_escalated_once_to_its_clerk_and_the_office_above(clocked_lifeline):
    lifeline = clocked_lifeline
    lifeline.clock_set("2026-11-02T09:00:00+08:00")  # Monday
    try:
        r = submit(lifeline, new_people(1))
        assert r.status_code == 201, r.text
        case_id = r.json()["case_id"]
        referral_id = raise_referral(lifeline, case_id, "housing")
        deadline_id = f"{referral_id}/referral"
        # 5 working days: 11-03, 04, 05, 06, 09.
        assert referral(lifeline, referral_id)["due_date"] == "2026-11-09"
        (watched,) = wait_for(lambda: deadlines(lifeline, deadline_id, "open"), what="the referral clock watched")
        assert (watched["due_date"], watched["responsible_office"]) == ("2026-11-09", TOWNSHIP)
        r = lifeline.cli("clock", "advance", "8d")                # 11-10 09:00: past 24:00 of 11-09
        assert r.returncode == 0, r.stderr
        doc = wait_for(lambda: (d := referral(lifeline, referral_id))["status"] == "overdue" and d,
                       what="the referral overdue")
        assert doc["escalated_to"] == {"clerk": CLERK, "level": "county", "office": "370502"}
        assert doc["assignee"] == CLERK and doc["deadline_state"] == "breached"
        with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
            r = c.get("/v1/referrals", params={"assignee": CLERK, "state": "overdue"})
        assert r.status_code == 200, r.text
        assert [i["referral_id"] for i in r.json()["items"]].count(referral_id) == 1
        time.sleep(3)  # several scans of the deadline watch
        assert len({e["id"] for e in published(lifeline, "DeadlineBreached", deadline_id=deadline_id)}) == 1
        assert len({e["id"] for e in published(lifeline, "DeadlineWarning", deadline_id=deadline_id)}) <= 1
        # The clerk records the late answer: closed, the clock cleared late.
        with lifeline.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
            r = c.post(f"/v1/referrals/{referral_id}/outcome", json={"outcome": "accepted", "note": "已督办"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["late"], r.json()["answered_by"]) == ("answered", True, "clerk")
        (cleared,) = wait_for(lambda: published(lifeline, "DeadlineCleared", deadline_id=deadline_id),
                              what="DeadlineCleared")
        assert cleared["data"]["outcome"] == "late"
    finally:
        lifeline.clock_reset()
