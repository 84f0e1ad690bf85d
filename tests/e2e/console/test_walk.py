"""One household walked through the console from the window to the bank and the auditor (issue 15):
the clerk's form, the caseworker's survey, proposal and notice, the public board, the reviewer's
approval, the county officer's budget and payment run to a payment the bank paid, and the
auditor's timeline of it across the services; each role signed in in turn, a screenshot of each
screen (walk-*.png in the test's temporary directory).

The household's figures and the procedure's dates come from the services: the test reads them
from the APIs and asserts the pages show the same."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import make_poor, new_people
from tests.e2e.console.conftest import PHONE
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY, TOWNSHIP, VILLAGE = "370502", "370502101", "370502101001"
START = "2026-12-01T09:00:00+08:00"  # a Tuesday
CLERK, CASEWORKER, REVIEWER, OFFICER, AUDITOR = "clerk-zhou", "cw-li", "rv-wang", "officer-zhao", "auditor-sun"
ACCOUNT = "6228480012345670001"


def api(console, service: str, path: str, role: str = "admin", region: str = "000000", **params) -> dict:
    with console.client(service, role, region) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def verification(console, case_id: str) -> dict:
    return api(console, "verification", f"/v1/verifications/{case_id}")


@pytest.fixture
def walk_shots(browser, tmp_path):
    """The walk's screenshots in the test's own directory: docs/console keeps each screen once,
    from its own module's test."""
    kept, browser.shots = browser.shots, tmp_path
    yield tmp_path
    browser.shots = kept


def test_a_household_from_the_window_to_the_bank_and_the_auditor(console, browser, walk_shots):
    console.clock_set(START)
    applicant, spouse = new_people(2)
    make_poor(console, [applicant, spouse])

    # --- the clerk: the one-window form, then acceptance -----------------------------------------
    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/applications/new")
    browser.fill(**{"assistance_type": "dibao", "region_code": VILLAGE, "area": "urban",
                    "members.0.id_number": applicant, "members.0.name": "王建国", "members.0.relation": "self"})
    browser.find('[data-add-row="member-row"]').click()
    browser.fill(**{"members.1.id_number": spouse, "members.1.name": "李秀英", "members.1.relation": "spouse",
                    "declared_monthly_income_fen": "0", "declared_assets_fen": "0",
                    "bank_account.channel": "RCC", "bank_account.account_number": ACCOUNT,
                    "bank_account.account_name": "王建国"})
    for box in browser.find_all('form.intake input[type=checkbox]'):
        if not box.is_selected():
            box.click()  # 一证一书: the ID card seen, the authorisation signed
    browser.shot("walk-01-clerk-form")
    browser.submit("form.intake button[type=submit]")
    assert browser.path.startswith("/clerk/cases/C-"), browser.path
    case_id = browser.path.split("/")[3].split("?")[0]
    browser.fill(reason="材料齐全，予以受理")
    browser.submit('button[value="accept"]')
    assert "已受理" in browser.text("#facts")
    browser.shot("walk-02-clerk-case")

    # The departments answer (the simulator): the economic check completes.
    wait_for(lambda: verification(console, case_id)["state"] not in ("awaiting_acceptance", "requested"),
             what="the economic check")

    # --- the caseworker: my cases with the clock, survey, proposal, notice --------------------------
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open("/caseworker")
    row = browser.find(f'tr[data-case="{case_id}"]').text
    assert "入户调查" in row and "未到期" in row, row
    browser.shot("walk-03-caseworker-cases")
    browser.open(f"/caseworker/cases/{case_id}")
    browser.fill(**{"surveyors.0.name": "李卫东", "surveyors.0.role": "village_cadre",
                    "surveyors.1.name": "赵敏", "surveyors.1.role": "township_staff"},
                 visited_on="2026-12-01", findings="入户查看住房及生活状况，与申报一致。")
    browser.submit("#survey-form button[type=submit]")
    browser.fill(proposal="include", reason="家庭人均收入低于当地低保标准，拟纳入低保。")
    browser.submit("#initial-review-form button[type=submit]")
    browser.submit("#public-notice-form button[type=submit]")
    assert "公示已张贴" in browser.text(".banner.ok")
    if browser.find_all("#appraisal-form"):  # the check warned: a democratic appraisal first
        browser.fill(held_on="2026-12-01", participants="9", votes_for="8", votes_against="0",
                     abstentions="1", opinion="一致认为情况属实")
        browser.submit("#appraisal-form button[type=submit]")
    view = verification(console, case_id)
    assert view["initial_review"]["proposed_by"] == CASEWORKER and view["public_notice"]
    browser.shot("walk-04-caseworker-case")

    # --- the public board: no sign-in, on a phone --------------------------------------------------
    browser.driver.delete_cookie("lifeline_console")
    browser.open(f"/board/{VILLAGE}")
    entry = browser.find(f'[id="{view["public_notice"]["public_notice_id"]}"]').text
    assert "王*国" in entry and "最低生活保障" in entry, entry
    browser.shot("walk-05-board-phone", PHONE)

    # --- the reviewer, after the notice: the queue, the evidence, the approval ---------------------
    console.pass_notices(view)
    browser.sign_in("reviewer", TOWNSHIP, REVIEWER)
    browser.open("/reviewer")
    assert case_id in browser.text("#queue")
    browser.shot("walk-06-reviewer-queue")
    browser.open(f"/reviewer/cases/{case_id}")
    browser.fill(reason="经审核确认小组研究，同意纳入最低生活保障。")
    browser.shot("walk-07-reviewer-case")
    browser.submit('#decide button[value="approve"]')
    assert "已批准" in browser.text(".banner.ok")
    assert verification(console, case_id)["state"] == "approved"

    # --- the county officer: a budget, the run, followed live to the bank's statement -------------
    entitlement = wait_for(lambda: api(console, "payment", "/v1/entitlements", case_id=case_id)["items"],
                           what="the entitlement")[0]
    period = entitlement["first_period"]
    browser.sign_in("county_officer", COUNTY, OFFICER)
    browser.open(f"/county/budgets?period={period}")
    browser.fill(fund_source="dibao_fund", amount_yuan="100,000.00")
    browser.submit("#set-budget button[type=submit]")
    browser.shot("walk-08-county-budget")
    browser.open("/county/runs/new")
    browser.fill(period=period)
    browser.submit()
    run_id = browser.path.split("/")[3]
    browser.until(lambda d: d.find_element("id", "run-progress").get_attribute("data-finished") == "yes",
                  timeout=120, what="the run finished and reconciled, shown live")
    assert "已与银行对账单核对：平衡" in browser.text("#run-progress")
    browser.shot("walk-09-county-run")
    [paid] = api(console, "payment", "/v1/payments", case_id=case_id)["items"]
    assert (paid["status"], paid["amount_fen"], paid["run_id"]) == (
        "settled", entitlement["monthly_amount_fen"], run_id), paid

    # --- the auditor: the case across the services ---------------------------------------------
    browser.sign_in("auditor", COUNTY, AUDITOR)
    browser.open(f"/audit/cases/{case_id}")
    shown = {r.get_attribute("data-service") for r in browser.find_all("table.audit-timeline tbody tr")}
    assert {"intake", "verification", "payment", "notify"} <= shown, shown
    who = {r.find_element("css selector", "td.ev-who").text for r in browser.find_all("table.audit-timeline tbody tr")}
    # The people who acted on the case, and the bank that paid it (the run is the county's, not
    # the case's: its events are the run's).
    assert {CLERK, CASEWORKER, REVIEWER, "bank:RCC"} <= who, who
    browser.shot("walk-10-audit-timeline")
