"""A service's outbound mapping: which internal domain events leave the service,
under which public name, with which data.

Domain events stay inside the service; only the events a service registers here
become integration events (CloudEvents on Kafka). One function per event turns
the stored domain event into the data of its public event, which the relay then
validates against the event's JSON Schema. `published` lists the public names a
service produces, so contract tests can exercise every one through the real
producer's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lifeline.contracts import registry

Mapper = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class Outgoing:
    """A domain event's wire form; its topics and key follow from the contract."""

    name: str
    subject: str
    data: dict[str, Any]


def case_of(event: Any) -> str:
    return event.case_id


def _plain(value: Any) -> Any:
    """JSON's own types: value objects and mappings become plain dicts, tuples lists
    (copied, never shared)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Outbound:
    def __init__(self) -> None:
        self._mappers: dict[type, tuple[str, Mapper, Callable[[Any], str]]] = {}

    def maps(
        self, event_class: type, public_name: str, subject: Callable[[Any], str] = case_of
    ) -> Callable[[Mapper], Mapper]:
        """Decorator: `fn(domain_event) -> data` publishes `event_class` as `public_name`;
        the CloudEvent subject (and Kafka key) is the case id unless `subject` says otherwise."""

        def register(fn: Mapper) -> Mapper:
            self._mappers[event_class] = (public_name, fn, subject)
            return fn

        return register

    def copies(
        self, event_class: type, public_name: str, subject: Callable[[Any], str] = case_of
    ) -> None:
        """Publish `event_class` as `public_name` with the fields its JSON Schema declares,
        read from the domain event's attributes of the same names: for events whose wire
        payload is the event itself, the schema is the one declaration."""
        fields = tuple(registry.schema(public_name)["properties"])

        def copy(event: Any) -> dict[str, Any]:
            return {name: _plain(getattr(event, name)) for name in fields}

        self.maps(event_class, public_name, subject)(copy)

    def __call__(self, event: Any) -> Outgoing | None:
        found = self._mappers.get(type(event))
        if found is None:
            return None
        name, fn, subject = found
        return Outgoing(name, subject(event), fn(event))

    @property
    def published(self) -> dict[str, type]:
        """Public event name → the domain event class it comes from."""
        return {name: cls for cls, (name, _, _) in self._mappers.items()}
