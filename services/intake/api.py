"""Intake HTTP routes: translate requests into use cases, nothing more."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from lifeline.stores.application import DuplicateRequest
from lifeline.domain.aggregate import Meta
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.iso20022 import XML_TEXT_PATTERN
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
from services.intake import listing, persons, relief
from lifeline.audit.asof import AsOf, aggregate_as_of, documents_as_of, not_found_then, not_in_future
from services.intake.application import CaseNotFound, IntakeApplication, case_view, project
from services.intake.domain import Case, Referral
from services.intake.domain import CASE_STATUSES, AcceptanceNotAllowed, AcceptanceRuleBroken
from fastapi import Query
from lifeline.http.app import LIST_ERRORS, in_region, region_filter, strict
from services.intake import outreach_api as O
from services.intake.discovery import DiscoveryNotAllowed, RuleBroken
from services.intake.domain import ReferralNotAllowed
from services.intake.outreach_api import ContactIn, DiscoveryReportIn, ReferralDoc, ReferralOutcomeIn
from services.intake.outreach import (
    DISCOVERY_DOC_KIND,
    DiscoveryReportNotFound,
    ReferralNotFound,
    discovery_reports,
    referrals,
)

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
    account_name: str = Field(min_length=1, max_length=64, pattern=XML_TEXT_PATTERN)  # into pain.001


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
        "contact_phone": "13812345678",
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
    contact_phone: str | None = Field(
        default=None, pattern=r"^1[3-9]\d{9}$",
        description="the household's mainland mobile number (11 digits) for notices by SMS; sealed at once, "
                    "shown masked (138****5678); none: notices go by letter and in-app only")
    authorisation_signed: Literal[True] = Field(description="一证一书: the signed verification authorisation")
    urgency: Urgency = "normal"
    discovery_report_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="made from a discovery report (主动发现): the application takes the case id the report "
                    "reserved; once per report")

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
        "consent_to_share": True,
    }, {
        "target": "medical_insurance",
        "need_category": "medical",
        "amount_asked_fen": 0,
        "due_date": "2030-06-28",
        "consent_to_share": True,
    })

    target: str
    need_category: NeedCategory
    amount_asked_fen: int = Field(ge=0, le=10**10)
    urgency: Urgency = "normal"
    due_date: date | None = Field(
        default=None, description="when the answer is due (not before today); by default the referral "
                                  "clock's (5 working days)")
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


# --- one person, one file per benefit; the emergency green channel (issue 11) -----------
DUPLICATE_DECIDERS = ("caseworker", "county_officer")


class DuplicateDecisionIn(BaseModel):
    """A held application (suspected duplicate) decided: proceed (acceptance possible again) or
    withdraw (the case ends). Never merged."""

    model_config = strict(
        {"decision": "proceed", "reason": "经核实，另案申请人系同名同户籍的另一人，本申请继续办理"},
        {"decision": "withdraw", "reason": "该户已在另一乡镇申请低保，申请人同意撤回本申请"},
    )

    decision: Literal["proceed", "withdraw"]
    reason: str = Field(min_length=1, max_length=2000, description="why; kept with the case")


class EmergencyReliefIn(BaseModel):
    """先救助、后补手续: relief at once on an urgent case, within the granting level's cap."""

    model_config = strict({"amount_fen": 200000, "reason": "突发重病住院，家中无力支付急需的医疗和生活费用"})

    amount_fen: int = Field(gt=0, le=10**10, description="amount granted (fen); the case's grants count "
                                                           "together against the cap")
    reason: str = Field(min_length=1, max_length=2000)


class PostApprovalIn(BaseModel):
    """后置审批 of a grant: by a reviewer (township grants) or a county officer, not the granter."""

    model_config = strict({"decision": "approve", "reason": "经补充核实，符合临时救助条件"},
                          {"decision": "refuse", "reason": "经核实，该户不符合救助条件，先行救助资金予以追回"})

    decision: Literal["approve", "refuse"]
    reason: str = Field(min_length=1, max_length=2000)


class DuplicateDecisionOut(BaseModel):
    case_id: str
    decision: Literal["proceed", "withdraw"]
    status: Literal["submitted", "withdrawn"]
    other_case_ids: list[str] = Field(description="the cases it was held for")
    version: int


class GrantOut(BaseModel):
    """An emergency-relief grant (relief.Grant) and where its post-approval stands."""

    grant_id: str = Field(examples=["ER-3F2A9C1B7E5D4A6B8C0D"])
    case_id: str
    amount_fen: int
    reason: str
    approval_level: Literal["township", "county"]
    granted_by: str
    granted_at: str = Field(description="ISO 8601 timestamp")
    post_approval_due_date: str = Field(description="last day of the post-approval period (YYYY-MM-DD)")
    deadline_id: str = Field(description="the emergency_post_approval deadline (notify GET /v1/deadlines)")
    due_at: str = Field(description="exclusive end of the post-approval period (ISO 8601)")
    state: Literal["granted", "post_approved", "post_approval_refused"]
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None


class GrantsOut(BaseModel):
    case_id: str
    items: list[GrantOut]


def _relief_problem(exc: Exception) -> Problem:
    if isinstance(exc, relief.ReliefNotAllowed):
        return Problem(409, "Emergency relief not allowed", str(exc), slug="emergency-relief-not-allowed",
                       rule=exc.rule, **exc.details)
    if isinstance(exc, relief.ReliefRuleBroken):
        return Problem(422, "Emergency relief rule broken", str(exc), slug="emergency-relief-rule",
                       rule=exc.rule, **exc.details)
    if isinstance(exc, relief.ReliefForbidden):
        return Problem(403, "Not your level", str(exc), slug="role-forbidden", rule=exc.rule)
    return Problem(404, "Grant not found", f"no emergency-relief grant {exc}")


# --- responses ---------------------------------------------------------------------
class ApplicationAccepted(BaseModel):
    case_id: str = Field(examples=["C-3F2A9C1B7E5D4A6B8C0D"])
    status: Literal["submitted", "suspected_duplicate"] = Field(
        description="suspected_duplicate: registered but held, a person named is covered by this benefit or "
                    "on another open application for it (GET the case: duplicate_of)")


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
    duplicate_of: list[str] = Field(description="the cases it was held for as a suspected duplicate, if ever")
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

    listing.add_routes(api, runtime)  # GET /v1/cases: the cases the caller may see (listing.py)

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
            try:
                case_id, status = await asyncio.to_thread(
                    app.register_application, body.model_dump(), Meta.of(principal),
                    idempotent_id("C", principal.user_id, key),
                )
            except RuleBroken as exc:  # the discovery report named (outreach.py)
                raise O.rule_broken(exc) from None
            except DiscoveryNotAllowed as exc:
                raise O.not_allowed(exc) from None
            runtime.saved()
            held = status == "suspected_duplicate"
            return 201, {"case_id": case_id, "status": "suspected_duplicate" if held else "submitted"}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get(
        "/cases/{case_id}", tags=["cases"], response_model=CaseOut,
        responses=READ_ERRORS,
    )
    async def get_case(case_id: str, as_of: AsOf = None,
                       principal: Principal = runtime.auth.require(*CASE_READERS)):
        """The case now, or `as_of` a past moment: the Case and its referrals rebuilt from their
        events recorded by then (lifeline/audit/asof.py)."""
        if as_of is not None:
            await runtime.views()  # the referrals known now (their ids only; not their documents)
            return await asyncio.to_thread(case_as_of, case_id, as_of, principal)
        case = await asyncio.to_thread(case_or_404, case_id, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            referrals = tx.find("referral", case_id)
        return {**case_view(case), "referrals": referrals}

    def case_as_of(case_id: str, as_of, principal: Principal) -> dict:
        not_in_future(as_of, runtime.clock)
        case = aggregate_as_of(app, Case.create_id(case_id), as_of)
        if case is None:
            raise not_found_then("Case", case_id, as_of)
        ensure_region(principal, case.region_code)
        with runtime.side.transaction() as tx:  # which referrals exist now: only their ids are read
            ids = [doc["referral_id"] for doc in tx.find("referral", case_id)]
        then = documents_as_of(app, project, [Referral.create_id(r) for r in ids], as_of)
        with then.transaction() as tx:
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

    # --- one person, one file per benefit (persons.py) ----------------------------------
    @api.post(
        "/cases/{case_id}/duplicate-decision", tags=["cases"], response_model=DuplicateDecisionOut,
        responses=COMMAND_ERRORS,
    )
    async def decide_duplicate(
        case_id: str, body: DuplicateDecisionIn, request: Request,
        principal: Principal = runtime.auth.require(*DUPLICATE_DECIDERS),
    ):
        """A case held as a suspected duplicate, decided by a caseworker or county officer whose
        region covers the case's county: 409 `not_held` when it is not held."""
        case = await asyncio.to_thread(case_or_404, case_id, principal)
        if not principal.can_access(case.region_code[:6]):
            raise Problem(403, "Outside your region", "a suspected duplicate is decided by the case's county "
                          "(the other case may lie in another township)", slug="region-forbidden",
                          rule="county_decides")

        async def handle() -> tuple[int, dict]:
            try:
                answer = await asyncio.to_thread(
                    persons.decide_duplicate, app, case_id, body.decision, body.reason,
                    Meta.of(principal, body.reason),
                )
            except AcceptanceNotAllowed as exc:
                state = {"case_status": exc.case_status} if exc.case_status else {}
                raise Problem(409, "Duplicate decision not allowed", str(exc), slug="duplicate-decision-not-allowed",
                              rule=exc.rule, **state) from None
            except AcceptanceRuleBroken as exc:
                raise Problem(422, "Duplicate decision rule broken", str(exc), slug="duplicate-decision-rule",
                              rule=exc.rule) from None
            runtime.saved()
            return 200, answer

        return await runtime.idempotent(request, principal.user_id, handle)

    # --- the emergency green channel (relief.py) -----------------------------------------
    @api.post(
        "/cases/{case_id}/emergency-relief", status_code=201, tags=["emergency-relief"], response_model=GrantOut,
        responses=COMMAND_ERRORS,
    )
    async def grant_emergency_relief(
        case_id: str, body: EmergencyReliefIn, request: Request,
        principal: Principal = runtime.auth.require(*relief.GRANTING_ROLES),
    ):
        """先救助、后补手续 on an urgent case before or during verification: a reviewer or caseworker
        grants up to the township's cap, a county officer up to the county's (422 `emergency_cap`,
        naming the cap); 409 `not_urgent`, `case_decided`, `suspected_duplicate`."""
        await asyncio.to_thread(case_or_404, case_id, principal)
        key = request.headers.get("Idempotency-Key")

        async def handle() -> tuple[int, dict]:
            grant_id = idempotent_id("ER", principal.user_id, f"{case_id}\0{key}" if key else None)
            try:
                grant, _ = await asyncio.to_thread(
                    relief.grant_relief, app, case_id, body.amount_fen, body.reason,
                    Meta.of(principal, body.reason), grant_id,
                )
            except (relief.ReliefNotAllowed, relief.ReliefRuleBroken, relief.ReliefForbidden) as exc:
                raise _relief_problem(exc) from None
            runtime.saved()
            return 201, grant

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post(
        "/cases/{case_id}/emergency-relief/{grant_id}/post-approval", tags=["emergency-relief"],
        response_model=GrantOut, responses=COMMAND_ERRORS,
    )
    async def post_approve_emergency_relief(
        case_id: str, grant_id: str, body: PostApprovalIn, request: Request,
        principal: Principal = runtime.auth.require("reviewer", "county_officer"),
    ):
        """后置审批, once (409 `decided_once`), never by whoever granted it (409 `four_eyes`): a
        township grant by a reviewer or a county officer, a county grant by a county officer."""
        await asyncio.to_thread(case_or_404, case_id, principal)

        async def handle() -> tuple[int, dict]:
            try:
                grant = await asyncio.to_thread(
                    relief.decide_post_approval, app, case_id, grant_id, body.decision, body.reason,
                    Meta.of(principal, body.reason),
                )
            except (relief.ReliefNotAllowed, relief.ReliefRuleBroken, relief.ReliefForbidden,
                    relief.GrantNotFound) as exc:
                raise _relief_problem(exc) from None
            runtime.saved()
            return 200, grant

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get(
        "/cases/{case_id}/emergency-relief", tags=["emergency-relief"], response_model=GrantsOut,
        responses=READ_ERRORS,
    )
    async def list_emergency_relief(case_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        """The case's grants, their state and post-approval due dates."""
        await asyncio.to_thread(case_or_404, case_id, principal)
        return {"case_id": case_id, "items": await asyncio.to_thread(relief.grants_of, app, case_id)}

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
            except RuleBroken as exc:  # a due date before today
                raise O.rule_broken(exc) from None
            runtime.saved()
            return 201, {"referral_id": referral_id, "case_id": case_id}

        return await runtime.idempotent(request, principal.user_id, handle)

    # --- finding households; referrals followed up (issue 11; models in outreach_api.py) -------
    @api.post("/discovery-reports", status_code=201, tags=["discovery"], response_model=O.DiscoveryReportedOut,
              responses=CREATE_ERRORS)
    async def report_discovery(body: DiscoveryReportIn, request: Request,
                               principal: Principal = runtime.auth.require(*O.REPORTERS)):
        """主动发现: a case is reserved for the person's township, which must make contact within
        the discovery_contact clock (3 working days by default)."""
        ensure_region(principal, body.person.region_code)
        key = request.headers.get("Idempotency-Key")

        async def handle() -> tuple[int, dict]:
            report_id = idempotent_id("D", principal.user_id, key)
            try:
                report = await asyncio.to_thread(app.report_discovery, body.model_dump(), Meta.of(principal),
                                                 report_id)
            except DuplicateRequest as dup:  # pragma: no cover - report_discovery answers the first
                report = await asyncio.to_thread(app.get_discovery_report, str(dup))
            runtime.saved()
            return 201, {"report_id": report.report_id, "case_id": report.case_id, "state": report.state,
                         "contact_due_date": report.contact_due_date}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/discovery-reports", tags=["discovery"], response_model=O.DiscoveryReportsOut, responses=LIST_ERRORS)
    async def list_discovery_reports(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        state: Annotated[Literal[O.DISCOVERY_STATES] | None, Query()] = None,  # type: ignore[valid-type]
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = discovery_reports(tx, state)
        items = in_region(docs, principal, region)
        items.sort(key=lambda d: (d["reported_at"], d["report_id"]))
        return {"items": items}

    @api.get("/discovery-reports/{report_id}", tags=["discovery"], response_model=O.DiscoveryReportDoc,
             responses=READ_ERRORS)
    async def get_discovery_report(report_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get(DISCOVERY_DOC_KIND, report_id)
        if doc is None:
            raise Problem(404, "Discovery report not found", f"no discovery report {report_id}")
        ensure_region(principal, doc["region_code"])
        return doc

    @api.post("/discovery-reports/{report_id}/contact", tags=["discovery"], response_model=O.ContactOut,
              responses=COMMAND_ERRORS)
    async def record_contact(report_id: str, body: ContactIn, request: Request,
                             principal: Principal = runtime.auth.require(*WRITERS)):
        """The office made contact: the contact clock stops (met or late)."""
        await asyncio.to_thread(found_in_region, app.get_discovery_report, report_id, DiscoveryReportNotFound,
                                "Discovery report", principal)

        async def handle() -> tuple[int, dict]:
            try:
                report = await asyncio.to_thread(app.record_contact, report_id, body.outcome, body.note,
                                                 Meta.of(principal, body.note))
            except DiscoveryNotAllowed as exc:
                raise O.not_allowed(exc) from None
            except RuleBroken as exc:
                raise O.rule_broken(exc) from None
            runtime.saved()
            return 200, {"report_id": report.report_id, "case_id": report.case_id, "state": report.state,
                         "contact_outcome": report.contact_outcome, "deadline_state": report.deadline_state}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/referrals/{referral_id}/outcome", tags=["referrals"], response_model=ReferralDoc,
              responses=COMMAND_ERRORS)
    async def record_referral_outcome(referral_id: str, body: ReferralOutcomeIn, request: Request,
                                      principal: Principal = runtime.auth.require(*WRITERS)):
        """A clerk records the target's answer: the referral closes once (409 after) and its clock
        stops. The department may answer itself instead (ReferralAnswered)."""
        await asyncio.to_thread(found_in_region, app.get_referral, referral_id, ReferralNotFound, "Referral",
                                principal)

        async def handle() -> tuple[int, dict]:
            try:
                await asyncio.to_thread(app.record_referral_outcome, referral_id, body.outcome, body.note,
                                        Meta.of(principal, body.note))
            except ReferralNotAllowed as exc:
                raise O.not_allowed(exc) from None
            runtime.saved()
            views = await runtime.views()
            with views.transaction() as tx:
                return 200, tx.get("referral", referral_id)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/referrals", tags=["referrals"], response_model=O.ReferralsOut, responses=LIST_ERRORS)
    async def list_referrals(
        assignee: Annotated[str | None, Query(min_length=1, max_length=64,
                                              description="the first clerk responsible's user id")] = None,
        state: Annotated[Literal[O.REFERRAL_STATES] | None, Query()] = None,  # type: ignore[valid-type]
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        """Referrals within the caller's region, by due date: e.g. a clerk's overdue ones."""
        views = await runtime.views()
        with views.transaction() as tx:
            docs = referrals(tx, assignee, state)
        items = [d for d in docs if d.get("region_code") and principal.can_access(d["region_code"])]
        items.sort(key=lambda d: (d["due_date"], d["referral_id"]))
        return {"items": items}

    @api.get("/referrals/{referral_id}", tags=["referrals"], response_model=ReferralDoc, responses=READ_ERRORS)
    async def get_referral(referral_id: str, principal: Principal = runtime.auth.require(*CASE_READERS)):
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get("referral", referral_id)
        if doc is None:
            raise Problem(404, "Referral not found", f"no referral {referral_id}")
        ensure_region(principal, doc["region_code"])
        return doc

    return api
