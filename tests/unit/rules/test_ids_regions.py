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
    county_of,
    is_county_code,
    level_of,
    region_contains,
    validate_region_code,
)

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
