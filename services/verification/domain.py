"""Verification's aggregate: the economic check and the decision on one case.

No I/O here. The eligibility and amount rules live in `assessment.py` and the
policy in `policy.py`; this aggregate records what was asked and what came
back, and its `decide` turns an assessment into a typed `Benefit` only when the
rules allow it and the deciding body may approve that much.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from lifeline.contracts import registry
from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.deadlines import DeadlineClearedEvent, DeadlineSetEvent, deadline_fields
from lifeline.domain.values import (
    Application, BankAccount, Benefit, Household, Refusal, StoresApplication, mask_name,
)
from lifeline.rules import clocks
from lifeline.rules.ids import mask_resident_id
from lifeline.rules.periods import (
    business_date, first_payment_period, next_period, parse_period, period_of, start_of_day,
)
from lifeline.rules.vocabulary import ONE_OFF_TYPES
from services.verification.assessment import Assessment, DepartmentRecord
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
    Surveyor,
)
from services.verification.review import (
    FRAUD_KINDS, GRACE_REASONS, ReviewCycle, ReviewResult, first_unpaid_period, next_review_date,
)

# Roles that decide at county level; every other deciding role is the township review group.
COUNTY_ROLES = ("county_officer", "admin")


class ProcedureError(Exception):
    """A command the procedure does not allow; `rule` names the rule, `status` its HTTP answer."""

    status = 409

    def __init__(self, message: str, rule: str = "procedure_order"):
        super().__init__(message)
        self.rule = rule


class DecisionNotAllowed(ProcedureError):
    """A step out of order, repeated, or on a case in the wrong state (409)."""


class RuleBroken(ProcedureError):
    """The command's content breaks a rule (fewer than two surveyors, a future date): 422."""

    status = 422


class UnknownGrievance(ProcedureError):
    """No such grievance on this case (404)."""

    status = 404


class NotPermitted(ProcedureError):
    """This person may not take this step (four eyes, approval level): 403."""

    status = 403


def deciding_level(by: Meta) -> str:
    return "county" if by.role in COUNTY_ROLES else "township"


def deciding_body(by: Meta, region_code: str) -> str:
    return by.org_code or f"{region_code[:9]} 乡镇审核确认小组"


def _day(moment: datetime | str) -> date:
    return business_date(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)


# A payment period as the wire writes it (ASCII digits only: the schemas' pattern is ECMA-262).
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


class Verification(LifelineAggregate):
    """One case's procedure (审核确认): the economic check and the steps the law prescribes
    before a decision, each with its deadline.

    State: `awaiting_acceptance` → (`not_accepted`) | `requested` (the check is running) →
    `completed` → `approved` | `refused`. The survey, the initial review, the public notice,
    objections and appraisals are recorded beside the check; `missing_step` says what a
    decision still waits for. An approved monthly benefit is then `paying`, and may be
    adjusted, suspended, resumed and terminated from a period on (`benefit_status`).
    """

    id_kind = "verification"  # one procedure per case: a repeated application collides

    class Started(StoresApplication, LifelineAggregate.Created):
        verification_id: str
        case_id: str
        application: Application

    class Accepted(LifelineAggregate.Event):
        case_id: str
        accepted_at: str
        # The county's own periods in force at acceptance (clock → days); the rest default.
        clock_days: dict[str, int]

        def apply(self, v: "Verification") -> None:
            v.accepted_at = self.accepted_at
            v.clock_days = dict(self.clock_days)
            v.state = "requested"

    class NotAccepted(LifelineAggregate.Event):
        case_id: str
        reason: str

        def apply(self, v: "Verification") -> None:
            v.state = "not_accepted"

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
            if v.state == "awaiting_acceptance":
                v.state = "requested"  # logs from before acceptance existed: requested at once

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

    class SurveyRecorded(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        surveyors: list[dict[str, str]]
        visited_on: str
        findings: str
        recorded_at: str

        def apply(self, v: "Verification") -> None:
            v.survey = Survey(tuple(Surveyor(**s) for s in self.surveyors), self.visited_on,
                              self.findings, self.recorded_at, self.meta["user_id"])

    class ReviewProposed(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        proposal: str
        assistance_type: str
        monthly_amount_fen: int | None
        one_off_amount_fen: int | None
        reason: str
        proposed_at: str

        def apply(self, v: "Verification") -> None:
            v.proposal = Proposal(self.proposal, self.assistance_type, self.monthly_amount_fen,
                                  self.one_off_amount_fen, self.reason, self.proposed_at,
                                  self.meta["user_id"])

    class NoticePosted(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        public_notice_id: str
        village_code: str
        applicant_name_masked: str
        members_count: int
        assistance_type: str
        monthly_amount_fen: int | None
        one_off_amount_fen: int | None
        notice_from: str
        notice_until: str
        ends_at: str
        posted_at: str

        def apply(self, v: "Verification") -> None:
            v.notice = PublicNotice(self.public_notice_id, self.village_code, self.notice_from,
                                    self.notice_until, self.ends_at, self.posted_at)
            # A verification warning (or a check that could not conclude) calls for an appraisal.
            v.appraisal_due = v.check_warned

    class ObjectionRaised(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        objection_id: str
        public_notice_id: str
        text: str
        contact: str | None
        received_at: str
        raised_at: str

        def apply(self, v: "Verification") -> None:
            v.objections.append(Objection(self.objection_id, self.text, self.received_at, self.raised_at))
            v.appraisal_due = True

    class AppraisalHeld(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        held_on: str
        participants: int
        votes_for: int
        votes_against: int
        abstentions: int
        opinion: str
        recorded_at: str

        def apply(self, v: "Verification") -> None:
            v.appraisals.append(Appraisal(self.held_on, self.participants, self.votes_for,
                                          self.votes_against, self.abstentions, self.opinion,
                                          self.recorded_at))
            v.appraisal_due = False

    class FilingFlagged(LifelineAggregate.Event):
        """备案: a member is a cadre or a cadre's close relative (declared, or in the register)."""

        case_id: str
        region_code: str
        reasons: list[dict[str, str]]  # services.verification.filings.filing_reasons
        flagged_at: str

        def apply(self, v: "Verification") -> None:
            v.filing = self.reasons

    class MajorDisputeDeclared(LifelineAggregate.Event):
        case_id: str
        reason: str
        declared_at: str

        def apply(self, v: "Verification") -> None:
            v.major_dispute = MajorDispute(self.reason, self.declared_at)

    class DeadlineSet(DeadlineSetEvent):
        def apply(self, v: "Verification") -> None:
            v.deadlines[self.deadline_id] = CaseDeadline(
                self.deadline_id, self.clock, self.label_zh, self.start_date, self.due_date,
                self.due_at, self.warn_at, self.period, self.calendar_known, tuple(self.warnings))

    class DeadlineCleared(DeadlineClearedEvent):
        def apply(self, v: "Verification") -> None:
            v.deadlines[self.deadline_id] = v.deadlines[self.deadline_id].cleared(self.outcome, self.cleared_at)

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
            if self.benefit.kind == "monthly":
                v.benefit_status, v.current_monthly_amount_fen = "paying", self.benefit.monthly_amount_fen
            v.decisions.append(Decision("approve", self.benefit.approved_at, self.meta.get("user_id", ""),
                                        self.reason, self.benefit.benefit_id, self.assessment,
                                        v.evidence_of(self)))

    class Refused(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        region_code: str
        refusal: Refusal
        # The assessment the refusal was taken on (kept for a grievance's second look).
        assessment: dict[str, Any]

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            old = state["refusal"]
            state["verification_id"] = old["verification_id"]
            state["region_code"] = old["region_code"]
            state["refusal"] = Refusal(old["reason"], old["refusing_body"], old["refused_at"])

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["assessment"] = {}

        def apply(self, v: "Verification") -> None:
            v.state = "refused"
            v.refusal = self.refusal
            v.decisions.append(Decision("refuse", self.refusal.refused_at, self.meta.get("user_id", ""),
                                        self.refusal.reason, None, self.assessment, v.evidence_of(self)))

    class BenefitChanged(LifelineAggregate.Event):
        """The approved monthly benefit changes from `from_period` on (动态管理); one subclass per
        change, each published as its own event (outbound.py). Never stored itself."""

        case_id: str
        benefit_id: str
        from_period: str
        reason: str
        decided_by: str
        decided_at: str

        change: ClassVar[str]
        status: ClassVar[str | None]  # the benefit's status from `from_period` on (None: as it was)

        def apply(self, v: "Verification") -> None:
            v.benefit_status = self.status or v.benefit_status
            v.benefit_changes.append(BenefitChange(
                self.change, self.from_period, v.benefit_status, v.current_monthly_amount_fen,
                self.reason, self.decided_by, self.decided_at))

    class BenefitAdjusted(BenefitChanged):
        """调整: a new monthly amount; paying or suspended, the benefit stays as it was."""

        monthly_amount_fen: int
        previous_monthly_amount_fen: int

        change, status = "adjust", None

        def apply(self, v: "Verification") -> None:
            v.current_monthly_amount_fen = self.monthly_amount_fen
            super().apply(v)

    class BenefitSuspended(BenefitChanged):
        """暂停发放: nothing is paid from `from_period` on until the benefit is resumed."""

        change, status = "suspend", "suspended"

    class BenefitResumed(BenefitChanged):
        """恢复发放: paid again from `from_period` on, at the amount in force."""

        change, status = "resume", "paying"

    class BenefitTerminated(BenefitChanged):
        """停发: the benefit ends; nothing is paid from `from_period` on, nothing changes it again."""

        change, status = "terminate", "terminated"

    class GrievanceRaised(LifelineAggregate.Event):
        case_id: str
        grievance_id: str
        against: str
        text: str
        channel: str
        objection_id: str | None
        raised_at: str

        def apply(self, v: "Verification") -> None:
            v.grievances[self.grievance_id] = Grievance(
                self.grievance_id, self.against, self.text, self.channel, self.objection_id,
                self.raised_at, self.meta.get("user_id", ""))

    class GrievanceDecided(LifelineAggregate.Event):
        case_id: str
        grievance_id: str
        outcome: str  # upheld | dismissed
        reason: str
        evidence: str | None  # original | new: how the decision is taken again (upheld)
        decided_at: str

        def apply(self, v: "Verification") -> None:
            v.grievances[self.grievance_id] = v.grievances[self.grievance_id].decided(
                self.outcome, self.reason, self.evidence, self.decided_at)

    class Reopened(LifelineAggregate.Event):
        """An upheld grievance re-opens the decision: on the evidence as it stood at the decision
        (`evidence_version`, the verification replayed to that moment) or with new evidence
        (the departments are asked again). The earlier decision stays in the log."""

        case_id: str
        grievance_id: str
        evidence: str
        evidence_version: int
        reopened_at: str

        def apply(self, v: "Verification") -> None:
            v.state = "completed" if self.evidence == "original" else "requested"
            v.evidence_version = self.evidence_version if self.evidence == "original" else None
            v.benefit = v.refusal = None
            v.benefit_status = v.current_monthly_amount_fen = None
            v.benefit_changes = []
            v.proposal = v.notice = None
            v.objections, v.appraisals, v.appraisal_due = [], [], False
            if self.evidence == "new":
                v.requests, v.records, v.assessment = {}, {}, None

    # --- after approval (issue 11): reviews, deaths, fraud --------------------------------
    class ReviewScheduled(LifelineAggregate.Event):
        """The review cycle (动态管理) of an approved monthly benefit, and its first review date."""

        case_id: str
        cycle_months: int
        cycle_code: str
        next_review_date: str
        scheduled_at: str

        def apply(self, v: "Verification") -> None:
            v.review_cycle_months, v.next_review_date = self.cycle_months, self.next_review_date

    class ReviewStarted(LifelineAggregate.Event):
        """A review starts: the departments are asked again (ReviewRequested, one per department)."""

        case_id: str
        review_id: str
        benefit_id: str
        region_code: str
        scheduled_for: str | None
        grace_reason: str | None
        grace_months: int | None
        reason: str
        departments: list[str]
        started_by: str
        started_at: str

        def apply(self, v: "Verification") -> None:
            v.reviews[self.review_id] = Review(
                self.review_id, "open", self.scheduled_for, self.grace_reason, self.grace_months,
                self.reason, self.started_by, self.started_at, tuple(self.departments))
            v.open_review_id = self.review_id
            v.review_requests, v.review_records = {}, {}

    class ReviewRequested(LifelineAggregate.Event):
        """A review's request to one department, published as VerificationRequested (its own
        request id: the department's answer is told from the first check's)."""

        case_id: str
        verification_id: str
        review_id: str
        request_id: str
        department: str
        id_numbers: list[str]
        region_code: str
        requested_at: str
        due_at: str

        def apply(self, v: "Verification") -> None:
            v.review_requests[self.department] = self.request_id

    class ReviewRecordsReceived(LifelineAggregate.Event):
        case_id: str
        review_id: str
        department: str
        request_id: str
        members: list[dict[str, Any]]
        reported_at: str

        def apply(self, v: "Verification") -> None:
            v.review_records[self.department] = DepartmentRecord(self.department, tuple(self.members))

    class ReviewCompleted(LifelineAggregate.Event):
        """What a review ended in; the change it makes to the benefit follows as its own event."""

        case_id: str
        review_id: str
        benefit_id: str
        outcome: str  # services.verification.review.REVIEW_OUTCOMES
        code: str
        per_capita_income_fen: int | None
        standard_applied_fen: int | None
        monthly_amount_fen: int | None
        from_period: str | None
        grace: dict[str, Any] | None
        reason: str
        next_review_date: str | None
        cycle_months: int | None
        assessment: dict[str, Any]  # the review's assessment record (empty: concluded without one)
        completed_by: str
        completed_at: str

        def apply(self, v: "Verification") -> None:
            v.reviews[self.review_id] = v.reviews[self.review_id].completed(
                outcome=self.outcome, per_capita_income_fen=self.per_capita_income_fen,
                monthly_amount_fen=self.monthly_amount_fen, from_period=self.from_period,
                grace=self.grace, next_review_date=self.next_review_date, completed_at=self.completed_at)
            v.open_review_id = None
            v.next_review_date = self.next_review_date
            v.review_cycle_months = self.cycle_months or v.review_cycle_months
            if self.assessment:
                v.latest_records = dict(v.review_records)

    class MemberDied(LifelineAggregate.Event):
        """A department reported the death of a member of the approved household (once per
        record): the member by position in the application, the name masked."""

        case_id: str
        record_id: str
        member_index: int
        member_name_masked: str
        relation: str
        date_of_death: str
        department: str
        recorded_at: str

        def apply(self, v: "Verification") -> None:
            v.deaths[self.record_id] = Death(self.record_id, self.member_index, self.member_name_masked,
                                             self.relation, self.date_of_death, self.department,
                                             self.recorded_at)

    class FraudReported(LifelineAggregate.Event):
        """虚报、隐瞒、伪造 reported by a county officer, with the evidence (kept here, never published)."""

        case_id: str
        kinds: list[str]
        evidence: str
        fraud_since: str
        reported_by: str
        reported_at: str

        def apply(self, v: "Verification") -> None:
            v.fraud = FraudReport(tuple(self.kinds), self.evidence, self.fraud_since, self.reported_by,
                                  self.reported_at)

    class FraudRefused(LifelineAggregate.Event):
        case_id: str
        reason: str
        refused_by: str
        refused_at: str

        def apply(self, v: "Verification") -> None:
            v.fraud = v.fraud.decided("refused", self.refused_by, self.refused_at, refusal_reason=self.reason)

    class FraudRecorded(LifelineAggregate.Event):
        """Confirmed by a second county officer: published as FraudRecorded (to the dishonesty
        list too), masked: no ID number in clear, no address, no evidence."""

        case_id: str
        benefit_id: str
        benefit_type: str
        region_code: str
        applicant_name_masked: str
        applicant_id_number_masked: str
        fraud_kinds: list[str]
        fraud_since: str
        terminated_from_period: str
        reported_by: str
        confirmed_by: str
        recorded_at: str

        def apply(self, v: "Verification") -> None:
            v.fraud = v.fraud.decided("recorded", self.confirmed_by, self.recorded_at,
                                      terminated_from_period=self.terminated_from_period)

    @classmethod
    def open(cls, application: Application, verification_id: str, by: Meta) -> "Verification":
        """The case is known; the procedure waits for intake's acceptance."""
        return cls._create(
            cls.Started, id=cls.create_id(application.case_id), verification_id=verification_id,
            case_id=application.case_id, application=application, meta=by.as_dict(),
        )

    def __init__(self, verification_id: str, case_id: str, application: Application, meta: dict):
        self.verification_id = verification_id
        self.case_id = case_id
        self.application = application
        self.state = "awaiting_acceptance"
        self.accepted_at: str | None = None
        self.clock_days: dict[str, int] = {}
        self.requests: dict[str, str] = {}
        self.records: dict[str, DepartmentRecord] = {}
        self.assessment: dict[str, Any] | None = None
        self.survey: Survey | None = None
        self.proposal: Proposal | None = None
        self.notice: PublicNotice | None = None
        self.objections: list[Objection] = []
        self.appraisals: list[Appraisal] = []
        self.appraisal_due = False
        self.major_dispute: MajorDispute | None = None
        self.filing: list[dict[str, str]] = []  # 备案 reasons; empty: nothing to file
        self.deadlines: dict[str, CaseDeadline] = {}
        self.benefit: Benefit | None = None
        # A monthly benefit after approval: paying | suspended | terminated, the monthly amount in
        # force (approved, then adjusted) and every change, the latest last.
        self.benefit_status: str | None = None
        self.current_monthly_amount_fen: int | None = None
        self.benefit_changes: list[BenefitChange] = []
        self.refusal: Refusal | None = None
        self.decisions: list[Decision] = []  # every decision taken, with its assessment
        self.grievances: dict[str, Grievance] = {}
        # After a grievance upheld on the original evidence: the version whose records decide.
        self.evidence_version: int | None = None
        # After approval (issue 11): the review cycle and next date, every review (the running
        # one's requests and records), the records the latest completed review read, the
        # members' deaths by record id, a fraud report.
        self.review_cycle_months: int | None = None
        self.next_review_date: str | None = None
        self.reviews: dict[str, Review] = {}
        self.open_review_id: str | None = None
        self.review_requests: dict[str, str] = {}
        self.review_records: dict[str, DepartmentRecord] = {}
        self.latest_records: dict[str, DepartmentRecord] | None = None
        self.deaths: dict[str, Death] = {}
        self.fraud: FraudReport | None = None

    @property
    def region_code(self) -> str:
        return self.application.region_code

    @property
    def departments_missing(self) -> list[str]:
        return [d for d in self.requests if d not in self.records]

    @property
    def decided(self) -> bool:
        return self.state in ("approved", "refused")

    def evidence_of(self, decision: LifelineAggregate.Event) -> int:
        """The version whose records a decision was taken on: the one before it, or after a
        grievance upheld on the original evidence, the version the first decision was taken on."""
        return self.evidence_version if self.evidence_version is not None else decision.originator_version - 1

    @property
    def check_warned(self) -> bool:
        """The completed check raised a warning (预警) or could not conclude (needs_appraisal)."""
        a = self.assessment or {}
        return bool(a.get("warnings")) or a.get("outcome") == "needs_appraisal"

    # --- deadlines ----------------------------------------------------------------
    def _set_deadline(self, clock: str, start: datetime, now: datetime, by: Meta) -> str:
        """Start one statutory clock (lifeline.rules.clocks) on this case; its deadline id."""
        days = self.clock_days.get(clock)
        if clock == "verification_report":  # warned after 3 working days, due after 5
            due = clocks.verification_report_due(start, limit_days=days or 5, target_days=min(3, days or 5))
        else:
            due = clocks.clock_due(clock, start, days=days)
        base = f"{self.case_id}/{clock}"
        repeats = sum(1 for d in self.deadlines.values() if d.clock == clock)
        deadline_id = base if not repeats else f"{base}/{repeats + 1}"
        self.trigger_event(self.DeadlineSet, **deadline_fields(deadline_id, self.case_id, self.region_code,
                                                               self.region_code[:9], due, now), meta=by.as_dict())
        return deadline_id

    def _clear_deadlines(self, now: datetime, by: Meta, *names: str, cancel: bool = False,
                         ids: tuple[str, ...] = ()) -> None:
        """Stop the open deadlines of these clocks (or with these ids; every open one when
        neither is named): met or late by the time of the step, or cancelled when the step no
        longer applies."""
        for d in list(self.deadlines.values()):
            if not d.is_open or (names and d.clock not in names) or (ids and d.deadline_id not in ids):
                continue
            self.trigger_event(
                self.DeadlineCleared, deadline_id=d.deadline_id, case_id=self.case_id, clock=d.clock,
                outcome="cancelled" if cancel else d.outcome_at(now), cleared_at=now.isoformat(),
                meta=by.as_dict(),
            )

    # --- acceptance (intake decides; the procedure's clocks start here) ---------------
    def accept(self, accepted_at: datetime, by: Meta, clock_days: dict[str, int] | None = None) -> bool:
        """Intake accepted the application; False when already known. `clock_days` are the
        county's own periods (policy `clock_days`), kept for every deadline of this case."""
        if self.state != "awaiting_acceptance":
            return False
        self.trigger_event(self.Accepted, case_id=self.case_id, accepted_at=accepted_at.isoformat(),
                           clock_days=dict(clock_days or {}), meta=by.as_dict())
        return True

    def start_clocks(self, accepted_at: datetime, requested_at: datetime, by: Meta) -> None:
        """The survey and the whole procedure run from acceptance, the report from the request.
        (The request's own 3-day clock is met by sending the requests with the acceptance.)"""
        self._set_deadline("verification_report", requested_at, requested_at, by)
        self._set_deadline("household_survey", accepted_at, requested_at, by)
        self._set_deadline("whole_procedure", accepted_at, requested_at, by)

    def flag_filing(self, reasons: list[dict[str, str]], now: datetime, by: Meta) -> None:
        """Flag the case for filing (备案) when the reasons found now differ from those recorded
        (a register loaded since acceptance, say); unchanged reasons record nothing."""
        if reasons and reasons != self.filing:
            self.trigger_event(self.FilingFlagged, case_id=self.case_id, region_code=self.region_code,
                               reasons=reasons, flagged_at=now.isoformat(), meta=by.as_dict())

    def not_accepted(self, reason: str, by: Meta) -> bool:
        if self.state != "awaiting_acceptance":
            return False
        self.trigger_event(self.NotAccepted, case_id=self.case_id, reason=reason, meta=by.as_dict())
        return True

    # --- the economic check ----------------------------------------------------------
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
        self._clear_deadlines(completed_at, by, "verification_report")

    # --- the steps --------------------------------------------------------------------
    def _check_open(self, step: str) -> None:
        if self.state == "awaiting_acceptance":
            raise DecisionNotAllowed(
                f"{step}: the application has not been accepted yet (POST /v1/cases/{{case_id}}/acceptance)",
                "acceptance")
        if self.state == "not_accepted":
            raise DecisionNotAllowed(f"{step}: the application was not accepted", "acceptance")
        if self.decided:
            raise DecisionNotAllowed(f"{step}: the case is already decided ({self.state})", "decision")

    @staticmethod
    def _not_future(day: date, now: datetime, field: str) -> None:
        if day > business_date(now):
            raise RuleBroken(f"{field} {day.isoformat()} is in the future", "date_in_future")

    def record_survey(self, surveyors: list[dict[str, str]], visited_on: date, findings: str,
                      now: datetime, by: Meta) -> None:
        """入户调查: at least two people, one of them a village-based cadre (驻村干部)."""
        self._check_open("household survey")
        if self.survey is not None:
            raise DecisionNotAllowed("the household survey is already recorded", "household_survey")
        names = {s["name"] for s in surveyors}
        if len(surveyors) < 2 or len(names) < 2:
            raise RuleBroken("a household survey needs at least two different surveyors",
                             "survey_two_people")
        if not any(s["role"] == "village_cadre" for s in surveyors):
            raise RuleBroken("one surveyor must be a village-based cadre (驻村干部)",
                             "survey_village_cadre")
        self._not_future(visited_on, now, "visited_on")
        if visited_on < _day(self.accepted_at):
            raise RuleBroken("visited_on is before the application was accepted", "date_before_acceptance")
        self.trigger_event(
            self.SurveyRecorded, case_id=self.case_id, verification_id=self.verification_id,
            surveyors=surveyors, visited_on=visited_on.isoformat(), findings=findings,
            recorded_at=now.isoformat(), meta=by.as_dict(),
        )
        self._clear_deadlines(now, by, "household_survey")
        # "入户调查工作结束3个工作日内": counted from the visit.
        self._set_deadline("initial_review", start_of_day(visited_on), now, by)

    def propose(self, proposal: str, reason: str, now: datetime, by: Meta) -> None:
        """初审: include with the amount the assessment gives, or refuse."""
        self._check_open("initial review")
        if self.survey is None:
            raise DecisionNotAllowed("initial review: the household survey is not recorded yet",
                                     "household_survey")
        if self.state != "completed":
            raise DecisionNotAllowed("initial review: the economic check is not completed yet",
                                     "verification_report")
        if self.proposal is not None:
            raise DecisionNotAllowed("the initial review is already proposed", "initial_review")
        a = self.assessment or {}
        monthly = one_off = None
        if proposal == "include":
            if a.get("outcome") != "eligible":
                raise DecisionNotAllowed(
                    f"the check's outcome is {a.get('outcome')}: there is no amount to propose; "
                    "propose a refusal or complete the check", "initial_review")
            if self.application.assistance_type in ONE_OFF_TYPES:
                one_off = a.get("detail", {}).get("one_off_amount_fen", 0)
            elif self.application.assistance_type != "low_income":
                monthly = a["monthly_amount_fen"]
        self.trigger_event(
            self.ReviewProposed, case_id=self.case_id, verification_id=self.verification_id,
            proposal=proposal, assistance_type=self.application.assistance_type,
            monthly_amount_fen=monthly, one_off_amount_fen=one_off, reason=reason,
            proposed_at=now.isoformat(), meta=by.as_dict(),
        )
        self._clear_deadlines(now, by, "initial_review")
        if proposal == "refuse":
            # No notice for a refusal: the material goes to the review group now.
            self._set_deadline("decision", now, now, by)

    def post_notice(self, public_notice_id: str, now: datetime, by: Meta) -> None:
        """公示: the proposed inclusion on the village board for 7 days."""
        self._check_open("public notice")
        if self.proposal is None or self.proposal.proposal != "include":
            raise DecisionNotAllowed("a public notice needs an initial review proposing inclusion",
                                     "initial_review")
        if self.notice is not None:
            raise DecisionNotAllowed("the public notice is already posted", "public_notice")
        period = clocks.public_notice_due(now)
        self.trigger_event(
            self.NoticePosted, case_id=self.case_id, verification_id=self.verification_id,
            public_notice_id=public_notice_id, village_code=self.region_code,
            applicant_name_masked=mask_name(self.application.household.applicant.name),
            members_count=len(self.application.household.members),
            assistance_type=self.application.assistance_type,
            monthly_amount_fen=self.proposal.monthly_amount_fen,
            one_off_amount_fen=self.proposal.one_off_amount_fen,
            notice_from=(period.start_date + timedelta(days=1)).isoformat(),
            notice_until=period.due_date.isoformat(), ends_at=period.due_at.isoformat(),
            posted_at=now.isoformat(), meta=by.as_dict(),
        )
        # After the notice: an appraisal when the check warned, else the decision.
        after = start_of_day(period.due_date)
        self._set_deadline("democratic_appraisal" if self.appraisal_due else "decision", after, now, by)

    def raise_objection(self, objection_id: str, public_notice_id: str, text: str,
                        contact: str | None, received_at: datetime, now: datetime, by: Meta) -> bool:
        """An objection from the board; False when it cannot count here (already raised, no
        notice posted, the case decided: the board refuses those, so only a race gets here)."""
        if self.notice is None or self.notice.public_notice_id != public_notice_id:
            return False
        if any(o.objection_id == objection_id for o in self.objections):
            return False
        if self.decided:
            # Too late for the notice (a race with the decision): it is heard as a grievance.
            return self.raise_grievance(f"G-{objection_id}", "verification_result", text, "board",
                                        objection_id, now, by)
        self.trigger_event(
            self.ObjectionRaised, case_id=self.case_id, verification_id=self.verification_id,
            objection_id=objection_id, public_notice_id=public_notice_id, text=text,
            contact=contact, received_at=received_at.isoformat(), raised_at=now.isoformat(),
            meta=by.as_dict(),
        )
        # The decision now waits for an appraisal, due 3 working days from the objection.
        self._clear_deadlines(now, by, "decision", cancel=True)
        if not any(d.clock == "democratic_appraisal" and d.is_open for d in self.deadlines.values()):
            self._set_deadline("democratic_appraisal", received_at, now, by)
        return True

    def hold_appraisal(self, held_on: date, participants: int, votes_for: int, votes_against: int,
                       abstentions: int, opinion: str, now: datetime, by: Meta) -> None:
        """民主评议: only after an objection or a verification warning; advisory."""
        self._check_open("democratic appraisal")
        if self.notice is None:
            raise DecisionNotAllowed("a democratic appraisal follows the public notice", "public_notice")
        if not self.appraisal_due:
            raise DecisionNotAllowed(
                "no objection and no verification warning (since the last appraisal): "
                "no democratic appraisal is held", "appraisal_not_needed")
        self._not_future(held_on, now, "held_on")
        if held_on < _day(self.notice.posted_at):
            raise RuleBroken("held_on is before the public notice was posted", "date_before_notice")
        if votes_for + votes_against + abstentions > participants:
            raise RuleBroken("more votes than participants", "appraisal_votes")
        self.trigger_event(
            self.AppraisalHeld, case_id=self.case_id, verification_id=self.verification_id,
            held_on=held_on.isoformat(), participants=participants, votes_for=votes_for,
            votes_against=votes_against, abstentions=abstentions, opinion=opinion,
            recorded_at=now.isoformat(), meta=by.as_dict(),
        )
        self._clear_deadlines(now, by, "democratic_appraisal")
        # The material reaches the review group with the appraisal, not before the notice ends.
        start = max(held_on, date.fromisoformat(self.notice.notice_until))
        self._set_deadline("decision", start_of_day(start), now, by)

    def declare_major_dispute(self, reason: str, now: datetime, by: Meta) -> None:
        """重大异议: the whole procedure may take 30 working days instead of 20."""
        self._check_open("major dispute")
        if self.major_dispute is not None:
            raise DecisionNotAllowed("a major dispute is already declared", "major_dispute")
        self.trigger_event(self.MajorDisputeDeclared, case_id=self.case_id, reason=reason,
                           declared_at=now.isoformat(), meta=by.as_dict())
        self._clear_deadlines(now, by, "whole_procedure", cancel=True)
        self._set_deadline("whole_procedure_major_dispute", datetime.fromisoformat(self.accepted_at), now, by)

    # --- grievances (异议、申诉) -----------------------------------------------------------
    def raise_grievance(self, grievance_id: str, against: str, text: str, channel: str,
                        objection_id: str | None, now: datetime, by: Meta) -> bool:
        """Contest the check's result or a refusal; due in 15 working days. False when this
        grievance is already raised (a repeated request)."""
        if grievance_id in self.grievances:
            return False
        if against == "refusal" and self.state != "refused":
            raise DecisionNotAllowed("there is no refusal on this case to contest", "grievance_subject")
        if against == "verification_result" and self.assessment is None:
            raise DecisionNotAllowed("the economic check has no result yet", "grievance_subject")
        if against == "adjustment":
            raise DecisionNotAllowed(
                "this case has no adjustment to contest (adjustments come with dynamic management)",
                "grievance_subject")
        self.trigger_event(self.GrievanceRaised, case_id=self.case_id, grievance_id=grievance_id,
                           against=against, text=text, channel=channel, objection_id=objection_id,
                           raised_at=now.isoformat(), meta=by.as_dict())
        self._set_deadline("grievance", now, now, by)
        return True

    def decide_grievance(self, grievance_id: str, outcome: str, reason: str, evidence: str | None,
                         now: datetime, by: Meta) -> None:
        """Uphold or dismiss. Upheld against a refusal (or against an undecided check's result,
        with new evidence), the decision is taken again from the initial review: on the
        evidence as it stood at the refusal ("original") or after asking the departments again
        ("new"). An approved benefit is changed by an adjustment, not here."""
        grievance = self.grievances.get(grievance_id)
        if grievance is None:
            raise UnknownGrievance(f"no grievance {grievance_id} on this case", "grievance")
        if grievance.state != "open":
            raise DecisionNotAllowed("the grievance is already decided", "grievance_decided")
        reopen = outcome == "upheld" and (self.state == "refused" or (
            not self.decided and evidence == "new"))
        if reopen and evidence is None:
            raise RuleBroken("an upheld grievance says on which evidence the decision is taken "
                             "again: original or new", "grievance_evidence")
        self.trigger_event(self.GrievanceDecided, case_id=self.case_id, grievance_id=grievance_id,
                           outcome=outcome, reason=reason, evidence=evidence if reopen else None,
                           decided_at=now.isoformat(), meta=by.as_dict())
        self._clear_deadlines(now, by, ids=(self.deadline_of(grievance_id),))
        if not reopen:
            return
        last = self.decisions[-1].evidence_version if self.decisions else self.version
        self.trigger_event(self.Reopened, case_id=self.case_id, grievance_id=grievance_id,
                           evidence=evidence, evidence_version=last, reopened_at=now.isoformat(),
                           meta=by.as_dict())
        if evidence == "original":
            self._set_deadline("initial_review", now, now, by)
        else:
            self._set_deadline("verification_report", now, now, by)  # the departments' answers

    def deadline_of(self, grievance_id: str) -> str:
        """The grievance's deadline: each grievance set one, in the order they were raised."""
        n = list(self.grievances).index(grievance_id)
        return [d.deadline_id for d in self.deadlines.values() if d.clock == "grievance"][n]

    @property
    def missing_step(self) -> tuple[str, str] | None:
        """(rule, message) of the step a decision still waits for, or None when it may be taken
        (the public notice's end is checked against the time by `check_decidable`)."""
        if self.state in ("awaiting_acceptance", "not_accepted") or self.decided:
            return None
        if self.state == "requested":
            return "verification_report", "the economic check is not completed"
        if self.survey is None:
            return "household_survey", "the household survey is not recorded"
        if self.proposal is None:
            return "initial_review", "the initial review has not proposed anything"
        if self.proposal.proposal == "include":
            if self.notice is None:
                return "public_notice", "the proposed inclusion has not been publicly noticed"
            if self.appraisal_due:
                return "democratic_appraisal", (
                    "an objection or a verification warning calls for a democratic appraisal")
        return None

    def decide(self, assessment: Assessment, record: dict[str, Any], decided_at: datetime,
               by: Meta, reason: str) -> Benefit:
        """Approve on `assessment` (the rules in force on the decision date).

        The benefit's kind follows from what was applied for: 临时救助 is one-off relief
        paid from the temporary-relief budget, 低收入家庭认定 is a recognition without money,
        低保 and 特困 are monthly from the month after the decision. An amount above the
        township's cap needs the county (graded approval).
        """
        self.check_decidable(decided_at, by)
        if self.proposal.proposal != "include":
            raise DecisionNotAllowed(
                "the initial review proposed a refusal: an inclusion needs a proposal to include "
                "and a public notice", "initial_review")
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
            raise NotPermitted(
                f"{one_off} fen is above the township's cap: the county civil-affairs bureau approves it",
                "approval_level",
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
        self._clear_deadlines(decided_at, by)  # the decision stops every clock still running
        self.trigger_event(
            self.Approved, case_id=self.case_id, verification_id=self.verification_id,
            benefit=benefit, reason=reason, members_count=len(self.application.household.members),
            region_code=self.region_code, area=self.application.household.area,
            bank_account=self.application.bank_account,
            bank_account_ref=self.application.bank_account_ref, assessment=record, meta=by.as_dict(),
        )
        return benefit

    def refuse(self, decided_at: datetime, by: Meta, reason: str,
               record: dict[str, Any] | None = None) -> Refusal:
        """Refuse (不予批准); `record` is the assessment the refusal was taken on."""
        self.check_decidable(decided_at, by)
        refusal = Refusal(reason, deciding_body(by, self.region_code), decided_at.isoformat())
        self._clear_deadlines(decided_at, by)
        self.trigger_event(
            self.Refused, case_id=self.case_id, verification_id=self.verification_id,
            region_code=self.region_code, refusal=refusal, assessment=record or {}, meta=by.as_dict(),
        )
        return refusal

    def check_decidable(self, now: datetime, by: Meta) -> None:
        """Raise unless every step before the decision is done, the public notice is over,
        and `by` is not whoever surveyed or proposed (four eyes)."""
        self._check_open("decision")
        missing = self.missing_step
        if missing is not None:
            rule, message = missing
            raise DecisionNotAllowed(f"decision: {message} (step {rule})", rule)
        if self.notice is not None and self.notice.running_at(now):
            raise DecisionNotAllowed(
                f"decision: the public notice runs until {self.notice.notice_until}", "public_notice")
        makers = {self.survey.recorded_by, self.proposal.proposed_by}
        if by.user_id in makers:
            raise NotPermitted(
                "four eyes: whoever recorded the survey or proposed the initial review cannot "
                "confirm the decision alone", "four_eyes")

    # --- after approval: the monthly benefit changes (动态管理) -----------------------------
    def change_benefit(self, change: str, from_period: str, monthly_amount_fen: int | None,
                       reason: str, now: datetime, by: Meta) -> BenefitChange:
        """Adjust, suspend, resume or terminate the approved monthly benefit from `from_period`
        on; a new amount comes with `adjust` only. The change as it now stands."""
        if change != "adjust" and monthly_amount_fen is not None:
            raise RuleBroken(f"monthly_amount_fen is sent with an adjustment only, not with {change}",
                             "monthly_amount_fen")
        if change == "adjust":
            self.adjust_benefit(monthly_amount_fen, from_period, reason, now, by)
        elif change == "suspend":
            self.suspend_benefit(from_period, reason, now, by)
        elif change == "resume":
            self.resume_benefit(from_period, reason, now, by)
        elif change == "terminate":
            self.terminate_benefit(from_period, reason, now, by)
        else:
            raise RuleBroken(f"no such benefit change: {change!r}", "benefit_change")
        return self.benefit_changes[-1]

    def adjust_benefit(self, monthly_amount_fen: int | None, from_period: str, reason: str,
                       now: datetime, by: Meta) -> None:
        """调整: a new monthly amount, positive and different from the one in force."""
        self._check_changeable()
        self._check_change(from_period, reason)
        amount = monthly_amount_fen
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            raise RuleBroken("an adjustment gives the new monthly_amount_fen, a positive number of fen "
                             "(to stop paying, suspend or terminate)", "adjustment_amount")
        if amount == self.current_monthly_amount_fen:
            raise RuleBroken(f"the monthly amount is already {amount} fen: nothing to adjust",
                             "adjustment_unchanged")
        self._trigger_change(self.BenefitAdjusted, from_period, reason, now, by, monthly_amount_fen=amount,
                             previous_monthly_amount_fen=self.current_monthly_amount_fen)

    def suspend_benefit(self, from_period: str, reason: str, now: datetime, by: Meta) -> None:
        """暂停发放: only a benefit being paid."""
        self._check_changeable()
        if self.benefit_status != "paying":
            raise DecisionNotAllowed(f"the benefit is {self.benefit_status}, not paying: it cannot be "
                                     "suspended", "benefit_not_paying")
        self._check_change(from_period, reason)
        self._trigger_change(self.BenefitSuspended, from_period, reason, now, by)

    def resume_benefit(self, from_period: str, reason: str, now: datetime, by: Meta) -> None:
        """恢复发放: only a suspended benefit."""
        self._check_changeable()
        if self.benefit_status != "suspended":
            raise DecisionNotAllowed(f"the benefit is {self.benefit_status}, not suspended: there is "
                                     "nothing to resume", "benefit_not_suspended")
        self._check_change(from_period, reason)
        self._trigger_change(self.BenefitResumed, from_period, reason, now, by)

    def terminate_benefit(self, from_period: str, reason: str, now: datetime, by: Meta) -> None:
        """停发: a paying or suspended benefit ends for good."""
        self._check_changeable()
        self._check_change(from_period, reason)
        self._trigger_change(self.BenefitTerminated, from_period, reason, now, by)

    def _check_changeable(self) -> None:
        """Raise unless a monthly benefit was approved on this case and is not terminated (409)."""
        if self.state != "approved" or self.benefit is None or self.benefit.kind != "monthly":
            what = f"the case is {self.state}" if self.state != "approved" else (
                f"the approved benefit is {self.benefit.kind if self.benefit else 'missing'}, not monthly")
            raise DecisionNotAllowed(f"only an approved monthly benefit changes after approval; {what}",
                                     "monthly_benefit")
        if self.benefit_status == "terminated":
            raise DecisionNotAllowed("the benefit is terminated: nothing changes it any more",
                                     "benefit_terminated")

    def _check_change(self, from_period: str, reason: str) -> None:
        """Raise unless `from_period` is a period (YYYY-MM) neither before the benefit's first
        period nor before the latest change, and a reason is given (422)."""
        if not isinstance(from_period, str) or not _PERIOD.fullmatch(from_period):
            raise RuleBroken("from_period must be a payment period, YYYY-MM", "from_period")
        first = self.benefit.first_period
        if parse_period(from_period) < parse_period(first):
            raise RuleBroken(f"from_period {from_period} is before the benefit's first period {first}",
                             "period_before_first_period")
        last = self.benefit_changes[-1].from_period if self.benefit_changes else first
        if parse_period(from_period) < parse_period(last):
            raise RuleBroken(f"from_period {from_period} is before the latest change's, {last}: changes "
                             "apply in the order of their periods", "period_before_last_change")
        if not reason or not reason.strip() or len(reason) > 2000:
            raise RuleBroken("a benefit change gives its reason (1 to 2000 characters)", "reason")

    def _trigger_change(self, event_class: type, from_period: str, reason: str, now: datetime,
                        by: Meta, decided_by: str | None = None, **amounts: int | None) -> None:
        self.trigger_event(event_class, case_id=self.case_id, benefit_id=self.benefit.benefit_id,
                           from_period=from_period, reason=reason, decided_by=decided_by or by.user_id,
                           decided_at=now.isoformat(), meta=by.as_dict(), **amounts)

    # --- after approval (issue 11): reviews, deaths, fraud --------------------------------------
    @property
    def benefit_open(self) -> bool:
        """An approved monthly benefit that is not terminated (paying or suspended)."""
        return (self.state == "approved" and self.benefit is not None and self.benefit.kind == "monthly"
                and self.benefit_status != "terminated")

    @property
    def living_household(self) -> Household:
        """The household as it applied, without the members whose death was reported."""
        hh = self.application.household
        dead = {d.member_index for d in self.deaths.values()}
        return dataclasses.replace(hh, members=tuple(m for i, m in enumerate(hh.members) if i not in dead))

    @property
    def records_in_force(self) -> dict[str, DepartmentRecord]:
        """The departments' records the benefit stands on: the latest completed review's, or the
        first check's."""
        return self.latest_records if self.latest_records is not None else self.records

    @property
    def open_review(self) -> Review | None:
        return self.reviews[self.open_review_id] if self.open_review_id else None

    @property
    def review_departments_missing(self) -> list[str]:
        return [d for d in self.review_requests if d not in self.review_records]

    def _change_period(self, period: str) -> str:
        """`period`, moved on to the benefit's first period or the latest change's when earlier
        (changes apply in the order of their periods)."""
        floor = [self.benefit.first_period, *(c.from_period for c in self.benefit_changes[-1:])]
        return max([period, *floor], key=parse_period)

    def schedule_reviews(self, cycle: ReviewCycle, on: date, now: datetime, by: Meta,
                         exempt_until: date | None = None) -> None:
        """An approved monthly benefit's review cycle and first review date (`on` + the cycle, or
        the day after an income exemption ends when sooner)."""
        self.trigger_event(self.ReviewScheduled, case_id=self.case_id, cycle_months=cycle.months,
                           cycle_code=cycle.code,
                           next_review_date=next_review_date(on, cycle, exempt_until).isoformat(),
                           scheduled_at=now.isoformat(), meta=by.as_dict())

    def start_review(self, review_id: str, grace_reason: str | None, grace_months: int | None, reason: str,
                     requests: list[tuple[str, str]], due_at: datetime, now: datetime, by: Meta) -> None:
        """复核: the departments are asked again (one request id each, `requests` as
        (department, request id)) about the members still living; the report is due as at
        the first check (clock `verification_report`)."""
        self._check_changeable()
        if self.open_review_id is not None:
            raise DecisionNotAllowed(f"review {self.open_review_id} is still running on this case",
                                     "review_open")
        if grace_reason is not None and grace_reason not in GRACE_REASONS:
            raise RuleBroken(f"grace_reason is one of {', '.join(GRACE_REASONS)}", "grace_reason")
        if grace_months is not None and grace_reason is None:
            raise RuleBroken("grace_months comes with a grace_reason", "grace_months")
        self.trigger_event(
            self.ReviewStarted, case_id=self.case_id, review_id=review_id, benefit_id=self.benefit.benefit_id,
            region_code=self.region_code, scheduled_for=self.next_review_date, grace_reason=grace_reason,
            grace_months=grace_months, reason=reason, departments=[d for d, _ in requests],
            started_by=by.user_id, started_at=now.isoformat(), meta=by.as_dict())
        living = self.living_household.id_numbers
        for department, request_id in requests:
            self.trigger_event(
                self.ReviewRequested, case_id=self.case_id, verification_id=self.verification_id,
                review_id=review_id, request_id=request_id, department=department, id_numbers=living,
                region_code=self.region_code, requested_at=now.isoformat(), due_at=due_at.isoformat(),
                meta=by.as_dict())
        self._set_deadline("verification_report", now, now, by)

    def waits_for_review(self, department: str, request_id: str) -> bool:
        """The answer is to the running review's request (not to the first check's)."""
        return self.open_review_id is not None and self.review_requests.get(department) == request_id

    def receive_for_review(self, department: str, request_id: str, members: list, reported_at: str,
                           by: Meta) -> bool:
        """Record a department's answer to the running review; False when it is not one it waits for."""
        if not self.waits_for_review(department, request_id) or department in self.review_records:
            return False
        DepartmentRecord(department, tuple(members))  # refuse rows the rules could not read
        self.trigger_event(self.ReviewRecordsReceived, case_id=self.case_id, review_id=self.open_review_id,
                           department=department, request_id=request_id, members=members,
                           reported_at=reported_at, meta=by.as_dict())
        return True

    def complete_review(self, record: dict[str, Any], result: ReviewResult, next_date: date | None,
                        cycle_months: int | None, now: datetime, by: Meta) -> None:
        """The review's outcome (services.verification.review.review_outcome) and the change it
        makes from its period on, decided by whoever started the review: BenefitAdjusted,
        BenefitTerminated (at once, or after the grace), or nothing. A benefit terminated
        meanwhile (a death, fraud) is only recorded as such."""
        review = self.open_review
        if review is None:
            raise DecisionNotAllowed("no review is running on this case", "review_not_open")
        if self.benefit_status == "terminated":
            result, next_date = ReviewResult("terminated", "BENEFIT_ALREADY_TERMINATED", "待遇已停发"), None
        period = self._change_period(result.from_period) if result.from_period else None
        reason = f"定期复核：{result.message_zh}"
        self.trigger_event(
            self.ReviewCompleted, case_id=self.case_id, review_id=review.review_id,
            benefit_id=self.benefit.benefit_id, outcome=result.outcome, code=result.code,
            per_capita_income_fen=record.get("per_capita_income_fen"),
            standard_applied_fen=record.get("standard_applied_fen"), monthly_amount_fen=result.monthly_amount_fen,
            from_period=period, grace=result.grace, reason=reason,
            next_review_date=next_date.isoformat() if next_date else None, cycle_months=cycle_months,
            assessment=record, completed_by=review.started_by, completed_at=now.isoformat(), meta=by.as_dict())
        if result.outcome == "adjusted":
            self._trigger_change(self.BenefitAdjusted, period, reason, now, by, review.started_by,
                                 monthly_amount_fen=result.monthly_amount_fen,
                                 previous_monthly_amount_fen=self.current_monthly_amount_fen)
        elif result.outcome in ("terminated", "grace") and period is not None:
            self._trigger_change(self.BenefitTerminated, period, reason, now, by, review.started_by)
        self._clear_deadlines(now, by, "verification_report")

    def suspend_unreachable(self, reason: str, now: datetime, by: Meta) -> None:
        """Conclude the running review with a suspension from the next period (the household
        cannot be reached); resumed later by a benefit change. The next review date moves on."""
        if self.open_review is None:
            raise DecisionNotAllowed("no review is running on this case", "review_not_open")
        if self.benefit_status != "paying":
            raise DecisionNotAllowed(f"the benefit is {self.benefit_status}, not paying: it cannot be "
                                     "suspended", "benefit_not_paying")
        period = self._change_period(first_unpaid_period(now))
        self._check_change(period, reason)
        months = self.review_cycle_months or 12
        self.trigger_event(
            self.ReviewCompleted, case_id=self.case_id, review_id=self.open_review_id,
            benefit_id=self.benefit.benefit_id, outcome="suspended", code="REVIEW_UNREACHABLE",
            per_capita_income_fen=None, standard_applied_fen=None, monthly_amount_fen=None, from_period=period,
            grace=None, reason=reason, next_review_date=next_review_date(business_date(now), months).isoformat(),
            cycle_months=months, assessment={}, completed_by=by.user_id, completed_at=now.isoformat(),
            meta=by.as_dict())
        self._trigger_change(self.BenefitSuspended, period, reason, now, by)
        self._clear_deadlines(now, by, "verification_report", cancel=True)

    # deaths (a partner department's DeathReported) ------------------------------------------------
    def member_index(self, id_number: str) -> int | None:
        """The position in the application of the member with this ID number, if any."""
        number = id_number.strip().upper()
        return next((i for i, m in enumerate(self.application.household.members) if m.id_number == number), None)

    def record_death(self, record_id: str, member_index: int, date_of_death: date, department: str,
                     now: datetime, by: Meta) -> bool:
        """A member of the approved household died; False when this record or this member's
        death was recorded already, or the case has no monthly benefit still running."""
        if record_id in self.deaths or any(d.member_index == member_index for d in self.deaths.values()):
            return False
        if not self.benefit_open:
            return False
        member = self.application.household.members[member_index]
        self.trigger_event(self.MemberDied, case_id=self.case_id, record_id=record_id, member_index=member_index,
                           member_name_masked=mask_name(member.name), relation=member.relation,
                           date_of_death=date_of_death.isoformat(), department=department,
                           recorded_at=now.isoformat(), meta=by.as_dict())
        return True

    def death_ends_benefit(self, record_id: str) -> str | None:
        """Why this death ends the benefit (as payment stops it itself): the applicant, who is the
        account holder; the person of a single-person household (单人户); the last counted member.
        None: the household goes on with fewer members."""
        death = self.deaths[record_id]
        hh = self.application.household
        if death.relation == "self":
            return "applicant"
        if hh.single_person_member_id == hh.members[death.member_index].id_number:
            return "single_person"
        if not any(m.counted for m in self.living_household.members):
            return "no_member"
        return None

    def change_after_death(self, record_id: str, assessment: Assessment | None, now: datetime, by: Meta) -> None:
        """The household re-assessed without the member (`assessment`, None when the death ends
        the benefit): a new amount from the month after the death, or the end of the benefit."""
        death = self.deaths[record_id]
        period = self._change_period(next_period(period_of(date.fromisoformat(death.date_of_death))))
        base = f"家庭成员{death.member}于{death.date_of_death}死亡（{death.department} 记录 {record_id}）"
        ends = self.death_ends_benefit(record_id)
        if ends is not None or assessment is None:
            why = {"applicant": "，申请人（收款人）死亡，停发，其他成员可重新申请",
                   "single_person": "，单人户保对象死亡，停发"}.get(ends or "", "，家庭无其他成员，停发")
            self._trigger_change(self.BenefitTerminated, period, base + why, now, by)
        elif assessment.outcome == "eligible" and assessment.monthly_amount_fen > 0:
            amount = assessment.monthly_amount_fen
            if amount != self.current_monthly_amount_fen:
                self._trigger_change(self.BenefitAdjusted, period, base + f"，家庭人数减少，保障金调整为{amount}分",
                                     now, by, monthly_amount_fen=amount,
                                     previous_monthly_amount_fen=self.current_monthly_amount_fen)
        elif assessment.outcome == "ineligible":
            self._trigger_change(self.BenefitTerminated, period, base + "，家庭月人均收入不再低于保障标准，停发",
                                 now, by)

    # fraud (虚报、隐瞒、伪造), four eyes ----------------------------------------------------------
    def report_fraud(self, kinds: list[str], evidence: str, fraud_since: date, now: datetime, by: Meta) -> None:
        """A county officer reports fraud on an approved benefit, with the evidence and the day it
        began (from which payment computes what was overpaid)."""
        if self.state != "approved" or self.benefit is None:
            raise DecisionNotAllowed(f"fraud is recorded against an approved benefit; the case is {self.state}",
                                     "approved_benefit")
        if self.fraud is not None and self.fraud.state in ("reported", "recorded"):
            rule = "fraud_reported" if self.fraud.state == "reported" else "fraud_recorded"
            raise DecisionNotAllowed(f"fraud is already {self.fraud.state} on this case", rule)
        if not kinds or len(set(kinds)) != len(kinds) or any(k not in FRAUD_KINDS for k in kinds):
            raise RuleBroken(f"kinds lists one or more of {', '.join(FRAUD_KINDS)}, each once", "fraud_kinds")
        if not evidence or not evidence.strip() or len(evidence) > 4000:
            raise RuleBroken("fraud is reported with its evidence (1 to 4000 characters)", "evidence")
        self._not_future(fraud_since, now, "fraud_since")
        self.trigger_event(self.FraudReported, case_id=self.case_id, kinds=list(kinds), evidence=evidence,
                           fraud_since=fraud_since.isoformat(), reported_by=by.user_id,
                           reported_at=now.isoformat(), meta=by.as_dict())

    def _fraud_to_decide(self, by: Meta, step: str) -> FraudReport:
        if self.fraud is None or self.fraud.state != "reported":
            raise DecisionNotAllowed(f"no fraud report awaits {step} on this case", "fraud_not_reported")
        if by.user_id == self.fraud.reported_by:
            raise DecisionNotAllowed(f"four eyes: the officer who reported the fraud cannot {step} it; "
                                     "a second county officer does", "four_eyes")
        return self.fraud

    def confirm_fraud(self, now: datetime, by: Meta) -> None:
        """A second county officer confirms: a monthly benefit still running ends from the next
        period (BenefitTerminated), then FraudRecorded (the dishonesty list; payment recovers
        what was paid since `fraud_since`)."""
        fraud = self._fraud_to_decide(by, "confirm")
        period = first_unpaid_period(now)
        names = {"false_report": "虚报", "concealment": "隐瞒", "forgery": "伪造"}
        reason = ("经两名县级民政工作人员确认，存在" + "、".join(names[k] for k in fraud.kinds)
                  + f"行为（自{fraud.fraud_since}起），停发")
        if self.benefit_open:
            period = self._change_period(period)
            self._trigger_change(self.BenefitTerminated, period, reason, now, by)
        elif self.benefit.kind == "monthly":
            ends = next(c.from_period for c in reversed(self.benefit_changes) if c.change == "terminate")
            if parse_period(period) < parse_period(ends):
                # Terminated after a grace period still running: fraud ends it sooner, from the
                # next period (out of the periods' order on purpose: payment takes an earlier end).
                self._trigger_change(self.BenefitTerminated, period, reason, now, by)
            else:  # terminated before: from that period on
                period = ends
        applicant = self.application.household.applicant
        self.trigger_event(
            self.FraudRecorded, case_id=self.case_id, benefit_id=self.benefit.benefit_id,
            benefit_type=self.benefit.benefit_type, region_code=self.region_code,
            applicant_name_masked=mask_name(applicant.name),
            applicant_id_number_masked=mask_resident_id(applicant.id_number), fraud_kinds=list(fraud.kinds),
            fraud_since=fraud.fraud_since, terminated_from_period=period, reported_by=fraud.reported_by,
            confirmed_by=by.user_id, recorded_at=now.isoformat(), meta=by.as_dict())

    def refuse_fraud(self, reason: str, now: datetime, by: Meta) -> None:
        """A second county officer finds the report unfounded: nothing changes, and fraud may be
        reported again on new evidence."""
        self._fraud_to_decide(by, "refuse")
        if not reason or not reason.strip() or len(reason) > 2000:
            raise RuleBroken("a refusal gives its reason (1 to 2000 characters)", "reason")
        self.trigger_event(self.FraudRefused, case_id=self.case_id, reason=reason, refused_by=by.user_id,
                           refused_at=now.isoformat(), meta=by.as_dict())
