"""The console's words: money, dates and periods as a Chinese reader expects them, every Chinese
text of a page translated for the English switch, and the service's error entries mapped to the
form fields they name."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from lifeline.console.gateway import ServiceProblem, field_name
from lifeline.console.i18n import Words, catalog
from lifeline.settings import Settings

CONSOLE = Path(__file__).resolve().parents[3] / "lifeline" / "console"


def test_money_is_yuan_with_two_decimals_from_integer_fen():
    zh = Words("zh-CN")
    assert zh.yuan(123456) == "1,234.56 元"
    assert zh.yuan(5) == "0.05 元"
    assert zh.yuan(-100) == "-1.00 元"
    assert zh.yuan(None) == "—"
    assert Words("en").yuan(123456) == "CNY 1,234.56"


def test_dates_in_chinese_and_moments_in_shanghai():
    zh = Words("zh-CN")
    assert zh.day("2026-12-01") == "2026年12月1日"
    assert zh.day(date(2027, 1, 9)) == "2027年1月9日"
    # 16:30 UTC on 30 November is already 1 December in Shanghai.
    assert zh.day(datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)) == "2026年12月1日"
    assert zh.moment("2026-11-30T16:30:00+00:00") == "2026年12月1日 00:30"
    assert zh.period("2026-12") == "2026年12月"
    assert Words("en").day("2026-12-01") == "1 Dec 2026"
    assert Words("xx").language == "zh-CN"


def test_a_label_falls_back_to_the_code_and_english_to_the_chinese():
    en = Words("en")
    assert en.label("assistance_type", "dibao") == "Minimum living allowance (dibao)"
    assert en.label("assistance_type", "unknown-code") == "unknown-code"
    assert en._("没有翻译的字") == "没有翻译的字"


def _chinese_texts() -> set[str]:
    """Every `_("...")` with Chinese in the console's templates and routes."""
    found: set[str] = set()
    pattern = re.compile(r"""_\(\s*(["'])(.*?)\1""")
    for path in [*CONSOLE.rglob("*.html"), *CONSOLE.rglob("*.py")]:
        for _q, text in pattern.findall(path.read_text(encoding="utf-8")):
            if re.search(r"[\u4e00-\u9fff]", text):
                found.add(text)
    return found


def test_every_chinese_text_has_its_english():
    missing = sorted(t for t in _chinese_texts() if t not in catalog("en"))
    assert not missing, f"{len(missing)} texts without English (lifeline/console/locale/en/*.json): {missing[:20]}"


def test_no_inline_style_or_script_in_any_template():
    # The console's CSP refuses both; the browser would log an error and drop them.
    for path in CONSOLE.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\sstyle=", text), f"{path.name}: inline style"
        assert not re.search(r"<script(?![^>]*\ssrc=)", text), f"{path.name}: inline script"
        assert not re.search(r"\son[a-z]+=", text), f"{path.name}: inline event handler"


@pytest.mark.parametrize("entry, name", [
    ({"pointer": "#/members/0/id_number", "detail": "x"}, "members.0.id_number"),
    ({"pointer": "#/bank_account/account_name"}, "bank_account.account_name"),
    ({"pointer": "#/a~1b"}, "a/b"),
    ({"parameter": "region", "in": "query"}, "region"),
    ({"pointer": "#"}, None),
    ({"detail": "no place"}, None),
])
def test_error_entries_name_form_fields(entry, name):
    assert field_name(entry) == name


def test_a_problem_gives_each_named_field_its_message():
    problem = ServiceProblem("intake", 422, {
        "title": "Request validation failed", "detail": "2 errors",
        "errors": [{"pointer": "#/members/1/id_number", "detail": "invalid resident ID number"},
                   {"parameter": "region", "in": "query", "detail": "not a division code"}]})
    assert problem.field_errors() == {"members.1.id_number": "invalid resident ID number",
                                      "region": "not a division code"}


def test_production_refuses_picking_a_role_to_sign_in():
    with pytest.raises(Exception, match="LIFELINE_CONSOLE_SIGN_IN=pick is refused"):
        Settings.from_env({"LIFELINE_ENVIRONMENT": "production", "LIFELINE_CONSOLE_SIGN_IN": "pick",
                           "LIFELINE_CIPHER_KEY": "k" * 44, "LIFELINE_JWT_SECRET": "s" * 40})
    assert Settings.from_env({}).console_sign_in == "pick"
