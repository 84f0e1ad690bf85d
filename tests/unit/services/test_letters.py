"""The six written notices as PDF letters (services/notify/letters.py) and their route
`GET /v1/notices/{notice_id}.pdf`.

The notices are notify's own: CloudEvents fed to notify's application in an in-process service
(`service_http`, no broker, no Redis), read back from its read model. Each letter is printed by
the real headless Chromium, turned into a PNG with pdftoppm and read back with pdftotext and
pdffonts (Debian's chromium, poppler-utils and fonts-noto-cjk; scripts/test.sh installs them).
One Chromium serves the whole module (it is started once and kept warm), so the module costs a
few seconds; the layout tests need no Chromium at all.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lifeline.http.auth import mint_token
from lifeline.http.problems import PROBLEM_JSON
from lifeline.rules.periods import SHANGHAI
from services.notify import letters
from services.notify.bootstrap import SPEC
from services.notify.domain import LEGAL_NAMES

from . import VILLAGE, accepted_data, cloud, new_case_id, service_http

SECRET = "test-letters-secret-0123456789abcdef0123"
NOW = datetime(2026, 11, 30, 10, 15, tzinfo=SHANGHAI)
TOOLS = ("chromium", "pdftoppm", "pdftotext", "pdffonts")

REFUSED_REASON = "申请人户籍及经常居住地均不在本辖区"
MATERIALS_REASON = "授权书未经全部家庭成员签字"
REFUSAL_REASON = "家庭人均收入高于当地最低生活保障标准"
TERMINATION_REASON = "延退期满，家庭人均收入高于低保标准"
HOTLINE = "12345"
# What each letter must say beyond its legal name and case number: its reasons.
REASONS = {
    "acceptance": ["已受理", "最低生活保障"],
    "non_acceptance": [REFUSED_REASON],
    "materials": ["居民身份证", "家庭经济状况核对授权书", MATERIALS_REASON],
    "refusal": [REFUSAL_REASON],
    "public_notice": ["王*明", "2人", "每月2060.00元", "2026-12-01", "2026-12-07", HOTLINE],
    "adjustment": ["自2027年6月起", "停止发放", TERMINATION_REASON, "第十三条"],
}
# The remedies, on every notice that decides against the household and on no other.
REMEDY_WORDS = ("六十日内", "行政复议", "六个月内", "行政诉讼")
WITH_REMEDY = {"non_acceptance", "refusal", "adjustment"}


def bearer(role: str, region: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


def feed_case(app, case_id: str) -> None:
    """One case that receives every kind of notice (as the procedure's events would cause)."""
    at = NOW.isoformat()

    def feed(name: str, data: dict, source: str) -> None:
        assert app.process_cloud_event(cloud(name, data, subject=case_id, source=source)), name

    feed("ApplicationAccepted", accepted_data(case_id, at), "lifeline/intake")
    feed("ApplicationRefused", {
        "case_id": case_id, "region_code": VILLAGE, "assistance_type": "dibao", "applicant_name_masked": "王*明",
        "reason": REFUSED_REASON, "refused_at": at}, "lifeline/intake")
    feed("MaterialsRequested", {
        "case_id": case_id, "region_code": VILLAGE, "assistance_type": "dibao", "applicant_name_masked": "王*明",
        "missing_materials": ["resident_id", "authorisation"], "repeat": False, "reason": MATERIALS_REASON,
        "requested_at": at}, "lifeline/intake")
    feed("BenefitRefused", {
        "case_id": case_id, "verification_id": "V-1", "region_code": VILLAGE, "reason": REFUSAL_REASON,
        "refusing_body": "370502101 乡镇审核确认小组", "refused_at": at}, "lifeline/verification")
    feed("PublicNoticePosted", {
        "case_id": case_id, "verification_id": "V-1", "public_notice_id": f"PN-{case_id}", "village_code": VILLAGE,
        "applicant_name_masked": "王*明", "members_count": 2, "assistance_type": "dibao",
        "monthly_amount_fen": 206000, "one_off_amount_fen": None, "notice_from": "2026-12-01",
        "notice_until": "2026-12-07", "ends_at": "2026-12-08T00:00:00+08:00", "posted_at": at},
        "lifeline/verification")
    feed("BenefitTerminated", {
        "case_id": case_id, "benefit_id": "B-1", "from_period": "2027-06", "reason": TERMINATION_REASON,
        "decided_by": "reviewer-001", "decided_at": at}, "lifeline/verification")


def notice_documents(http, case_id: str) -> dict[str, dict]:
    runtime = http.state.runtime
    runtime.projection.catch_up()
    with runtime.side.transaction() as tx:
        docs = tx.find("notice", case_id)
    return {doc["kind"]: doc for doc in docs}


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    with service_http(SPEC, tmp_path_factory.mktemp("letters"), SECRET, NOW) as app:
        yield app


@pytest.fixture(scope="module")
def notices(http) -> dict[str, dict]:
    case_id = new_case_id()
    feed_case(http.state.runtime.app, case_id)
    docs = notice_documents(http, case_id)
    assert set(docs) == set(LEGAL_NAMES), sorted(docs)
    return docs


@pytest.fixture(scope="module")
def tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install chromium poppler-utils fonts-noto-cjk "
                    "(scripts/test.sh installs them)")


@pytest.fixture(scope="module")
def printed(tools, notices, tmp_path_factory) -> dict[str, Path]:
    """Each kind's letter as a PDF file (one warm Chromium for all six)."""
    out = tmp_path_factory.mktemp("printed")
    files = {}
    for kind, doc in notices.items():
        files[kind] = out / f"{kind}.pdf"
        files[kind].write_bytes(letters.letter_pdf(doc))
    return files


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def text_of(pdf: Path) -> str:
    """The letter's text as pdftotext reads it back, whitespace removed (lines wrap anywhere)."""
    return re.sub(r"\s+", "", run("pdftotext", "-enc", "UTF-8", str(pdf), "-"))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


# === each kind printed and read back =========================================================
@pytest.mark.parametrize("kind", list(LEGAL_NAMES))
def test_each_letter_reads_back_its_legal_name_case_number_and_reasons(printed, notices, kind, tmp_path):
    pdf = printed[kind]
    assert pdf.read_bytes().startswith(b"%PDF-")
    info = run("pdfinfo", str(pdf))
    assert re.search(r"Page size:\s+59\d\.\d+ x 841\.\d+ pts \(A4\)", info), info
    assert re.search(r"Pages:\s+1\n", info), info  # a letter fits on one page
    # The PNG a reader sees: one A4 page at 60 dpi, not blank.
    run("pdftoppm", "-png", "-r", "60", "-singlefile", str(pdf), str(tmp_path / kind))
    png = tmp_path / f"{kind}.png"
    assert png_size(png) == (496, 702)
    assert png.stat().st_size > 10_000  # a blank A4 page is ~1 KB
    text = text_of(pdf)
    doc = notices[kind]
    assert LEGAL_NAMES[kind] in text and doc["case_id"] in text and doc["notice_id"] in text
    for reason in REASONS[kind]:
        assert reason in text, (kind, reason)
    assert "东营市东营区（370502101）乡镇人民政府" in text  # the issuing office
    assert "2026年11月30日" in text and "（印章）" in text  # the date and the seal placeholder
    assert "《社会救助暂行办法》（国务院令第649号）" in text  # the legal basis
    assert "王*明：" in text  # the household, as the notice names it


@pytest.mark.parametrize("kind", list(LEGAL_NAMES))
def test_the_remedy_is_on_the_letters_that_decide_against_the_household(printed, kind):
    text = text_of(printed[kind])
    if kind in WITH_REMEDY:
        for word in REMEDY_WORDS:
            assert word in text, (kind, word)
        assert "行政复议申请可向东营市东营区人民政府提出" in text
    else:
        assert not any(word in text for word in REMEDY_WORDS), kind


def test_the_chinese_is_set_in_the_embedded_noto_cjk_fonts(printed):
    for kind, pdf in printed.items():
        rows = run("pdffonts", str(pdf)).splitlines()[2:]
        assert rows, kind
        # Every font is embedded (column "emb"): nothing depends on the reader's fonts.
        assert all(row.split()[-5] == "yes" for row in rows), (kind, rows)
        # Chromium embeds CFF (OpenType) fonts as Type 3, which pdffonts lists without a name;
        # their descriptors name the font the glyphs came from.
        raw = pdf.read_bytes()
        names = set(re.findall(rb"/FontName /[A-Z]{6}\+([A-Za-z-]+)", raw))
        families = set(re.findall(rb"/FontFamily \(([^)]*)\)", raw))
        assert b"NotoSerifCJKsc-Regular" in names and b"Noto Serif CJK SC" in families, (kind, names, families)
        assert names <= {b"NotoSerifCJKsc-Regular", b"NotoSerifCJKsc-Bold", b"NotoSansCJKsc-Bold",
                         b"NotoSansCJKsc-Medium", b"NotoSansCJKsc-Regular"}, (kind, names)


def test_a_warm_chromium_prints_the_next_letter_without_starting_again(tools, notices):
    letters.letter_pdf(notices["acceptance"])  # warm (or cached)
    starts = letters._renderer.starts
    doc = {**notices["refusal"], "notice_id": "NREF-TIMING0000000000"}  # a new letter: not cached
    started = time.monotonic()
    assert letters.letter_pdf(doc).startswith(b"%PDF-")
    assert letters._renderer.starts == starts  # the same browser
    assert time.monotonic() - started < 5  # ~0.3 s on an idle machine; generous for a busy one


# === the renderer ================================================================================
def test_a_chromium_that_died_is_started_again_and_an_idle_one_closed(tools, notices):
    renderer = letters.Chromium(idle_seconds=3)
    try:
        html = letters.letter_html(notices["acceptance"])
        assert renderer.pdf(html).startswith(b"%PDF-")
        os.killpg(renderer._proc.pid, 9)  # the browser and its renderers, as an OOM kill would
        renderer._proc.wait(timeout=10)
        assert renderer.pdf(html).startswith(b"%PDF-")  # printed all the same, on a new one
        assert renderer.starts == 2
        # Idle: closed after idle_seconds without letters, its profile removed.
        profile = renderer._profile
        deadline = time.monotonic() + 20
        while (renderer._proc is not None or os.path.exists(profile)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert renderer._proc is None and not os.path.exists(profile)
        assert renderer.pdf(html).startswith(b"%PDF-") and renderer.starts == 3
    finally:
        renderer.close()
    assert renderer._proc is None


def test_no_chromium_is_a_letter_error_naming_what_to_install():
    renderer = letters.Chromium("no-such-chromium-here")
    with pytest.raises(letters.LetterError, match="apt-get install chromium fonts-noto-cjk"):
        renderer.pdf("<p>x</p>")


# === the layout (no Chromium) =======================================================================
def test_the_layout_lays_the_reasons_out_from_the_body(notices):
    refused = letters.letter_context(notices["non_acceptance"])
    assert refused["reasons"] == REFUSED_REASON and refused["remedy"]
    assert refused["decision"] == [f"您的社会救助申请（最低生活保障，案件号 {notices['non_acceptance']['case_id']}）不予受理。"]
    materials = letters.letter_context(notices["materials"])
    assert materials["materials"] == ["居民身份证", "家庭经济状况核对授权书"]
    assert materials["explanation"] == MATERIALS_REASON and not materials["remedy"]
    assert materials["closing"] == ["其他可通过部门间数据共享获取的材料无需提供。", "补齐后即予受理。"]
    slip = letters.letter_context(notices["public_notice"])["slip"]
    assert (slip["applicant"], slip["members"], slip["amount"], slip["hotline"]) == ("王*明", "2", "每月2060.00元", HOTLINE)
    change = letters.letter_context(notices["adjustment"])
    assert change["reasons"] == TERMINATION_REASON
    assert change["basis"] == "《社会救助暂行办法》（国务院令第649号）第十三条"
    # The remedy sentence is laid out once, in its own section, not repeated in the decision.
    assert not any("行政复议" in s for s in change["decision"] + change["closing"])


def test_a_body_the_layout_does_not_know_is_printed_as_it_stands(notices):
    doc = {**notices["refusal"], "body": "王*明：一段另行拟定的文字。第二句。"}
    context = letters.letter_context(doc)
    assert context["decision"] == ["一段另行拟定的文字。", "第二句。"] and context["reasons"] is None
    assert context["remedy"]  # a refusal names the remedies whatever its body says


def test_what_the_notice_says_is_escaped_and_nothing_is_fetched(notices):
    doc = {**notices["refusal"], "body": "王*明：经审核，不予批准。理由：<img src=http://x/y.png>收入超标。"}
    html = letters.letter_html(doc)
    assert "<img" not in html and "&lt;img src=http://x/y.png&gt;收入超标" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_no_letter_for_an_unknown_kind(notices):
    with pytest.raises(ValueError, match="no letter"):
        letters.letter_html({**notices["refusal"], "kind": "reminder"})


@pytest.mark.parametrize("region, office, reviewer", [
    ("370502101001", "东营市东营区（370502101）乡镇人民政府", "东营市东营区人民政府"),  # a village: its township
    ("370502101", "东营市东营区（370502101）乡镇人民政府", "东营市东营区人民政府"),
    ("370502", "东营市东营区民政局", "东营市东营区人民政府"),
    ("110101", "北京市东城区民政局", "北京市东城区人民政府"),  # from the GB/T 2260 register
    ("", "县级人民政府民政部门", ""),  # NoticeIssued alone carries no region
])
def test_the_issuing_office_is_derived_from_the_region(region, office, reviewer):
    found = letters.issuing_office(region)
    assert (found["name"], found["reviewer"]) == (office, reviewer)


def test_the_date_is_the_day_of_issue_in_shanghai():
    assert letters.chinese_date("2026-11-29T17:30:00+00:00") == "2026年11月30日"


def test_the_samples_are_notify_s_own_texts():
    samples = letters.sample_notices()
    assert [s["kind"] for s in samples] == list(LEGAL_NAMES)
    for sample in samples:
        context = letters.letter_context(sample)
        assert context["decision"] or context["slip"], sample["kind"]


# === the route ========================================================================================
def get(http, notice_id: str, role: str, region: str):
    return TestClient(http, raise_server_exceptions=False).get(f"/v1/notices/{notice_id}.pdf",
                                                               headers=bearer(role, region))


@pytest.mark.parametrize("role, region", [
    ("clerk", "370502101"), ("caseworker", "370502"), ("auditor", "370502"), ("auditor", "370000"),
    ("admin", "000000"),
])
def test_the_route_answers_the_letter_within_the_callers_region(tools, http, notices, role, region):
    doc = notices["refusal"]
    r = get(http, doc["notice_id"], role, region)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'inline; filename="{doc["notice_id"]}.pdf"'
    assert r.content.startswith(b"%PDF-") and r.content.rstrip().endswith(b"%%EOF")


def test_the_route_refuses_other_regions_and_roles(http, notices):
    doc = notices["acceptance"]
    r = get(http, doc["notice_id"], "auditor", "370602")  # another county's auditor
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["type"].endswith("/region-forbidden")
    r = get(http, doc["notice_id"], "clerk", "370502102")  # another township of the same county
    assert r.status_code == 403
    r = get(http, doc["notice_id"], "bank_channel", "370502")
    assert r.status_code == 403 and r.json()["type"].endswith("/role-forbidden")
    r = TestClient(http, raise_server_exceptions=False).get(f"/v1/notices/{doc['notice_id']}.pdf")
    assert r.status_code == 401


def test_an_unknown_notice_is_404_problem_json(http):
    r = get(http, "NREF-0000000000000000", "auditor", "370502")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["title"] == "Notice not found" and "NREF-0000000000000000" in r.json()["detail"]


def test_no_chromium_is_503_problem_json(http, notices):
    case_id = new_case_id()
    feed_case(http.state.runtime.app, case_id)
    doc = notice_documents(http, case_id)["acceptance"]  # not printed yet: not in the cache
    letters.configure("no-such-chromium-here")
    try:
        r = get(http, doc["notice_id"], "auditor", "370502")
    finally:
        letters.configure("chromium")
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM_JSON
    assert "apt-get install chromium" in r.json()["detail"]


def test_the_route_is_documented_as_a_pdf(http):
    op = http.openapi()["paths"]["/v1/notices/{notice_id}.pdf"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["application/pdf"]
    assert {"401", "403", "404", "503"} <= set(op["responses"])
