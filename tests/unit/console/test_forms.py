"""The one reading of what a form alone can know, shared by every screen: a sign only where the
service is to judge it, an amount field's value the inverse of the parse, an id fit for a path."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from lifeline.console.forms import checked_id, fen_of, typed, yuan_input


def test_a_minus_sign_is_read_only_where_the_service_judges_it():
    assert fen_of("-5") is None
    assert fen_of("-5", negative=True) == -500
    assert fen_of("-1,200.5", negative=True) == -120050
    assert fen_of("--5", negative=True) is None


def test_a_chinese_keyboards_comma_groups_thousands_too_and_absurd_amounts_are_none():
    assert fen_of("100，000.00") == 10_000_000
    assert fen_of("9" * 13) == int("9" * 13) * 100
    assert fen_of("9" * 14) is None


@pytest.mark.parametrize("fen", [0, 5, 50, 300_000, 123_456, 10_000_000])
def test_an_amount_field_shows_what_reads_back_as_the_same_fen(fen):
    assert fen_of(yuan_input(fen)) == fen
    assert yuan_input(300_000) == "3000.00"


def test_an_id_is_put_into_a_path_only_as_the_services_write_them():
    assert checked_id("C-0123456789ABCDEF0123") == "C-0123456789ABCDEF0123"
    for bad in ("../x", "a/b", "C", "-C123", "C 123"):
        with pytest.raises(HTTPException) as raised:
            checked_id(bad)
        assert raised.value.status_code == 404


def test_a_filter_shows_again_what_was_typed_stripped():
    assert typed(region=" 370502 ", period=None) == {"region": "370502", "period": ""}
