"""Personal data is encrypted at rest on every configuration (SPEC: names and ID numbers never
lie in the event store in clear): with LIFELINE_CIPHER_KEY, or on the embedded default with the
secret generated once under the data directory; a bank account number is sealed always.

The intake application is built as the service builds it (services/intake/bootstrap.py), so
the cipher and the sealer both come from the settings."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import pytest

from lifeline.domain.aggregate import aggregate_id
from lifeline.domain.clock import FixedClock
from lifeline.settings import Settings
from lifeline.stores.eventstore import SmallStatesPlain, event_store_env
from lifeline.stores import chain
from lifeline.stores.sealing import sealer_for
from services.intake.application import IntakeApplication
from services.intake.bootstrap import SPEC

from . import ACCOUNT_NUMBER, CLERK, application_body, pid

NAME = "司马光明"
SPOUSE = "欧阳晓燕"
ID_NUMBER = pid(77)
SPOUSE_ID = pid(78, female=True)


def settings(data_dir: Path, key: str = "") -> Settings:
    env = {"LIFELINE_DATA_DIR": str(data_dir)}
    if key:
        env["LIFELINE_CIPHER_KEY"] = key
    return Settings.from_env(env)


def intake_app(s: Settings) -> IntakeApplication:
    app = SPEC.application(s, FixedClock("2026-11-25T09:00:00+08:00"))
    assert isinstance(app, IntakeApplication)
    return app


def save_case(s: Settings) -> str:
    app = intake_app(s)
    try:
        body = application_body([ID_NUMBER, SPOUSE_ID], names=[NAME, SPOUSE, "", ""])
        return app.submit_application(body, CLERK)
    finally:
        app.close()


def stored_states(data_dir: Path) -> list[bytes]:
    path = data_dir / "intake.events.sqlite"
    assert path.exists()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT state FROM stored_events").fetchall()
    assert rows, "no stored events"
    return [bytes(state) for (state,) in rows]


def secrets_in(blobs: list[bytes]) -> list[str]:
    found = []
    for secret in (NAME, SPOUSE, ID_NUMBER, SPOUSE_ID):
        needle = secret.encode("utf-8")
        if any(needle in blob for blob in blobs):
            found.append(secret)
    return found


def plain_app(s: Settings) -> IntakeApplication:
    """Intake on the same store with encryption switched off, as stores were written before
    encryption at rest was the default."""
    env = {k: v for k, v in event_store_env(s, "intake").items()
           if k not in ("CIPHER_TOPIC", "CIPHER_KEY", "COMPRESSOR_TOPIC")}
    return IntakeApplication(env, clock=FixedClock("2026-11-25T09:00:00+08:00"), sealer=sealer_for(s))


def test_cipher_key_configures_encryption(tmp_path):
    env = event_store_env(settings(tmp_path, "k"), "intake")
    assert env["CIPHER_TOPIC"] == "lifeline.stores.eventstore:KeptKeyAESCipher"
    assert env["CIPHER_KEY"] and env["CIPHER_KEY"] != "k"  # derived, not the secret itself
    assert not (tmp_path / "sealing.secret").exists()  # the configured key, nothing generated


def test_without_a_key_the_data_directorys_secret_encrypts_the_events(tmp_path):
    env = event_store_env(settings(tmp_path), "intake")
    assert env["CIPHER_TOPIC"] == "lifeline.stores.eventstore:KeptKeyAESCipher"
    secret = (tmp_path / "sealing.secret").read_text().strip()
    assert secret and (tmp_path / "sealing.secret").stat().st_mode & 0o777 == 0o600
    # Every process of this Lifeline derives the same key from the file written first.
    assert event_store_env(settings(tmp_path), "payment")["CIPHER_KEY"] == env["CIPHER_KEY"]
    assert env["CIPHER_KEY"] == event_store_env(settings(tmp_path / "x", secret), "intake")["CIPHER_KEY"]


def test_plain_text_control_names_and_id_numbers_would_be_found(tmp_path):
    # The control: proves the search below would find them if they were there.
    app = plain_app(settings(tmp_path))
    try:
        app.submit_application(application_body([ID_NUMBER, SPOUSE_ID], names=[NAME, SPOUSE, "", ""]), CLERK)
    finally:
        app.close()
    assert secrets_in(stored_states(tmp_path)) == [NAME, SPOUSE, ID_NUMBER, SPOUSE_ID]


def test_on_the_embedded_default_no_id_number_or_name_is_in_the_store_file(tmp_path):
    """Tried as a new user would (no LIFELINE_CIPHER_KEY): the raw SQLite files, WAL included,
    hold no resident ID number and no name; the application reads them back."""
    s = settings(tmp_path)
    case_id = save_case(s)
    raw = [p.read_bytes() for p in tmp_path.glob("intake.events.sqlite*")]
    assert raw and secrets_in(raw) == []
    assert secrets_in(stored_states(tmp_path)) == []
    app = intake_app(s)
    try:
        members = app.get_case(case_id).application.household.members
        assert [(m.name, m.id_number) for m in members] == [(NAME, ID_NUMBER), (SPOUSE, SPOUSE_ID)]
    finally:
        app.close()


def test_plain_text_events_of_an_older_store_are_encrypted_at_its_first_start(tmp_path):
    s = settings(tmp_path)
    app = plain_app(s)
    try:
        case_id = app.submit_application(application_body([ID_NUMBER, SPOUSE_ID], names=[NAME, SPOUSE, "", ""]),
                                         CLERK)
        plain_events = app.recorder.max_notification_id()
    finally:
        app.close()
    # An older store: no chain yet (the genesis the plain application recorded is removed).
    with sqlite3.connect(tmp_path / "intake.events.sqlite") as db:
        db.execute("DELETE FROM stored_events_genesis")
        db.execute("DELETE FROM stored_events_chain")
    app = intake_app(s)  # the first start with encryption at rest and the chain
    try:
        assert app.recorder.genesis().backfilled_to == plain_events
        assert app.recorder.genesis().encrypted == plain_events
        assert secrets_in(stored_states(tmp_path)) == []
        assert app.get_case(case_id).application.household.members[0].id_number == ID_NUMBER
        assert chain.verify(app).ok
    finally:
        app.close()


@pytest.mark.parametrize(("cipher", "compressor"), [
    ("eventsourcing.cipher:AESCipher", "eventsourcing.compressor:ZlibCompressor"),  # pycryptodome
    ("eventsourcing.cryptography:AESCipher", "eventsourcing.compressor:ZlibCompressor"),  # until the key was kept
])
def test_a_store_written_by_the_librarys_ciphers_and_compressor_reads_with_ours(tmp_path, cipher, compressor):
    s = settings(tmp_path, "a-key")
    env = {**event_store_env(s, "intake"), "CIPHER_TOPIC": cipher, "COMPRESSOR_TOPIC": compressor}
    app = IntakeApplication(env, clock=FixedClock("2026-11-25T09:00:00+08:00"), sealer=sealer_for(s))
    try:
        case_id = app.submit_application(application_body([ID_NUMBER], names=[NAME, "", "", ""]), CLERK)
    finally:
        app.close()
    app = intake_app(s)
    try:
        assert app.get_case(case_id).application.household.members[0].name == NAME
    finally:
        app.close()


@pytest.mark.parametrize("size", [10, 1023, 1024, 50_000])
def test_small_states_are_stored_as_they_are_and_large_ones_compressed(size):
    state = b'{"x":"' + b"a" * size + b'"}'
    stored = SmallStatesPlain().compress(state)
    assert (stored == state) is (len(state) < SmallStatesPlain.threshold)
    assert SmallStatesPlain().decompress(stored) == state
    assert SmallStatesPlain().decompress(zlib.compress(state)) == state  # the library's form


def test_without_a_key_the_account_number_is_still_sealed(tmp_path):
    s = settings(tmp_path)
    case_id = save_case(s)
    raw = [p.read_bytes() for p in tmp_path.glob("intake.events.sqlite*")]
    assert raw and not any(ACCOUNT_NUMBER.encode() in blob for blob in raw)
    # Sealed with the Lifeline's own secret (generated once under the data directory).
    app = intake_app(s)
    try:
        account = app.get_case(case_id).application.bank_account
    finally:
        app.close()
    assert account.number_masked == ACCOUNT_NUMBER[:4] + "*" * (len(ACCOUNT_NUMBER) - 8) + ACCOUNT_NUMBER[-4:]
    assert sealer_for(s).unseal(account.number_sealed) == ACCOUNT_NUMBER


def test_with_a_key_names_and_id_numbers_are_not_stored_in_clear(tmp_path):
    s = settings(tmp_path, "unit-test-cipher-secret")
    case_id = save_case(s)
    assert secrets_in(stored_states(tmp_path)) == []
    # Not in the database files at all (WAL included), nor the case id's household.
    raw = [p.read_bytes() for p in tmp_path.glob("intake.events.sqlite*")]
    assert secrets_in(raw) == []

    assert not any(ACCOUNT_NUMBER.encode() in blob for blob in raw)

    # The application still reads the case back with the same key.
    app = intake_app(s)
    try:
        case = app.get_case(case_id)
        members = case.application.household.members
        assert [(m.name, m.id_number) for m in members] == [(NAME, ID_NUMBER), (SPOUSE, SPOUSE_ID)]
        assert case.status == "submitted"
        assert sealer_for(s).unseal(case.application.bank_account.number_sealed) == ACCOUNT_NUMBER
    finally:
        app.close()


def test_another_key_cannot_read_the_case(tmp_path):
    case_id = save_case(settings(tmp_path, "the-right-key"))
    app = intake_app(settings(tmp_path, "a-wrong-key"))
    try:
        with pytest.raises(Exception):  # noqa: B017 - the cipher's own error type
            app.repository.get(aggregate_id("case", case_id))
    finally:
        app.close()
