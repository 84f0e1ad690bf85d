"""The charity screens in a real browser, as the county officer: a household's need (raised by a
referral to charity at intake) with the funds proposed for it and why, the others excluded and
why, an allocation from a fund and the fund's balance after it, a disbursement, and bad input
shown next to its field with nothing allocated."""

from __future__ import annotations

import pytest

from tests.e2e.console.conftest import read_api
from tests.e2e.test_charity import needs_of, refer, register_fund, submit

pytestmark = pytest.mark.e2e

COUNTY = "370502"
TOWNSHIP = "370502101"


@pytest.fixture(scope="module")
def need(console):
    """Three funds (the township's named fund and the county's fund fit a medical need; the
    education fund does not) and one household's medical need of 3,000 yuan."""
    funds = {
        "county": register_fund(console, balance_fen=5_000_000, name="区救急难专项基金"),
        "named": register_fund(console, kind="named", donor="张建华", regions=[TOWNSHIP], balance_fen=100_000,
                               name="胜利街道张氏冠名基金"),
        "education": register_fund(console, need_categories=["education"], name="助学基金"),
    }
    case_id = submit(console)
    refer(console, case_id, 300_000)
    [found] = needs_of(console, case_id, 1)
    return {**found, "funds": funds}


def charity_need(console, need_id: str) -> dict:
    return read_api(console, "charity", f"/v1/needs/{need_id}", "county_officer", COUNTY)


# The free allocation form: the proposals' own forms carry fund_id and amount_fen too.
FREE_FORM = "form.allocate-form"


def fund_row(browser, fund_id: str):
    return browser.find(f'table.charity-funds tr[data-fund="{fund_id}"]')


def test_the_needs_list_shows_the_household_need(browser, need):
    browser.sign_in("county_officer", COUNTY)
    browser.open("/charity/needs")
    menu = browser.text("nav")
    assert "慈善需求" in menu and "慈善基金" in menu
    row = browser.find(f'table.charity-needs tr[data-need="{need["need_id"]}"]')
    assert need["name_masked"] in row.text and "医疗" in row.text and "紧急" in row.text
    assert row.text.count("3,000.00 元") == 2  # asked, and still needed
    assert "待帮扶" in row.text
    browser.open("/charity/needs?status=fulfilled")
    assert not browser.find_all(f'tr[data-need="{need["need_id"]}"]')
    browser.open("/charity/needs")
    browser.accessible()
    browser.shot("charity-needs")


def test_a_need_with_its_proposed_funds_and_why_the_others_are_not(browser, need):
    funds = need["funds"]
    browser.open("/charity/needs")
    browser.submit(f'tr[data-need="{need["need_id"]}"] a')
    assert browser.path == f"/charity/needs/{need['need_id']}"
    # The narrower named fund gives what it has first, the county's fund the rest.
    named = browser.find(f'table.charity-proposal tr[data-fund="{funds["named"]}"]')
    county = browser.find(f'table.charity-proposal tr[data-fund="{funds["county"]}"]')
    assert "1,000.00 元" in named.text and "以基金可用余额为限" in named.text
    assert "2,000.00 元" in county.text and "补足了尚缺部分" in county.text
    assert "需求类别" in county.text and "资助地区" in county.text  # what it matched
    excluded = browser.find(f'table.charity-excluded tr[data-fund="{funds["education"]}"]')
    assert "助学基金" in excluded.text and "需求类别不在资助范围" in excluded.text
    browser.accessible()
    browser.shot("charity-need")


def test_bad_input_is_said_next_to_its_field_and_nothing_is_allocated(console, browser, need):
    funds = need["funds"]
    browser.open(f"/charity/needs/{need['need_id']}")
    browser.fill(FREE_FORM, fund_id=funds["county"], amount_fen="三千")
    browser.submit(f"{FREE_FORM} button")
    assert "金额" in browser.field_error("amount_fen")
    assert browser.value("amount_fen", FREE_FORM) == "三千"
    # Charity's own message for an amount it does not take, next to the field.
    browser.fill(FREE_FORM, amount_fen="0")
    browser.submit(f"{FREE_FORM} button")
    assert browser.field_error("amount_fen")
    assert browser.value("fund_id", FREE_FORM) == funds["county"]
    # More than the named fund has: charity's rule, named in the banner.
    browser.fill(FREE_FORM, fund_id=funds["named"], amount_fen="2000")
    browser.submit(f"{FREE_FORM} button")
    assert "no_available_balance" in browser.text(".banner.problem")
    assert browser.value("amount_fen", FREE_FORM) == "2000"
    assert charity_need(console, need["need_id"])["allocations"] == []


def test_allocate_from_a_fund_and_the_balance_changes(console, browser, need):
    county = need["funds"]["county"]
    browser.open("/charity/funds")
    row = fund_row(browser, county)
    assert "50,000.00 元" in row.find_element("css selector", ".available").text
    assert row.find_element("css selector", ".committed").text == "0.00 元"

    browser.open(f"/charity/needs/{need['need_id']}")
    browser.submit(f'table.charity-proposal tr[data-fund="{county}"] button.accept-proposal')
    assert "已分配" in browser.text(".banner.ok") and "2,000.00 元" in browser.text(".banner.ok")
    [allocation] = charity_need(console, need["need_id"])["allocations"]
    assert (allocation["fund_id"], allocation["amount_fen"], allocation["status"]) == (county, 200_000, "allocated")
    assert "1,000.00 元" in browser.text(".still-needed")

    browser.open("/charity/funds")
    row = fund_row(browser, county)
    assert "48,000.00 元" in row.find_element("css selector", ".available").text
    assert "2,000.00 元" in row.find_element("css selector", ".committed").text
    assert "50,000.00 元" in row.find_element("css selector", ".balance").text
    browser.accessible()
    browser.shot("charity-funds")


def test_disburse_an_allocation_and_the_fund_pays_it(console, browser, need):
    county = need["funds"]["county"]
    browser.open(f"/charity/needs/{need['need_id']}")
    browser.submit('table.charity-allocations a[href*="/allocations/"]')
    browser.fill(reference="")
    browser.submit("form[action$='/disbursement'] button")
    assert browser.field_error("reference")  # charity's message: a reference is required
    browser.fill(reference="DYCS-ZF-2026-001")
    browser.submit("form[action$='/disbursement'] button")
    assert "已拨付" in browser.text(".banner.ok")
    browser.open(f"/charity/funds/{county}")
    assert "48,000.00 元" in browser.text(".fund-figures .balance")
    assert browser.text(".fund-figures .committed") == "0.00 元"
    assert read_api(console, "charity", f"/v1/funds/{county}", "county_officer", COUNTY)["balance_fen"] == 4_800_000
    browser.accessible()


def test_a_region_the_service_does_not_take_is_said_next_to_its_field(browser):
    browser.open("/charity/funds?region=12345")
    assert browser.field_error("region")  # charity's message for the ?region= it refused
    assert browser.value("region") == "12345"
    assert browser.find_all("table.charity-funds tr[data-fund]")  # the funds it does show


def test_the_charity_federation_sees_the_funds_not_the_needs(browser, need):
    browser.sign_in("charity_federation", COUNTY)
    browser.open("/charity/funds")
    assert "慈善需求" not in browser.text("nav")
    assert fund_row(browser, need["funds"]["county"])
    browser.open("/charity/needs")
    assert "此页面不属于您的角色" in browser.text("h1")
