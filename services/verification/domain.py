"""Verification's aggregate: the economic check and the decision on one case.

No I/O here. The eligibility and amount rules live in `assessment.py` and the
policy in `policy.py`; this aggregate records what was asked and what came
back, and its `decide` turns an assessment into a typed `Benefit` only when the
rules allow it and the deciding body may approve that much.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifeline.contracts import registry
from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import Application, BankAccount, Benefit, Refusal, StoresApplication
from lifeline.rules.periods import first_payment_period, period_of, business_date
from lifeline.rules.vocabulary import ONE_OFF_TYPES
from services.verification.assessment import Assessment, DepartmentRecord

# Roles that decide at county level; every other deciding role is the township review group.
COUNTY_ROLES = ("county_officer", "admin")


class DecisionNotAllowed(Exception):
    """A decision the rules or the procedure do not allow (wrong state, ineligible, over the cap)."""


def deciding_level(by: Meta) -> str:
    return "county" if by.role in COUNTY_ROLES else "township"


def deciding_body(by: Meta, region_code: str) -> str:
    return by.org_code or f"{region_code[:9]} 乡镇审核确认小组"


class Verification(LifelineAggregate):
    id_kind = "verification"  # one check per case: a repeated application collides

    class Started(StoresApplication, LifelineAggregate.Created):
        verification_id: str
        case_id: str
        application: Application

    class Requested(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        request_id: str
        department: str
        id_numbers: list[str]
        region_code: str
        requested_at: str
        due_at: str

        def apply(self, v: "Verification") -> None:
            v.requests[self.department] = self.request_id

    class RecordsReceived(LifelineAggregate.Event):
        case_id: str
        department: str
        request_id: str
        members: list[dict[str, Any]]  # the department's rows as reported
        reported_at: str

        def apply(self, v: "Verification") -> None:
            v.records[self.department] = DepartmentRecord(self.department, tuple(self.members))

    class Completed(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        assessment: dict[str, Any]  # the assessment record (audit document, see application.py)
        completed_at: str

        def apply(self, v: "Verification") -> None:
            v.assessment = self.assessment
            v.state = "completed"

    class Approved(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        benefit: Benefit
        reason: str
        members_count: int
        region_code: str
        area: str
        bank_account: BankAccount | None
        bank_account_ref: str
        # The assessment by the rules in force on the decision date, for the audit trail.
        assessment: dict[str, Any]

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 stored the BenefitApproved v1 payload as the benefit.
            wire = registry.upcast_data("BenefitApproved", 1, state["benefit"])
            state["verification_id"] = wire["verification_id"]
            state["reason"] = wire["reason"]
            state["benefit"] = Benefit.from_wire(wire)
            state["members_count"] = wire["household"]["members_count"]
            state["region_code"] = wire["household"]["region_code"]
            state["area"] = wire["household"]["area"]
            state["bank_account"] = None
            state["bank_account_ref"] = wire["bank_account_ref"]
            state["assessment"] = state.get("assessment") or {}

        def apply(self, v: "Verification") -> None:
            v.state = "approved"
            v.benefit = self.benefit

    class Refused(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        region_code: str
        refusal: Refusal

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            old = state["refusal"]
            state["verification_id"] = old["verification_id"]
            state["region_code"] = old["region_code"]
            state["refusal"] = Refusal(old["reason"], old["refusing_body"], old["refused_at"])

        def apply(self, v: "Verification") -> None:
            v.state = "refused"
            v.refusal = self.refusal

    @classmethod
    def start(cls, application: Application, verification_id: str, by: Meta) -> "Verification":
        return cls._create(
            cls.Started, id=cls.create_id(application.case_id), verification_id=verification_id,
            case_id=application.case_id, application=application, meta=by.as_dict(),
        )

    def __init__(self, verification_id: str, case_id: str, application: Application, meta: dict):
        self.verification_id = verification_id
        self.case_id = case_id
        self.application = application
        self.state = "requested"
        self.requests: dict[str, str] = {}
        self.records: dict[str, DepartmentRecord] = {}
        self.assessment: dict[str, Any] | None = None
        self.benefit: Benefit | None = None
        self.refusal: Refusal | None = None

    @property
    def region_code(self) -> str:
        return self.application.region_code

    @property
    def departments_missing(self) -> list[str]:
        return [d for d in self.requests if d not in self.records]

    def request(self, department: str, request_id: str, requested_at: datetime, due_at: datetime,
                by: Meta) -> None:
        if department in self.requests:
            return  # one request per department
        self.trigger_event(
            self.Requested, case_id=self.case_id, verification_id=self.verification_id,
            request_id=request_id, department=department,
            id_numbers=self.application.household.id_numbers, region_code=self.region_code,
            requested_at=requested_at.isoformat(), due_at=due_at.isoformat(), meta=by.as_dict(),
        )

    def receive(self, department: str, request_id: str, members: list, reported_at: str, by: Meta) -> bool:
        """Record a department's answer; False when it is not one we wait for."""
        if self.requests.get(department) != request_id or department in self.records:
            return False  # an answer to another request, or a second answer: the first stands
        if self.state != "requested":
            return False  # arrived after the check was completed with it missing
        DepartmentRecord(department, tuple(members))  # refuse rows the rules could not read
        self.trigger_event(
            self.RecordsReceived, case_id=self.case_id, department=department,
            request_id=request_id, members=members, reported_at=reported_at, meta=by.as_dict(),
        )
        return True

    def complete(self, assessment: dict[str, Any], completed_at: datetime, by: Meta) -> None:
        if self.state != "requested":
            raise DecisionNotAllowed(f"verification is {self.state}, not awaiting records")
        self.trigger_event(
            self.Completed, case_id=self.case_id, verification_id=self.verification_id,
            assessment=assessment, completed_at=completed_at.isoformat(), meta=by.as_dict(),
        )

    def decide(self, assessment: Assessment, record: dict[str, Any], decided_at: datetime,
               by: Meta, reason: str) -> Benefit:
        """Approve on `assessment` (the rules in force on the decision date).

        The benefit's kind follows from what was applied for: 临时救助 is one-off relief
        paid from the temporary-relief budget, 低收入家庭认定 is a recognition without money,
        低保 and 特困 are monthly from the month after the decision. An amount above the
        township's cap needs the county (graded approval).
        """
        self.check_decidable()
        if assessment.outcome == "ineligible":
            raise DecisionNotAllowed("the check found the household ineligible; refuse or re-check")
        if assessment.outcome != "eligible":
            # needs_appraisal (e.g. a department missing) has no amount yet: nothing to approve.
            raise DecisionNotAllowed("the check recommends no amount yet; appraise or re-check first")
        applied_for = self.application.assistance_type
        level = deciding_level(by)
        monthly = one_off = fund_source = None
        first_period = first_payment_period(decided_at)
        if applied_for in ONE_OFF_TYPES:
            kind, one_off, fund_source = "one_off", assessment.one_off_amount_fen, "temporary_relief_budget"
            # One-off relief is paid as soon as it is granted: in the month of the decision.
            first_period = period_of(business_date(decided_at))
            required = assessment.approval_level or "county"
        elif applied_for == "low_income":
            kind, required = "recognition", "township"
        else:
            kind, monthly, required = "monthly", assessment.monthly_amount_fen, "township"
        if required == "county" and level != "county":
            raise DecisionNotAllowed(
                f"{one_off} fen is above the township's cap: the county civil-affairs bureau approves it"
            )
        benefit = Benefit(
            kind=kind, benefit_id="B-" + self.verification_id.split("-", 1)[-1],
            benefit_type=applied_for if kind != "monthly" else (
                assessment.recommended_assistance_type or applied_for),
            tier=assessment.tier if kind == "monthly" else None,
            monthly_amount_fen=monthly, one_off_amount_fen=one_off, fund_source=fund_source,
            first_period=first_period, approval_level=level,
            approving_body=deciding_body(by, self.region_code), approved_at=decided_at.isoformat(),
        )
        self.trigger_event(
            self.Approved, case_id=self.case_id, verification_id=self.verification_id,
            benefit=benefit, reason=reason, members_count=len(self.application.household.members),
            region_code=self.region_code, area=self.application.household.area,
            bank_account=self.application.bank_account,
            bank_account_ref=self.application.bank_account_ref, assessment=record, meta=by.as_dict(),
        )
        return benefit

    def refuse(self, decided_at: datetime, by: Meta, reason: str) -> Refusal:
        self.check_decidable()
        refusal = Refusal(reason, deciding_body(by, self.region_code), decided_at.isoformat())
        self.trigger_event(
            self.Refused, case_id=self.case_id, verification_id=self.verification_id,
            region_code=self.region_code, refusal=refusal, meta=by.as_dict(),
        )
        return refusal

    def check_decidable(self) -> None:
        """DecisionNotAllowed unless the check is complete and not decided yet."""
        if self.state != "completed":
            raise DecisionNotAllowed(
                f"verification is {self.state}: a decision needs a completed check and is taken once"
            )
