from __future__ import annotations

import copy
import re
from datetime import date
from fractions import Fraction

import pytest
import yaml

from lifeline.rules.policy import (
    PolicyBook,
    PolicyError,
    PolicyHolder,
    default_policy_book,
    shipped_policy_book,
)
from lifeline.settings import Settings
from tests.unit.rules.conftest import POLICY_FILE


def test_default_file_loads(book):
    assert book.counties == ("370502", "370602")
    assert len(book.versions("370502")) == 2


@pytest.mark.parametrize("county, on, urban, rural", [
    ("370502", date(2025, 7, 1), 98000, 80000),
    ("370502", date(2025, 12, 31), 98000, 80000),     # last year's decisions keep last year's standard
    ("370502", date(2026, 1, 1), 103000, 86000),
    ("370502001001", date(2026, 6, 1), 103000, 86000),  # village code reduced to its county
    ("370602", date(2026, 1, 1), 110000, 110000),
])
def test_effective_dating(book, county, on, urban, rural):
    p = book.policy_for(county, on)
    assert (p.urban_standard_fen, p.rural_standard_fen) == (urban, rural)


def test_example_county_figures(dongying_2026, zhifu_2026):
    p = dongying_2026
    assert p.low_income_multiplier == Fraction(3, 2) and zhifu_2026.low_income_multiplier == 2
    assert (p.min_top_up_urban_fen, p.min_top_up_rural_fen) == (49000, 35500)
    assert [t.code for t in p.tiers] == ["A", "B", "C", "D"] and p.tiers[0].full
    assert p.emergency_township_cap_fen <= p.emergency_county_cap_fen
    assert "bank" in p.mandatory_departments and p.tekun_standard_fen == 133900


@pytest.mark.parametrize("county, on, fragment", [
    ("370503", date(2026, 1, 1), "no policy configured"),
    ("370502", date(2025, 6, 30), "no policy for county 370502 in force"),
    ("370602", date(2025, 12, 31), "in force"),
    ("99", date(2026, 1, 1), "county_code"),
])
def test_lookup_errors(book, county, on, fragment):
    with pytest.raises(PolicyError, match=fragment):
        book.policy_for(county, on)


def _mutate(raw, path, value=None, delete=False):
    data = copy.deepcopy(raw)
    node = data
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize("path, value, message", [
    (["counties", 0, "standards", "urban_fen"], -1, "counties[0].standards.urban_fen: must be >= 0"),
    (["counties", 0, "standards", "urban_fen"], "980 yuan",
     "counties[0].standards.urban_fen: must be of type integer"),
    (["counties", 0, "standards", "urban_fen"], 980.5,
     "counties[0].standards.urban_fen: must be of type integer"),
    (["counties", 1, "standards", "rural_fen"], 0, "counties[1].standards.rural_fen: must be > 0"),
    (["counties", 0, "county_code"], "990101", "counties[0].county_code: unknown county code"),
    (["counties", 0, "county_code"], "370500", "counties[0].county_code: unknown county code"),
    # Well-formed, but no such county in the GB/T 2260 register (东营市 has 370502-370523).
    (["counties", 0, "county_code"], "370599", "counties[0].county_code: unknown county code"),
    (["counties", 0, "county_code"], "37050", "counties[0].county_code: must match"),
    (["counties", 0, "nickname"], "x", "counties[0].nickname: unknown field"),
    (["counties", 0, "standards", "bonus_fen"], 1, "counties[0].standards.bonus_fen: unknown field"),
    (["counties", 0, "mandatory_departments"], ["bank", "civil_affairs"],
     "counties[0].mandatory_departments[1]: must be one of"),
    (["counties", 0, "low_income_multiplier"], "0.5",
     "counties[0].low_income_multiplier: must be between 1 and 3"),
    (["counties", 0, "low_income_multiplier"], "lots",
     "counties[0].low_income_multiplier: must be a decimal number"),
    (["counties", 0, "effective_from"], "2025-13-01", "counties[0].effective_from: must be a date"),
    (["counties", 0, "min_top_up", "urban_fen"], 99000, "counties[0].min_top_up.urban_fen: must be <="),
    (["counties", 0, "emergency", "township_cap_fen"], 9_000_000,
     "counties[0].emergency.township_cap_fen: must be <= county_cap_fen"),
    (["counties", 0, "tiers"], [{"code": "A", "full": True}, {"code": "B", "min_gap_ratio": "0"}],
     "counties[0].tiers: at least three banded tiers"),
    (["counties", 2, "tiers", 1, "urban_fen"], 200000, "counties[2].tiers[1].urban_fen: must be <="),
    (["counties", 1, "effective_from"], "2025-07-01", "counties[1].effective_from: duplicates"),
    (["schema_version"], 2, "schema_version: must be 1"),
])
def test_bad_policy_refused(raw_policy, path, value, message):
    with pytest.raises(PolicyError) as exc:
        PolicyBook.from_mapping(_mutate(raw_policy, path, value))
    assert message in str(exc.value)
    assert exc.value.field == message.split(":")[0]


def test_missing_required_field_named(raw_policy):
    with pytest.raises(PolicyError, match=r"counties\[0\]\.standards\.tekun_fen: required"):
        PolicyBook.from_mapping(_mutate(raw_policy, ["counties", 0, "standards", "tekun_fen"],
                                        delete=True))


def test_float_multiplier_is_read_exactly(raw_policy):
    book = PolicyBook.from_mapping(_mutate(raw_policy, ["counties", 0, "low_income_multiplier"], 1.5))
    assert book.policy_for("370502", date(2025, 8, 1)).low_income_multiplier == Fraction(3, 2)


def _write(tmp_path, data, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


HOLDER_CASES = [
    (["counties", 1, "standards", "urban_fen"], -5,              # negative standard
     "counties[1].standards.urban_fen: must be >= 0"),
    (["counties", 1, "standards", "urban_fen"], "lots",          # wrong type
     "counties[1].standards.urban_fen: must be of type integer"),
    (["counties", 1, "low_income_multiplier"], True,             # wrong type (YAML boolean)
     "counties[1].low_income_multiplier: must be of type string or number"),
    (["counties", 1, "county_code"], "990101",                   # unknown county
     "counties[1].county_code: unknown county code"),
]


@pytest.mark.parametrize("path, value, message", HOLDER_CASES)
def test_holder_keeps_policy_in_force(tmp_path, raw_policy, path, value, message):
    holder = PolicyHolder(PolicyBook.load(POLICY_FILE))
    before = holder.book
    bad = _write(tmp_path, _mutate(raw_policy, path, value))
    with pytest.raises(PolicyError) as exc:
        holder.reload(bad)
    assert message in str(exc.value) and str(bad) in str(exc.value)
    assert exc.value.field == message.split(":")[0]
    assert holder.book is before
    assert holder.policy_for("370502", date(2026, 1, 1)).urban_standard_fen == 103000


@pytest.mark.parametrize("path, value, message", HOLDER_CASES)
def test_holder_replace_keeps_policy_in_force(raw_policy, path, value, message):
    holder = PolicyHolder(PolicyBook.load(POLICY_FILE))
    before = holder.book
    with pytest.raises(PolicyError, match=re.escape(message)):
        holder.replace(_mutate(raw_policy, path, value))
    assert holder.book is before


@pytest.mark.parametrize("path, value, message", [
    (["counties", 0, "mandatory_departments"], [],
     "counties[0].mandatory_departments: must have at least 1 item"),
    (["counties", 0, "grace_periods", "graduate_employed_default_months"], 13,
     "counties[0].grace_periods.graduate_employed_default_months: must be between"),
    (["counties", 0, "grace_periods", "epidemic_default_months"], 2,
     "counties[0].grace_periods.epidemic_default_months: must be between"),
    (["counties", 0, "tiers", 2, "min_gap_ratio"], "0.7",
     "counties[0].tiers: min_gap_ratio must strictly decrease"),
    (["counties", 0, "tiers", 3, "min_gap_ratio"], "0.1",
     "counties[0].tiers: the last banded tier must have min_gap_ratio 0"),
    (["counties", 0, "standards", "tekun_fen"], -1, "counties[0].standards.tekun_fen: must be >= 0"),
    (["counties", 0, "asset_limits", "per_capita_fen"], -1,
     "counties[0].asset_limits.per_capita_fen: must be >= 0"),
])
def test_more_bad_policies_refused(raw_policy, path, value, message):
    with pytest.raises(PolicyError) as exc:
        PolicyBook.from_mapping(_mutate(raw_policy, path, value))
    assert message in str(exc.value)


def test_holder_reload_swaps_on_success(tmp_path, raw_policy):
    holder = PolicyHolder(PolicyBook.load(POLICY_FILE))
    good = _write(tmp_path, _mutate(raw_policy, ["counties", 1, "standards", "urban_fen"], 104000))
    holder.reload(good)
    assert holder.policy_for("370502", date(2026, 1, 1)).urban_standard_fen == 104000


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyBook.load(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("counties: [\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        PolicyBook.load(broken)


def test_env_override(tmp_path, raw_policy, monkeypatch):
    path = _write(tmp_path, _mutate(raw_policy, ["counties", 1, "standards", "urban_fen"], 111111))
    settings = Settings.from_env({"LIFELINE_POLICY_FILE": str(path)})
    assert default_policy_book(settings).policy_for("370502", date(2026, 2, 1)).urban_standard_fen == 111111
    # The process environment is read by Settings only, never here.
    monkeypatch.setenv("LIFELINE_POLICY_FILE", str(path))
    assert shipped_policy_book().policy_for("370502", date(2026, 2, 1)).urban_standard_fen != 111111
