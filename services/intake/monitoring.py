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


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _describe(error: jsonschema.ValidationError) -> tuple[list[Any], str, str]:
    """(node path to point at, field path to name, what is wrong), in the operator's words."""
    where = list(error.absolute_path)
    v, expected, instance = error.validator, error.validator_value, error.instance
    if v == "additionalProperties":
        extra = sorted(set(instance) - set(error.schema.get("properties", {})), key=str)
        return where + [("key", extra[0])], _path(where + [extra[0]]), "unknown field"
    if v == "required":
        missing = [k for k in expected if k not in instance]
        return where, _path(where + [missing[0]]), "required field is missing"
    if v == "enum":
        return where, _path(where), f"must be one of {', '.join(map(str, expected))}; got {instance!r}"
    if v == "type":
        what = {"integer": "an integer (fen, no unit or separators)", "boolean": "true or false"}
        return where, _path(where), f"must be {what.get(expected, expected)}, got {instance!r}"
    if v == "pattern":
        return where, _path(where), f"must be lower case letters, digits and _ (a-z first); got {instance!r}"
    if v in ("minimum", "maximum"):
        return where, _path(where), f"must be {'>=' if v == 'minimum' else '<='} {expected}, got {instance!r}"
    if v == "const":
        return where, _path(where), f"must be {expected!r}, got {instance!r}"
    if v == "uniqueItems":
        return where, _path(where), "names a benefit twice"
    return where, _path(where), error.message


def _line(root: yaml.Node | None, path: list[Any]) -> int:
    """The 1-based line of the node at ``path`` (a ``("key", name)`` step: the key itself);
    where the path leaves the tree, the deepest node reached."""
    node = root
    if node is None:
        return 1
    for step in path:
        if isinstance(node, yaml.MappingNode):
            want_key = isinstance(step, tuple)
            name = step[1] if want_key else step
            found = None
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(name):
                    found = key_node if want_key else value_node
            if found is None:
                break
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            break
    return node.start_mark.line + 1


def _duplicate_keys(node: yaml.Node | None, path: list[Any], out: list[tuple[int, str]]) -> None:
    """PyYAML keeps the last of two equal keys silently; the operator hears of it."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None:
                if key in seen:
                    out.append((key_node.start_mark.line + 1,
                                f"{_path(path + [key])}: duplicate key (also on line {seen[key]})"))
                seen.setdefault(key, key_node.start_mark.line + 1)
            _duplicate_keys(value_node, path + [key], out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, path + [i], out)


def _read(path: str | os.PathLike[str]) -> tuple[Any, yaml.Node | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise RiskRulesError(f"{path}:0: (file): cannot read the risk-rules file: {exc}",
                             errors=[(0, f"(file): cannot read the risk-rules file: {exc}")]) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(filter(None, (exc.context, exc.problem))) or str(exc)
        raise RiskRulesError(f"{path}:{line}: (file): not valid YAML: {problem}",
                             errors=[(line, f"(file): not valid YAML: {problem}")]) from exc
    except yaml.YAMLError as exc:
        raise RiskRulesError(f"{path}:1: (file): not valid YAML: {exc}",
                             errors=[(1, f"(file): not valid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return data, node


def _rules(data: dict[str, Any], node: yaml.Node | None, errors: list[tuple[int, str]]) -> None:
    """What the schema cannot say: unique ids, and conditions that fit the records they read."""
    first: dict[str, int] = {}
    for i, raw in enumerate(data["rules"]):
        at = ["rules", i]
        line = _line(node, [*at, "rule_id"])
        if raw["rule_id"] in first:
            errors.append((line, f"rules[{i}].rule_id: duplicate rule {raw['rule_id']} (first on line "
                                 f"{first[raw['rule_id']]})"))
        first.setdefault(raw["rule_id"], line)
        if raw["record_kind"] == DEATH:
            for name in ("amount_above_fen", "within_months", "only_earner"):
                if name in raw:
                    errors.append((_line(node, [*at, name]),
                                   f"rules[{i}].{name}: a death has no {name}; remove it"))
            if not raw.get("covered_by"):
                errors.append((_line(node, at), f"rules[{i}].covered_by: a rule on death names the "
                               "benefits of the households it watches (e.g. [low_income])"))
        if "within_months" in raw and "amount_above_fen" not in raw:
            errors.append((_line(node, [*at, "within_months"]),
                           f"rules[{i}].within_months: sums amounts; give amount_above_fen too"))
        if "only_earner" in raw and raw["record_kind"] != "unemployment_registered":
            errors.append((_line(node, [*at, "only_earner"]),
                           f"rules[{i}].only_earner: only unemployment_registered records say it"))
        both = set(raw.get("covered_by", ())) & set(raw.get("unless_covered_by", ("dibao", "tekun")))
        if both:
            errors.append((_line(node, [*at, "covered_by"]),
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
            source=f"{origin}:{_line(node, ['rules', i])}",
        ))
    return RiskRules(tuple(rules), origin)


def load_risk_rules(path: str | os.PathLike[str]) -> RiskRules:
    """The rules in ``path``; :class:`RiskRulesError` naming file and line when it is unusable."""
    origin = str(path)
    data, node = _read(path)
    errors: list[tuple[int, str]] = []
    _duplicate_keys(node, [], errors)
    if not isinstance(data, dict):
        errors.append((_line(node, []), "(file): must be a mapping with schema_version and rules"))
    else:
        for err in _VALIDATOR.iter_errors(data):
            at, where, what = _describe(err)
            errors.append((_line(node, at), f"{where}: {what}"))
        if not errors:
            _rules(data, node, errors)
    if errors:
        errors = sorted(dict.fromkeys(errors), key=lambda e: e[0])
        raise RiskRulesError("\n".join(f"{origin}:{line}: {text}" for line, text in errors), errors=errors)
    return _build(origin, data, node)


@lru_cache(maxsize=1)
def shipped_risk_rules() -> RiskRules:
    """The rules shipped in config/risk-rules.yaml (tests and tools that configure nothing)."""
    return load_risk_rules(DEFAULT_RISK_RULES_FILE)
