"""GB/T 2260 administrative division codes and their township/village extensions.

A code is 6 digits (province ``PP0000``, prefecture ``PPCC00``, county ``PPCCXX``), 9 digits
(township, the county code + 3) or 12 digits (village, the township code + 3). Region scoping
("an office sees its own division only", SPEC §6) is prefix containment on these codes.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lifeline.errors import ConfigurationError
from lifeline.rules.installed import Installed

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
    # Not a GB/T 2260 province: the prefix of Taiwan residents' residence permits (台湾居民
    # 居住证, 830000), numbered like resident IDs; 810000/820000 serve Hong Kong and Macao.
    "83": "台湾居民居住证",
}

# Prefecture-level cities without counties: their own code is the county-level unit and their
# townships hang directly below it (e.g. 东莞 441900003).
COUNTYLESS_PREFECTURES = frozenset({"441900", "442000", "460400", "620200"})

# Counties named in the seed documents (display names; the register below decides what exists).
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


def scope_prefix(code: str) -> str:
    """The prefix every code inside ``code`` starts with (province 37, prefecture 3705, a county
    or smaller its whole code; the whole country the empty string)."""
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
    return inner.startswith(scope_prefix(outer))


# --- the register: which codes exist -----------------------------------------------------
# Well-formedness (above) says what a code could be; the register says which codes the
# Ministry of Civil Affairs has published. Province-, prefecture- and county-level codes only:
# no national register of township and village codes is published in machine-readable form.
REGISTER_FILE = Path(__file__).with_name("data") / "gb2260.tsv"
DEFAULT_REGIONS_DIR = Path(__file__).resolve().parents[2] / "config" / "regions"


class RegisterError(ConfigurationError):
    """A register file that cannot be read; names the file and line."""


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    in_force: bool
    from_year: int | None  # None: before 1980 or not known
    to_year: int | None  # None: in force, or the year is not known


def _year(text: str, where: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 1949 <= int(text) <= 2100:
        raise RegisterError(f"{where}: year {text!r} must be empty or between 1949 and 2100")
    return int(text)


def parse_register(text: str, source: str) -> dict[str, Division]:
    """Rows of ``code, name, in_force (1/0), from_year, to_year``, tab-separated; ``#`` comments."""
    rows: dict[str, Division] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        cells = line.split("\t")
        if len(cells) != 5:
            raise RegisterError(f"{where}: expected 5 tab-separated columns, got {len(cells)}")
        code, name, in_force, start, end = cells
        if not (len(code) == 6 and code.isdigit() and code[:2] in PROVINCES):
            raise RegisterError(f"{where}: code {code!r} is not a six-digit GB/T 2260 code")
        if not name.strip():
            raise RegisterError(f"{where}: name is empty")
        if in_force not in ("0", "1"):
            raise RegisterError(f"{where}: in_force must be 1 or 0, got {in_force!r}")
        rows[code] = Division(code, name.strip(), in_force == "1", _year(start, where), _year(end, where))
    return rows


class RegionRegister:
    def __init__(self, divisions: dict[str, Division]):
        self._divisions = dict(divisions)

    def __len__(self) -> int:
        return len(self._divisions)

    def __iter__(self) -> Iterator[Division]:
        return iter(self._divisions.values())

    def get(self, code: str) -> Division | None:
        return self._divisions.get(code[:6])

    def known(self, code: str) -> bool:
        """Was the six-digit code ever published (an ID issued there stays valid for life)?"""
        return self.get(code) is not None

    def in_force(self, code: str) -> bool:
        division = self.get(code)
        return division is not None and division.in_force


def load_region_register(directory: str | os.PathLike[str]) -> RegionRegister:
    """The packaged register, then every ``*.tsv`` in ``directory`` (skipped when it does not
    exist) in name order: an operator adds a new county, or retires one, without a release; a
    later row for a code replaces the earlier one. A bad row raises :class:`RegisterError`
    naming the file and line."""
    divisions = parse_register(REGISTER_FILE.read_text(encoding="utf-8"), str(REGISTER_FILE))
    directory = Path(directory)
    if directory.is_dir():
        for path in sorted(directory.glob("*.tsv")):
            divisions.update(parse_register(path.read_text(encoding="utf-8"), str(path)))
    return RegionRegister(divisions)


_REGISTER: Installed[RegionRegister] = Installed(lambda: load_region_register(DEFAULT_REGIONS_DIR))
# A service's composition root installs the operator's register at start
# (lifeline.rules.setup.install_rules); before that, the packaged register plus the rows
# shipped in the repository's config/regions.
install_region_register = _REGISTER.install
shipped_region_register = _REGISTER.shipped
region_register = _REGISTER.get



def is_known_county(code: str) -> bool:
    """A county-level code that the register knows (in force now or in the past)."""
    return is_county_code(code) and region_register().known(code)


def validate_division_in_force(code: str) -> str:
    """``code`` (6, 9 or 12 digits) if well-formed and its county is in force in the register."""
    validate_region_code(code)
    division = region_register().get(code)
    if division is None:
        raise InvalidRegionCode(f"region code {code!r}: county {code[:6]} is not in the GB/T 2260 register")
    if not division.in_force:
        raise InvalidRegionCode(
            f"region code {code!r}: county {code[:6]} ({division.name}) is no longer in force")
    return code
