"""A progress bar with the rate, on stderr, for replays and exports."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(n)` redraws at most ten times a second on a terminal; `done()` always prints the
    final count and rate on its own line (so logs and tests see the rate too)."""

    WIDTH = 30

    def __init__(self, label: str, total: int | None = None, out: TextIO | None = None, unit: str = "events"):
        self.label, self.total, self.unit = label, total, unit
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.n = 0
        self._drawn = 0.0

    @property
    def rate(self) -> float:
        return self.n / max(time.monotonic() - self.started, 1e-6)

    def line(self) -> str:
        if self.total:
            filled = int(self.WIDTH * min(self.n, self.total) / self.total)
            bar = "[" + "#" * filled + "." * (self.WIDTH - filled) + "] "
            count = f"{self.n:,}/{self.total:,}"
        else:
            bar, count = "", f"{self.n:,}"
        return f"{self.label} {bar}{count} {self.unit}  {self.rate:,.0f} {self.unit}/s"

    def update(self, n: int) -> None:
        self.n = n
        now = time.monotonic()
        if self.tty and now - self._drawn >= 0.1:
            self._drawn = now
            print("\r" + self.line(), end="", file=self.out, flush=True)

    def advance(self, by: int = 1) -> None:
        self.update(self.n + by)

    def done(self) -> None:
        print(("\r" if self.tty else "") + self.line() + f" in {time.monotonic() - self.started:.2f} s",
              file=self.out, flush=True)
