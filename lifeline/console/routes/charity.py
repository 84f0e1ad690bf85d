"""The charity screens (issue 15): households' needs with the funds proposed for them and why,
the funds and their balances, and allocations confirmed, released and disbursed.

Every figure is charity's (services/charity/api.py): GET /v1/needs (the region's list),
/v1/needs/{id}, /v1/needs/{id}/matches (the proposal, each portion's matched criteria and what
limited it, every other fund's excluding criterion), /v1/funds, /v1/funds/{id}; the allocation
forms post to /v1/needs/{id}/allocations, .../release and .../disbursement, so every rule (a
fund's criteria, caps, available balance, the need's lack) is charity's to apply and its
problem is shown next to the field it names.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lifeline.console.forms import checked_id, fen_of, typed
from lifeline.console.gateway import ServiceDown, ServiceProblem
from lifeline.console.i18n import add_labels
from lifeline.console.pages import (
    Services, form_page, form_page_again, form_values, new_form_key, redirect, render, words,
)
from lifeline.console.session import User, role_user

router = APIRouter()
# services/charity/api.py: ALLOCATORS allocate; FUND_READERS (with the federation) read funds.
Allocator = Annotated[User, role_user("caseworker", "county_officer")]
FundReader = Annotated[User, role_user("caseworker", "county_officer", "charity_federation")]

NEED_STATUSES = ("open", "published", "accepted", "fulfilled")
NEEDS_SHOWN = 200
add_labels("household_type", {"dibao": "低保家庭", "tekun": "特困人员", "low_income": "低收入家庭", "none": "其他家庭"})
add_labels("need_status", {"open": "待帮扶", "published": "已发布给慈善联合会", "accepted": "慈善联合会已认领",
                           "fulfilled": "已满足"})
add_labels("allocation_status", {"allocated": "已分配（待拨付）", "released": "已退回基金", "disbursed": "已拨付"})
add_labels("fund_kind", {"special": "救急难专项基金", "named": "冠名基金", "project": "项目基金"})
add_labels("fund_criterion", {"need_category": "需求类别", "region": "资助地区", "household_type": "家庭类型",
                              "validity": "有效期"})
add_labels("exclusion", {"need_category": "需求类别不在资助范围", "region": "不在资助地区", "household_type": "家庭类型不符",
                         "not_yet_valid": "尚未生效", "expired": "已过有效期", "per_case_cap": "已达单笔上限",
                         "per_household_year_cap": "已达每户每年上限", "no_available_balance": "没有可用余额",
                         "need_covered": "排序在前的基金已满足需求"})
add_labels("limited_by", {"need": "补足了尚缺部分", "no_available_balance": "以基金可用余额为限",
                          "per_case_cap": "以单笔上限为限", "per_household_year_cap": "以每户每年上限为限"})
add_labels("fulfilled_by", {"funds": "基金", "federation": "慈善联合会"})


def _need_path(need_id: str) -> str:
    return f"/v1/needs/{quote(need_id, safe='')}"


# --- needs ---------------------------------------------------------------------------------------
@router.get("/charity/needs")
async def needs(request: Request, user: Allocator, services: Services, status: str | None = None) -> Response:
    chosen = status if status in NEED_STATUSES else None
    listing = await services.get("charity", "/v1/needs", user.token, status=chosen, limit=NEEDS_SHOWN)
    return render(request, "charity/needs.html", listing=listing, statuses=NEED_STATUSES,
                  values={"status": chosen or ""}, errors={})


async def _need_context(services: Services, user: User, need_id: str) -> dict[str, Any]:
    """The need, its proposal with the explanation, and the funds it could be given from."""
    need, matches, funds = await asyncio.gather(
        services.get("charity", _need_path(need_id), user.token),
        services.get("charity", f"{_need_path(need_id)}/matches", user.token),
        services.get("charity", "/v1/funds", user.token),
    )
    names = {f["fund_id"]: f["name"] for f in funds["items"]}
    return {"need": need, "matches": matches, "funds": funds["items"], "fund_names": names,
            "proposal_keys": {p["fund_id"]: new_form_key() for p in matches["proposal"]}}


@router.get("/charity/needs/{need_id}")
async def need(request: Request, need_id: str, user: Allocator, services: Services,
               allocated: str | None = None, released: str | None = None, disbursed: str | None = None) -> Response:
    context = await _need_context(services, user, checked_id(need_id))
    return render(request, "charity/need.html", values={}, errors={}, failure=None, form_key=new_form_key(),
                  done={"allocated": allocated, "released": released, "disbursed": disbursed}, **context)


@router.post("/charity/needs/{need_id}/allocations")
async def allocate(request: Request, need_id: str, user: Allocator, services: Services) -> Response:
    values = form_values(await request.form())
    # Amounts are typed in yuan (what a person reads on a voucher), sent in fen.
    amount = fen_of(values.get("amount_fen", ""))
    failure: Exception | None = None
    errors: dict[str, str] = {}
    if not values.get("fund_id"):
        errors["fund_id"] = words(request)._("请选择基金")
    if amount is None:  # a figure the service cannot take is charity's to refuse (e.g. 0)
        errors["amount_fen"] = words(request)._("请填写金额（元），最多两位小数，例如 3000.00")
    if not errors:
        body = {"fund_id": values["fund_id"], "amount_fen": amount}
        try:
            answer = await services.post("charity", f"{_need_path(need_id)}/allocations", user.token, body,
                                         key=values.get("form_key") or None)
        except (ServiceProblem, ServiceDown) as exc:
            failure = exc
        else:
            return redirect(f"/charity/needs/{quote(need_id, safe='')}?allocated={quote(answer['allocation_id'])}")
    try:
        context = await _need_context(services, user, need_id)
    except ServiceDown:
        return render(request, "error.html", status_code=503, kind="down", failure=failure or ServiceDown("charity", ""))
    # A proposal's own button failed: its message is the banner's; the free form stays as it was.
    own = values if values.get("form") == "allocate" else {}
    if failure is None:
        return render(request, "charity/need.html", status_code=422, values=own, errors=errors, failure=None,
                      form_key=values.get("form_key") or new_form_key(), done={}, **context)
    return form_page(request, "charity/need.html", own, failure,
                     form_key=values.get("form_key") if own else new_form_key(), done={}, **context)


async def _allocation_context(services: Services, user: User, need_id: str, allocation_id: str) -> dict[str, Any]:
    need = await services.get("charity", _need_path(need_id), user.token)
    found = [a for a in need["allocations"] if a["allocation_id"] == allocation_id]
    if not found:
        raise ServiceProblem("charity", 404, {"title": "Allocation not found",
                                              "detail": f"need {need_id} has no allocation {allocation_id}"})
    allocation = found[0]
    fund = await services.get("charity", f"/v1/funds/{quote(allocation['fund_id'], safe='')}", user.token)
    return {"need": need, "allocation": allocation, "fund": fund}


@router.get("/charity/needs/{need_id}/allocations/{allocation_id}")
async def allocation(request: Request, need_id: str, allocation_id: str, user: Allocator,
                     services: Services) -> Response:
    context = await _allocation_context(services, user, checked_id(need_id), checked_id(allocation_id))
    return render(request, "charity/allocation.html", values={}, errors={}, failure=None, form=None,
                  release_key=new_form_key(), disburse_key=new_form_key(), **context)


async def _close(request: Request, need_id: str, allocation_id: str, user: User, services: Services,
                 step: str) -> Response:
    """Release (the money goes back to the fund) or disbursement (it was paid out)."""
    values = form_values(await request.form())
    if step == "release":
        body: dict[str, Any] = {"reason": values.get("reason", "")}
    else:
        body = {"reference": values.get("reference", ""), "disbursed_on": values.get("disbursed_on") or None}
    path = f"{_need_path(need_id)}/allocations/{quote(allocation_id, safe='')}/{step}"
    try:
        await services.post("charity", path, user.token, body, key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        # The form sent keeps its key (sent again it is the same request); the other gets a new one.
        keys = {"release_key": new_form_key(), "disburse_key": new_form_key()}
        keys["release_key" if step == "release" else "disburse_key"] = values.get("form_key") or new_form_key()
        return await form_page_again(request, "charity/allocation.html", values, failure,
                                     _allocation_context(services, user, need_id, allocation_id), form=step, **keys)
    done = "released" if step == "release" else "disbursed"
    return redirect(f"/charity/needs/{quote(need_id, safe='')}?{done}={quote(allocation_id)}")


@router.post("/charity/needs/{need_id}/allocations/{allocation_id}/release")
async def release(request: Request, need_id: str, allocation_id: str, user: Allocator, services: Services) -> Response:
    return await _close(request, need_id, allocation_id, user, services, "release")


@router.post("/charity/needs/{need_id}/allocations/{allocation_id}/disbursement")
async def disburse(request: Request, need_id: str, allocation_id: str, user: Allocator,
                   services: Services) -> Response:
    return await _close(request, need_id, allocation_id, user, services, "disbursement")


# --- funds ---------------------------------------------------------------------------------------
@router.get("/charity/funds")
async def funds(request: Request, user: FundReader, services: Services, region: str | None = None) -> Response:
    values = typed(region=region)
    try:
        listing = await services.get("charity", "/v1/funds", user.token, **values)
    except ServiceProblem as failure:
        if failure.status not in (403, 422):
            raise
        # The region asked for is not one the service takes (malformed, or outside the person's).
        listing = await services.get("charity", "/v1/funds", user.token)
        return render(request, "charity/funds.html", status_code=failure.status, listing=listing,
                      values=values, errors=failure.field_errors() or {"region": failure.detail})
    return render(request, "charity/funds.html", listing=listing, values=values, errors={})


@router.get("/charity/funds/{fund_id}")
async def fund(request: Request, fund_id: str, user: FundReader, services: Services) -> Response:
    doc = await services.get("charity", f"/v1/funds/{quote(checked_id(fund_id), safe='')}", user.token)
    return render(request, "charity/fund.html", fund=doc)
