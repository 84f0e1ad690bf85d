"""The baseline of bench/intake_load.py: intake's own HTTP stack (auth, validation, the
Idempotency-Key in Redis, the same route) answering POST /v1/applications without storing.
Started like `lifeline serve intake` with the bench's environment (its own data directory and
namespace, so its relay and consumers touch nothing of the measured Lifeline)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402

from lifeline.cli import _logging  # noqa: E402
from lifeline.domain.aggregate import new_id  # noqa: E402
from lifeline.http.app import create_http_app  # noqa: E402
from lifeline.settings import Settings  # noqa: E402
from services.intake.bootstrap import SPEC  # noqa: E402


def main() -> None:
    settings = Settings.from_env()
    _logging(settings)
    app = create_http_app(SPEC, settings)
    intake = app.state.runtime.app
    # Answer as the route does, storing nothing.
    intake.submit_application = lambda form, meta, case_id=None: case_id or new_id("C")
    intake.get_case = lambda case_id: SimpleNamespace(status="submitted")
    uvicorn.run(app, host=settings.host, port=settings.ports["intake"], log_level="warning", log_config=None)


if __name__ == "__main__":
    main()
