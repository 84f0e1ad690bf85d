"""docs/RULES.md stays true: every rule row names a source, a default, a function that exists and a
test that exists, and every Chinese quotation attributed to a seed is in that seed."""
from __future__ import annotations

import ast
import importlib
import re
from functools import lru_cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DOC = REPO / "docs" / "RULES.md"
SEEDS = REPO.parent / "shared" / "seeds"

CODE_REF = re.compile(r"`([a-z_][\w.]*):([A-Za-z_][\w.]*)`")
TEST_REF = re.compile(r"`(test_\w+\.py)::(test_\w+)`")
SEED_QUOTE = re.compile(r"\b(00\d)\b[^“;]*“([^”]+)”((?:\s*[、,，]\s*“[^”]+”)*)")


def _tables() -> list[tuple[str, list[dict[str, str]]]]:
    """Every markdown table as (heading, rows); a row maps header -> cell text."""
    tables: list[tuple[str, list[dict[str, str]]]] = []
    heading, header, rows = "", None, []
    for line in DOC.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("#"):
            heading = line.strip("# ")
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                rows.append(dict(zip(header, cells)))
            continue
        if header is not None:
            tables.append((heading, rows))
        header, rows = None, []
    return tables


RULE_ROWS = [(f"{h} / {r['Rule'][:40]}", r) for h, rows in _tables() for r in rows
             if "Enforced by" in r]


def test_doc_has_rule_tables():
    assert len(RULE_ROWS) >= 45
    headings = {h for h, rows in _tables() if rows and "Enforced by" in rows[0]}
    assert len(headings) == 7          # sections 1-7 all use the five-column layout


@pytest.mark.parametrize("where, row", RULE_ROWS, ids=[w for w, _ in RULE_ROWS])
def test_every_rule_names_source_default_function_and_test(where, row):
    assert set(row) == {"Rule", "Source", "Default", "Enforced by", "Test"} or \
        set(row) == {"Rule", "Source", "Default (example county)", "Enforced by", "Test"}
    assert row["Source"], "no source"
    assert row.get("Default", row.get("Default (example county)")), "no default"
    assert CODE_REF.search(row["Enforced by"]), "no `module:function` in Enforced by"
    assert TEST_REF.search(row["Test"]), "no `test_file.py::test_name` in Test"
    assert not TEST_REF.sub("", row["Test"]).strip(" ,"), "Test cell has an unparsed name"


def _resolve(module: str, qualname: str) -> object:
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        if isinstance(obj, type) and part in getattr(obj, "__dataclass_fields__", {}):
            return obj  # a dataclass field: exists on instances, not necessarily on the class
        obj = getattr(obj, part)
    return obj


CODE_NAMES = sorted({m.groups() for _, r in RULE_ROWS for m in CODE_REF.finditer(r["Enforced by"])})
TEST_NAMES = sorted({m.groups() for _, r in RULE_ROWS for m in TEST_REF.finditer(r["Test"])})


@pytest.mark.parametrize("module, qualname", CODE_NAMES, ids=[f"{m}:{q}" for m, q in CODE_NAMES])
def test_named_function_exists(module, qualname):
    _resolve(module, qualname)


@lru_cache(maxsize=None)
def _tests_in(filename: str) -> frozenset[str]:
    tree = ast.parse((HERE / filename).read_text(encoding="utf-8"))
    return frozenset(n.name for n in tree.body
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


@pytest.mark.parametrize("filename, name", TEST_NAMES, ids=[f"{f}::{n}" for f, n in TEST_NAMES])
def test_named_test_exists(filename, name):
    assert (HERE / filename).is_file(), filename
    assert name in _tests_in(filename)


def _norm(text: str) -> str:
    """Only letters and digits count: seeds mix full- and half-width punctuation."""
    return "".join(ch for ch in text if ch.isalnum())


@lru_cache(maxsize=None)
def _seed(number: str) -> str:
    path = next(SEEDS.glob(f"{number}_*.txt"))
    return _norm(path.read_text(encoding="utf-8"))


def _segments(cell: str) -> list[str]:
    """Split a Source cell on the ``;`` between sources, never on one inside a quotation."""
    parts, current, inside = [], "", False
    for ch in cell:
        inside = True if ch == "“" else False if ch == "”" else inside
        if ch == ";" and not inside:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def _seed_quotes() -> list[tuple[str, str]]:
    out = []
    for _, row in RULE_ROWS:
        for segment in _segments(row["Source"]):
            for m in SEED_QUOTE.finditer(segment):
                quotes = [m.group(2)] + re.findall(r"“([^”]+)”", m.group(3) or "")
                for quote in quotes:
                    for fragment in quote.split("…"):
                        if fragment.strip():
                            out.append((m.group(1), fragment.strip()))
    return sorted(set(out))


SEED_QUOTES = _seed_quotes()


def test_every_seed_quotation_is_checked():
    """Every quotation in a Source cell is attributed to a seed (so checked below), except the
    few that quote something else, which must say so."""
    checked = {q for _, q in SEED_QUOTES}
    for where, row in RULE_ROWS:
        for quote in re.findall(r"“([^”]+)”", row["Source"]):
            for fragment in filter(None, (f.strip() for f in quote.split("…"))):
                assert fragment in checked, f"{where}: quotation not attributed to a seed"
    assert len(SEED_QUOTES) >= 25


@pytest.mark.skipif(not SEEDS.is_dir(), reason="seed documents not present")
@pytest.mark.parametrize("seed, quote", SEED_QUOTES, ids=[f"{s}:{q[:12]}" for s, q in SEED_QUOTES])
def test_seed_quotation_is_in_the_seed(seed, quote):
    assert _norm(quote) in _seed(seed), f"not in seed {seed}: {quote}"
