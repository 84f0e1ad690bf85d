"""What every HTTP answer of a Lifeline process carries, and what no caller gets unless configured.

    app = FastAPI(...)
    harden(app, settings)   # a service's app (create_http_app) or a simulator's

- a request id (lifeline.http.requestid): kept from a well-formed ``X-Request-Id`` or made,
  echoed in the header, put in problem+json and in every log line of the request;
- security headers on every answer (nosniff, no framing, no referrer, a CSP that lets a JSON
  answer load nothing; Swagger UI and ReDoc get the CSP they need), HSTS when LIFELINE_HSTS,
  and ``Cache-Control: no-store`` on answers to requests carrying a token (personal data);
- CORS for the origins in LIFELINE_CORS_ORIGINS only: by default no CORS header is ever sent
  and every preflight is refused (403 problem+json);
- ``/docs``, ``/redoc`` and ``/openapi.json`` answer 404 unless LIFELINE_API_DOCS.

The middleware wraps the app's whole stack, outside Starlette's error middleware, so a 500 and
the log line of its traceback carry the request id and the headers too.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifeline.http.problems import problem_response
from lifeline.http.requestid import HEADER, REQUEST_ID, accept_or_make, install_log_records
from lifeline.settings import Settings

# A JSON (or PDF) answer loads nothing, runs nothing, and is never framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc as FastAPI serves them: scripts and styles from jsDelivr, an inline
# bootstrap script, ReDoc's Google fonts and blob: worker, the favicon, calls to this origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://cdn.jsdelivr.net "
    "https://fastapi.tiangolo.com; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
HSTS = "max-age=31536000"  # a year; not includeSubDomains: other hosts of the domain are not ours

# What Lifeline's APIs use, and all a browser origin is allowed.
CORS_METHODS = ("GET", "POST", "PUT", "DELETE")
CORS_REQUEST_HEADERS = ("authorization", "content-type", "idempotency-key", "x-request-id")
CORS_EXPOSED_HEADERS = ("Retry-After", "X-Request-Id", "Idempotent-Replayed", "Content-Disposition",
                        "WWW-Authenticate")
CORS_MAX_AGE = "600"


class Hardening:
    """Pure ASGI middleware; see the module's docstring."""

    def __init__(self, app: ASGIApp, *, docs: bool, docs_pages: frozenset[str], docs_paths: frozenset[str],
                 hsts: bool, cors_origins: tuple[str, ...]):
        self.app = app
        self.docs = docs
        self.docs_pages = docs_pages  # the HTML pages (their own CSP)
        self.docs_paths = docs_paths  # the pages and the OpenAPI document (404 when docs are off)
        self.hsts = hsts
        self.cors_origins = frozenset(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Headers(scope=scope)
        request_id = accept_or_make(request.get(HEADER))
        token = REQUEST_ID.set(request_id)
        try:
            path = scope.get("path", "")
            origin = request.get("origin")
            allowed = origin is not None and origin.lower() in self.cors_origins
            authenticated = "authorization" in request
            csp = DOCS_CSP if self.docs and path in self.docs_pages else API_CSP

            async def send_hardened(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = MutableHeaders(scope=message)
                    headers[HEADER] = request_id
                    for name, value in SECURITY_HEADERS.items():
                        headers.setdefault(name, value)
                    headers.setdefault("Content-Security-Policy", csp)
                    if self.hsts:
                        headers.setdefault("Strict-Transport-Security", HSTS)
                    if authenticated:
                        headers.setdefault("Cache-Control", "no-store")
                    if self.cors_origins:
                        headers.add_vary_header("Origin")
                    if allowed:
                        headers["Access-Control-Allow-Origin"] = origin  # type: ignore[assignment]
                        headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSED_HEADERS)
                await send(message)

            if scope["method"] == "OPTIONS" and origin is not None and "access-control-request-method" in request:
                response = self._preflight(request, allowed)
                # No CORS header on a refusal: the browser then does not send the request.
                allowed = allowed and response.status_code == 204
                await response(scope, receive, send_hardened)
            elif path in self.docs_paths and not self.docs:
                await problem_response(404, instance=path)(scope, receive, send_hardened)
            else:
                await self.app(scope, receive, send_hardened)
        finally:
            REQUEST_ID.reset(token)

    @staticmethod
    def _preflight(request: Headers, allowed: bool) -> Response:
        method = request["access-control-request-method"].upper()
        asked = {h.strip().lower() for h in request.get("access-control-request-headers", "").split(",") if h.strip()}
        if not allowed or method not in CORS_METHODS or not asked <= set(CORS_REQUEST_HEADERS):
            return problem_response(403, "CORS preflight refused",
                                    "This origin, method or header is not allowed to call this API.",
                                    slug="cors-refused")
        return Response(status_code=204, headers={
            "Access-Control-Allow-Methods": ", ".join(CORS_METHODS),
            "Access-Control-Allow-Headers": ", ".join(CORS_REQUEST_HEADERS),
            "Access-Control-Max-Age": CORS_MAX_AGE,
        })


def harden(app: FastAPI, settings: Settings) -> FastAPI:
    """Put :class:`Hardening` around the whole of ``app`` (see the module's docstring)."""
    install_log_records()
    pages = frozenset(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    options: dict[str, Any] = {
        "docs": bool(settings.api_docs), "docs_pages": pages,
        "docs_paths": pages | ({app.openapi_url} if app.openapi_url else set()),
        "hsts": bool(settings.hsts), "cors_origins": settings.cors_origin_list,
    }
    build = app.build_middleware_stack

    def build_hardened() -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware (which build() puts outermost): a 500 is
        # answered, and its traceback logged, while the request id is set.
        return Hardening(build(), **options)

    app.build_middleware_stack = build_hardened  # type: ignore[method-assign]
    return app


__all__ = ["API_CSP", "CORS_METHODS", "CORS_REQUEST_HEADERS", "DOCS_CSP", "Hardening", "harden"]
