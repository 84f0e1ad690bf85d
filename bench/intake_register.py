"""Registering applications in intake with the person index (one person, one file per benefit):
N two-person applications through `IntakeApplication.submit_application`, each case saved with
its people's index entries in one transaction (services/intake/persons.py).

Baseline in the same run: the same applications registered without the index (the case alone in
its transaction, as before issue 11), on a fresh store. The last line reads

    intake register: N applications in S s = R/s; case-only baseline B/s; ratio X

No broker and no HTTP: the store's cost only (SQLite, or PostgreSQL with --database postgres).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _common as C  # noqa: E402

from lifeline.domain.aggregate import Meta  # noqa: E402
from lifeline.settings import Settings  # noqa: E402
from services.intake import persons  # noqa: E402
from services.intake.api import ApplicationIn  # noqa: E402
from services.intake.bootstrap import SPEC  # noqa: E402

CLERK = Meta(user_id="clerk-bench", role="clerk", org_code="370502101")


def case_only(app, make_case, by):
    """Before the index: the case alone in its transaction."""
    case = make_case()
    app.save(case)
    return case


def register(n: int, root: Path, database_url: str | None, indexed: bool, offset: int) -> float:
    env = {"LIFELINE_DATA_DIR": str(root), "LIFELINE_REDIS_URL": "redis://127.0.0.1:1/0"}
    if database_url:
        env["LIFELINE_DATABASE_URL"] = database_url
    app = SPEC.application(Settings.from_env(env))
    # The body as the route hands it over (validated, defaults filled).
    forms = [ApplicationIn.model_validate(C.household(C.resident_ids(offset + i), C.VILLAGE)).model_dump()
             for i in range(n)]
    original = persons.register_case
    if not indexed:
        persons.register_case = case_only
    try:
        started = time.perf_counter()
        for form in forms:
            app.submit_application(form, CLERK)
        return time.perf_counter() - started
    finally:
        persons.register_case = original
        app.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--applications", type=int, default=2000)
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    n = args.applications
    root = Path(tempfile.mkdtemp(prefix="lifeline-bench-intake-", dir="/tmp"))
    root.chmod(0o711)  # PostgreSQL (its own user) reaches its data dir inside
    pg = None
    try:
        print(C.machine_line())
        urls: list[str | None] = [None, None]
        if args.database == "postgres":
            from lifeline.dev.realinfra import RealPostgres

            pg = RealPostgres(root / "postgres")
            pg.start()
            urls = [pg.url, pg.url]  # one database: the two runs name different people and cases
        baseline = register(n, root / "baseline", urls[1], indexed=False, offset=0)
        measured = register(n, root / "indexed", urls[0], indexed=True, offset=n)
        rate, base = n / measured, n / baseline
        print(f"case only: {n} applications in {baseline:.2f} s = {base:.0f}/s")
        print(f"intake register: {n} applications in {measured:.2f} s = {rate:.0f}/s; "
              f"case-only baseline {base:.0f}/s; ratio {rate / base:.2f}")
    finally:
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
