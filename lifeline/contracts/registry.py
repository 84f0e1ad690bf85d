"""Event schemas, versions and upcasting: the one place that knows the contracts.

Producers call :func:`new_event` (builds the current version and validates it);
consumers call :func:`decode` (parse, upcast old versions, validate). A breaking
payload change is a new schema file ``<Name>.v<N+1>.json`` plus one upcaster
function registered in ``UPCASTERS``; old events in logs and topics stay readable.
"""

from __future__ import annotations

import copy
import json
import re
import uuid as _uuid
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError, best_match

from lifeline.rules.ids import has_resident_id_form

from .envelope import (
    Actor,
    CloudEvent,
    ContractError,
    event_type,
    is_datetime_with_offset,
    now_iso,
    parse_type,
)

SCHEMA_DIR = Path(__file__).with_name("schemas")
_FILE_RE = re.compile(r"([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)\.json")


def _scan() -> dict[tuple[str, int], Path]:
    found: dict[tuple[str, int], Path] = {}
    for path in SCHEMA_DIR.glob("*.json"):
        m = _FILE_RE.fullmatch(path.name)
        if m:
            found[(m.group(1), int(m.group(2)))] = path
    return found


SCHEMA_FILES: dict[tuple[str, int], Path] = _scan()
# The highest schema version of each event is the one producers write.
CURRENT_VERSIONS: dict[str, int] = {}
for _name, _version in sorted(SCHEMA_FILES):
    CURRENT_VERSIONS[_name] = max(_version, CURRENT_VERSIONS.get(_name, 0))


# --- format checking ---------------------------------------------------------
# jsonschema only checks "date-time" when an optional package is installed, so
# we register our own; "gb11643" verifies the resident ID check digit (SPEC §3).
FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checks("date-time")(is_datetime_with_offset)

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@FORMAT_CHECKER.checks("uuid")
def is_uuid(value: object) -> bool:
    # jsonschema's own check parses with uuid.UUID, which takes any Unicode digit.
    return not isinstance(value, str) or _UUID_RE.fullmatch(value) is not None


@FORMAT_CHECKER.checks("gb11643")
def is_gb11643(value: object) -> bool:
    if not isinstance(value, str):
        return True  # type is checked by "type", not by format
    return has_resident_id_form(value)


# --- ECMA-262 patterns ---------------------------------------------------------
# JSON Schema patterns are ECMA-262 regexes. Python's re differs in two ways that
# matter for us: "\d" matches any Unicode digit, and "$" also matches before a
# trailing newline ("2026-01\n" would pass). Compile with re.ASCII and "$" -> "\Z".
@lru_cache(maxsize=None)
def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern), re.ASCII)


def _pattern(validator, pattern, instance, schema):  # noqa: ANN001 - jsonschema keyword API
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield ValidationError(f"does not match pattern {pattern}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@lru_cache(maxsize=None)
def _validator(name: str, version: int) -> Draft202012Validator:
    path = SCHEMA_FILES.get((name, version))
    if path is None:
        raise ContractError(f"unknown event type {event_type(name, version)}")
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return _Validator(schema, format_checker=FORMAT_CHECKER)


# --- the compiled validator (the hot path) ---------------------------------------
# jsonschema's iter_errors costs ~200 µs for an ApplicationSubmitted; the Rust validator of
# jsonschema-rs answers valid-or-not in a few. It decides whether data is valid; a refusal's
# message still comes from jsonschema (best_match), so errors read the same. Its regexes are
# Rust's, whose \d and \s are Unicode: patterns are given their ASCII classes first, as _ecma
# compiles them for jsonschema (tests/unit/test_contracts.py compares the two on every example).
_ASCII_CLASSES = {"d": ("[0-9]", "0-9"), "s": ("[ \t\n\r\f\v]", " \t\n\r\f\v")}


def _ascii_pattern(pattern: str) -> str:
    out, in_class, i = [], False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            pair = _ASCII_CLASSES.get(pattern[i + 1])
            out.append(pair[in_class] if pair else pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


def _ascii_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (_ascii_pattern(v) if k == "pattern" and isinstance(v, str) else _ascii_patterns(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_ascii_patterns(v) for v in node]
    return node


@lru_cache(maxsize=None)
def _compiled(name: str, version: int) -> Any:
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(
        _ascii_patterns(_validator(name, version).schema), validate_formats=True,
        formats={"date-time": is_datetime_with_offset, "gb11643": is_gb11643, "uuid": is_uuid})


def _first_error(name: str, version: int, data: Any) -> ValidationError | None:
    """The most relevant schema error of `data`, or None when it is valid."""
    if _compiled(name, version).is_valid(data):
        return None
    return best_match(_validator(name, version).iter_errors(data))


def schema(name: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema of an event's data (current version by default)."""
    version = version or CURRENT_VERSIONS.get(name, 0)
    return _validator(name, version).schema


def load_all() -> None:
    """Compile every schema now (services call this at start-up to fail fast)."""
    for name, version in SCHEMA_FILES:
        _validator(name, version)
        _compiled(name, version)


# --- validation ---------------------------------------------------------------
def _describe(error: ValidationError) -> tuple[str, str]:
    """(JSON path, message) for an error, without echoing the offending value."""
    path = "$.data" + error.json_path[1:]
    kw, val = error.validator, error.validator_value
    if kw == "required":
        missing = [p for p in val if isinstance(error.instance, dict) and p not in error.instance]
        if missing:
            return f"{path}.{missing[0]}", "is required"
    if kw == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return f"{path}.{extra[0]}", "is not allowed (unknown property)"
    messages = {
        "type": lambda: f"must be of type {val if isinstance(val, str) else ' or '.join(val)}",
        "enum": lambda: "must be one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in val),
        "const": lambda: f"must be {json.dumps(val, ensure_ascii=False)}",
        "pattern": lambda: f"must match {val}",
        "format": lambda: f"must be a valid {val}",
        "minimum": lambda: f"must be >= {val}",
        "maximum": lambda: f"must be <= {val}",
        "minLength": lambda: f"must be at least {val} characters",
        "maxLength": lambda: f"must be at most {val} characters",
        "minItems": lambda: f"must have at least {val} items",
        "maxItems": lambda: f"must have at most {val} items",
        "uniqueItems": lambda: "must not contain duplicates",
        "contains": lambda: "does not contain the required item",
        "minContains": lambda: "does not contain the required item",
        "maxContains": lambda: f"must contain at most {val} matching item(s)",
        "anyOf": lambda: "does not match any allowed alternative",
    }
    return path, messages.get(kw, lambda: f"fails {kw}")()


def validate(event: CloudEvent) -> None:
    """Check ``event.data`` against the schema of ``event.type``.

    Raises ContractError("<type>: $.data.<path>: <message>") for the first
    (most relevant) error, or "unknown event type ..." when there is no schema.
    """
    error = _first_error(*parse_type(event.type), event.data)
    if error is not None:
        path, message = _describe(error)
        raise ContractError(f"{event.type}: {path}: {message}")


# --- upcasting ------------------------------------------------------------------
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# (name, from_version) -> function turning data of from_version into from_version+1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(name, from_version)] = fn
        return fn

    return register


@upcaster("ApplicationSubmitted", 1)
def _application_submitted_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["urgency"] = "urgent" if out.pop("urgent") else "normal"
    out["declared_monthly_income_fen"] = out.pop("declared_income_fen")
    return out


def upcast_data(name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Data of ``name`` at ``version`` brought to the current version (a deep copy).

    Domain events that stored an older wire payload use this in their own upcasters.
    """
    data = copy.deepcopy(data)
    while version < CURRENT_VERSIONS[name]:
        data = UPCASTERS[(name, version)](data)
        version += 1
    return data


def upcast(event: CloudEvent) -> CloudEvent:
    """Return ``event`` at the current version of its name (unchanged if already current)."""
    name, version = parse_type(event.type)
    current = CURRENT_VERSIONS.get(name)
    if current is None or version > current or (name, version) not in SCHEMA_FILES:
        raise ContractError(f"unknown event type {event.type}")
    data = event.data
    while version < current:
        step = UPCASTERS.get((name, version))
        if step is None:
            raise ContractError(f"no upcaster for {event_type(name, version)}")
        try:
            # Deep copy so an upcaster can never alter the caller's (stored) event.
            data = step(copy.deepcopy(data))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(
                f"cannot upcast {event_type(name, version)}: {type(exc).__name__}"
            ) from None
        version += 1
    if data is event.data:
        return event
    return replace(event, type=event_type(name, version), data=data)


def new_event(
    name: str,
    data: Mapping[str, Any],
    *,
    subject: str,
    source: str,
    sequence: int,
    actor: Actor | Mapping[str, Any],
    correlationid: str | None = None,
    causationid: str | None = None,
    time: str | None = None,
    id: str | None = None,  # noqa: A002 - the CloudEvents attribute name
) -> CloudEvent:
    """Build and validate an event at the current version of ``name``.

    A new id (UUID4) and the current Asia/Shanghai time are used unless given.
    Without ``correlationid`` the event starts a new correlation (its own id);
    pass the causing event's ``correlationid`` and ``id`` to continue one.
    """
    if name not in CURRENT_VERSIONS:
        raise ContractError(f"unknown event type {name!r}")
    event_id = id or str(_uuid.uuid4())
    event = CloudEvent(
        id=event_id,
        source=source,
        type=event_type(name, CURRENT_VERSIONS[name]),
        subject=subject,
        time=time or now_iso(),
        data=dict(data),
        correlationid=correlationid or event_id,
        causationid=causationid,
        actor=actor,
        sequence=sequence,
    )
    validate(event)
    return event


def decode(raw: bytes) -> CloudEvent:
    """Consumer path: parse the envelope, upcast to the current version, validate."""
    return accept(CloudEvent.from_json(raw))


def require_known(event: CloudEvent) -> None:
    """ContractError unless a schema exists for the event's type and version."""
    if parse_type(event.type) not in SCHEMA_FILES:
        raise ContractError(f"unknown event type {event.type}")


def accept(event: CloudEvent) -> CloudEvent:
    """Validate a parsed envelope's data and upcast it to the current version.

    The version sent is validated before upcasting too, so upcasters only
    ever see well-formed input and errors point at the fields that were sent.
    """
    validate(event)
    current = upcast(event)
    if current is not event:
        validate(current)
    return current


__all__ = [
    "CURRENT_VERSIONS", "FORMAT_CHECKER", "SCHEMA_DIR", "SCHEMA_FILES", "UPCASTERS",
    "ContractError", "accept", "decode", "load_all", "new_event",
    "require_known", "schema", "upcast", "upcaster", "validate",
]


def validate_data(name: str, data: Mapping[str, Any]) -> None:
    """Check data against the current schema of ``name`` (the write side's check).

    Services call this before saving the domain event that will be published,
    so nothing the relay could not publish is ever stored.
    """
    if name not in CURRENT_VERSIONS:
        raise ContractError(f"unknown event type {name!r}")
    error = _first_error(name, CURRENT_VERSIONS[name], dict(data))
    if error is not None:
        path, message = _describe(error)
        raise ContractError(f"{event_type(name, CURRENT_VERSIONS[name])}: {path}: {message}")


@upcaster("ApplicationSubmitted", 2)
def _application_submitted_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    # v2 knew nothing of these: everyone lived together, nobody asked an amount or
    # declared expenses, and the account was only referred to (no sealed number).
    out = dict(data)
    out["members"] = [
        {**m, "co_resident": True, "support_obligor": False, "support_paid_fen": 0}
        for m in data["members"]
    ]
    out.update({
        "declared_medical_expense_fen": 0, "declared_education_expense_fen": 0,
        "requested_amount_fen": 0, "single_person_member_id": None, "bank_account": None,
    })
    return out


@upcaster("ApplicationSubmitted", 3)
def _application_submitted_v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    # v3 asked nobody whether they were a cadre or a cadre's close relative (备案): not declared.
    out = dict(data)
    out["members"] = [{**m, "cadre_relation": None} for m in data["members"]]
    return out


@upcaster("BenefitApproved", 1)
def _benefit_approved_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    one_off = data.get("one_off_amount_fen")
    out["kind"] = "one_off" if one_off else "monthly"
    out["fund_source"] = "temporary_relief_budget" if one_off else None
    if one_off:
        out["monthly_amount_fen"] = None
    else:
        out["one_off_amount_fen"] = None
    out["bank_account"] = None
    return out


# The account's masked number shows its first four digits too from ApplicationSubmitted v5 and
# BenefitApproved v3 on. An older event keeps the form it was masked with (last four only),
# which the newer schemas still accept: nothing can recover digits the event never carried.
@upcaster("ApplicationSubmitted", 4)
def _application_submitted_v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    return data


@upcaster("ApplicationSubmitted", 5)
def _application_submitted_v5_to_v6(data: dict[str, Any]) -> dict[str, Any]:
    # Nobody was asked for a mobile number before v6: notices go by letter and in-app only.
    return {**data, "contact": None}


@upcaster("FundRegistered", 1)
def _fund_registered_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Before the criteria were complete: the owner's region, every household type, no yearly
    # cap; a per-case cap of 0 meant none.
    out = dict(data)
    out.update(donor=None, regions=[out["region_code"]], household_types=["dibao", "tekun", "low_income", "none"],
               per_household_year_cap_fen=None, valid_from=None, per_case_cap_fen=out["per_case_cap_fen"] or None)
    return out


@upcaster("NeedOpened", 1)
def _need_opened_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Needs opened before the profile was kept: never shared without a recorded consent.
    out = dict(data)
    out.update(due_date=out["opened_at"][:10], consent_to_share=False, household_type="none",
               name_masked="某*", members_count=1)
    return out


@upcaster("BenefitApproved", 2)
def _benefit_approved_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return data
