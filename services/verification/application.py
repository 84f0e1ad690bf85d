"""Verification use cases: request records, assess, decide."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import Meta, new_id
from lifeline.domain.clock import Clock
from lifeline.domain.values import Application
from lifeline.rules import clocks
from lifeline.rules.periods import business_date
from lifeline.rules.regions import county_of
from lifeline.stores.application import ServiceApplication
from lifeline.stores.sidestore import SideTx
from services.verification.assessment import Assessment, assess
from services.verification.consumers import HANDLERS
from services.verification.domain import DecisionNotAllowed, Verification
from services.verification.outbound import OUTBOUND
from services.verification.policy import CountyPolicy, PolicyHolder, shipped_policy_book

__all__ = ["VerificationApplication", "VerificationNotFound", "DecisionNotAllowed", "project"]


# How often a reviewer's command is tried again when a consumer wrote the same check meanwhile.
CONFLICT_ATTEMPTS = 3


class VerificationNotFound(LookupError):
    pass


def assessment_record(assessment: Any) -> dict[str, Any]:
    """The assessment as stored in the event and carried by VerificationCompleted."""
    d = assessment.to_dict()
    # Only warnings (预警) travel as warnings: each may call for a democratic appraisal.
    warnings = [
        {"rule": r.rule, "code": r.code, "message": r.message_zh} for r in assessment.warnings
    ]
    return {
        "outcome": assessment.outcome,
        "recommended_assistance_type": assessment.recommended_assistance_type,
        "tier": assessment.tier,
        "monthly_amount_fen": assessment.monthly_amount_fen,
        "standard_applied_fen": assessment.standard_applied_fen,
        "per_capita_income_fen": assessment.per_capita_income_fen,
        "household_size": assessment.household_size,
        "assets_summary": {
            "total_fen": assessment.assets_total_fen,
            "within_limit": d.get("assets_within_limit", True),
        },
        "warnings": warnings,
        "departments_answered": list(assessment.departments_answered),
        "departments_missing": list(assessment.departments_missing),
        "detail": d,
    }


class VerificationApplication(ServiceApplication):
    name = "verification"
    service = "verification"
    handlers = HANDLERS
    outbound = OUTBOUND

    def __init__(self, env=None, *, clock: Clock | None = None, policies: PolicyHolder | None = None):
        super().__init__(env, clock=clock)
        self.policies = policies or PolicyHolder(shipped_policy_book())

    def _policy(self, region_code: str, on: datetime) -> CountyPolicy:
        return self.policies.book.policy_for(county_of(region_code), business_date(on))

    # --- effects of consumed events ---------------------------------------
    def start_verification(self, application: Application, meta: Meta, pe: ProcessingEvent) -> None:
        if self.exists(Verification.create_id(application.case_id)):
            return  # the same application seen through another path: one check per case
        now = self.clock.now()
        policy = self._policy(application.region_code, now)
        v = Verification.start(application, new_id("V"), meta)
        due = clocks.verification_request_due(now).due_at
        for department in policy.departments_for(application.assistance_type):
            v.request(department, new_id("Q"), now, due, meta)
        pe.collect_events(v)

    def receive_records(self, report: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        v = self.get_verification(report["case_id"])
        if not v.receive(report["department"], report["request_id"], report["members"], report["reported_at"], meta):
            return
        if not v.departments_missing:
            self._complete(v, meta)
        pe.collect_events(v)

    # --- commands --------------------------------------------------------
    def complete_now(self, case_id: str, meta: Meta) -> dict[str, Any]:
        """Complete with whatever has arrived: missing departments stay missing.

        A department answering at the same moment is no reason to fail the reviewer:
        complete again on the fresh state (which may now be complete already).
        """
        for _ in range(CONFLICT_ATTEMPTS):
            v = self.get_verification(case_id)
            self._complete(v, meta)
            try:
                self.save(v)
                return v.assessment
            except IntegrityError:
                continue
        raise DecisionNotAllowed("the verification keeps changing; reload and retry")

    def decide(self, case_id: str, decision: str, reason: str, meta: Meta) -> dict[str, Any]:
        """Approve or refuse; the rules in force on the decision date decide, on the records
        as they stand (a standard raised since the check was completed applies)."""
        v = self.get_verification(case_id)
        v.check_decidable()  # before assessing: a decided or incomplete check is 409 at once
        now = self.clock.now()
        if decision == "approve":
            result = self._assess(v, now)
            v.decide(result, assessment_record(result), now, meta, reason)
        else:
            v.refuse(now, meta, reason)
        decided = v.pending_events[-1]
        self._save_or_conflict(v)
        return decision_view(decided)

    def _complete(self, v: Verification, meta: Meta) -> None:
        now = self.clock.now()
        v.complete(assessment_record(self._assess(v, now)), now, meta)

    def _assess(self, v: Verification, on: datetime) -> Assessment:
        """The assessment of the records received so far, by the policy in force on `on`."""
        return assess(v.application.household, v.records, self._policy(v.region_code, on), business_date(on))

    def _save_or_conflict(self, v: Verification) -> None:
        try:
            self.save(v)
        except IntegrityError as exc:
            # Someone else changed this verification meanwhile: decide again on fresh state.
            raise DecisionNotAllowed("the verification changed meanwhile; reload and retry") from exc

    # --- queries ------------------------------------------------------------
    def get_verification(self, case_id: str) -> Verification:
        return self.load(Verification.create_id(case_id), VerificationNotFound(case_id))


def decision_view(decided: Verification.Approved | Verification.Refused) -> dict[str, Any]:
    """What a decision answers: the BenefitApproved or BenefitRefused it publishes, without
    the sealed account number (the masked reference stays)."""
    data = dict(OUTBOUND(decided).data)
    data.pop("bank_account", None)
    return data


def verification_view(v: Verification) -> dict[str, Any]:
    return {
        "case_id": v.case_id,
        "verification_id": v.verification_id,
        "state": v.state,
        "region_code": v.region_code,
        "departments_requested": sorted(v.requests),
        "departments_answered": sorted(v.records),
        "departments_missing": sorted(v.departments_missing),
        "assessment": v.assessment,
        "benefit": dataclasses.asdict(v.benefit) if v.benefit else None,
        "refusal": dataclasses.asdict(v.refusal) if v.refusal else None,
        "version": v.version,
    }


def project(event: Any, tx: SideTx) -> None:
    """Read model: verifications by state, for the review group's work list."""
    if isinstance(event, Verification.Started):
        tx.put("verification", event.case_id, {
            "case_id": event.case_id, "state": "requested",
            "region_code": event.application.region_code,
        }, ref="requested")
    elif isinstance(event, (Verification.Completed, Verification.Approved, Verification.Refused)):
        doc = tx.get("verification", event.case_id)
        if doc is not None:
            doc["state"] = {
                Verification.Completed: "completed",
                Verification.Approved: "approved",
                Verification.Refused: "refused",
            }[type(event)]
            if isinstance(event, Verification.Completed):
                doc["outcome"] = event.assessment["outcome"]
            tx.put("verification", event.case_id, doc, ref=doc["state"])
