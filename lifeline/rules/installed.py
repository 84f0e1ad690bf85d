"""Process-wide rules data (the statutory calendar, the region register): what a service's
composition root installed at start from the operator's files, or, before anything was
installed, the data shipped with Lifeline. Nothing here reads the environment."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Generic, TypeVar

T = TypeVar("T")


class Installed(Generic[T]):
    def __init__(self, load_shipped: Callable[[], T]):
        self.shipped: Callable[[], T] = cache(load_shipped)  # read once, on first use
        self._installed: T | None = None

    def install(self, value: T | None) -> None:
        """Make `value` the process-wide one; None goes back to the shipped one."""
        self._installed = value

    def get(self) -> T:
        return self._installed if self._installed is not None else self.shipped()
