"""Every legal notice as the household receives it, across processes (issue 13): each of the six
kinds is issued by the event that obliges it, from cases driven through the real routes, then
fetched as a letter from notify (`GET /v1/notices/{notice_id}.pdf`, printed by headless
Chromium), turned into a PNG (pdftoppm) and read back (pdftotext): its legal name, case number,
notice number, issuing office, reasons and — on the ones that decide against the household —
the remedy. Runs on both backends (the real pass runs tests/e2e on Kafka and PostgreSQL).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_flows import REGION, completed, decide, submit, submit_accepted
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

TOWNSHIP = REGION[:9]
COUNTY = REGION[:6]
NON_ACCEPTANCE_REASON = "申请人户籍及经常居住地均不在本辖区"
MATERIALS_REASON = "授权书未经全部家庭成员签字"
REFUSAL_REASON = "家庭人均收入高于当地最低生活保障标准"
TERMINATION_REASON = "家庭成员实现稳定就业，家庭人均收入超过当地低保标准"
LEGAL_NAMES = {"acceptance": "受理通知书", "non_acceptance": "不予受理告知书", "materials": "补正材料一次性告知书",
               "refusal": "不予批准决定书", "public_notice": "审核确认公示单", "adjustment": "停发告知书"}
REMEDY_WORDS = ("六十日内", "行政复议", "六个月内", "行政诉讼")
AGAINST = {"non_acceptance", "refusal", "adjustment"}
TOWNSHIP_OFFICE = "东营市东营区（370502101）乡镇人民政府"
COUNTY_OFFICE = "东营市东营区民政局"


def notices_of(lifeline, case_id: str) -> list[dict]:
    with lifeline.client("notify", "caseworker", TOWNSHIP) as c:
        r = c.get("/v1/notices", params={"case_id": case_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def notice(lifeline, case_id: str, kind: str) -> dict:
    """The case's notice of that kind (AssertionError until issued, which wait_for retries)."""
    found = [n for n in notices_of(lifeline, case_id) if n["kind"] == kind]
    assert len(found) == 1, (kind, found)
    return found[0]


def acceptance_step(lifeline, case_id: str, body: dict) -> None:
    with lifeline.client("intake", "clerk", TOWNSHIP) as c:
        r = c.post(f"/v1/cases/{case_id}/acceptance", json=body)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def issued(lifeline) -> dict[str, dict]:
    """One notice of each kind, each from its own case driven through the routes."""
    refused = submit(lifeline, new_people(1))
    acceptance_step(lifeline, refused, {"decision": "refuse", "reason": NON_ACCEPTANCE_REASON})
    incomplete = submit(lifeline, new_people(2))
    acceptance_step(lifeline, incomplete, {"decision": "request_materials", "reason": MATERIALS_REASON,
                                           "missing_materials": ["authorisation"]})

    approved, not_approved = new_people(2), new_people(1)
    make_poor(lifeline, approved + not_approved, income_fen=20000)
    # The township accepts and notices the one case, the county's clerk and caseworker the other.
    approved_case = submit(lifeline, approved)
    acceptance_step(lifeline, approved_case, {"decision": "accept", "reason": "材料齐全，予以受理"})
    refused_case = submit_accepted(lifeline, not_approved)
    completed(lifeline, approved_case)
    completed(lifeline, refused_case)
    lifeline.through_procedure(refused_case, "refuse")
    lifeline.through_procedure(approved_case, region=TOWNSHIP)  # noticed, the clock moved past the notice
    r = decide(lifeline, refused_case, "refuse", reason=REFUSAL_REASON)
    assert r.status_code == 200, r.text
    r = decide(lifeline, approved_case, "approve")
    assert r.status_code == 200, r.text
    r = lifeline.step(approved_case, "benefit-changes", {"change": "terminate", "from_period": r.json()["first_period"],
                                                         "reason": TERMINATION_REASON}, role="reviewer", region=COUNTY)
    assert r.status_code == 200, r.text

    cases = {"acceptance": approved_case, "non_acceptance": refused, "materials": incomplete,
             "refusal": refused_case, "public_notice": approved_case, "adjustment": approved_case}
    return {kind: wait_for(lambda k=kind, c=case_id: notice(lifeline, c, k), timeout=60, what=f"the {kind} notice")
            for kind, case_id in cases.items()}


@pytest.fixture(scope="module")
def tools():
    missing = [t for t in ("pdftoppm", "pdftotext") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"poppler-utils not installed ({', '.join(missing)}); scripts/test.sh installs it")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def letter(lifeline, notice_id: str, out: Path) -> Path:
    with lifeline.client("notify", "clerk", TOWNSHIP) as c:
        r = c.get(f"/v1/notices/{notice_id}.pdf", timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    path = out / f"{notice_id}.pdf"
    path.write_bytes(r.content)
    return path


@pytest.mark.parametrize("kind", list(LEGAL_NAMES))
def test_each_notice_is_printed_and_reads_back_as_the_household_receives_it(lifeline, issued, tools, kind, tmp_path):
    doc = issued[kind]
    assert LEGAL_NAMES[kind] in doc["legal_name"]
    pdf = letter(lifeline, doc["notice_id"], tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF-")
    run("pdftoppm", "-png", "-r", "60", "-singlefile", str(pdf), str(tmp_path / kind))
    assert (tmp_path / f"{kind}.png").stat().st_size > 10_000  # a blank A4 page is ~1 KB
    text = re.sub(r"\s+", "", run("pdftotext", "-enc", "UTF-8", str(pdf), "-"))
    assert doc["legal_name"] in text and doc["case_id"] in text and doc["notice_id"] in text
    assert "（印章）" in text and "《社会救助暂行办法》" in text
    reasons = {"non_acceptance": NON_ACCEPTANCE_REASON, "materials": MATERIALS_REASON, "refusal": REFUSAL_REASON,
               "adjustment": TERMINATION_REASON}
    if kind in reasons:
        assert reasons[kind] in text, (kind, text)
    if kind in AGAINST:
        assert all(word in text for word in REMEDY_WORDS), (kind, text)
    else:
        assert not any(word in text for word in REMEDY_WORDS), (kind, text)
    # Who issues it: the office whose officer acted (the county's reviewer decided both decisions).
    office = COUNTY_OFFICE if kind in ("refusal", "adjustment") else TOWNSHIP_OFFICE
    assert office in text and doc["issuing_office"] == (COUNTY if office == COUNTY_OFFICE else TOWNSHIP), kind


def test_a_letter_outside_the_callers_region_is_not_found_and_an_unknown_one_neither(lifeline, issued):
    notice_id = issued["acceptance"]["notice_id"]
    with lifeline.client("notify", "clerk", "370502102") as stranger:
        assert stranger.get(f"/v1/notices/{notice_id}.pdf").status_code in (403, 404)
    with lifeline.client("notify", "clerk", TOWNSHIP) as c:
        r = c.get("/v1/notices/NACC-0000000000000000.pdf")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
