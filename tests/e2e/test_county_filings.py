"""镇→县备案 and the monthly statistics across the separate processes (issue 17, part 5): each
township approval is filed with the county in the transaction that stores it, its 5-working-day
clock watched by notify's deadline watch; one filing received in time is met, the others, left
past their due day, are breached, escalated once to the county and shown overdue by
verification; January's statistics are published once and downloaded as CSV with the right
counts and amounts to the fen. Bad input is refused naming the field, with nothing stored or
published.

One timeline on the shared test clock: three households are approved on Thursday 2026-12-10
(the notice posted on Tuesday 12-01 ends with 12-09), paid from 2027-01; the filings are due by
the end of 2026-12-17 (12-11, 14, 15, 16, 17).
"""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from tests.e2e.conftest import make_poor, new_people, set_records
from tests.e2e.test_flows import REGION, completed, decide, submit_accepted
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY = REGION[:6]
TOWNSHIP = REGION[:9]
PROCEDURE_STARTS = "2026-12-01T09:00:00+08:00"  # a Tuesday
DUE_DATE = "2026-12-17"
IN_TIME = "2026-12-17T16:00:00+08:00"            # the due day itself
OVERDUE = "2026-12-18T09:00:00+08:00"            # past 24:00 of the due day
FEBRUARY = "2027-02-01T09:00:00+08:00"           # January is over: its statistics may be published
# Urban standard 103,000 fen (policy.yaml): two people without income 206,000; one 103,000; three
# whose one earner brings 150,000 (50,000 a head) (103,000 − 50,000) × 3 = 159,000.
AMOUNTS = {"two": 206000, "one": 103000, "three": 159000}


def published(lifeline, name: str, **match) -> list[dict]:
    """The CloudEvents of `name` whose data has these values, once each (a republish repeats ids)."""
    found = {e["id"]: e for e in map(json.loads, lifeline.published())
             if e["type"].split(".")[-2] == name and all(e["data"].get(k) == v for k, v in match.items())}
    return list(found.values())


def filings(lifeline, **params) -> list[dict]:
    with lifeline.client("verification", "county_officer", COUNTY) as c:
        r = c.get("/v1/filings/county", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def filing(lifeline, case_id: str) -> dict:
    (doc,) = [d for d in filings(lifeline) if d["case_id"] == case_id]
    return doc


def deadlines(lifeline, deadline_id: str, state: str | None = None) -> list[dict]:
    with lifeline.client("notify", "county_officer", COUNTY) as c:
        r = c.get("/v1/deadlines", params={"region": COUNTY, **({"state": state} if state else {})})
    assert r.status_code == 200, r.text
    return [d for d in r.json()["items"] if d["deadline_id"] == deadline_id]


def receive(lifeline, filing_id: str, body: dict | None = None, region: str = COUNTY):
    with lifeline.client("verification", "county_officer", region, user="officer-zhang") as c:
        return c.post(f"/v1/filings/county/{filing_id}/receipt", json={} if body is None else body)


def problem(r, status: int, pointer: str | None = None, parameter: str | None = None, rule: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body.get("errors", [])], body
    if parameter is not None:
        assert parameter in [e.get("parameter") for e in body.get("errors", [])], body
    if rule is not None:
        assert body["rule"] == rule, body
    return body


@pytest.fixture(scope="module")
def households(clocked_lifeline) -> dict[str, tuple[str, list[str]]]:
    """Three households approved by the township's review group on 2026-12-10, by label."""
    lifeline = clocked_lifeline
    lifeline.clock_set(PROCEDURE_STARTS)
    people = {"two": new_people(2), "one": new_people(1), "three": new_people(3)}
    for label, ids in people.items():
        make_poor(lifeline, ids)
        for n in ids:
            set_records(lifeline, "tax", n, income_tax_fen=0)
            set_records(lifeline, "hrss", n, monthly_income_fen=150000 if label == "three" and n == ids[0] else 0)
    cases = {label: (submit_accepted(lifeline, ids), ids) for label, ids in people.items()}
    views = []
    for case_id, _ in cases.values():
        assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
        views.append(lifeline.prepare_decision(case_id))
    lifeline.pass_notices(*views)
    lifeline.clock_set("2026-12-10T10:00:00+08:00")
    for label, (case_id, _) in cases.items():
        r = decide(lifeline, case_id, "approve")  # a reviewer: the township's review group
        assert r.status_code == 200, r.text
        assert (r.json()["approval_level"], r.json()["first_period"], r.json()["monthly_amount_fen"]) == (
            "township", "2027-01", AMOUNTS[label])
    return cases


def test_each_township_approval_is_filed_with_its_clock_watched(clocked_lifeline, households):
    lifeline = clocked_lifeline
    for case_id, _ in households.values():
        doc = wait_for(lambda: filing(lifeline, case_id), what=f"the filing of {case_id}")
        assert (doc["decision"], doc["state"], doc["due_date"], doc["township_code"]) == (
            "inclusion", "due", DUE_DATE, TOWNSHIP)
        deadline_id = f"{doc['filing_id']}/county_filing"
        (watched,) = wait_for(lambda: deadlines(lifeline, deadline_id, "open"), what="the filing clock watched")
        assert (watched["due_date"], watched["responsible_office"], watched["clock"]) == (
            DUE_DATE, TOWNSHIP, "county_filing")
        (due,) = wait_for(lambda: published(lifeline, "CountyFilingDue", case_id=case_id), what="CountyFilingDue")
        assert due["data"]["filing_id"] == doc["filing_id"] and due["subject"] == case_id
        assert not any(n in json.dumps(due) for n in households["two"][1] + households["three"][1])


def test_a_filing_received_by_its_due_day_is_met(clocked_lifeline, households):
    lifeline = clocked_lifeline
    case_id = households["two"][0]
    doc = wait_for(lambda: filing(lifeline, case_id), what="the filing")
    lifeline.clock_set(IN_TIME)
    problem(receive(lifeline, doc["filing_id"], region="370602"), 403)  # another county's officer
    r = receive(lifeline, doc["filing_id"], {"note": "纸质材料齐全"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["outcome"], r.json()["received_by"]) == ("filed", "met", "officer-zhang")
    deadline_id = f"{doc['filing_id']}/county_filing"
    (cleared,) = wait_for(lambda: published(lifeline, "DeadlineCleared", deadline_id=deadline_id),
                          what="DeadlineCleared")
    assert cleared["data"]["outcome"] == "met"
    wait_for(lambda: deadlines(lifeline, deadline_id, "cleared"), what="notify stops watching it")
    (received,) = wait_for(lambda: published(lifeline, "CountyFilingReceived", filing_id=doc["filing_id"]),
                           what="CountyFilingReceived")
    assert received["data"]["outcome"] == "met"
    problem(receive(lifeline, doc["filing_id"]), 409, rule="county_filing_received")


def test_an_inclusion_filed_after_5_working_days_is_breached_and_escalated_once(clocked_lifeline, households):
    lifeline = clocked_lifeline
    late, never = households["one"][0], households["three"][0]
    lifeline.clock_set(OVERDUE)
    for case_id in (late, never):
        doc = wait_for(lambda: (d := filing(lifeline, case_id))["state"] == "overdue" and d,
                       what=f"the filing of {case_id} overdue")
        assert doc["escalated_to"] == {"level": "county", "office": COUNTY}
        deadline_id = f"{doc['filing_id']}/county_filing"
        (breached,) = wait_for(lambda: published(lifeline, "DeadlineBreached", deadline_id=deadline_id),
                               what="DeadlineBreached")
        assert (breached["data"]["responsible_office"], breached["data"]["escalated_to"]) == (
            TOWNSHIP, {"office": COUNTY, "level": "county"})
    assert {d["case_id"] for d in filings(lifeline, state="overdue", region=TOWNSHIP)} >= {late, never}
    time.sleep(3)  # several scans of the deadline watch
    for case_id in (late, never):
        deadline_id = f"{filing(lifeline, case_id)['filing_id']}/county_filing"
        assert len(published(lifeline, "DeadlineBreached", deadline_id=deadline_id)) == 1
        assert len(published(lifeline, "DeadlineWarning", deadline_id=deadline_id)) <= 1
    # Received late: filed, and the clock cleared late.
    doc = filing(lifeline, late)
    r = receive(lifeline, doc["filing_id"])
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["outcome"]) == ("filed", "late")
    (cleared,) = wait_for(lambda: published(lifeline, "DeadlineCleared",
                                            deadline_id=f"{doc['filing_id']}/county_filing"), what="cleared late")
    assert cleared["data"]["outcome"] == "late"
    assert filing(lifeline, never)["state"] == "overdue"


def test_januarys_statistics_are_published_once_with_the_amounts_to_the_fen(clocked_lifeline, households):
    lifeline = clocked_lifeline
    lifeline.clock_set(FEBRUARY)
    with lifeline.client("verification", "county_officer", COUNTY, user="officer-li") as c:
        r = c.post(f"/v1/statistics/{COUNTY}/2027-01")
        assert r.status_code == 201, r.text
        body = r.json()
        again = c.post(f"/v1/statistics/{COUNTY}/2027-01")
        assert (again.status_code, again.json()) == (200, body)
        december = c.post(f"/v1/statistics/{COUNTY}/2026-12")
        assert december.status_code == 201, december.text
    total = {f["assistance_type"]: f for f in body["county_total"]}
    # Other tests of this module's Lifeline approve no one in the county: exactly our three.
    assert total["dibao"] == {"assistance_type": "dibao", "cases": 3, "people": 6, "amount_fen": sum(AMOUNTS.values()),
                              "inclusions": 0, "exits": 0}
    assert [t["township_code"] for t in body["townships"]] == [TOWNSHIP]
    assert {f["assistance_type"]: (f["cases"], f["inclusions"]) for f in december.json()["county_total"]}[
        "dibao"] == (0, 3)
    (event,) = wait_for(lambda: published(lifeline, "MonthlyStatisticsPublished", period="2027-01"),
                        what="MonthlyStatisticsPublished")
    assert event["data"] == body and event["subject"] == f"MS-{COUNTY}-2027-01"

    with lifeline.client("verification", "auditor", COUNTY) as c:
        r = c.get(f"/v1/statistics/{COUNTY}/2027-01.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv") and r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 10  # the township and the county, five assistance types each
    dibao = {row["层级(level)"]: row for row in rows if row["救助类型(assistance_type)"] == "dibao"}
    for level, region in (("township", TOWNSHIP), ("county", COUNTY)):
        row = dibao[level]
        assert (row["区划代码(region_code)"], row["保障户数(cases)"], row["保障人数(people)"], row["金额（分）(amount_fen)"],
                row["金额（元）(amount_yuan)"], row["救助类型名称(assistance_type_zh)"]) == (
            region, "3", "6", "468000", "4680.00", "最低生活保障")


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored_or_published(clocked_lifeline, households):
    lifeline = clocked_lifeline
    doc = filing(lifeline, households["three"][0])
    before = lifeline.settled_log_sizes(["verification"])
    on_topic = len(lifeline.published())
    problem(receive(lifeline, doc["filing_id"], {"note": "x" * 501}), 422, "#/note")
    problem(receive(lifeline, doc["filing_id"], {"received": True}), 422, "#/received")
    problem(receive(lifeline, "CF-UNKNOWN-1"), 404)
    with lifeline.client("verification", "county_officer", COUNTY) as c:
        problem(c.post(f"/v1/statistics/{COUNTY}/2027-13"), 422, parameter="period")
        problem(c.post("/v1/statistics/999999/2027-01"), 422, parameter="county_code")
        problem(c.post(f"/v1/statistics/{COUNTY}/2027-02"), 409, rule="period_not_over")
        problem(c.get("/v1/filings/county", params={"state": "late"}), 422)
    with lifeline.client("verification", "reviewer", TOWNSHIP) as c:
        problem(c.post(f"/v1/statistics/{COUNTY}/2027-01"), 403)
    assert lifeline.settled_log_sizes(["verification"]) == before
    assert len(lifeline.published()) == on_topic
    assert filing(lifeline, households["three"][0])["state"] == "overdue"
