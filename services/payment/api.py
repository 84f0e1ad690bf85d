"""Payment HTTP routes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lifeline.http.app import add_case_items_route
from lifeline.http.auth import CASE_READERS
from lifeline.rules.vocabulary import ASSISTANCE_TYPES, BENEFIT_KINDS, FUND_SOURCES
from lifeline.runtime.service import ServiceRuntime

class EntitlementDoc(BaseModel):
    """An entitlement as payment's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    benefit_id: str
    benefit_type: Literal[ASSISTANCE_TYPES]
    case_id: str
    entitlement_id: str
    first_period: str = Field(description="YYYY-MM", examples=["2026-05"])
    fund_source: Literal[FUND_SOURCES] | None
    kind: Literal[BENEFIT_KINDS]
    monthly_amount_fen: int | None
    one_off_amount_fen: int | None
    opened_at: str = Field(description="ISO 8601 timestamp")
    payable: bool = Field(description="false for a recognition (低收入家庭认定): nothing is paid")
    region_code: str
    status: Literal["active"]


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")

    add_case_items_route(api, runtime, "/entitlements", "entitlement", EntitlementDoc, CASE_READERS)

    return api
