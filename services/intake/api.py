"""Intake HTTP routes: translate requests into use cases, nothing more."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from lifeline.stores.application import DuplicateRequest
from lifeline.domain.aggregate import Meta
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.runtime.service import ServiceRuntime
from lifeline.http.app import (
    COMMAND_ERRORS,
    CREATE_ERRORS,
    READ_ERRORS,
    ResidentIdNumber,
    found_in_region,
    idempotent_id,
)
from lifeline.rules.regions import InvalidRegionCode, validate_division_in_force
from lifeline.rules.vocabulary import (
    AREAS,
    ASSISTANCE_TYPES,
    BANK_CHANNELS,
    CADRE_RELATIONS,
    CHANNELS,
    DISABILITY_KINDS,
    NEED_CATEGORIES,
    REFERRAL_TARGETS,
    RELATIONS,
    REQUIRED_MATERIALS,
    URGENCIES,
    WORK_ABILITY,
)
from services.intake.application import CaseNotFound, IntakeApplication, case_view
from services.intake.domain import CASE_STATUSES, AcceptanceNotAllowed, AcceptanceRuleBroken

WRITERS = ("clerk", "caseworker", "county_officer", "admin")

AssistanceType = Literal[ASSISTANCE_TYPES]
NeedCategory = Literal[NEED_CATEGORIES]
Urgency = Literal[URGENCIES]
AcceptanceDecision = Literal["accept", "refuse", "request_materials"]
Material = Literal[tuple(REQUIRED_MATERIALS)]

# The example people: valid GB 11643 numbers of county 370502 (东营区), made with
# lifeline.rules.ids.make_resident_id (tests/unit/test_openapi.py makes them again).
APPLICANT_ID = "370502196803150258"   # 王建国, born 1968-03-15, male
SPOUSE_ID = "37050219700722074X"      # 李秀英, born 1970-07-22, female (check digit X)
CHILD_ID = "370502200809010108"       # 王小雨, born 2008-09-01, female


def strict(*examples: dict) -> ConfigDict:
    """A request body's config: unknown fields refused, strings stripped, valid examples shown."""
    return ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": list(examples)})


APPLICANT_EXAMPLE = {
    "id_number": APPLICANT_ID, "name": "王建国", "relation": "self",
    "disability_grade": 2, "disability_kind": "physical", "serious_illness": False,
    "work_ability": "partial", "co_resident": True, "support_obligor": False, "support_paid_fen": 0,
    "cadre_relation": None,
}
BANK_ACCOUNT_EXAMPLE = {"channel": "RCC", "account_number": "6228480012345678901", "account_name": "王建国"}


class MemberIn(BaseModel):
    model_config = strict(APPLICANT_EXAMPLE, {"id_number": CHILD_ID, "name": "王小雨", "relation": "child"},
                          {"id_number": SPOUSE_ID, "name": "李秀英", "relation": "spouse",
                           "cadre_relation": "close_relative"})

    id_number: ResidentIdNumber
    name: str = Field(min_length=1, max_length=50)
    relation: Literal[RELATIONS]
    disability_grade: int | None = Field(default=None, ge=1, le=4)
    disability_kind: (
        Literal[DISABILITY_KINDS] | None
    ) = None
    serious_illness: bool = False
    work_ability: Literal[WORK_ABILITY] = "full"
    co_resident: bool = Field(default=True, description="lives in the household (counted)")
    support_obligor: bool = Field(default=False, description="法定赡养、抚养、扶养义务人")
    support_paid_fen: int = Field(default=0, ge=0, le=10**9, description="monthly support paid by this obligor")
    cadre_relation: Literal[CADRE_RELATIONS] | None = Field(
        default=None, description="备案: cadre (村/社区/乡镇干部) or close_relative (近亲属) of one; null otherwise")


class BankAccountIn(BaseModel):
    model_config = strict(BANK_ACCOUNT_EXAMPLE)

    channel: Literal[tuple(BANK_CHANNELS)]
    account_number: str = Field(pattern=r"^\d{12,30}$", description="sealed at once; shown masked")
    account_name: str = Field(min_length=1, max_length=64)


class ApplicationIn(BaseModel):
    model_config = strict({
        "assistance_type": "dibao",
        "channel": "window",
        "region_code": "370502101001",
        "area": "urban",
        "members": [
            APPLICANT_EXAMPLE,
            {"id_number": SPOUSE_ID, "name": "李秀英", "relation": "spouse", "serious_illness": True,
             "work_ability": "none"},
            {"id_number": CHILD_ID, "name": "王小雨", "relation": "child"},
        ],
        "declared_monthly_income_fen": 120000,
        "declared_assets_fen": 800000,
        "declared_medical_expense_fen": 60000,
        "declared_education_expense_fen": 20000,
        "requested_amount_fen": 0,
        "single_person_member_id": None,
        "bank_account": BANK_ACCOUNT_EXAMPLE,
        "authorisation_signed": True,
        "urgency": "normal",
    })

    assistance_type: AssistanceType
    channel: Literal[CHANNELS]
    region_code: str = Field(pattern=r"^\d{9}(\d{3})?$", description="township (9) or village (12) code")
    area: Literal[AREAS]
    members: list[MemberIn] = Field(min_length=1, max_length=30)
    declared_monthly_income_fen: int = Field(ge=0, le=10**10)
    declared_assets_fen: int = Field(ge=0, le=10**12)
    declared_medical_expense_fen: int = Field(default=0, ge=0, le=10**10)
    declared_education_expense_fen: int = Field(default=0, ge=0, le=10**10)
    requested_amount_fen: int = Field(default=0, ge=0, le=10**10, description="one-off relief asked for")
    single_person_member_id: str | None = Field(default=None, description="单人户保: who applies alone")
    bank_account: BankAccountIn
    authorisation_signed: Literal[True] = Field(description="一证一书: the signed verification authorisation")
    urgency: Urgency = "normal"

    @field_validator("region_code")
    @classmethod
    def _region(cls, value: str) -> str:
        try:
            return validate_division_in_force(value)
        except InvalidRegionCode as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _one_applicant(self) -> "ApplicationIn":
        applicants = [m for m in self.members if m.relation == "self"]
        if len(applicants) != 1:
            raise ValueError("exactly one member must have relation 'self' (the applicant)")
        ids = [m.id_number for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("a person appears twice in the household")
        single = self.single_person_member_id
        if single is not None and single.upper() not in ids:
            raise ValueError("single_person_member_id must be the ID number of a member")
        for m in self.members:
            if m.support_paid_fen and not m.support_obligor:
                raise ValueError("support_paid_fen is paid by a support obligor only")
        return self


class ReferralIn(BaseModel):
    model_config = strict({
        "target": "charity",
        "need_category": "medical",
        "amount_asked_fen": 500000,
        "urgency": "urgent",
        "due_date": "2026-06-30",
        "consent_to_share": True,
    })

    target: str
    need_category: NeedCategory
    amount_asked_fen: int = Field(ge=0, le=10**10)
    urgency: Urgency = "normal"
    due_date: date
    consent_to_share: bool

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value not in REFERRAL_TARGETS:
            raise ValueError(f"target must be 'charity' or a department code, not {value!r}")
        return value


class AcceptanceIn(BaseModel):
    """The acceptance decision: 受理 (accept), 不予受理 (refuse) or 补正材料一次性告知
    (request_materials, naming everything that is missing at once)."""

    model_config = strict(
        {"decision": "accept", "reason": "申请材料齐全，符合受理条件"},
        {"decision": "request_materials", "reason": "缺少签字的家庭经济状况核对授权书",
         "missing_materials": ["authorisation"]},
        {"decision": "refuse", "reason": "申请人户籍及经常居住地均不在本辖区，告知向户籍所在地申请"},
    )

    decision: AcceptanceDecision
    reason: str = Field(min_length=1, max_length=2000, description="why; printed in the notice")
    # Any text is taken here so that the domain can refuse it by its rule's name (一证一书,
    # one_id_one_authorisation); the document lists what is allowed.
    missing_materials: list[
        Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"enum": list(REQUIRED_MATERIALS)})]
    ] | None = Field(
        default=None, max_length=len(REQUIRED_MATERIALS) * 2, validate_default=True,
        description="with request_materials only, and then required: what is missing, all at once "
                    "(一次性告知); only resident_id (居民身份证) and authorisation (家庭经济状况核对授权书) "
                    "may be asked for (一证一书); a second request names only what is still missing",
    )

    @field_validator("missing_materials")
    @classmethod
    def _only_with_request(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        decision = info.data.get("decision")
        if decision is None:
            return value  # the decision itself is wrong: that error is reported
        if decision != "request_materials":
            if value is not None:
                raise ValueError("missing_materials is sent only with the decision request_materials")
            return value
        if not value:
            raise ValueError("request_materials names what is missing: missing_materials is required")
        if len(set(value)) != len(value):
            raise ValueError("missing_materials names an item twice")
        return value


# --- responses ---------------------------------------------------------------------
class ApplicationAccepted(BaseModel):
    case_id: str = Field(examples=["C-3F2A9C1B7E5D4A6B8C0D"])
    status: Literal["submitted"]


class AcceptanceOut(BaseModel):
    """application.IntakeApplication.decide_acceptance: the case after the decision."""

    case_id: str = Field(examples=["C-3F2A9C1B7E5D4A6B8C0D"])
    decision: AcceptanceDecision
    status: Literal["accepted", "not_accepted", "materials_requested"]
    accepted_at: str | None = Field(description="ISO 8601 timestamp, once accepted")
    missing_materials: list[Material] = Field(description="what is still asked for")
    repeat: bool = Field(description="materials had been asked for before: the notice names what is still missing")
    version: int


class ReferralRaisedOut(BaseModel):
    referral_id: str = Field(examples=["R-9B1C2D3E4F5A6B7C8D9E"])
    case_id: str


class ReferralDoc(BaseModel):
    """A referral as intake's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    case_id: str
    due_date: str = Field(description="ISO 8601 date", examples=["2026-06-30"])
    need_category: NeedCategory
    referral_id: str
    status: Literal["raised"]
    target: str = Field(description="'charity' or a department code")


class CaseOut(BaseModel):
    """application.case_view and the case's referrals."""

    case_id: str
    status: Literal[CASE_STATUSES]
    region_code: str
    assistance_type: AssistanceType
    channel: Literal[CHANNELS]
    members_count: int
    urgency: Urgency
    clerk_id: str
    submitted_at: str = Field(description="ISO 8601 timestamp")
    accepted_at: str | None = Field(description="ISO 8601 timestamp, once accepted (受理)")
    missing_materials: list[Material] = Field(description="materials still asked for (补正)")
    bank_account_ref: str = Field(description="bank channel and masked number", examples=["RCC:6228***********8901"])
    verification_outcome: str | None = Field(description="eligible, ineligible or needs_appraisal once verified")
    per_capita_income_fen: int | None
    benefit_id: str | None
    decision_reason: str | None
    version: int
    referrals: list[ReferralDoc]


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: IntakeApplication = runtime.app  # type: ignore[assignment]

    def case_or_404(case_id: str, principal: Principal):
        return found_in_region(app.get_case, case_id, CaseNotFound, "Case", principal)

    @api.post(
        "/applications", status_code=201, tags=["applications"], response_model=ApplicationAccepted,
        responses=CREATE_ERRORS,
    )
    async def submit_application(
        body: ApplicationIn, request: Request, principal: Principal = runtime.auth.require(*WRITERS)
    ):
        ensure_region(principal, body.region_code)
        key = request.headers.get("Idempotency-Key")

        async def handle() -> tuple[int, dict]:
            case_id = idempotent_id("C", principal.user_id, key)
            try:
                case_id = await asyncio.to_thread(
                    app.submit_application, body.model_dump(), Meta.of(principal), case_id
                )
            except DuplicateRequest as dup:
                case_id = str(dup)
            runtime.saved()
            return 201, {"case_id": case_id, "status": "submitted"}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get(
        "/cases/{case_id}", tags=["cases"], response_model=CaseOut,
        responses=READ_ERRORS,
    )
    async def get_case(case_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        case = await asyncio.to_thread(case_or_404, case_id, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            referrals = tx.find("referral", case_id)
        return {**case_view(case), "referrals": referrals}

    @api.post(
        "/cases/{case_id}/acceptance", tags=["cases"], response_model=AcceptanceOut,
        responses=COMMAND_ERRORS,
    )
    async def decide_acceptance(
        case_id: str, body: AcceptanceIn, request: Request,
        principal: Principal = runtime.auth.require(*WRITERS),
    ):
        """受理, 不予受理 or 补正材料一次性告知: once per case (409 after it was decided); a broken
        rule (一证一书, 一次性告知) is 422 naming it in `rule`."""
        await asyncio.to_thread(case_or_404, case_id, principal)

        async def handle() -> tuple[int, dict]:
            try:
                answer = await asyncio.to_thread(
                    app.decide_acceptance, case_id, body.decision, body.reason, body.missing_materials,
                    Meta.of(principal, body.reason),
                )
            except AcceptanceNotAllowed as exc:
                state = {"case_status": exc.case_status} if exc.case_status else {}
                raise Problem(
                    409, "Acceptance not allowed", str(exc), slug="acceptance-not-allowed", rule=exc.rule, **state,
                ) from None
            except AcceptanceRuleBroken as exc:
                raise Problem(
                    422, "Acceptance rule broken", str(exc), slug="acceptance-rule", rule=exc.rule,
                ) from None
            runtime.saved()
            return 200, answer

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post(
        "/cases/{case_id}/referrals", status_code=201, tags=["referrals"], response_model=ReferralRaisedOut,
        responses=COMMAND_ERRORS,
    )
    async def raise_referral(
        case_id: str, body: ReferralIn, request: Request,
        principal: Principal = runtime.auth.require(*WRITERS),
    ):
        await asyncio.to_thread(case_or_404, case_id, principal)
        key = request.headers.get("Idempotency-Key")

        async def handle() -> tuple[int, dict]:
            referral_id = idempotent_id("R", principal.user_id, key)
            try:
                referral_id = await asyncio.to_thread(
                    app.raise_referral, case_id, body.model_dump(), Meta.of(principal), referral_id
                )
            except DuplicateRequest as dup:
                referral_id = str(dup)
            runtime.saved()
            return 201, {"referral_id": referral_id, "case_id": case_id}

        return await runtime.idempotent(request, principal.user_id, handle)

    return api
