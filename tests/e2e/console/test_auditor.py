"""The auditor's screens in a real browser: one household submitted and accepted, its timeline
across the five services (who, role, office, why, when) from the services' audit routes, the
case as of a moment before its acceptance, every service's log verified, the page exported as
a zip, and the page still shown, naming it, while one service is down."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import datetime, timedelta

import httpx
import pytest

from lifeline.rules.periods import SHANGHAI
from lifeline.settings import SERVICES
from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_flows import submit
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY = "370502"
AUDITOR = "auditor-dy-01"


@pytest.fixture(scope="module")
def case(console):
    """A case submitted, then (after a whole second) accepted: (case_id, a moment in between to
    the second, as a datetime-local input takes it)."""
    people = new_people(2)
    make_poor(console, people)
    case_id = submit(console, people)
    time.sleep(1.2)
    # Strictly after the submission (1.2 s ago) and before the acceptance (after it).
    before = datetime.now(SHANGHAI).replace(microsecond=0)
    console.accept(case_id)

    def verification_has_events():
        with console.client("verification", "auditor", COUNTY) as c:
            r = c.get(f"/v1/audit/cases/{case_id}/events")
        return r.status_code == 200 and r.json()["events"]

    wait_for(verification_has_events, what="verification's events of the case")
    return case_id, before


def rows(browser, service: str | None = None) -> list:
    css = "table.audit-timeline tbody tr" + (f'[data-service="{service}"]' if service else "")
    return browser.find_all(css)


def cell(row, name: str) -> str:
    from selenium.webdriver.common.by import By

    return row.find_element(By.CSS_SELECTOR, f"td.ev-{name}").text


def test_a_case_timeline_across_the_services_with_who_role_office_and_why(browser, case):
    case_id, _ = case
    browser.sign_in("auditor", COUNTY, AUDITOR)
    browser.open("/audit")
    assert "案件时间线" in browser.text("nav")
    browser.fill(case_id=case_id)
    browser.submit()
    assert browser.path == f"/audit/cases/{case_id}"

    intake, verification = rows(browser, "intake"), rows(browser, "verification")
    assert intake and verification, browser.text()
    [accepted] = [r for r in intake if r.get_attribute("data-event") == "Case.Accepted"]
    assert "ApplicationAccepted" in accepted.text
    assert (cell(accepted, "who"), cell(accepted, "role"), cell(accepted, "office"), cell(accepted, "why")) == (
        f"clerk@{COUNTY}", "窗口受理人员", COUNTY, "材料齐全，予以受理")
    # One timeline in recorded order: verification's first event was caused by intake's
    # submission and follows it, naming that cause.
    events = [r.get_attribute("data-event") for r in rows(browser)]
    assert events.index("Case.Submitted") < events.index("Verification.Started") < events.index("Case.Accepted")
    started = [r for r in verification if r.get_attribute("data-event") == "Verification.Started"][0]
    assert "起因：ApplicationSubmitted（受理服务）" in started.text and cell(started, "who")
    counted = browser.find('.audit-services li[data-service="intake"]').text
    assert f"{len(intake)} 条事件" in counted
    browser.accessible()
    browser.shot("audit-timeline")


def test_the_case_as_of_a_moment_before_its_acceptance(browser, case):
    case_id, before = case
    browser.open(f"/audit/cases/{case_id}")
    now_lines = len(rows(browser))
    # The datetime-local input takes its value as the browser's own picker would set it.
    field = browser.find('[name="as_of"]')
    browser.driver.execute_script("arguments[0].value = arguments[1];", field, before.strftime("%Y-%m-%dT%H:%M:%S"))
    browser.submit("form.audit-asof button[type=submit]")
    assert "as_of=" in browser.path
    assert "截至" in browser.text(".banner.asof")
    then = [r.get_attribute("data-event") for r in rows(browser)]
    assert then and "Case.Submitted" in then and "Case.Accepted" not in then and len(then) < now_lines
    # The documents as they stood: intake's case submitted, not yet accepted; verification's
    # check waiting for the acceptance.
    assert "submitted" in browser.find('.audit-docs[data-service="intake"] summary').text
    assert "awaiting_acceptance" in browser.find('.audit-docs[data-service="verification"] summary').text
    browser.accessible()
    browser.shot("audit-asof")


def test_a_moment_in_the_future_is_refused_next_to_its_field(browser, case):
    case_id, _ = case
    later = (datetime.now(SHANGHAI) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    browser.open(f"/audit/cases/{case_id}?as_of={later}")
    assert browser.field_error("as_of"), browser.text()  # the services' own message
    assert browser.value("as_of") == later


def test_every_service_log_verified(browser):
    browser.open("/audit/verify")
    for service in SERVICES:
        row = browser.find(f'table.audit-verify tr[data-service="{service}"]')
        assert "完好" in row.find_element("css selector", ".verdict").text, row.text
        assert "个一致" in row.text
    assert "五个服务的日志均完好" in browser.text(".banner")
    browser.accessible()
    browser.shot("audit-verify")


def test_the_page_exported_as_a_zip(console, browser, case):
    case_id, _ = case
    browser.open(f"/audit/cases/{case_id}")
    link = browser.find('a[href$="/export"]')
    assert link.get_attribute("download") is not None
    cookie = browser.driver.get_cookie("lifeline_console")["value"]
    r = httpx.get(console.url("console") + f"/audit/cases/{case_id}/export", cookies={"lifeline_console": cookie},
                  timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith("attachment;") and case_id in r.headers["content-disposition"]
    bundle = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(bundle.namelist())
    assert {"README.txt", "timeline.txt", "events/intake.jsonl", "events/verification.jsonl",
            "documents/intake.json"} <= names, names
    readme = bundle.read("README.txt").decode()
    assert AUDITOR in readme and "from the console at" in readme and "lifeline audit export" in readme
    intake = [json.loads(line) for line in bundle.read("events/intake.jsonl").decode().splitlines()]
    assert "Case.Accepted" in [e["event"] for e in intake]
    merged = bundle.read("timeline.txt").decode().splitlines()
    assert any("ApplicationAccepted" in line and f"user=clerk@{COUNTY}" in line for line in merged)
    assert len(merged) == len(rows(browser))


def test_a_service_that_does_not_answer_is_named_and_the_rest_still_shows(console, browser, case):
    case_id, _ = case
    console.stop("charity")
    try:
        browser.open(f"/audit/cases/{case_id}")
        assert "慈善帮扶服务暂时无法连接" in browser.text(".banner.down")
        assert rows(browser, "intake") and rows(browser, "verification")
        assert "未应答" in browser.find('.audit-services li[data-service="charity"]').text
    finally:
        console.start("charity")
