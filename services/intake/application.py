"""Intake use cases: register applications, raise referrals, follow the case."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import registry
from lifeline.stores.application import ServiceApplication
from lifeline.domain.aggregate import Meta, aggregate_id, new_id
from lifeline.stores.sidestore import SideTx
from lifeline.rules.periods import SHANGHAI
from services.intake.consumers import IntakeConsumers
from services.intake.domain import Case, Referral, later_status, mask_name


class CaseNotFound(LookupError):
    pass


class IntakeApplication(IntakeConsumers, ServiceApplication):
    name = "intake"
    service = "intake"

    # --- commands --------------------------------------------------------
    def submit_application(
        self, application: dict[str, Any], meta: Meta, case_id: str | None = None
    ) -> str:
        case_id = case_id or new_id("C")
        data = {
            "case_id": case_id,
            "submitted_at": datetime.now(SHANGHAI).isoformat(),
            "clerk_id": meta.user_id,
            **application,
        }
        # Refuse here what the relay could not publish: nothing invalid is stored.
        registry.validate_data("ApplicationSubmitted", data)
        case = Case._create(
            Case.Submitted, id=aggregate_id("case", case_id), case_id=case_id,
            application=data, meta=meta.as_dict(),
        )
        self.save_new(case, case_id)
        return case_id

    def raise_referral(
        self, case_id: str, request: dict[str, Any], meta: Meta, referral_id: str | None = None
    ) -> str:
        case = self.get_case(case_id)
        referral_id = referral_id or new_id("R")
        applicant = next(m for m in case.application["members"] if m["relation"] == "self")
        details = {
            **request,
            "due_date": request["due_date"].isoformat()
            if isinstance(request.get("due_date"), date)
            else request["due_date"],
            "household_profile": {
                "region_code": case.region_code,
                "members_count": len(case.application["members"]),
                "name_masked": mask_name(applicant["name"]),
                "assistance_type": case.application.get("assistance_type"),
            },
            "raised_at": datetime.now(SHANGHAI).isoformat(),
        }
        registry.validate_data(
            "ReferralRaised", {"referral_id": referral_id, "case_id": case_id, **details}
        )
        referral = Referral._create(
            Referral.Raised, id=aggregate_id("referral", referral_id),
            referral_id=referral_id, case_id=case_id, details=details, meta=meta.as_dict(),
        )
        self.save_new(referral, referral_id)
        return referral_id

    # --- effects of consumed events ---------------------------------------
    def note_verification(
        self, case_id: str, outcome: str, per_capita_income_fen: int, meta: Meta,
        processing_event: ProcessingEvent,
    ) -> None:
        case = self.get_case(case_id)
        case.note_verification(outcome, per_capita_income_fen, meta.as_dict())
        processing_event.collect_events(case)

    def note_decision(
        self, case_id: str, decision: str, benefit_id: str, reason: str, meta: Meta,
        processing_event: ProcessingEvent,
    ) -> None:
        case = self.get_case(case_id)
        case.note_decision(decision, benefit_id, reason, meta.as_dict())
        processing_event.collect_events(case)

    # --- queries ------------------------------------------------------------
    def get_case(self, case_id: str) -> Case:
        return self.load(aggregate_id("case", case_id), CaseNotFound(case_id))


def case_view(case: Case) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "status": case.status,
        "region_code": case.region_code,
        "assistance_type": case.application["assistance_type"],
        "channel": case.application["channel"],
        "members_count": len(case.application["members"]),
        "urgency": case.application["urgency"],
        "clerk_id": case.application["clerk_id"],
        "submitted_at": case.application["submitted_at"],
        "verification_outcome": case.verification_outcome,
        "per_capita_income_fen": case.per_capita_income_fen,
        "benefit_id": case.benefit_id,
        "decision_reason": case.decision_reason,
        "version": case.version,
    }


def project(event: Any, tx: SideTx) -> None:
    """Read models: cases by region (for listing) and referrals by case."""
    if isinstance(event, Case.Submitted):
        app = event.application
        tx.put("case", event.case_id, {
            "case_id": event.case_id, "status": "submitted", "region_code": app["region_code"],
            "assistance_type": app["assistance_type"], "submitted_at": app["submitted_at"],
        }, ref=app["region_code"])
    elif isinstance(event, (Case.VerificationNoted, Case.BenefitDecided)):
        doc = tx.get("case", event.case_id)
        if doc is not None:
            if isinstance(event, Case.VerificationNoted):
                doc["verification_outcome"] = event.outcome
                doc["status"] = later_status(doc["status"], "verified")
            else:
                doc["status"] = later_status(doc["status"], event.decision)
            tx.put("case", doc["case_id"], doc, ref=doc["region_code"])
    elif isinstance(event, Referral.Raised):
        tx.put("referral", event.referral_id, {
            "referral_id": event.referral_id, "case_id": event.case_id,
            "target": event.details["target"], "need_category": event.details["need_category"],
            "due_date": event.details["due_date"], "status": "raised",
        }, ref=event.case_id)
