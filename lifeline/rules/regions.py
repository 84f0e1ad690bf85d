"""GB/T 2260 administrative division codes and their township/village extensions.

A code is 6 digits (province ``PP0000``, prefecture ``PPCC00``, county ``PPCCXX``), 9 digits
(township, the county code + 3) or 12 digits (village, the township code + 3). Region scoping
("an office sees its own division only", SPEC §6) is prefix containment on these codes.
"""
from __future__ import annotations

import re

# Province-level prefixes of GB/T 2260 (incl. Taiwan 71, Hong Kong 81, Macao 82).
PROVINCES: dict[str, str] = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
    "21": "辽宁省", "22": "吉林省", "23": "黑龙江省",
    "31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省", "35": "福建省",
    "36": "江西省", "37": "山东省",
    "41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省", "54": "西藏自治区",
    "61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省", "81": "香港特别行政区", "82": "澳门特别行政区",
}

# Prefecture-level cities without counties: their own code is the county-level unit and their
# townships hang directly below it (e.g. 东莞 441900003).
COUNTYLESS_PREFECTURES = frozenset({"441900", "442000", "460400", "620200"})

# Counties named in the seed documents (display only; any well-formed county code is accepted).
KNOWN_COUNTIES: dict[str, str] = {
    "370502": "山东省东营市东营区",      # seed 003
    "370602": "山东省烟台市芝罘区",      # seed 001
    "150204": "内蒙古自治区包头市青山区",  # seed 004
    "150223": "内蒙古自治区包头市达尔罕茂明安联合旗",  # seed 004 (达茂旗)
}

WHOLE_COUNTRY = ("000000", "*")

_DIGITS = re.compile(r"^\d+$")


class InvalidRegionCode(ValueError):
    """A region code that is not a well-formed GB/T 2260 (extended) code."""


def validate_region_code(code: str) -> str:
    """Return ``code`` if it is a 6-, 9- or 12-digit code with a real province prefix."""
    if not isinstance(code, str):
        raise InvalidRegionCode(f"region code must be a string, got {type(code).__name__}")
    if not _DIGITS.match(code) or len(code) not in (6, 9, 12):
        raise InvalidRegionCode(f"region code {code!r} must be 6, 9 or 12 digits")
    if code[:2] not in PROVINCES:
        raise InvalidRegionCode(f"region code {code!r} has no such province prefix {code[:2]!r}")
    six = code[:6]
    if six[2:4] == "00" and six[4:6] != "00":
        # PP00XX does not exist: a county always sits under a prefecture-level code.
        raise InvalidRegionCode(f"region code {code!r}: county part without a prefecture")
    if len(code) == 12 and code[9:] == "000":
        raise InvalidRegionCode(f"region code {code!r}: village part 000 is not a village")
    if len(code) >= 9 and code[6:9] == "000":
        raise InvalidRegionCode(f"region code {code!r}: township part 000 is not a township")
    return code


def validate_scope(code: str) -> str:
    """Like :func:`validate_region_code` but also accepts the whole country (000000 or *)."""
    if code in WHOLE_COUNTRY:
        return code
    return validate_region_code(code)


def level_of(code: str) -> str:
    """province / prefecture / county / township / village (or country)."""
    if code in WHOLE_COUNTRY:
        return "country"
    validate_region_code(code)
    if len(code) == 12:
        return "village"
    if len(code) == 9:
        return "township"
    if code[2:] == "0000":
        return "province"
    if code[4:] == "00" and code not in COUNTYLESS_PREFECTURES:
        return "prefecture"
    return "county"


def is_county_code(code: str) -> bool:
    """True for a well-formed county-level six-digit code (the unit that sets 低保 standards)."""
    try:
        return len(code) == 6 and level_of(code) == "county"
    except InvalidRegionCode:
        return False


def county_of(code: str) -> str:
    """The six-digit county (or higher) code a region code belongs to."""
    validate_region_code(code)
    return code[:6]


def _prefix(code: str) -> str:
    level = level_of(code)
    if level == "country":
        return ""
    if level == "province":
        return code[:2]
    if level == "prefecture":
        return code[:4]
    return code  # county, township, village: the whole code is the prefix


def region_contains(outer: str, inner: str) -> bool:
    """Is division ``inner`` inside (or equal to) division ``outer``?

    ``"000000"`` or ``"*"`` as ``outer`` is the whole country. Both codes are validated.
    """
    validate_scope(outer)
    if inner in WHOLE_COUNTRY:
        return outer in WHOLE_COUNTRY
    validate_region_code(inner)
    return inner.startswith(_prefix(outer))
