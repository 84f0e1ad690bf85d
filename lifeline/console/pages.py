"""What every screen shares: rendering in the person's language, forms that keep what was typed,
and the gateway to the services."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Awaitable

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from lifeline.console.forms import yuan_input
from lifeline.console.gateway import Gateway, ServiceDown, ServiceProblem
from lifeline.console.i18n import LANGUAGE_COOKIE, Words
from lifeline.console.nav import nav_for
from lifeline.console.session import signed_in
from lifeline.rules.periods import SHANGHAI

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
templates.env.filters["yuan_input"] = yuan_input


def now(request: Request) -> datetime:
    """The moment by the injected clock the services read (the shared test clock under
    LIFELINE_TEST_CLOCK=1), in Asia/Shanghai: what "today" and "this month" mean on a page."""
    return request.app.state.clock.now().astimezone(SHANGHAI)


def today(request: Request) -> date:
    return now(request).date()


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


Services = Annotated[Gateway, Depends(gateway)]


def words(request: Request) -> Words:
    return Words(request.cookies.get(LANGUAGE_COOKIE, ""))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    w = words(request)
    user = getattr(request.state, "user", None) or signed_in(request)
    nav = nav_for(user.role if user else None)
    path = request.url.path
    # The menu item this page belongs to: the longest that is the path or leads to it.
    current = max((href for href, _ in nav if path == href or path.startswith(href.rstrip("/") + "/")),
                  key=len, default=None)
    return templates.TemplateResponse(
        request, template,
        {**w.functions(), "lang": w.language, "user": user, "nav": nav, "current": current,
         "path": path, **context},
        status_code=status_code,
    )


def redirect(url: str) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET (reloading it sends nothing again).
    return RedirectResponse(url, status_code=303)


def new_form_key() -> str:
    """The Idempotency-Key a form carries from its first showing: sent again after a failure, the
    same submission is one request to the service."""
    return uuid.uuid4().hex


def form_values(form: FormData) -> dict[str, str]:
    return {k: v.strip() if isinstance(v, str) else "" for k, v in form.multi_items()}


def failure_status(failure: Exception | None) -> int:
    """The status of a page shown again after `failure`: 503 when the service did not answer, the
    service's own when it refused; 200 when nothing failed."""
    if isinstance(failure, ServiceDown):
        return 503
    return failure.status if isinstance(failure, ServiceProblem) else 200


def form_page(request: Request, template: str, values: dict[str, Any], failure: Exception | None = None,
              **context: Any) -> Response:
    """A form shown again with what was typed, the service's messages next to the fields they name,
    and (a service down) which service did not answer."""
    errors = failure.field_errors() if isinstance(failure, ServiceProblem) else {}
    return render(request, template, status_code=failure_status(failure), values=values, failure=failure,
                  errors=errors, **context)


async def form_page_again(request: Request, template: str, values: dict[str, Any], failure: Exception,
                          facts: Awaitable[dict[str, Any]], **context: Any) -> Response:
    """`form_page` after a POST refused or not answered, with the page's facts read again
    (`facts`); when the service does not answer that read either, the page saying so."""
    try:
        read = await facts
    except ServiceDown:
        return render(request, "error.html", status_code=503, kind="down", failure=failure)
    return form_page(request, template, values, failure, **read, **context)
