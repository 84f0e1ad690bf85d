"""Deliberate crashes, for the fault tests.

`LIFELINE_FAULTS` (``Settings.faults``) lists points as `point:EventName[:nth]`,
comma-separated, e.g. `consumer_after_save:BenefitApproved` kills the process
with SIGKILL right after the effects of the first BenefitApproved were saved and
before the Kafka offset was committed. Each fault fires once per data directory
(a marker file), so the restarted process runs normally. A service's composition
root installs them from its settings (:func:`install_faults`); none are
installed otherwise, and then the check is one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

from lifeline.settings import Settings

_counts: Counter[tuple[str, str]] = Counter()
_FAULTS: dict[tuple[str, str], int] = {}
_marker_dir = Path("var")


def parse_faults(spec: str) -> dict[tuple[str, str], int]:
    """``"point:Event[:nth],..."`` as {(point, event): nth}; the event ``*`` matches any."""
    faults: dict[tuple[str, str], int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        nth = int(parts[2]) if len(parts) > 2 else 1
        faults[(parts[0], parts[1] if len(parts) > 1 else "*")] = nth
    return faults


def install_faults(settings: Settings) -> None:
    """Arm the faults ``settings.faults`` names; markers go under ``settings.data_dir``."""
    global _FAULTS, _marker_dir
    _FAULTS = parse_faults(settings.faults)
    _marker_dir = settings.data_dir
    _counts.clear()


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
        marker = _marker_dir / f"fault.{point}.{key[1]}.fired"
        if marker.exists():
            continue
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("fired\n")
        os.kill(os.getpid(), signal.SIGKILL)
