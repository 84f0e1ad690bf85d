"""Charity HTTP routes."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.aggregate import Meta
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.runtime.service import ServiceRuntime
from lifeline.http.app import found_in_region, idempotent_id
from services.charity.application import CharityApplication, FundNotFound

FUND_WRITERS = ("charity_federation", "county_officer", "admin")
READERS = (*CASE_READERS, "charity_federation")
NeedCategory = Literal[
    "medical", "education", "housing", "employment", "living", "disaster", "care", "psychological"
]


class FundIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=2, max_length=100)
    kind: Literal["special", "named", "project"]
    need_categories: list[NeedCategory] = Field(min_length=1)
    region_code: str = Field(pattern=r"^\d{6}(\d{3}(\d{3})?)?$")
    balance_fen: int = Field(ge=0, le=10**12)
    per_case_cap_fen: int = Field(ge=0, le=10**10)
    valid_until: date | None = None


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: CharityApplication = runtime.app  # type: ignore[assignment]

    @api.post("/funds", status_code=201, tags=["funds"])
    async def register_fund(
        body: FundIn, request: Request, principal: Principal = runtime.auth.require(*FUND_WRITERS)
    ):
        ensure_region(principal, body.region_code)
        key = request.headers.get("Idempotency-Key")
        details = body.model_dump(mode="json")

        async def handle() -> tuple[int, dict]:
            fund_id = await asyncio.to_thread(
                app.register_fund, details,
                Meta.of(principal),
                idempotent_id("F", principal.user_id, key),
            )
            runtime.saved()
            return 201, {"fund_id": fund_id}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/funds/{fund_id}", tags=["funds"])
    async def get_fund(fund_id: str, principal: Principal = runtime.auth.require(*READERS)):
        fund = await asyncio.to_thread(found_in_region, app.get_fund, fund_id, FundNotFound, "Fund", principal)
        return {"fund_id": fund.fund_id, **fund.details, "version": fund.version}

    @api.get("/needs", tags=["needs"])
    async def list_needs(
        case_id: str = Query(min_length=3, max_length=64),
        principal: Principal = runtime.auth.require(*READERS),
    ):
        return await runtime.items_of_case("need", case_id, principal)

    return api
