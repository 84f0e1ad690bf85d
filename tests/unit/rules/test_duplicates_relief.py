"""Intake's rules of issue 11 on their aggregates: one person, one file per benefit (the person
index, a held application) and the emergency green channel (caps by level, counted per case;
post-approval by another person, once, with its clock).

2026 around National Day: Oct 1-7 rest; Sat 10-10 a make-up working day; Sun 10-11 rest.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from lifeline.contracts import registry
from lifeline.domain.aggregate import Meta
from lifeline.domain.values import Application
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.policy import EmergencyCaps, shipped_policy_book
from services.intake.domain import AcceptanceNotAllowed, AcceptanceRuleBroken, Case
from services.intake.outbound import OUTBOUND
from services.intake.persons import Person, fingerprint, indexed_members
from services.intake.relief import (
    EmergencyRelief,
    GrantNotFound,
    ReliefForbidden,
    ReliefNotAllowed,
    ReliefRuleBroken,
    check_cap,
)
from tests.unit.services import CASEWORKER, CLERK, COUNTY_OFFICER, REVIEWER, application, pid

CAPS = shipped_policy_book().policy_for("370502", date(2026, 9, 30)).emergency
IDS = [pid(71), pid(72, female=True)]
OTHER_REVIEWER = Meta("reviewer-002", "reviewer", "370502101")
OTHER_COUNTY = Meta("county-002", "county_officer", "370502")


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=SHANGHAI)


def case(case_id: str = "C-RULES-1", ids: list[str] = IDS, **overrides) -> Case:
    return Case.register(application(case_id, ids, **overrides), CLERK)


def person(number: str = IDS[0]) -> Person:
    return Person.index(fingerprint("secret", number), CLERK)


def public(event) -> dict:
    out = OUTBOUND(event)
    registry.validate_data(out.name, out.data)
    return out.data


# --- one person, one file per benefit ---------------------------------------------------------
def test_the_index_key_is_a_keyed_fingerprint_never_the_number():
    key = fingerprint("secret", IDS[0])
    assert IDS[0] not in key and IDS[0][:14] not in key and len(key) == 32
    assert key == fingerprint("secret", IDS[0].lower()) != fingerprint("other-secret", IDS[0])
    assert Person.create_id(key) != Person.create_id(fingerprint("secret", IDS[1]))


def test_a_person_covered_or_on_an_open_application_is_a_suspected_duplicate():
    p = person()
    assert p.matches("C-2", "dibao") == []
    p.open("C-1", "dibao", CLERK)
    assert p.matches("C-1", "dibao") == []                   # its own case
    assert p.matches("C-2", "dibao") == [("C-1", "open_application")]
    assert p.matches("C-2", "tekun") == [("C-1", "open_application")]   # one basic-living guarantee
    assert p.matches("C-2", "linshi_jinan") == []            # another benefit
    p.close("C-1", "approved", CLERK)
    p.cover("C-1", "tekun", CLERK)                           # a 低保 application approved as 特困
    assert p.matches("C-2", "dibao") == [("C-1", "covered")]
    p.uncover("C-1", "terminated", CLERK)
    assert p.matches("C-2", "dibao") == [] and p.covered == {} and p.open_cases == {}


def test_whose_files_the_index_keeps_the_counted_members_or_the_single_person():
    obligor = pid(73)
    app = application("C-X", [*IDS, obligor])
    members = [{**m, "co_resident": m["id_number"] != obligor}
               for m in app.to_wire()["members"]]
    living_apart = Application.from_wire({**app.to_wire(), "members": members})
    assert indexed_members(living_apart) == IDS
    single = Application.from_wire({**app.to_wire(), "single_person_member_id": IDS[1]})
    assert indexed_members(single) == [IDS[1]]


def test_a_held_case_is_not_accepted_until_the_hold_is_decided_once():
    c = case()
    c.hold_as_duplicate([("C-0", "open_application"), ("C-00", "covered"), ("C-0", "covered")],
                        "2026-09-30T10:00:00+08:00", CLERK)
    held = c.pending_events[-1]
    assert public(held)["other_case_ids"] == ["C-0", "C-00"] and public(held)["reasons"] == [
        "covered", "open_application"]
    assert c.status == "suspected_duplicate"
    for decide in (lambda: c.accept("材料齐全", "2026-09-30T11:00:00+08:00", CLERK),
                   lambda: c.refuse_acceptance("x", "2026-09-30T11:00:00+08:00", CLERK)):
        with pytest.raises(AcceptanceNotAllowed) as info:
            decide()
        assert info.value.rule == "suspected_duplicate" and "C-0, C-00" in str(info.value)
    with pytest.raises(AcceptanceRuleBroken):
        c.decide_duplicate("proceed", "  ", "2026-09-30T11:00:00+08:00", CASEWORKER)
    c.decide_duplicate("proceed", "同名不同人", "2026-09-30T11:00:00+08:00", CASEWORKER)
    assert public(c.pending_events[-1])["decision"] == "proceed" and c.status == "submitted"
    with pytest.raises(AcceptanceNotAllowed) as info:
        c.decide_duplicate("withdraw", "again", "2026-09-30T12:00:00+08:00", CASEWORKER)
    assert info.value.rule == "not_held"
    c.accept("材料齐全", "2026-09-30T12:00:00+08:00", CLERK)
    assert c.status == "accepted" and c.duplicate_of == ["C-0", "C-00"]


def test_a_withdrawn_case_ends_there():
    c = case()
    c.hold_as_duplicate([("C-0", "open_application")], "2026-09-30T10:00:00+08:00", CLERK)
    c.decide_duplicate("withdraw", "已在别处申请", "2026-09-30T11:00:00+08:00", CASEWORKER)
    assert c.status == "withdrawn"
    c.note_verification("eligible", 0, CLERK)   # a late event moves nothing
    assert c.status == "withdrawn"


# --- the emergency green channel ----------------------------------------------------------------
def relief_on(c: Case) -> EmergencyRelief:
    return EmergencyRelief.open(c, REVIEWER)


def test_emergency_caps_by_level_inclusive_and_counted_per_case():
    assert (CAPS.township_cap_fen, CAPS.county_cap_fen) == (300000, 1500000)
    check_cap(300000, 0, "township", CAPS)                  # the cap itself: inclusive
    with pytest.raises(ReliefRuleBroken) as info:
        check_cap(300001, 0, "township", CAPS)
    assert info.value.rule == "emergency_cap" and info.value.details["cap_fen"] == 300000
    check_cap(1500000, 0, "county", CAPS)
    with pytest.raises(ReliefRuleBroken):
        check_cap(1, 1500000, "county", CAPS)
    r = relief_on(c := case(urgency="urgent"))
    r.grant("ER-1", c, 200000, "突发重病", CAPS, at("2026-09-30"), REVIEWER)
    with pytest.raises(ReliefRuleBroken) as info:             # split grants pass no cap
        r.grant("ER-2", c, 100001, "再次", CAPS, at("2026-09-30"), CASEWORKER)
    assert info.value.details == {"cap_fen": 300000, "approval_level": "township", "granted_fen": 200000}
    r.grant("ER-2", c, 100000, "再次", CAPS, at("2026-09-30"), CASEWORKER)
    r.grant("ER-3", c, 1000000, "县级审批", CAPS, at("2026-09-30"), COUNTY_OFFICER)
    assert [g["approval_level"] for g in r.grants.values()] == ["township", "township", "county"]


def test_relief_comes_first_only_on_an_urgent_case_before_the_decision():
    calm = case()
    with pytest.raises(ReliefNotAllowed) as info:
        relief_on(calm).grant("ER-1", calm, 100, "x", CAPS, at("2026-09-30"), REVIEWER)
    assert info.value.rule == "not_urgent"
    for status, rule in (("approved", "case_decided"), ("not_accepted", "case_decided"),
                         ("withdrawn", "case_decided"), ("suspected_duplicate", "suspected_duplicate")):
        c = case(urgency="critical")
        c.status = status
        with pytest.raises(ReliefNotAllowed) as info:
            relief_on(c).grant("ER-1", c, 100, "x", CAPS, at("2026-09-30"), REVIEWER)
        assert info.value.rule == rule
    for status in ("submitted", "materials_requested", "accepted", "verified"):
        c = case(urgency="critical")
        c.status = status
        relief_on(c).grant("ER-1", c, 100, "x", CAPS, at("2026-09-30"), REVIEWER)
    with pytest.raises(ReliefForbidden):
        relief_on(c).grant("ER-1", c, 100, "x", CAPS, at("2026-09-30"), CLERK)


def test_the_grant_carries_exactly_its_contract_and_starts_the_post_approval_clock():
    c = case(urgency="urgent")
    r = relief_on(c)
    r.grant("ER-1", c, 200000, "突发重病", CAPS, at("2026-09-30"), REVIEWER)   # across National Day
    granted, deadline = r.pending_events[-2:]
    data = public(granted)
    assert data["post_approval_due_date"] == "2026-10-13"      # 10-08, 09, 10 (make-up), 12, 13
    assert (data["township_code"], data["approval_level"], data["granted_by"]) == (
        "370502101", "township", "reviewer-001")
    assert data["bank_account"] == c.application.to_wire()["bank_account"]
    d = public(deadline)
    assert (d["deadline_id"], d["clock"], d["responsible_office"], d["due_at"]) == (
        "C-RULES-1/emergency_post_approval", "emergency_post_approval", "370502101", "2026-10-14T00:00:00+08:00")
    r.grant("ER-2", c, 1000, "再次", CAPS, at("2026-10-08"), COUNTY_OFFICER)
    d2 = public(r.pending_events[-1])
    assert d2["deadline_id"] == "C-RULES-1/emergency_post_approval/2" and d2["responsible_office"] == "370502"
    five = EmergencyCaps(300000, 1500000, post_approval_working_days=1)
    r.grant("ER-3", c, 1000, "三", five, at("2026-09-30"), COUNTY_OFFICER)
    assert public(r.pending_events[-2])["post_approval_due_date"] == "2026-10-08"


def test_post_approval_by_another_person_of_the_grants_level_once_clock_met_or_late():
    c = case(urgency="urgent")
    r = relief_on(c)
    r.grant("ER-T", c, 100000, "乡镇", CAPS, at("2026-09-30"), REVIEWER)
    r.grant("ER-C", c, 500000, "县级", CAPS, at("2026-09-30"), COUNTY_OFFICER)
    with pytest.raises(ReliefNotAllowed) as info:
        r.decide("ER-T", "approve", "ok", at("2026-10-08"), REVIEWER)
    assert info.value.rule == "four_eyes"
    with pytest.raises(ReliefForbidden):
        r.decide("ER-C", "approve", "ok", at("2026-10-08"), OTHER_REVIEWER)    # a county grant
    with pytest.raises(GrantNotFound):
        r.decide("ER-X", "approve", "ok", at("2026-10-08"), OTHER_REVIEWER)
    r.decide("ER-T", "approve", "补充审批通过", at("2026-10-13", 23), OTHER_REVIEWER)
    decided, cleared = (public(e) for e in r.pending_events[-2:])
    assert (decided["decision"], decided["amount_fen"], decided["decided_by"]) == ("approved", 100000, "reviewer-002")
    assert (cleared["deadline_id"], cleared["outcome"]) == ("C-RULES-1/emergency_post_approval", "met")
    r.decide("ER-C", "refuse", "不符合条件", at("2026-10-14", 0), OTHER_COUNTY)   # 24:00 of the due day
    decided, cleared = (public(e) for e in r.pending_events[-2:])
    assert (decided["decision"], cleared["outcome"]) == ("refused", "late")
    assert {g["grant_id"]: g["state"] for g in r.grants.values()} == {
        "ER-T": "post_approved", "ER-C": "post_approval_refused"}
    with pytest.raises(ReliefNotAllowed) as info:
        r.decide("ER-T", "refuse", "again", at("2026-10-14"), COUNTY_OFFICER)
    assert info.value.rule == "decided_once"
