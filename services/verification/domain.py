"""Verification's aggregate: the economic check and the decision on one case.

No I/O here. The eligibility and amount rules live in `assessment.py` and the
policy in `policy.py`; this aggregate records what was asked, what came back,
what the rules concluded and what the review group decided.
"""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Outgoing

STATES = ("requested", "completed", "approved", "refused")


class DecisionNotAllowed(Exception):
    """A decision in the wrong state (e.g. before the check is complete, or twice)."""


class Verification(LifelineAggregate):
    class Started(LifelineAggregate.Created):
        verification_id: str
        case_id: str
        application: dict[str, Any]

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

        def integration(self) -> Outgoing:
            data = {
                "request_id": self.request_id, "verification_id": self.verification_id,
                "case_id": self.case_id, "department": self.department,
                "id_numbers": list(self.id_numbers), "region_code": self.region_code,
                "requested_at": self.requested_at, "due_at": self.due_at,
            }
            # To the partner topic, keyed by department (topics.key_for).
            return Outgoing("VerificationRequested", self.case_id, data)

    class RecordsReceived(LifelineAggregate.Event):
        case_id: str
        department: str
        request_id: str
        members: list[dict[str, Any]]
        reported_at: str

        def apply(self, v: "Verification") -> None:
            v.records[self.department] = {"members": self.members, "reported_at": self.reported_at}

    class Completed(LifelineAggregate.Event):
        case_id: str
        verification_id: str
        assessment: dict[str, Any]
        completed_at: str

        def apply(self, v: "Verification") -> None:
            v.assessment = self.assessment
            v.state = "completed"

        def integration(self) -> Outgoing:
            a = self.assessment
            data = {
                "case_id": self.case_id,
                "verification_id": self.verification_id,
                "per_capita_income_fen": a["per_capita_income_fen"],
                "household_size": a["household_size"],
                "assets_summary": a["assets_summary"],
                "warnings": a["warnings"],
                "outcome": a["outcome"],
                "recommended_assistance_type": a["recommended_assistance_type"],
                "tier": a["tier"],
                "recommended_amount_fen": a["monthly_amount_fen"],
                "standard_applied_fen": a["standard_applied_fen"],
                "departments_answered": a["departments_answered"],
                "departments_missing": a["departments_missing"],
                "completed_at": self.completed_at,
            }
            return Outgoing("VerificationCompleted", self.case_id, data)

    class Approved(LifelineAggregate.Event):
        case_id: str
        benefit: dict[str, Any]
        # The assessment by the rules in force on the decision date, for the audit trail.
        assessment: dict[str, Any] | None

        def apply(self, v: "Verification") -> None:
            v.state = "approved"
            v.benefit = self.benefit

        def integration(self) -> Outgoing:
            return Outgoing("BenefitApproved", self.case_id, dict(self.benefit))

    class Refused(LifelineAggregate.Event):
        case_id: str
        refusal: dict[str, Any]

        def apply(self, v: "Verification") -> None:
            v.state = "refused"
            v.refusal = self.refusal

        def integration(self) -> Outgoing:
            return Outgoing("BenefitRefused", self.case_id, dict(self.refusal))

    def __init__(self, verification_id: str, case_id: str, application: dict[str, Any], meta: dict):
        self.verification_id = verification_id
        self.case_id = case_id
        self.application = application
        self.state = "requested"
        self.requests: dict[str, str] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.assessment: dict[str, Any] | None = None
        self.benefit: dict[str, Any] | None = None
        self.refusal: dict[str, Any] | None = None

    @property
    def region_code(self) -> str:
        return self.application["region_code"]

    @property
    def departments_missing(self) -> list[str]:
        return [d for d in self.requests if d not in self.records]

    def request(self, department: str, request_id: str, requested_at: str, due_at: str, meta: dict) -> None:
        self.trigger_event(
            self.Requested, case_id=self.case_id, verification_id=self.verification_id,
            request_id=request_id, department=department,
            id_numbers=[m["id_number"] for m in self.application["members"]],
            region_code=self.region_code, requested_at=requested_at, due_at=due_at, meta=meta,
        )

    def receive(self, department: str, request_id: str, members: list, reported_at: str, meta: dict) -> bool:
        """Record a department's answer; False when it is not one we wait for."""
        if self.requests.get(department) != request_id or department in self.records:
            return False  # an answer to another request, or a second answer: the first stands
        if self.state != "requested":
            return False  # arrived after the check was completed with it missing
        self.trigger_event(
            self.RecordsReceived, case_id=self.case_id, department=department,
            request_id=request_id, members=members, reported_at=reported_at, meta=meta,
        )
        return True

    def complete(self, assessment: dict[str, Any], completed_at: str, meta: dict) -> None:
        if self.state != "requested":
            raise DecisionNotAllowed(f"verification is {self.state}, not awaiting records")
        self.trigger_event(
            self.Completed, case_id=self.case_id, verification_id=self.verification_id,
            assessment=assessment, completed_at=completed_at, meta=meta,
        )

    def approve(self, benefit: dict[str, Any], meta: dict, assessment: dict[str, Any] | None = None) -> None:
        self._check_decidable()
        self.trigger_event(
            self.Approved, case_id=self.case_id, benefit=benefit, assessment=assessment, meta=meta
        )

    def refuse(self, refusal: dict[str, Any], meta: dict) -> None:
        self._check_decidable()
        self.trigger_event(self.Refused, case_id=self.case_id, refusal=refusal, meta=meta)

    def _check_decidable(self) -> None:
        if self.state != "completed":
            raise DecisionNotAllowed(
                f"verification is {self.state}: a decision needs a completed check and is taken once"
            )
