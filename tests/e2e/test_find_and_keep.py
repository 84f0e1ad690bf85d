"""Issue 11's chains from one service's route to another service's money, across the separate
processes: emergency relief granted at intake's window is paid the same day from the township's
reserve fund by payment (over ISO 20022, booked by the bank simulator) and recovered when its
post-approval is refused; a fraud reported and confirmed at verification makes payment recover
exactly what it paid since the fraud began, to the fen.

One timeline on the shared test clock, moving forward only: the relief on Monday 2026-11-02; the
fraud household approved in December 2026 (paid from 2027-01), paid for January and February,
found out in late February.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import new_people
from tests.e2e.test_flows import REGION, completed, decide, items, submit_accepted
from tests.e2e.test_payment import COUNTY, officer, payments, set_budget
from tests.e2e.test_reviews import quiet
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e

TOWNSHIP = REGION[:9]


def fund(lifeline) -> dict:
    with lifeline.client("payment", "caseworker", TOWNSHIP) as c:
        r = c.get(f"/v1/reserve-funds/{TOWNSHIP}")
    assert r.status_code == 200, r.text
    return r.json()


def recoveries(lifeline, case_id: str) -> list[dict]:
    with lifeline.client("payment", "auditor", COUNTY) as c:
        r = c.get("/v1/recoveries", params={"case_id": case_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def settled(lifeline, case_id: str) -> list[dict]:
    return [p for p in payments(lifeline, case_id) if p["status"] == "settled"]


def test_relief_granted_at_the_window_is_paid_the_same_day_and_recovered_when_refused(clocked_lifeline):
    lifeline = clocked_lifeline
    lifeline.clock_set("2026-11-02T10:00:00+08:00")  # a Monday, before any bank's cut-off
    with officer(lifeline) as c:
        r = c.post(f"/v1/reserve-funds/{TOWNSHIP}/replenishments",
                   json={"amount_fen": 500_000, "reference": f"BOOK-{uuid.uuid4().hex[:12]}"})
    assert r.status_code == 200, r.text
    before = fund(lifeline)["balance_fen"]


    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        r = c.post("/v1/applications", json=household(new_people(2), REGION, urgency="critical"))
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    with lifeline.client("intake", "reviewer", TOWNSHIP, user="reviewer-relief") as c:
        r = c.post(f"/v1/cases/{case_id}/emergency-relief", json={"amount_fen": 200_000, "reason": "火灾致住房损毁"})
    assert r.status_code == 201, r.text
    grant = r.json()

    # Paid before the clock moves: instructed and booked on the day it was granted.
    [paid] = wait_for(lambda: settled(lifeline, case_id), timeout=90, what="the relief paid and booked")
    assert paid["amount_fen"] == 200_000
    assert paid["instructed_at"].startswith("2026-11-02") and paid["settled_on"] == "2026-11-02"
    assert fund(lifeline)["balance_fen"] == before - 200_000

    with lifeline.client("intake", "county_officer", COUNTY, user="county-relief") as c:
        r = c.post(f"/v1/cases/{case_id}/emergency-relief/{grant['grant_id']}/post-approval",
                   json={"decision": "refuse", "reason": "经核实家庭另有住房，不符合急难型临时救助条件"})
    assert r.status_code == 200, r.text
    [recovery] = wait_for(lambda: recoveries(lifeline, case_id), what="the advance to recover")
    assert (recovery["ground"], recovery["cause"], recovery["amount_fen"]) == (
        "emergency_post_approval_refused", grant["grant_id"], 200_000)
    assert [p["payment_id"] for p in recovery["payments"]] == [paid["payment_id"]]


def run_and_settle(lifeline, period: str, case_id: str) -> dict:
    set_budget(lifeline, period, 100_000_000)
    with officer(lifeline) as c:
        r = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY})
    assert r.status_code == 202, r.text
    return wait_for(lambda: next((p for p in settled(lifeline, case_id) if p["period"] == period), None),
                    timeout=90, what=f"{period} paid and booked")


def test_fraud_confirmed_at_verification_recovers_what_was_paid_since_it_began(clocked_lifeline):
    lifeline = clocked_lifeline
    lifeline.clock_set("2026-12-01T09:00:00+08:00")

    people = new_people(2)
    quiet(lifeline, people)
    case_id = submit_accepted(lifeline, people)
    assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
    lifeline.pass_notices(lifeline.prepare_decision(case_id))
    r = decide(lifeline, case_id, "approve")
    assert r.status_code == 200, r.text
    assert r.json()["first_period"] == "2027-01"

    lifeline.clock_set("2027-01-05T10:00:00+08:00")
    january = run_and_settle(lifeline, "2027-01", case_id)
    lifeline.clock_set("2027-02-03T10:00:00+08:00")
    february = run_and_settle(lifeline, "2027-02", case_id)
    assert january["amount_fen"] == february["amount_fen"] > 0

    # Found out on 2027-02-20: the household hid a wage from 2027-02-10 on. January stays paid.
    lifeline.clock_set("2027-02-20T10:00:00+08:00")
    with lifeline.client("verification", "county_officer", COUNTY, user="officer-zhao") as c:
        r = c.post(f"/v1/cases/{case_id}/fraud", json={
            "kinds": ["concealment"], "evidence": "隐瞒家庭成员务工工资收入，有劳动合同与银行流水为证",
            "fraud_since": "2027-02-10"})
        assert r.status_code == 201, r.text
    with lifeline.client("verification", "county_officer", COUNTY, user="officer-qian") as c:
        r = c.post(f"/v1/cases/{case_id}/fraud/confirm")
    assert r.status_code == 200, r.text
    assert r.json()["terminated_from_period"] == "2027-03"

    [recovery] = wait_for(lambda: recoveries(lifeline, case_id), what="the fraud's recovery")
    assert (recovery["ground"], recovery["since"]) == ("fraud", "2027-02-10")
    assert recovery["amount_fen"] == february["amount_fen"]
    assert [p["payment_id"] for p in recovery["payments"]] == [february["payment_id"]]
    # Nothing is paid from March: the entitlement ended with the benefit.
    [entitlement] = items(lifeline, "payment", "/v1/entitlements", case_id)
    assert entitlement["status"] == "terminated"
