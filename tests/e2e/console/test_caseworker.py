"""The caseworker's screens in a real browser (issue 15): my cases with their clocks, a case taken
through the household survey, the initial review, the public notice and (after an objection on
the board) the democratic appraisal, the clocks of a case left alone shown warned, due today and
breached to the day as the shared test clock moves, and the reviews due after an approval.

One timeline on the shared test clock: two households accepted on Tuesday 2026-12-01 09:00 in
village 370502101001; the household survey is due within 3 working days, by Friday 2026-12-04
(warned on Thursday 12-03). Household A goes through the procedure in the browser; household B is
left alone. The reviewer's screens (test_reviewer.py) take A to its decision.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import make_poor, new_people
from tests.e2e.console.conftest import object_on_board, yuan
from tests.e2e.test_flows import REGION, completed, submit_accepted
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

TOWNSHIP = REGION[:9]
START = "2026-12-01T09:00:00+08:00"          # a Tuesday
SURVEY_DUE = "2026-12-04"                    # 3 working days after the acceptance
DUE_TODAY = "2026-12-04T10:00:00+08:00"
BREACHED = "2026-12-05T10:00:00+08:00"       # past 24:00 of the due day
# Household C, surveyed and proposed but never noticed: the whole procedure's 20 working days end
# on Tuesday 2026-12-29, warned 3 working days before, from Friday 12-25.
WHOLE_DUE = "2026-12-29"
WARNED = "2026-12-25T10:00:00+08:00"
CASEWORKER = "cw-li"
SURVEYORS = {"surveyors.0.name": "李卫东", "surveyors.0.role": "village_cadre",
             "surveyors.1.name": "赵敏", "surveyors.1.role": "township_staff"}


def row(browser, case_id: str):
    return browser.find(f'#cases tr[data-case="{case_id}"]')


@pytest.fixture(scope="module")
def cases(console) -> dict[str, str]:
    """Households A and B accepted on 2026-12-01 09:00, their economic check completed."""
    console.clock_set(START)
    people = {"A": new_people(2), "B": new_people(1), "C": new_people(1)}
    for ids in people.values():
        make_poor(console, ids)
    found = {"A": submit_accepted(console, people["A"]),
             "B": submit_accepted(console, people["B"], names=["李大山"]),
             "C": submit_accepted(console, people["C"], names=["张小红"])}
    for case_id in found.values():
        assert completed(console, case_id)["assessment"]["outcome"] == "eligible"
    for path, body in (("survey", {"surveyors": [{"name": "李卫东", "role": "village_cadre"},
                                                 {"name": "赵敏", "role": "township_staff"}],
                                   "visited_on": "2026-12-01", "findings": "与申报一致"}),
                       ("initial-review", {"proposal": "include", "reason": "拟纳入"})):
        r = console.step(found["C"], path, body, region=TOWNSHIP)
        assert r.status_code == 200, r.text
    return found


def test_my_cases_show_each_case_with_its_clock(console, browser, cases):
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    assert browser.path == "/caseworker"
    assert "2026年12月1日" in browser.text(".hint")  # the service's today
    for case_id in (cases["A"], cases["B"]):
        text = row(browser, case_id).text
        assert "待入户调查" in text and "入户调查" in text
        assert "未到期 · 2026年12月4日" in text, text
    assert row(browser, cases["B"]).find_element("css selector", ".clock").get_attribute("class") == "clock clock-open"
    assert "李*山" in row(browser, cases["B"]).text  # the applicant's name masked, as the service lists it
    browser.accessible()
    browser.find('a[lang="en"]').click()
    try:
        assert wait_for(lambda: "My cases" in browser.text("h1"), what="the page in English")
        assert "Household survey due" in row(browser, cases["B"]).text
        assert "On time · 4 Dec 2026" in row(browser, cases["B"]).text
    finally:
        browser.find('a[lang="zh-CN"]').click()
        wait_for(lambda: "我的案件" in browser.text("h1"), what="the page in Chinese again")


def test_a_survey_without_findings_is_said_next_to_the_field_and_nothing_is_recorded(console, browser, cases):
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open(f"/caseworker/cases/{cases['A']}")
    browser.fill(**SURVEYORS, visited_on="2026-12-01", findings="")
    browser.submit("#survey-form button[type=submit]")
    assert browser.field_error("findings"), "the service's message next to the findings"
    assert browser.value("surveyors.0.name") == "李卫东"  # kept as typed
    assert browser.value("visited_on") == "2026-12-01"
    assert console.verification(cases["A"])["survey"] is None
    # A visit in the future: the rule the service names is said next to the date.
    browser.fill(visited_on="2026-12-02", findings="入户查看住房及生活状况，与申报一致。")
    browser.submit("#survey-form button[type=submit]")
    assert browser.field_error("visited_on")
    assert console.verification(cases["A"])["survey"] is None


def test_verification_down_the_page_says_so_and_keeps_what_was_typed(console, browser, cases):
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open(f"/caseworker/cases/{cases['B']}")
    browser.fill(**SURVEYORS, visited_on="2026-12-01", findings="入户查看，情况属实。")
    console.stop("verification")
    try:
        browser.submit("#survey-form button[type=submit]")
        assert "核查审批服务暂时无法连接" in browser.text("#survey-form .banner.down")
        assert browser.value("surveyors.1.name") == "赵敏"
        assert browser.value("findings") == "入户查看，情况属实。"
    finally:
        console.start("verification")
    assert console.verification(cases["B"])["survey"] is None  # nothing was recorded


def test_the_caseworker_surveys_proposes_and_posts_the_notice(console, browser, cases):
    case_id = cases["A"]
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open(f"/caseworker/cases/{case_id}")
    assert "家庭经济状况核对" in browser.text() and "符合条件" in browser.text("#assessment")
    browser.fill(**SURVEYORS, visited_on="2026-12-01", findings="入户查看住房及生活状况，与申报一致。")
    browser.submit("#survey-form button[type=submit]")
    assert "入户调查已记录" in browser.text(".banner.ok")
    survey = console.verification(case_id)["survey"]
    assert (survey["recorded_by"], survey["visited_on"], [s["name"] for s in survey["surveyors"]]) == (
        CASEWORKER, "2026-12-01", ["李卫东", "赵敏"])
    assert "李卫东（驻村干部）" in browser.text("#survey")

    browser.fill(proposal="include", reason="家庭人均收入低于当地低保标准，拟纳入低保。")
    browser.submit("#initial-review-form button[type=submit]")
    assert "初审意见已提交" in browser.text(".banner.ok")
    proposal = console.verification(case_id)["initial_review"]
    assert (proposal["proposal"], proposal["proposed_by"]) == ("include", CASEWORKER)
    assert "拟纳入" in browser.text("#proposal") and "元" in browser.text("#proposal")

    browser.submit("#public-notice-form button[type=submit]")
    assert "公示已张贴" in browser.text(".banner.ok")
    notice = console.verification(case_id)["public_notice"]
    assert (notice["notice_from"], notice["notice_until"]) == ("2026-12-02", "2026-12-08")
    assert "2026年12月2日 — 2026年12月8日" in browser.text("#notice")
    assert "公示期内未收到异议" in browser.text("#notice")
    browser.open("/caseworker")
    assert "公示中" in row(browser, case_id).text
    browser.open(f"/caseworker/cases/{case_id}")
    browser.accessible()
    browser.shot("caseworker-case")


def test_an_objection_on_the_board_calls_for_a_democratic_appraisal(console, browser, cases):
    case_id = cases["A"]
    notice = console.verification(case_id)["public_notice"]

    object_on_board(console, case_id, notice, "听说该户有一辆小汽车。")
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open(f"/caseworker/cases/{case_id}")
    assert "听说该户有一辆小汽车" in browser.text("#objections")
    # More votes than people: said next to the votes, nothing recorded.
    browser.fill(held_on="2026-12-01", participants="9", votes_for="12", votes_against="1", abstentions="1",
                 opinion="经村民代表民主评议，多数同意纳入；异议所称车辆已于2025年出售。")
    browser.submit("#appraisal-form button[type=submit]")
    assert browser.field_error("votes_for")
    assert browser.value("opinion").startswith("经村民代表")
    assert console.verification(case_id)["appraisals"] == []
    browser.fill(votes_for="7")
    browser.submit("#appraisal-form button[type=submit]")
    assert "民主评议已记录" in browser.text(".banner.ok")
    (appraisal,) = console.verification(case_id)["appraisals"]
    assert (appraisal["participants"], appraisal["votes_for"]) == (9, 7)
    assert "参加 9 人：同意 7，反对 1，弃权 1" in browser.text()


@pytest.mark.parametrize("moment, words", [(DUE_TODAY, "今日到期"), (BREACHED, "已超期")])
def test_the_clock_of_a_case_left_alone_to_the_day(console, browser, cases, moment, words):
    deadline = next(d for d in console.verification(cases["B"])["deadlines"] if d["clock"] == "household_survey")
    assert deadline["due_date"] == SURVEY_DUE
    console.clock_set(moment)
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    text = row(browser, cases["B"]).text
    assert f"{words} · 2026年12月4日" in text, text
    state = {"今日到期": "due_today", "已超期": "breached"}[words]
    assert row(browser, cases["B"]).get_attribute("data-clock") == state
    assert words in browser.text(".banner")  # counted above the list
    # The filter by state finds it, and only cases in that state.
    browser.open(f"/caseworker?deadline_state={state}")
    assert {r.get_attribute("data-clock") for r in browser.find_all("#cases tbody tr")} == {state}


def test_a_bad_review_day_is_said_next_to_its_field(console, browser, cases):
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open("/caseworker/reviews")
    browser.fill(before="2026-13-40")
    browser.submit()
    assert browser.field_error("before")
    assert browser.value("before") == "2026-13-40"


def test_reviews_due_after_the_approval_and_one_started(console, browser, cases):
    case_id = cases["A"]
    console.pass_notices(console.verification(case_id))
    with console.client("verification", "reviewer", TOWNSHIP, user="rv-zhou") as c:
        r = c.post(f"/v1/verifications/{case_id}/decision", json={"decision": "approve", "reason": "审核确认小组同意"})
    assert r.status_code == 200, r.text
    approved = console.verification(case_id)
    next_review, cycle, fen = (approved["next_review_date"], approved["review_cycle_months"],
                               approved["current_monthly_amount_fen"])
    assert next_review and cycle and fen
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    browser.open("/caseworker/reviews")
    assert not browser.find_all(f'#reviews-due tr[data-case="{case_id}"]')  # not due yet today
    browser.fill(before=next_review)
    browser.submit()
    found = wait_for(lambda: browser.find_all(f'#reviews-due tr[data-case="{case_id}"]')
                     or browser.driver.refresh(), what="the review due listed")
    text = found[0].text
    assert f"每 {cycle} 个月" in text and "正常发放" in text, text
    assert yuan(fen) in text, text
    browser.accessible()
    browser.shot("caseworker-reviews")
    link = found[0].find_element("css selector", "a[href$='#review-form']").get_attribute("href")
    assert link == f"{console.url('console')}/caseworker/cases/{case_id}#review-form"
    browser.open(f"/caseworker/cases/{case_id}#review-form")
    browser.submit("#review-form button[type=submit]")
    assert "复核已开始" in browser.text(".banner.ok")
    (review,) = console.verification(case_id)["reviews"]
    assert (review["started_by"], review["reason"]) == (CASEWORKER, "定期复核（动态管理）")
    assert "定期复核（动态管理）" in browser.text("#reviews")


def test_a_case_near_the_end_of_the_whole_procedure_is_warned(console, browser, cases):
    assert [d["due_date"] for d in console.verification(cases["C"])["deadlines"]
            if d["clock"] == "whole_procedure"] == [WHOLE_DUE]
    console.clock_set(WARNED)
    browser.sign_in("caseworker", TOWNSHIP, CASEWORKER)
    c = row(browser, cases["C"])
    assert "待公示" in c.text and "临近期限 · 2026年12月29日" in c.text, c.text
    assert c.get_attribute("data-clock") == "warned"
    assert "已超期 · 2026年12月4日" in row(browser, cases["B"]).text
    assert "2026年12月25日" in browser.text(".hint")
    browser.accessible()
    browser.shot("caseworker-cases")
