"""The public notice board (公示栏): no sign-in, exactly what notify's board route shows, and the
objection form beside each entry (SPEC §4)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lifeline.console.gateway import ServiceDown, ServiceProblem
from lifeline.console.pages import Services, failure_status, form_values, new_form_key, redirect, render
from lifeline.console.session import signed_in

router = APIRouter()

_BOARD_CODE = re.compile(r"\d{9}(\d{3})?")


def visitor(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("/board")
async def board_index(request: Request, village_code: str | None = None) -> Response:
    request.state.user = signed_in(request)
    code = (village_code or "").strip()
    if code:
        if _BOARD_CODE.fullmatch(code):
            return redirect(f"/board/{code}")
        return render(request, "board_index.html", status_code=422, values={"village_code": code},
                      errors={"village_code": "请填写 9 位乡镇（街道）或 12 位村（社区）代码"})
    return render(request, "board_index.html", values={}, errors={})


async def _board_page(request: Request, services: Services, village_code: str, *, status_code: int = 200,
                      **context) -> Response:
    board = await services.get("notify", f"/v1/boards/{village_code}", None, forwarded_for=visitor(request))
    return render(request, "board.html", status_code=status_code, board=board, **context)


@router.get("/board/{village_code}")
async def board(request: Request, village_code: str, services: Services, objected: str | None = None) -> Response:
    request.state.user = signed_in(request)
    return await _board_page(request, services, village_code, objected=objected, values={},
                             errors={}, failure=None, form_key=new_form_key())


@router.post("/board/{village_code}/objections")
async def object_to(request: Request, village_code: str, services: Services) -> Response:
    request.state.user = signed_in(request)
    values = form_values(await request.form())
    body = {"public_notice_id": values.get("public_notice_id", ""), "text": values.get("text", ""),
            "contact": values.get("contact") or None}
    try:
        answer = await services.post("notify", f"/v1/boards/{village_code}/objections", None, body,
                                     key=values.get("form_key") or None, forwarded_for=visitor(request))
    except (ServiceProblem, ServiceDown) as failure:
        errors = failure.field_errors() if isinstance(failure, ServiceProblem) else {}
        try:
            return await _board_page(request, services, village_code, status_code=failure_status(failure),
                                     objected=None, values=values, errors=errors, failure=failure,
                                     form_key=values.get("form_key") or new_form_key())
        except ServiceDown:
            return render(request, "error.html", status_code=503, kind="down", failure=failure)
    return redirect(f"/board/{village_code}?objected={answer['objection_id']}")
