"""County social-assistance policy: effective-dated, loaded from YAML, validated field by field.

File layout (see ``config/policy.yaml``): ``counties`` is a list of *versions*; each entry is one
county's policy from ``effective_from`` until the next entry for the same county. A decision
uses the version in force on its decision date (:meth:`PolicyBook.policy_for`), so raising a
standard next January never changes last year's decisions.

A bad file is refused with :class:`PolicyError` whose message names the field, e.g.
``counties[0].standards.urban_fen: must be >= 0``; :class:`PolicyHolder` keeps the book that was
in force.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Iterable, Literal, Mapping

import jsonschema
import yaml

from lifeline.errors import ConfigurationError
from lifeline.rules.clocks import CLOCKS
from lifeline.rules.departments import DEPARTMENTS
from lifeline.settings import DEFAULT_POLICY_FILE, Settings
from lifeline.rules.regions import InvalidRegionCode, county_of, is_known_county


Area = Literal["urban", "rural"]


def ratio_text(value: Fraction) -> str:
    """A ratio as a plain decimal for display: Fraction(3, 2) -> "1.5"."""
    if value.denominator == 1:
        return str(value.numerator)
    d = Decimal(value.numerator) / Decimal(value.denominator)
    return format(d.normalize(), "f")


class PolicyError(ConfigurationError):
    """A policy file or lookup that cannot be used. ``field`` is the first offending field."""

    def __init__(self, message: str, *, field: str = "", errors: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.errors = tuple(errors) or (message,)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tier:
    """One row of the 分档/分类 table.

    A ``full`` class (A, 常补对象) is paid the whole standard per person. Banded tiers apply
    when the per-capita gap (standard − per-capita income) is at least ``min_gap_ratio`` of the
    standard; ``urban_fen``/``rural_fen`` are the per-person monthly amounts under
    ``payment_method: tiers``.
    """

    code: str
    label_zh: str = ""
    full: bool = False
    min_gap_ratio: Fraction = Fraction(0)
    urban_fen: int = 0
    rural_fen: int = 0

    def amount_for(self, area: Area) -> int:
        return self.urban_fen if area == "urban" else self.rural_fen


@dataclass(frozen=True)
class EmergencyCaps:
    township_cap_fen: int          # township (乡镇) may approve up to this, inclusive
    county_cap_fen: int            # county (县民政局) approves above, up to this
    post_approval_working_days: int = 5


@dataclass(frozen=True)
class ReviewPolicy:
    """Dynamic management (seed 002 §7 动态管理, §七 延退)."""

    stable_months: int = 12
    irregular_months: int = 6
    pensioner_months: int = 6
    pensioner_upper_multiple: Fraction = Fraction(2)
    graduate_employed_min_months: int = 6
    graduate_employed_max_months: int = 12
    graduate_employed_default_months: int = 12
    public_employment_months: int = 24
    disabled_employment_months: int = 36
    epidemic_min_months: int = 3
    epidemic_max_months: int = 6
    epidemic_default_months: int = 3


@dataclass(frozen=True)
class CarePolicy:
    """特困 support (issue 17): how often the township visits each dispersed-support person."""

    visit_cycle_months: int = 1


@dataclass(frozen=True)
class ServiceLimits:
    """Assistance in kind and in services (issue 17, 资金+实物+服务): what one order may cost and
    what a case's orders may cost together in one calendar year (the orders' periods), in fen."""

    per_order_fen: int = 300000          # 3,000 yuan an order
    per_case_year_fen: int = 1200000     # 12,000 yuan a case a year


@dataclass(frozen=True)
class EmploymentCostDeduction:
    """就业成本抵扣 (issue 17): what is taken off an earning member's earned income before the
    income test. ``fixed``: ``fixed_fen`` a month; ``share``: ``share`` of the earned income,
    rounded up to whole fen (in the household's favour), at most ``max_fen`` when set. Never more
    than the member's net earnings (services.verification.assessment)."""

    kind: Literal["fixed", "share"]
    fixed_fen: int = 0
    share: Fraction = Fraction(0)
    max_fen: int | None = None

    def for_earnings(self, earned_fen: int) -> int:
        """The deduction for one member earning ``earned_fen`` a month (gross)."""
        if self.kind == "fixed":
            amount = self.fixed_fen
        else:
            amount = math.ceil(self.share * earned_fen)
            if self.max_fen is not None:
                amount = min(amount, self.max_fen)
        return max(0, min(amount, earned_fen))


@dataclass(frozen=True)
class WorkIncentives:
    """Work incentives in the income test (seed 002 就业成本抵扣、收入豁免): the deduction per
    earning member (None: none) and the months after a member's work began during which their
    new earnings are left out (0: none)."""

    deduction: EmploymentCostDeduction | None = None
    exemption_months: int = 0


@dataclass(frozen=True)
class CountyPolicy:
    county_code: str
    effective_from: date
    name: str
    urban_standard_fen: int
    rural_standard_fen: int
    tekun_standard_fen: int
    low_income_multiplier: Fraction
    asset_limit_fen: int                     # per counted member (per capita), in fen
    payment_method: Literal["gap", "tiers"]
    tiers: tuple[Tier, ...]
    min_top_up_urban_fen: int
    min_top_up_rural_fen: int
    emergency: EmergencyCaps
    mandatory_departments: tuple[str, ...]
    expenditure_departments: tuple[str, ...]
    temporary_relief_months: int = 3
    # 特困: minors are covered while younger than this (seed 002: from 16 up to 18).
    tekun_minor_age_limit: int = 18
    work_incentives: WorkIncentives = field(default_factory=WorkIncentives)
    obligor_warning_multiple: Fraction = Fraction(2)
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    services: ServiceLimits = field(default_factory=ServiceLimits)
    care: CarePolicy = field(default_factory=CarePolicy)
    # The procedure's periods where the county sets its own (clock name → days); every other
    # clock keeps its default in lifeline.rules.clocks.CLOCKS.
    clock_days: tuple[tuple[str, int], ...] = ()
    source: str = ""

    # convenience accessors --------------------------------------------------------------
    def departments_for(self, assistance_type: str) -> tuple[str, ...]:
        """Departments a check must hear from: expenditure-type relief also needs the
        departments that know the rigid medical and education costs."""
        if assistance_type != "linshi_zhichu":
            return self.mandatory_departments
        extra = tuple(d for d in self.expenditure_departments if d not in self.mandatory_departments)
        return (*self.mandatory_departments, *extra)

    @property
    def emergency_township_cap_fen(self) -> int:
        return self.emergency.township_cap_fen

    @property
    def emergency_county_cap_fen(self) -> int:
        return self.emergency.county_cap_fen

    def standard_for(self, area: Area) -> int:
        if area == "urban":
            return self.urban_standard_fen
        if area == "rural":
            return self.rural_standard_fen
        raise ValueError(f"area must be 'urban' or 'rural', got {area!r}")

    def min_top_up_for(self, area: Area) -> int:
        return self.min_top_up_urban_fen if area == "urban" else self.min_top_up_rural_fen

    @property
    def full_tier(self) -> Tier | None:
        return next((t for t in self.tiers if t.full), None)

    @property
    def banded_tiers(self) -> tuple[Tier, ...]:
        """Banded tiers, largest gap first (validated so)."""
        return tuple(t for t in self.tiers if not t.full)

    def tier_for_gap(self, gap_per_capita_fen: int, standard_fen: int) -> Tier:
        """The first banded tier whose lower edge the gap reaches (edges are inclusive)."""
        for tier in self.banded_tiers:
            if Fraction(gap_per_capita_fen) >= tier.min_gap_ratio * standard_fen:
                return tier
        return self.banded_tiers[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "county_code": self.county_code,
            "effective_from": self.effective_from.isoformat(),
            "name": self.name,
            "urban_standard_fen": self.urban_standard_fen,
            "rural_standard_fen": self.rural_standard_fen,
            "tekun_standard_fen": self.tekun_standard_fen,
            "low_income_multiplier": ratio_text(self.low_income_multiplier),
            "asset_limit_fen": self.asset_limit_fen,
            "payment_method": self.payment_method,
            "min_top_up_urban_fen": self.min_top_up_urban_fen,
            "min_top_up_rural_fen": self.min_top_up_rural_fen,
            "emergency_township_cap_fen": self.emergency.township_cap_fen,
            "emergency_county_cap_fen": self.emergency.county_cap_fen,
            "mandatory_departments": list(self.mandatory_departments),
        }


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------
_FEN = {"type": "integer", "minimum": 0}
_MONTHS = {"type": "integer", "minimum": 0, "maximum": 120}
_RATIO = {"type": ["string", "number"]}
_DEPT_LIST = {"type": "array", "items": {"enum": sorted(DEPARTMENTS)}, "uniqueItems": True}

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "counties"],
    "properties": {
        "schema_version": {"const": 1},
        "description": {"type": "string"},
        "counties": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["county_code", "effective_from", "standards",
                             "low_income_multiplier", "asset_limits", "tiers", "min_top_up",
                             "emergency", "mandatory_departments"],
                "properties": {
                    "county_code": {"type": "string", "pattern": r"^\d{6}$"},
                    "name": {"type": "string"},
                    "source": {"type": "string"},
                    "effective_from": {"type": "string"},
                    "standards": {
                        "type": "object", "additionalProperties": False,
                        "required": ["urban_fen", "rural_fen", "tekun_fen"],
                        "properties": {"urban_fen": _FEN, "rural_fen": _FEN, "tekun_fen": _FEN},
                    },
                    "low_income_multiplier": _RATIO,
                    "asset_limits": {
                        "type": "object", "additionalProperties": False,
                        "required": ["per_capita_fen"],
                        "properties": {"per_capita_fen": _FEN},
                    },
                    "payment_method": {"enum": ["gap", "tiers"]},
                    "tiers": {
                        "type": "array",
                        "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["code"],
                            "properties": {
                                "code": {"type": "string", "pattern": r"^[A-Z][A-Z0-9]{0,3}$"},
                                "label_zh": {"type": "string"},
                                "full": {"type": "boolean"},
                                "min_gap_ratio": _RATIO,
                                "urban_fen": _FEN,
                                "rural_fen": _FEN,
                            },
                        },
                    },
                    "min_top_up": {
                        "type": "object", "additionalProperties": False,
                        "required": ["urban_fen", "rural_fen"],
                        "properties": {"urban_fen": _FEN, "rural_fen": _FEN},
                    },
                    "emergency": {
                        "type": "object", "additionalProperties": False,
                        "required": ["township_cap_fen", "county_cap_fen"],
                        "properties": {
                            "township_cap_fen": _FEN,
                            "county_cap_fen": _FEN,
                            "post_approval_working_days": {"type": "integer", "minimum": 1,
                                                           "maximum": 60},
                        },
                    },
                    "temporary_relief_months": {"type": "integer", "minimum": 1, "maximum": 12},
                    "clock_days": {
                        "type": "object", "additionalProperties": False,
                        "properties": {name: {"type": "integer", "minimum": 1, "maximum": 120}
                                       for name in CLOCKS},
                    },
                    "obligor_warning_multiple": _RATIO,
                    "tekun_minor_age_limit": {"type": "integer", "minimum": 16, "maximum": 18},
                    "work_incentives": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "employment_cost_deduction": {
                                "type": "object", "additionalProperties": False,
                                "required": ["kind"],
                                "properties": {"kind": {"enum": ["fixed", "share"]},
                                               "fixed_fen": _FEN, "share": _RATIO, "max_fen": _FEN},
                            },
                            "income_exemption_months": {"type": "integer", "minimum": 0,
                                                        "maximum": 12},
                        },
                    },
                    "mandatory_departments": {**_DEPT_LIST, "minItems": 1},
                    "expenditure_departments": _DEPT_LIST,
                    "review": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "stable_months": {"type": "integer", "minimum": 1, "maximum": 24},
                            "irregular_months": {"type": "integer", "minimum": 1, "maximum": 24},
                        },
                    },
                    "care": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "visit_cycle_months": {"type": "integer", "minimum": 1, "maximum": 12},
                        },
                    },
                    "services": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"per_order_fen": {"type": "integer", "minimum": 1},
                                       "per_case_year_fen": {"type": "integer", "minimum": 1}},
                    },
                    "grace_periods": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "pensioner_months": _MONTHS,
                            "pensioner_upper_multiple": _RATIO,
                            "graduate_employed_min_months": _MONTHS,
                            "graduate_employed_max_months": _MONTHS,
                            "graduate_employed_default_months": _MONTHS,
                            "public_employment_months": _MONTHS,
                            "disabled_employment_months": _MONTHS,
                            "epidemic_min_months": _MONTHS,
                            "epidemic_max_months": _MONTHS,
                            "epidemic_default_months": _MONTHS,
                        },
                    },
                },
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(POLICY_SCHEMA)


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Our own wording: the field path first, then what is wrong with it."""
    where = list(error.absolute_path)
    v, expected = error.validator, error.validator_value
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return _path(where + [extra[0]]), "unknown field"
    if v == "required":
        missing = [k for k in expected if k not in error.instance]
        return _path(where + [missing[0]]), "required field is missing"
    if v == "minimum":
        return _path(where), f"must be >= {expected}"
    if v == "maximum":
        return _path(where), f"must be <= {expected}"
    if v == "type":
        kinds = expected if isinstance(expected, str) else " or ".join(expected)
        return _path(where), f"must be of type {kinds}, got {error.instance!r}"
    if v == "enum":
        return _path(where), f"must be one of {', '.join(map(str, expected))}; got {error.instance!r}"
    if v == "const":
        return _path(where), f"must be {expected!r}"
    if v == "pattern":
        return _path(where), f"must match {expected} (got {error.instance!r})"
    if v == "uniqueItems":
        return _path(where), "must not repeat items"
    if v == "minItems":
        return _path(where), f"must have at least {expected} item(s)"
    return _path(where), error.message


def _normalise_dates(value: Any) -> Any:
    """PyYAML turns 2026-01-01 into a date; the schema sees ISO strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _normalise_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_dates(v) for v in value]
    return value


def _ratio(value: Any, where: str, errors: list[str], lo: Fraction, hi: Fraction) -> Fraction:
    """Exact ratios (never floats): ``1.5``, ``"1.5"`` and ``"3/2"`` all give Fraction(3, 2)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        text = str(value).strip()
        result = Fraction(text) if "/" in text else Fraction(Decimal(text))
    except (ValueError, InvalidOperation, ZeroDivisionError):
        errors.append(f"{where}: must be a decimal number such as \"1.5\"")
        return lo
    if not lo <= result <= hi:
        errors.append(f"{where}: must be between {lo} and {hi}")
    return result


def _tiers(at: str, raw_tiers: list[Mapping[str, Any]], method: str, urban: int, rural: int,
           errors: list[str]) -> tuple[list[Tier], list[Tier]]:
    """The full (全额) class, if any, and the banded tiers in table order; errors appended."""
    tiers: list[Tier] = []
    for j, t in enumerate(raw_tiers):
        where = f"{at}.tiers[{j}]"
        full = bool(t.get("full", False))
        if full or "min_gap_ratio" not in t:
            ratio = Fraction(0)
            if not full:
                errors.append(f"{where}.min_gap_ratio: required field is missing")
        else:
            ratio = _ratio(t["min_gap_ratio"], f"{where}.min_gap_ratio", errors,
                           Fraction(0), Fraction(1))
        tier = Tier(code=t["code"], label_zh=t.get("label_zh", ""), full=full,
                    min_gap_ratio=ratio, urban_fen=t.get("urban_fen", 0),
                    rural_fen=t.get("rural_fen", 0))
        if not full and method == "tiers":
            for key, limit in (("urban_fen", urban), ("rural_fen", rural)):
                if key not in t:
                    errors.append(f"{where}.{key}: required field is missing "
                                  f"(payment_method is tiers)")
                elif t[key] > limit:
                    errors.append(f"{where}.{key}: must be <= the {key[:5]} standard {limit}")
        tiers.append(tier)
    codes = [t.code for t in tiers]
    if len(set(codes)) != len(codes):
        errors.append(f"{at}.tiers: tier codes must be unique")
    banded = [t for t in tiers if not t.full]
    if sum(t.full for t in tiers) > 1:
        errors.append(f"{at}.tiers: at most one full (全额) class")
    if len(banded) < 3:
        errors.append(f"{at}.tiers: at least three banded tiers are required (原则上不少于三档)")
    else:
        for j in range(1, len(banded)):
            if banded[j].min_gap_ratio >= banded[j - 1].min_gap_ratio:
                errors.append(f"{at}.tiers: min_gap_ratio must strictly decrease down the table "
                              f"({banded[j].code} after {banded[j - 1].code})")
            for area in ("urban", "rural"):
                if method == "tiers" and banded[j].amount_for(area) > banded[j - 1].amount_for(area):
                    errors.append(f"{at}.tiers: {area}_fen must not increase down the table "
                                  f"({banded[j].code} after {banded[j - 1].code})")
        if banded[-1].min_gap_ratio != 0:
            errors.append(f"{at}.tiers: the last banded tier must have min_gap_ratio 0")
    return [t for t in tiers if t.full], banded


def _review(at: str, raw: Mapping[str, Any], errors: list[str]) -> ReviewPolicy:
    """Review cycles and grace periods; what the file leaves out keeps ReviewPolicy's default."""
    given = {**raw.get("review", {}), **raw.get("grace_periods", {})}
    given["pensioner_upper_multiple"] = _ratio(
        given.get("pensioner_upper_multiple", "2"), f"{at}.grace_periods.pensioner_upper_multiple",
        errors, Fraction(1), Fraction(5))
    review = ReviewPolicy(**given)
    for name in ("graduate_employed", "epidemic"):
        lo = getattr(review, f"{name}_min_months")
        hi = getattr(review, f"{name}_max_months")
        dflt = getattr(review, f"{name}_default_months")
        if not lo <= dflt <= hi:
            errors.append(f"{at}.grace_periods.{name}_default_months: must be between "
                          f"{name}_min_months ({lo}) and {name}_max_months ({hi})")
    return review


def _work_incentives(at: str, raw: Mapping[str, Any], errors: list[str]) -> WorkIncentives:
    """就业成本抵扣、收入豁免; a field the deduction's kind does not use is refused, so a county
    never believes a figure applies that does not."""
    where = f"{at}.work_incentives.employment_cost_deduction"
    ded = raw.get("employment_cost_deduction")
    deduction = None
    if ded is not None:
        kind = ded["kind"]
        unused = ("share", "max_fen") if kind == "fixed" else ("fixed_fen",)
        for key in unused:
            if key in ded:
                errors.append(f"{where}.{key}: not used by kind {kind}")
        if kind == "fixed":
            if "fixed_fen" not in ded:
                errors.append(f"{where}.fixed_fen: required field is missing (kind is fixed)")
            elif ded["fixed_fen"] == 0:
                errors.append(f"{where}.fixed_fen: must be > 0 (leave the deduction out for none)")
            deduction = EmploymentCostDeduction("fixed", fixed_fen=ded.get("fixed_fen", 0))
        else:
            share = Fraction(0)
            if "share" not in ded:
                errors.append(f"{where}.share: required field is missing (kind is share)")
            else:
                share = _ratio(ded["share"], f"{where}.share", errors, Fraction(0), Fraction(1))
                if share == 0:
                    errors.append(f"{where}.share: must be > 0 (leave the deduction out for none)")
            if ded.get("max_fen") == 0:
                errors.append(f"{where}.max_fen: must be > 0 (leave it out for no cap)")
            deduction = EmploymentCostDeduction("share", share=share, max_fen=ded.get("max_fen"))
    return WorkIncentives(deduction, raw.get("income_exemption_months", 0))


def _build_version(i: int, raw: Mapping[str, Any], errors: list[str]) -> CountyPolicy | None:
    at = f"counties[{i}]"
    start = len(errors)
    code = raw["county_code"]
    if not is_known_county(code):
        errors.append(f"{at}.county_code: unknown county code {code!r} "
                      f"(not a county-level code in the GB/T 2260 register)")
    try:
        effective = date.fromisoformat(raw["effective_from"])
    except ValueError:
        errors.append(f"{at}.effective_from: must be a date YYYY-MM-DD")
        effective = date.min

    std = raw["standards"]
    urban, rural = std["urban_fen"], std["rural_fen"]
    for key in ("urban_fen", "rural_fen"):
        if std[key] == 0:
            errors.append(f"{at}.standards.{key}: must be > 0")
    multiplier = _ratio(raw["low_income_multiplier"], f"{at}.low_income_multiplier", errors,
                        Fraction(1), Fraction(3))

    method = raw.get("payment_method", "gap")
    full_tiers, banded = _tiers(at, raw["tiers"], method, urban, rural, errors)

    top = raw["min_top_up"]
    for key, limit in (("urban_fen", urban), ("rural_fen", rural)):
        if top[key] > limit:
            errors.append(f"{at}.min_top_up.{key}: must be <= the standard {limit}")
    em = raw["emergency"]
    if em["township_cap_fen"] > em["county_cap_fen"]:
        errors.append(f"{at}.emergency.township_cap_fen: must be <= county_cap_fen")

    review = _review(at, raw, errors)
    services = ServiceLimits(**raw.get("services", {}))
    if services.per_order_fen > services.per_case_year_fen:
        errors.append(f"{at}.services.per_order_fen: must be <= per_case_year_fen")
    obligor = _ratio(raw.get("obligor_warning_multiple", "2"), f"{at}.obligor_warning_multiple",
                     errors, Fraction(1), Fraction(10))
    incentives = _work_incentives(at, raw.get("work_incentives", {}), errors)
    if len(errors) > start:
        return None
    return CountyPolicy(
        county_code=code,
        effective_from=effective,
        name=raw.get("name", ""),
        urban_standard_fen=urban,
        rural_standard_fen=rural,
        tekun_standard_fen=std["tekun_fen"],
        low_income_multiplier=multiplier,
        asset_limit_fen=raw["asset_limits"]["per_capita_fen"],
        payment_method=method,
        tiers=(*full_tiers, *banded),
        min_top_up_urban_fen=top["urban_fen"],
        min_top_up_rural_fen=top["rural_fen"],
        emergency=EmergencyCaps(em["township_cap_fen"], em["county_cap_fen"],
                                em.get("post_approval_working_days", 5)),
        mandatory_departments=tuple(raw["mandatory_departments"]),
        expenditure_departments=tuple(raw.get("expenditure_departments",
                                              ["medical_insurance", "education"])),
        temporary_relief_months=raw.get("temporary_relief_months", 3),
        obligor_warning_multiple=obligor,
        tekun_minor_age_limit=raw.get("tekun_minor_age_limit", 18),
        work_incentives=incentives,
        review=review,
        services=services,
        care=CarePolicy(**raw.get("care", {})),
        clock_days=tuple(sorted(raw.get("clock_days", {}).items())),
        source=raw.get("source", ""),
    )


# --------------------------------------------------------------------------------------------
# Book and holder
# --------------------------------------------------------------------------------------------
class PolicyBook:
    """All versions of all counties' policies; immutable once built."""

    def __init__(self, versions: Iterable[CountyPolicy], origin: str = "") -> None:
        by_county: dict[str, list[CountyPolicy]] = {}
        for v in versions:
            by_county.setdefault(v.county_code, []).append(v)
        self._by_county = {k: tuple(sorted(vs, key=lambda p: p.effective_from))
                           for k, vs in by_county.items()}
        self.origin = origin

    @classmethod
    def from_mapping(cls, data: Any, origin: str = "") -> "PolicyBook":
        if not isinstance(data, dict):
            raise PolicyError("(file): must be a mapping with schema_version and counties",
                              field="(file)")
        data = _normalise_dates(data)
        errors: list[str] = []
        for err in sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
            where, what = _describe(err)
            errors.append(f"{where}: {what}")
        versions: list[CountyPolicy] = []
        if not errors:
            seen: dict[tuple[str, date], int] = {}
            for i, raw in enumerate(data["counties"]):
                built = _build_version(i, raw, errors)
                if built is None:
                    continue
                key = (built.county_code, built.effective_from)
                if key in seen:
                    errors.append(f"counties[{i}].effective_from: duplicates counties[{seen[key]}] "
                                  f"for county {built.county_code}")
                seen[key] = i
                versions.append(built)
        if errors:
            errors = list(dict.fromkeys(errors))  # one line per problem, however often met
            first_field = errors[0].split(":", 1)[0]
            prefix = f"{origin}: " if origin else ""
            raise PolicyError(prefix + "; ".join(errors), field=first_field, errors=errors)
        return cls(versions, origin=origin)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "PolicyBook":
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read policy file: {exc}", field="(file)") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML: {exc}", field="(file)") from exc
        return cls.from_mapping(data, origin=str(path))

    @property
    def counties(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_county))

    def versions(self, county_code: str) -> tuple[CountyPolicy, ...]:
        return self._by_county.get(county_code, ())

    def policy_for(self, county_code: str, on: date) -> CountyPolicy:
        """The version in force on ``on`` (a 9/12-digit code is reduced to its county)."""
        try:
            county = county_of(county_code)
        except InvalidRegionCode as exc:
            raise PolicyError(f"county_code: {exc}", field="county_code") from exc
        versions = self._by_county.get(county)
        if not versions:
            raise PolicyError(f"county_code: no policy configured for county {county}",
                              field="county_code")
        in_force = [v for v in versions if v.effective_from <= on]
        if not in_force:
            raise PolicyError(f"effective_from: no policy for county {county} in force on "
                              f"{on.isoformat()} (first version {versions[0].effective_from})",
                              field="effective_from")
        return in_force[-1]


class PolicyHolder:
    """Keeps the book in force; a failed reload leaves it untouched and re-raises."""

    def __init__(self, book: PolicyBook) -> None:
        self._book = book
        self._lock = threading.Lock()

    @property
    def book(self) -> PolicyBook:
        return self._book

    def policy_for(self, county_code: str, on: date) -> CountyPolicy:
        return self._book.policy_for(county_code, on)

    def reload(self, path: str | os.PathLike[str]) -> PolicyBook:
        book = PolicyBook.load(path)  # raises PolicyError before anything is swapped
        with self._lock:
            self._book = book
        return book

    def replace(self, data: Mapping[str, Any]) -> PolicyBook:
        book = PolicyBook.from_mapping(dict(data))
        with self._lock:
            self._book = book
        return book


def default_policy_book(settings: Settings) -> PolicyBook:
    """The book in the file the settings name (``LIFELINE_POLICY_FILE``)."""
    return PolicyBook.load(settings.policy_file)


def shipped_policy_book() -> PolicyBook:
    """The book shipped in config/policy.yaml (tests and tools that configure nothing)."""
    return PolicyBook.load(DEFAULT_POLICY_FILE)
