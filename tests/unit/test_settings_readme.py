"""README's "Configuration (environment variables)" table and `Settings` list the same variables
with the same defaults.

Rules for a row's default cell:
- exactly one code span (`3`, `var`, `false`): a literal that must equal the field's default
  (paths may be written relative to the repository);
- a field whose default is a non-empty literal (a number, a flag, a path, a non-empty string)
  must be written that way, so a default cannot hide in prose;
- a cell starting with "empty" means the default is the empty string, "unset" that there is
  none (None or false); any other text (e.g. "generated in ...") describes an empty default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import PydanticUndefined

from lifeline.settings import REPO_ROOT, Settings

README = REPO_ROOT / "README.md"
SECTION = "## Configuration (environment variables)"


def readme_rows() -> tuple[dict[str, str], list[str]]:
    """{variable: default cell} of the configuration table, and what is wrong with its rows."""
    text = README.read_text(encoding="utf-8")
    if SECTION not in text:
        return {}, [f"README.md has no {SECTION!r} section"]
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    problems: list[str] = []
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "variable" or set(cells[0]) <= set("-: "):
            continue  # header and separator
        names = re.findall(r"`(LIFELINE_[A-Z0-9_]+)`", cells[0])
        if len(names) != 1:
            problems.append(f"row {line!r}: one variable per row, found {names}")
        elif len(cells) != 3:
            problems.append(f"row {line!r}: expected variable | default | meaning")
        elif names[0] in rows:
            problems.append(f"{names[0]} is listed twice")
        else:
            rows[names[0]] = cells[1]
    return rows, problems


ROWS, PROBLEMS = readme_rows()
FIELDS = {env: name for name, env in Settings.env_names().items()}


def test_the_table_has_one_well_formed_row_per_variable():
    assert ROWS and not PROBLEMS, "README.md's configuration table: " + "; ".join(PROBLEMS or ["no rows"])


def test_every_settings_field_has_a_readme_row():
    missing = sorted(set(FIELDS) - set(ROWS))
    assert not missing, f"README.md's configuration table lacks {', '.join(missing)}"


def test_every_readme_row_is_a_settings_field():
    extra = sorted(set(ROWS) - set(FIELDS))
    assert not extra, f"README.md lists {', '.join(extra)}, which Settings does not have"


def _literal(cell: str) -> str | None:
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


def _equal(text: str, default: Any) -> bool:
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, int):
        return text == str(default)
    if isinstance(default, Path):
        return default in (Path(text), REPO_ROOT / text)
    return text == default


@pytest.mark.parametrize("env", sorted(set(ROWS) & set(FIELDS)))
def test_readme_default_agrees_with_the_field(env):
    field = Settings.model_fields[FIELDS[env]]
    default = field.default
    assert default is not PydanticUndefined and field.default_factory is None, (
        f"{env}: Settings has no plain default; give it one")
    cell = ROWS[env]
    literal = _literal(cell)
    if literal is not None:
        assert _equal(literal, default), f"{env}: README says {cell}, Settings says {default!r}"
    elif default not in ("", None, False):
        pytest.fail(f"{env}: the default {default!r} must be written as a literal in README, not {cell!r}")
    elif cell.startswith("empty"):
        assert default == "", f"{env}: README says empty, Settings says {default!r}"
    elif cell.startswith("unset"):
        assert default in (None, False), f"{env}: README says unset, Settings says {default!r}"
    else:
        assert default == "", f"{env}: README describes the default as {cell!r}, Settings says {default!r}"
