"""Notify HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter, Query

from lifeline.infra.auth import Principal
from lifeline.infra.runtime import ServiceRuntime

READERS = ("clerk", "caseworker", "reviewer", "county_officer", "auditor", "admin")


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")

    @api.get("/notices", tags=["notices"])
    async def list_notices(
        case_id: str = Query(min_length=3, max_length=64),
        principal: Principal = runtime.auth.require(*READERS),
    ):
        return await runtime.items_of_case("notice", case_id, principal)

    return api
