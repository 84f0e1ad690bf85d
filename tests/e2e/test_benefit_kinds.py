"""What each kind of benefit becomes, across the separate processes.

临时救助 (linshi_jinan, linshi_zhichu) is one-off relief, approved once by the level its amount
needs and recorded by payment as one payable; 低收入家庭认定 (low_income) is a recognition that
is never payable; monthly benefits start the month after the decision, in Beijing time.

Each case is accepted, checked and taken through the procedure (survey, initial review, public
notice) before it is decided; the shared test clock is moved past the notice, so "today" is
the clock's, not the system's.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from lifeline.rules.periods import SHANGHAI, business_date, period_of
from lifeline.settings import Settings
from lifeline.rules.policy import CountyPolicy, default_policy_book
from tests.e2e.conftest import make_poor, new_people, set_records
from tests.e2e.test_flows import REGION, completed, items, metric, submit_accepted, verification
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

LAST_SECOND_OF_2026 = "2026-12-31T23:59:59+08:00"
PROCEDURE_STARTS = "2026-12-14T09:00:00+08:00"  # a Monday: the 7-day notice ends on Dec 22


def policy(lifeline, on: datetime | None = None) -> CountyPolicy:
    """The county policy the services of this Lifeline apply on `on` (default: now on its
    shared clock)."""
    book = default_policy_book(Settings.from_env(lifeline.env))
    return book.policy_for(REGION, business_date(on or lifeline.clock("show")))


def decide(lifeline, case_id, decision="approve", role="reviewer", reason="审核确认小组会议决定"):
    with lifeline.client("verification", role=role, region=REGION[:6]) as c:
        return c.post(f"/v1/verifications/{case_id}/decision", json={"decision": decision, "reason": reason})


def entitlements(lifeline, case_id) -> list[dict]:
    return wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id),
                    what=f"entitlement of {case_id}")


def relief_case(lifeline, requested_fen: int) -> str:
    """An emergency-relief (急难型临时救助) application, checked, proposed for inclusion and
    publicly noticed: ready for a decision."""
    people = new_people(2)
    make_poor(lifeline, people)
    case_id = submit_accepted(lifeline, people, assistance_type="linshi_jinan", urgency="urgent",
                              requested_amount_fen=requested_fen)
    v = completed(lifeline, case_id)
    assert v["assessment"]["outcome"] == "eligible", v["assessment"]
    lifeline.through_procedure(case_id)
    return case_id


def test_emergency_relief_is_approved_once_and_recorded_as_a_one_off_payable(lifeline):
    caps = policy(lifeline).emergency
    amount = caps.township_cap_fen - 100000  # within what the township may approve
    case_id = relief_case(lifeline, amount)

    r = decide(lifeline, case_id)
    assert r.status_code == 200, r.text
    benefit = r.json()
    assert benefit["kind"] == "one_off" and benefit["benefit_type"] == "linshi_jinan"
    assert benefit["one_off_amount_fen"] == amount and benefit["monthly_amount_fen"] is None
    assert benefit["fund_source"] and benefit["approval_level"] == "township"
    # Paid as soon as granted: in the month of the decision.
    assert benefit["first_period"] == period_of(business_date(datetime.fromisoformat(benefit["approved_at"])))

    [item] = entitlements(lifeline, case_id)
    assert item["kind"] == "one_off" and item["payable"] is True
    assert item["one_off_amount_fen"] == amount and item["monthly_amount_fen"] is None
    assert item["fund_source"] == benefit["fund_source"]
    assert item["first_period"] == benefit["first_period"]
    assert item["benefit_id"] == benefit["benefit_id"]

    # Verification publishes its whole log again: payment hears every approval a second time.
    wait_for(lambda: metric(lifeline, "payment", "lifeline_events_consumed_total",
                            event="BenefitApproved", outcome="processed") >= 1, what="approval counted")
    # The relief is paid at once, without a run: its payment, the bank's status report and statement are
    # payment's own work in flight, done before the log is measured.
    wait_for(lambda: [p["status"] for p in items(lifeline, "payment", "/v1/payments", case_id)] == ["settled"],
             timeout=60, what="the relief paid")
    with httpx.Client(base_url=lifeline.url("bank"), timeout=10) as bank:
        wait_for(lambda: all(c["status"] != "pending" for c in bank.get("/v1/callbacks").json()["items"]),
                 timeout=60, what="the bank's callbacks delivered")
    # Quiet for longer than the payment worker's scan, which completes and reconciles the relief's run.
    before = lifeline.settled_log_sizes(["payment"], quiet=3.0)
    processed = metric(lifeline, "payment", "lifeline_events_consumed_total",
                       event="BenefitApproved", outcome="processed")
    duplicates = metric(lifeline, "payment", "lifeline_events_consumed_total",
                        event="BenefitApproved", outcome="duplicate")
    r = lifeline.cli("republish", "verification", "--from", "1")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: metric(lifeline, "payment", "lifeline_events_consumed_total",
                            event="BenefitApproved", outcome="duplicate") >= duplicates + processed,
             what="every approval delivered again")
    time.sleep(1.0)
    assert lifeline.settled_log_sizes(["payment"]) == before
    assert metric(lifeline, "payment", "lifeline_events_consumed_total",
                  event="BenefitApproved", outcome="processed") == processed
    assert items(lifeline, "payment", "/v1/entitlements", case_id) == [item]
    # And the decision itself is taken once.
    assert decide(lifeline, case_id).status_code == 409


def test_relief_above_the_township_cap_needs_the_county(lifeline):
    caps = policy(lifeline).emergency
    amount = caps.township_cap_fen + 500000
    assert amount < caps.county_cap_fen
    case_id = relief_case(lifeline, amount)
    assert verification(lifeline, case_id)["assessment"]["detail"]["approval_level"] == "county"

    # The township's reviewer may not approve it: 403 naming the rule (graded approval).
    refused = decide(lifeline, case_id, role="reviewer")
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["status"] == 403 and refused.json()["rule"] == "approval_level"
    assert verification(lifeline, case_id)["state"] == "completed"  # nothing changed

    r = decide(lifeline, case_id, role="county_officer")
    assert r.status_code == 200, r.text
    benefit = r.json()
    assert benefit["approval_level"] == "county" and benefit["kind"] == "one_off"
    assert benefit["one_off_amount_fen"] == amount
    [item] = entitlements(lifeline, case_id)
    assert item["kind"] == "one_off" and item["payable"] is True and item["one_off_amount_fen"] == amount


def test_low_income_recognition_is_recorded_and_never_payable(lifeline):
    county = policy(lifeline)
    standard = county.standard_for("urban")
    income = standard + (int(county.low_income_multiplier * standard) - standard) // 2
    assert standard < income < county.low_income_multiplier * standard  # above dibao, within 1.5x
    [person] = new_people(1)
    make_poor(lifeline, [person], income_fen=income)
    set_records(lifeline, "tax", person)  # no income tax: the net income is `income`
    case_id = submit_accepted(lifeline, [person], assistance_type="low_income",
                              declared_monthly_income_fen=income)
    v = completed(lifeline, case_id)
    assert v["assessment"]["outcome"] == "eligible", v["assessment"]
    assert v["assessment"]["recommended_assistance_type"] == "low_income"
    assert v["assessment"]["per_capita_income_fen"] == income

    lifeline.through_procedure(case_id)
    r = decide(lifeline, case_id)
    assert r.status_code == 200, r.text
    benefit = r.json()
    assert benefit["kind"] == "recognition" and benefit["benefit_type"] == "low_income"
    assert benefit["monthly_amount_fen"] is None and benefit["one_off_amount_fen"] is None

    [item] = entitlements(lifeline, case_id)
    assert item["kind"] == "recognition" and item["payable"] is False
    assert item["monthly_amount_fen"] is None and item["one_off_amount_fen"] is None
    assert item["fund_source"] is None


def test_a_decision_at_the_last_second_of_the_year_pays_from_january(clocked_lifeline):
    lifeline = clocked_lifeline
    people = new_people(2)
    make_poor(lifeline, people, income_fen=20000)
    try:
        # The procedure runs in December, its public notice ends before the year does.
        lifeline.clock_set(PROCEDURE_STARTS)
        case_id = submit_accepted(lifeline, people)
        assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
        notice_ends = lifeline.prepare_decision(case_id)["public_notice"]["ends_at"]
        assert datetime.fromisoformat(notice_ends) < datetime.fromisoformat(LAST_SECOND_OF_2026)
        assert lifeline.clock_set(LAST_SECOND_OF_2026).isoformat() == LAST_SECOND_OF_2026
        r = decide(lifeline, case_id)
        assert r.status_code == 200, r.text
        benefit = r.json()
        assert benefit["kind"] == "monthly" and benefit["monthly_amount_fen"] > 0
        assert benefit["approved_at"] == LAST_SECOND_OF_2026
        assert benefit["first_period"] == "2027-01"

        [item] = entitlements(lifeline, case_id)
        assert item["kind"] == "monthly" and item["payable"] is True
        assert item["first_period"] == "2027-01"
        assert item["monthly_amount_fen"] == benefit["monthly_amount_fen"]
        # Payment, another process, reads the same frozen moment.
        assert item["opened_at"] == LAST_SECOND_OF_2026
    finally:
        reset = lifeline.clock_reset()
    assert abs((reset - datetime.now(SHANGHAI)).total_seconds()) < 60


def test_expenditure_relief_asks_medical_insurance_and_education(lifeline):
    [person] = new_people(1)
    make_poor(lifeline, [person], income_fen=60000)
    set_records(lifeline, "medical_insurance", person, medical_expense_fen=50000)
    case_id = submit_accepted(lifeline, [person], assistance_type="linshi_zhichu")

    requested = wait_for(lambda: verification(lifeline, case_id).get("departments_requested"),
                         what=f"requests of {case_id}")
    assert {"medical_insurance", "education"} <= set(requested)
    assert set(requested) == set(policy(lifeline).departments_for("linshi_zhichu"))
    # Both answer, and the check completes with nothing missing.
    v = completed(lifeline, case_id)
    assert v["departments_missing"] == []
    assert {"medical_insurance", "education"} <= set(v["departments_answered"])


def test_a_caseworker_corrects_the_account_a_benefit_is_paid_into(lifeline):
    """PUT /v1/entitlements/{id}/bank-account: sealed at once, masked in every answer; a bad
    body or a recognition changes nothing."""
    caps = policy(lifeline).emergency
    case_id = relief_case(lifeline, caps.township_cap_fen - 100000)
    assert decide(lifeline, case_id).status_code == 200
    [item] = entitlements(lifeline, case_id)
    path = f"/v1/entitlements/{item['entitlement_id']}/bank-account"
    body = {"channel": "PSBC", "account_number": "6217990012345678888", "account_name": "王小明",
            "reason": "原账户已销户，户主提供新账户"}
    with lifeline.client("payment", role="caseworker", region=REGION[:6]) as c:
        bad = c.put(path, json={**body, "account_number": "12AB"})
        assert bad.status_code == 422 and "6217990012345678888" not in bad.text
        r = c.put(path, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["bank_account_ref"] == "PSBC:6217***********8888"
        assert "6217990012345678888" not in r.text
    with lifeline.client("payment", role="clerk", region=REGION[:6]) as c:
        assert c.put(path, json=body).status_code == 403  # clerks do not change where money goes
    [item] = entitlements(lifeline, case_id)
    assert item["bank_account_ref"] == "PSBC:6217***********8888"
