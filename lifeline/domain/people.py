"""Whom a report about a person concerns: a department reports a death by ID number, not by
case. A service keeps, per person, the cases whose applications name them (`Person`), under a
fingerprint keyed by the deployment's secret (the sealing secret: LIFELINE_CIPHER_KEY or the data
directory's), so neither an event store's index nor any read model holds a number in clear or can
be searched without that secret. Each service keeps its own (payment: whose payments a death
stops; verification: whose household a death changes; intake's person index is its own aggregate)."""

from __future__ import annotations

import hashlib
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta


def fingerprint(secret: str, id_number: str, purpose: str = "") -> str:
    """The keyed fingerprint of an ID number (upper-case X, spaces stripped); a `purpose` makes
    one service's fingerprints unlike another's."""
    number = id_number.strip().upper()
    text = f"{secret}\0{purpose}\0{number}" if purpose else f"{secret}\0{number}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Person(LifelineAggregate):
    """A person's fingerprint and the cases that name them."""

    id_kind = "person"

    class Registered(LifelineAggregate.Created):
        person: str

    class CaseLinked(LifelineAggregate.Event):
        person: str
        case_id: str

        def apply(self, p: "Person") -> None:
            p.cases.append(self.case_id)

    @classmethod
    def register(cls, person: str, by: Meta) -> "Person":
        return cls._create(cls.Registered, id=cls.create_id(person), person=person, meta=by.as_dict())

    def __init__(self, person: str, **recorded: Any):
        self.person = person
        self.cases: list[str] = []

    def link(self, case_id: str, by: Meta) -> bool:
        if case_id in self.cases:
            return False
        self.trigger_event(self.CaseLinked, person=self.person, case_id=case_id, meta=by.as_dict())
        return True
