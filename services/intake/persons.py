"""One person, one file per benefit (SPEC §4): intake's person index.

A `Person` per person named on an application, keyed by a keyed fingerprint of the ID number
(sha256 of the deployment's secret and the number: the number itself is never a key, and the
store cannot be searched for a number without the secret). It records the open applications the
person is on (case id → assistance type) and the benefits that cover the person (benefit type →
case id).

Registering a case saves the new Case and every member's Person in one transaction
(`register_case`): two registrations naming one person at the same moment, on two replicas,
both write that Person at the same version, the store's optimistic check refuses the second,
which is tried again on the fresh index and is held (`Case.DuplicateSuspected`), naming the
first. The entries follow the case: an approval turns the open entry into coverage (monthly
benefits and recognitions; one-off relief covers nobody afterwards), a refusal, a non-acceptance
or a withdrawal releases it, a termination removes the coverage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.domain.people import fingerprint
from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import Application
from lifeline.stores.application import DuplicateRequest
from services.intake.domain import Case

if TYPE_CHECKING:
    from services.intake.application import IntakeApplication

# Benefits a person holds once. 低保 and 特困 are one basic-living guarantee: a person is
# supported as 特困 or guaranteed as 低保, never both (and a 低保 application may end in a 特困
# benefit); every other type is its own.
_FAMILY = {"dibao": "basic_living", "tekun": "basic_living"}
# Benefit kinds that cover a person from their approval until terminated; one-off relief is
# paid once and covers nobody afterwards.
COVERING_KINDS = ("monthly", "recognition")
# How often a registration is tried again on the fresh index after another one wrote a person.
REGISTER_ATTEMPTS = 8


def family(benefit_or_assistance_type: str) -> str:
    return _FAMILY.get(benefit_or_assistance_type, benefit_or_assistance_type)


def indexed_members(application: Application) -> list[str]:
    """Whose files these are: the members the household counts (co-resident), or the one person
    of a 单人户保; a support obligor living elsewhere is named but not covered."""
    household = application.household
    single = household.single_person_member_id
    if single:
        return [single.upper()]
    return [m.id_number for m in household.members if m.co_resident]


class Person(LifelineAggregate):
    """One person's open applications and coverage, under the fingerprint of the ID number."""

    id_kind = "person"

    class Indexed(LifelineAggregate.Created):
        fingerprint: str

    class ApplicationOpened(LifelineAggregate.Event):
        case_id: str
        assistance_type: str

        def apply(self, p: "Person") -> None:
            p.open_cases[self.case_id] = self.assistance_type

    class ApplicationClosed(LifelineAggregate.Event):
        case_id: str
        outcome: str  # approved | refused | not_accepted | withdrawn

        def apply(self, p: "Person") -> None:
            p.open_cases.pop(self.case_id, None)

    class Covered(LifelineAggregate.Event):
        case_id: str
        benefit_type: str

        def apply(self, p: "Person") -> None:
            p.covered[self.benefit_type] = self.case_id

    class Uncovered(LifelineAggregate.Event):
        case_id: str
        benefit_type: str
        reason: str  # terminated

        def apply(self, p: "Person") -> None:
            p.covered.pop(self.benefit_type, None)

    @classmethod
    def index(cls, fingerprint: str, by: Meta) -> "Person":
        return cls._create(cls.Indexed, id=cls.create_id(fingerprint), fingerprint=fingerprint, meta=by.as_dict())

    def __init__(self, fingerprint: str, meta: dict[str, str]):
        self.fingerprint = fingerprint
        self.open_cases: dict[str, str] = {}  # case id → assistance type
        self.covered: dict[str, str] = {}     # benefit type → case id

    def matches(self, case_id: str, assistance_type: str) -> list[tuple[str, str]]:
        """(other case id, covered | open_application) that make an application for
        `assistance_type` on `case_id` a suspected duplicate."""
        wanted = family(assistance_type)
        found = [(other, "covered") for benefit, other in self.covered.items()
                 if family(benefit) == wanted and other != case_id]
        found += [(other, "open_application") for other, kind in self.open_cases.items()
                  if family(kind) == wanted and other != case_id]
        return found

    def open(self, case_id: str, assistance_type: str, by: Meta) -> None:
        if case_id not in self.open_cases:
            self.trigger_event(self.ApplicationOpened, case_id=case_id, assistance_type=assistance_type,
                               meta=by.as_dict())

    def close(self, case_id: str, outcome: str, by: Meta) -> None:
        if case_id in self.open_cases:
            self.trigger_event(self.ApplicationClosed, case_id=case_id, outcome=outcome, meta=by.as_dict())

    def cover(self, case_id: str, benefit_type: str, by: Meta) -> None:
        if self.covered.get(benefit_type) != case_id:
            self.trigger_event(self.Covered, case_id=case_id, benefit_type=benefit_type, meta=by.as_dict())

    def uncover(self, case_id: str, reason: str, by: Meta) -> None:
        for benefit_type, covering in list(self.covered.items()):
            if covering == case_id:
                self.trigger_event(self.Uncovered, case_id=case_id, benefit_type=benefit_type, reason=reason,
                                   meta=by.as_dict())


@dataclass(frozen=True)
class Coverage:
    """What the index knows of one person."""

    open_cases: dict[str, str] = field(default_factory=dict)  # case id → assistance type
    covered: dict[str, str] = field(default_factory=dict)     # benefit type → case id


def _secret(app: "IntakeApplication") -> str:
    return app.sealer.secret if app.sealer is not None else ""


def _load(app: "IntakeApplication", id_number: str) -> Person | None:
    try:
        return app.repository.get(Person.create_id(fingerprint(_secret(app), id_number)))
    except AggregateNotFoundError:
        return None


def coverage_of(app: "IntakeApplication", id_number: str) -> Coverage:
    """The open applications and coverage of the person with this ID number (empty when the
    index has never seen the person)."""
    person = _load(app, id_number)
    if person is None:
        return Coverage()
    return Coverage(dict(person.open_cases), dict(person.covered))


def persons_of(app: "IntakeApplication", application: Application, by: Meta) -> list[Person]:
    """The index entries of an application's people, new ones made (not saved)."""
    secret = _secret(app)
    people = []
    for id_number in dict.fromkeys(indexed_members(application)):
        key = fingerprint(secret, id_number)
        people.append(app.load_or_create(Person.create_id(key), lambda key=key: Person.index(key, by)))
    return people


def register_case(app: "IntakeApplication", make_case: Callable[[], Case], by: Meta) -> Case:
    """Save a new case with its people's index entries in one transaction; held as a suspected
    duplicate when one of them is covered by this benefit or on another open application for it.
    Another registration that wrote one of these people meanwhile makes the store refuse this
    one: it is tried again on the fresh index. DuplicateRequest when the case itself exists (a
    repeated request)."""
    for _ in range(REGISTER_ATTEMPTS):
        case = make_case()
        people = persons_of(app, case.application, by)
        matches = [m for p in people for m in p.matches(case.case_id, case.application.assistance_type)]
        if matches:
            case.hold_as_duplicate(matches, app.clock.now().isoformat(), by)
        for person in people:
            person.open(case.case_id, case.application.assistance_type, by)
        try:
            app.save(case, *people)
        except IntegrityError:
            if app.exists(Case.create_id(case.case_id)):
                raise DuplicateRequest(case.case_id) from None
            continue  # a person changed meanwhile: read the index again
        return case
    raise RuntimeError(f"the person index kept changing while case {case.case_id} was registered")


def decide_duplicate(app: "IntakeApplication", case_id: str, decision: str, reason: str, by: Meta) -> dict[str, Any]:
    """A held case decided by a person: proceed (back to submitted: acceptance possible) or
    withdraw (the case ends, its people's open entries released, in the same transaction).
    AcceptanceNotAllowed (409 `not_held`) when the case is not held, or was decided meanwhile."""
    for _ in range(REGISTER_ATTEMPTS):
        case = app.get_case(case_id)
        case.decide_duplicate(decision, reason, app.clock.now().isoformat(), by)
        released = release(app, case, "withdrawn", by) if decision == "withdraw" else []
        try:
            app.save(case, *released)
        except IntegrityError:
            continue  # the case or a person changed meanwhile: decide on the fresh state
        return {"case_id": case_id, "decision": decision, "status": case.status,
                "other_case_ids": list(case.duplicate_of), "version": case.version}
    raise RuntimeError(f"case {case_id} kept changing while its hold was decided")


def release(app: "IntakeApplication", case: Case, outcome: str, by: Meta) -> list[Person]:
    """The case's people with its open entry closed (refused, not accepted, withdrawn): to save
    with the case."""
    people = _known(persons_of(app, case.application, by))
    for person in people:
        person.close(case.case_id, outcome, by)
    return [p for p in people if p.pending_events]


def note_benefit(app: "IntakeApplication", case_id: str, data: dict[str, Any] | None, by: Meta,
                 pe: ProcessingEvent) -> None:
    """A decision on the case reached intake: BenefitApproved (`data`) turns the open entries
    into coverage of a monthly benefit or a recognition; BenefitRefused (`data` None) releases
    them."""
    case = app.get_case(case_id)
    covers = data is not None and data.get("kind", "monthly") in COVERING_KINDS
    people = persons_of(app, case.application, by)
    if not covers:
        people = _known(people)  # nobody to add: a person the index never saw stays unknown
    for person in people:
        person.close(case_id, "approved" if data is not None else "refused", by)
        if covers:
            person.cover(case_id, data["benefit_type"], by)
    _collect(pe, people)


def note_termination(app: "IntakeApplication", case_id: str, by: Meta, pe: ProcessingEvent) -> None:
    """BenefitTerminated: the case's benefit covers its people no more."""
    if not app.exists(Case.create_id(case_id)):
        return  # not a case intake registered: nobody it indexed
    case = app.get_case(case_id)
    people = _known(persons_of(app, case.application, by))
    for person in people:
        person.uncover(case_id, "terminated", by)
    _collect(pe, people)


def _known(people: list[Person]) -> list[Person]:
    """Those the index had saved (a new entry has its creation pending)."""
    return [p for p in people if not p.pending_events]


def _collect(pe: ProcessingEvent, people: Iterable[Person]) -> None:
    changed = [p for p in people if p.pending_events]
    if changed:
        pe.collect_events(*changed)
