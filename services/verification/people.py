"""Whom a death report concerns (issue 11): a keyed fingerprint of each person named in an
application, and the cases that name them.

A department reports a death by ID number, not by case. Verification keeps, per person, the
cases whose applications name them, under a fingerprint keyed by the deployment's secret (the
sealing secret: LIFELINE_CIPHER_KEY or the data directory's), so neither the event store's
index nor any read model holds a number in clear or can be searched without that secret.
The number itself is compared with the application's members only once a case is found.
"""

from __future__ import annotations

import hashlib
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta


def fingerprint(secret: str, id_number: str) -> str:
    """The keyed fingerprint of an ID number (upper-case X, spaces stripped)."""
    return hashlib.sha256(f"{secret}\0verification-person\0{id_number.strip().upper()}".encode()).hexdigest()[:32]


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
