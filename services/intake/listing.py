"""`GET /v1/cases`: the cases a caller may see, from intake's case read model (application.project),
for the clerk's screens (recent applications, cases waiting for materials) and the caseworker's."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lifeline.http.app import LIST_ERRORS, in_region, region_filter
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.rules.regions import scope_prefix
from lifeline.rules.vocabulary import ASSISTANCE_TYPES, REQUIRED_MATERIALS, URGENCIES
from lifeline.runtime.service import ServiceRuntime
from services.intake.domain import CASE_STATUSES

# A listing answers this many at most unless asked for fewer (or up to MAX_LIMIT more).
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000


class CaseListItem(BaseModel):
    """A case as intake's read model keeps it (application.project, outreach.project)."""

    case_id: str
    status: Literal[CASE_STATUSES]
    region_code: str
    assistance_type: Literal[ASSISTANCE_TYPES] | None = Field(description="null: discovered, not applied for yet")
    applicant_name_masked: str | None = Field(
        description="the applicant's name masked as the acceptance events carry it (张*丰); null: discovered",
        examples=["王*国"])
    members_count: int | None
    urgency: Literal[URGENCIES] | None
    submitted_at: str | None = Field(description="ISO 8601 timestamp; null: discovered, not applied for yet")
    accepted_at: str | None = Field(description="ISO 8601 timestamp, once accepted (受理)")
    missing_materials: list[Literal[tuple(REQUIRED_MATERIALS)]] = Field(
        description="materials still asked for (补正); empty: none")
    verification_outcome: str | None = Field(description="eligible, ineligible or needs_appraisal once verified")
    discovery_report_id: str | None = Field(description="the discovery report the case was reserved by, if any")


class CasesOut(BaseModel):
    items: list[CaseListItem] = Field(description="the newest application first, at most `limit`")
    total: int = Field(description="how many cases match (within the caller's region)")
    limit: int


# What a document written before a field existed answers for it.
_ABSENT: dict[str, Any] = {
    "assistance_type": None, "applicant_name_masked": None, "members_count": None, "urgency": None,
    "submitted_at": None, "accepted_at": None, "missing_materials": [], "verification_outcome": None,
    "discovery_report_id": None,
}
assert set(_ABSENT) | {"case_id", "status", "region_code"} == set(CaseListItem.model_fields)


def add_routes(api: APIRouter, runtime: ServiceRuntime) -> None:
    @api.get("/cases", tags=["cases"], response_model=CasesOut, responses=LIST_ERRORS)
    async def list_cases(
        status: Annotated[Literal[CASE_STATUSES] | None, Query(description="only cases in this status")] = None,
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        assistance_type: Annotated[Literal[ASSISTANCE_TYPES] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many items")] = DEFAULT_LIMIT,
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        """The cases within the caller's region (or `region`), the newest application first
        (discovered cases, not applied for yet, last): e.g. `?status=materials_requested` for
        the cases waiting for materials. `total` counts them all, `items` holds `limit`."""
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            # Cases are referenced by their region: the caller's division is a range of the index.
            docs = tx.find_prefix("case", scope_prefix(region or principal.region))
        items = [{**_ABSENT, **d} for d in in_region(docs, principal, region)
                 if (status is None or d["status"] == status)
                 and (assistance_type is None or d.get("assistance_type") == assistance_type)]
        items.sort(key=lambda d: (d["submitted_at"] or "", d["case_id"]), reverse=True)
        return {"items": items[:limit], "total": len(items), "limit": limit}
