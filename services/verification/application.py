"""Verification use cases: request records, assess, decide."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.contracts import registry
from lifeline.stores.application import ServiceApplication
from lifeline.domain.aggregate import Meta, aggregate_id, new_id
from lifeline.stores.sidestore import SideTx
from lifeline.rules import clocks
from lifeline.rules.periods import SHANGHAI, business_date, first_payment_period
from lifeline.rules.regions import county_of
from services.verification.assessment import DepartmentRecord, Household, Member, assess
from services.verification.consumers import VerificationConsumers
from services.verification.domain import DecisionNotAllowed, Verification
from services.verification.policy import PolicyHolder, default_policy_book

__all__ = ["VerificationApplication", "VerificationNotFound", "DecisionNotAllowed", "project"]


# How often a reviewer's command is tried again when a consumer wrote the same check meanwhile.
CONFLICT_ATTEMPTS = 3


class VerificationNotFound(LookupError):
    pass


def household_of(application: dict[str, Any]) -> Household:
    members = [
        Member(
            id_number=m["id_number"], name=m["name"], relation=m["relation"],
            disability_grade=m.get("disability_grade"), disability_kind=m.get("disability_kind"),
            serious_illness=bool(m.get("serious_illness")), work_ability=m.get("work_ability", "full"),
        )
        for m in application["members"]
    ]
    return Household(
        members=members,
        area=application["area"],
        region_code=application["region_code"],
        assistance_type=application["assistance_type"],
        declared_monthly_income_fen=application["declared_monthly_income_fen"],
        declared_assets_fen=application["declared_assets_fen"],
    )


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


class VerificationApplication(VerificationConsumers, ServiceApplication):
    name = "verification"
    service = "verification"

    def __init__(self, env=None):
        super().__init__(env)
        self.policies = PolicyHolder(default_policy_book())

    def _policy(self, application: dict[str, Any], on: datetime):
        return self.policies.book.policy_for(county_of(application["region_code"]), business_date(on))

    # --- effects of consumed events ---------------------------------------
    def start_verification(self, application: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        case_id = application["case_id"]
        if self.exists(aggregate_id("verification", case_id)):
            return  # the same application seen through another path: one check per case
        now = datetime.now(SHANGHAI)
        policy = self._policy(application, now)
        v = Verification._create(
            Verification.Started, id=aggregate_id("verification", case_id),
            verification_id=new_id("V"), case_id=case_id, application=application,
            meta=meta.as_dict(),
        )
        due = clocks.verification_request_due(now).due_at.isoformat()
        for department in policy.mandatory_departments:
            v.request(department, new_id("Q"), now.isoformat(), due, meta.as_dict())
        pe.collect_events(v)

    def receive_records(self, report: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        v = self.get_verification(report["case_id"])
        if not v.receive(report["department"], report["request_id"], report["members"], report["reported_at"], meta.as_dict()):
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
        v = self.get_verification(case_id)
        now = datetime.now(SHANGHAI)
        if decision == "approve":
            # The rules in force on the decision date decide, on the records as they stand
            # (a standard raised since the check was completed applies).
            a = self._assess(v, now) if v.state == "completed" else {}
            if v.state == "completed" and a["outcome"] == "ineligible":
                raise DecisionNotAllowed("the check found the household ineligible; refuse or re-check")
            if v.state == "completed" and not a.get("monthly_amount_fen"):
                # needs_appraisal (e.g. a department missing) has no amount yet:
                # nothing could be paid, so there is nothing to approve.
                raise DecisionNotAllowed("the check recommends no amount yet; appraise or re-check first")
            benefit = {
                "case_id": case_id, "benefit_id": new_id("B"), "verification_id": v.verification_id,
                "household": {
                    "members_count": len(v.application["members"]),
                    "region_code": v.region_code, "area": v.application["area"],
                },
                "benefit_type": a.get("recommended_assistance_type") or v.application["assistance_type"],
                "tier": a.get("tier"),
                "monthly_amount_fen": a.get("monthly_amount_fen", 0),
                "one_off_amount_fen": None,
                "first_period": first_payment_period(now),
                "bank_account_ref": v.application["bank_account_ref"],
                "approving_body": meta.org_code or f"{v.region_code[:9]} 乡镇审核确认小组",
                "approval_level": a.get("detail", {}).get("approval_level") or "township",
                "reason": reason,
                "approved_at": now.isoformat(),
            }
            registry.validate_data("BenefitApproved", benefit)
            v.approve(benefit, meta.as_dict(), assessment=a)
        else:
            refusal = {
                "case_id": case_id, "verification_id": v.verification_id,
                "region_code": v.region_code, "reason": reason,
                "refusing_body": meta.org_code or f"{v.region_code[:9]} 乡镇审核确认小组",
                "refused_at": now.isoformat(),
            }
            registry.validate_data("BenefitRefused", refusal)
            v.refuse(refusal, meta.as_dict())
        self._save_or_conflict(v)
        return v.benefit if decision == "approve" else v.refusal

    def _complete(self, v: Verification, meta: Meta) -> None:
        now = datetime.now(SHANGHAI)
        v.complete(self._assess(v, now), now.isoformat(), meta.as_dict())

    def _assess(self, v: Verification, on: datetime) -> dict[str, Any]:
        """The assessment of the records received so far, by the policy in force on `on`."""
        records = {
            dept: DepartmentRecord(department=dept, members=rec["members"])
            for dept, rec in v.records.items()
        }
        result = assess(household_of(v.application), records, self._policy(v.application, on), business_date(on))
        return assessment_record(result)

    def _save_or_conflict(self, v: Verification) -> None:
        try:
            self.save(v)
        except IntegrityError as exc:
            # Someone else changed this verification meanwhile: decide again on fresh state.
            raise DecisionNotAllowed("the verification changed meanwhile; reload and retry") from exc

    # --- queries ------------------------------------------------------------
    def get_verification(self, case_id: str) -> Verification:
        return self.load(aggregate_id("verification", case_id), VerificationNotFound(case_id))


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
        "benefit": v.benefit,
        "refusal": v.refusal,
        "version": v.version,
    }


def project(event: Any, tx: SideTx) -> None:
    """Read model: verifications by state, for the review group's work list."""
    if isinstance(event, Verification.Started):
        tx.put("verification", event.case_id, {
            "case_id": event.case_id, "state": "requested",
            "region_code": event.application["region_code"],
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
