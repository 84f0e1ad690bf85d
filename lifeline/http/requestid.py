"""The request id: one per HTTP request, sent back in ``X-Request-Id``, put in its problem+json
and in every log line written while it is handled (lifeline.http.hardening sets it).

A well-formed incoming ``X-Request-Id`` (a proxy's or a calling service's) is kept, so one id
follows a request across hops; anything else is replaced by a fresh uuid4, since the header is
echoed and logged and a caller's text must not forge a log line or a header.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

HEADER = "X-Request-Id"
# Outside any request (a consumer, a background loop, start-up) log lines show this.
NO_REQUEST = "-"
REQUEST_ID: ContextVar[str | None] = ContextVar("lifeline_request_id", default=None)
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def accept_or_make(incoming: str | None) -> str:
    """The incoming id when it is 1 to 128 of ``A-Z a-z 0-9 . _ -``, else a new uuid4."""
    if incoming and _WELL_FORMED.fullmatch(incoming):
        return incoming
    return str(uuid.uuid4())


def install_log_records() -> None:
    """Give every log record a ``request_id`` attribute (the current request's, or "-"), so a
    format may print ``%(request_id)s``.

    A record factory rather than a handler filter: it reaches every handler, including ones
    added after the app is built (pytest's caplog, uvicorn's), and a record can never reach a
    formatter without the attribute. Installing it twice changes nothing."""
    current = logging.getLogRecordFactory()
    if getattr(current, "lifeline_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.request_id = REQUEST_ID.get() or NO_REQUEST
        return record

    factory.lifeline_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


__all__ = ["HEADER", "NO_REQUEST", "REQUEST_ID", "accept_or_make", "install_log_records"]
