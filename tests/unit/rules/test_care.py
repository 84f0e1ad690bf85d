"""特困 support (issue 17, parts 1-2): legal capacity from the resident ID and the disability
recorded, the support arrangement, the guardian (Civil Code arts. 27-32), the care agreement, and
the visits with their clock (services/verification/care.py)."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta

import pytest

from lifeline.domain.aggregate import Meta
from lifeline.rules import clocks
from lifeline.rules.ids import make_resident_id
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.policy import PolicyBook, PolicyError
from services.verification.care import (
    Care, CareNotAllowed, CareRuleBroken, Ward, capacity_in_force, check_agreement, check_arrangement,
    check_guardian, check_visit, is_credit_code, presumed_capacity, visit_due,
)
from services.verification.outbound import OUTBOUND

CASE = "C-CARE0001"
VILLAGE = "370502101001"
BY = Meta("caseworker-001", "caseworker", VILLAGE[:9])
HOME = "12370502MB1234567D"       # a care home's unified social credit code (GB 32100)
PROVIDER = "52370502MJD123456N"
ORPHAN_ID = make_resident_id("370502", date(2009, 3, 10), 7, female=False)
GRANDMOTHER_ID = make_resident_id("370502", date(1958, 6, 18), 88, female=True)


def at(day: str, time: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}:00+08:00")


def ward(born: date = date(2009, 3, 10), kind: str | None = "intellectual", grade: int | None = 2) -> Ward:
    return Ward(make_resident_id("370502", born, 7, female=False), "王小明", born, kind, grade)


def codes(exc: pytest.ExceptionInfo) -> tuple[str, str]:
    return exc.value.rule, exc.value.field


# --- registered codes ---------------------------------------------------------------------
def test_a_care_home_or_provider_is_named_by_a_unified_social_credit_code():
    assert is_credit_code(HOME) and is_credit_code(PROVIDER)
    assert is_credit_code("91350100M000100Y43")        # a published code, check character 3
    assert not is_credit_code(HOME[:-1] + "E")          # wrong check character
    assert not is_credit_code("12370502MB1234567")      # 17 characters
    assert not is_credit_code("12370502IB123456 7")     # I (and space) are not in the alphabet
    assert not is_credit_code("12ABCDEFMB1234567D")     # places 3-8 are a region code
    assert not is_credit_code(HOME.lower())


# --- legal capacity ---------------------------------------------------------------------------
@pytest.mark.parametrize("born, kind, grade, expected", [
    (date(2020, 1, 1), None, None, "none"),                     # 6: under 8 (art. 20)
    (date(2009, 3, 10), None, None, "limited"),                 # 17: a minor (art. 19)
    (date(2009, 3, 10), "intellectual", 2, "none"),             # 17, severe intellectual disability
    (date(2008, 11, 25), None, None, "full"),                   # 18 today (art. 17)
    (date(1990, 1, 1), "mental", 1, "none"),                    # an adult, severe mental disability (art. 21)
    (date(1990, 1, 1), "intellectual", 3, "limited"),           # moderate (art. 22)
    (date(1990, 1, 1), "intellectual", 4, "full"),              # mild: presumed capable
    (date(1990, 1, 1), "physical", 1, "full"),                  # a physical disability says nothing of capacity
    (date(1950, 1, 1), None, None, "full"),
])
def test_legal_capacity_is_presumed_from_the_resident_ids_age_and_the_disability(born, kind, grade, expected):
    assert presumed_capacity(ward(born, kind, grade), date(2026, 11, 25)) == expected


def test_a_stated_capacity_overrides_the_presumption_within_the_civil_code():
    today = date(2026, 11, 25)
    assert capacity_in_force(ward(date(1990, 1, 1), None, None), today, "none") == "none"  # a court's declaration
    assert capacity_in_force(ward(date(2009, 3, 10), None, None), today, "full") == "full"  # 17, own labour (art. 18)
    with pytest.raises(CareRuleBroken) as exc:
        capacity_in_force(ward(date(2011, 3, 10), None, None), today, "full")           # 15
    assert codes(exc) == ("legal_capacity", "legal_capacity")
    with pytest.raises(CareRuleBroken):
        capacity_in_force(ward(date(2020, 1, 1), None, None), today, "limited")         # 6: none (art. 20)
    assert capacity_in_force(ward(), today, None) == "none"


# --- the arrangement --------------------------------------------------------------------------
def test_concentrated_support_names_its_care_home_and_a_choice_not_the_persons_says_why():
    check_arrangement("concentrated", HOME, True, "")
    check_arrangement("dispersed", None, False, "监护人代为选择")
    for args, expected in [
        (("concentrated", None, True, ""), ("care_home_required", "care_home_code")),
        (("concentrated", HOME[:-1] + "E", True, ""), ("care_home_code", "care_home_code")),
        (("dispersed", HOME, True, ""), ("care_home_for_concentrated", "care_home_code")),
        (("dispersed", None, False, ""), ("choice_reason", "note")),
    ]:
        with pytest.raises(CareRuleBroken) as exc:
            check_arrangement(*args)
        assert codes(exc) == expected


# --- the guardian -----------------------------------------------------------------------------
def test_a_guardian_is_an_adult_other_than_the_person_confirmed_as_the_civil_code_says():
    today = date(2026, 11, 25)
    w = ward()
    masked = check_guardian(w, "none", False, GRANDMOTHER_ID, "grandparent", "designation_by_committee",
                            date(2026, 11, 20), today)
    assert masked == GRANDMOTHER_ID[:6] + "*" * 8 + GRANDMOTHER_ID[-4:]
    minor_guardian = make_resident_id("370502", date(2010, 1, 1), 9, female=False)
    cases = [
        ((GRANDMOTHER_ID[:-1] + ("0" if GRANDMOTHER_ID[-1] != "0" else "1"), "grandparent", "court",
          today), ("guardian_id_number", "id_number")),
        ((minor_guardian, "sibling", "agreement", today), ("guardian_adult", "id_number")),
        ((w.id_number, "other_person", "court", today), ("guardian_not_ward", "id_number")),
        ((GRANDMOTHER_ID, "grandparent", "civil_affairs", today), ("civil_affairs_guardian", "relation")),
        ((GRANDMOTHER_ID, "spouse", "court", today), ("guardian_of_a_minor", "relation")),
        ((HOME, "organisation", "agreement", today), ("guardian_by_agreement", "relation")),
        ((GRANDMOTHER_ID, "organisation", "civil_affairs", today), ("guardian_id_number", "id_number")),
        ((GRANDMOTHER_ID, "grandparent", "court", today + timedelta(days=1)), ("not_in_future", "confirmed_on")),
        ((GRANDMOTHER_ID, "grandparent", "court", date(2009, 3, 9)), ("confirmed_on", "confirmed_on")),
    ]
    for (number, relation, confirmed_by, on), expected in cases:
        with pytest.raises(CareRuleBroken) as exc:
            check_guardian(w, "none", False, number, relation, confirmed_by, on, today)
        assert codes(exc) == expected, (relation, confirmed_by)
    # The civil-affairs department acting itself (art. 32): an organisation, by its code.
    assert check_guardian(w, "none", False, HOME, "organisation", "civil_affairs", today, today) == \
        HOME[:6] + "*" * 8 + HOME[-4:]
    # An adult's spouse may be the guardian; a person presumed capable has none unless a court said so.
    adult = ward(date(1990, 1, 1), "mental", 1)
    check_guardian(adult, "none", False, GRANDMOTHER_ID, "spouse", "agreement", today, today)
    with pytest.raises(CareNotAllowed) as refused:
        check_guardian(ward(date(1990, 1, 1), None, None), "full", False, GRANDMOTHER_ID, "parent", "court",
                       today, today)
    assert refused.value.rule == "full_legal_capacity"
    with pytest.raises(CareRuleBroken) as exc:
        check_guardian(ward(date(1990, 1, 1), None, None), "full", True, GRANDMOTHER_ID, "parent", "court",
                       today, today)
    assert codes(exc) == ("guardian_for_full_capacity", "legal_capacity")


# --- the care agreement -----------------------------------------------------------------------
def test_a_care_agreement_names_a_carer_or_a_provider_and_a_term_that_ends_after_it_starts():
    carer = {"name": "张桂英", "relation": "grandparent"}
    provider = {"name": "东营区康乐居家养老服务中心", "code": PROVIDER}
    start, end = date(2026, 12, 1), date(2027, 11, 30)
    check_agreement("guardianship_care", carer, None, start, end)
    check_agreement("entrusted_care", None, provider, start, end)
    check_agreement("entrusted_care", carer, None, start, start)  # one day
    for args, expected in [
        (("entrusted_care", None, None, start, end), ("carer_or_provider", "carer")),
        (("entrusted_care", carer, provider, start, end), ("carer_or_provider", "provider")),
        (("guardianship_care", None, provider, start, end), ("guardianship_care_carer", "carer")),
        (("entrusted_care", None, {**provider, "code": PROVIDER[:-1] + "A"}, start, end),
         ("provider_code", "provider/code")),
        (("entrusted_care", carer, None, end, start), ("term", "term_to")),
    ]:
        with pytest.raises(CareRuleBroken) as exc:
            check_agreement(*args)
        assert codes(exc) == expected


# --- visits and their clock -------------------------------------------------------------------
def test_a_visit_is_on_a_day_of_dispersed_support_and_a_poor_rating_says_what_follows():
    today, since = date(2026, 12, 20), date(2026, 11, 25)
    check_visit(date(2026, 12, 20), today, since, date(2026, 12, 1), "good", None)
    check_visit(date(2026, 11, 25), today, since, None, "poor", "联系监护人整改，一周后复访")
    for args, expected in [
        ((date(2026, 12, 21), today, since, None, "good", None), ("not_in_future", "visited_on")),
        ((date(2026, 11, 24), today, since, None, "good", None), ("visit_before_support", "visited_on")),
        ((date(2026, 11, 30), today, since, date(2026, 12, 1), "good", None), ("visit_before_last", "visited_on")),
        ((date(2026, 12, 20), today, since, None, "poor", None), ("follow_up_required", "follow_up")),
    ]:
        with pytest.raises(CareRuleBroken) as exc:
            check_visit(*args)
        assert codes(exc) == expected


@pytest.mark.parametrize("start, months, due", [
    ("2026-11-25", 1, date(2026, 12, 25)),   # a Friday
    ("2026-01-31", 1, date(2026, 2, 28)),    # no 31 February: the month's last day (a make-up working Saturday)
    ("2026-09-01", 1, date(2026, 10, 8)),    # 1 October falls in the National Day holiday: moved past it
    ("2026-11-25", 2, date(2027, 1, 25)),    # a county's two-month cycle
    ("2026-12-12", 1, date(2027, 1, 12)),
])
def test_the_visit_clock_runs_the_policys_months_moved_past_a_rest_day(start, months, due):
    d = visit_due(at(start), months)
    assert (d.clock, d.due_date, d.period) == ("care_visit", due, f"{months} month" + ("s" if months > 1 else ""))
    assert d.due_at == datetime.combine(due + timedelta(days=1), datetime.min.time(), SHANGHAI)
    assert d.warn_at == datetime.combine(due - timedelta(days=2), datetime.min.time(), SHANGHAI)  # 3 days' lead
    assert clocks.CLOCKS["care_visit"].kind == "calendar"


def test_the_policy_sets_the_visit_cycle_in_months(raw_policy):
    book = PolicyBook.from_mapping(copy.deepcopy(raw_policy))
    assert book.policy_for("370502", date(2026, 12, 1)).care.visit_cycle_months == 1
    assert book.policy_for("370602", date(2026, 12, 1)).care.visit_cycle_months == 1  # the default
    two = copy.deepcopy(raw_policy)
    two["counties"][2]["care"] = {"visit_cycle_months": 2}
    assert PolicyBook.from_mapping(two).policy_for("370602", date(2026, 12, 1)).care.visit_cycle_months == 2
    two["counties"][2]["care"] = {"visit_cycle_months": 0}
    with pytest.raises(PolicyError, match=r"counties\[2\]\.care\.visit_cycle_months: must be >= 1"):
        PolicyBook.from_mapping(two)


# --- the aggregate ------------------------------------------------------------------------------
def care() -> Care:
    return Care.open(CASE, VILLAGE, ward(), BY)


def events(c: Care, *types: type) -> list:
    return [e for e in c.collect_events() if not types or isinstance(e, types)]


def test_dispersed_support_starts_the_visit_clock_a_visit_clears_it_and_sets_the_next():
    c = care()
    assert c.arrange("B-1", "dispersed", None, True, "本人选择在家", 1, at("2026-11-25"), BY)
    arranged, started = events(c, Care.SupportArranged, Care.DeadlineSet)
    assert (arranged.next_visit_due_date, started.deadline_id, started.due_date, started.responsible_office) == (
        "2026-12-25", f"{CASE}/care_visit", "2026-12-25", VILLAGE[:9])
    assert not c.arrange("B-1", "dispersed", None, True, "本人选择在家", 1, at("2026-11-26"), BY)  # nothing new
    c.record_visit(date(2026, 12, 20), [{"name": "赵敏", "role": "township_staff"}], "照料到位", "good", None, 1,
                   at("2026-12-20", "16:00"), BY)
    visit, cleared, following = events(c)
    assert (visit.deadline_id, visit.deadline_outcome, visit.next_visit_due_date) == (
        f"{CASE}/care_visit", "met", "2027-01-20")
    assert (cleared.outcome, following.deadline_id, following.due_date) == ("met", f"{CASE}/care_visit/2",
                                                                            "2027-01-20")
    # Recorded after the due day: late, and the next is counted from the visit's own day.
    c.record_visit(date(2027, 1, 21), [{"name": "赵敏", "role": "township_staff"}], "照料一般", "adequate", None, 1,
                   at("2027-01-22"), BY)
    visit, cleared, following = events(c)
    assert (visit.deadline_outcome, cleared.outcome, following.due_date) == ("late", "late", "2027-02-22")
    assert c.open_visit_deadline.deadline_id == f"{CASE}/care_visit/3"


def test_concentrated_support_cancels_the_visit_clock_and_takes_no_visits():
    c = care()
    c.arrange("B-1", "dispersed", None, True, "", 1, at("2026-01-20"), BY)
    c.collect_events()
    c.arrange("B-1", "concentrated", HOME, False, "监护人选择入住敬老院", 1, at("2026-02-02"), BY)
    arranged, cancelled = events(c)
    assert (arranged.mode, arranged.care_home_code, arranged.next_visit_due_date) == ("concentrated", HOME, None)
    assert (cancelled.deadline_id, cancelled.outcome) == (f"{CASE}/care_visit", "cancelled")
    with pytest.raises(CareNotAllowed) as exc:
        c.record_visit(date(2026, 2, 3), [{"name": "赵敏", "role": "township_staff"}], "x", "good", None, 1,
                       at("2026-02-03"), BY)
    assert exc.value.rule == "not_dispersed"
    # Back home: a new clock from the new arrangement.
    c.arrange("B-1", "dispersed", None, True, "", 2, at("2026-03-01"), BY)
    started = events(c, Care.DeadlineSet)[0]
    # A two-month cycle: 1 May, in the Labour Day holiday (1-5 May), moves to the 6th.
    assert (started.deadline_id, started.due_date) == (f"{CASE}/care_visit/2", "2026-05-06")
    assert c.dispersed_since == "2026-03-01"


def test_a_care_agreement_for_a_person_without_full_capacity_waits_for_the_guardian():
    c = care()
    carer = {"name": "张桂英", "relation": "grandparent"}
    now = at("2026-11-25")
    with pytest.raises(CareNotAllowed) as exc:
        c.sign_agreement(ward(), "entrusted_care", carer, None, ["日常照料"], date(2026, 12, 1), date(2027, 11, 30),
                         50000, None, now, BY)
    assert exc.value.rule == "guardian_required"
    assert not c.pending_events[1:]
    assert c.confirm_guardian(ward(), "张桂英", GRANDMOTHER_ID, "grandparent", "designation_by_committee",
                              date(2026, 11, 20), None, now, BY)
    assert not c.confirm_guardian(ward(), "张桂英", GRANDMOTHER_ID, "grandparent", "designation_by_committee",
                                  date(2026, 11, 20), None, now, BY)      # the same guardian: nothing new
    assert c.sign_agreement(ward(), "guardianship_care", carer, None, ["日常照料", "陪同就医"], date(2026, 12, 1),
                            date(2027, 11, 30), 50000, None, now, BY)
    guardian, agreement = events(c, Care.GuardianConfirmed, Care.CareAgreementSigned)
    assert (guardian.legal_capacity, agreement.legal_capacity, agreement.agreement_id) == (
        "none", "none", f"{CASE}-agreement-1")
    # On the wire: the guardian's and the carer's names and the ID number masked, never in clear.
    for event in (guardian, agreement):
        wire = str(OUTBOUND(event).data)
        assert GRANDMOTHER_ID not in wire and "张桂英" not in wire and "张*英" in wire
    assert OUTBOUND(guardian).data["guardian_id_number_masked"] == GRANDMOTHER_ID[:6] + "********" + GRANDMOTHER_ID[-4:]
    # An adult presumed capable signs an entrusted-care agreement without a guardian; a
    # guardianship-care agreement always needs one.
    capable = Care.open("C-CARE0002", VILLAGE, ward(date(1950, 1, 1), None, None), BY)
    assert capable.sign_agreement(ward(date(1950, 1, 1), None, None), "entrusted_care", None,
                                  {"name": "东营区康乐居家养老服务中心", "code": PROVIDER}, ["助餐"], date(2026, 12, 1),
                                  date(2027, 11, 30), 80000, None, now, BY)
    with pytest.raises(CareNotAllowed):
        capable.sign_agreement(ward(date(1950, 1, 1), None, None), "guardianship_care", carer, None, ["照料"],
                               date(2026, 12, 1), date(2027, 11, 30), 0, None, now, BY)


def test_support_ends_with_the_benefit_and_its_visit_clock_is_cancelled_once():
    c = care()
    c.arrange("B-1", "dispersed", None, True, "", 1, at("2026-11-25"), BY)
    c.collect_events()
    assert c.end_support("the 特困 benefit ends from 2027-01: 本人死亡", at("2026-12-10"), BY)
    ended, cancelled = events(c)
    assert (ended.ended_at, cancelled.deadline_id, cancelled.outcome) == (
        at("2026-12-10").isoformat(), f"{CASE}/care_visit", "cancelled")
    assert c.open_visit_deadline is None and c.dispersed_since is None
    assert not c.end_support("again", at("2026-12-11"), BY)
