"""Monthly payment runs across the separate processes: payment, the bank simulator (its own
process, speaking ISO 20022 over HTTP and calling payment back), the procedure before.

Each test approves a few households through the real commands, sets the county's budget,
starts the run and follows it to the statements; the shared test clock stands in for the
days in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from lifeline.iso20022 import parse_pain001
from lifeline.iso20022._xml import check_valid, parse_document
from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_flows import REGION, completed, decide, items, submit_accepted
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY = REGION[:6]
OFFICER = "officer-zhang"
OTHER_OFFICER = "officer-li"


def approve_households(lifeline, accounts: list[str]) -> list[str]:
    """One-person dibao households, each paid into its own account, approved together."""
    cases = []
    for account in accounts:
        people = new_people(1)
        make_poor(lifeline, people, income_fen=20000)
        cases.append(submit_accepted(lifeline, people, bank_account={
            "channel": "RCC", "account_number": account, "account_name": "王小明"}))
    views = []
    for case_id in cases:
        assert completed(lifeline, case_id)["assessment"]["outcome"] == "eligible"
        views.append(lifeline.prepare_decision(case_id))
    lifeline.pass_notices(*views)
    for case_id in cases:
        r = decide(lifeline, case_id, "approve")
        assert r.status_code == 200, r.text
    return cases


def entitlement(lifeline, case_id: str) -> dict:
    [item] = wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what=f"entitlement {case_id}")
    return item


def payments(lifeline, case_id: str) -> list[dict]:
    return items(lifeline, "payment", "/v1/payments", case_id)


def officer(lifeline, user: str = OFFICER) -> httpx.Client:
    return lifeline.client("payment", "county_officer", COUNTY, user=user)


def bank(lifeline) -> httpx.Client:
    return httpx.Client(base_url=lifeline.url("bank"), timeout=10)


def run_view(lifeline, run_id: str) -> dict:
    with officer(lifeline) as c:
        r = c.get(f"/v1/payment-runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()


def reconciliation(lifeline, run_id: str) -> dict:
    with officer(lifeline) as c:
        r = c.get(f"/v1/payment-runs/{run_id}/reconciliation")
    assert r.status_code == 200, r.text
    return r.json()


def set_budget(lifeline, period: str, amount_fen: int) -> None:
    with officer(lifeline) as c:
        r = c.post("/v1/budgets", json={"county_code": COUNTY, "period": period, "fund_source": "dibao_fund",
                                        "amount_fen": amount_fen})
    assert r.status_code == 200, r.text


def pain001_files(lifeline) -> list[bytes]:
    with bank(lifeline) as b:
        listing = b.get("/v1/files").json()
        names = [f["name"] for f in listing["items"] if f["kind"] == "pain.001.001.09"]
        return [b.get(f"/v1/files/{name}").content for name in names]


def test_a_run_pays_each_entitlement_once_holds_a_return_and_pays_it_after_the_correction(lifeline):
    closed = "6228480000000009001"
    cases = approve_households(lifeline, ["6228480000000009000", closed, "6228480000000009002"])
    period = {entitlement(lifeline, case_id)["first_period"] for case_id in cases}.pop()
    with bank(lifeline) as b:
        assert b.put(f"/v1/accounts/{closed}", json={"status": "closed"}).status_code == 200
    set_budget(lifeline, period, 100_000_000)

    with officer(lifeline) as c:
        r = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        again = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY})
    assert again.status_code == 202 and again.json()["run_id"] == run_id and again.json()["started"] is False

    view = wait_for(lambda: (v := run_view(lifeline, run_id))["status"] == "completed" and v, timeout=60,
                    what="run completed")
    ours = [p for case_id in cases for p in payments(lifeline, case_id)]
    assert len(ours) == 3 and all(p["period"] == period for p in ours)
    assert view["planned"]["budget_check"][0]["exceeds"] is False
    # The closed account comes back AC04 and is held; the others are booked on the statement.
    returned = wait_for(lambda: [p for p in payments(lifeline, cases[1]) if p["status"] == "returned"],
                        what="the closed account's return")
    assert returned[0]["reason_code"] == "AC04"
    wait_for(lambda: all(p["status"] == "settled" for c in (cases[0], cases[2]) for p in payments(lifeline, c)),
             what="the others settled")
    report = wait_for(lambda: (r := reconciliation(lifeline, run_id))["totals"]["pending"]["count"] == 0 and r,
                      what="nothing pending")
    assert report["totals"]["held"]["count"] == 1 and report["balanced"] is True

    # Every file the bank got is valid pain.001.001.09 and names each payment once.
    files = pain001_files(lifeline)
    for content in files:
        check_valid(parse_document(content, "pain.001.001.09"), "pain.001.001.09", incoming=True)
    ids = [t.end_to_end_id for content in files for t in parse_pain001(content).transfers]
    for p in ours:
        assert ids.count(p["payment_id"]) == 1

    # The household gives a new account: the held payment goes once more, and is booked.
    item = entitlement(lifeline, cases[1])
    with lifeline.client("payment", "caseworker", COUNTY) as c:
        r = c.put(f"/v1/entitlements/{item['entitlement_id']}/bank-account", json={
            "channel": "RCC", "account_number": "6228480000000009003", "account_name": "王小明",
            "reason": "原账户已销户（AC04），户主提供新账户"})
    assert r.status_code == 200, r.text
    wait_for(lambda: payments(lifeline, cases[1])[0]["status"] == "settled", timeout=60, what="released and settled")
    [paid] = payments(lifeline, cases[1])
    assert paid["bank_account_ref"].endswith("9003")
    ids = [t.end_to_end_id for content in pain001_files(lifeline) for t in parse_pain001(content).transfers]
    assert ids.count(paid["payment_id"]) == 2  # the returned attempt and the one after the correction
    report = wait_for(lambda: (r := reconciliation(lifeline, run_id))["totals"]["held"]["count"] == 0 and r,
                      what="nothing held")
    assert report["totals"]["settled"]["count"] == 3 and report["balanced"] is True
    assert report["totals"]["instructed"]["total_fen"] == sum(p["amount_fen"] for p in ours)


def test_a_run_over_budget_waits_for_another_officer(lifeline):
    cases = approve_households(lifeline, ["6228480000000009100"])
    period = entitlement(lifeline, cases[0])["first_period"]
    lifeline.clock_advance("35d")  # the next month's run: this period's budget is spent
    period = next_period_of(period)
    set_budget(lifeline, period, 1)  # one fen
    with officer(lifeline) as c:
        run_id = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY}).json()["run_id"]
    view = wait_for(lambda: (v := run_view(lifeline, run_id))["status"] == "awaiting_approval" and v,
                    what="awaiting approval")
    assert any(line["exceeds"] for line in view["planned"]["budget_check"])
    with officer(lifeline) as c:
        r = c.post(f"/v1/payment-runs/{run_id}/approval", json={"reason": "追加预算已报批"})
    assert r.status_code == 409 and r.json()["rule"] == "four_eyes", r.text
    with officer(lifeline, OTHER_OFFICER) as c:
        r = c.post(f"/v1/payment-runs/{run_id}/approval", json={"reason": "追加预算已报批"})
    assert r.status_code == 200, r.text
    wait_for(lambda: run_view(lifeline, run_id)["status"] == "completed", timeout=60, what="completed")


def test_a_termination_or_a_death_before_the_run_stops_its_payment_and_a_death_after_recalls_it(lifeline):
    lifeline.clock_advance("62d")  # past the periods earlier tests' runs paid
    people = [new_people(1) for _ in range(3)]
    cases = []
    for n, household in enumerate(people):
        make_poor(lifeline, household, income_fen=20000)
        cases.append(submit_accepted(lifeline, household, bank_account={
            "channel": "RCC", "account_number": f"62284800000000092{n:02d}", "account_name": "王小明"}))
    views = [lifeline.prepare_decision(c) for c in cases if completed(lifeline, c)]
    lifeline.pass_notices(*views)
    for case_id in cases:
        assert decide(lifeline, case_id, "approve").status_code == 200
    period = {entitlement(lifeline, case_id)["first_period"] for case_id in cases}.pop()
    first_day = datetime.fromisoformat(f"{period}-01")
    # The review group terminates the first benefit from its first period; the second household's
    # applicant died the month before it.
    r = lifeline.step(cases[0], "benefit-changes", {"change": "terminate", "from_period": period,
                                                     "reason": "家庭经济状况好转，不再符合条件"}, role="reviewer",
                      region=COUNTY)
    assert r.status_code == 200, r.text
    report_death(lifeline, people[1][0], lifeline.clock("show").date())  # today, the month before
    wait_for(lambda: entitlement(lifeline, cases[0])["status"] == "terminated"
             and entitlement(lifeline, cases[1])["status"] == "terminated", what="both terminated")
    with bank(lifeline) as b:  # the bank books nothing yet: the run's payments stay unsettled
        assert b.put("/v1/behaviour", json={"callbacks": False}).status_code == 200
    set_budget(lifeline, period, 100_000_000)
    try:
        with officer(lifeline) as c:
            run_id = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY}).json()["run_id"]
        wait_for(lambda: run_view(lifeline, run_id)["status"] == "completed", timeout=60, what="completed")
        assert payments(lifeline, cases[0]) == [] and payments(lifeline, cases[1]) == []
        [paid] = payments(lifeline, cases[2])
        assert paid["status"] == "instructed"
        # Instructed, not settled, when the third applicant's death (two months ago) is reported.
        report_death(lifeline, people[2][0], (first_day - timedelta(days=40)).date())
        wait_for(lambda: payments(lifeline, cases[2])[0]["recall_requested"], what="recall requested")
        recalls = [d for d in reconciliation(lifeline, run_id)["differences"] if d["problem"] == "recall_requested"]
        assert [d["payment_id"] for d in recalls] == [paid["payment_id"]]
    finally:
        with bank(lifeline) as b:
            b.put("/v1/behaviour", json={"callbacks": True})


def report_death(lifeline, id_number: str, day) -> None:
    with httpx.Client(base_url=lifeline.url("simulator"), timeout=10) as s:
        r = s.post("/v1/deaths", json={"id_number": id_number, "name": "王小明", "date_of_death": day.isoformat()})
    assert r.status_code == 202, r.text


def test_the_township_reserve_fund_pays_emergency_relief_at_once_and_never_goes_below_zero(lifeline):
    township = REGION[:9]
    with officer(lifeline) as c:
        for _ in range(2):  # the same transfer twice counts once
            r = c.post(f"/v1/reserve-funds/{township}/replenishments",
                       json={"amount_fen": 300_000, "reference": "DYQ-BYJ-TEST-1"})
            assert r.status_code == 200, r.text
    assert r.json()["balance_fen"] == 300_000
    relief = {"case_id": "C-RESERVEFUND00000001", "amount_fen": 200_000, "reason": "火灾，先行救助",
              "bank_account": {"channel": "RCC", "account_number": "6228480000000009300", "account_name": "王小明"}}
    with lifeline.client("payment", "caseworker", township) as c:
        first = c.post(f"/v1/reserve-funds/{township}/advances", json=relief)
        second = c.post(f"/v1/reserve-funds/{township}/advances", json=relief)
        balance = c.get(f"/v1/reserve-funds/{township}").json()["balance_fen"]
    assert first.status_code == 201, first.text
    assert first.json()["balance_fen"] == 100_000
    assert second.status_code == 409 and second.json()["rule"] == "reserve_fund_balance", second.text
    assert balance == 100_000
    wait_for(lambda: [p["status"] for p in payments(lifeline, relief["case_id"])] == ["settled"], timeout=60,
             what="the advance paid at once")


def test_one_off_relief_is_paid_as_soon_as_it_is_granted(lifeline):
    from tests.e2e.test_benefit_kinds import policy, relief_case

    amount = policy(lifeline).emergency.township_cap_fen - 100_000
    case_id = relief_case(lifeline, amount)
    assert decide(lifeline, case_id, "approve").status_code == 200
    [paid] = wait_for(lambda: [p for p in payments(lifeline, case_id) if p["status"] == "settled"], timeout=60,
                      what="one-off relief paid without a run")
    assert paid["amount_fen"] == amount and paid["fund_source"] == "temporary_relief_budget"
    assert paid["run_id"].startswith("OO-")


def test_a_malformed_bank_file_is_refused_with_a_problem_and_changes_nothing(lifeline):
    before = lifeline.settled_log_sizes(["payment"])["payment"]
    headers = {"Content-Type": "application/xml"}
    with lifeline.client("payment", "bank_channel", "000000", user="bank:RCC") as c:
        garbage = c.post("/v1/bank-channels/RCC/statements", content=b"<Document>not a statement</Document>",
                         headers=headers)
        entity = c.post("/v1/bank-channels/RCC/status-reports", headers=headers, content=(
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]><Document>&x;</Document>'))
        other_bank = c.post("/v1/bank-channels/ICBC/status-reports", content=b"<Document/>", headers=headers)
    for r in (garbage, entity):
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json()["rule"] == "iso20022"
    assert other_bank.status_code == 403, other_bank.text  # a bank posts to its own channel only
    assert lifeline.log_size("payment") == before


def next_period_of(period: str) -> str:
    from lifeline.rules.periods import next_period

    return next_period(period)


@pytest.fixture(scope="module")
def small_batches(infra, tmp_path_factory):
    """A Lifeline whose RCC files hold two payments each and whose runs commit one batch per
    unit of work, so that a run has several units to be killed between."""
    import yaml

    from lifeline.settings import DEFAULT_BANK_CHANNELS_FILE
    from tests.e2e.conftest import running_lifeline

    book = yaml.safe_load(DEFAULT_BANK_CHANNELS_FILE.read_text())
    for channel in book["channels"]:
        channel["max_transactions_per_file"] = 2
    path = tmp_path_factory.mktemp("channels") / "bank-channels.yaml"
    path.write_text(yaml.safe_dump(book, allow_unicode=True))
    with running_lifeline(infra, extra_env={"LIFELINE_TEST_CLOCK": "1", "LIFELINE_BANK_CHANNELS_FILE": str(path),
                                            "LIFELINE_PAYMENT_UNIT_PAYMENTS": "1"}) as system:
        yield system


def test_kill_9_between_units_of_a_run_and_in_the_middle_of_a_statement_pays_each_once(small_batches):
    """payment killed after the run's second unit of work (its file queued, not sent), after a
    file reached the bank (before the answer was saved: the file is sent again) and in the middle
    of reading a statement (before it was saved: the bank calls again); restarted each time."""
    lifeline = small_batches
    faults = {"LIFELINE_FAULTS": "payment_after_unit:PaymentRun:2,payment_after_send:BankBatch,"
                                 "payment_statement_before_save:camt.053"}
    lifeline.stop("payment")
    lifeline.start("payment", extra_env=faults)
    cases = approve_households(lifeline, [f"62284800000000091{n:02d}" for n in range(5)])
    period = {entitlement(lifeline, case_id)["first_period"] for case_id in cases}.pop()
    set_budget(lifeline, period, 100_000_000)
    with officer(lifeline) as c:
        run_id = c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY}).json()["run_id"]
    for _ in range(3):  # each fault fires once: three kills, three restarts
        assert lifeline.wait_exit("payment", timeout=90) == -9
        # The restarted payment goes on at once; as soon as it listens, the bank may be calling
        # back already: not waited for ready.
        lifeline.start("payment", wait=False, extra_env=faults)
    wait_for(lambda: all(p["status"] == "settled" for c in cases for p in payments(lifeline, c))
             and all(payments(lifeline, c) for c in cases), timeout=90, what="every payment settled")
    view = wait_for(lambda: (v := run_view(lifeline, run_id))["status"] == "completed" and v, what="completed")
    assert view["count"] == 5
    assert sorted(b["batch_id"] for b in view["batches"]) == [
        f"B-{run_id[3:]}-RCC-{n:04d}" for n in (1, 2, 3)]
    ids = [t.end_to_end_id for content in pain001_files(lifeline) for t in parse_pain001(content).transfers]
    paid = [p["payment_id"] for c in cases for p in payments(lifeline, c)]
    assert sorted(ids) == sorted(paid) and len(set(paid)) == 5  # each in exactly one file, once
    report = wait_for(lambda: (r := reconciliation(lifeline, run_id))["totals"]["pending"]["count"] == 0 and r,
                      what="reconciled")
    assert report["balanced"] and report["totals"]["settled"]["count"] == 5


def test_the_same_run_started_at_once_on_two_replicas_pays_each_entitlement_once(small_batches):
    """Two payment processes on the same stores: both asked to start the period at the same
    moment, both workers advancing it; one run, each payment once, in one file."""
    import threading

    from lifeline.dev.embedded import free_port

    lifeline = small_batches
    lifeline.clock_advance("62d")  # past the period the kill test paid
    cases = approve_households(lifeline, [f"62284800000000094{n:02d}" for n in range(5)])
    period = {entitlement(lifeline, case_id)["first_period"] for case_id in cases}.pop()
    set_budget(lifeline, period, 100_000_000)
    lifeline.start_replica("payment", "payment2", free_port())
    answers: list[dict] = []

    def start(service: str) -> None:
        with lifeline.client(service, "county_officer", COUNTY, user=OFFICER) as c:
            answers.append(c.post("/v1/payment-runs", json={"period": period, "county_code": COUNTY}).json())

    try:
        threads = [threading.Thread(target=start, args=(s,)) for s in ("payment", "payment2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({a["run_id"] for a in answers}) == 1, answers
        assert sorted(a["started"] for a in answers) == [False, True]
        run_id = answers[0]["run_id"]
        wait_for(lambda: all(p["status"] == "settled" for c in cases for p in payments(lifeline, c))
                 and all(payments(lifeline, c) for c in cases), timeout=90, what="every payment settled")
        paid = [p["payment_id"] for c in cases for p in payments(lifeline, c)]
        ids = [t.end_to_end_id for content in pain001_files(lifeline) for t in parse_pain001(content).transfers]
        assert len(paid) == 5 and all(ids.count(p) == 1 for p in paid)
        # The kill test's households are paid this month too: ten in the run, each in one file.
        this_period = [i for i in ids if i.endswith(period.replace("-", ""))]
        assert run_view(lifeline, run_id)["count"] == len(this_period) == len(set(this_period)) == 10
    finally:
        lifeline.stop("payment2")
