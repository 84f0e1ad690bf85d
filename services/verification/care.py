"""特困 support (issue 17, parts 1-2): the support arrangement, the guardian and the care
agreement of a person without full legal capacity, and the township's visits with their clock.

Seed 002's 特困人员监护照护 pilot: a person supported as 特困 chooses concentrated support in a
care home (集中供养) or dispersed support at home (分散供养); a person without full legal capacity
gets a guardian confirmed under the Civil Code (arts. 27-32) and a signed care agreement
(监护照料协议 / 委托照料协议); the township visits each dispersed-support person on the policy's
cycle (`care.visit_cycle_months`, default 1) and checks the care.

- Pure rules: `presumed_capacity`, `capacity_in_force`, `is_credit_code`, `check_arrangement`,
  `check_guardian`, `check_agreement`, `check_visit`, `visit_due`.
- The `Care` aggregate (one per case, beside the case's Verification): SupportArranged,
  GuardianConfirmed, CareAgreementSigned, CareVisitRecorded, and the `care_visit` clock's
  DeadlineSet / DeadlineCleared (notify's deadline watch warns and escalates a missed visit).
- Use cases on the verification application (`arrange`, `confirm_guardian`, `sign_agreement`,
  `record_visit`): only for an approved 特困 (`tekun`) benefit still running (409 `tekun_approved`).
- Read model `visit_due` (per case, dispersed support only) and the HTTP `router`:
  `PUT /v1/care/{case_id}/arrangement|guardian|care-agreement`, `POST /v1/care/{case_id}/visits`,
  `GET /v1/care/{case_id}`, `GET /v1/visits/due?region=`.

Choices where the issue is silent are in docs/PROCEDURE.md (特困 support).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.deadlines import DeadlineClearedEvent, DeadlineSetEvent, deadline_fields
from lifeline.domain.values import Member, mask_name
from lifeline.http.app import (
    COMMAND_ERRORS, LIST_ERRORS, READ_ERRORS, found_in_region, in_region, region_filter, strict,
)
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules import clocks
from lifeline.rules.ids import InvalidResidentId, mask_resident_id, parse_resident_id
from lifeline.rules.periods import business_date, start_of_day
from lifeline.stores.sidestore import SideTx
from services.verification.procedure import CaseDeadline

if TYPE_CHECKING:  # application.py imports this module: no import cycle at run time
    from lifeline.runtime.service import ServiceRuntime
    from services.verification.application import VerificationApplication
    from services.verification.domain import Verification

__all__ = [
    "CARE_AGREEMENT_KINDS", "CARE_EDITORS", "CARE_QUALITIES", "GUARDIAN_CONFIRMATIONS", "GUARDIAN_RELATIONS",
    "LEGAL_CAPACITIES", "SUPPORT_MODES", "VISITOR_ROLES", "SupportArrangementIn", "Care", "CareAgreementIn",
    "CareNotAllowed", "CareRuleBroken", "GuardianIn", "CareVisitIn", "Ward", "arrange", "capacity_in_force",
    "CareOut", "CareVisitsDueOut", "care_view", "check_agreement", "check_arrangement", "check_guardian",
    "check_visit", "confirm_guardian", "ended_with_benefit",
    "is_credit_code", "presumed_capacity", "project_care", "record_visit", "router", "sign_agreement",
    "visit_due",
]

# --- vocabularies ---------------------------------------------------------------------------
SUPPORT_MODES = ("concentrated", "dispersed")             # 集中供养 (care home) / 分散供养 (at home)
LEGAL_CAPACITIES = ("none", "limited", "full")           # 无 / 限制 / 完全民事行为能力
# Who the guardian is to the person (arts. 27-28: parents, grandparents, adult siblings, spouse,
# adult children, other close relatives, other persons; art. 32: the civil-affairs department or
# a residents' / villagers' committee — `organisation`).
GUARDIAN_RELATIONS = ("parent", "grandparent", "sibling", "spouse", "child", "grandchild", "other_relative",
                      "other_person", "organisation")
CARER_RELATIONS = tuple(r for r in GUARDIAN_RELATIONS if r != "organisation")
# How the guardian was confirmed: by agreement among those qualified (art. 30), designated by the
# residents' / villagers' committee or the civil-affairs department (art. 31), by a court (art. 31),
# or the civil-affairs department acts as guardian itself (art. 32).
GUARDIAN_CONFIRMATIONS = ("agreement", "designation_by_committee", "court", "civil_affairs")
CARE_AGREEMENT_KINDS = ("guardianship_care", "entrusted_care")   # 监护照料协议 / 委托照料协议
VISITOR_ROLES = ("township_staff", "village_cadre", "village_committee", "social_worker", "other")
CARE_QUALITIES = ("good", "adequate", "poor")
# Who arranges support, confirms guardians, records agreements and visits: the township's
# caseworkers and review group, the county (as for the procedure's steps).
CARE_EDITORS = ("caseworker", "reviewer", "county_officer", "admin")

# Civil Code: adults are 18 (art. 17); under 8 a minor has no capacity (art. 20); from 16 a minor
# living on his own labour income is deemed to have full capacity (art. 18).
ADULT_AGE, NO_CAPACITY_BELOW, SELF_SUPPORTING_FROM = 18, 8, 16
# Disabilities that make an adult presumed without full capacity (arts. 21-22): intellectual or
# mental, grades 1-2 (severe: no capacity) and 3 (moderate: limited). A court's declaration (art. 24)
# says otherwise: the body's `legal_capacity`.
COGNITIVE_DISABILITIES = ("intellectual", "mental")
CLOCK = "care_visit"
NAME_MAX, TEXT_MAX = 50, 4000


class CareNotAllowed(Exception):
    """A care command the case's state does not allow (409); `rule` names the rule."""

    def __init__(self, message: str, rule: str):
        super().__init__(message)
        self.rule = rule


class CareRuleBroken(ValueError):
    """The command's content breaks a rule (422); `field` is the body field it names."""

    def __init__(self, rule: str, message: str, field: str = ""):
        super().__init__(message)
        self.rule = rule
        self.field = field


# --- pure rules -----------------------------------------------------------------------------
_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def is_credit_code(code: str) -> bool:
    """A GB 32100-2015 unified social credit code (统一社会信用代码), the code a care home or a
    provider is registered under: 18 characters of its alphabet (no I, O, S, V, Z), six digits of
    region in places 3-8, and the right check character (MOD 31)."""
    if not isinstance(code, str) or len(code) != 18 or any(c not in _CREDIT_CHARS for c in code):
        return False
    if not code[2:8].isdigit():
        return False
    total = sum(_CREDIT_CHARS.index(c) * w for c, w in zip(code[:17], _CREDIT_WEIGHTS))
    return code[17] == _CREDIT_CHARS[(31 - total % 31) % 31]


@dataclass(frozen=True)
class Ward:
    """The person supported: the case's applicant, as the application names them."""

    id_number: str
    name: str
    birth_date: date
    disability_kind: str | None
    disability_grade: int | None

    @classmethod
    def of(cls, member: Member) -> "Ward":
        n = member.id_number
        return cls(n, member.name, date(int(n[6:10]), int(n[10:12]), int(n[12:14])),
                   member.disability_kind, member.disability_grade)

    def age_on(self, on: date) -> int:
        years = on.year - self.birth_date.year
        return years - 1 if (on.month, on.day) < (self.birth_date.month, self.birth_date.day) else years


def presumed_capacity(ward: Ward, on: date) -> str:
    """What the records say of the person's legal capacity on `on` (Civil Code arts. 17-22):
    under 8 none; an intellectual or mental disability of grade 1-2 none, of grade 3 limited; a
    minor (under 18) limited; otherwise full."""
    age = ward.age_on(on)
    cognitive = ward.disability_kind in COGNITIVE_DISABILITIES
    if age < NO_CAPACITY_BELOW or (cognitive and ward.disability_grade in (1, 2)):
        return "none"
    if age < ADULT_AGE or (cognitive and ward.disability_grade == 3):
        return "limited"
    return "full"


def capacity_in_force(ward: Ward, on: date, declared: str | None) -> str:
    """The capacity a command is taken on: the one the body states (a court's declaration,
    art. 24; or art. 18's self-supporting minor), else the presumption. A child under 8 has none
    (art. 20) and under 16 never full (art. 18): 422 `legal_capacity`."""
    if declared is None:
        return presumed_capacity(ward, on)
    age = ward.age_on(on)
    if age < NO_CAPACITY_BELOW and declared != "none":
        raise CareRuleBroken("legal_capacity", "a child under 8 has no legal capacity (Civil Code art. 20)",
                             "legal_capacity")
    if age < SELF_SUPPORTING_FROM and declared == "full":
        raise CareRuleBroken("legal_capacity", "a minor under 16 cannot have full legal capacity (Civil Code art. 18)",
                             "legal_capacity")
    return declared


def _not_future(day: date, today: date, field: str) -> None:
    if day > today:
        raise CareRuleBroken("not_in_future", f"{field} is after today", field)


def check_arrangement(mode: str, care_home_code: str | None, chosen_by_person: bool, note: str) -> None:
    """Concentrated support names the care home by its registered code; dispersed names none;
    an arrangement the person did not choose says why in `note`."""
    if mode == "concentrated":
        if not care_home_code:
            raise CareRuleBroken("care_home_required", "concentrated support names the care home (care_home_code)",
                                 "care_home_code")
        if not is_credit_code(care_home_code):
            raise CareRuleBroken("care_home_code", "care_home_code is not a unified social credit code (GB 32100)",
                                 "care_home_code")
    elif care_home_code is not None:
        raise CareRuleBroken("care_home_for_concentrated", "only concentrated support names a care home",
                             "care_home_code")
    if not chosen_by_person and not note:
        raise CareRuleBroken("choice_reason", "an arrangement the person did not choose says why in note", "note")


def check_guardian(ward: Ward, capacity: str, declared: bool, id_number: str, relation: str, confirmed_by: str,
                   confirmed_on: date, today: date) -> str:
    """A guardian (Civil Code arts. 27-32) for a person without full capacity; answers the ID
    number as stored (masked). An organisation (art. 32) is named by its unified social credit
    code, a person by a resident ID: an adult, not the ward. The civil-affairs department acting
    itself is an organisation; an agreement (art. 30) is among persons. A minor's guardian is not
    a spouse, child or grandchild (art. 27)."""
    if capacity == "full":
        if declared:
            raise CareRuleBroken("guardian_for_full_capacity",
                                 "a guardian is confirmed for a person without full capacity", "legal_capacity")
        raise CareNotAllowed("the person is presumed to have full legal capacity (an adult without an intellectual "
                             "or mental disability of grade 1-3): state legal_capacity none or limited "
                             "(a court's declaration, Civil Code art. 24)", "full_legal_capacity")
    _not_future(confirmed_on, today, "confirmed_on")
    if confirmed_on < ward.birth_date:
        raise CareRuleBroken("confirmed_on", "confirmed_on is before the person's birth", "confirmed_on")
    if relation == "organisation":
        if not is_credit_code(id_number):
            raise CareRuleBroken("guardian_id_number", "an organisation is named by its unified social credit code",
                                 "id_number")
        if confirmed_by == "agreement":
            raise CareRuleBroken("guardian_by_agreement",
                                 "an agreement (art. 30) is among persons qualified as guardians", "relation")
    else:
        try:
            guardian = parse_resident_id(id_number, today=today)
        except InvalidResidentId as exc:
            raise CareRuleBroken("guardian_id_number", f"invalid resident ID number: {exc}", "id_number") from None
        if guardian.number == ward.id_number:
            raise CareRuleBroken("guardian_not_ward", "the guardian is someone other than the person", "id_number")
        if guardian.age_on(confirmed_on) < ADULT_AGE:
            raise CareRuleBroken("guardian_adult", "a guardian is an adult (18 on confirmed_on)", "id_number")
        if confirmed_by == "civil_affairs":
            raise CareRuleBroken("civil_affairs_guardian",
                                 "the civil-affairs department acting as guardian (art. 32) is an organisation",
                                 "relation")
        if ward.age_on(today) < ADULT_AGE and relation in ("spouse", "child", "grandchild"):
            raise CareRuleBroken("guardian_of_a_minor",
                                 "a minor's guardian is a parent, grandparent, sibling or another person "
                                 "(Civil Code art. 27)", "relation")
    return mask_resident_id(id_number)


def check_agreement(kind: str, carer: dict[str, str] | None, provider: dict[str, str] | None, term_from: date,
                    term_to: date) -> None:
    """A care agreement names its carer (a person) or its provider (by its registered code), not
    both; a guardianship-care agreement (监护照料协议) is the guardian's own care: a carer. Its term
    ends on or after its start."""
    if carer is None and provider is None:
        raise CareRuleBroken("carer_or_provider", "a care agreement names a carer or a provider", "carer")
    if carer is not None and provider is not None:
        raise CareRuleBroken("carer_or_provider", "a care agreement names a carer or a provider, not both",
                             "provider")
    if kind == "guardianship_care" and carer is None:
        raise CareRuleBroken("guardianship_care_carer", "a guardianship-care agreement names the carer, not a provider",
                             "carer")
    if provider is not None and not is_credit_code(provider["code"]):
        raise CareRuleBroken("provider_code", "provider.code is not a unified social credit code (GB 32100)",
                             "provider/code")
    if term_to < term_from:
        raise CareRuleBroken("term", "term_to is before term_from", "term_to")


def check_visit(visited_on: date, today: date, dispersed_since: date, last_visit: date | None, care_quality: str,
                follow_up: str | None) -> None:
    """A visit is on a day of dispersed support, not in the future and not before the last one; a
    poor care rating says what follows."""
    _not_future(visited_on, today, "visited_on")
    if visited_on < dispersed_since:
        raise CareRuleBroken("visit_before_support", "visited_on is before dispersed support began", "visited_on")
    if last_visit is not None and visited_on < last_visit:
        raise CareRuleBroken("visit_before_last", "visited_on is before the last visit recorded", "visited_on")
    if care_quality == "poor" and not follow_up:
        raise CareRuleBroken("follow_up_required", "a poor care rating says what follows (follow_up)", "follow_up")


def visit_due(start: datetime, months: int) -> clocks.Deadline:
    """The next visit: the policy's cycle in months from the arrangement or the last visit
    (moved past a rest day), warned 3 days before."""
    return clocks.calendar_months_due(start, months, clock=CLOCK, warn_lead_days=clocks.CLOCKS[CLOCK].warn_lead_days)


# --- the aggregate --------------------------------------------------------------------------
class Care(LifelineAggregate):
    """One case's 特困 support: how the person is supported, their guardian and care agreements,
    and the township's visits (each dispersed-support period has a running `care_visit` clock)."""

    id_kind = "care"  # one per case

    class Opened(LifelineAggregate.Created):
        case_id: str
        region_code: str
        person_name_masked: str
        birth_date: str
        disability_kind: str | None
        disability_grade: int | None

    class SupportArranged(LifelineAggregate.Event):
        case_id: str
        benefit_id: str
        region_code: str
        person_name_masked: str
        mode: str
        care_home_code: str | None
        chosen_by_person: bool
        note: str
        next_visit_due_date: str | None
        arranged_by: str
        arranged_at: str

        def apply(self, c: "Care") -> None:
            if self.mode == "dispersed" and (c.arrangement is None or c.arrangement["mode"] != "dispersed"):
                c.dispersed_since = business_date(datetime.fromisoformat(self.arranged_at)).isoformat()
            elif self.mode != "dispersed":
                c.dispersed_since = None
            c.arrangement = {"mode": self.mode, "care_home_code": self.care_home_code,
                             "chosen_by_person": self.chosen_by_person, "note": self.note,
                             "arranged_at": self.arranged_at, "arranged_by": self.arranged_by}
            c.arrangements.append(c.arrangement)
            c.benefit_id = self.benefit_id

    class GuardianConfirmed(LifelineAggregate.Event):
        case_id: str
        region_code: str
        legal_capacity: str
        capacity_declared: bool
        guardian_name: str
        guardian_name_masked: str
        guardian_id_number_masked: str
        relation: str
        confirmed_by: str
        confirmed_on: str
        recorded_by: str
        recorded_at: str

        def apply(self, c: "Care") -> None:
            c.guardian = {"name": self.guardian_name, "id_number_masked": self.guardian_id_number_masked,
                          "relation": self.relation, "confirmed_by": self.confirmed_by,
                          "confirmed_on": self.confirmed_on, "recorded_at": self.recorded_at,
                          "recorded_by": self.recorded_by}
            c.guardians.append(c.guardian)
            c.note_capacity(self.legal_capacity, self.capacity_declared)

    class CareAgreementSigned(LifelineAggregate.Event):
        case_id: str
        region_code: str
        agreement_id: str
        kind: str
        legal_capacity: str
        capacity_declared: bool
        carer_name: str | None
        carer_name_masked: str | None
        carer_relation: str | None
        provider_name: str | None
        provider_code: str | None
        duties: list[str]
        term_from: str
        term_to: str
        monthly_amount_fen: int
        recorded_by: str
        recorded_at: str

        def apply(self, c: "Care") -> None:
            c.agreements.append({
                "agreement_id": self.agreement_id, "kind": self.kind, "carer_name": self.carer_name,
                "carer_relation": self.carer_relation, "provider_name": self.provider_name,
                "provider_code": self.provider_code, "duties": list(self.duties), "term_from": self.term_from,
                "term_to": self.term_to, "monthly_amount_fen": self.monthly_amount_fen,
                "recorded_at": self.recorded_at, "recorded_by": self.recorded_by})
            c.note_capacity(self.legal_capacity, self.capacity_declared)

    class CareVisitRecorded(LifelineAggregate.Event):
        case_id: str
        region_code: str
        visit_id: str
        visited_on: str
        visitors: list[dict[str, str]]
        findings: str
        care_quality: str
        follow_up: str | None
        deadline_id: str | None
        deadline_outcome: str | None
        next_visit_due_date: str | None
        recorded_by: str
        recorded_at: str

        def apply(self, c: "Care") -> None:
            c.visits.append({
                "visit_id": self.visit_id, "visited_on": self.visited_on,
                "visitors": [dict(v) for v in self.visitors], "findings": self.findings,
                "care_quality": self.care_quality, "follow_up": self.follow_up, "deadline_id": self.deadline_id,
                "deadline_outcome": self.deadline_outcome, "next_visit_due_date": self.next_visit_due_date,
                "recorded_at": self.recorded_at, "recorded_by": self.recorded_by})

    class SupportEnded(LifelineAggregate.Event):
        """The 特困 benefit ended (BenefitTerminated): no more visits, the running clock cancelled."""

        case_id: str
        region_code: str
        reason: str
        ended_at: str

        def apply(self, c: "Care") -> None:
            c.ended_at = self.ended_at
            c.dispersed_since = None

    class DeadlineSet(DeadlineSetEvent):
        def apply(self, c: "Care") -> None:
            c.deadlines[self.deadline_id] = CaseDeadline(
                self.deadline_id, self.clock, self.label_zh, self.start_date, self.due_date,
                self.due_at, self.warn_at, self.period, self.calendar_known, tuple(self.warnings))

    class DeadlineCleared(DeadlineClearedEvent):
        def apply(self, c: "Care") -> None:
            c.deadlines[self.deadline_id] = c.deadlines[self.deadline_id].cleared(self.outcome, self.cleared_at)

    @classmethod
    def open(cls, case_id: str, region_code: str, ward: Ward, by: Meta) -> "Care":
        return cls._create(cls.Opened, id=cls.create_id(case_id), case_id=case_id, region_code=region_code,
                           person_name_masked=mask_name(ward.name), birth_date=ward.birth_date.isoformat(),
                           disability_kind=ward.disability_kind, disability_grade=ward.disability_grade,
                           meta=by.as_dict())

    def __init__(self, case_id: str, region_code: str, person_name_masked: str, birth_date: str,
                 disability_kind: str | None, disability_grade: int | None, meta: dict):
        self.case_id = case_id
        self.region_code = region_code
        self.person_name_masked = person_name_masked
        self.benefit_id: str | None = None
        self.arrangement: dict[str, Any] | None = None
        self.arrangements: list[dict[str, Any]] = []
        self.dispersed_since: str | None = None
        self.guardian: dict[str, Any] | None = None
        self.guardians: list[dict[str, Any]] = []
        self.agreements: list[dict[str, Any]] = []
        self.visits: list[dict[str, Any]] = []
        self.deadlines: dict[str, CaseDeadline] = {}
        self.legal_capacity: str | None = None      # as last recorded
        self.capacity_declared = False              # stated by a body (not the presumption)
        self.ended_at: str | None = None            # when the benefit ended (SupportEnded)

    def note_capacity(self, capacity: str, declared: bool) -> None:
        self.legal_capacity = capacity
        self.capacity_declared = declared or self.capacity_declared

    def capacity(self, ward: Ward, on: date, declared: str | None) -> tuple[str, bool]:
        """The capacity in force for a command: the body's, else one a body stated before, else
        the presumption on `on`; and whether it was stated."""
        if declared is not None:
            return capacity_in_force(ward, on, declared), True
        if self.capacity_declared and self.legal_capacity is not None:
            return self.legal_capacity, True
        return presumed_capacity(ward, on), False

    @property
    def open_visit_deadline(self) -> CaseDeadline | None:
        return next((d for d in self.deadlines.values() if d.clock == CLOCK and d.is_open), None)

    # --- the visit clock ---------------------------------------------------------------------
    def _next_deadline_id(self) -> str:
        repeats = sum(1 for d in self.deadlines.values() if d.clock == CLOCK)
        base = f"{self.case_id}/{CLOCK}"
        return base if not repeats else f"{base}/{repeats + 1}"

    def _set_visit_clock(self, start: datetime, months: int, now: datetime, by: Meta) -> None:
        due = visit_due(start, months)
        self.trigger_event(self.DeadlineSet, **deadline_fields(
            self._next_deadline_id(), self.case_id, self.region_code, self.region_code[:9], due, now),
            meta=by.as_dict())

    def _clear_visit_clock(self, now: datetime, by: Meta, cancel: bool = False) -> tuple[str | None, str | None]:
        d = self.open_visit_deadline
        if d is None:
            return None, None
        outcome = "cancelled" if cancel else d.outcome_at(now)
        self.trigger_event(self.DeadlineCleared, deadline_id=d.deadline_id, case_id=self.case_id, clock=d.clock,
                           outcome=outcome, cleared_at=now.isoformat(), meta=by.as_dict())
        return d.deadline_id, outcome

    # --- commands --------------------------------------------------------------------------
    def arrange(self, benefit_id: str, mode: str, care_home_code: str | None, chosen_by_person: bool, note: str,
                months: int, now: datetime, by: Meta) -> bool:
        """Arrange (or change) the support; False when nothing changes. Dispersed support starts
        the visit clock; leaving it cancels the running one."""
        check_arrangement(mode, care_home_code, chosen_by_person, note)
        current = self.arrangement
        if current is not None and (current["mode"], current["care_home_code"], current["chosen_by_person"],
                                    current["note"]) == (mode, care_home_code, chosen_by_person, note):
            return False
        starts = mode == "dispersed" and (current is None or current["mode"] != "dispersed")
        due = visit_due(now, months).due_date.isoformat() if starts else (
            self.open_visit_deadline.due_date if mode == "dispersed" and self.open_visit_deadline else None)
        self.trigger_event(
            self.SupportArranged, case_id=self.case_id, benefit_id=benefit_id, region_code=self.region_code,
            person_name_masked=self.person_name_masked, mode=mode, care_home_code=care_home_code,
            chosen_by_person=chosen_by_person, note=note, next_visit_due_date=due, arranged_by=by.user_id,
            arranged_at=now.isoformat(), meta=by.as_dict())
        if starts:
            self._set_visit_clock(now, months, now, by)
        elif mode != "dispersed":
            self._clear_visit_clock(now, by, cancel=True)
        return True

    def confirm_guardian(self, ward: Ward, name: str, id_number: str, relation: str, confirmed_by: str,
                         confirmed_on: date, declared: str | None, now: datetime, by: Meta) -> bool:
        """Confirm (or change) the guardian; False when the same guardian is confirmed again."""
        today = business_date(now)
        capacity, stated = self.capacity(ward, today, declared)
        masked = check_guardian(ward, capacity, stated, id_number, relation, confirmed_by, confirmed_on, today)
        if self.guardian is not None and (
                self.guardian["name"], self.guardian["id_number_masked"], self.guardian["relation"],
                self.guardian["confirmed_by"], self.guardian["confirmed_on"], self.legal_capacity) == (
                name, masked, relation, confirmed_by, confirmed_on.isoformat(), capacity):
            return False
        self.trigger_event(
            self.GuardianConfirmed, case_id=self.case_id, region_code=self.region_code, legal_capacity=capacity,
            capacity_declared=stated, guardian_name=name, guardian_name_masked=mask_name(name),
            guardian_id_number_masked=masked, relation=relation, confirmed_by=confirmed_by,
            confirmed_on=confirmed_on.isoformat(), recorded_by=by.user_id, recorded_at=now.isoformat(),
            meta=by.as_dict())
        return True

    def sign_agreement(self, ward: Ward, kind: str, carer: dict[str, str] | None, provider: dict[str, str] | None,
                       duties: list[str], term_from: date, term_to: date, monthly_amount_fen: int,
                       declared: str | None, now: datetime, by: Meta) -> bool:
        """Record a signed care agreement (it replaces the one before); False when it is the one
        recorded last. A person without full capacity, and any guardianship-care agreement, needs
        a guardian first (409 `guardian_required`)."""
        today = business_date(now)
        capacity, stated = self.capacity(ward, today, declared)
        check_agreement(kind, carer, provider, term_from, term_to)
        if self.guardian is None and (capacity != "full" or kind == "guardianship_care"):
            raise CareNotAllowed(
                f"the person's legal capacity is {capacity}: confirm the guardian before the care agreement"
                if capacity != "full" else "a guardianship-care agreement is signed with the guardian: confirm "
                "the guardian first", "guardian_required")
        fields = {
            "kind": kind, "carer_name": carer["name"] if carer else None,
            "carer_relation": carer["relation"] if carer else None,
            "provider_name": provider["name"] if provider else None,
            "provider_code": provider["code"] if provider else None, "duties": list(duties),
            "term_from": term_from.isoformat(), "term_to": term_to.isoformat(),
            "monthly_amount_fen": monthly_amount_fen,
        }
        if self.agreements and all(self.agreements[-1][k] == v for k, v in fields.items()) and (
                capacity == self.legal_capacity):
            return False
        self.trigger_event(
            self.CareAgreementSigned, case_id=self.case_id, region_code=self.region_code,
            agreement_id=f"{self.case_id}-agreement-{len(self.agreements) + 1}", legal_capacity=capacity,
            capacity_declared=stated, carer_name_masked=mask_name(carer["name"]) if carer else None,
            recorded_by=by.user_id, recorded_at=now.isoformat(), meta=by.as_dict(), **fields)
        return True

    def record_visit(self, visited_on: date, visitors: list[dict[str, str]], findings: str, care_quality: str,
                     follow_up: str | None, months: int, now: datetime, by: Meta) -> str:
        """A visit to a dispersed-support person (409 `not_dispersed` otherwise): clears the running
        visit clock (met or late by now) and sets the next, the cycle from the visit's day."""
        if self.arrangement is None or self.arrangement["mode"] != "dispersed" or self.dispersed_since is None:
            raise CareNotAllowed("visits are recorded for a person in dispersed support (分散供养)", "not_dispersed")
        last = date.fromisoformat(self.visits[-1]["visited_on"]) if self.visits else None
        check_visit(visited_on, business_date(now), date.fromisoformat(self.dispersed_since), last, care_quality,
                    follow_up)
        visit_id = f"{self.case_id}-visit-{len(self.visits) + 1}"
        start = start_of_day(visited_on)
        pending = self.open_visit_deadline
        outcome = pending.outcome_at(now) if pending else None
        self.trigger_event(
            self.CareVisitRecorded, case_id=self.case_id, region_code=self.region_code, visit_id=visit_id,
            visited_on=visited_on.isoformat(), visitors=[dict(v) for v in visitors], findings=findings,
            care_quality=care_quality, follow_up=follow_up, deadline_id=pending.deadline_id if pending else None,
            deadline_outcome=outcome, next_visit_due_date=visit_due(start, months).due_date.isoformat(),
            recorded_by=by.user_id, recorded_at=now.isoformat(), meta=by.as_dict())
        self._clear_visit_clock(now, by)
        self._set_visit_clock(start, months, now, by)
        return visit_id


    def end_support(self, reason: str, now: datetime, by: Meta) -> bool:
        """The benefit ended: support ends with it, the running visit clock is cancelled; False
        when it had ended already."""
        if self.ended_at is not None:
            return False
        self.trigger_event(self.SupportEnded, case_id=self.case_id, region_code=self.region_code, reason=reason,
                           ended_at=now.isoformat(), meta=by.as_dict())
        self._clear_visit_clock(now, by, cancel=True)
        return True


def care_view(care: Care, now: datetime) -> dict[str, Any]:
    """What GET /v1/care/{case_id} answers (and each care command)."""
    pending = care.open_visit_deadline
    next_visit = None if pending is None else {
        "deadline_id": pending.deadline_id, "due_date": pending.due_date, "due_at": pending.due_at,
        "overdue": now >= datetime.fromisoformat(pending.due_at)}
    return {
        "case_id": care.case_id, "region_code": care.region_code, "benefit_id": care.benefit_id,
        "person_name_masked": care.person_name_masked, "legal_capacity": care.legal_capacity,
        "legal_capacity_declared": care.capacity_declared, "arrangement": care.arrangement,
        "arrangements": care.arrangements, "dispersed_since": care.dispersed_since, "guardian": care.guardian,
        "guardians": care.guardians, "care_agreements": care.agreements, "visits": care.visits,
        "next_visit": next_visit, "support_ended_at": care.ended_at, "version": care.version,
    }


# --- use cases on the verification application ----------------------------------------------
ATTEMPTS = 3


def ward_of(v: "Verification") -> Ward:
    """The person supported: the applicant (relation self), else the first member named."""
    members = v.application.household.members
    return Ward.of(next((m for m in members if m.relation == "self"), members[0]))


def _tekun_running(v: "Verification") -> str:
    """The approved 特困 benefit's id; 409 `tekun_approved` unless one is approved and not ended."""
    benefit = v.benefit
    if v.state != "approved" or benefit is None or benefit.benefit_type != "tekun":
        raise CareNotAllowed("support is arranged for an approved 特困 (tekun) benefit", "tekun_approved")
    if v.benefit_status == "terminated":
        raise CareNotAllowed("the 特困 benefit has ended", "tekun_approved")
    return benefit.benefit_id


def _step(app: "VerificationApplication", case_id: str, by: Meta,
          act: Callable[[Care, "Verification", Ward, datetime], Any]) -> Care:
    """One care command: on the current state, saved whole or refused whole; a command saved
    meanwhile on the same case is no reason to fail: taken again on the fresh state."""
    for _ in range(ATTEMPTS):
        v = app.get_verification(case_id)
        _tekun_running(v)
        ward = ward_of(v)
        care = app.load_or_create(Care.create_id(case_id), lambda: Care.open(case_id, v.region_code, ward, by))
        act(care, v, ward, app.clock.now())
        try:
            app.save(care)
            return care
        except IntegrityError:
            continue
    raise CareNotAllowed("the care record keeps changing; reload and retry", "concurrent_change")


def _cycle(app: "VerificationApplication", v: "Verification", now: datetime) -> int:
    return app._policy(v.region_code, now).care.visit_cycle_months


def arrange(app: "VerificationApplication", case_id: str, mode: str, care_home_code: str | None,
            chosen_by_person: bool, note: str, by: Meta) -> Care:
    return _step(app, case_id, by, lambda c, v, ward, now: c.arrange(
        _tekun_running(v), mode, care_home_code, chosen_by_person, note, _cycle(app, v, now), now, by))


def confirm_guardian(app: "VerificationApplication", case_id: str, guardian: dict[str, Any], by: Meta) -> Care:
    return _step(app, case_id, by, lambda c, v, ward, now: c.confirm_guardian(
        ward, guardian["name"], guardian["id_number"], guardian["relation"], guardian["confirmed_by"],
        guardian["confirmed_on"], guardian.get("legal_capacity"), now, by))


def sign_agreement(app: "VerificationApplication", case_id: str, agreement: dict[str, Any], by: Meta) -> Care:
    return _step(app, case_id, by, lambda c, v, ward, now: c.sign_agreement(
        ward, agreement["kind"], agreement.get("carer"), agreement.get("provider"), agreement["duties"],
        agreement["term_from"], agreement["term_to"], agreement["monthly_amount_fen"],
        agreement.get("legal_capacity"), now, by))


def record_visit(app: "VerificationApplication", case_id: str, visit: dict[str, Any], by: Meta) -> Care:
    return _step(app, case_id, by, lambda c, v, ward, now: c.record_visit(
        visit["visited_on"], visit["visitors"], visit["findings"], visit["care_quality"], visit.get("follow_up"),
        _cycle(app, v, now), now, by))


def ended_with_benefit(app: "VerificationApplication", events: list[Any]) -> list[Care]:
    """The care records of the 特困 benefits these events terminate (whatever ended them: a change,
    a review, a death, fraud), their support ended in the same transaction: VerificationApplication
    collects them as it records the events."""
    from services.verification.domain import Verification

    ended = []
    for event in events:
        if not isinstance(event, Verification.BenefitTerminated):
            continue
        try:
            care = app.repository.get(Care.create_id(event.case_id))
        except AggregateNotFoundError:
            continue
        by = Meta(**{k: v for k, v in event.meta.items() if k in Meta.__dataclass_fields__})
        if care.end_support(f"the 特困 benefit ends from {event.from_period}: {event.reason}", app.clock.now(), by):
            ended.append(care)
    return ended


def get_care(app: "VerificationApplication", case_id: str) -> Care:
    try:
        return app.repository.get(Care.create_id(case_id))
    except AggregateNotFoundError:
        raise LookupError(case_id) from None


# --- read model -----------------------------------------------------------------------------
def project_care(event: Any, tx: SideTx) -> bool:
    """Read model `visit_due`, keyed by case (ref: its region): each person in dispersed support,
    with the running visit clock's due date and the last visit (GET /v1/visits/due); gone when
    support becomes concentrated. True when `event` was a Care event."""
    if isinstance(event, Care.SupportArranged):
        if event.mode == "dispersed":
            doc = tx.get("visit_due", event.case_id) or {
                "case_id": event.case_id, "deadline_id": None, "next_visit_due_date": event.next_visit_due_date,
                "due_at": None, "last_visited_on": None, "last_care_quality": None}
            doc.update(region_code=event.region_code, person_name_masked=event.person_name_masked,
                       benefit_id=event.benefit_id)
            tx.put("visit_due", event.case_id, doc, ref=event.region_code)
        else:
            tx.delete("visit_due", event.case_id)
    elif isinstance(event, Care.DeadlineSet):
        _update(tx, event.case_id, deadline_id=event.deadline_id, next_visit_due_date=event.due_date,
                due_at=event.due_at)
    elif isinstance(event, Care.CareVisitRecorded):
        _update(tx, event.case_id, last_visited_on=event.visited_on, last_care_quality=event.care_quality)
    elif isinstance(event, Care.SupportEnded):
        tx.delete("visit_due", event.case_id)
    elif not isinstance(event, (Care.Opened, Care.GuardianConfirmed, Care.CareAgreementSigned,
                                Care.DeadlineCleared)):
        return False
    return True


def _update(tx: SideTx, case_id: str, **fields: Any) -> None:
    doc = tx.get("visit_due", case_id)
    if doc is not None:
        tx.put("visit_due", case_id, {**doc, **fields}, ref=doc["region_code"])


# --- HTTP -----------------------------------------------------------------------------------
def _credit_code(value: str) -> str:
    if not is_credit_code(value.upper()):
        raise ValueError("not a unified social credit code (GB 32100: 18 characters and the right check character)")
    return value.upper()


CreditCode = Annotated[str, Field(min_length=18, max_length=18, description="统一社会信用代码 (GB 32100)"),
                       AfterValidator(_credit_code)]
# The example care home and provider (valid GB 32100 codes of county 370502, made up).
CARE_HOME_CODE = "12370502MB1234567D"
PROVIDER_CODE = "52370502MJD123456N"
# The example guardian: a resident ID of county 370502 (born 1975-06-18, female, seq 88).
GUARDIAN_ID = "370502197506181765"


class SupportArrangementIn(BaseModel):
    """The support arrangement (供养方式): concentrated in a care home or dispersed at home."""

    model_config = strict(
        {"mode": "dispersed", "care_home_code": None, "chosen_by_person": True, "note": "本人选择在家分散供养"},
        {"mode": "concentrated", "care_home_code": CARE_HOME_CODE, "chosen_by_person": False,
         "note": "本人无民事行为能力，经监护人同意入住敬老院集中供养"},
    )
    mode: Literal[SUPPORT_MODES] = Field(description="concentrated: 集中供养 (a care home); dispersed: 分散供养 (at home)")
    care_home_code: CreditCode | None = Field(None, description="the care home's registered code (concentrated only)")
    chosen_by_person: bool = Field(description="whether the person chose it (otherwise note says why)")
    note: str = Field("", max_length=2000)


class GuardianIn(BaseModel):
    """The guardian (监护人) of a person without full legal capacity, confirmed under the Civil Code."""

    model_config = strict(
        {"name": "张桂英", "relation": "grandparent", "id_number": GUARDIAN_ID, "confirmed_by": "designation_by_committee",
         "confirmed_on": "2026-11-20", "legal_capacity": None},
    )
    name: str = Field(min_length=1, max_length=100, description="the person, or the organisation (art. 32)")
    relation: Literal[GUARDIAN_RELATIONS] = Field(description="organisation: the civil-affairs department or a "
                                                              "residents' / villagers' committee (art. 32)")
    id_number: str = Field(min_length=18, max_length=18,
                           description="a person's resident ID (GB 11643), an organisation's unified social credit "
                                       "code (GB 32100); masked in every event")
    confirmed_by: Literal[GUARDIAN_CONFIRMATIONS] = Field(description="agreement (art. 30), designation_by_committee or "
                                                                      "court (art. 31), civil_affairs (art. 32)")
    confirmed_on: date
    legal_capacity: Literal["none", "limited"] | None = Field(
        None, description="the person's capacity when a court declared it (art. 24); default: presumed from the "
                          "resident ID's age and the disability recorded")

    @field_validator("id_number")
    @classmethod
    def _id_of_its_kind(cls, value: str, info: ValidationInfo) -> str:
        value = value.upper()
        if info.data.get("relation") == "organisation":
            return _credit_code(value)
        try:
            return parse_resident_id(value).number
        except InvalidResidentId as exc:
            raise ValueError(f"invalid resident ID number: {exc}") from None


class CarerIn(BaseModel):
    model_config = strict({"name": "张桂英", "relation": "grandparent"})
    name: str = Field(min_length=1, max_length=NAME_MAX)
    relation: Literal[CARER_RELATIONS] = Field(description="who the carer is to the person (other_person: a hired carer)")


class CareProviderIn(BaseModel):
    model_config = strict({"name": "东营区康乐居家养老服务中心", "code": PROVIDER_CODE})
    name: str = Field(min_length=1, max_length=100)
    code: CreditCode


class CareAgreementIn(BaseModel):
    """A signed care agreement: 监护照料协议 (the guardian cares) or 委托照料协议 (a carer or a provider is
    entrusted)."""

    model_config = strict(
        {"kind": "guardianship_care", "carer": {"name": "张桂英", "relation": "grandparent"}, "provider": None,
         "duties": ["日常生活照料", "陪同就医", "每月向村委会报告照料情况"], "term_from": "2026-12-01",
         "term_to": "2027-11-30", "monthly_amount_fen": 50000, "legal_capacity": None},
        {"kind": "entrusted_care", "carer": None,
         "provider": {"name": "东营区康乐居家养老服务中心", "code": PROVIDER_CODE},
         "duties": ["每周上门助餐助洁两次", "康复训练"], "term_from": "2026-12-01", "term_to": "2027-11-30",
         "monthly_amount_fen": 80000, "legal_capacity": None},
    )
    kind: Literal[CARE_AGREEMENT_KINDS] = Field(description="guardianship_care: 监护照料协议; entrusted_care: 委托照料协议")
    carer: CarerIn | None = None
    provider: CareProviderIn | None = None
    duties: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=20)
    term_from: date
    term_to: date
    monthly_amount_fen: int = Field(ge=0, le=10_000_000, description="the care allowance per month (照料护理费)")
    legal_capacity: Literal[LEGAL_CAPACITIES] | None = Field(
        None, description="the person's capacity when a court declared it (art. 24); default: as recorded with the "
                          "guardian, else presumed")


class CareVisitorIn(BaseModel):
    model_config = strict({"name": "赵敏", "role": "township_staff"})
    name: str = Field(min_length=1, max_length=NAME_MAX)
    role: Literal[VISITOR_ROLES]


class CareVisitIn(BaseModel):
    """A visit to a person in dispersed support (探访) and the care found."""

    model_config = strict({
        "visited_on": "2026-12-20", "visitors": [{"name": "赵敏", "role": "township_staff"},
                                                 {"name": "李卫东", "role": "village_cadre"}],
        "findings": "住房整洁，饮食正常，监护人照料到位，按时服药。", "care_quality": "good", "follow_up": None,
    })
    visited_on: date
    visitors: list[CareVisitorIn] = Field(min_length=1, max_length=20)
    findings: str = Field(min_length=1, max_length=TEXT_MAX)
    care_quality: Literal[CARE_QUALITIES]
    follow_up: str | None = Field(None, min_length=1, max_length=2000, description="required when care_quality is poor")


class CareArrangementOut(BaseModel):
    mode: Literal[SUPPORT_MODES]
    care_home_code: str | None
    chosen_by_person: bool
    note: str
    arranged_at: str
    arranged_by: str


class CareGuardianOut(BaseModel):
    name: str
    id_number_masked: str
    relation: Literal[GUARDIAN_RELATIONS]
    confirmed_by: Literal[GUARDIAN_CONFIRMATIONS]
    confirmed_on: str
    recorded_at: str
    recorded_by: str


class CareAgreementOut(BaseModel):
    agreement_id: str
    kind: Literal[CARE_AGREEMENT_KINDS]
    carer_name: str | None
    carer_relation: str | None
    provider_name: str | None
    provider_code: str | None
    duties: list[str]
    term_from: str
    term_to: str
    monthly_amount_fen: int
    recorded_at: str
    recorded_by: str


class CareVisitorOut(BaseModel):
    name: str
    role: Literal[VISITOR_ROLES]


class CareVisitOut(BaseModel):
    visit_id: str
    visited_on: str
    visitors: list[CareVisitorOut]
    findings: str
    care_quality: Literal[CARE_QUALITIES]
    follow_up: str | None
    deadline_id: str | None = Field(description="the visit clock it cleared")
    deadline_outcome: Literal["met", "late"] | None
    next_visit_due_date: str | None
    recorded_at: str
    recorded_by: str


class NextCareVisitOut(BaseModel):
    deadline_id: str
    due_date: str
    due_at: str = Field(description="exclusive end: 24:00 of the due date")
    overdue: bool


class CareOut(BaseModel):
    """A case's 特困 support (care_view)."""

    case_id: str
    region_code: str
    benefit_id: str | None
    person_name_masked: str
    legal_capacity: Literal[LEGAL_CAPACITIES] | None = Field(description="as last recorded with a guardian or agreement")
    legal_capacity_declared: bool = Field(description="stated in a body (a court's declaration), not presumed")
    arrangement: CareArrangementOut | None
    arrangements: list[CareArrangementOut] = Field(description="every arrangement, the latest last")
    dispersed_since: str | None
    guardian: CareGuardianOut | None
    guardians: list[CareGuardianOut]
    care_agreements: list[CareAgreementOut] = Field(description="every agreement, the one in force last")
    visits: list[CareVisitOut]
    next_visit: NextCareVisitOut | None = Field(description="the running visit clock (dispersed support)")
    support_ended_at: str | None = Field(description="when the 特困 benefit ended (no more visits)")
    version: int


class CareVisitDueDoc(BaseModel):
    benefit_id: str
    case_id: str
    deadline_id: str | None
    due_at: str | None
    last_care_quality: Literal[CARE_QUALITIES] | None
    last_visited_on: str | None
    next_visit_due_date: str | None
    overdue: bool = Field(description="past 24:00 of the due date now")
    person_name_masked: str
    region_code: str


class CareVisitsDueOut(BaseModel):
    as_of: str = Field(description="the moment `overdue` is judged at")
    items: list[CareVisitDueDoc] = Field(description="people in dispersed support within the caller's region, the "
                                                 "earliest due first")


@contextlib.contextmanager
def refused(title: str) -> Iterator[None]:
    """A refused care command as problem+json: 409 naming the rule, 422 naming the rule and field."""
    from services.verification.application import VerificationNotFound

    try:
        yield
    except CareNotAllowed as exc:
        raise Problem(409, title, str(exc), slug=exc.rule.replace("_", "-"), rule=exc.rule) from None
    except CareRuleBroken as exc:
        errors = [{"pointer": f"#/{exc.field}", "detail": str(exc)}] if exc.field else []
        raise Problem(422, title, str(exc), slug="care-rule", rule=exc.rule, errors=errors) from None
    except VerificationNotFound as exc:
        raise Problem(404, "Verification not found", f"no verification {exc}") from None


def router(runtime: "ServiceRuntime") -> APIRouter:
    from services.verification.application import VerificationNotFound

    api = APIRouter(prefix="/v1", tags=["care"])
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    def load(case_id: str, principal: Principal) -> None:
        found_in_region(app.get_verification, case_id, VerificationNotFound, "Verification", principal)

    async def command(case_id: str, request: Request, principal: Principal, title: str,
                      take: Callable[[Meta], Care], status: int = 200) -> Any:
        await asyncio.to_thread(load, case_id, principal)

        async def handle() -> tuple[int, dict]:
            with refused(title):
                care = await asyncio.to_thread(take, Meta.of(principal))
            runtime.saved()
            return status, care_view(care, app.clock.now())

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.put("/care/{case_id}/arrangement", response_model=CareOut, responses=COMMAND_ERRORS)
    async def put_arrangement(case_id: str, body: SupportArrangementIn, request: Request,
                              principal: Principal = runtime.auth.require(*CARE_EDITORS)):
        """Arrange a 特困 person's support (SupportArranged): concentrated in a care home, by its
        registered code, or dispersed at home, which starts the visit clock (care_visit). A change
        later is a new SupportArranged; the same arrangement again records nothing."""
        return await command(case_id, request, principal, "Support not arranged", lambda meta: arrange(
            app, case_id, body.mode, body.care_home_code, body.chosen_by_person, body.note, meta))

    @api.put("/care/{case_id}/guardian", response_model=CareOut, responses=COMMAND_ERRORS)
    async def put_guardian(case_id: str, body: GuardianIn, request: Request,
                           principal: Principal = runtime.auth.require(*CARE_EDITORS)):
        """Confirm the guardian of a person without full legal capacity (GuardianConfirmed, the ID
        number masked); 409 `full_legal_capacity` for a person presumed capable."""
        return await command(case_id, request, principal, "Guardian not confirmed",
                             lambda meta: confirm_guardian(app, case_id, body.model_dump(), meta))

    @api.put("/care/{case_id}/care-agreement", response_model=CareOut, responses=COMMAND_ERRORS)
    async def put_care_agreement(case_id: str, body: CareAgreementIn, request: Request,
                                 principal: Principal = runtime.auth.require(*CARE_EDITORS)):
        """Record the signed care agreement (CareAgreementSigned); for a person without full
        capacity the guardian comes first (409 `guardian_required`)."""
        return await command(case_id, request, principal, "Care agreement not recorded",
                             lambda meta: sign_agreement(app, case_id, body.model_dump(), meta))

    @api.post("/care/{case_id}/visits", status_code=201, response_model=CareOut, responses=COMMAND_ERRORS)
    async def post_visit(case_id: str, body: CareVisitIn, request: Request,
                         principal: Principal = runtime.auth.require(*CARE_EDITORS)):
        """Record a visit to a person in dispersed support (CareVisitRecorded): clears the running
        visit clock (met or late) and sets the next, the policy's cycle from the visit's day."""
        return await command(case_id, request, principal, "Visit not recorded",
                             lambda meta: record_visit(app, case_id, body.model_dump(), meta), status=201)

    @api.get("/care/{case_id}", response_model=CareOut, responses=READ_ERRORS)
    async def get_care_record(case_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        """A case's 特困 support: the arrangement, guardian, care agreements, visits and the next one due."""
        try:
            care = await asyncio.to_thread(get_care, app, case_id)
        except LookupError:
            raise Problem(404, "Care record not found", f"no support arranged or recorded for case {case_id}") from None
        ensure_region(principal, care.region_code)
        return care_view(care, app.clock.now())

    @api.get("/visits/due", response_model=CareVisitsDueOut, responses=LIST_ERRORS)
    async def visits_due(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        """People in dispersed support within the caller's region, with their next visit's due date
        and whether it is overdue."""
        region_filter(region, principal)
        now = app.clock.now()
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [doc for _, _, _, doc in tx.all("visit_due")]
        items = [{**d, "overdue": d["due_at"] is not None and now >= datetime.fromisoformat(d["due_at"])}
                 for d in in_region(docs, principal, region)]
        items.sort(key=lambda d: (d["next_visit_due_date"] or "", d["case_id"]))
        return {"as_of": now.isoformat(), "items": items}

    return api
