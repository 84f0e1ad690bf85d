"""Payment HTTP routes."""

from __future__ import annotations

import asyncio
from typing import Literal

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.aggregate import Meta
from lifeline.http.app import COMMAND_ERRORS, add_case_items_route, found_in_region
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.http.problems import Problem
from lifeline.rules.vocabulary import ASSISTANCE_TYPES, BANK_CHANNELS, BENEFIT_KINDS, FUND_SOURCES
from lifeline.runtime.service import ServiceRuntime
from services.payment.application import EntitlementNotFound, PaymentApplication
from services.payment.domain import NothingToPay

class EntitlementDoc(BaseModel):
    """An entitlement as payment's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    bank_account_ref: str | None = Field(description="channel and masked number; null for a recognition",
                                         examples=["RCC:***************0001"])
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


class BankAccountIn(BaseModel):
    """The corrected account; the number is sealed at once and shown masked."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"channel": "RCC", "account_number": "6228480012345670002", "account_name": "王建国",
         "reason": "原账户已销户（银行退回 AC04），户主提供新账户"}]})
    channel: Literal[tuple(BANK_CHANNELS)]
    account_number: str = Field(pattern=r"^\d{12,30}$", description="sealed at once; shown masked")
    account_name: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


class AccountCorrectedOut(BaseModel):
    entitlement_id: str
    case_id: str
    bank_account_ref: str = Field(examples=["RCC:***************0002"])


# Who corrects where a household is paid.
ACCOUNT_KEEPERS = ("caseworker", "county_officer", "admin")


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: PaymentApplication = runtime.app  # type: ignore[assignment]

    add_case_items_route(api, runtime, "/entitlements", "entitlement", EntitlementDoc, CASE_READERS)

    @api.put("/entitlements/{entitlement_id}/bank-account", tags=["entitlements"],
             response_model=AccountCorrectedOut, responses=COMMAND_ERRORS)
    async def correct_account(entitlement_id: str, body: BankAccountIn, request: Request,
                              principal: Principal = runtime.auth.require(*ACCOUNT_KEEPERS)):
        """Correct the household's account (e.g. after a return): the next payment goes there."""
        await asyncio.to_thread(found_in_region, app.get_entitlement, entitlement_id, EntitlementNotFound,
                                "Entitlement", principal)

        async def handle() -> tuple[int, dict]:
            try:
                e = await asyncio.to_thread(
                    app.correct_account, entitlement_id, body.model_dump(exclude={"reason"}), body.reason,
                    Meta.of(principal, body.reason))
            except NothingToPay as exc:
                raise Problem(409, "Nothing is paid on this entitlement", str(exc)) from None
            except IntegrityError:
                raise Problem(409, "Entitlement changed meanwhile", "reload and retry") from None
            runtime.saved()
            return 200, {"entitlement_id": entitlement_id, "case_id": e.case_id,
                         "bank_account_ref": e.bank_account_ref}

        return await runtime.idempotent(request, principal.user_id, handle)

    return api
