"""Bank channels as configuration (config/bank-channels.yaml): loaded, validated, refused with
file and line, and read by the payment service at start."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path

import pytest

from lifeline.errors import ConfigurationError
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.vocabulary import BANK_CHANNELS
from lifeline.settings import DEFAULT_BANK_CHANNELS_FILE, REPO_ROOT, Settings
from services.payment.application import PaymentApplication
from services.payment.bootstrap import build
from services.payment.channels import (
    BankChannelsError,
    ChannelBook,
    NoPayingAccount,
    PayingAccount,
    UnknownBankChannel,
    load_channel_book,
    shipped_channel_book,
)
from tests.unit.services import MEMORY_ENV

# A small valid file; the line numbers in the tests below refer to it (line 1 is "schema_version").
CHANNEL = """\
  - channel_id: {cid}
    name: {name}
    bank_code: {code}
    max_transactions_per_file: 5000
    single_pmtinf: false
    cutoff: "16:00"
    paying_accounts:
      - county_code: "370502"
        account_number: "123456789012345678"
        account_name: 东营市东营区民政局
"""
CODES = {"ICBC": "ICBKCNBJ", "ABC": "ABOCCNBJ", "BOC": "BKCHCNBJ", "CCB": "PCBCCNBJ",
         "BOCOM": "COMMCNSH", "PSBC": "PSBCCNBJ", "RCC": '"402455000017"'}
STEP = CHANNEL.count("\n")  # lines per channel entry


def text(*ids: str) -> str:
    return "schema_version: 1\nchannels:\n" + "".join(
        CHANNEL.format(cid=cid, name=BANK_CHANNELS.get(cid, "示例银行"), code=CODES.get(cid, "EXMPCNBJ"))
        for cid in ids)


def line_of(index: int, offset: int) -> int:
    """The file line of a channel entry's field: offset 0 is channel_id, 2 bank_code, ..."""
    return 3 + index * STEP + offset


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "bank-channels.yaml"
    path.write_text(content, encoding="utf-8")
    return path


def refused(tmp_path: Path, content: str) -> str:
    path = write(tmp_path, content)
    with pytest.raises(BankChannelsError) as raised:
        load_channel_book(path)
    assert isinstance(raised.value, ConfigurationError)
    return str(raised.value)


def replace_line(content: str, line: int, new: str) -> str:
    lines = content.splitlines(keepends=True)
    lines[line - 1] = new + "\n"
    return "".join(lines)


ALL = tuple(BANK_CHANNELS)


# --- the shipped file ----------------------------------------------------------------------
def test_the_shipped_file_loads_and_configures_every_channel_of_the_vocabulary():
    book = shipped_channel_book()
    assert set(BANK_CHANNELS) <= set(book.channel_ids)
    for channel in book.channels():
        assert channel.name and channel.max_transactions_per_file >= 1
        assert channel.bank_code_kind in ("BIC", "CNAPS")
        assert isinstance(channel.cutoff, time)
        assert channel.source.startswith(f"{DEFAULT_BANK_CHANNELS_FILE}:")


def test_the_shipped_file_has_an_account_for_every_county_of_the_policy_file():
    from lifeline.rules.policy import shipped_policy_book

    book = shipped_channel_book()
    for county in shipped_policy_book().counties:
        for channel in book.channels():
            account = book.paying_account(channel.channel_id, county)
            assert account.county_code == county and account.account_number.isdigit()


def test_the_settings_default_is_the_shipped_file():
    assert Settings.from_env({}).bank_channels_file == DEFAULT_BANK_CHANNELS_FILE
    assert DEFAULT_BANK_CHANNELS_FILE == REPO_ROOT / "config" / "bank-channels.yaml"
    custom = Settings.from_env({"LIFELINE_BANK_CHANNELS_FILE": "/etc/lifeline/banks.yaml"})
    assert custom.bank_channels_file == Path("/etc/lifeline/banks.yaml")


def test_the_valid_test_file_loads(tmp_path):
    book = load_channel_book(write(tmp_path, text(*ALL)))
    assert book.channel_ids == ALL and book.origin == str(tmp_path / "bank-channels.yaml")
    rcc = book.channel("RCC")
    assert (rcc.bank_code, rcc.bank_code_kind, rcc.cutoff) == ("402455000017", "CNAPS", time(16, 0))
    assert book.channel("ICBC").bank_code_kind == "BIC"
    assert rcc.cutoff_on(date(2026, 1, 5)) == datetime(2026, 1, 5, 16, 0, tzinfo=SHANGHAI)
    assert rcc.source == f"{tmp_path / 'bank-channels.yaml'}:{line_of(6, 0)}"


# --- lookups -------------------------------------------------------------------------------
def test_paying_account_of_a_county_and_of_its_villages():
    book = shipped_channel_book()
    account = book.paying_account("ICBC", "370502")
    assert isinstance(account, PayingAccount) and account.county_code == "370502"
    assert book.paying_account("ICBC", "370502101001") == account  # a village gives its county


def test_a_county_without_an_account_at_the_channel_is_a_clear_error(tmp_path):
    book = load_channel_book(write(tmp_path, text(*ALL)))
    with pytest.raises(NoPayingAccount) as raised:
        book.paying_account("PSBC", "370602")
    message = str(raised.value)
    assert "county 370602 has no paying account at bank channel PSBC (中国邮政储蓄银行)" in message
    assert "counties with one: 370502" in message and str(tmp_path) in message


def test_an_unknown_channel_and_a_malformed_county_are_clear_errors():
    book = shipped_channel_book()
    with pytest.raises(UnknownBankChannel, match="no bank channel 'NOPE' is configured"):
        book.channel("NOPE")
    with pytest.raises(UnknownBankChannel):
        book.paying_account("NOPE", "370502")
    with pytest.raises(NoPayingAccount, match="county_code"):
        book.paying_account("ICBC", "37A")


# --- an operator's additions ---------------------------------------------------------------
def test_an_operators_extra_channel_is_accepted(tmp_path):
    content = text(*ALL, "DYRCB")
    content = content.replace("bank_code: EXMPCNBJ", 'bank_code: "314455000019"')
    book = load_channel_book(write(tmp_path, content))
    assert "DYRCB" in book and book.channel("DYRCB").bank_code_kind == "CNAPS"
    assert book.paying_account("DYRCB", "370502").account_name == "东营市东营区民政局"


def test_an_eleven_character_bic_with_a_branch_is_accepted(tmp_path):
    content = text(*ALL).replace("bank_code: ICBKCNBJ", "bank_code: ICBKCNBJSDG")
    assert load_channel_book(write(tmp_path, content)).channel("ICBC").bank_code == "ICBKCNBJSDG"


# --- mistakes, each refused naming file and line -------------------------------------------
@pytest.mark.parametrize("bad, expected", [
    ("ICBKCNB", "must be a BIC"),             # 7 characters
    ("ICBKCNBJ1", "must be a BIC"),           # 9 characters
    ("ICBKCN1J", "must be a BIC"),            # digit 1 is not allowed at position 7
    ("ICBKCNBO", "must be a BIC"),            # letter O is not allowed at position 8
    ("icbkcnbj", "must be a BIC"),
])
def test_a_bad_bic_is_refused(tmp_path, bad, expected):
    content = text(*ALL).replace("bank_code: ICBKCNBJ", f"bank_code: {bad}")
    path = tmp_path / "bank-channels.yaml"
    message = refused(tmp_path, content)
    assert message.startswith(f"{path}:{line_of(0, 2)}: channels[0].bank_code: {expected}")
    assert repr(bad) in message


@pytest.mark.parametrize("bad", ['"40245500001"', '"4024550000171"'])
def test_a_bad_cnaps_code_is_refused(tmp_path, bad):
    content = text(*ALL).replace('bank_code: "402455000017"', f"bank_code: {bad}")
    message = refused(tmp_path, content)
    assert message.startswith(f"{tmp_path / 'bank-channels.yaml'}:{line_of(6, 2)}: channels[6].bank_code: "
                              "a CNAPS bank code (行号) must have exactly 12 digits")


def test_an_unquoted_cnaps_code_is_refused_with_a_hint(tmp_path):
    message = refused(tmp_path, text(*ALL, "DYRCB").replace("bank_code: EXMPCNBJ", "bank_code: 314455000019"))
    assert f":{line_of(7, 2)}: channels[7].bank_code: must be a string, got the number 314455000019" in message
    assert "quote it" in message


def test_a_duplicate_channel_id_is_refused_naming_both_lines(tmp_path):
    message = refused(tmp_path, text(*ALL, "ICBC"))
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{line_of(7, 0)}: channels[7].channel_id: "
                       f"duplicate channel ICBC (first on line {line_of(0, 0)})")


def test_a_duplicate_account_for_a_county_at_a_channel_is_refused(tmp_path):
    content = text(*ALL)
    extra = ('      - county_code: "370502"\n'
             '        account_number: "999999999999999999"\n'
             '        account_name: 东营市东营区民政局\n')
    lines = content.splitlines(keepends=True)
    at = line_of(1, STEP)  # just after the ABC entry's last line
    content = "".join(lines[:at - 1]) + extra + "".join(lines[at - 1:])
    message = refused(tmp_path, content)
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{at}: channels[1].paying_accounts[1].county_code: "
                       f"duplicate paying account for county 370502 at channel ABC "
                       f"(first on line {line_of(1, 7)})")


@pytest.mark.parametrize("offset, field", [(2, "bank_code"), (5, "cutoff"), (6, "paying_accounts")])
def test_a_missing_field_is_refused_at_its_entry(tmp_path, offset, field):
    content = text(*ALL)
    lines = content.splitlines(keepends=True)
    del lines[line_of(3, offset) - 1]
    if field == "paying_accounts":
        del lines[line_of(3, offset) - 1:line_of(3, offset) + 2]  # the account too
    message = refused(tmp_path, "".join(lines))
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{line_of(3, 0)}: channels[3].{field}: "
                       f"required field is missing")


def test_a_missing_account_field_is_refused_at_the_account(tmp_path):
    content = text(*ALL)
    lines = content.splitlines(keepends=True)
    del lines[line_of(2, 9) - 1]  # BOC's account_name
    message = refused(tmp_path, "".join(lines))
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{line_of(2, 7)}: "
                       f"channels[2].paying_accounts[0].account_name: required field is missing")


def test_an_unknown_field_is_refused_at_its_line(tmp_path):
    content = replace_line(text(*ALL), line_of(4, 4), "    single_pmtinf: false\n    swift_gpi: true")
    message = refused(tmp_path, content)
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{line_of(4, 5)}: channels[4].swift_gpi: "
                       f"unknown field")


def test_an_unknown_top_level_field_is_refused(tmp_path):
    message = refused(tmp_path, text(*ALL) + "banks: []\n")
    assert message == f"{tmp_path / 'bank-channels.yaml'}:{line_of(7, 0)}: banks: unknown field"


@pytest.mark.parametrize("bad, expected", [
    ('"24:00"', 'channels[5].cutoff: must be a time "HH:MM"'),
    ('"4pm"', 'channels[5].cutoff: must be a time "HH:MM"'),
    ('"9:30"', 'channels[5].cutoff: must be a time "HH:MM"'),
    ("15:30", "channels[5].cutoff: must be a string, got the number 930; quote it"),
])
def test_a_bad_cutoff_is_refused(tmp_path, bad, expected):
    content = replace_line(text(*ALL), line_of(5, 5), f"    cutoff: {bad}")
    message = refused(tmp_path, content)
    assert message.startswith(f"{tmp_path / 'bank-channels.yaml'}:{line_of(5, 5)}: {expected}")


@pytest.mark.parametrize("bad, expected", [
    ("0", "must be >= 1, got 0"),
    ("-5", "must be >= 1, got -5"),
    ('"5000"', "must be of type integer"),
    ("true", "must be of type integer"),
])
def test_a_bad_max_transactions_is_refused(tmp_path, bad, expected):
    content = replace_line(text(*ALL), line_of(1, 3), f"    max_transactions_per_file: {bad}")
    message = refused(tmp_path, content)
    assert message.startswith(f"{tmp_path / 'bank-channels.yaml'}:{line_of(1, 3)}: "
                              f"channels[1].max_transactions_per_file: {expected}")


def test_a_bad_account_number_and_an_unknown_county_are_refused(tmp_path):
    content = replace_line(text(*ALL), line_of(0, 8), '        account_number: "1234-5678"')
    message = refused(tmp_path, content)
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{line_of(0, 8)}: "
                       f"channels[0].paying_accounts[0].account_number: must be 12 to 30 digits; got '1234-5678'")
    content = replace_line(text(*ALL), line_of(0, 7), '      - county_code: "379999"')
    message = refused(tmp_path, content)
    assert message.startswith(f"{tmp_path / 'bank-channels.yaml'}:{line_of(0, 7)}: "
                              f"channels[0].paying_accounts[0].county_code: unknown county code '379999'")


def test_a_vocabulary_channel_missing_is_refused_naming_it(tmp_path):
    message = refused(tmp_path, text(*(c for c in ALL if c not in ("PSBC", "RCC"))))
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:2: channels: "
                       f"no entry for channel PSBC (中国邮政储蓄银行), which applications may name; "
                       f"no entry for channel RCC (农村信用合作社), which applications may name")


@pytest.mark.parametrize("content, line", [
    ("schema_version: 1\nchannels:\n  - channel_id: ICBC\n    name: [unclosed\n", 5),
    ("schema_version: 1\nchannels:\n  - channel_id: ICBC\n\tname: tab\n", 4),
    ("schema_version: 1\nchannels: {a: 1\n", 3),
])
def test_a_file_that_is_not_yaml_is_refused_at_its_line(tmp_path, content, line):
    message = refused(tmp_path, content)
    assert message.startswith(f"{tmp_path / 'bank-channels.yaml'}:{line}: not valid YAML: ")


@pytest.mark.parametrize("content", ["", "just some words\n", "- a\n- b\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, content):
    message = refused(tmp_path, content)
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:1: (file): must be a mapping "
                       f"with schema_version and channels")


def test_a_wrong_schema_version_and_a_duplicate_key_are_refused(tmp_path):
    message = refused(tmp_path, text(*ALL).replace("schema_version: 1", "schema_version: 2"))
    assert message == f"{tmp_path / 'bank-channels.yaml'}:1: schema_version: must be 1, got 2"
    content = replace_line(text(*ALL), line_of(0, 1), "    name: 中国工商银行\n    name: 工行")
    message = refused(tmp_path, content)
    assert message == (f"{tmp_path / 'bank-channels.yaml'}:{line_of(0, 2)}: channels[0].name: "
                       f"duplicate key (also on line {line_of(0, 1)})")


def test_every_mistake_is_reported_in_file_order(tmp_path):
    content = replace_line(text(*ALL), line_of(4, 3), "    max_transactions_per_file: 0")
    content = replace_line(content, line_of(1, 2), "    bank_code: XX")
    message = refused(tmp_path, content)
    path = tmp_path / "bank-channels.yaml"
    first, second = message.split("\n")
    assert first.startswith(f"{path}:{line_of(1, 2)}: channels[1].bank_code:")
    assert second.startswith(f"{path}:{line_of(4, 3)}: channels[4].max_transactions_per_file:")


def test_an_unreadable_file_is_refused_naming_it(tmp_path):
    with pytest.raises(BankChannelsError, match="cannot read bank channels file"):
        load_channel_book(tmp_path / "missing.yaml")


# --- the payment service -------------------------------------------------------------------
def test_the_payment_application_defaults_to_the_shipped_book_and_takes_a_given_one(tmp_path):
    env = dict(MEMORY_ENV)
    assert PaymentApplication(env).channels is shipped_channel_book()
    book = ChannelBook([], origin="x")
    assert PaymentApplication(env, channels=book).channels is book


def test_the_composition_root_loads_the_configured_file(tmp_path):
    path = write(tmp_path, text(*ALL, "DYRCB"))
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path),
                                  "LIFELINE_BANK_CHANNELS_FILE": str(path)})
    app = build(settings, clock=None, env=dict(MEMORY_ENV))
    assert "DYRCB" in app.channels and app.channels.origin == str(path)


def test_serve_payment_refuses_to_start_on_a_bad_bank_channels_file(tmp_path):
    path = write(tmp_path, text(*ALL).replace("bank_code: PSBCCNBJ", "bank_code: PSBC-CN"))
    env = {**os.environ, "LIFELINE_BANK_CHANNELS_FILE": str(path), "LIFELINE_DATA_DIR": str(tmp_path),
           "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "serve", "payment"], env=env, cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert f"lifeline serve: {path}:{line_of(5, 2)}: channels[5].bank_code: must be a BIC" in r.stderr
    assert "Traceback" not in r.stderr
