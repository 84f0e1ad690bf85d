"""Emergency relief paid from the township's reserve fund, and recoveries (追回), across the
separate processes: payment, the bank simulator (paying and booking over ISO 20022), Kafka.

The events intake and verification publish (EmergencyReliefGranted, its post-approval, a
recorded fraud) are put on their topics here as those services would publish them: valid
CloudEvents of the registry, the account sealed with the deployment's sealer, at positions far
beyond the real logs (their own identities); one of them twice and republished as a new copy.
The whole chain from intake's and verification's routes is issue 11's cross-service test.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import date, datetime

import pytest
from aiokafka import AIOKafkaProducer

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent
from lifeline.settings import Settings
from lifeline.stores.sealing import sealer_for
from tests.e2e.test_flows import REGION
from tests.e2e.test_payment import COUNTY, approve_households, entitlement, officer, payments, set_budget
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

TOWNSHIP = REGION[:9]
ACTOR = {"user_id": "county-001", "role": "county_officer", "org_code": COUNTY}
_positions = iter(range(10**9 + random.randrange(10**6) * 100, 2 * 10**9))


def publish(lifeline, topic: str, *events: CloudEvent, key: str) -> None:
    """The events as their sources send them: signed (each copy is the same bytes)."""
    async def go() -> None:
        producer = AIOKafkaProducer(**lifeline.kafka_options(), acks="all")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(lifeline.namespace + topic, lifeline.signed(event), key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(go())


def event(name: str, data: dict, source: str) -> CloudEvent:
    return registry.new_event(name, data, subject=data["case_id"], source=source, sequence=next(_positions),
                              actor=ACTOR)


def granted(lifeline, amount_fen: int, number: str) -> dict:
    """EmergencyReliefGranted as intake publishes it: the account sealed with the deployment's sealer."""
    sealed = sealer_for(Settings.from_env(lifeline.env)).account("RCC", number, "王小明")
    now = lifeline.clock("show")
    return {
        "grant_id": f"ER-{uuid.uuid4().hex[:20].upper()}", "case_id": f"C-ER{uuid.uuid4().hex[:16].upper()}",
        "region_code": REGION, "township_code": TOWNSHIP, "amount_fen": amount_fen, "reason": "火灾致住房损毁，先行救助",
        "approval_level": "township", "granted_by": "township-001",
        "bank_account": {"channel": sealed.channel, "account_name": sealed.account_name,
                         "number_masked": sealed.number_masked, "number_sealed": sealed.number_sealed},
        "post_approval_due_date": now.date().isoformat(), "granted_at": now.isoformat(),
    }


def post_approval(grant: dict, decision: str, lifeline) -> dict:
    return {"grant_id": grant["grant_id"], "case_id": grant["case_id"], "region_code": grant["region_code"],
            "township_code": grant["township_code"], "decision": decision, "reason": "经核查不符合急难型临时救助条件",
            "amount_fen": grant["amount_fen"], "decided_by": "county-002",
            "decided_at": lifeline.clock("show").isoformat()}


def fund(lifeline) -> dict:
    with lifeline.client("payment", "caseworker", TOWNSHIP) as c:
        r = c.get(f"/v1/reserve-funds/{TOWNSHIP}")
    assert r.status_code == 200, r.text
    return r.json()


def replenish(lifeline, amount_fen: int, reference: str) -> None:
    with officer(lifeline) as c:
        r = c.post(f"/v1/reserve-funds/{TOWNSHIP}/replenishments", json={"amount_fen": amount_fen,
                                                                         "reference": reference})
    assert r.status_code == 200, r.text


def recoveries(lifeline, case_id: str) -> list[dict]:
    with lifeline.client("payment", "auditor", COUNTY) as c:
        r = c.get("/v1/recoveries", params={"case_id": case_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def opened_on_the_topic(lifeline, case_id: str) -> list[dict]:
    """RecoveryOpened CloudEvents of the case on payment's topic, one per CloudEvent id."""
    found = {}
    for value in lifeline.published():
        e = json.loads(value)
        if e.get("type") == "cn.gov.mca.lifeline.RecoveryOpened.v1" and e["data"]["case_id"] == case_id:
            found[e["id"]] = e["data"]
    return list(found.values())


def settled(lifeline, case_id: str) -> list[dict]:
    return [p for p in payments(lifeline, case_id) if p["status"] == "settled"]


def test_a_grant_is_paid_the_same_day_once_and_its_refused_post_approval_is_recovered_once(lifeline):
    start = fund(lifeline)["balance_fen"]
    replenish(lifeline, 500_000, "DYQ-BYJ-E2E-1")
    grant = granted(lifeline, 180_000, "6228480000000011001")
    first = event("EmergencyReliefGranted", grant, "lifeline/intake")
    again = event("EmergencyReliefGranted", grant, "lifeline/intake")  # republished: another copy
    publish(lifeline, T.TOPICS["intake"], first, first, again, key=grant["case_id"])
    [paid] = wait_for(lambda: settled(lifeline, grant["case_id"]), timeout=60, what="the grant paid and booked")
    assert (paid["amount_fen"], paid["fund_source"]) == (180_000, "township_reserve_fund")
    assert paid["settled_on"] == lifeline.clock("show").date().isoformat()  # the same day
    assert len(payments(lifeline, grant["case_id"])) == 1
    assert fund(lifeline)["balance_fen"] == start + 500_000 - 180_000

    refused = event("EmergencyReliefPostApprovalDecided", post_approval(grant, "refused", lifeline), "lifeline/intake")
    republished = event("EmergencyReliefPostApprovalDecided", post_approval(grant, "refused", lifeline),
                        "lifeline/intake")
    publish(lifeline, T.TOPICS["intake"], refused, refused, republished, key=grant["case_id"])
    [recovery] = wait_for(lambda: recoveries(lifeline, grant["case_id"]), what="the recovery")
    assert (recovery["ground"], recovery["amount_fen"], recovery["cause"], recovery["since"]) == (
        "emergency_post_approval_refused", 180_000, grant["grant_id"], None)
    assert recovery["payments"] == [{"payment_id": paid["payment_id"], "period": paid["period"],
                                     "amount_fen": 180_000}]
    [on_topic] = wait_for(lambda: opened_on_the_topic(lifeline, grant["case_id"]), what="RecoveryOpened published")
    assert on_topic["recovery_id"] == recovery["recovery_id"] and on_topic["amount_fen"] == 180_000
    # Paid back in two parts, never below zero.
    path = f"/v1/recoveries/{recovery['recovery_id']}/repayments"
    with lifeline.client("payment", "caseworker", TOWNSHIP) as c:
        assert c.post(path, json={"amount_fen": 100_000, "reference": "SK-E2E-1"}).json()["balance_fen"] == 80_000
        over = c.post(path, json={"amount_fen": 80_001, "reference": "SK-E2E-2"})
        assert over.status_code == 409 and over.json()["rule"] == "recovery_balance", over.text
        done = c.post(path, json={"amount_fen": 80_000, "reference": "SK-E2E-2"}).json()
    assert (done["balance_fen"], done["status"]) == (0, "closed")
    assert len(opened_on_the_topic(lifeline, grant["case_id"])) == 1


def test_a_grant_the_fund_cannot_cover_is_held_and_paid_when_the_fund_is_replenished(lifeline):
    short = fund(lifeline)["balance_fen"]
    grant = granted(lifeline, short + 250_000, "6228480000000011002")
    publish(lifeline, T.TOPICS["intake"], event("EmergencyReliefGranted", grant, "lifeline/intake"),
            key=grant["case_id"])
    held = wait_for(lambda: fund(lifeline)["held_grants"], what="the grant held")
    assert [(h["grant_id"], h["problem"]) for h in held] == [(grant["grant_id"], "reserve_fund_balance")]
    assert fund(lifeline)["balance_fen"] == short and payments(lifeline, grant["case_id"]) == []
    replenish(lifeline, 250_000, "DYQ-BYJ-E2E-2")
    [paid] = wait_for(lambda: settled(lifeline, grant["case_id"]), timeout=60, what="paid after the replenishment")
    assert paid["amount_fen"] == short + 250_000
    assert fund(lifeline)["held_grants"] == [] and fund(lifeline)["balance_fen"] == 0


def test_a_fraud_recovers_the_settled_payments_since_it_began_to_the_fen(lifeline):
    [case_id] = approve_households(lifeline, ["6228480000000011003"])
    doc = entitlement(lifeline, case_id)
    period = doc["first_period"]
    set_budget(lifeline, period, 100_000_000)
    with officer(lifeline) as c:
        r = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY})
    assert r.status_code == 202, r.text
    [paid] = wait_for(lambda: settled(lifeline, case_id), timeout=90, what="the month paid and booked")
    fraud = {
        "case_id": case_id, "benefit_id": doc["benefit_id"], "benefit_type": doc["benefit_type"],
        "region_code": doc["region_code"], "applicant_name_masked": "王*明",
        "applicant_id_number_masked": "370502********0012", "fraud_kinds": ["concealment"],
        "fraud_since": date.fromisoformat(f"{period}-01").isoformat(),
        "terminated_from_period": period, "reported_by": "county-001", "confirmed_by": "county-002",
        "recorded_at": datetime.now().astimezone().isoformat(),
    }
    recorded = event("FraudRecorded", fraud, "lifeline/verification")
    publish(lifeline, T.TOPICS["verification"], recorded, recorded, key=case_id)
    [recovery] = wait_for(lambda: recoveries(lifeline, case_id), what="the fraud's recovery")
    assert (recovery["ground"], recovery["cause"], recovery["since"]) == ("fraud", doc["benefit_id"],
                                                                        fraud["fraud_since"])
    assert recovery["amount_fen"] == paid["amount_fen"] == doc["monthly_amount_fen"]
    assert [p["payment_id"] for p in recovery["payments"]] == [paid["payment_id"]]
    assert len(wait_for(lambda: opened_on_the_topic(lifeline, case_id), what="published")) == 1
