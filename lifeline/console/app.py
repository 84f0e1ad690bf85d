"""`lifeline console`: the operator console (issue 15), a web application over the services' APIs.

Server-rendered pages (FastAPI + Jinja2), a small stylesheet and script served from here (no CDN,
no font or script from the internet), Chinese first. The console holds no data: each page calls the
services with the signed-in person's token (lifeline/console/gateway.py).
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware

from lifeline.console.gateway import Gateway, ServiceDown, ServiceProblem, service_urls
from lifeline.console.pages import STATIC_DIR, redirect, render
from lifeline.console.session import NotForRole, SignInRequired
from lifeline.domain.clock import clock_for
from lifeline.http.auth import Authenticator
from lifeline.runtime.service import jwt_secret
from lifeline.settings import Settings

# No inline script or style anywhere: a page can run only what the console itself serves.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class Guard(BaseHTTPMiddleware):
    """Security headers on every answer; a form posted from another site is refused (the session
    cookie is SameSite=Strict too: this is the second lock)."""

    async def dispatch(self, request: Request, call_next):
        if request.method in _UNSAFE:
            origin = request.headers.get("origin") or request.headers.get("referer")
            if origin and urlsplit(origin).netloc != request.url.netloc:
                return JSONResponse({"title": "Cross-site form refused"}, status_code=403)
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def create_app(settings: Settings, *, gateway: Gateway | None = None) -> FastAPI:
    from lifeline.console.routes import ROUTERS

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            await app.state.gateway.close()

    app = FastAPI(title="Lifeline console", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.clock = clock_for(settings)
    app.state.gateway = gateway or Gateway(service_urls(settings))
    app.state.authenticator = Authenticator(jwt_secret(settings), settings.jwt_issuer)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok", "service": "console"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        # The console holds nothing: ready when it answers. Which services answer, each page says.
        return {"status": "ok", "checks": {}}

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        reason = f"&reason={exc.reason}" if exc.reason else ""
        return redirect(f"/signin?next={quote(target, safe='')}{reason}")

    @app.exception_handler(NotForRole)
    async def not_for_role(request: Request, exc: NotForRole):
        return render(request, "error.html", status_code=403, kind="role", roles=exc.roles)

    @app.exception_handler(ServiceDown)
    async def service_down(request: Request, exc: ServiceDown):
        return render(request, "error.html", status_code=503, kind="down", failure=exc)

    @app.exception_handler(ServiceProblem)
    async def service_problem(request: Request, exc: ServiceProblem):
        if exc.status == 401:
            return await sign_in(request, SignInRequired("expired"))
        return render(request, "error.html", status_code=exc.status, kind="problem", failure=exc)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", status_code=404, kind="not_found")

    app.add_middleware(Guard)
    return app
