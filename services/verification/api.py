"""Verification HTTP routes: translate requests into use cases, nothing more."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.aggregate import Meta
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.http.problems import Problem
from lifeline.runtime.service import ServiceRuntime
from lifeline.http.app import found_in_region
from services.verification.application import (
    DecisionNotAllowed,
    VerificationApplication,
    VerificationNotFound,
    verification_view,
)

DECIDERS = ("reviewer", "county_officer", "admin")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    decision: Literal["approve", "refuse"]
    reason: str = Field(min_length=1, max_length=2000)


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    def load(case_id: str, principal: Principal):
        return found_in_region(app.get_verification, case_id, VerificationNotFound, "Verification", principal)

    @api.get("/verifications/{case_id}", tags=["verifications"])
    async def get_verification(case_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        return verification_view(await asyncio.to_thread(load, case_id, principal))

    @api.post("/verifications/{case_id}/decision", tags=["verifications"])
    async def decide(
        case_id: str, body: DecisionIn, request: Request,
        principal: Principal = runtime.auth.require(*DECIDERS),
    ):
        await asyncio.to_thread(load, case_id, principal)

        async def handle() -> tuple[int, dict]:
            try:
                result = await asyncio.to_thread(
                    app.decide, case_id, body.decision, body.reason, Meta.of(principal, body.reason)
                )
            except DecisionNotAllowed as exc:
                raise Problem(409, "Decision not allowed", str(exc)) from None
            runtime.saved()
            return 200, {"case_id": case_id, "decision": body.decision, **result}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/verifications/{case_id}/complete", tags=["verifications"])
    async def complete(
        case_id: str, request: Request, principal: Principal = runtime.auth.require(*DECIDERS)
    ):
        """Complete the check now; departments that have not answered are reported missing."""
        await asyncio.to_thread(load, case_id, principal)

        async def handle() -> tuple[int, dict]:
            try:
                assessment = await asyncio.to_thread(app.complete_now, case_id, Meta.of(principal))
            except DecisionNotAllowed as exc:
                raise Problem(409, "Check cannot be completed now", str(exc)) from None
            runtime.saved()
            return 200, {"case_id": case_id, "assessment": assessment}

        return await runtime.idempotent(request, principal.user_id, handle)

    return api
