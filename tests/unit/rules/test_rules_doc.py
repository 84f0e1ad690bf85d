"""docs/RULES.md stays true: every rule row names a source, a default, a function that exists and a
test that exists, where the rule runs (a route, a consumer or a start-up step that exists) and the
end-to-end test that drives it there (or the open issue that will wire it), and every Chinese
quotation attributed to a seed is in that seed."""
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
    assert len(headings) == 9          # sections 1-9 all use the six-column layout


@pytest.mark.parametrize("where, row", RULE_ROWS, ids=[w for w, _ in RULE_ROWS])
def test_every_rule_names_source_default_function_and_test(where, row):
    assert set(row) == {"Rule", "Source", "Default", "Enforced by", "Test", "Runs in"} or \
        set(row) == {"Rule", "Source", "Default (example county)", "Enforced by", "Test", "Runs in"}
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


# --- Runs in: where a running Lifeline applies the rule, and the end-to-end test that drives it --
E2E_DIR = REPO / "tests" / "e2e"
SERVICES = ("intake", "verification", "payment", "charity", "notify")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
OPEN_ISSUES = frozenset({9, 10, 11, 12, 13, 14, 15, 16, 17})
ROUTE = re.compile(r"(\w+) (GET|POST|PUT|PATCH|DELETE) (/\S*)")
CONSUMER = re.compile(r"(\w+) ← (\w+)")
START = re.compile(r"start: lifeline serve(?: (\w+))?")
E2E = re.compile(r"e2e/(test_\w+\.py)::(test_\w+)(?:\[([^\]]+)\])?")
NOT_WIRED = re.compile(r"not wired yet \(issue (\d+)\)")
# What each start-up step runs: (file, function it must call).
START_STEPS = {
    None: (REPO / "lifeline" / "runtime" / "service.py", "install_rules"),        # every service
    "verification": (REPO / "services" / "verification" / "bootstrap.py", "default_policy_book"),
}


def _runs_in(cell: str) -> dict[str, list]:
    """The places and end-to-end tests a *Runs in* cell names; ValueError on anything else."""
    found: dict[str, list] = {"route": [], "consumer": [], "start": [], "e2e": [], "issue": []}
    for token in re.findall(r"`([^`]*)`", cell):
        for kind, pattern in (("route", ROUTE), ("consumer", CONSUMER), ("start", START), ("e2e", E2E)):
            if m := pattern.fullmatch(token):
                found[kind].append(m.groups())
                break
        else:
            raise ValueError(f"not a route, consumer, start-up step or e2e test: `{token}`")
    found["issue"] = [int(n) for n in NOT_WIRED.findall(cell)]
    rest = NOT_WIRED.sub("", re.sub(r"`[^`]*`", "", cell))
    if rest.strip(" ,;"):
        raise ValueError(f"unparsed text in Runs in: {rest.strip()!r}")
    return found


@pytest.mark.parametrize("where, row", RULE_ROWS, ids=[w for w, _ in RULE_ROWS])
def test_every_rule_says_where_it_runs(where, row):
    cell = row.get("Runs in", "")
    assert cell, "no Runs in cell"
    found = _runs_in(cell)
    places = found["route"] + found["consumer"] + found["start"]
    if found["issue"]:
        assert set(found["issue"]) <= OPEN_ISSUES, f"not an open issue: {found['issue']}"
        assert len(found["issue"]) == 1, "one issue wires it"
        assert not found["e2e"], "a rule not wired yet has no end-to-end test to name"
    else:
        assert found["e2e"], "names neither an e2e test nor `not wired yet (issue N)`"
        assert places, "names an e2e test but no route, consumer or start-up step"


RUNS_IN = [_runs_in(r["Runs in"]) for _, r in RULE_ROWS if r.get("Runs in")]
ROUTES = sorted({g for f in RUNS_IN for g in f["route"]})
CONSUMERS = sorted({g for f in RUNS_IN for g in f["consumer"]})
STARTS = sorted({g for f in RUNS_IN for g in f["start"]}, key=str)
E2E_TESTS = sorted({g for f in RUNS_IN for g in f["e2e"]}, key=str)


@lru_cache(maxsize=None)
def _routes(service: str) -> frozenset[tuple[str, str]]:
    """(METHOD, path) of every route a service's api.py declares, and the modules beside it whose
    routers api.py mounts (e.g. verification's services_in_kind.py), each with its module's
    APIRouter prefix, read from the source (building the router needs a runtime)."""
    return frozenset().union(*(_routes_in(path) for path in sorted((REPO / "services" / service).glob("*.py"))))


def _routes_in(source: Path) -> frozenset[tuple[str, str]]:
    service = f"{source.parent.name}/{source.name}"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    prefixes = {
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "APIRouter"
        for kw in node.keywords
        if kw.arg == "prefix" and isinstance(kw.value, ast.Constant)
    }
    assert len(prefixes) <= 1, f"{service}: several router prefixes {prefixes}"
    prefix = next(iter(prefixes), "")
    routes = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                    and deco.func.attr in HTTP_METHODS):
                continue
            path = deco.args[0] if deco.args else next(
                (kw.value for kw in deco.keywords if kw.arg == "path"), None)
            if isinstance(path, ast.Constant) and isinstance(path.value, str):
                routes.add((deco.func.attr.upper(), prefix + path.value))
    return frozenset(routes)


def test_route_parser_reads_the_apis():
    assert ("POST", "/v1/applications") in _routes("intake")
    assert ("GET", "/v1/verifications/{case_id}") in _routes("verification")


@pytest.mark.parametrize("service, method, path", ROUTES, ids=[" ".join(r) for r in ROUTES])
def test_named_route_exists(service, method, path):
    assert service in SERVICES, f"unknown service {service}"
    assert (method, path) in _routes(service), f"{service} has no {method} {path}: {sorted(_routes(service))}"


@pytest.mark.parametrize("service, event", CONSUMERS, ids=[f"{s} <- {e}" for s, e in CONSUMERS])
def test_named_consumer_exists(service, event):
    assert service in SERVICES, f"unknown service {service}"
    handlers = importlib.import_module(f"services.{service}.consumers").HANDLERS
    assert event in handlers, f"{service} consumes {sorted(handlers)}, not {event}"


@pytest.mark.parametrize("step", STARTS, ids=[s[0] or "every service" for s in STARTS])
def test_named_start_step_exists(step):
    (service,) = step
    assert service in START_STEPS, f"no start-up step known for {service}"
    path, function = START_STEPS[service]
    calls = {node.func.id for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert function in calls, f"{path.relative_to(REPO)} no longer calls {function}"


@lru_cache(maxsize=None)
def _e2e(filename: str) -> tuple[dict[str, ast.AST], frozenset[str]]:
    """The module-level test functions of an e2e file, and every string literal in it (where a
    parametrized case's id is spelt)."""
    tree = ast.parse((E2E_DIR / filename).read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    strings = frozenset(n.value for n in ast.walk(tree)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return functions, strings


@pytest.mark.parametrize("filename, name, case", E2E_TESTS,
                         ids=[f"{f}::{n}" + (f"[{c}]" if c else "") for f, n, c in E2E_TESTS])
def test_named_e2e_test_exists(filename, name, case):
    assert (E2E_DIR / filename).is_file(), filename
    functions, strings = _e2e(filename)
    assert name in functions, f"no {name} in tests/e2e/{filename}"
    if case is not None:
        decorators = [ast.unparse(d) for d in functions[name].decorator_list]
        assert any("parametrize" in d for d in decorators), f"{name} is not parametrized"
        assert case in strings, f"no case {case!r} in tests/e2e/{filename}"


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
