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
        views = await runtime.views()
        with views.transaction() as tx:
            docs = tx.find("notice", case_id)
        return {"case_id": case_id, "items": [d for d in docs if principal.can_access(d["region_code"])]}

    return api
