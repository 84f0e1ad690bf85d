"""Keeping files right across the separate processes (issue 11, parts 6-9): periodic reviews that
ask the partner departments again (the simulator answers from its records), a pensioner's grace
period, deaths reported by public security, fraud confirmed by two county officers. Payment
follows each change: what an entitlement pays per period is read from its view
(`GET /v1/entitlements?case_id=`) with payment's own rule (`amount_for`).

One timeline on the shared test clock: five households are approved in December 2026 (paid
from 2027-01), reviewed in March 2027, and so on; the clock only moves forward.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

import httpx
import pytest

from lifeline.contracts import registry
from lifeline.contracts.topics import CREDIT
from lifeline.rules.ids import make_resident_id
from services.payment.domain import amount_for
from tests.e2e.conftest import make_poor, new_people, set_records
from tests.e2e.test_flows import REGION, completed, decide, items, submit_accepted
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY = REGION[:6]
PROCEDURE_STARTS = "2026-12-01T09:00:00+08:00"  # a Tuesday; the notice ends on 2026-12-09
REVIEWED_AT = "2027-03-15T10:00:00+08:00"
DEATHS_AT = "2027-04-10T10:00:00+08:00"
FRAUD_AT = "2027-04-20T10:00:00+08:00"
PERIODS = [f"2027-{m:02d}" for m in range(1, 13)]
# The grace periods a caseworker names (policy.yaml grace_periods), reviewed on REVIEWED_AT: the
# months named (None: the policy's), the last period paid and the first one not paid.
NAMED_GRACES = {
    "graduate_employed": (9, "2027-12", "2028-01"),
    "public_employment": (None, "2029-03", "2029-04"),
    "disabled_employment": (None, "2030-03", "2030-04"),
    "epidemic": (4, "2027-07", "2027-08"),
}


def old_person(female: bool = False) -> str:
    """Someone born in 1955 (a pensioner's age), unique within the run."""
    return make_resident_id(COUNTY, date(1955, 5, 1), uuid.uuid4().int % 500, female=female)


def quiet(lifeline, people: list[str], **hrss: int) -> None:
    """The departments report nothing for these people but what 人社 (hrss) pays each."""
    make_poor(lifeline, people)
    for n in people:
        set_records(lifeline, "tax", n, income_tax_fen=0)
        set_records(lifeline, "hrss", n, monthly_income_fen=hrss.get(n, 0))


def entitlement(lifeline, case_id: str) -> dict:
    [item] = wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what=f"entitlement {case_id}")
    return item


def paid(item: dict) -> dict[str, int]:
    """What the entitlement pays for each period of 2027, by payment's own rule."""
    return {p: amount_for(item["kind"], item["first_period"], item["monthly_amount_fen"], item["one_off_amount_fen"],
                          item["changes"], p) for p in PERIODS}


def verification(lifeline, case_id: str) -> dict:
    return lifeline.verification(case_id)


def reviews(lifeline, case_id: str) -> list[dict]:
    return items(lifeline, "verification", "/v1/reviews", case_id)


def review(lifeline, case_id: str, body: dict | None = None) -> dict:
    with lifeline.client("verification", "caseworker", COUNTY, user="caseworker-wang") as c:
        r = c.post(f"/v1/reviews/{case_id}", json=body or {"reason": "年度复核"})
    assert r.status_code == 201, r.text
    return r.json()


def completed_review(lifeline, case_id: str) -> dict:
    return wait_for(lambda: [r for r in reviews(lifeline, case_id) if r["state"] == "completed"][-1],
                    what=f"review of {case_id} completed")


def report_death(lifeline, id_number: str, day: str) -> None:
    with httpx.Client(base_url=lifeline.url("simulator"), timeout=10) as s:
        r = s.post("/v1/deaths", json={"id_number": id_number, "name": "王乐", "date_of_death": day})
    assert r.status_code == 202, r.text


def topic_messages(lifeline, topic: str) -> list[dict]:
    """Every message on one of this Lifeline's topics, read from the broker now."""
    from aiokafka import AIOKafkaConsumer

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(lifeline.namespace + topic, **lifeline.kafka_options(),
                                    group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                    metadata_max_age_ms=1000)
        await consumer.start()
        try:
            for _ in range(100):  # no group: every partition of the topic, once the metadata is in
                if consumer.assignment():
                    break
                await asyncio.sleep(0.1)
            parts = sorted(consumer.assignment())
            ends = await consumer.end_offsets(parts) if parts else {}
            values: list[bytes] = []
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    values.extend(m.value for m in batch if m.value is not None)
            return values
        finally:
            await consumer.stop()

    return [json.loads(v) for v in asyncio.run(read())]


@pytest.fixture(scope="module")
def households(clocked_lifeline) -> dict[str, tuple[str, list[str]]]:
    """Households approved on 2026-12-09 (paid from 2027-01), by label: (case id, people)."""
    lifeline = clocked_lifeline
    lifeline.clock_set(PROCEDURE_STARTS)
    pensioner = [old_person(), old_person(female=True)]
    lower = new_people(2)
    three = new_people(3)
    alone = new_people(1)
    fraud = new_people(2)
    quiet(lifeline, pensioner, **{pensioner[0]: 50000})  # a small pension: (103,000 − 25,000) × 2
    quiet(lifeline, lower, **{lower[0]: 150000})         # 75,000 a head: the minimum top-up, 49,000 × 2
    named = {reason: new_people(2) for reason in NAMED_GRACES}
    for people in (three, alone, fraud, *named.values()):
        quiet(lifeline, people)
    cases = {label: (submit_accepted(lifeline, people), people) for label, people in (
        ("pensioner", pensioner), ("lower", lower), ("three", three), ("alone", alone), ("fraud", fraud),
        *named.items())}
    views = []
    for case_id, _ in cases.values():
        assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
        views.append(lifeline.prepare_decision(case_id))
    lifeline.pass_notices(*views)
    for case_id, _ in cases.values():
        r = decide(lifeline, case_id, "approve")
        assert r.status_code == 200, r.text
        assert r.json()["first_period"] == "2027-01"
    return cases


def test_approved_households_are_listed_for_review_by_their_cycle(clocked_lifeline, households):
    lifeline = clocked_lifeline
    pensioner, three = households["pensioner"][0], households["three"][0]
    # A pension 人社 records: stable, annual. No recorded income, members who can work: half-yearly.
    assert (verification(lifeline, pensioner)["review_cycle_months"], verification(lifeline, three)["next_review_date"]) == (
        12, "2027-06-09")

    def listed(before: str) -> dict[str, str]:
        with lifeline.client("verification", "caseworker", REGION[:9]) as c:
            r = c.get("/v1/reviews/due", params={"before": before, "region": REGION[:9]})
        assert r.status_code == 200, r.text
        return {d["case_id"]: d["next_review_date"] for d in r.json()["items"]}

    due = wait_for(lambda: (found := listed("2027-12-31")) and all(c in found for c, _ in households.values()) and found,
                   what="the households due for review")
    assert (due[pensioner], due[three]) == ("2027-12-09", "2027-06-09")
    assert three in listed("2027-06-09") and pensioner not in listed("2027-06-09")


def test_a_pensioner_between_1_and_2_times_the_standard_is_paid_6_more_periods_then_stopped(clocked_lifeline, households):
    lifeline = clocked_lifeline
    case_id, (old, _) = households["pensioner"]
    before = paid(entitlement(lifeline, case_id))
    assert set(before.values()) == {156000}
    set_records(lifeline, "hrss", old, monthly_income_fen=300000)  # 150,000 a head: 1.46 × 103,000
    lifeline.clock_set(REVIEWED_AT)
    started = review(lifeline, case_id)
    assert (started["state"], started["scheduled_for"]) == ("open", "2027-12-09")
    done = completed_review(lifeline, case_id)
    assert (done["outcome"], done["per_capita_income_fen"], done["from_period"], done["next_review_date"]) == (
        "grace", 150000, "2027-10", None)
    assert done["grace"] == {"last_paid_period": "2027-09", "months": 6, "reason": "pensioner"}
    item = wait_for(lambda: (e := entitlement(lifeline, case_id))["changes"] and e, what="the termination reaches payment")
    assert item["changes"] == [{"change": "terminate", "from_period": "2027-10", "monthly_amount_fen": None}]
    # March (the review's month) and 6 more periods, April to September, at the amount in force; then nothing.
    assert paid(item) == {p: 156000 if p <= "2027-09" else 0 for p in PERIODS}
    assert verification(lifeline, case_id)["benefit_status"] == "terminated"


def test_a_review_with_a_lower_income_adjusts_the_amount_from_the_next_period(clocked_lifeline, households):
    lifeline = clocked_lifeline
    case_id, (earner, _) = households["lower"]
    set_records(lifeline, "hrss", earner, monthly_income_fen=0)  # the job is lost
    review(lifeline, case_id)
    done = completed_review(lifeline, case_id)
    assert (done["outcome"], done["monthly_amount_fen"], done["from_period"]) == ("adjusted", 206000, "2027-04")
    # No income 人社 records any more and both can work: the next review in six months.
    assert done["next_review_date"] == "2027-09-15"
    item = wait_for(lambda: (e := entitlement(lifeline, case_id))["changes"] and e, what="the adjustment reaches payment")
    assert paid(item) == {p: 98000 if p <= "2027-03" else 206000 for p in PERIODS}


@pytest.mark.parametrize("reason", list(NAMED_GRACES))
def test_a_grace_the_caseworker_names_keeps_paying_for_its_months_then_stops(clocked_lifeline, households, reason):
    lifeline = clocked_lifeline
    months, last_paid, first_unpaid = NAMED_GRACES[reason]
    case_id, (_, earner) = households[reason]
    set_records(lifeline, "hrss", earner, monthly_income_fen=400000)  # 200,000 a head: above the standard
    lifeline.clock_set(REVIEWED_AT)
    review(lifeline, case_id, {"reason": "年度复核", "grace_reason": reason,
                               **({"grace_months": months} if months else {})})
    done = completed_review(lifeline, case_id)
    assert (done["outcome"], done["from_period"], done["grace"]["reason"], done["grace"]["last_paid_period"]) == (
        "grace", first_unpaid, reason, last_paid)
    item = wait_for(lambda: (e := entitlement(lifeline, case_id))["changes"] and e, what="the termination reaches payment")
    assert item["changes"] == [{"change": "terminate", "from_period": first_unpaid, "monthly_amount_fen": None}]
    pays = {p: amount_for(item["kind"], item["first_period"], item["monthly_amount_fen"], None, item["changes"], p)
            for p in (last_paid, first_unpaid)}
    assert pays == {last_paid: 206000, first_unpaid: 0}


def test_a_death_of_one_of_three_adjusts_and_of_the_only_member_terminates(clocked_lifeline, households):
    lifeline = clocked_lifeline
    lifeline.clock_set(DEATHS_AT)
    three, (_, _, child) = households["three"]
    alone, (only,) = households["alone"]
    report_death(lifeline, child, "2027-04-08")
    report_death(lifeline, only, "2027-04-08")
    report_death(lifeline, child, "2027-04-08")  # the same record again: handled once
    item = wait_for(lambda: (e := entitlement(lifeline, three))["changes"] and e, what="the adjustment after the death")
    assert item["changes"] == [{"change": "adjust", "from_period": "2027-05", "monthly_amount_fen": 206000}]
    assert paid(item) == {p: 309000 if p <= "2027-04" else 206000 for p in PERIODS}
    ended = wait_for(lambda: (e := entitlement(lifeline, alone))["status"] == "terminated" and e, what="terminated")
    assert paid(ended) == {p: 103000 if p <= "2027-04" else 0 for p in PERIODS}
    view = wait_for(lambda: (v := verification(lifeline, alone))["benefit_status"] == "terminated" and v,
                    what="verification ends the benefit too")
    assert [(c["change"], c["from_period"]) for c in view["benefit_changes"]] == [("terminate", "2027-05")]
    deaths = verification(lifeline, three)["deaths"]
    assert [(d["member"], d["date_of_death"]) for d in deaths] == [("王*", "2027-04-08")]
    assert len(verification(lifeline, three)["benefit_changes"]) == 1


def test_fraud_confirmed_by_a_second_officer_terminates_and_reaches_the_credit_feed_masked(clocked_lifeline, households):
    lifeline = clocked_lifeline
    lifeline.clock_set(FRAUD_AT)
    case_id, (applicant, _) = households["fraud"]

    def officer(user: str) -> httpx.Client:
        return lifeline.client("verification", "county_officer", COUNTY, user=user)

    with officer("officer-zhang") as c:
        r = c.post(f"/v1/cases/{case_id}/fraud", json={
            "kinds": ["concealment", "false_report"], "evidence": "隐瞒配偶在外务工工资收入，有银行流水为证",
            "fraud_since": "2026-11-01"})
        assert r.status_code == 201, r.text
        r = c.post(f"/v1/cases/{case_id}/fraud/confirm")  # the reporter cannot confirm alone
        assert r.status_code == 409 and r.json()["rule"] == "four_eyes", r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert entitlement(lifeline, case_id)["changes"] == []
    with officer("officer-li") as c:
        r = c.post(f"/v1/cases/{case_id}/fraud/confirm")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["terminated_from_period"]) == ("recorded", "2027-05")
    item = wait_for(lambda: (e := entitlement(lifeline, case_id))["status"] == "terminated" and e,
                    what="the termination reaches payment")
    assert paid(item) == {p: 206000 if p <= "2027-04" else 0 for p in PERIODS}

    def on_credit_feed() -> list[dict]:
        return [m for m in topic_messages(lifeline, CREDIT) if m["type"] == registry.event_type("FraudRecorded", 1)]

    [message] = wait_for(on_credit_feed, what="FraudRecorded on the dishonesty-list feed")
    data = message["data"]
    assert message["subject"] == case_id
    assert data["applicant_id_number_masked"] == applicant[:6] + "********" + applicant[-4:]
    assert (data["fraud_kinds"], data["fraud_since"], data["terminated_from_period"]) == (
        ["concealment", "false_report"], "2026-11-01", "2027-05")
    assert (data["reported_by"], data["confirmed_by"]) == ("officer-zhang", "officer-li")
    assert applicant not in json.dumps(message) and "address" not in data and "evidence" not in data
