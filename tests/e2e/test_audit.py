"""Audit end to end (issue 13, parts 5-8), across the separate processes, on the test clock: a case
taken from its application to a settled payment; its bundle (`lifeline audit export`) verifies
with `lifeline audit check` and fails, naming the file, after one byte of it changes; the case
as of a moment before and after its decision; every consuming service's read models rebuilt
from the Kafka topics equal the live ones (`lifeline replay SERVICE --from-kafka`)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from lifeline.settings import SERVICES
from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_flows import REGION, completed, decide, items, submit_accepted
from tests.e2e.test_payment import COUNTY, entitlement, officer, payments, run_view, set_budget
from tests.harness import wait_for

pytestmark = pytest.mark.e2e


def now_between_steps() -> datetime:
    """A moment after every record so far and before every later one."""
    time.sleep(0.05)
    moment = datetime.now(timezone.utc)
    time.sleep(0.05)
    return moment


@pytest.fixture(scope="module")
def paid(clocked_lifeline):
    """A case from its application to a settled payment; the moments just before its decision
    and once the decision had reached every service."""
    lifeline = clocked_lifeline
    people = new_people(2)
    make_poor(lifeline, people, income_fen=20000)
    case_id = submit_accepted(lifeline, people)
    assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
    view = lifeline.prepare_decision(case_id)
    lifeline.pass_notices(view)  # the shared clock moved to the notice's end (lifeline clock set)
    before = now_between_steps()
    r = decide(lifeline, case_id, "approve")
    assert r.status_code == 200, r.text
    granted = entitlement(lifeline, case_id)
    with lifeline.client("intake") as c:
        wait_for(lambda: c.get(f"/v1/cases/{case_id}").json()["status"] == "approved", what="intake noted it")
    # And a referral to charity for what the benefit does not cover: a need opened from it.
    due = (lifeline.clock("show") + timedelta(days=20)).date().isoformat()
    with lifeline.client("intake", role="clerk", region=REGION[:9]) as c:
        r = c.post(f"/v1/cases/{case_id}/referrals", json={
            "target": "charity", "need_category": "medical", "amount_asked_fen": 500000,
            # No consent to share: the need stays open (never published to the federation by
            # charity's worker a moment later), so the need as of `after` is the one read here.
            "urgency": "urgent", "due_date": due, "consent_to_share": False})
    assert r.status_code == 201, r.text
    [need] = wait_for(lambda: items(lifeline, "charity", "/v1/needs", case_id), what="the need")
    after = now_between_steps()

    set_budget(lifeline, granted["first_period"], 100_000_000)
    with officer(lifeline) as c:
        r = c.post("/v1/payment-runs", json={"period": granted["first_period"], "county_code": COUNTY})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    wait_for(lambda: run_view(lifeline, run_id)["status"] == "completed", timeout=90, what="run completed")
    wait_for(lambda: [p for p in payments(lifeline, case_id) if p["status"] == "settled"], timeout=60,
             what="the payment settled")
    wait_for(lambda: len(items(lifeline, "notify", "/v1/notices", case_id)) >= 2, what="the notices")
    lifeline.settled_log_sizes(SERVICES)
    return {"lifeline": lifeline, "case_id": case_id, "before": before, "after": after, "need": need}


def as_of(lifeline, service: str, path: str, moment: datetime | str, region: str = COUNTY, **params):
    with lifeline.client(service, "auditor", region) as c:
        return c.get(path, params={**params, "as_of": moment if isinstance(moment, str) else moment.isoformat()})


def test_as_of_shows_the_case_before_and_after_its_decision(paid):
    lifeline, case_id, before, after = paid["lifeline"], paid["case_id"], paid["before"], paid["after"]
    path = f"/v1/verifications/{case_id}"
    then = as_of(lifeline, "verification", path, before)
    assert then.status_code == 200, then.text
    assert then.json()["decisions"] == [] and then.json()["benefit"] is None
    assert then.json()["state"] != "approved" and then.json()["public_notice"] is not None
    decided = as_of(lifeline, "verification", path, after).json()
    assert decided["state"] == "approved" and [d["decision"] for d in decided["decisions"]] == ["approve"]
    # What the reviewer saw is what the decision rests on: the same assessment.
    assert decided["assessment"] == then.json()["assessment"]

    case_then = as_of(lifeline, "intake", f"/v1/cases/{case_id}", before).json()
    case_after = as_of(lifeline, "intake", f"/v1/cases/{case_id}", after).json()
    assert case_then["status"] != "approved" and case_then["benefit_id"] is None
    assert case_after["status"] == "approved" and case_after["benefit_id"] == decided["benefit"]["benefit_id"]
    assert case_then["referrals"] == [] and [x["target"] for x in case_after["referrals"]] == ["charity"]

    need = paid["need"]
    assert as_of(lifeline, "charity", f"/v1/needs/{need['need_id']}", before).status_code == 404
    assert as_of(lifeline, "charity", f"/v1/needs/{need['need_id']}", after).json() == need

    entitlements = "/v1/entitlements"
    assert as_of(lifeline, "payment", entitlements, before, case_id=case_id).json()["items"] == []
    with lifeline.client("payment", "auditor", COUNTY) as c:
        live = c.get(entitlements, params={"case_id": case_id}).json()
    assert as_of(lifeline, "payment", entitlements, after, case_id=case_id).json() == live

    # Before the case existed: 404; in the future (after the shared clock too) or malformed: 422.
    assert as_of(lifeline, "verification", path, "2020-01-01T00:00:00+08:00").status_code == 404
    ahead = lifeline.clock("show") + timedelta(days=1)
    for moment in (ahead.isoformat(), "2026-12-01"):
        r = as_of(lifeline, "verification", path, moment)
        assert r.status_code == 422 and r.json()["errors"][0]["parameter"] == "as_of", r.text
    # An auditor of another county reads nothing of it, as of any moment.
    assert as_of(lifeline, "verification", path, after, region="370503").status_code == 403


def test_an_export_of_the_paid_case_verifies_and_fails_after_one_byte_changes(paid, tmp_path):
    lifeline, case_id = paid["lifeline"], paid["case_id"]
    out = tmp_path / "bundle"
    r = lifeline.cli("audit", "export", case_id, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    r = lifeline.cli("audit", "check", str(out))
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr

    events = {s: [json.loads(line) for line in (out / f"events/{s}.jsonl").read_text().splitlines()]
              for s in SERVICES}
    names = {s: {e["event"] for e in events[s]} for s in SERVICES}
    assert {"Case.Submitted", "Case.Accepted", "Case.BenefitDecided"} <= names["intake"]
    assert {"Verification.Started", "Verification.Approved"} <= names["verification"]
    assert {"Entitlement.Opened", "Payment.Instructed", "Payment.Settled"} <= names["payment"]
    assert "Notice.Issued" in names["notify"]
    assert all(e["recorded_at"] and e["who"]["user_id"] for s in SERVICES for e in events[s])
    [approved] = [e for e in events["verification"] if e["event"] == "Verification.Approved"]
    assert approved["who"]["role"] == "reviewer" and approved["why"] == "审核确认小组会议决定"
    # Causation across services: the entitlement was opened by the published approval.
    [opened] = [e for e in events["payment"] if e["event"] == "Entitlement.Opened"]
    assert opened["causation_id"] == approved["cloudevent_id"] is not None
    assert opened["correlation_id"] and opened["who"]["user_id"] == "system:payment"
    notices = json.loads((out / "readmodels/notify.json").read_text())
    letters = sorted(out.glob("notices/*.pdf"))
    assert letters and all(p.read_bytes().startswith(b"%PDF") for p in letters)
    assert len(letters) == len([d for d in notices if d["kind"] == "notice"])

    # One byte changed, in a letter and in the events: each is named, and the check fails.
    for rel in (letters[0].relative_to(out).as_posix(), "events/payment.jsonl"):
        path = out / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        r = lifeline.cli("audit", "check", str(out))
        assert r.returncode == 1 and f"changed: {rel}" in r.stdout, r.stdout + r.stderr


def test_replay_from_kafka_equals_the_live_read_models(paid):
    lifeline = paid["lifeline"]
    lifeline.settled_log_sizes(SERVICES)
    for service in SERVICES:
        r = lifeline.cli("replay", service, "--from-kafka")
        assert r.returncode == 0, f"{service}:\n{r.stdout}\n{r.stderr}"
        assert "identical to live read models" in r.stdout and "events/s" in r.stderr, r.stdout + r.stderr
        assert " 0 consumed events handled again" not in r.stdout, r.stdout
    # From the store as before, now with its rate.
    r = lifeline.cli("replay", "payment")
    assert r.returncode == 0 and "identical" in r.stdout and "events/s" in r.stderr, r.stdout + r.stderr
