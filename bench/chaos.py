"""Chaos at volume (issue 14, goal 6): random SIGKILLs while households flow, then the invariants.

    .venv/bin/python bench/chaos.py --kills 200 --seed 7

The same run as `lifeline chaos` (lifeline/dev/chaos.py): the embedded default in a fresh data
directory on free ports, households through application, the procedure, decisions, payment runs
with the bank simulator, charity matches and notices; a seeded random process (any service, a
simulator, Tansu, redis-server) SIGKILLed at random moments and started again, until --kills;
then every accepted application has one case, every approval one entitlement, every entitlement
x period at most one payment, every fund never overdrawn, every notice once per channel, and
every service's read models equal a replay. Its figures: households through the whole flow per
minute under fire against the first wave's, without a kill (the baseline of the same run), the
wall and CPU time and the load average. The last line is
`chaos: K kills, H households, 0 lost, 0 doubled` (or what broke); exit status 0 only then.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/chaos.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from lifeline.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["chaos", *sys.argv[1:]]))
