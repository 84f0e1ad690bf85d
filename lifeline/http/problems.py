"""RFC 9457 problem details (application/problem+json) for every error Lifeline returns.

    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    raise Problem(409, "Case already closed", slug="case-closed", case_id=case_id)

Bad input gets a clear answer and changes nothing (SPEC §6); error bodies never
echo submitted values or internals, because they may carry personal data.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifeline.http.requestid import REQUEST_ID

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://lifeline.example/problems/"
_STANDARD = ("type", "title", "status", "detail", "instance", "request_id")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


class Problem(Exception):
    """An error to send as problem+json.

    ``type`` is ``about:blank`` unless given, or derived from ``slug``
    (``https://lifeline.example/problems/<slug>``). ``title`` defaults to the
    HTTP status phrase. Keyword arguments not listed become extension members
    (``extras``); ``headers`` are sent with the response (e.g. WWW-Authenticate).
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type: str | None = None,  # noqa: A002 - RFC 9457 member name
        slug: str | None = None,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        extras: Mapping[str, Any] | None = None,
        **more_extras: Any,
    ):
        self.status = int(status)
        self.title = title or _phrase(self.status)
        self.detail = detail
        self.type = type or (PROBLEM_BASE + slug if slug else "about:blank")
        self.instance = instance
        self.headers = dict(headers or {})
        self.extras = {**(extras or {}), **more_extras}
        clash = set(self.extras) & set(_STANDARD)
        if clash:
            raise ValueError(f"extension members may not redefine {sorted(clash)}")
        super().__init__(f"{self.status} {self.title}" + (f": {detail}" if detail else ""))

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance or self.instance:
            body["instance"] = self.instance or instance
        body.update(self.extras)
        # Set by lifeline.http.hardening for the request being answered: the caller quotes it,
        # the operator finds the request's log lines by it.
        request_id = REQUEST_ID.get()
        if request_id:
            body["request_id"] = request_id
        return body

    def response(self, instance: str | None = None) -> JSONResponse:
        return ProblemResponse(self.to_dict(instance), status_code=self.status, headers=self.headers)


def problem_response(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    type: str | None = None,  # noqa: A002
    slug: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extras: Any,
) -> JSONResponse:
    """A problem+json response without raising (same arguments as :class:`Problem`)."""
    problem = Problem(status, title, detail, type=type, slug=slug, headers=headers, extras=extras)
    return problem.response(instance)


# --- handlers ----------------------------------------------------------------------
def _pointer(tokens: Iterable[Any]) -> str:
    """RFC 6901 JSON pointer in URI-fragment form, as in RFC 9457's examples ("#/members/0/name")."""
    parts = [quote(str(t).replace("~", "~0").replace("/", "~1"), safe="~!$&'()*+,;=:@") for t in tokens]
    return "#" + "".join("/" + p for p in parts)


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Pydantic errors as RFC 9457 error entries; values are never echoed back."""
    out: list[dict[str, str]] = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where, rest = (loc[0], loc[1:]) if loc else ("body", [])
        detail = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            detail = "request body is not valid JSON"
            rest = []
        entry: dict[str, str]
        if where == "body":
            entry = {"pointer": _pointer(rest), "detail": detail}
        elif where in ("query", "path", "header", "cookie"):
            key = "header" if where == "header" else "parameter"
            entry = {key: ".".join(str(t) for t in rest), "in": where, "detail": detail}
        else:
            entry = {"pointer": _pointer(loc), "detail": detail}
        out.append(entry)
    return out


async def _on_problem(request: Request, exc: Problem) -> Response:
    return exc.response(request.url.path)


async def _on_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    phrase = _phrase(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return Problem(exc.status_code, phrase, detail, headers=exc.headers).response(request.url.path)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    return Problem(
        422, "Request validation failed", "The request does not match the expected shape.",
        slug="validation", errors=validation_errors(exc),
    ).response(request.url.path)


async def _on_unhandled(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log, never to the caller.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Problem(500, detail="An unexpected error occurred.").response(request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Map Problem, HTTPException (404/405/...), validation errors and crashes to problem+json.

    Note: Starlette re-raises unhandled exceptions after the 500 response is
    sent (so servers log them); use TestClient(app, raise_server_exceptions=False)
    to observe the 500 in tests.
    """
    app.add_exception_handler(Problem, _on_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unhandled)


# --- request body limit --------------------------------------------------------------
class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Pure ASGI middleware: 413 problem+json for request bodies over ``max_bytes``.

    Declared Content-Length is checked before the app runs; bodies without one
    (chunked) are counted as they stream and cut off at the limit. The app's
    own response to the aborted read is discarded in favour of the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = 64 * 1024, *,
                 upload_paths: tuple[str, ...] = (), max_upload_bytes: int = 4 * 1024 * 1024):
        self.app = app
        self.max_bytes = int(max_bytes)
        # Bulk uploads (e.g. a county's cadre register) under these path prefixes get more.
        self.upload_paths = tuple(upload_paths)
        self.max_upload_bytes = int(max_upload_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (self.max_upload_bytes if scope.get("path", "").startswith(self.upload_paths) and self.upload_paths
                 else self.max_bytes)
        declared = _content_length(scope)
        if declared == -1:
            await problem_response(400, detail="Invalid Content-Length header.")(scope, receive, send)
            return
        if declared is not None and declared > limit:
            await self._reject(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's reaction to the aborted read; we answer 413 instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._reject(scope, receive, send, limit)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413, detail=f"The request body exceeds {limit} bytes.",
            slug="body-too-large", max_bytes=limit,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """Declared length, None when absent, -1 when malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


__all__ = [
    "PROBLEM_JSON", "BodySizeLimit", "Problem", "ProblemResponse", "install_problem_handlers",
    "problem_response", "validation_errors",
]
