"""The partner simulator's death reports without a broker: what identifies a DeathReported is a
function of the death alone, so a restarted simulator reports the same death as the same record
(publishing is tested against the broker in tests/integration/test_partner_simulator.py)."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.domain.clock import FixedClock
from lifeline.rules.ids import make_resident_id
from lifeline.settings import Settings
from lifeline.simulators import partners
from lifeline.simulators.partners import DeathIn, PartnerSimulator

PERSON = make_resident_id("370502", date(1941, 3, 9), 17, female=False)


def simulator(tmp_path, moment: str) -> PartnerSimulator:
    sim = PartnerSimulator(Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path)}))
    sim.clock = FixedClock(moment)
    return sim


def test_the_same_death_is_the_same_record_in_a_restarted_simulator(tmp_path):
    death = DeathIn(id_number=PERSON, name="王老汉", date_of_death=date(2026, 11, 20))
    data, raw = simulator(tmp_path, "2026-11-21T09:00:00+08:00").death(death)
    _, raw_later = simulator(tmp_path, "2026-11-22T10:00:00+08:00").death(death)  # another process
    first, later = registry.decode(raw), registry.decode(raw_later)
    assert (first.id, first.source, first.sequence, first.subject) == (
        later.id, later.source, later.sequence, later.subject)
    assert first.subject == data["record_id"] == later.data["record_id"]
    assert T.EVENT_TOPIC["DeathReported"] == T.PARTNER_RECORDS
    assert T.key_for("DeathReported", first.subject, first.data) == data["record_id"]
    # another department's record of the same death, or another death, is another record
    other = DeathIn(id_number=PERSON, name="王老汉", date_of_death=date(2026, 11, 20), department="civil_affairs")
    assert partners.death_record_id("civil_affairs", PERSON, "2026-11-20") == \
        simulator(tmp_path, "2026-11-21T09:00:00+08:00").death(other)[0]["record_id"] != data["record_id"]
    assert partners.death_record_id("public_security", PERSON, "2026-11-19") != data["record_id"]


@pytest.mark.parametrize("bad", [
    {"id_number": PERSON[:-1] + ("1" if PERSON[-1] == "0" else "0")},  # check digit
    {"department": "tax"},
    {"date_of_death": "2026-02-30"},
    {"name": ""},
    {"surprise": 1},
])
def test_a_death_the_contract_would_refuse_is_refused(bad):
    with pytest.raises(ValidationError):
        DeathIn(**{"id_number": PERSON, "name": "王老汉", "date_of_death": "2026-11-20", **bad})


def test_the_reporting_departments_are_the_schemas():
    assert set(partners.DEATH_REPORTERS) == {"public_security", "civil_affairs"}
    assert DeathIn(id_number=PERSON.lower(), name="王", date_of_death="2026-11-20").department == "public_security"
