"""Deliberate crashes, for the fault tests.

`LIFELINE_FAULTS` lists points as `point:EventName[:nth]`, comma-separated, e.g.
`consumer_after_save:BenefitApproved` kills the process with SIGKILL right after
the effects of the first BenefitApproved were saved and before the Kafka offset
was committed. Each fault fires once per data directory (a marker file), so the
restarted process runs normally. Unset in production: the check is one dict
lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

_counts: Counter[tuple[str, str]] = Counter()


def _configured() -> dict[tuple[str, str], int]:
    spec = os.environ.get("LIFELINE_FAULTS", "")
    faults: dict[tuple[str, str], int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        nth = int(parts[2]) if len(parts) > 2 else 1
        faults[(parts[0], parts[1] if len(parts) > 1 else "*")] = nth
    return faults


_FAULTS = _configured()


def maybe_crash(point: str, name: str) -> None:
    if not _FAULTS:
        return
    for key in {(point, name), (point, "*")}:
        nth = _FAULTS.get(key)
        if nth is None:
            continue
        _counts[key] += 1
        if _counts[key] < nth:
            continue
        marker = Path(os.environ.get("LIFELINE_DATA_DIR", "var")) / f"fault.{point}.{key[1]}.fired"
        if marker.exists():
            continue
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("fired\n")
        os.kill(os.getpid(), signal.SIGKILL)
