"""Simulators of the outside world (partner departments, a bank, an SMS gateway, the charity
federation): separate processes speaking the real formats, able to misbehave on purpose."""

from __future__ import annotations

import json
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
