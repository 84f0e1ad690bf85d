"""The county officer's screens in a real browser (issue 15): a period's budget set, the payment run
started and its progress followed in the page without a reload, its bank batches and
reconciliation; the payment the bank returned (a closed account) shown and its account corrected,
a bad number refused next to its field; a run over its budget approved by another officer (the
four-eyes rule said, then enforced); a breached deadline listed first for supervision (督办).

One timeline on the shared test clock: two one-person dibao households of village 370502101001
approved in November 2026 (paid from December), one paid into an account the bank simulator has
closed; the December run; January's run without a budget; a case accepted and left alone.
"""

from __future__ import annotations

import httpx
import pytest

from lifeline.rules.periods import business_date, next_period, period_of
from tests.e2e.conftest import make_poor, new_people
from tests.e2e.console.conftest import read_api
from tests.e2e.test_flows import submit_accepted
from tests.e2e.test_payment import approve_households, entitlement
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY = "370502"
START = "2026-11-02T09:00:00+08:00"  # a Monday
OFFICER, OTHER_OFFICER = "officer-zhang", "officer-li"
PAID, CLOSED, NEW = "6228480000000019000", "6228480000000019001", "6228480000000019003"


def payment(console, path: str, **params) -> dict:
    return read_api(console, "payment", path, "county_officer", COUNTY, OFFICER, **params)


def bank(console) -> httpx.Client:
    return httpx.Client(base_url=console.url("bank"), timeout=10)


def progress(browser) -> tuple[str, str]:
    """The run's progress line and whether the run is finished, read at once."""
    return tuple(browser.driver.execute_script(
        "const e = document.getElementById('run-progress');"
        "return [e.innerText.replace(/\\s+/g, ' ').trim(), e.dataset.finished];"))


@pytest.fixture(scope="module")
def households(console) -> dict:
    """The two households approved, the closed account closed at the bank: December's period."""
    console.clock_set(START)
    cases = approve_households(console, [PAID, CLOSED])
    period = {entitlement(console, case_id)["first_period"] for case_id in cases}.pop()
    with bank(console) as b:
        assert b.put(f"/v1/accounts/{CLOSED}", json={"status": "closed"}).status_code == 200
    return {"cases": cases, "period": period}


def test_a_budget_is_set_and_a_bad_amount_is_refused_next_to_its_field(console, browser, households):
    period = households["period"]
    browser.sign_in("county_officer", COUNTY, OFFICER)
    browser.open("/county/budgets")  # the officer's county, the month of the shared clock
    assert browser.value("county_code") == COUNTY
    assert browser.value("period") == period_of(business_date(console.clock("show")))
    browser.open(f"/county/budgets?period={period}")
    assert "本期还没有设置预算" in browser.text()

    # A negative amount: payment's own message next to the amount, what was typed kept, nothing set.
    browser.fill(fund_source="dibao_fund", amount_yuan="-5")
    browser.submit("#set-budget button[type=submit]")
    assert "greater than or equal to 0" in browser.field_error("amount_yuan")
    assert browser.value("amount_yuan") == "-5"
    assert payment(console, "/v1/budgets", county_code=COUNTY, period=period)["items"] == []

    browser.fill(amount_yuan="100,000.00")
    browser.submit("#set-budget button[type=submit]")
    assert "已设置低保资金的预算" in browser.text(".banner.ok")
    row = browser.text("#budgets tbody tr")
    assert "低保资金" in row and "100,000.00 元" in row and OFFICER in row
    [budget] = payment(console, "/v1/budgets", county_code=COUNTY, period=period)["items"]
    assert (budget["fund_source"], budget["amount_fen"]) == ("dibao_fund", 10_000_000)
    browser.accessible()
    browser.shot("county-budgets")


def test_the_run_shows_its_progress_live_then_its_batches_and_reconciliation(console, browser, households):
    period = households["period"]
    browser.sign_in("county_officer", COUNTY, OFFICER)
    # The bank takes a while to answer the file: the run is seen going on, then finished.
    with bank(console) as b:
        assert b.put("/v1/behaviour", json={"slow_seconds": 4}).status_code == 200
    try:
        browser.open("/county/runs/new")
        assert browser.value("county_code") == COUNTY
        browser.fill(period=period)
        browser.submit()
        run_id = f"PR-{COUNTY}-{period.replace('-', '')}"
        assert browser.path == f"/county/runs/{run_id}"
        browser.driver.execute_script("window.sameDocument = 'yes';")
        before, finished = progress(browser)
        assert finished == "no" and "已完成" not in before, before
        browser.shot("county-run-live")
        browser.until(lambda d: progress(browser)[1] == "yes", what="the run finished in the page")
    finally:
        with bank(console) as b:
            b.put("/v1/behaviour", json={})
    after, _ = progress(browser)
    assert after.startswith("已完成"), after
    assert "已生成支付指令 2/2 笔（100%）" in after and "1/1 个批次已送银行" in after
    assert "已与银行对账单核对：平衡" in after
    assert browser.driver.execute_script("return window.sameDocument") == "yes"  # never reloaded
    assert browser.find("#run-bar").get_attribute("value") == "2"

    view = payment(console, f"/v1/payment-runs/{run_id}")
    [batch] = view["batches"]
    row = browser.text("#batches tbody tr")
    for shown in (batch["batch_id"], "农村信用合作社", "按月发放", f"{batch['count']}", "1 · "):
        assert shown in row, row
    totals = {r.find_element("css selector", "td").text: r.text for r in browser.find_all("#reconciliation-totals tbody tr")}
    report = payment(console, f"/v1/payment-runs/{run_id}/reconciliation")
    assert report["totals"]["held"]["count"] == 1
    assert totals["暂挂（待更正账户）"].split()[1] == "1"  # the closed account's payment
    assert totals["已到账"].split()[1] == str(report["totals"]["settled"]["count"])
    browser.accessible()
    browser.shot("county-run")

    browser.open("/county/runs")
    row = browser.text("#runs tbody tr")
    assert "已完成" in row and "平衡" in row and OFFICER in row
    browser.accessible()
    browser.shot("county-runs")


def test_a_returned_payment_is_shown_and_its_account_corrected(console, browser, households):
    closed_case = households["cases"][1]
    held = entitlement(console, closed_case)
    browser.sign_in("county_officer", COUNTY, OFFICER)
    browser.open("/county/returns")
    row = browser.text("#returns tbody tr")
    assert closed_case in row and "账户已销户" in row and "AC04" in row and "暂挂，待更正账户" in row
    browser.accessible()
    browser.shot("county-returns")
    # payment's list of returns, as the page read it: within the caller's region only.
    [returned] = payment(console, "/v1/returned-payments")["items"]
    assert (returned["case_id"], returned["status"], returned["released_at"]) == (closed_case, "returned", None)
    with console.client("payment", "caseworker", "370502101") as c:
        assert [p["payment_id"] for p in c.get("/v1/returned-payments").json()["items"]] == [returned["payment_id"]]
    with console.client("payment", "county_officer", "370503") as c:
        assert c.get("/v1/returned-payments").json()["items"] == []
        bad = c.get("/v1/returned-payments", params={"region": "370502"})
    assert bad.status_code == 403, bad.text  # another county's division

    browser.find("#returns tbody tr a").click()
    assert browser.path.startswith(f"/county/returns/{held['entitlement_id']}")
    reason = "原账户已销户（AC04），户主提供新账户"
    browser.fill(channel="RCC", account_number="12345", account_name="王小明", reason=reason)
    browser.submit()
    assert "pattern" in browser.field_error("account_number")
    assert browser.value("account_number") == "12345"
    assert browser.value("account_name") == "王小明"
    assert browser.value("reason") == reason
    unchanged = entitlement(console, closed_case)
    assert unchanged["bank_account_ref"] == held["bank_account_ref"] and unchanged["account_corrected_at"] is None
    browser.accessible()

    browser.fill(account_number=NEW)
    browser.submit()
    assert browser.path == f"/county/returns?corrected={held['entitlement_id']}"
    assert entitlement(console, closed_case)["bank_account_ref"].endswith(NEW[-4:])

    def sent_again() -> bool:
        browser.open("/county/returns")
        return "已更正账户，重新发放" in browser.text("#returns tbody tr")

    wait_for(sent_again, what="the held payment sent again")
    [released] = payment(console, "/v1/returned-payments")["items"]
    assert released["released_at"] and released["bank_account_ref"].endswith(NEW[-4:])
    browser.accessible()


def test_a_run_over_its_budget_waits_for_another_officer(console, browser, households):
    period = next_period(households["period"])  # no budget set for it
    console.clock_advance("35d")
    browser.sign_in("county_officer", COUNTY, OFFICER)
    browser.open("/county/runs/new")
    browser.fill(period=period)
    browser.submit()
    browser.until(lambda d: progress(browser)[1] == "yes", what="the run waiting")
    assert progress(browser)[0].startswith("超出预算，待审批")
    approval = browser.text("#approval")
    assert f"须由发起人 {OFFICER} 以外的县级民政人员审批" in approval and "您是本批次的发起人" in approval
    assert "未设置预算" in browser.text()
    browser.accessible()
    browser.shot("county-run-approval")
    # The starter's approval: payment refuses it (four eyes), the reason typed is kept.
    browser.fill(reason="追加预算已报批")
    browser.submit("#approval button[type=submit]")
    assert "four eyes" in browser.text("#approval .banner") and "four_eyes" in browser.text("#approval .banner")
    assert browser.value("reason") == "追加预算已报批"
    run_id = browser.path.split("/")[3]
    assert payment(console, f"/v1/payment-runs/{run_id}")["status"] == "awaiting_approval"

    browser.sign_in("county_officer", COUNTY, OTHER_OFFICER)
    browser.open(f"/county/runs/{run_id}")
    assert "您是本批次的发起人" not in browser.text("#approval")
    browser.fill(reason="追加预算已报批")
    browser.submit("#approval button[type=submit]")
    assert "已审批" in browser.text(".banner.ok")
    browser.until(lambda d: progress(browser)[0].startswith("已完成"), what="the approved run completed")
    assert payment(console, f"/v1/payment-runs/{run_id}")["approved_by"] == OTHER_OFFICER


def test_a_breached_deadline_is_listed_first_for_supervision(console, browser, households):
    people = new_people(1)
    make_poor(console, people)
    case_id = submit_accepted(console, people)  # and nobody surveys the household
    deadline_id = f"{case_id}/household_survey"

    def state() -> str | None:
        items = read_api(console, "notify", "/v1/deadlines", "county_officer", COUNTY)["items"]
        return next((d["state"] for d in items if d["deadline_id"] == deadline_id), None)

    wait_for(lambda: state() == "open", what="the survey deadline watched")
    console.clock_advance("10d")  # past 3 working days
    wait_for(lambda: state() == "breached", what="the breach")

    browser.sign_in("county_officer", COUNTY, OFFICER)
    browser.open("/county/deadlines")
    first = browser.find("#deadlines tbody tr")
    assert first.get_attribute("data-state") == "breached"
    row = browser.find(f'#deadlines tr[data-deadline="{deadline_id}"]')
    assert "已超期" in row.text and "入户调查" in row.text and "县级督办" in row.text
    assert "已超期" in browser.text("#deadline-counts")
    browser.accessible()
    browser.shot("county-deadlines")
