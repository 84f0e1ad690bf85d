"""Payment HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter, Query

from lifeline.http.auth import CASE_READERS, Principal
from lifeline.runtime.service import ServiceRuntime


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")

    @api.get("/entitlements", tags=["entitlements"])
    async def list_entitlements(
        case_id: str = Query(min_length=3, max_length=64),
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        return await runtime.items_of_case("entitlement", case_id, principal)

    return api
