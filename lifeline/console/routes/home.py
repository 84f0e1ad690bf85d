"""Signing in and out, the language switch, and the way home."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from lifeline.console.i18n import LANGUAGE_COOKIE, LANGUAGES
from lifeline.console.nav import home_for
from lifeline.console.pages import redirect, render
from lifeline.console.session import CONSOLE_ROLES, SESSION_COOKIE, signed_in, verify
from lifeline.http.auth import mint_token
from lifeline.http.problems import Problem
from lifeline.rules.regions import InvalidRegionCode, validate_scope
from lifeline.runtime.service import jwt_secret

router = APIRouter()

# The divisions the sign-in list suggests (any valid code may be typed): the demonstration county
# of config/policy.yaml, one of its townships and one village.
SUGGESTED_REGIONS = (("370502", "东营市东营区"), ("370502101", "东营区文汇街道"),
                     ("370502101001", "文汇街道第一社区"), ("000000", "全国"))
SIGN_IN_HOURS = 8


def _safe_next(target: str | None) -> str | None:
    # Only a path of this console: never another site (an open redirect).
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@router.get("/")
async def home(request: Request) -> Response:
    user = signed_in(request)
    return redirect(home_for(user.role) if user else "/signin")


@router.get("/signin")
async def sign_in_page(request: Request, next: str | None = None, reason: str | None = None) -> Response:
    settings = request.app.state.settings
    return render(request, "signin.html", mode=settings.console_sign_in, roles=CONSOLE_ROLES,
                  regions=SUGGESTED_REGIONS, next=_safe_next(next) or "", reason=reason or "",
                  values={}, errors={})


@router.post("/signin")
async def sign_in(
    request: Request,
    role: Annotated[str, Form()] = "", region: Annotated[str, Form()] = "",
    user_id: Annotated[str, Form()] = "", token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    settings = request.app.state.settings
    values = {"role": role, "region": region, "user_id": user_id}
    errors: dict[str, str] = {}
    if settings.console_sign_in == "pick":
        if role not in CONSOLE_ROLES:
            errors["role"] = "请选择角色"
        try:
            validate_scope(region.strip())
        except (InvalidRegionCode, ValueError):
            errors["region"] = "请填写有效的行政区划代码（6、9 或 12 位）"
        if not errors:
            token = mint_token(jwt_secret(settings), role=role, region=region.strip(),
                               user_id=user_id.strip() or f"{role}@{region.strip()}", org_code=region.strip(),
                               ttl_seconds=SIGN_IN_HOURS * 3600, issuer=settings.jwt_issuer)
    if not errors:
        try:
            user = verify(request, token.strip())
        except Problem as exc:
            errors["token"] = "令牌已过期" if "expired" in exc.detail else "令牌无效"
    if errors:
        return render(request, "signin.html", status_code=422, mode=settings.console_sign_in,
                      roles=CONSOLE_ROLES, regions=SUGGESTED_REGIONS, next=_safe_next(next) or "",
                      reason="", values=values, errors=errors)
    response = redirect(_safe_next(next) or home_for(user.role))
    response.set_cookie(SESSION_COOKIE, user.token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/signout")
async def sign_out() -> Response:
    response = redirect("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang")
async def switch_language(to: str, next: str | None = None) -> Response:
    response = redirect(_safe_next(next) or "/")
    if to in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, to, samesite="strict", max_age=365 * 86400, path="/")
    return response
