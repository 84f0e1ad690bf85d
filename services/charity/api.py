"""Charity HTTP routes."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.aggregate import Meta
from lifeline.http.app import (
    CREATE_ERRORS,
    READ_ERRORS,
    add_case_items_route,
    found_in_region,
    idempotent_id,
)
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.rules.vocabulary import URGENCIES
from lifeline.runtime.service import ServiceRuntime
from services.charity.application import CharityApplication, FundNotFound

FUND_WRITERS = ("charity_federation", "county_officer", "admin")
READERS = (*CASE_READERS, "charity_federation")
NeedCategory = Literal[
    "medical", "education", "housing", "employment", "living", "disaster", "care", "psychological"
]
FundKind = Literal["special", "named", "project"]
class FundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True,
        json_schema_extra={"examples": [{
            "name": "东营区慈善总会救急难专项基金",
            "kind": "special",
            "need_categories": ["medical", "education", "living"],
            "region_code": "370502",
            "balance_fen": 50000000,
            "per_case_cap_fen": 1000000,
            "valid_until": "2027-12-31",
        }]},
    )
    name: str = Field(min_length=2, max_length=100)
    kind: FundKind
    need_categories: list[NeedCategory] = Field(min_length=1)
    region_code: str = Field(pattern=r"^\d{6}(\d{3}(\d{3})?)?$")
    balance_fen: int = Field(ge=0, le=10**12)
    per_case_cap_fen: int = Field(ge=0, le=10**10)
    valid_until: date | None = None


# --- responses ---------------------------------------------------------------------
class FundRegisteredOut(BaseModel):
    fund_id: str = Field(examples=["F-5C4B3A2918F7E6D5C4B3"])


class FundOut(BaseModel):
    """A fund: its id, the registered details, the aggregate's version."""

    fund_id: str
    name: str
    kind: FundKind
    need_categories: list[NeedCategory]
    region_code: str
    balance_fen: int
    per_case_cap_fen: int
    valid_until: str | None = Field(description="ISO 8601 date, or null when open-ended")
    registered_at: str = Field(description="ISO 8601 timestamp")
    version: int


class NeedDoc(BaseModel):
    """A need as charity's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    amount_asked_fen: int
    case_id: str
    need_category: NeedCategory
    need_id: str
    opened_at: str = Field(description="ISO 8601 timestamp")
    referral_id: str
    region_code: str
    status: Literal["open"]
    urgency: Literal[URGENCIES]


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: CharityApplication = runtime.app  # type: ignore[assignment]

    @api.post(
        "/funds", status_code=201, tags=["funds"], response_model=FundRegisteredOut,
        responses=CREATE_ERRORS,
    )
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

    @api.get(
        "/funds/{fund_id}", tags=["funds"], response_model=FundOut,
        responses=READ_ERRORS,
    )
    async def get_fund(fund_id: str, principal: Principal = runtime.auth.require(*READERS)):
        fund = await asyncio.to_thread(found_in_region, app.get_fund, fund_id, FundNotFound, "Fund", principal)
        return {"fund_id": fund.fund_id, **fund.details, "version": fund.version}

    add_case_items_route(api, runtime, "/needs", "need", NeedDoc, READERS)

    return api
