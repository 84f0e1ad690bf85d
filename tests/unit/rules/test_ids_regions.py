from __future__ import annotations

from datetime import date

import pytest

from lifeline.rules.ids import (
    InvalidResidentId,
    is_valid_resident_id,
    make_resident_id,
    mask_resident_id,
    parse_resident_id,
)
from lifeline.rules.regions import (
    InvalidRegionCode,
    RegisterError,
    county_of,
    install_region_register,
    is_county_code,
    is_known_county,
    level_of,
    load_region_register,
    parse_register,
    region_contains,
    region_register,
    shipped_region_register,
    validate_division_in_force,
    validate_region_code,
)
from lifeline.rules.setup import install_rules
from lifeline.settings import Settings

TODAY = date(2026, 6, 1)


@pytest.mark.parametrize("number, region, birth, sex", [
    ("11010519491231002X", "110105", date(1949, 12, 31), "female"),   # GB 11643 example
    ("11010519491231002x", "110105", date(1949, 12, 31), "female"),   # lower-case x accepted
])
def test_parse_valid(number, region, birth, sex):
    rid = parse_resident_id(number, today=TODAY)
    assert (rid.number, rid.region_code, rid.birth_date, rid.sex) == (
        number.upper(), region, birth, sex)


@pytest.mark.parametrize("number, fragment", [
    ("110105194912310021", "check digit"),           # wrong check digit
    ("11010519491231002", "18 characters"),          # too short
    ("1101051949123100AX", "17 digits"),
    (make_resident_id("370502", date(2030, 1, 1), 1, False), "future"),
    ("990105194912310025", "province"),              # no province 99 (check digit fixed below)
])
def test_parse_invalid(number, fragment):
    if number.startswith("99"):
        from lifeline.rules.ids import check_digit
        number = number[:17] + check_digit(number[:17])
    with pytest.raises(InvalidResidentId, match=fragment):
        parse_resident_id(number, today=TODAY)
    assert not is_valid_resident_id(number, today=TODAY)


def test_impossible_birth_date_refused():
    from lifeline.rules.ids import check_digit
    body = "37050220230230001"   # 30 February
    with pytest.raises(InvalidResidentId, match="not a real date"):
        parse_resident_id(body + check_digit(body), today=TODAY)


@pytest.mark.parametrize("seq, female, sex", [(0, True, "female"), (0, False, "male"),
                                              (499, True, "female"), (499, False, "male")])
def test_make_round_trip(seq, female, sex):
    number = make_resident_id("370502", date(1960, 2, 29), seq, female)
    rid = parse_resident_id(number, today=TODAY)
    assert rid.sex == sex and rid.birth_date == date(1960, 2, 29) and rid.region_code == "370502"
    assert rid.age_on(date(2026, 2, 28)) == 65 and rid.age_on(date(2026, 3, 1)) == 66


def test_make_refuses_bad_seq():
    with pytest.raises(ValueError):
        make_resident_id("370502", date(1960, 1, 1), 500, True)


def test_mask():
    assert mask_resident_id("11010519491231002X") == "110105********002X"


@pytest.mark.parametrize("code, level", [
    ("110000", "province"), ("370600", "prefecture"), ("370502", "county"),
    ("441900", "county"), ("370502001", "township"), ("370502001001", "village"),
])
def test_levels(code, level):
    assert validate_region_code(code) == code and level_of(code) == level


@pytest.mark.parametrize("code", ["99", "990101", "37050", "3705020010", "370502000",
                                  "370502001000", "370002", "abcdef", ""])
def test_invalid_region(code):
    with pytest.raises(InvalidRegionCode):
        validate_region_code(code)


@pytest.mark.parametrize("outer, inner, inside", [
    ("110000", "110101", True),
    ("370000", "370502001001", True),
    ("370500", "370502", True),
    ("370600", "370502", False),
    ("370502", "370502001", True),
    ("370502", "370502001001", True),
    ("370502001", "370502001001", True),
    ("370502001", "370502002001", False),
    ("370502001001", "370502001001", True),
    ("370502001001", "370502", False),
    ("370502", "370503", False),
    ("000000", "650102", True),
    ("*", "370502001001", True),
    ("441900", "441900003", True),
])
def test_region_contains(outer, inner, inside):
    assert region_contains(outer, inner) is inside


def test_county_of():
    assert county_of("370502001001") == "370502"
    assert is_county_code("370502") and not is_county_code("370500") and not is_county_code("990101")


def test_birth_date_today_is_valid_tomorrow_is_not():
    born_today = make_resident_id("370502", TODAY, 7, True)
    assert parse_resident_id(born_today, today=TODAY).birth_date == TODAY
    tomorrow = make_resident_id("370502", date(2026, 6, 2), 7, True)
    with pytest.raises(InvalidResidentId, match="future"):
        parse_resident_id(tomorrow, today=TODAY)


@pytest.mark.parametrize("digit17, sex", [("1", "male"), ("2", "female"), ("9", "male"),
                                          ("0", "female")])
def test_sex_from_the_17th_digit(digit17, sex):
    from lifeline.rules.ids import check_digit
    body = "3705021980050100" + digit17
    assert parse_resident_id(body + check_digit(body), today=TODAY).sex == sex


# --- the GB/T 2260 register ---------------------------------------------------------------
def test_register_holds_todays_counties_and_retired_ones():
    reg = region_register()
    assert reg.get("370502").name == "东营区" and reg.in_force("370502")
    assert reg.get("370602").name == "芝罘区" and reg.in_force("370602")
    assert reg.in_force("330113")  # 杭州市临平区, created 2021: the register is post-2021
    assert reg.known("330103") and not reg.in_force("330103")  # 下城区, merged away in 2021
    assert reg.known("110103") and not reg.in_force("110103")  # 崇文区, until 2009
    assert not reg.known("370599")
    in_force = sum(d.in_force for d in reg)
    assert 3_000 < in_force < 3_400 and len(reg) > 7_000


@pytest.mark.parametrize("prefix, valid", [
    ("370502", True),    # in force
    ("110103", True),    # 崇文区, retired 2009: an ID issued there is valid for life
    ("370599", False),   # well-formed, never published
    ("830000", True),    # Taiwan residents' residence permit
])
def test_id_region_prefix_must_be_in_the_register(prefix, valid):
    number = make_resident_id(prefix, date(1970, 3, 9), 7, female=False)
    assert is_valid_resident_id(number, today=TODAY) is valid
    if not valid:
        with pytest.raises(InvalidResidentId, match="not in the GB/T 2260 register"):
            parse_resident_id(number, today=TODAY)


@pytest.mark.parametrize("code, message", [
    ("370502101001", None),
    ("370502101", None),
    ("370599101", "not in the GB/T 2260 register"),
    ("330103001", r"\(下城区\) is no longer in force"),
    ("99x", "must be 6, 9 or 12 digits"),
])
def test_division_in_force(code, message):
    if message is None:
        assert validate_division_in_force(code) == code
    else:
        with pytest.raises(InvalidRegionCode, match=message):
            validate_division_in_force(code)


def test_known_county():
    assert is_known_county("370502") and is_known_county("330103")
    assert not is_known_county("370599") and not is_known_county("370500")


def test_operator_adds_and_retires_codes_without_a_release(tmp_path):
    (tmp_path / "2027.tsv").write_text(
        "# 2027 changes published by the Ministry\n"
        "370599\t示例新区\t1\t2027\t\n"
        "370502\t东营区\t0\t1982\t2027\n", encoding="utf-8")
    loaded = load_region_register(tmp_path)
    assert loaded.known("370599") and not loaded.in_force("370502")
    assert region_register().in_force("370502")  # loading alone changes nothing
    # A service's start: LIFELINE_REGIONS_DIR -> Settings.regions_dir -> install_rules.
    install_rules(Settings.from_env({"LIFELINE_REGIONS_DIR": str(tmp_path)}))
    try:
        assert is_known_county("370599") and validate_division_in_force("370599001")
        assert not region_register().in_force("370502")
    finally:
        install_region_register(None)
    assert region_register().in_force("370502") and not region_register().known("370599")


def test_bad_register_file_stops_loading_naming_file_and_line(tmp_path):
    (tmp_path / "2027.tsv").write_text("370599\t示例新区\tyes\t2027\t\n", encoding="utf-8")
    with pytest.raises(RegisterError, match=rf"{tmp_path / '2027.tsv'}:1: in_force must be 1 or 0"):
        load_region_register(tmp_path)


def test_region_register_without_an_install_is_the_shipped_one(monkeypatch, tmp_path):
    (tmp_path / "2027.tsv").write_text("370599\t示例新区\t1\t2027\t\n", encoding="utf-8")
    monkeypatch.setenv("LIFELINE_REGIONS_DIR", str(tmp_path))  # never read by the rules module
    install_region_register(None)
    assert region_register() is shipped_region_register()
    assert not region_register().known("370599")


@pytest.mark.parametrize("line, message", [
    ("370599\t示例新区\t1\t2027", "file.tsv:2: expected 5 tab-separated columns"),
    ("99x\t示例\t1\t\t", "file.tsv:2: code '99x' is not a six-digit"),
    ("370599\t示例\tyes\t\t", "file.tsv:2: in_force must be 1 or 0"),
    ("370599\t示例\t1\t27\t", "file.tsv:2: year '27'"),
    ("370599\t \t1\t\t", "file.tsv:2: name is empty"),
])
def test_bad_register_file_names_file_and_line(line, message):
    with pytest.raises(RegisterError, match=message):
        parse_register("# header\n" + line + "\n", "file.tsv")
