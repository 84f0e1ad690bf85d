"""A record as it stood at a past moment, rebuilt from its events (`?as_of=`).

The moment is compared with the moment each event was RECORDED: the `timestamp` the event
store keeps with it (taken when the event was made, just before it was saved). An aggregate
"as of" T is its events from the first up to, not including, the first one recorded after T
(a consistent prefix), rebuilt by the repository at that version; a read-model document as of T
is the service's own `project` run over those events into a throw-away store. Never a read-model
snapshot: what a route answers as of T comes from the events alone.

    as_of: AsOf = None                                # a route's query parameter
    ...
    if as_of is not None:
        not_in_future(as_of, runtime.clock)           # 422 naming `as_of`
        case = aggregate_as_of(app, Case.create_id(case_id), as_of)
        if case is None: ...                          # 404: it did not exist yet

Recording timestamps come from the host's clock. With LIFELINE_TEST_CLOCK the services' clock
may stand elsewhere; "the future" is then after both (nothing can have been recorded later).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator

from lifeline.http.problems import Problem
from lifeline.stores.sidestore import SideStore, SideTx

# RFC 3339 date-time: date, time, optional fraction, and an offset (Z or +hh:mm).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
# A '+' left unencoded in a URL arrives as a space: "...T10:00:00 08:00" means +08:00.
_SPACE_FOR_PLUS = re.compile(r"^(.*\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) (\d{2}:\d{2})$")

AS_OF_DESCRIPTION = (
    "RFC 3339 moment with an offset, e.g. 2026-12-01T10:00:00+08:00 (encode '+' as %2B): the record "
    "as it stood then, rebuilt from its events recorded up to that moment (not from a snapshot of "
    "the read model). 422 when malformed or in the future; 404 when the record did not exist yet."
)


def parse_moment(text: str) -> datetime:
    """An RFC 3339 moment (aware); ValueError naming what is wrong."""
    text = text.strip()
    plus = _SPACE_FOR_PLUS.match(text)
    if plus:
        text = f"{plus.group(1)}+{plus.group(2)}"
    if not _RFC3339.match(text):
        raise ValueError("as_of must be an RFC 3339 moment with an offset, e.g. 2026-12-01T10:00:00+08:00")
    fraction = re.search(r"\.(\d+)", text)
    if fraction and len(fraction.group(1)) > 6:  # Python keeps microseconds
        text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
    try:
        return datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError("as_of is not a real moment (month, day or time out of range)") from None


def _optional_moment(value: str | None) -> datetime | None:
    return None if value is None else parse_moment(value)


# The query parameter: None when absent, else an aware datetime (malformed: 422 naming `as_of`).
AsOf = Annotated[
    str | None,
    AfterValidator(_optional_moment),
    Query(description=AS_OF_DESCRIPTION, examples=["2026-12-01T10:00:00+08:00"]),
]


def not_in_future(as_of: datetime, clock: Any) -> None:
    """422 (naming `as_of`) for a moment after now: after both the service's clock and the
    host's, which stamps the records."""
    now = max(clock.now(), datetime.now(timezone.utc))
    if as_of > now:
        raise Problem(
            422, "Request validation failed", "as_of lies in the future: nothing is recorded after now.",
            slug="validation",
            errors=[{"parameter": "as_of", "in": "query", "detail": "as_of lies in the future"}],
        )


def not_found_then(what: str, ident: str, as_of: datetime) -> Problem:
    return Problem(404, f"{what} not found", f"no {what.lower()} {ident} at {as_of.isoformat()}")


def events_as_of(app: Any, aggregate_id: uuid.UUID, as_of: datetime) -> list[Any]:
    """The aggregate's domain events recorded up to `as_of`: the prefix before the first one
    recorded later (so a clock set back cannot leave a gap)."""
    events = []
    for stored in app.recorder.select_events(aggregate_id):
        event = app.mapper.to_domain_event(stored)
        if event.timestamp > as_of:
            break
        events.append(event)
    return events


def version_as_of(app: Any, aggregate_id: uuid.UUID, as_of: datetime) -> int | None:
    """The aggregate's last version recorded at or before `as_of`; None if it did not exist then."""
    events = events_as_of(app, aggregate_id, as_of)
    return events[-1].originator_version if events else None


def aggregate_as_of(app: Any, aggregate_id: uuid.UUID, as_of: datetime) -> Any | None:
    """The aggregate rebuilt by the repository at its version as of `as_of`; None if none then."""
    version = version_as_of(app, aggregate_id, as_of)
    return None if version is None else app.repository.get(aggregate_id, version=version)


def documents_as_of(app: Any, project: Callable[[Any, SideTx], None], aggregate_ids: Iterable[uuid.UUID],
                    as_of: datetime) -> SideStore:
    """A throw-away store with the documents `project` makes of these aggregates' events
    recorded up to `as_of` (in recording order): read it as the live route reads its store."""
    events = [e for ident in aggregate_ids for e in events_as_of(app, ident, as_of)]
    events.sort(key=lambda e: e.timestamp)  # stable: one aggregate's events keep their order
    store = SideStore.in_memory()
    with store.transaction() as tx:
        for event in events:
            project(event, tx)
    return store
