"""Dynamic monitoring's risk rules (低收入人口动态监测预警) as configuration:
``config/risk-rules.yaml`` (``LIFELINE_RISK_RULES_FILE``), read by intake at start.

Each rule names the partner records it fires on (`record_kind`: a LifeEventReported kind, or `death`)
and its conditions (services/intake/discovery.py:RiskRule says what each means). A file that
cannot be used raises :class:`RiskRulesError` (a :class:`~lifeline.errors.ConfigurationError`,
so ``lifeline serve intake`` exits 2) naming the file and the line of each problem, one a line::

    config/risk-rules.yaml:14: rules[1].amount_above_fen: must be an integer >= 0, got '5万'
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import jsonschema
import yaml

from lifeline.errors import ConfigurationError
from lifeline.yamlfile import (
    YamlProblem, field_path, node_line, problem_lines, problems, read_yaml, unknown_or_missing,
)
from lifeline.rules.vocabulary import ASSISTANCE_TYPES, LIFE_EVENT_KINDS, URGENCIES
from lifeline.settings import DEFAULT_RISK_RULES_FILE
from services.intake.discovery import DEATH, RiskRule, RiskRules

RULE_KINDS = (*LIFE_EVENT_KINDS, DEATH)


class RiskRulesError(ConfigurationError):
    """A risk-rules file that cannot be used; ``errors`` holds ``(line, text)`` per problem."""

    def __init__(self, message: str, *, errors: Iterable[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


_BENEFITS = {"type": "array", "items": {"enum": list(ASSISTANCE_TYPES)}, "uniqueItems": True}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "rules"],
    "properties": {
        "schema_version": {"const": 1},
        "description": {"type": "string"},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["rule_id", "label_zh", "record_kind"],
                "properties": {
                    "rule_id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                    "label_zh": {"type": "string", "minLength": 1, "maxLength": 80},
                    "record_kind": {"enum": list(RULE_KINDS)},
                    "urgency": {"enum": list(URGENCIES)},
                    "amount_above_fen": {"type": "integer", "minimum": 0},
                    "within_months": {"type": "integer", "minimum": 1, "maximum": 60},
                    "only_earner": {"type": "boolean"},
                    "covered_by": _BENEFITS,
                    "unless_covered_by": _BENEFITS,
                },
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _describe(error: jsonschema.ValidationError) -> tuple[list[Any], str, str]:
    """(node path to point at, field path to name, what is wrong), in the operator's words."""
    found = unknown_or_missing(error)
    if found is not None:
        return found
    where = list(error.absolute_path)
    v, expected, instance = error.validator, error.validator_value, error.instance
    if v == "enum":
        return where, field_path(where), f"must be one of {', '.join(map(str, expected))}; got {instance!r}"
    if v == "type":
        what = {"integer": "an integer (fen, no unit or separators)", "boolean": "true or false"}
        return where, field_path(where), f"must be {what.get(expected, expected)}, got {instance!r}"
    if v == "pattern":
        return where, field_path(where), f"must be lower case letters, digits and _ (a-z first); got {instance!r}"
    if v in ("minimum", "maximum"):
        return where, field_path(where), f"must be {'>=' if v == 'minimum' else '<='} {expected}, got {instance!r}"
    if v == "const":
        return where, field_path(where), f"must be {expected!r}, got {instance!r}"
    if v == "uniqueItems":
        return where, field_path(where), "names a benefit twice"
    return where, field_path(where), error.message


def _read(path: str | os.PathLike[str]) -> tuple[Any, yaml.Node | None]:
    try:
        return read_yaml(path)
    except YamlProblem as p:
        what = "cannot read the risk-rules file" if p.unreadable else "not valid YAML"
        raise RiskRulesError(f"{path}:{p.line}: (file): {what}: {p.problem}",
                             errors=[(p.line, f"(file): {what}: {p.problem}")]) from p


def _rules(data: dict[str, Any], node: yaml.Node | None, errors: list[tuple[int, str]]) -> None:
    """What the schema cannot say: unique ids, and conditions that fit the records they read."""
    first: dict[str, int] = {}
    for i, raw in enumerate(data["rules"]):
        at = ["rules", i]
        line = node_line(node, [*at, "rule_id"])
        if raw["rule_id"] in first:
            errors.append((line, f"rules[{i}].rule_id: duplicate rule {raw['rule_id']} (first on line "
                                 f"{first[raw['rule_id']]})"))
        first.setdefault(raw["rule_id"], line)
        if raw["record_kind"] == DEATH:
            for name in ("amount_above_fen", "within_months", "only_earner"):
                if name in raw:
                    errors.append((node_line(node, [*at, name]),
                                   f"rules[{i}].{name}: a death has no {name}; remove it"))
            if not raw.get("covered_by"):
                errors.append((node_line(node, at), f"rules[{i}].covered_by: a rule on death names the "
                               "benefits of the households it watches (e.g. [low_income])"))
        if "within_months" in raw and "amount_above_fen" not in raw:
            errors.append((node_line(node, [*at, "within_months"]),
                           f"rules[{i}].within_months: sums amounts; give amount_above_fen too"))
        if "only_earner" in raw and raw["record_kind"] != "unemployment_registered":
            errors.append((node_line(node, [*at, "only_earner"]),
                           f"rules[{i}].only_earner: only unemployment_registered records say it"))
        both = set(raw.get("covered_by", ())) & set(raw.get("unless_covered_by", ("dibao", "tekun")))
        if both:
            errors.append((node_line(node, [*at, "covered_by"]),
                           f"rules[{i}].covered_by: {', '.join(sorted(both))} also in unless_covered_by"))


def _build(origin: str, data: dict[str, Any], node: yaml.Node | None) -> RiskRules:
    rules = []
    for i, raw in enumerate(data["rules"]):
        rules.append(RiskRule(
            rule_id=raw["rule_id"], label_zh=raw["label_zh"], record_kind=raw["record_kind"],
            urgency=raw.get("urgency", "normal"), amount_above_fen=raw.get("amount_above_fen"),
            within_months=raw.get("within_months"), only_earner=raw.get("only_earner"),
            covered_by=tuple(raw.get("covered_by", ())),
            unless_covered_by=tuple(raw.get("unless_covered_by", ("dibao", "tekun"))),
            source=f"{origin}:{node_line(node, ['rules', i])}",
        ))
    return RiskRules(tuple(rules), origin)


def load_risk_rules(path: str | os.PathLike[str]) -> RiskRules:
    """The rules in ``path``; :class:`RiskRulesError` naming file and line when it is unusable."""
    origin = str(path)
    data, node = _read(path)
    errors = problems(data, node, _VALIDATOR, _describe, _rules, "schema_version and rules")
    if errors:
        raise RiskRulesError(problem_lines(origin, errors), errors=errors)
    return _build(origin, data, node)


@lru_cache(maxsize=1)
def shipped_risk_rules() -> RiskRules:
    """The rules shipped in config/risk-rules.yaml (tests and tools that configure nothing)."""
    return load_risk_rules(DEFAULT_RISK_RULES_FILE)
