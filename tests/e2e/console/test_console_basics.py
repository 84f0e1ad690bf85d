"""The console's frame: sign-in, the menu per role, the language switch, the public board, and a
page that says which service did not answer."""

from __future__ import annotations

from tests.e2e.console.conftest import PHONE


def test_sign_in_page_is_labelled_and_chinese_first(browser):
    browser.open("/signin")
    assert browser.find("html").get_attribute("lang") == "zh-CN"
    assert "登录" in browser.text("h1")
    browser.accessible()
    browser.shot("signin")


def test_a_bad_region_is_said_next_to_its_field_and_nothing_signs_in(browser):
    browser.driver.delete_all_cookies()
    browser.open("/signin")
    browser.fill(role="clerk", region="12345")
    browser.submit()
    assert "行政区划代码" in browser.field_error("region")
    assert browser.find('[name="region"]').get_attribute("value") == "12345"  # kept as typed
    assert browser.driver.get_cookie("lifeline_console") is None


def test_each_role_gets_its_own_menu_and_not_the_others_screens(browser):
    browser.sign_in("auditor")
    menu = browser.text("nav")
    assert "案件时间线" in menu and "一窗受理" not in menu
    browser.open("/clerk/applications/new")
    assert "此页面不属于您的角色" in browser.text("h1")
    assert "窗口受理人员" in browser.text()


def test_language_switch_to_english_and_back(browser):
    browser.sign_in("clerk", region="370502101")
    browser.open("/board")
    browser.find('a[lang="en"]').click()
    assert browser.find("html").get_attribute("lang") == "en"
    assert "Notice board" in browser.text("h1")
    browser.find('a[lang="zh-CN"]').click()
    assert "公示栏" in browser.text("h1")


def test_the_public_board_needs_no_sign_in_and_fits_a_phone(browser):
    browser.driver.delete_all_cookies()
    browser.open("/board")
    browser.fill(village_code="370502101001")
    browser.submit()
    assert browser.path == "/board/370502101001"
    assert "举报电话" in browser.text()
    browser.accessible()
    browser.shot("board-phone", PHONE)
    width = browser.page_width(PHONE)
    assert width <= PHONE[0], f"the board is {width} px wide on a {PHONE[0]} px phone"


def test_a_service_that_does_not_answer_is_named(console, browser):
    console.stop("notify")
    try:
        browser.open("/board/370502101001")
        assert "告知公示服务暂时无法连接" in browser.text("h1")
    finally:
        console.start("notify")
