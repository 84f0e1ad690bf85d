"""One running Lifeline (five services + simulator, separate processes) per module.

Both fixtures are started with LIFELINE_TEST_CLOCK=1, so a test can move the time of all
its processes at once: `lifeline` moves it forward only (past public notices),
`clocked_lifeline` is for tests that set it to chosen moments and reset it.
"""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

from lifeline.rules.ids import make_resident_id
from tests.harness import Lifeline

_people = itertools.count(1)


def new_people(n: int, region: str = "370502") -> list[str]:
    """Fresh valid resident ID numbers, unique within the test run."""
    base = uuid.uuid4().int % 400
    return [
        make_resident_id(region, date(1970 + (base + i) % 40, 1 + i % 12, 1 + i % 28), next(_people) % 500, female=i % 2 == 1)
        for i in range(n)
    ]


@contextmanager
def running_lifeline(infra, extra_env: dict[str, str] | None = None) -> Iterator[Lifeline]:
    """A fresh Lifeline (own namespace and data dir), every process started and ready."""
    namespace = f"e{uuid.uuid4().hex[:6]}."
    data_dir = Path(tempfile.mkdtemp(prefix="lifeline-e2e-"))  # 0700, as a data dir must be
    system = Lifeline(infra, namespace, data_dir, extra_env=extra_env)
    system.start()
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="module")
def lifeline(infra):
    """A Lifeline on the shared test clock: the statutory procedure's 7-day public notice is
    passed by moving that clock (Lifeline.through_procedure), never by waiting."""
    with running_lifeline(infra, extra_env={"LIFELINE_TEST_CLOCK": "1"}) as system:
        yield system


@pytest.fixture(scope="module")
def clocked_lifeline(infra):
    """A Lifeline whose processes all read one shared clock (LIFELINE_TEST_CLOCK=1).

    Until a test sets it the clock is the system time; `clocked_lifeline.clock_set(moment)`,
    `.clock_advance("7d")` and `.clock_reset()` move it for every process at once (through
    `lifeline clock`). A test that sets it resets it when done: the Lifeline is shared by
    the module.
    """
    with running_lifeline(infra, extra_env={"LIFELINE_TEST_CLOCK": "1"}) as system:
        yield system


def set_records(lifeline: Lifeline, department: str, id_number: str, **figures: int) -> None:
    with lifeline.client("simulator") as sim:
        r = sim.put(f"/v1/records/{department}/{id_number}", json=figures)
        assert r.status_code == 200, r.text


def make_poor(lifeline: Lifeline, people: list[str], income_fen: int = 0) -> None:
    """Departments report little income and no assets for these people."""
    for n in people:
        set_records(lifeline, "hrss", n, monthly_income_fen=income_fen)
        set_records(lifeline, "bank", n, assets_fen=0)
