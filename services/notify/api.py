"""Notify HTTP routes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lifeline.http.app import problem_responses
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.runtime.service import ServiceRuntime
from services.notify.domain import LEGAL_NAMES

CaseId = Annotated[str, Query(min_length=3, max_length=64)]


class NoticeDoc(BaseModel):
    """A notice as notify's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    body: str
    case_id: str
    cause_event_id: str
    channel: str = Field(examples=["letter"])
    delivery: str = Field(examples=["pending"])
    issued_at: str = Field(description="ISO 8601 timestamp")
    kind: Literal[tuple(LEGAL_NAMES)]
    legal_name: str = Field(examples=["受理通知书"])
    notice_id: str
    recipient_masked: str = Field(examples=["王**"])
    region_code: str


class Notices(BaseModel):
    case_id: str
    items: list[NoticeDoc] = Field(description="those within the caller's region")


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")

    @api.get(
        "/notices", tags=["notices"], response_model=Notices,
        responses=problem_responses(401, 403, 422, 503),
    )
    async def list_notices(
        case_id: CaseId,
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        return await runtime.items_of_case("notice", case_id, principal)

    return api
