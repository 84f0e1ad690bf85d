"""Bank channels (社会化发放代发渠道) as configuration: ``config/bank-channels.yaml``.

A channel is a bank or credit union that takes payment files: its code (the one applications
name, :data:`lifeline.rules.vocabulary.BANK_CHANNELS`), its name, its bank code (a BIC or a
CNAPS 12-digit 行号), how many transactions one file may carry, whether it accepts only one
``PmtInf`` per file, its daily cut-off (Asia/Shanghai), and the account each county's
civil-affairs bureau pays benefits from at that bank.

An operator adds a channel or an account by editing the file (``LIFELINE_BANK_CHANNELS_FILE``);
the payment service reads it at start. A file that cannot be used raises
:class:`BankChannelsError` (a :class:`~lifeline.errors.ConfigurationError`, so ``lifeline serve
payment`` exits 2) whose message names the file and the line of each offending entry, one
problem a line::

    config/bank-channels.yaml:31: channels[1].bank_code: must be a BIC (8 or 11 characters, ...)

Every channel of the vocabulary must be configured; a channel the vocabulary does not know is
accepted (an operator's addition).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Iterable, Iterator

import jsonschema
import yaml

from lifeline.errors import ConfigurationError
from lifeline.yamlfile import (
    YamlProblem, field_path, node_line, problem_lines, problems, read_yaml, unknown_or_missing,
)
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.regions import InvalidRegionCode, county_of, is_known_county
from lifeline.rules.vocabulary import BANK_CHANNELS
from lifeline.settings import DEFAULT_BANK_CHANNELS_FILE

BIC = re.compile(r"^[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?$")
CNAPS = re.compile(r"^\d{12}$")


class BankChannelsError(ConfigurationError):
    """A bank-channels file, or a lookup in it, that cannot be used.

    ``errors`` holds ``(line, text)`` per problem (line 0: no line, e.g. an unreadable file)."""

    def __init__(self, message: str, *, errors: Iterable[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


class UnknownBankChannel(BankChannelsError):
    """No channel with this id is configured."""


class NoPayingAccount(BankChannelsError):
    """The county has no paying account at this channel."""


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PayingAccount:
    """A county civil-affairs bureau's account at a channel, from which benefits are paid."""

    county_code: str
    account_number: str
    account_name: str


@dataclass(frozen=True)
class BankChannel:
    channel_id: str
    name: str
    bank_code: str
    max_transactions_per_file: int
    single_pmtinf: bool
    cutoff: time                       # Asia/Shanghai
    paying_accounts: tuple[PayingAccount, ...]
    source: str = ""                   # "file:line" of the entry, for messages

    @property
    def bank_code_kind(self) -> str:
        """``"BIC"`` or ``"CNAPS"``."""
        return "CNAPS" if CNAPS.match(self.bank_code) else "BIC"

    @property
    def counties(self) -> tuple[str, ...]:
        return tuple(a.county_code for a in self.paying_accounts)

    def cutoff_on(self, day: date) -> datetime:
        """The moment files for ``day`` must reach the bank (aware, Asia/Shanghai)."""
        return datetime.combine(day, self.cutoff, tzinfo=SHANGHAI)


class ChannelBook:
    """The configured channels, in file order; immutable once built."""

    def __init__(self, channels: Iterable[BankChannel], origin: str = "") -> None:
        self._channels = tuple(channels)
        self._by_id = {c.channel_id: c for c in self._channels}
        self.origin = origin

    def channels(self) -> tuple[BankChannel, ...]:
        return self._channels

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._by_id

    def __iter__(self) -> Iterator[BankChannel]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def _where(self) -> str:
        return f"{self.origin}: " if self.origin else ""

    def channel(self, channel_id: str) -> BankChannel:
        try:
            return self._by_id[channel_id]
        except KeyError:
            raise UnknownBankChannel(
                f"{self._where()}no bank channel {channel_id!r} is configured "
                f"(configured: {', '.join(self._by_id) or 'none'})") from None

    def paying_account(self, channel_id: str, county_code: str) -> PayingAccount:
        """The county's account at the channel (a 9- or 12-digit region code gives its county)."""
        channel = self.channel(channel_id)
        try:
            county = county_of(county_code)
        except InvalidRegionCode as exc:
            raise NoPayingAccount(f"{self._where()}county_code: {exc}") from exc
        for account in channel.paying_accounts:
            if account.county_code == county:
                return account
        raise NoPayingAccount(
            f"{self._where()}county {county} has no paying account at bank channel "
            f"{channel.channel_id} ({channel.name}); add one under that channel's paying_accounts "
            f"(counties with one: {', '.join(channel.counties) or 'none'})")


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------
_ID = r"^[A-Z][A-Z0-9_]{1,15}$"
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}

CHANNELS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "channels"],
    "properties": {
        "schema_version": {"const": 1},
        "description": {"type": "string"},
        "channels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["channel_id", "name", "bank_code", "max_transactions_per_file",
                             "single_pmtinf", "cutoff", "paying_accounts"],
                "properties": {
                    "channel_id": {"type": "string", "pattern": _ID},
                    "name": _TEXT,
                    "bank_code": {"type": "string",
                                  "pattern": f"(?:{BIC.pattern})|(?:{CNAPS.pattern})"},
                    "max_transactions_per_file": {"type": "integer", "minimum": 1},
                    "single_pmtinf": {"type": "boolean"},
                    "cutoff": {"type": "string", "pattern": _HHMM},
                    "paying_accounts": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["county_code", "account_number", "account_name"],
                            "properties": {
                                "county_code": {"type": "string", "pattern": r"^\d{6}$"},
                                "account_number": {"type": "string", "pattern": r"^\d{12,30}$"},
                                "account_name": _TEXT,
                            },
                        },
                    },
                },
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(CHANNELS_SCHEMA)

# What a pattern means, in the operator's words.
_PATTERN_MEANS = {
    "channel_id": f"must be an upper-case code such as ICBC ({_ID})",
    "cutoff": 'must be a time "HH:MM" (00:00-23:59, Asia/Shanghai)',
    "county_code": "must be a six-digit county code",
    "account_number": "must be 12 to 30 digits",
    "name": "must not be blank",
    "account_name": "must not be blank",
}


def _bank_code_problem(value: str) -> str:
    if value.isdigit():
        return (f"a CNAPS bank code (行号) must have exactly 12 digits, got {value!r} "
                f"({len(value)} digits)")
    return (f"must be a BIC (8 or 11 characters: 4 letters of bank, 2 of country, 2 of location, "
            f"optionally 3 of branch, e.g. ICBKCNBJ) or a CNAPS 12-digit 行号; got {value!r}")


def _describe(error: jsonschema.ValidationError) -> tuple[list[Any], str, str]:
    """(node path to point at, field path to name, what is wrong), in our own words."""
    found = unknown_or_missing(error)
    if found is not None:
        return found
    where = list(error.absolute_path)
    v, expected, instance = error.validator, error.validator_value, error.instance
    field = where[-1] if where and isinstance(where[-1], str) else ""
    if v == "type":
        if expected == "string" and isinstance(instance, (int, float)) and not isinstance(instance, bool):
            hint = ("; quote it: YAML reads an unquoted 15:30 as the number 930"
                    if field == "cutoff" else f'; quote it: "{instance}"')
            return where, field_path(where), f"must be a string, got the number {instance!r}{hint}"
        kinds = expected if isinstance(expected, str) else " or ".join(expected)
        return where, field_path(where), f"must be of type {kinds}, got {instance!r}"
    if v == "pattern":
        if field == "bank_code":
            return where, field_path(where), _bank_code_problem(instance)
        means = _PATTERN_MEANS.get(field, f"must match {expected}")
        return where, field_path(where), f"{means}; got {instance!r}"
    if v == "minimum":
        return where, field_path(where), f"must be >= {expected}, got {instance!r}"
    if v == "minLength":
        return where, field_path(where), "must not be empty"
    if v == "const":
        return where, field_path(where), f"must be {expected!r}, got {instance!r}"
    if v == "minItems":
        return where, field_path(where), f"must have at least {expected} item(s)"
    return where, field_path(where), error.message


# --------------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------------
def _read(path: str | os.PathLike[str]) -> tuple[Any, yaml.Node | None]:
    """The file's data and its node tree (with marks)."""
    try:
        return read_yaml(path)
    except YamlProblem as p:
        if p.unreadable:
            raise BankChannelsError(f"{path}: cannot read bank channels file: {p.problem}",
                                    errors=[(0, f"cannot read bank channels file: {p.problem}")]) from p
        raise BankChannelsError(f"{path}:{p.line}: not valid YAML: {p.problem}",
                                errors=[(p.line, f"not valid YAML: {p.problem}")]) from p


def _rules(data: dict[str, Any], node: yaml.Node, errors: list[tuple[int, str]]) -> None:
    """What the schema cannot say: unique ids and accounts, known counties, the vocabulary."""
    first_of: dict[str, int] = {}
    for i, raw in enumerate(data["channels"]):
        cid = raw["channel_id"]
        line = node_line(node, ["channels", i, "channel_id"])
        if cid in first_of:
            errors.append((line, f"channels[{i}].channel_id: duplicate channel {cid} "
                                 f"(first on line {first_of[cid]})"))
        else:
            first_of[cid] = line
        accounts: dict[str, int] = {}
        for j, account in enumerate(raw["paying_accounts"]):
            at = ["channels", i, "paying_accounts", j, "county_code"]
            county, here = account["county_code"], node_line(node, at)
            if county in accounts:
                errors.append((here, f"{field_path(at)}: duplicate paying account for county {county} "
                                     f"at channel {cid} (first on line {accounts[county]})"))
            else:
                accounts[county] = here
            if not is_known_county(county):
                errors.append((here, f"{field_path(at)}: unknown county code {county!r} "
                                     f"(not a county-level code in the GB/T 2260 register)"))
    missing = [c for c in BANK_CHANNELS if c not in first_of]
    if missing:
        line = node_line(node, [("key", "channels")])
        errors.append((line, "channels: " + "; ".join(
            f"no entry for channel {c} ({BANK_CHANNELS[c]}), which applications may name"
            for c in missing)))


def _build(origin: str, data: dict[str, Any], node: yaml.Node) -> list[BankChannel]:
    out = []
    for i, raw in enumerate(data["channels"]):
        hh, mm = raw["cutoff"].split(":")
        out.append(BankChannel(
            channel_id=raw["channel_id"], name=raw["name"], bank_code=raw["bank_code"],
            max_transactions_per_file=raw["max_transactions_per_file"],
            single_pmtinf=raw["single_pmtinf"], cutoff=time(int(hh), int(mm)),
            paying_accounts=tuple(PayingAccount(a["county_code"], a["account_number"],
                                                a["account_name"])
                                  for a in raw["paying_accounts"]),
            source=f"{origin}:{node_line(node, ['channels', i])}",
        ))
    return out


def load_channel_book(path: str | os.PathLike[str]) -> ChannelBook:
    """The book in ``path``; :class:`BankChannelsError` naming file and line when it is unusable."""
    origin = str(path)
    data, node = _read(path)
    errors = problems(data, node, _VALIDATOR, _describe, _rules, "schema_version and channels")
    if errors:
        raise BankChannelsError(problem_lines(origin, errors), errors=errors)
    return ChannelBook(_build(origin, data, node), origin=origin)


@lru_cache(maxsize=1)
def shipped_channel_book() -> ChannelBook:
    """The book shipped in config/bank-channels.yaml (tests and tools that configure nothing)."""
    return load_channel_book(DEFAULT_BANK_CHANNELS_FILE)
