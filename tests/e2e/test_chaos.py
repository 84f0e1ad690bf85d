"""Kill -9 at random moments while households flow through: nothing lost, nothing doubled.

The short seeded run of `lifeline chaos` (lifeline/dev/chaos.py; `bench/chaos.py --kills 200` is
the long one): the embedded default started in its own data directory on free ports, households
through application, the procedure, decisions, payment runs with the bank simulator, charity
matches and notices, while every process — the five services (their relays, consumers and
workers are tasks inside them), the four simulators, Tansu (which comes back empty: the relays
publish again) and redis-server — is SIGKILLed once, in a seeded random order at random moments,
and started again. Callers retry with the same Idempotency-Key. Then every accepted application
has one case, every approval one entitlement, every entitlement × period at most one payment,
every fund is never overdrawn, every notice went once per channel, and every service's read
models equal a replay of its log.
"""

from __future__ import annotations

import io

import pytest

from lifeline.dev.chaos import PROCESSES, run
from tests.conftest import SETTINGS

pytestmark = pytest.mark.e2e

SEED = SETTINGS.chaos_seed


def test_every_process_killed_at_random_while_households_flow_loses_nothing_and_doubles_nothing(tmp_path):
    out = io.StringIO()
    code = run(kills=len(PROCESSES), seed=SEED, households=8, wave_size=4, concurrency=4, patience=180,
               data_dir=tmp_path / "chaos", out=out, gap=(0.2, 1.5), calm_waves=0)
    text = out.getvalue()
    print(text)
    lines = text.strip().splitlines()
    assert lines[-1].startswith(f"chaos: {len(PROCESSES)} kills, ") and lines[-1].endswith(" 0 lost, 0 doubled"), text
    assert code == 0, text
    for name in PROCESSES:  # each died once
        assert sum(1 for line in lines if line.split("] ", 1)[-1].startswith("kill ") and f": {name} (" in line) == 1, text
