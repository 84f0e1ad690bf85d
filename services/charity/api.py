"""Charity HTTP routes: funds and donations, needs, their matches and allocations.

Region scoping: a fund belongs to its owner office (`region_code`) and helps within its
criteria `regions`; a caller sees the funds owned within its region and those whose regions
overlap it (a township caseworker sees the county's and the province's funds that can help
its needs). A need is seen within the caller's region like a case; the federation reads
needs only through its masked feed.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from lifeline.audit.asof import AsOf, not_found_then, not_in_future
from lifeline.domain.aggregate import Meta
from lifeline.http.app import (
    COMMAND_ERRORS,
    CREATE_ERRORS,
    LIST_ERRORS,
    READ_ERRORS,
    found_in_region,
    idempotent_id,
    region_filter,
    strict,
)
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules.regions import region_contains, validate_scope
from lifeline.rules.vocabulary import FUND_CRITERIA, HOUSEHOLD_TYPES, NEED_CATEGORIES, URGENCIES
from lifeline.runtime.service import ServiceRuntime
from services.charity import federation
from services.charity import listing
from services.charity import views as V
from services.charity.application import (
    AllocationNotFound,
    Busy,
    CharityApplication,
    FundNotFound,
    NeedNotFound,
    need_as_of,
)
from services.charity.domain import EXCLUSIONS, FundRuleViolation, NeedRuleViolation
from services.charity.matching import LIMITS

# The federation's bodies (webhook endpoints, acceptance, fulfilment), served by federation.router.
WebhookIn, AcceptanceIn, FulfilmentIn = federation.WebhookIn, federation.AcceptanceIn, federation.FulfilmentIn
FUND_WRITERS = ("charity_federation", "county_officer", "admin")
FUND_READERS = (*CASE_READERS, "charity_federation")
# Needs are households' cases: civil-affairs staff only (the federation reads the masked feed).
NEED_READERS = CASE_READERS
ALLOCATORS = ("caseworker", "county_officer")
NeedCategory = Literal[NEED_CATEGORIES]
HouseholdType = Literal[HOUSEHOLD_TYPES]
FundKind = Literal["special", "named", "project"]


def _division(code: str) -> str:
    return validate_scope(code)


# A GB/T 2260 code at any level (province 370000 ... village), or 000000 for the whole country.
Division = Annotated[str, Field(pattern=r"^\d{6}(\d{3}(\d{3})?)?$"), AfterValidator(_division)]


def invalid(field: str, detail: str) -> Problem:
    """422 naming one body field (a check across fields, or against what is stored)."""
    return Problem(422, "Request validation failed", detail, slug="validation",
                   errors=[{"pointer": f"#/{field}", "detail": detail}])


# --- request bodies ---------------------------------------------------------------------------
class FundIn(BaseModel):
    model_config = strict({
        "name": "东营区慈善总会救急难专项基金", "kind": "special",
        "need_categories": ["medical", "education", "living"], "region_code": "370502",
        "balance_fen": 50000000, "per_case_cap_fen": 1000000, "valid_until": "2027-12-31",
    }, {
        "name": "胜利油田张氏医疗救助冠名基金", "kind": "named", "donor": "张建华",
        "need_categories": ["medical"], "region_code": "370502", "regions": ["370502101", "370502102"],
        "household_types": ["dibao", "tekun"], "balance_fen": 2000000, "per_case_cap_fen": 300000,
        "per_household_year_cap_fen": 500000, "valid_from": "2026-01-01", "valid_until": "2026-12-31",
    })

    name: str = Field(min_length=2, max_length=100)
    kind: FundKind
    donor: str | None = Field(None, min_length=1, max_length=100,
                              description="the person or company a named fund (冠名基金) carries; required for one")
    need_categories: list[NeedCategory] = Field(min_length=1)
    region_code: Division = Field(description="the owner office's division")
    regions: list[Division] | None = Field(
        None, min_length=1, max_length=200,
        description="where it helps: GB/T 2260 codes at any level within region_code; default [region_code]")
    household_types: list[HouseholdType] | None = Field(None, min_length=1, description="default: all four")
    balance_fen: int = Field(0, ge=0, le=10**12, description="the opening balance")
    per_case_cap_fen: int | None = Field(None, ge=1, le=10**10, description="the most for one need; null: none")
    per_household_year_cap_fen: int | None = Field(
        None, ge=1, le=10**10, description="the most for one household in a calendar year; null: none")
    valid_from: date | None = None
    valid_until: date | None = None


class DonationIn(BaseModel):
    model_config = strict({"reference": "DYCS-2026-11-0042", "donor": "东营市某某商贸有限公司",
                           "amount_fen": 1000000, "received_on": "2026-11-20"})

    reference: str = Field(min_length=1, max_length=64, description="the receipt or transfer: one donation each")
    donor: str = Field(min_length=1, max_length=100)
    amount_fen: int = Field(ge=1, le=10**12)
    received_on: date | None = Field(None, description="default today (Asia/Shanghai); not in the future")


class AllocationIn(BaseModel):
    model_config = strict({"fund_id": "F-5C4B3A2918F7E6D5C4B3", "amount_fen": 300000})

    fund_id: str = Field(min_length=3, max_length=64)
    amount_fen: int = Field(ge=1, le=10**12)


class ReleaseIn(BaseModel):
    model_config = strict({"reason": "家庭已获医保大病报销，无需慈善资助"})

    reason: str = Field(min_length=1, max_length=2000)


class DisbursementIn(BaseModel):
    model_config = strict({"reference": "DYCS-ZF-2026-1203-007", "disbursed_on": "2026-12-03"})

    reference: str = Field(min_length=1, max_length=64, description="the voucher or transfer that paid it")
    disbursed_on: date | None = Field(None, description="default today (Asia/Shanghai); not in the future")


# --- responses ---------------------------------------------------------------------------------
class FundRegisteredOut(BaseModel):
    fund_id: str = Field(examples=["F-5C4B3A2918F7E6D5C4B3"])


class FundDoc(BaseModel):
    """A fund as charity's read model keeps it (application.project_fund): as registered, and
    its figures now."""

    # Declared in the order the side store returns a document's keys (sorted).
    available_fen: int = Field(description="balance - committed: what it can still allocate")
    balance_fen: int = Field(description="opening balance + donations - disbursed")
    committed_fen: int = Field(description="allocated, not yet released or disbursed")
    donations: int = Field(description="donations received")
    donor: str | None
    fund_id: str
    household_types: list[HouseholdType]
    kind: FundKind
    name: str
    need_categories: list[NeedCategory]
    opening_balance_fen: int = Field(description="the balance it was registered with")
    per_case_cap_fen: int | None
    per_household_year_cap_fen: int | None
    region_code: str = Field(description="the owner office")
    regions: list[str] = Field(description="where it helps (GB/T 2260, any level)")
    registered_at: str
    valid_from: str | None
    valid_until: str | None


class FundsOut(BaseModel):
    region: str | None = Field(description="the ?region= asked for, or null")
    items: list[FundDoc] = Field(description="funds owned within the region or helping in it, within the caller's")


class DonationOut(BaseModel):
    """DonationReceived as published (the first one, when the reference was received before)."""

    amount_fen: int
    balance_fen: int = Field(description="the fund's balance after it")
    donation_id: str
    donor: str
    fund_id: str
    received_on: str
    recorded_at: str
    reference: str


class NeedAllocation(BaseModel):
    allocation_id: str
    amount_fen: int
    fund_id: str
    status: Literal["allocated", "released", "disbursed"]
    year: int = Field(description="the calendar year it counts in (per-household-year caps)")


class NeedDoc(BaseModel):
    """A need as charity's read model keeps it (application.project_need)."""

    accepted_by: str | None = Field(description="the federation organisation that accepted it")
    allocated_fen: int
    allocations: list[NeedAllocation]
    amount_asked_fen: int
    case_id: str
    consent_to_share: bool
    disbursed_fen: int
    due_date: str
    fulfilled_by: Literal["funds", "federation"] | None
    household_type: HouseholdType
    members_count: int
    name_masked: str
    need_category: NeedCategory
    need_id: str
    opened_at: str = Field(description="ISO 8601 timestamp")
    published: bool = Field(description="on the federation feed")
    referral_id: str
    region_code: str
    status: Literal["open", "published", "accepted", "fulfilled"]
    still_needed_fen: int = Field(description="asked - allocated - disbursed")
    urgency: Literal[URGENCIES]


class PortionOut(BaseModel):
    fund_id: str
    name: str
    amount_fen: int
    matched: list[Literal[FUND_CRITERIA]]
    limited_by: Literal[LIMITS] = Field(description="need: it covered what was left; else what stopped it")


class ExclusionOut(BaseModel):
    fund_id: str
    name: str
    criterion: Literal[EXCLUSIONS]
    detail: str


class MatchesOut(BaseModel):
    need_id: str
    still_needed_fen: int
    proposal: list[PortionOut] = Field(description="allocations proposed, in the ranking's order")
    shortfall_fen: int = Field(description="what no fund covers (for the federation feed)")
    excluded: list[ExclusionOut] = Field(description="every fund not proposed, with the criterion that excluded it")
    policy: str


class AllocationOut(BaseModel):
    allocation_id: str
    fund_id: str
    need_id: str
    amount_fen: int
    available_fen: int = Field(description="what the fund has available after it")


class AllocationClosedOut(BaseModel):
    allocation_id: str
    fund_id: str
    need_id: str
    amount_fen: int
    status: Literal["released", "disbursed"]
    balance_fen: int
    committed_fen: int
    available_fen: int
    need_status: Literal["open", "published", "accepted", "fulfilled"]
    still_needed_fen: int


# --- region scoping -----------------------------------------------------------------------------
def _overlap(a: str, b: str) -> bool:
    return region_contains(a, b) or region_contains(b, a)


def fund_visible(doc: dict[str, Any], region: str) -> bool:
    """A fund owned within `region`, or helping somewhere that overlaps it."""
    return region_contains(region, doc["region_code"]) or any(_overlap(region, r) for r in doc["regions"])


def _not_after_today(field: str, day: date | None, today: str) -> str:
    if day is None:
        return today
    if day.isoformat() > today:
        raise invalid(field, f"{field} is after today ({today})")
    return day.isoformat()


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: CharityApplication = runtime.app  # type: ignore[assignment]

    def _docs(kind: str, key: str) -> dict[str, Any] | None:
        with runtime.side.transaction() as tx:
            return tx.get(kind, key)

    async def doc_of(kind: str, key: str) -> dict[str, Any] | None:
        await runtime.views()
        return await asyncio.to_thread(_docs, kind, key)

    async def visible_fund(fund_id: str, principal: Principal) -> dict[str, Any]:
        doc = await doc_of("fund", fund_id)
        if doc is None:
            raise Problem(404, "Fund not found", f"no fund {fund_id}")
        if not fund_visible(doc, principal.region):
            ensure_region(principal, doc["region_code"])  # 403
        return doc

    async def need_in_region(need_id: str, principal: Principal) -> dict[str, Any]:
        doc = await doc_of("need", need_id)
        if doc is None:
            raise Problem(404, "Need not found", f"no need {need_id}")
        ensure_region(principal, doc["region_code"])
        return doc

    async def matches(need_id: str) -> dict[str, Any]:
        """The need's proposal from what is left now, with its explanation."""
        await runtime.views()

        def run() -> dict[str, Any]:
            with runtime.side.transaction() as tx:
                doc = tx.get("need", need_id)
                return V.proposal_json(*V.propose(tx, doc, app.business_day()))

        return await asyncio.to_thread(run)

    # --- funds ----------------------------------------------------------------------------------
    @api.post("/funds", status_code=201, tags=["funds"], response_model=FundRegisteredOut,
              responses=CREATE_ERRORS)
    async def register_fund(body: FundIn, request: Request, principal: Principal = runtime.auth.require(*FUND_WRITERS)):
        """Register the 救急难 special fund, a named fund (冠名基金, with its donor) or a project
        fund with its criteria (FundRegistered)."""
        ensure_region(principal, body.region_code)
        if body.kind == "named" and not body.donor:
            raise invalid("donor", "a named fund (冠名基金) names its donor")
        if body.valid_from and body.valid_until and body.valid_until < body.valid_from:
            raise invalid("valid_until", "valid_until is before valid_from")
        for i, r in enumerate(body.regions or ()):
            if not region_contains(body.region_code, r):
                raise invalid(f"regions/{i}", "a fund helps within its owner's division (region_code)")
        details = body.model_dump(mode="json")
        key = request.headers.get("Idempotency-Key")

        async def handle() -> tuple[int, dict]:
            fund_id = await asyncio.to_thread(app.register_fund, details, Meta.of(principal),
                                              idempotent_id("F", principal.user_id, key))
            runtime.saved()
            return 201, {"fund_id": fund_id}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/funds", tags=["funds"], response_model=FundsOut, responses=LIST_ERRORS)
    async def list_funds(region: Annotated[str | None, Query(description="a division (GB/T 2260) within yours")] = None,
                         principal: Principal = runtime.auth.require(*FUND_READERS)):
        """The funds owned within the region or whose criteria regions overlap it, within the caller's."""
        within = region_filter(region, principal) or principal.region
        views = await runtime.views()

        def run() -> list[dict[str, Any]]:
            with views.transaction() as tx:
                return [doc for _, _, _, doc in tx.all("fund") if fund_visible(doc, within)]

        return {"region": region, "items": await asyncio.to_thread(run)}

    @api.get("/funds/{fund_id}", tags=["funds"], response_model=FundDoc, responses=READ_ERRORS)
    async def get_fund(fund_id: str, principal: Principal = runtime.auth.require(*FUND_READERS)):
        """Balance, committed and available, and the criteria."""
        return await visible_fund(fund_id, principal)

    @api.post("/funds/{fund_id}/donations", status_code=201, tags=["funds"], response_model=DonationOut,
              responses={**COMMAND_ERRORS, 200: {"model": DonationOut,
                                                 "description": "this reference was received before: that donation"}})
    async def receive_donation(fund_id: str, body: DonationIn, request: Request,
                               principal: Principal = runtime.auth.require(*FUND_WRITERS)):
        """A donation feeds the balance (DonationReceived), once per reference."""
        await asyncio.to_thread(found_in_region, app.get_fund, fund_id, FundNotFound, "Fund", principal)
        received_on = _not_after_today("received_on", body.received_on, app.business_day())

        async def handle() -> tuple[int, dict]:
            try:
                donation_id, new = await asyncio.to_thread(
                    app.receive_donation, fund_id, body.reference, body.donor, body.amount_fen, received_on,
                    Meta.of(principal))
            except (FundRuleViolation, Busy) as exc:
                raise Problem(409, "Donation not possible", str(exc), slug=exc.rule.replace("_", "-"),
                              rule=exc.rule) from None
            if new:
                runtime.saved()
            doc = await doc_of("donation", donation_id)
            return (201 if new else 200), DonationOut.model_validate(doc).model_dump()

        return await runtime.idempotent(request, principal.user_id, handle)

    # --- needs ----------------------------------------------------------------------------------
    listing.add_routes(api, runtime, NeedDoc, NEED_READERS)  # GET /v1/needs: a case's, or the region's

    @api.get("/needs/{need_id}", tags=["needs"], response_model=NeedDoc, responses=READ_ERRORS)
    async def get_need(need_id: str, as_of: AsOf = None, principal: Principal = runtime.auth.require(*NEED_READERS)):
        """The need now, or `as_of` a past moment: rebuilt from its events recorded by then
        (application.need_as_of)."""
        if as_of is None:
            return await need_in_region(need_id, principal)
        not_in_future(as_of, runtime.clock)
        doc = await asyncio.to_thread(need_as_of, app, need_id, as_of)
        if doc is None:
            raise not_found_then("Need", need_id, as_of)
        ensure_region(principal, doc["region_code"])
        return doc

    @api.get("/needs/{need_id}/matches", tags=["needs"], response_model=MatchesOut, responses=READ_ERRORS)
    async def get_matches(need_id: str, principal: Principal = runtime.auth.require(*NEED_READERS)):
        """What the funds can give the need now, split across funds in the ranking's order, with
        what each matched and the criterion that excluded every other fund (business date:
        today, Asia/Shanghai)."""
        await need_in_region(need_id, principal)
        return await matches(need_id)

    # --- allocations ----------------------------------------------------------------------------
    async def refused(need_id: str, exc: FundRuleViolation | NeedRuleViolation | Busy) -> Problem:
        """409 naming the rule, with the need re-proposed from what is left (never just dropped)."""
        again = await matches(need_id)
        extras = {"available_fen": exc.available_fen} if getattr(exc, "available_fen", None) is not None else {}
        return Problem(409, "Allocation not possible now", str(exc), slug=exc.rule.replace("_", "-"),
                       rule=exc.rule, still_needed_fen=again["still_needed_fen"], proposal=again["proposal"],
                       shortfall_fen=again["shortfall_fen"], **extras)

    @api.post("/needs/{need_id}/allocations", status_code=201, tags=["needs"], response_model=AllocationOut,
              responses=COMMAND_ERRORS)
    async def allocate(need_id: str, body: AllocationIn, request: Request,
                       principal: Principal = runtime.auth.require(*ALLOCATORS)):
        """Confirm a proposed allocation (FundAllocated). 409 with `rule` and the need re-proposed
        from what is left when the fund cannot give it now (a criterion, a cap, its available
        balance, e.g. another allocation came first) or the need does not lack it."""
        await asyncio.to_thread(found_in_region, app.get_need, need_id, NeedNotFound, "Need", principal)
        key = request.headers.get("Idempotency-Key")

        async def handle() -> tuple[int, dict]:
            try:
                done = await asyncio.to_thread(app.allocate, need_id, body.fund_id, body.amount_fen,
                                               Meta.of(principal), idempotent_id("A", principal.user_id, key))
            except FundNotFound:
                raise invalid("fund_id", "no fund with this id") from None
            except (FundRuleViolation, NeedRuleViolation, Busy) as exc:
                raise await refused(need_id, exc) from None
            runtime.saved()
            return 201, {"allocation_id": done.allocation_id, "fund_id": done.fund_id, "need_id": need_id,
                         "amount_fen": done.amount_fen, "available_fen": done.available_fen}

        return await runtime.idempotent(request, principal.user_id, handle)

    async def close(need_id: str, allocation_id: str, request: Request, principal: Principal,
                    command: Any) -> JSONResponse:
        await asyncio.to_thread(found_in_region, app.get_need, need_id, NeedNotFound, "Need", principal)

        async def handle() -> tuple[int, dict]:
            try:
                fund, need = await asyncio.to_thread(command)
            except AllocationNotFound:
                raise Problem(404, "Allocation not found", f"need {need_id} has no allocation {allocation_id}") from None
            except (FundRuleViolation, NeedRuleViolation, Busy) as exc:
                raise Problem(409, "Not possible now", str(exc), slug=exc.rule.replace("_", "-"),
                              rule=exc.rule) from None
            runtime.saved()
            a = fund.allocations[allocation_id]
            return 200, {"allocation_id": allocation_id, "fund_id": fund.fund_id, "need_id": need_id,
                         "amount_fen": a["amount_fen"], "status": a["status"], "balance_fen": fund.balance_fen,
                         "committed_fen": fund.committed_fen, "available_fen": fund.available_fen,
                         "need_status": _need_status(need), "still_needed_fen": need.still_needed_fen}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/needs/{need_id}/allocations/{allocation_id}/release", tags=["needs"],
              response_model=AllocationClosedOut, responses=COMMAND_ERRORS)
    async def release(need_id: str, allocation_id: str, body: ReleaseIn, request: Request,
                      principal: Principal = runtime.auth.require(*ALLOCATORS)):
        """The allocation goes back to the fund (AllocationReleased); the need lacks it again."""
        return await close(need_id, allocation_id, request, principal,
                           lambda: app.release(need_id, allocation_id, body.reason, Meta.of(principal, body.reason)))

    @api.post("/needs/{need_id}/allocations/{allocation_id}/disbursement", tags=["needs"],
              response_model=AllocationClosedOut, responses=COMMAND_ERRORS)
    async def disburse(need_id: str, allocation_id: str, body: DisbursementIn, request: Request,
                       principal: Principal = runtime.auth.require(*ALLOCATORS)):
        """The allocation was paid out (AllocationDisbursed), then NeedFulfilled once what was
        disbursed covers what the need asked."""
        disbursed_on = _not_after_today("disbursed_on", body.disbursed_on, app.business_day())
        return await close(need_id, allocation_id, request, principal,
                           lambda: app.disburse(need_id, allocation_id, body.reference, disbursed_on,
                                                Meta.of(principal)))

    # The federation feed, its webhooks and the federation's feedback (services/charity/federation.py).
    both = APIRouter()
    both.include_router(api)
    both.include_router(federation.router(runtime))
    return both


def _need_status(need: Any) -> str:
    if need.status == "fulfilled":
        return "fulfilled"
    if need.accepted_by is not None:
        return "accepted"
    return "published" if need.published else "open"
