"""Verification HTTP routes: translate requests into use cases, nothing more."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, RootModel

from lifeline.domain.aggregate import Meta
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.http.problems import Problem
from lifeline.runtime.service import ServiceRuntime
from lifeline.http.app import COMMAND_ERRORS, READ_ERRORS, found_in_region
from lifeline.rules.departments import DEPARTMENTS
from lifeline.rules.vocabulary import APPROVAL_LEVELS, AREAS, ASSISTANCE_TYPES, BENEFIT_KINDS, FUND_SOURCES
from services.verification.assessment import Outcome
from services.verification.application import (
    DecisionNotAllowed,
    VerificationApplication,
    VerificationNotFound,
    verification_view,
)

DECIDERS = ("reviewer", "county_officer", "admin")


class DecisionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True,
        json_schema_extra={"examples": [
            {"decision": "approve",
             "reason": "经入户调查和信息核对，家庭人均收入低于当地最低生活保障标准，财产状况符合规定，同意纳入低保。"},
            {"decision": "refuse",
             "reason": "经信息核对，家庭人均收入高于当地低保标准，不符合最低生活保障条件。"},
        ]},
    )
    decision: Literal["approve", "refuse"]
    reason: str = Field(min_length=1, max_length=2000)


# --- responses ---------------------------------------------------------------------
Department = Literal[tuple(DEPARTMENTS)]


class AssetsSummary(BaseModel):
    total_fen: int
    within_limit: bool


class AssessmentWarning(BaseModel):
    rule: str
    code: str
    message: str = Field(description="the warning (预警) in Chinese")


class AssessmentRecord(BaseModel):
    """The assessment record (application.assessment_record) stored in VerificationCompleted."""

    # Open-ended on purpose: the record is an audit document kept in the event as it was
    # written when the check completed; fields a later version adds come through as they are.
    model_config = ConfigDict(extra="allow")
    outcome: Outcome
    recommended_assistance_type: Literal[ASSISTANCE_TYPES] | None
    tier: str | None
    monthly_amount_fen: int
    standard_applied_fen: int
    per_capita_income_fen: int
    household_size: int
    assets_summary: AssetsSummary
    warnings: list[AssessmentWarning]
    departments_answered: list[Department]
    departments_missing: list[Department]
    detail: dict[str, Any] = Field(description="the full assessment: figures, reasons, policy applied")


class BenefitOut(BaseModel):
    """lifeline.domain.values.Benefit: what the review group approved."""

    kind: Literal[BENEFIT_KINDS]
    benefit_id: str
    benefit_type: Literal[ASSISTANCE_TYPES]
    tier: str | None
    monthly_amount_fen: int | None
    one_off_amount_fen: int | None
    fund_source: Literal[FUND_SOURCES] | None
    first_period: str = Field(description="YYYY-MM", examples=["2026-05"])
    approval_level: Literal[APPROVAL_LEVELS]
    approving_body: str
    approved_at: str = Field(description="ISO 8601 timestamp")


class RefusalOut(BaseModel):
    """lifeline.domain.values.Refusal (不予批准)."""

    reason: str
    refusing_body: str
    refused_at: str = Field(description="ISO 8601 timestamp")


class VerificationOut(BaseModel):
    """application.verification_view."""

    case_id: str
    verification_id: str
    state: Literal["requested", "completed", "approved", "refused"]
    region_code: str
    departments_requested: list[Department]
    departments_answered: list[Department]
    departments_missing: list[Department]
    assessment: AssessmentRecord | None
    benefit: BenefitOut | None
    refusal: RefusalOut | None
    version: int


class HouseholdOut(BaseModel):
    members_count: int
    region_code: str
    area: Literal[AREAS]


class Approved(BenefitOut):
    """An approval: the BenefitApproved it publishes (application.decision_view), the
    account by its masked reference only."""

    case_id: str
    decision: Literal["approve"]
    verification_id: str
    household: HouseholdOut
    bank_account_ref: str = Field(examples=["RCC:***************0001"])
    reason: str


class Refused(RefusalOut):
    """A refusal: the BenefitRefused it publishes (application.decision_view)."""

    case_id: str
    decision: Literal["refuse"]
    verification_id: str
    region_code: str


class DecisionOut(RootModel[Annotated[Approved | Refused, Field(discriminator="decision")]]):
    """What a decision answers: the approval with its benefit, or the refusal."""


class CompletionOut(BaseModel):
    case_id: str
    assessment: AssessmentRecord


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    def load(case_id: str, principal: Principal):
        return found_in_region(app.get_verification, case_id, VerificationNotFound, "Verification", principal)

    @api.get(
        "/verifications/{case_id}", tags=["verifications"], response_model=VerificationOut,
        responses=READ_ERRORS,
    )
    async def get_verification(case_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        return verification_view(await asyncio.to_thread(load, case_id, principal))

    @api.post(
        "/verifications/{case_id}/decision", tags=["verifications"], response_model=DecisionOut,
        responses=COMMAND_ERRORS,
    )
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

    @api.post(
        "/verifications/{case_id}/complete", tags=["verifications"], response_model=CompletionOut,
        responses=COMMAND_ERRORS,
    )
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
