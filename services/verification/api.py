"""Verification HTTP routes: translate requests into use cases, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationInfo, field_validator

from lifeline.domain.aggregate import Meta, new_id
from lifeline.audit.asof import AsOf, aggregate_as_of, not_found_then, not_in_future
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.runtime.service import ServiceRuntime
from lifeline.http.app import (
    COMMAND_ERRORS, CREATE_ERRORS, LIST_ERRORS, READ_ERRORS, CaseId, add_case_items_route, found_in_region,
    idempotent_id, in_region, region_filter,
    strict,
)
from lifeline.rules.periods import business_date
from lifeline.rules.departments import DEPARTMENTS
from lifeline.rules.vocabulary import (
    APPROVAL_LEVELS, AREAS, ASSISTANCE_TYPES, BENEFIT_CHANGES, BENEFIT_KINDS, BENEFIT_STATUSES,
    CADRE_RELATIONS, FUND_SOURCES, GRIEVANCE_CHANNELS, GRIEVANCE_OUTCOMES, GRIEVANCE_SUBJECTS,
    PROPOSALS, REDECISION_EVIDENCE, SURVEYOR_ROLES,
)
from services.verification.assessment import Outcome
from services.verification import services_in_kind
from services.verification import county_filings, dynamic, filings
from services.verification import care, queue
from services.verification.procedure import (
    Appraisal,
    BenefitChange,
    CaseDeadline,
    Death,
    Decision,
    FraudReport,
    Grievance,
    MajorDispute,
    Objection,
    Proposal,
    PublicNotice,
    Review,
    Survey,
)
from services.verification.application import (
    fraud_view,
    grievances_view,
    review_view,
    ProcedureError,
    VerificationApplication,
    VerificationNotFound,
    verification_view,
)
from services.verification.domain import Verification

DECIDERS = ("reviewer", "county_officer", "admin")
# The cadre register's upload body, served by filings.router (documented with this service's models).
CadreRegisterIn = filings.CadreRegisterIn
# Providers, service orders and deliveries (资金+实物+服务, issue 17), served by services_in_kind.router.
ProviderIn, ServiceOrderIn, DeliveryIn = (
    services_in_kind.ProviderIn, services_in_kind.ServiceOrderIn, services_in_kind.DeliveryIn)
# The county's receipt of a township's filing (镇→县备案), served by county_filings.router.
CountyFilingReceiptIn = county_filings.CountyFilingReceiptIn
# 特困 support: arrangements, guardians, care agreements, visits (issue 17), served by care.router.
SupportArrangementIn, GuardianIn, CareAgreementIn, CareVisitIn = (
    care.SupportArrangementIn, care.GuardianIn, care.CareAgreementIn, care.CareVisitIn)
# Reviews and fraud (issue 11), served by dynamic.router.
ReviewIn, SuspensionIn, FraudIn, FraudRefusalIn = (
    dynamic.ReviewIn, dynamic.SuspensionIn, dynamic.FraudIn, dynamic.FraudRefusalIn)
# Who takes a grievance at the window or from the board.
GRIEVANCE_TAKERS = ("clerk", "caseworker", "reviewer", "county_officer", "admin")
# Who records the steps before the decision (the township's caseworkers and review group).
STEP_TAKERS = ("caseworker", "reviewer", "county_officer", "admin")


class SurveyorIn(BaseModel):
    model_config = strict({"name": "李卫东", "role": "village_cadre"})
    name: str = Field(min_length=1, max_length=50)
    role: Literal[SURVEYOR_ROLES] = Field(description="village_cadre: 驻村干部")


class SurveyIn(BaseModel):
    model_config = strict({
        "surveyors": [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}],
        "visited_on": "2026-09-29",
        "findings": "入户查看住房、家电及生活状况，家庭成员患病，无机动车辆，与申报情况基本一致。",
    })
    surveyors: list[SurveyorIn] = Field(min_length=1, max_length=20,
                                        description="at least two people, one a village-based cadre")
    visited_on: date
    findings: str = Field(min_length=1, max_length=4000)


class InitialReviewIn(BaseModel):
    model_config = strict(
        {"proposal": "include", "reason": "经入户调查和信息核对，家庭人均收入低于当地低保标准，拟纳入低保。"},
        {"proposal": "refuse", "reason": "家庭人均收入高于当地低保标准，拟不予纳入。"},
    )
    proposal: Literal[PROPOSALS] = Field(description="include: with the amount the assessment gives")
    reason: str = Field(min_length=1, max_length=2000)


class AppraisalIn(BaseModel):
    model_config = strict({
        "held_on": "2026-10-09", "participants": 11, "votes_for": 9, "votes_against": 1,
        "abstentions": 1, "opinion": "经村民代表民主评议，多数同意纳入低保；异议所称车辆已于2025年出售。",
    })
    held_on: date
    participants: int = Field(ge=1, le=500)
    votes_for: int = Field(ge=0, le=500)
    votes_against: int = Field(ge=0, le=500)
    abstentions: int = Field(ge=0, le=500)
    opinion: str = Field(min_length=1, max_length=4000)


class GrievanceIn(BaseModel):
    model_config = strict(
        {"case_id": "C-3F2A9C1B7E5D4A6B8C0D", "against": "refusal", "channel": "window",
         "text": "申请人称其配偶长期患病无劳动能力，认为不予批准的理由与事实不符。"},
    )
    case_id: str = Field(min_length=3, max_length=64)
    against: Literal[GRIEVANCE_SUBJECTS]
    text: str = Field(min_length=1, max_length=4000)
    channel: Literal[GRIEVANCE_CHANNELS] = Field(
        default="window", description="window: the household through a clerk; board: from an objection")
    objection_id: str | None = Field(default=None, max_length=64)


class GrievanceOutcomeIn(BaseModel):
    model_config = strict(
        {"outcome": "upheld", "reason": "经复核，配偶患病属实，原认定有误。", "evidence": "new"},
        {"outcome": "dismissed", "reason": "经复核，原决定认定事实清楚。"},
    )
    outcome: Literal[GRIEVANCE_OUTCOMES]
    reason: str = Field(min_length=1, max_length=2000)
    evidence: Literal[REDECISION_EVIDENCE] | None = Field(
        default=None, description="upheld against a refusal: decide again on the original or on new evidence")


class MajorDisputeIn(BaseModel):
    model_config = strict({"reason": "异议涉及家庭财产权属，需补充核查。"})
    reason: str = Field(min_length=1, max_length=2000)


class DecisionIn(BaseModel):
    model_config = strict(
        {"decision": "approve",
         "reason": "经入户调查和信息核对，家庭人均收入低于当地最低生活保障标准，财产状况符合规定，同意纳入低保。"},
        {"decision": "refuse",
         "reason": "经信息核对，家庭人均收入高于当地低保标准，不符合最低生活保障条件。"},
    )
    decision: Literal["approve", "refuse"]
    reason: str = Field(min_length=1, max_length=2000)


class BenefitChangeIn(BaseModel):
    """A change to the approved monthly benefit from a payment period on (动态管理)."""

    model_config = strict(
        {"change": "adjust", "from_period": "2027-01", "monthly_amount_fen": 150000,
         "reason": "年度复核：家庭成员实现就业，家庭人均收入提高，调整低保金。"},
        {"change": "suspend", "from_period": "2027-02", "reason": "经复核家庭情况待查，暂停发放。"},
        {"change": "resume", "from_period": "2027-04", "reason": "情况查实，符合条件，恢复发放。"},
        {"change": "terminate", "from_period": "2027-06", "reason": "家庭人均收入超过当地低保标准，停发。"},
    )
    change: Literal[BENEFIT_CHANGES] = Field(
        description="adjust: a new monthly amount; suspend: stop paying for now (only while paying); "
                    "resume: pay again (only while suspended); terminate: end the benefit for good")
    from_period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2027-01"],
                             description="YYYY-MM: the first payment period the change applies to; not "
                                         "before the benefit's first period, nor before the latest change's")
    monthly_amount_fen: int | None = Field(
        default=None, ge=1, le=10**10, validate_default=True,
        description="with adjust only, and then required: the new monthly amount (fen), different from "
                    "the one in force")
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("monthly_amount_fen")
    @classmethod
    def _only_with_adjust(cls, value: int | None, info: ValidationInfo) -> int | None:
        change = info.data.get("change")
        if change is None:
            return value  # the change itself is wrong: that error is reported
        if change == "adjust" and value is None:
            raise ValueError("an adjustment gives the new monthly_amount_fen")
        if change != "adjust" and value is not None:
            raise ValueError(f"monthly_amount_fen is sent with adjust only, not with {change}")
        return value


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


class NextStep(BaseModel):
    step: str = Field(description="the rule or step a decision still waits for", examples=["public_notice"])
    message: str


class FilingReason(BaseModel):
    reason: Literal["declared", "register"]
    relation: Literal[CADRE_RELATIONS]
    member: str = Field(description="the member's name, masked")
    post: str | None = Field(default=None, description="the cadre's post, from the register")


class GrievancesOut(BaseModel):
    case_id: str
    items: list[Grievance]


class VerificationOut(BaseModel):
    """application.verification_view: the procedure of one case."""

    case_id: str
    verification_id: str
    state: Literal["awaiting_acceptance", "not_accepted", "requested", "completed", "approved", "refused"]
    region_code: str
    accepted_at: str | None
    next_step: NextStep | None = Field(description="what a decision still waits for")
    # The procedure's records (services/verification/procedure.py), as the steps left them.
    survey: Survey | None
    initial_review: Proposal | None
    public_notice: PublicNotice | None
    objections: list[Objection]
    appraisals: list[Appraisal]
    major_dispute: MajorDispute | None
    deadlines: list[CaseDeadline] = Field(description="each statutory deadline set on the case (lifeline.rules.clocks)")
    calendar_warnings: list[str] = Field(description="years whose holiday arrangement is unknown")
    filing: list[FilingReason] = Field(description="备案: why the case is filed with the county (empty: it is not)")
    decisions: list[Decision] = Field(description="every decision taken, the latest last, with its assessment")
    grievances: list[Grievance]
    departments_requested: list[Department]
    departments_answered: list[Department]
    departments_missing: list[Department]
    assessment: AssessmentRecord | None
    benefit: BenefitOut | None
    benefit_status: Literal[BENEFIT_STATUSES] | None = Field(
        description="an approved monthly benefit: paying, suspended or terminated (null otherwise)")
    current_monthly_amount_fen: int | None = Field(
        description="an approved monthly benefit: the monthly amount in force (approved, then adjusted)")
    benefit_changes: list[BenefitChange] = Field(
        description="every change to the approved monthly benefit, the latest last (动态管理)")
    refusal: RefusalOut | None
    review_cycle_months: int | None = Field(
        description="an approved monthly benefit: months between reviews (12 annual, 6 half-yearly)")
    next_review_date: str | None = Field(description="YYYY-MM-DD: the next review (null: none, or ended)")
    reviews: list[Review] = Field(description="every review (复核), the latest last")
    deaths: list[Death] = Field(description="members whose death a department reported (names masked)")
    fraud: FraudReport | None = Field(description="fraud reported on the case, and its decision")
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
    bank_account_ref: str = Field(examples=["RCC:6228***********0001"])
    reason: str


class Refused(RefusalOut):
    """A refusal: the BenefitRefused it publishes (application.decision_view)."""

    case_id: str
    decision: Literal["refuse"]
    verification_id: str
    region_code: str


class DecisionOut(RootModel[Annotated[Approved | Refused, Field(discriminator="decision")]]):
    """What a decision answers: the approval with its benefit, or the refusal."""


class BenefitChangeOut(BaseModel):
    """A change to the approved monthly benefit (application.benefit_change_view): what it
    publishes (BenefitAdjusted, BenefitSuspended, BenefitResumed or BenefitTerminated) and
    where the benefit stands from `from_period` on."""

    case_id: str
    benefit_id: str
    change: Literal[BENEFIT_CHANGES]
    from_period: str = Field(description="YYYY-MM", examples=["2027-01"])
    status: Literal[BENEFIT_STATUSES] = Field(description="the benefit's status from from_period on")
    monthly_amount_fen: int = Field(description="the monthly amount in force from from_period on "
                                                "(paid only while paying)")


class CompletionOut(BaseModel):
    case_id: str
    assessment: AssessmentRecord


@contextlib.contextmanager
def refused_as_problem(title: str) -> Iterator[None]:
    """A step the procedure refuses: problem+json with its status and the rule's name."""
    try:
        yield
    except ProcedureError as exc:
        raise Problem(exc.status, title, str(exc), slug=exc.rule.replace("_", "-"), rule=exc.rule) from None


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    def load(case_id: str, principal: Principal):
        return found_in_region(app.get_verification, case_id, VerificationNotFound, "Verification", principal)

    queue.add_routes(api, runtime, DECIDERS)  # GET /v1/verifications: the cases and their clocks (queue.py)

    @api.get(
        "/verifications/{case_id}", tags=["verifications"], response_model=VerificationOut,
        responses=READ_ERRORS,
    )
    async def get_verification(case_id: str, as_of: AsOf = None,
                               principal: Principal = runtime.auth.require(*CASE_READERS)):
        """The procedure now, or `as_of` a past moment (what the reviewer saw when deciding):
        the Verification rebuilt from its events recorded by then (lifeline/audit/asof.py)."""
        if as_of is None:
            return verification_view(await asyncio.to_thread(load, case_id, principal))
        return verification_view(await asyncio.to_thread(load_as_of, case_id, as_of, principal))

    def load_as_of(case_id: str, as_of, principal: Principal):
        not_in_future(as_of, runtime.clock)
        found = aggregate_as_of(app, Verification.create_id(case_id), as_of)
        if found is None:
            raise not_found_then("Verification", case_id, as_of)
        ensure_region(principal, found.region_code)
        return found

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
            with refused_as_problem("Decision not allowed"):
                result = await asyncio.to_thread(
                    app.decide, case_id, body.decision, body.reason, Meta.of(principal, body.reason)
                )
            runtime.saved()
            return 200, {"case_id": case_id, "decision": body.decision, **result}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post(
        "/verifications/{case_id}/benefit-changes", tags=["benefits"], response_model=BenefitChangeOut,
        responses=COMMAND_ERRORS,
    )
    async def change_benefit(
        case_id: str, body: BenefitChangeIn, request: Request,
        principal: Principal = runtime.auth.require(*DECIDERS),
    ):
        """After approval (动态管理): adjust, suspend, resume or terminate the approved monthly
        benefit from a payment period on; publishes BenefitAdjusted, BenefitSuspended,
        BenefitResumed or BenefitTerminated."""
        await asyncio.to_thread(load, case_id, principal)

        async def handle() -> tuple[int, dict]:
            with refused_as_problem("Benefit not changed"):
                result = await asyncio.to_thread(
                    app.change_benefit, case_id, body.change, body.from_period, body.monthly_amount_fen,
                    body.reason, Meta.of(principal, body.reason),
                )
            runtime.saved()
            return 200, result

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
            with refused_as_problem("Check cannot be completed now"):
                assessment = await asyncio.to_thread(app.complete_now, case_id, Meta.of(principal))
            runtime.saved()
            return 200, {"case_id": case_id, "assessment": assessment}

        return await runtime.idempotent(request, principal.user_id, handle)

    async def take_step(case_id: str, request: Request, principal: Principal, title: str,
                        take: Callable[[Meta], Any], reason: str = "", status: int = 200) -> Any:
        """One step of the procedure by a person, answered with the procedure as it now stands."""
        await asyncio.to_thread(load, case_id, principal)

        async def handle() -> tuple[int, dict]:
            with refused_as_problem(title):
                v = await asyncio.to_thread(take, Meta.of(principal, reason))
            runtime.saved()
            return status, verification_view(v)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/verifications/{case_id}/survey", tags=["procedure"], response_model=VerificationOut,
              responses=COMMAND_ERRORS)
    async def record_survey(case_id: str, body: SurveyIn, request: Request,
                            principal: Principal = runtime.auth.require(*STEP_TAKERS)):
        """Record the household survey (入户调查): two people at least, one a village-based cadre."""
        surveyors = [s.model_dump() for s in body.surveyors]
        return await take_step(case_id, request, principal, "Household survey not recorded",
                               lambda meta: app.record_survey(case_id, surveyors, body.visited_on, body.findings, meta))

    @api.post("/verifications/{case_id}/initial-review", tags=["procedure"], response_model=VerificationOut,
              responses=COMMAND_ERRORS)
    async def propose(case_id: str, body: InitialReviewIn, request: Request,
                      principal: Principal = runtime.auth.require(*STEP_TAKERS)):
        """Propose inclusion (with the amount the assessment gives) or refusal (初审)."""
        return await take_step(case_id, request, principal, "Initial review not recorded",
                               lambda meta: app.propose(case_id, body.proposal, body.reason, meta), body.reason)

    @api.post("/verifications/{case_id}/public-notice", tags=["procedure"], response_model=VerificationOut,
              responses=COMMAND_ERRORS)
    async def post_notice(case_id: str, request: Request,
                          principal: Principal = runtime.auth.require(*STEP_TAKERS)):
        """Post the proposed inclusion on the village board for 7 days (公示)."""
        return await take_step(case_id, request, principal, "Public notice not posted",
                               lambda meta: app.post_notice(case_id, meta))

    @api.post("/verifications/{case_id}/appraisal", tags=["procedure"], response_model=VerificationOut,
              responses=COMMAND_ERRORS)
    async def hold_appraisal(case_id: str, body: AppraisalIn, request: Request,
                             principal: Principal = runtime.auth.require(*STEP_TAKERS)):
        """Record the democratic appraisal (民主评议), held after an objection or a warning."""
        return await take_step(case_id, request, principal, "Democratic appraisal not recorded",
                               lambda meta: app.hold_appraisal(
                                   case_id, body.held_on, body.participants, body.votes_for,
                                   body.votes_against, body.abstentions, body.opinion, meta))

    @api.post("/verifications/{case_id}/major-dispute", tags=["procedure"], response_model=VerificationOut,
              responses=COMMAND_ERRORS)
    async def declare_major_dispute(case_id: str, body: MajorDisputeIn, request: Request,
                                    principal: Principal = runtime.auth.require(*STEP_TAKERS)):
        """Declare a major dispute (重大异议): the procedure may take 30 working days."""
        return await take_step(case_id, request, principal, "Major dispute not declared",
                               lambda meta: app.declare_major_dispute(case_id, body.reason, meta), body.reason)

    # --- grievances (异议、申诉) -----------------------------------------------------------
    @api.post("/grievances", status_code=201, tags=["grievances"], response_model=VerificationOut,
              responses=CREATE_ERRORS)
    async def raise_grievance(body: GrievanceIn, request: Request,
                              principal: Principal = runtime.auth.require(*GRIEVANCE_TAKERS)):
        """Contest a verification result or a refusal (by the household through a clerk, or
        from a board objection); due in 15 working days. Answers the case's procedure."""
        # A retried request (same Idempotency-Key) names the same grievance.
        grievance_id = idempotent_id("G", principal.user_id, request.headers.get("Idempotency-Key")) or new_id("G")
        return await take_step(body.case_id, request, principal, "Grievance not raised",
                               lambda meta: app.raise_grievance(
                                   body.case_id, grievance_id, body.against, body.text, body.channel,
                                   body.objection_id, meta), status=201)

    @api.post("/grievances/{grievance_id}/outcome", tags=["grievances"], response_model=VerificationOut,
              responses=COMMAND_ERRORS)
    async def decide_grievance(grievance_id: str, body: GrievanceOutcomeIn, request: Request,
                               principal: Principal = runtime.auth.require(*DECIDERS)):
        """Uphold or dismiss; upheld against a refusal, the decision is taken again (from the
        initial review) on the original evidence or on new evidence."""
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get("grievance", grievance_id)
        if doc is None:
            raise Problem(404, "Grievance not found", f"no grievance {grievance_id}")
        return await take_step(doc["case_id"], request, principal, "Grievance outcome not recorded",
                               lambda meta: app.decide_grievance(doc["case_id"], grievance_id, body.outcome,
                                                                 body.reason, body.evidence, meta), body.reason)

    @api.get("/grievances", tags=["grievances"], response_model=GrievancesOut, responses=READ_ERRORS)
    async def list_grievances(case_id: CaseId, principal: Principal = runtime.auth.require(*CASE_READERS)):
        v = await asyncio.to_thread(load, case_id, principal)
        return {"case_id": case_id, "items": grievances_view(v)}

    # --- after approval (issue 11): reviews, deaths, fraud (models: dynamic.py) -------------------
    async def command(case_id: str, request: Request, principal: Principal, title: str,
                      take: Callable[[Meta], Any], answer: Callable[[Any], dict], reason: str = "",
                      status: int = 200) -> Any:
        """A step after approval by a person, answered with `answer(verification)`."""
        await asyncio.to_thread(load, case_id, principal)

        async def handle() -> tuple[int, dict]:
            with refused_as_problem(title):
                v = await asyncio.to_thread(take, Meta.of(principal, reason))
            runtime.saved()
            return status, answer(v)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/reviews/due", tags=["reviews"], response_model=dynamic.ReviewsDueOut, responses=LIST_ERRORS)
    async def reviews_due(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        before: Annotated[date | None, Query(description="due on or before this day (default: today)")] = None,
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        """Approved monthly benefits due for their review (动态管理) on or before `before`, within
        the caller's region: annual, or half-yearly where income is irregular and a member can work."""
        region_filter(region, principal)
        day = (before or business_date(app.clock.now())).isoformat()
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [doc for _, _, _, doc in tx.all("review_due")]
        items = [d for d in in_region(docs, principal, region) if d["next_review_date"] <= day]
        items.sort(key=lambda d: (d["next_review_date"], d["case_id"]))
        return {"before": day, "items": items}

    add_case_items_route(api, runtime, "/reviews", "review", dynamic.ReviewDoc, CASE_READERS)

    @api.post("/reviews/{case_id}", status_code=201, tags=["reviews"], response_model=dynamic.ReviewDoc,
              responses=COMMAND_ERRORS)
    async def start_review(case_id: str, body: ReviewIn, request: Request,
                           principal: Principal = runtime.auth.require(*dynamic.REVIEWERS_OF_CASES)):
        """Start a review (复核): the departments are asked again (ReviewStarted, VerificationRequested);
        once they have answered, ReviewCompleted and, as the outcome requires, BenefitAdjusted (from the
        next period) or BenefitTerminated (from the next period, or after the grace period)."""
        return await command(
            case_id, request, principal, "Review not started",
            lambda meta: app.start_review(case_id, body.grace_reason, body.grace_months, body.reason, meta),
            lambda v: review_view(v, list(v.reviews)[-1]), body.reason, status=201)

    @api.post("/reviews/{case_id}/suspension", tags=["reviews"], response_model=dynamic.ReviewDoc,
              responses=COMMAND_ERRORS)
    async def suspend_unreachable(case_id: str, body: SuspensionIn, request: Request,
                                  principal: Principal = runtime.auth.require(*dynamic.REVIEWERS_OF_CASES)):
        """Conclude the running review with a suspension from the next period (the household cannot
        be reached): ReviewCompleted (suspended) and BenefitSuspended; resumed by a benefit change."""
        return await command(
            case_id, request, principal, "Review not concluded",
            lambda meta: app.suspend_unreachable(case_id, body.reason, meta),
            lambda v: review_view(v, list(v.reviews)[-1]), body.reason)

    @api.post("/cases/{case_id}/fraud", status_code=201, tags=["fraud"], response_model=dynamic.FraudOut,
              responses=COMMAND_ERRORS)
    async def report_fraud(case_id: str, body: FraudIn, request: Request,
                           principal: Principal = runtime.auth.require(*dynamic.FRAUD_OFFICERS)):
        """Report fraud (虚报、隐瞒、伪造) on the case's approved benefit; a second county officer confirms."""
        return await command(
            case_id, request, principal, "Fraud not reported",
            lambda meta: app.report_fraud(case_id, list(body.kinds), body.evidence, body.fraud_since, meta),
            fraud_view, status=201)

    @api.post("/cases/{case_id}/fraud/confirm", tags=["fraud"], response_model=dynamic.FraudOut,
              responses=COMMAND_ERRORS)
    async def confirm_fraud(case_id: str, request: Request,
                            principal: Principal = runtime.auth.require(*dynamic.FRAUD_OFFICERS)):
        """Confirm the report (four eyes: not its reporter, 409 `four_eyes`): a monthly benefit still
        running ends from the next period (BenefitTerminated); FraudRecorded goes to the dishonesty
        list, masked, and payment recovers what was paid since the fraud began."""
        return await command(case_id, request, principal, "Fraud not confirmed",
                             lambda meta: app.confirm_fraud(case_id, meta), fraud_view)

    @api.post("/cases/{case_id}/fraud/refusal", tags=["fraud"], response_model=dynamic.FraudOut,
              responses=COMMAND_ERRORS)
    async def refuse_fraud(case_id: str, body: FraudRefusalIn, request: Request,
                           principal: Principal = runtime.auth.require(*dynamic.FRAUD_OFFICERS)):
        """Refuse the report as unfounded (four eyes, as for a confirmation): nothing changes."""
        return await command(case_id, request, principal, "Fraud report not refused",
                             lambda meta: app.refuse_fraud(case_id, body.reason, meta), fraud_view, body.reason)

    # 备案: the cadre registers and the filed cases (services/verification/filings.py).
    both = APIRouter()
    both.include_router(api)
    both.include_router(filings.router(runtime))
    # 特困 support and its visits (services/verification/care.py).
    both.include_router(care.router(runtime))
    # Services and goods in kind from registered providers (services/verification/services_in_kind.py).
    both.include_router(services_in_kind.router(runtime))
    # 镇→县备案 of decisions and the monthly statistics (services/verification/county_filings.py).
    both.include_router(county_filings.router(runtime))
    return both
