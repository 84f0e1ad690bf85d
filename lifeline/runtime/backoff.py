"""The wait between attempts at a delivery that failed: charity's webhooks to the federation and
notify's SMS through the gateway retry on the same schedule."""

from __future__ import annotations


def backoff_seconds(attempts: int, cap: float) -> float:
    """The wait after the `attempts`-th failure in a row: 1 s, doubling, at most `cap`."""
    return float(min(2.0 ** max(attempts - 1, 0), cap))
