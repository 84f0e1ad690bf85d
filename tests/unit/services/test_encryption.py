"""Personal data is encrypted at rest when a cipher key is configured (SPEC: names and ID
numbers never lie in the event store in clear)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lifeline.domain.aggregate import aggregate_id
from lifeline.stores.eventstore import event_store_env
from lifeline.settings import Settings
from services.intake.application import IntakeApplication

from . import CLERK, application_body, pid

NAME = "司马光明"
SPOUSE = "欧阳晓燕"
ID_NUMBER = pid(77)
SPOUSE_ID = pid(78, female=True)


def settings(data_dir: Path, key: str = "") -> Settings:
    env = {"LIFELINE_DATA_DIR": str(data_dir)}
    if key:
        env["LIFELINE_CIPHER_KEY"] = key
    return Settings.from_env(env)


def save_case(s: Settings) -> str:
    app = IntakeApplication(env=event_store_env(s, "intake"))
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


def test_cipher_key_configures_encryption(tmp_path):
    env = event_store_env(settings(tmp_path, "k"), "intake")
    assert env["CIPHER_TOPIC"] == "eventsourcing.cipher:AESCipher"
    assert env["CIPHER_KEY"] and env["CIPHER_KEY"] != "k"  # derived, not the secret itself


def test_without_a_key_names_and_id_numbers_are_in_clear(tmp_path):
    # The control: proves the search below would find them if they were there.
    save_case(settings(tmp_path))
    assert secrets_in(stored_states(tmp_path)) == [NAME, SPOUSE, ID_NUMBER, SPOUSE_ID]


def test_with_a_key_names_and_id_numbers_are_not_stored_in_clear(tmp_path):
    s = settings(tmp_path, "unit-test-cipher-secret")
    case_id = save_case(s)
    assert secrets_in(stored_states(tmp_path)) == []
    # Not in the database files at all (WAL included), nor the case id's household.
    raw = [p.read_bytes() for p in tmp_path.glob("intake.events.sqlite*")]
    assert secrets_in(raw) == []

    # The application still reads the case back with the same key.
    app = IntakeApplication(env=event_store_env(s, "intake"))
    try:
        case = app.get_case(case_id)
        members = case.application["members"]
        assert [(m["name"], m["id_number"]) for m in members] == [(NAME, ID_NUMBER), (SPOUSE, SPOUSE_ID)]
        assert case.status == "submitted"
    finally:
        app.close()


def test_another_key_cannot_read_the_case(tmp_path):
    case_id = save_case(settings(tmp_path, "the-right-key"))
    app = IntakeApplication(env=event_store_env(settings(tmp_path, "a-wrong-key"), "intake"))
    try:
        with pytest.raises(Exception):  # noqa: B017 - the cipher's own error type
            app.repository.get(aggregate_id("case", case_id))
    finally:
        app.close()
