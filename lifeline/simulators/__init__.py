"""Simulators of the outside world (partner departments, a bank, an SMS gateway, the charity
federation): separate processes speaking the real formats, able to misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

S = TypeVar("S")


def load_state(path: Path, cls: type[S]) -> S:
    """A simulator's remembered state (a dataclass) from its state.json; fields a newer or older
    version does not know are ignored, missing ones take their defaults."""
    if not path.exists():
        return cls()
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})


def save_state(path: Path, state: Any) -> None:
    """Written atomically (a temporary file renamed over it): a kill -9 leaves the old or the new."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), ensure_ascii=False))
    tmp.replace(path)


class RememberingSimulator:
    """What the SMS gateway and the federation simulators share: a state (a dataclass) kept in
    `<data_dir>/<name>/state.json` across restarts, a lock around it, and a behaviour an operator
    changes at run time, which releases whatever was held waiting for a change."""

    def _remember(self, data_dir: Path, name: str, state_cls: type, behaviour: Any) -> None:
        self.dir = data_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.state = load_state(self._state_path(), state_cls)
        self._changed = asyncio.Event()  # set (and replaced) whenever the behaviour changes

    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _save(self) -> None:
        save_state(self._state_path(), self.state)

    def set_behaviour(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()  # releases what was held (answers in timeout mode, deliveries in silent mode)
