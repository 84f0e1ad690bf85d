"""The clocks (lifeline/domain/clock.py) and `lifeline clock set/advance/show/reset`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from lifeline import cli
from lifeline.domain.clock import FixedClock, SharedClock, SystemClock, clock_for, parse_duration
from lifeline.rules.periods import SHANGHAI, first_payment_period
from lifeline.settings import Settings

LAST_SECOND = "2026-12-31T23:59:59+08:00"


# --- parse_duration ---------------------------------------------------------------------
@pytest.mark.parametrize("text, delta", [
    ("7d", timedelta(days=7)), ("3h", timedelta(hours=3)), ("30m", timedelta(minutes=30)),
    ("10s", timedelta(seconds=10)), (" 0s ", timedelta(0)), ("400d", timedelta(days=400)),
])
def test_durations_are_one_number_and_one_unit(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "7", "d", "7 d", "1d2h", "-1d", "1.5h", "7w", "7D", "P7D"])
def test_other_durations_are_refused_naming_the_forms(text):
    with pytest.raises(ValueError, match="7d, 3h, 30m or 10s"):
        parse_duration(text)


# --- SystemClock, FixedClock -------------------------------------------------------------
def test_the_system_clock_is_aware_and_in_shanghai():
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(hours=8)
    assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_a_fixed_clock_stands_still_until_moved():
    clock = FixedClock(LAST_SECOND)
    assert clock.now() == clock.now() == datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)
    clock.advance("1s")
    assert clock.now().isoformat() == "2027-01-01T00:00:00+08:00"
    clock.advance(timedelta(days=31))
    assert clock.now().isoformat() == "2027-02-01T00:00:00+08:00"
    clock.set("2026-06-30T16:00:00Z")  # another offset: the same moment, shown in Shanghai
    assert clock.now().isoformat() == "2026-07-01T00:00:00+08:00"


def test_a_fixed_clock_refuses_a_naive_moment():
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock("2026-12-31T23:59:59")
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 12, 31, 23, 59, 59))


def test_the_last_second_of_the_year_pays_from_january():
    assert first_payment_period(FixedClock(LAST_SECOND).now()) == "2027-01"
    # The same instant in UTC is still 31 December in Beijing.
    assert first_payment_period(FixedClock("2026-12-31T15:59:59Z").now()) == "2027-01"


# --- SharedClock -------------------------------------------------------------------------
def test_without_its_file_the_shared_clock_reads_the_system_time(tmp_path):
    clock = SharedClock(tmp_path / "clock.json")
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert not clock.path.exists()


def test_every_reader_of_the_file_sees_what_one_writer_set(tmp_path):
    path = tmp_path / "sub" / "clock.json"
    writer, reader = SharedClock(path), SharedClock(path)
    assert writer.set(LAST_SECOND).isoformat() == LAST_SECOND
    assert reader.now().isoformat() == LAST_SECOND
    assert json.loads(path.read_text()) == {"moment": LAST_SECOND}
    assert writer.advance("10s").isoformat() == "2027-01-01T00:00:09+08:00"
    assert reader.now().isoformat() == "2027-01-01T00:00:09+08:00"
    writer.set("2027-03-01T00:00:00+08:00")
    writer.advance(timedelta(hours=3))
    assert reader.now().isoformat() == "2027-03-01T03:00:00+08:00"
    assert not list(path.parent.glob("*.tmp"))  # written whole, then renamed into place


def test_reset_gives_the_system_time_back(tmp_path):
    clock = SharedClock(tmp_path / "clock.json")
    clock.set(LAST_SECOND)
    clock.reset()
    clock.reset()  # nothing to remove: fine
    assert not clock.path.exists()
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_advancing_an_unset_shared_clock_starts_from_now(tmp_path):
    clock = SharedClock(tmp_path / "clock.json")
    moment = clock.advance("7d")
    assert abs(moment - (datetime.now(SHANGHAI) + timedelta(days=7))) < timedelta(seconds=5)
    assert clock.now() == moment  # and stands still there


def test_clock_for_gives_the_shared_clock_only_with_the_test_clock_on(tmp_path):
    on = clock_for(Settings.from_env({"LIFELINE_TEST_CLOCK": "1", "LIFELINE_DATA_DIR": str(tmp_path)}))
    assert isinstance(on, SharedClock) and on.path == tmp_path.resolve() / "clock.json"
    assert isinstance(clock_for(Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path)})), SystemClock)


# --- lifeline clock ----------------------------------------------------------------------
@pytest.fixture
def env(tmp_path, monkeypatch):
    """A test Lifeline's environment: its data dir and the test clock switched on."""
    monkeypatch.setenv("LIFELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LIFELINE_TEST_CLOCK", "1")
    monkeypatch.delenv("LIFELINE_ENVIRONMENT", raising=False)
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["clock", *args])
    out = capsys.readouterr()
    return rc, out.out.strip(), out.err


def test_clock_set_freezes_the_moment_every_process_reads(env, capsys):
    assert run(capsys, "set", LAST_SECOND)[:2] == (0, LAST_SECOND)
    # What a service started with the same settings reads.
    service_clock = clock_for(Settings.from_env())
    assert service_clock.now().isoformat() == LAST_SECOND
    assert run(capsys, "show")[:2] == (0, LAST_SECOND)


def test_clock_set_shows_another_offset_in_shanghai_time(env, capsys):
    assert run(capsys, "set", "2026-12-31T15:59:59Z")[:2] == (0, LAST_SECOND)


def test_clock_advance_moves_every_unit(env, capsys):
    run(capsys, "set", LAST_SECOND)
    assert run(capsys, "advance", "10s")[:2] == (0, "2027-01-01T00:00:09+08:00")
    assert run(capsys, "advance", "30m")[:2] == (0, "2027-01-01T00:30:09+08:00")
    assert run(capsys, "advance", "3h")[:2] == (0, "2027-01-01T03:30:09+08:00")
    assert run(capsys, "advance", "7d")[:2] == (0, "2027-01-08T03:30:09+08:00")
    assert SharedClock(env / "clock.json").now().isoformat() == "2027-01-08T03:30:09+08:00"


def test_clock_reset_gives_the_system_time_back(env, capsys):
    run(capsys, "set", LAST_SECOND)
    rc, out, err = run(capsys, "reset")
    assert rc == 0 and not (env / "clock.json").exists()
    assert abs(datetime.fromisoformat(out) - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert "not set" in err
    rc, out, err = run(capsys, "show")
    assert rc == 0 and abs(datetime.fromisoformat(out) - datetime.now(timezone.utc)) < timedelta(seconds=5)


@pytest.mark.parametrize("moment", ["2026-12-31T23:59:59", "tomorrow", "2026-13-01T00:00:00+08:00"])
def test_clock_set_refuses_a_moment_without_offset_or_malformed(env, capsys, moment):
    rc, out, err = run(capsys, "set", moment)
    assert rc == 2 and out == ""
    assert "lifeline clock set:" in err and "2026-12-31T23:59:59+08:00" in err and "Traceback" not in err
    assert not (env / "clock.json").exists()


def test_clock_advance_refuses_a_bad_duration(env, capsys):
    run(capsys, "set", LAST_SECOND)
    rc, out, err = run(capsys, "advance", "1w")
    assert rc == 2 and out == "" and "7d, 3h, 30m or 10s" in err
    assert SharedClock(env / "clock.json").now().isoformat() == LAST_SECOND  # unchanged


def test_clock_is_refused_unless_the_test_clock_is_on(env, monkeypatch, capsys):
    monkeypatch.delenv("LIFELINE_TEST_CLOCK")
    for args in (["set", LAST_SECOND], ["advance", "7d"], ["show"], ["reset"]):
        rc, out, err = run(capsys, *args)
        assert rc == 2 and out == ""
        assert "refused without LIFELINE_TEST_CLOCK=1" in err
    assert not (env / "clock.json").exists()


def test_clock_is_refused_in_production(env, monkeypatch, capsys):
    monkeypatch.setenv("LIFELINE_ENVIRONMENT", "production")
    monkeypatch.setenv("LIFELINE_CIPHER_KEY", "a production secret")
    # The test clock switched on: the settings themselves refuse it.
    rc, out, err = run(capsys, "set", LAST_SECOND)
    assert rc == 2 and out == "" and "LIFELINE_TEST_CLOCK=true is refused" in err and "Traceback" not in err
    # Switched off: the command refuses.
    monkeypatch.delenv("LIFELINE_TEST_CLOCK")
    rc, out, err = run(capsys, "set", LAST_SECOND)
    assert rc == 2 and out == "" and "refused in production" in err
    assert not (env / "clock.json").exists()


def test_an_unreadable_clock_file_is_reported_not_a_traceback(env, capsys):
    (env / "clock.json").write_text("not json")
    rc, out, err = run(capsys, "show")
    assert rc == 2 and "unreadable" in err and "lifeline clock reset" in err
    assert run(capsys, "reset")[0] == 0
