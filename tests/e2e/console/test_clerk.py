"""The clerk's screens in a real browser (issue 15): the one-window intake form with two members
lands on the case, whose one-time list of missing materials and acceptance go to intake; a bad ID
number is said as typed, a problem intake finds is said next to its field with everything typed
kept and nothing stored; the form fits a phone; referrals with their clocks and an outcome
recorded; a discovery report recorded and contacted."""

from __future__ import annotations

import json
from datetime import date

from lifeline.rules.ids import check_digit
from tests.e2e.conftest import new_people
from tests.e2e.console.conftest import PHONE, read_api
from tests.harness import household, wait_for

TOWNSHIP = "370502101"
VILLAGE = "370502101001"
CLERK = "clerk-console-1"


def intake(console, path: str, **params) -> dict:
    return read_api(console, "intake", path, "clerk", TOWNSHIP, CLERK, **params)


def cases_total(console) -> int:
    return intake(console, "/v1/cases", region=VILLAGE, limit=1)["total"]


def submitted_case(console) -> str:
    with console.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        r = c.post("/v1/applications", json=household(new_people(2), VILLAGE))
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def published(console, name: str, case_id: str) -> list[dict]:
    return [e["data"] for e in map(json.loads, console.published())
            if e["type"].split(".")[-2] == name and e["data"].get("case_id") == case_id]


def fill_household(browser, applicant: str, spouse: str) -> None:
    browser.fill(**{"assistance_type": "dibao", "region_code": VILLAGE, "area": "urban",
                    "members.0.id_number": applicant, "members.0.name": "王建国", "members.0.relation": "self"})
    browser.find('[data-add-row="member-row"]').click()
    browser.fill(**{"members.1.id_number": spouse, "members.1.name": "李秀英", "members.1.relation": "spouse",
                    "declared_monthly_income_fen": "1234.5", "declared_assets_fen": "0",
                    "bank_account.channel": "RCC", "bank_account.account_number": "6228480012345670001",
                    "bank_account.account_name": "王建国"})
    browser.find("#f-authorisation_signed").click()


def test_the_intake_form_with_two_members_lands_on_the_case_then_materials_then_acceptance(console, browser):
    applicant, spouse = new_people(2)
    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/applications/new")
    assert "一证一书" in browser.text()
    assert browser.find("#f-authorisation_signed").get_attribute("type") == "checkbox"
    browser.accessible()
    browser.shot("clerk-form")

    fill_household(browser, applicant, spouse)  # the ID card box left unticked
    browser.submit("form.intake button[type=submit]")
    assert browser.path.startswith("/clerk/cases/C-"), browser.path
    case_id = browser.path.split("/")[3].split("?")[0]
    case = intake(console, f"/v1/cases/{case_id}")
    assert case["members_count"] == 2 and case["status"] == "submitted" and case["clerk_id"] == CLERK
    # "1234.5" 元 went to intake as exactly 123450 fen.
    data = wait_for(lambda: published(console, "ApplicationSubmitted", case_id), what="ApplicationSubmitted")[0]
    assert data["declared_monthly_income_fen"] == 123450 and data["declared_assets_fen"] == 0
    assert "已提交待受理" in browser.text("#facts")
    # The ID card not seen at the window: the one-time list offers it, ticked.
    assert browser.find("#f-missing_materials-resident_id").is_selected()
    assert not browser.find("#f-missing_materials-authorisation").is_selected()

    browser.fill(reason="缺少申请人居民身份证")
    browser.submit('button[value="request_materials"]')
    assert "已一次性告知补正" in browser.text("#facts")
    assert "居民身份证" in browser.text("#missing")
    assert intake(console, f"/v1/cases/{case_id}")["missing_materials"] == ["resident_id"]
    # A repeat request may name only what is still missing (一次性告知): only that is offered.
    assert not browser.find_all("#f-missing_materials-authorisation")
    browser.accessible()
    browser.shot("clerk-case")

    browser.fill(reason="材料已补齐，符合受理条件")
    browser.submit('button[value="accept"]')
    assert "已受理" in browser.text("#facts")
    assert intake(console, f"/v1/cases/{case_id}")["status"] == "accepted"
    assert not browser.find_all("#acceptance")  # decided once: no second decision offered

    # A referral raised from the case, with its due date and clock.
    browser.find("#referrals summary").click()
    browser.fill(target="charity", need_category="medical", amount_asked_fen="500", urgency="urgent")
    browser.find("#f-consent_to_share").click()
    browser.submit("#referrals form button[type=submit]")
    row = browser.text("#referrals tbody tr")
    assert "慈善组织" in row and "未到期" in row and "年" in row, row
    (referral,) = intake(console, f"/v1/cases/{case_id}")["referrals"]
    assert referral["target"] == "charity" and referral["status"] == "raised"
    browser.accessible()

    # The register lists it, newest first.
    browser.open("/clerk/cases")
    assert case_id in browser.text("table.cases tbody tr")
    browser.accessible()


def test_a_bad_id_number_is_said_as_typed_and_a_refused_one_next_to_its_field_with_nothing_lost(console, browser):
    applicant, spouse = new_people(2)
    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/applications/new")
    # As typed: the last digit wrong, the check digit does not match.
    wrong = applicant[:17] + ("0" if applicant[17] != "0" else "1")
    browser.fill(**{"members.0.id_number": wrong})
    assert "校验位" in browser.field_error("members.0.id_number")
    browser.fill(**{"members.0.id_number": applicant})
    assert browser.field_error("members.0.id_number") == ""

    # A number the browser's check passes (its check digit is right) but intake refuses: no
    # such region as 990101 in GB/T 2260.
    body = "99010119800101001"
    unknown = body + check_digit(body)
    before = cases_total(console)
    fill_household(browser, applicant, unknown)
    assert browser.field_error("members.1.id_number") == ""
    browser.fill(declared_monthly_income_fen="12.30")
    browser.submit("form.intake button[type=submit]")
    assert browser.path == "/clerk/applications/new"
    assert "resident ID" in browser.field_error("members.1.id_number")
    assert browser.field_error("members.0.id_number") == ""
    # Everything typed is kept, the added member's row included.
    assert len(browser.find_all("#members [data-row]")) == 2
    assert browser.value("members.1.id_number") == unknown and browser.value("members.1.name") == "李秀英"
    assert browser.value("members.0.id_number") == applicant
    assert browser.value("declared_monthly_income_fen") == "12.30"
    assert browser.value("bank_account.account_number") == "6228480012345670001"
    assert browser.find("#f-authorisation_signed").is_selected()
    assert cases_total(console) == before
    browser.accessible()

    # Garbage in 元 is said next to its field before intake is asked; nothing else is lost.
    browser.fill(**{"members.1.id_number": spouse, "declared_assets_fen": "12,3x"})
    browser.submit("form.intake button[type=submit]")
    assert "元" in browser.field_error("declared_assets_fen")
    assert browser.value("declared_assets_fen") == "12,3x" and browser.value("members.1.id_number") == spouse
    assert cases_total(console) == before

    # Fixed, the same form (the same Idempotency-Key) goes through once.
    browser.fill(declared_assets_fen="1,000.05")
    browser.submit("form.intake button[type=submit]")
    assert browser.path.startswith("/clerk/cases/C-"), browser.path
    assert cases_total(console) == before + 1


def test_intake_down_keeps_what_was_typed_and_the_same_form_goes_through_once_after(console, browser):
    applicant, spouse = new_people(2)
    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/applications/new")
    fill_household(browser, applicant, spouse)
    before = cases_total(console)
    console.stop("intake")
    try:
        browser.submit("form.intake button[type=submit]")
        assert "受理服务暂时无法连接" in browser.text(".banner.down")
        assert browser.value("members.1.id_number") == spouse and browser.value("declared_monthly_income_fen") == "1234.5"
    finally:
        console.start("intake")
    browser.submit("form.intake button[type=submit]")
    assert browser.path.startswith("/clerk/cases/C-"), browser.path
    assert cases_total(console) == before + 1


def test_the_intake_form_fits_a_phone(browser):
    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/applications/new")
    browser.find('[data-add-row="member-row"]').click()
    width = browser.page_width(PHONE)
    assert width <= PHONE[0], f"the intake form is {width} px wide on a {PHONE[0]} px phone"
    browser.shot("clerk-form-phone", PHONE)


def test_referrals_with_their_clocks_and_an_outcome_recorded(console, browser):
    case_id = submitted_case(console)
    with console.client("intake", "clerk", TOWNSHIP, user=CLERK) as c:
        r = c.post(f"/v1/cases/{case_id}/referrals", json={
            "target": "medical_insurance", "need_category": "medical", "amount_asked_fen": 0,
            "consent_to_share": True})
    assert r.status_code == 201, r.text
    referral_id = r.json()["referral_id"]
    due = wait_for(lambda: intake(console, f"/v1/referrals/{referral_id}")["due_date"], what="referral due date")

    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/referrals")
    row = browser.text(f'tr[data-referral="{referral_id}"]')
    d = date.fromisoformat(due)
    assert "医疗保障局" in row and f"{d.year}年{d.month}月{d.day}日" in row and "未到期" in row, row
    browser.accessible()
    browser.shot("clerk-referrals")

    browser.submit(f'tr[data-referral="{referral_id}"] a')
    browser.submit("#outcome button[type=submit]")  # no outcome chosen: intake names the field
    assert browser.field_error("outcome")
    assert intake(console, f"/v1/referrals/{referral_id}")["status"] == "raised"
    browser.fill(outcome="resolved", note="医保局已落实医疗救助")
    browser.submit("#outcome button[type=submit]")
    assert "已答复" in browser.text() and "已解决" in browser.text()
    assert intake(console, f"/v1/referrals/{referral_id}")["outcome"] == "resolved"
    browser.accessible()


def test_a_discovery_report_recorded_contacted_and_listed(console, browser):
    browser.sign_in("clerk", TOWNSHIP, CLERK)
    browser.open("/clerk/discovery/new")
    browser.accessible()
    browser.fill(**{"person.name": "赵大山", "person.region_code": VILLAGE, "seen": "独居老人，冬季无取暖",
                    "urgency": "urgent", "reporter.kind": "grid_worker", "reporter.organisation": "文汇街道网格中心"})
    browser.submit("main form button[type=submit]")
    assert browser.path.startswith("/clerk/discovery/D-"), browser.path
    report_id = browser.path.split("/")[3]
    assert "待联系" in browser.text() and "未到期" in browser.text()
    browser.open("/clerk/discovery")
    row = browser.text(f'tr[data-report="{report_id}"]')
    assert "赵大山" in row and "待联系" in row and "未到期" in row, row
    browser.accessible()
    browser.shot("clerk-discovery")

    browser.open(f"/clerk/discovery/{report_id}")
    browser.fill(outcome="applying", note="已入户联系，协助其申请")
    browser.submit("#contact button[type=submit]")
    assert "已联系" in browser.text() and "协助申请" in browser.text()
    assert intake(console, f"/v1/discovery-reports/{report_id}")["contact_outcome"] == "applying"

    browser.open("/clerk/discovery")
    assert "协助申请" in browser.text(f'tr[data-report="{report_id}"]')
    # The application made from the report starts from what the report knows.
    browser.open(f"/clerk/discovery/{report_id}")
    browser.submit('a[href^="/clerk/applications/new?discovery_report_id="]')
    assert browser.value("members.0.name") == "赵大山" and browser.value("channel") == "discovery"
