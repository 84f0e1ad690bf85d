"""The reviewer's screens in a real browser (issue 15): the queue of cases a decision is due on, a
case's evidence (the departments' answers, the assessment with its reasons and warnings, the
survey, the public notice and the objection received, the democratic appraisal), approve and
refuse with a reason, and the four-eyes rule shown to whoever surveyed and proposed — and still
enforced by verification when posted anyway.

On the shared test clock: households A and D accepted on Tuesday 2026-12-01 09:00, surveyed and
proposed by caseworker "cw-li" (the harness's steps, with cw-li's token), their notices posted the
same day and run to the end of 12-08; A's applicant earns more than declared (a warning of the
check) and A's notice draws an objection: a democratic appraisal follows. Reviewer "rv-wang"
decides on 12-09.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import make_poor, new_people
from tests.e2e.console.conftest import object_on_board, yuan
from tests.e2e.test_flows import completed, submit_accepted

pytestmark = pytest.mark.e2e

TOWNSHIP = "370502101"
START = "2026-12-01T09:00:00+08:00"
CASEWORKER, REVIEWER = "cw-li", "rv-wang"
OBJECTION = "该户家中有经营性门面房出租。"


def as_caseworker(console, case_id: str):
    """A step of the procedure posted by cw-li (the harness's `post` for prepare_decision)."""
    def post(path: str, body: dict | None) -> dict:
        with console.client("verification", "caseworker", TOWNSHIP, user=CASEWORKER) as c:
            r = c.post(f"/v1/verifications/{case_id}/{path}", json=body)
        assert r.status_code == 200, r.text
        return r.json()
    return post


@pytest.fixture(scope="module")
def cases(console) -> dict[str, str]:
    console.clock_set(START)
    people = {"A": new_people(2), "D": new_people(1)}
    make_poor(console, people["A"], income_fen=20000)  # 200 元 a month each, 0 declared: a warning
    make_poor(console, people["D"])
    found = {"A": submit_accepted(console, people["A"]), "D": submit_accepted(console, people["D"], names=["赵春花"])}
    for case_id in found.values():
        completed(console, case_id)
    assert console.verification(found["A"])["assessment"]["warnings"], "A's check warns"
    views = {"D": console.prepare_decision(found["D"], region=TOWNSHIP, post=as_caseworker(console, found["D"]))}
    post = as_caseworker(console, found["A"])
    post("survey", {"surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
                    "visited_on": "2026-12-01", "findings": "入户查看，门面房情况待核实。"})
    post("initial-review", {"proposal": "include", "reason": "家庭人均收入低于当地低保标准，拟纳入。"})
    notice = post("public-notice", None)["public_notice"]

    object_on_board(console, found["A"], notice, OBJECTION)
    views["A"] = post("appraisal", {"held_on": "2026-12-01", "participants": 11, "votes_for": 9, "votes_against": 1,
                                    "abstentions": 1, "opinion": "门面房系租用他人，多数同意纳入。"})
    console.pass_notices(*views.values())
    return found


def test_the_queue_shows_the_cases_due_for_a_decision(console, browser, cases):
    browser.sign_in("reviewer", TOWNSHIP, REVIEWER)
    assert browser.path == "/reviewer"
    for case_id in cases.values():
        text = browser.find(f'#queue tr[data-case="{case_id}"]').text
        assert "拟纳入" in text and "您可审批" in text, text
        assert "未到期 · " in text  # the decision's clock, 3 working days from the notice's end
    assert "赵*花" in browser.text("#queue")
    browser.accessible()
    browser.shot("reviewer-queue")


def test_the_four_eyes_rule_is_shown_and_still_enforced(console, browser, cases):
    case_id = cases["A"]
    browser.sign_in("reviewer", TOWNSHIP, CASEWORKER)  # the caseworker's own user id
    assert "您不能审批：您记录了入户调查并提出了初审意见" in browser.find(f'#queue tr[data-case="{case_id}"]').text
    browser.open(f"/reviewer/cases/{case_id}")
    block = browser.text("#four-eyes")
    assert "四眼原则：您不能审批本案" in block and "cw-li" in block
    buttons = browser.find_all('#decide button[name="decision"]')
    assert len(buttons) == 2 and not any(b.is_enabled() for b in buttons)
    assert browser.find("#decide fieldset").get_attribute("aria-describedby") == "four-eyes"
    browser.accessible()
    browser.shot("reviewer-four-eyes")
    # Posted anyway (the page's lock taken off): verification refuses, and the page says so.
    browser.driver.execute_script("document.querySelectorAll('#decide [disabled]')"
                                  ".forEach(e => e.removeAttribute('disabled'));")
    browser.fill(reason="我来批准。")
    browser.submit('#decide button[value="approve"]')
    banner = browser.text("#decide .banner.problem:not(#four-eyes)")
    assert "Decision not allowed" in banner and "four eyes" in banner and "four_eyes" in banner, banner
    assert browser.value("reason") == "我来批准。"  # kept as typed
    assert (console.verification(case_id)["state"], console.verification(case_id)["decisions"]) == ("completed", [])


def test_the_evidence_and_a_decision_without_a_reason(console, browser, cases):
    case_id = cases["A"]
    browser.sign_in("reviewer", TOWNSHIP, REVIEWER)
    browser.open(f"/reviewer/cases/{case_id}")
    assert not browser.find_all("#four-eyes")
    evidence = browser.text("#evidence")
    assert "人力资源和社会保障局：已答复" in evidence and "银行：已答复" in evidence
    assessment = console.verification(case_id)["assessment"]
    # The figures as the service computed them, in yuan with two decimals.
    for fen in (assessment["per_capita_income_fen"], assessment["standard_applied_fen"], assessment["monthly_amount_fen"]):
        assert yuan(fen) in browser.text("#assessment")
    assert assessment["per_capita_income_fen"] > 0  # the earnings the departments report
    assert "核对收入高于申报收入（预警）" in browser.text("#warnings")
    assert all(r["message_zh"] in browser.text("#reasons") for r in assessment["detail"]["reasons"])
    assert "李卫东（驻村干部）" in browser.text("#survey")
    assert "2026年12月2日 — 2026年12月8日" in browser.text("#notice")
    assert OBJECTION in browser.text("#objections")
    assert "门面房系租用他人" in browser.text()  # the appraisal after the objection
    browser.accessible()
    browser.shot("reviewer-case")
    browser.submit('#decide button[value="approve"]')  # no reason
    assert browser.field_error("reason")
    assert console.verification(case_id)["decisions"] == []


def decide(console, browser, case_id: str, decision: str, reason: str) -> dict:
    """The reviewer's decision taken on the case's page: verification's view after it."""
    browser.sign_in("reviewer", TOWNSHIP, REVIEWER)
    browser.open(f"/reviewer/cases/{case_id}")
    browser.fill(reason=reason)
    browser.submit(f'#decide button[value="{decision}"]')
    return console.verification(case_id)


def test_the_reviewer_approves(console, browser, cases):
    case_id = cases["A"]
    v = decide(console, browser, case_id, "approve", "经审核确认小组会议研究，同意纳入最低生活保障。")
    assert "已批准" in browser.text(".banner.ok")
    assert (v["state"], v["decisions"][-1]["by"], v["decisions"][-1]["decision"]) == ("approved", REVIEWER, "approve")
    benefit = browser.text("#benefit")
    fen = v["benefit"]["monthly_amount_fen"]
    assert yuan(fen) in benefit and "2027年1月" in benefit, benefit
    assert not browser.find_all("#decide")  # decided: no form any more
    browser.open("/reviewer")
    assert not browser.find_all(f'#queue tr[data-case="{case_id}"]')


def test_the_reviewer_refuses(console, browser, cases):
    reason = "经审核确认小组会议研究，该户有劳动能力且有稳定收入来源，不予批准。"
    v = decide(console, browser, cases["D"], "refuse", reason)
    assert "不予批准" in browser.text(".banner.ok")
    assert (v["state"], v["refusal"]["reason"]) == ("refused", reason)
