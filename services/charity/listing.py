"""`GET /v1/needs`: a case's needs (`?case_id=`, as every service lists a case's documents:
lifeline.http.app.add_case_items_route), or without a case the needs a caller may see, newest
first: the charity screen's list of needs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lifeline.http.app import LIST_ERRORS, in_region, region_filter
from lifeline.http.auth import Principal
from lifeline.http.problems import Problem
from lifeline.runtime.service import ServiceRuntime

# Where a need stands (application.project_need).
NEED_STATUSES = ("open", "published", "accepted", "fulfilled")
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000


def add_routes(api: APIRouter, runtime: ServiceRuntime, doc: type[BaseModel], readers: tuple[str, ...]) -> None:
    """GET /v1/needs with `?case_id=` answering {case_id, items} as before, or without it
    {items, total, limit}; `doc` is the need's model (api.NeedDoc)."""

    class Needs(BaseModel):
        case_id: str
        items: list[doc] = Field(description="those within the caller's region")  # type: ignore[valid-type]

    class NeedListing(BaseModel):
        items: list[doc] = Field(description="the newest first, at most `limit`")  # type: ignore[valid-type]
        total: int = Field(description="how many needs match (within the caller's region)")
        limit: int

    @api.get("/needs", name="list_needs", tags=["needs"], response_model=Needs | NeedListing, responses=LIST_ERRORS)
    async def list_needs(
        case_id: Annotated[str | None, Query(min_length=3, max_length=64,
                                             description="this case's needs (alone: no status, no region)")] = None,
        status: Annotated[Literal[NEED_STATUSES] | None, Query(description="only needs in this status")] = None,
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many items")] = DEFAULT_LIMIT,
        principal: Principal = runtime.auth.require(*readers),
    ):
        """With `case_id`: the case's needs within the caller's region, {case_id, items}. Without:
        the needs within the caller's region (or `region`), the newest first; `total` counts them
        all, `items` holds `limit`."""
        if case_id is not None:
            apart = [name for name, value in (("status", status), ("region", region)) if value is not None]
            if apart:  # one case's needs are all listed: a filter beside it would be silently ignored
                raise Problem(422, "Request validation failed", "case_id lists one case's needs; "
                              f"{', '.join(apart)} is not taken with it.", slug="validation",
                              errors=[{"parameter": name, "in": "query", "detail": "not taken with case_id"}
                                      for name in apart])
            return await runtime.items_of_case("need", case_id, principal)
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [d for _, _, _, d in tx.all("need")]  # referenced by case: every need is read
        items = [d for d in in_region(docs, principal, region) if status is None or d["status"] == status]
        items.sort(key=lambda d: (d["opened_at"], d["need_id"]), reverse=True)
        return {"items": items[:limit], "total": len(items), "limit": limit}
