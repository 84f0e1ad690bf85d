"""Notify HTTP routes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lifeline.http.app import add_case_items_route
from lifeline.http.auth import CASE_READERS
from lifeline.runtime.service import ServiceRuntime
from services.notify.domain import LEGAL_NAMES

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


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")

    add_case_items_route(api, runtime, "/notices", "notice", NoticeDoc, CASE_READERS)

    return api
