"""A pytest plugin: every service application a test made, replayed both ways at the test's end.

    .venv/bin/pytest -p tests.unit.replay_crosscheck tests/unit/services/test_payment_runs.py

For each application still open when a test ends (before its fixtures close it), with events in
its log it did not have at the last check: every stored event decoded by `LogReader` is the mapper's (same class, same attributes),
and the read models rebuilt by the fast path (`rebuild(..., fast=True)`: LogReader + PageTx) are
the library path's (`fast=False`), document by document. A difference fails the test's teardown,
naming the event or the documents. tests/unit/test_replay.py runs it over tests of every service.
"""

from __future__ import annotations

import importlib
import weakref
from typing import Any

import pytest

from lifeline.stores.application import ServiceApplication
from lifeline.stores.logreader import LogReader
from lifeline.stores.projection import compare, rebuild

_open: "weakref.WeakSet[ServiceApplication]" = weakref.WeakSet()
_seen: "weakref.WeakKeyDictionary[ServiceApplication, int]" = weakref.WeakKeyDictionary()
_services: set[str] = set()
_checked = {"apps": 0, "events": 0, "documents": 0, "differences": 0}
_init = ServiceApplication.__init__


def _tracking_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    _open.add(self)


def pytest_configure(config: Any) -> None:
    ServiceApplication.__init__ = _tracking_init  # type: ignore[method-assign]


def pytest_unconfigure(config: Any) -> None:
    ServiceApplication.__init__ = _init  # type: ignore[method-assign]


def _project_of(app: ServiceApplication) -> Any:
    try:
        return importlib.import_module(f"services.{app.service}.bootstrap").SPEC.project
    except ModuleNotFoundError:
        return None


def check(app: ServiceApplication) -> list[str]:
    """What differs between the two paths on `app`'s log (nothing: [])."""
    problems = []
    notes = app.recorder.select_notifications(1, 10**9)
    if not notes:
        return problems
    reader = LogReader(app, page_size=97)  # pages that end mid-log
    fast = [event for page in reader.pages() for _, event in page]
    for note, event in zip(notes, fast):
        expected = app.mapper.to_domain_event(note)
        if type(event) is not type(expected) or event.__dict__ != expected.__dict__:
            a, b = event.__dict__, expected.__dict__
            keys = sorted(k for k in a.keys() | b.keys() if a.get(k, a) != b.get(k, b))
            problems.append(f"event {note.id} ({note.topic}) decoded differently: "
                            + ", ".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys)[:500])
    if len(fast) != len(notes):
        problems.append(f"{len(fast)} events read, {len(notes)} stored")
    project = _project_of(app)
    if project is not None:
        by_mapper = rebuild(app, project, fast=False)
        by_reader = rebuild(app, project, fast=True, batch_size=97)
        problems.extend(compare(by_mapper, by_reader))
        _checked["documents"] += sum(1 for _ in by_reader.texts())
        by_mapper.close()
        by_reader.close()
    _checked["apps"] += 1
    _checked["events"] += len(notes)
    _services.add(app.service or type(app).__name__)
    return problems


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: Any, nextitem: Any) -> Any:
    problems = []
    for app in list(_open):
        try:
            end = app.recorder.max_notification_id() or 0
        except Exception:  # noqa: BLE001 - closed already (its store gone)
            _open.discard(app)
            continue
        if end and _seen.get(app) != end:  # new events since it was last checked (module fixtures)
            _seen[app] = end
            problems.extend(f"{app.service or type(app).__name__}: {p}" for p in check(app))
    yield
    _checked["differences"] += len(problems)
    if problems:
        pytest.fail("replayed differently:\n" + "\n".join(problems[:20]), pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    c = _checked
    terminalreporter.write_line(f"replay crosscheck: {c['apps']} applications, {c['events']} events, "
                                f"{c['documents']} documents, {c['differences']} differences between the two paths; "
                                f"services: {', '.join(sorted(_services))}")
