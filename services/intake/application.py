"""Intake use cases: register applications, decide acceptance, raise referrals, follow the case."""

from __future__ import annotations

import dataclasses
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import Meta, new_id
from lifeline.domain.clock import Clock
from lifeline.domain.values import Application, mask_name
from lifeline.rules.policy import PolicyHolder, shipped_policy_book
from lifeline.stores.groupcommit import GroupCommit
from lifeline.stores.application import DuplicateRequest, ServiceApplication
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideTx
from services.intake.consumers import HANDLERS
from services.intake.domain import (
    AcceptanceNotAllowed,
    AcceptanceRuleBroken,
    Case,
    Referral,
    later_status,
)
from services.intake.outbound import OUTBOUND
from services.intake import persons
from services.intake import outreach
from services.intake.discovery import RiskRules


class CaseNotFound(LookupError):
    pass


class IntakeApplication(outreach.Outreach, ServiceApplication):
    name = "intake"
    service = "intake"
    handlers = HANDLERS
    outbound = OUTBOUND

    def __init__(self, env=None, *, clock: Clock | None = None, sealer: Sealer,
                 policies: PolicyHolder | None = None, risk_rules: RiskRules | None = None,
                 clock_days: dict[str, int] | None = None):
        super().__init__(env, clock=clock)
        self.sealer = sealer
        # Dynamic monitoring's rules (monitoring.py) and intake's own clocks' lengths in working
        # days (discovery_contact, referral; the clocks' defaults otherwise): outreach.py.
        if risk_rules is None:
            from services.intake.monitoring import shipped_risk_rules
            risk_rules = shipped_risk_rules()
        self.risk_rules = risk_rules
        self.clock_days = dict(clock_days or {})
        # The county policies: the emergency-relief caps and post-approval period (relief.py).
        self.policies = policies or PolicyHolder(shipped_policy_book())
        self.group_commit = GroupCommit(self)

    def save(self, *aggregates: Any, **kwargs: Any) -> list[Any]:
        """Saved in one transaction with the other requests' saves of the moment (groupcommit.py)."""
        return self.group_commit.save(*aggregates)

    # --- commands --------------------------------------------------------
    def submit_application(self, form: dict[str, Any], meta: Meta, case_id: str | None = None) -> str:
        """Register an application as the clerk took it (the API's validated body). Made from a
        discovery report (`discovery_report_id`), it takes the case id the report reserved."""
        return self._register(form, meta, case_id)[0]

    def register_application(self, form: dict[str, Any], meta: Meta,
                             case_id: str | None = None) -> tuple[str, str]:
        """`submit_application`, answering (case id, status: submitted | suspected_duplicate); a
        repeated request (DuplicateRequest) answers the case's status as stored."""
        try:
            return self._register(form, meta, case_id)
        except DuplicateRequest as dup:
            return str(dup), self.get_case(str(dup)).status

    def _register(self, form: dict[str, Any], meta: Meta, case_id: str | None) -> tuple[str, str]:
        form, report = self.discovery_report_for(form)  # outreach.py
        case_id = report.case_id if report is not None else case_id or new_id("C")
        account = form["bank_account"]
        sealed = self.sealer.account(account["channel"], account["account_number"], account["account_name"])
        phone = form.pop("contact_phone", None)
        contact = dataclasses.asdict(self.sealer.contact(phone)) if phone else None
        # The form is the payload less what intake adds: one mapping (from_wire) builds both.
        application = Application.from_wire({
            **form, "case_id": case_id, "clerk_id": meta.user_id,
            "submitted_at": self.clock.now().isoformat(), "bank_account": dataclasses.asdict(sealed),
            "contact": contact,
        })
        # With its people's index entries, in one transaction; held when one is a suspected
        # duplicate (persons.py).
        def register() -> Case:
            return persons.register_case(self, lambda: Case.register(application, meta), meta)

        # Once per report, the report applied right after (outreach.py).
        case = register() if report is None else self.register_from_report(report, register, meta)
        return case_id, case.status

    def decide_acceptance(
        self, case_id: str, decision: str, reason: str, missing_materials: list[str] | None, meta: Meta,
        _retried: bool = False,
    ) -> dict[str, Any]:
        """受理 (accept), 不予受理 (refuse) or 补正材料 (request_materials, with what is missing).

        AcceptanceNotAllowed (409) when acceptance was decided already or the case changed
        meanwhile; AcceptanceRuleBroken (422) when the request breaks a rule. Nothing is
        saved then."""
        case = self.get_case(case_id)
        at = self.clock.now().isoformat()
        if decision == "request_materials":
            case.request_materials(list(missing_materials or ()), reason, at, meta)
        elif missing_materials:
            raise AcceptanceRuleBroken(
                "missing_materials_with_request_only",
                "missing_materials is sent only with the decision request_materials",
            )
        elif decision == "accept":
            case.accept(reason, at, meta)
        elif decision == "refuse":
            case.refuse_acceptance(reason, at, meta)
        else:
            raise ValueError(f"unknown acceptance decision {decision!r}")
        decided = case.pending_events[-1]
        # 不予受理 releases the case's people from the person index, in the same transaction.
        released = persons.release(self, case, "not_accepted", meta) if decision == "refuse" else []
        try:
            self.save(case, *released)
        except IntegrityError as exc:
            if released and self.get_case(case_id).version == case.version - 1 and not _retried:
                # Only a person changed meanwhile (another application named them): again.
                return self.decide_acceptance(case_id, decision, reason, missing_materials, meta, _retried=True)
            # Someone else decided on this case meanwhile: decide again on the fresh state.
            raise AcceptanceNotAllowed(
                "changed_meanwhile", "the case changed meanwhile; reload and retry"
            ) from exc
        return {
            "case_id": case.case_id, "decision": decision, "status": case.status,
            "accepted_at": case.accepted_at, "missing_materials": list(case.missing_materials),
            "repeat": isinstance(decided, Case.MaterialsRequested) and decided.repeat, "version": case.version,
        }

    def raise_referral(
        self, case_id: str, request: dict[str, Any], meta: Meta, referral_id: str | None = None
    ) -> str:
        case = self.get_case(case_id)
        referral_id = referral_id or new_id("R")
        now = self.clock.now()
        # The clerk's due date, or the referral clock's; the clock runs from now (outreach.py).
        due = self.referral_due(request.get("due_date"), now)
        referral = Referral.raise_for(
            case, referral_id, request["target"], request["need_category"],
            request["amount_asked_fen"], request["urgency"],
            due.due_date.isoformat() if due.due_date else "", request["consent_to_share"],
            now.isoformat(), meta,
        )
        self.follow_up_referral(referral, case, due, now, meta)
        self.save_new(referral, referral_id)
        return referral_id

    # --- effects of consumed events ---------------------------------------
    def note_verification(
        self, case_id: str, outcome: str, per_capita_income_fen: int, meta: Meta, pe: ProcessingEvent,
    ) -> None:
        case = self.get_case(case_id)
        case.note_verification(outcome, per_capita_income_fen, meta)
        pe.collect_events(case)

    def note_decision(
        self, case_id: str, decision: str, benefit_id: str, reason: str, meta: Meta, pe: ProcessingEvent,
    ) -> None:
        case = self.get_case(case_id)
        case.note_decision(decision, benefit_id, reason, meta)
        pe.collect_events(case)

    # --- queries ------------------------------------------------------------
    def get_case(self, case_id: str) -> Case:
        return self.load(Case.create_id(case_id), CaseNotFound(case_id))


def case_view(case: Case) -> dict[str, Any]:
    app = case.application
    return {
        "case_id": case.case_id,
        "status": case.status,
        "region_code": case.region_code,
        "assistance_type": app.assistance_type,
        "channel": app.channel,
        "members_count": len(app.household.members),
        "urgency": app.urgency,
        "clerk_id": app.clerk_id,
        "submitted_at": app.submitted_at,
        "accepted_at": case.accepted_at,
        "missing_materials": list(case.missing_materials),
        "duplicate_of": list(case.duplicate_of),
        "bank_account_ref": app.bank_account_ref,
        "verification_outcome": case.verification_outcome,
        "per_capita_income_fen": case.per_capita_income_fen,
        "benefit_id": case.benefit_id,
        "decision_reason": case.decision_reason,
        "version": case.version,
    }


def project(event: Any, tx: SideTx) -> None:
    """Read models: cases by region (for listing: GET /v1/cases) and referrals by case."""
    if isinstance(event, Case.Submitted):
        app = event.application
        # The applicant's name masked as the acceptance events carry it (张*丰): a list shows no more.
        tx.put("case", event.case_id, {
            "case_id": event.case_id, "status": "submitted", "region_code": app.region_code,
            "assistance_type": app.assistance_type, "submitted_at": app.submitted_at,
            "applicant_name_masked": mask_name(app.household.applicant.name),
            "members_count": len(app.household.members), "urgency": app.urgency,
        }, ref=app.region_code)
    elif isinstance(event, (Case.VerificationNoted, Case.BenefitDecided)):
        doc = tx.get("case", event.case_id)
        if doc is not None:
            if isinstance(event, Case.VerificationNoted):
                doc["verification_outcome"] = event.outcome
                doc["status"] = later_status(doc["status"], "verified")
            else:
                doc["status"] = later_status(doc["status"], event.decision)
            tx.put("case", doc["case_id"], doc, ref=doc["region_code"])
    elif isinstance(event, (Case.Accepted, Case.AcceptanceRefused, Case.MaterialsRequested)):
        # Documents of cases without an acceptance decision keep their shape.
        doc = tx.get("case", event.case_id)
        if doc is not None:
            if isinstance(event, Case.Accepted):
                doc["status"] = later_status(doc["status"], "accepted")
                doc["accepted_at"] = event.accepted_at
                doc["missing_materials"] = []
            elif isinstance(event, Case.AcceptanceRefused):
                doc["status"] = later_status(doc["status"], "not_accepted")
                doc["missing_materials"] = []
            else:
                doc["status"] = later_status(doc["status"], "materials_requested")
                doc["missing_materials"] = list(event.missing_materials)
            tx.put("case", doc["case_id"], doc, ref=doc["region_code"])
    elif isinstance(event, (Case.DuplicateSuspected, Case.DuplicateDecided)):
        doc = tx.get("case", event.case_id)
        if doc is not None:  # held, then released (submitted again) or withdrawn
            doc["status"] = "suspected_duplicate" if isinstance(event, Case.DuplicateSuspected) else (
                "submitted" if event.decision == "proceed" else "withdrawn")
            tx.put("case", doc["case_id"], doc, ref=doc["region_code"])
    elif isinstance(event, Referral.Raised):
        tx.put("referral", event.referral_id, {
            "referral_id": event.referral_id, "case_id": event.case_id, "target": event.target,
            "need_category": event.need_category, "due_date": event.due_date, "status": "raised",
        }, ref=event.case_id)
    # Discovery reports, the discovered case, referrals followed up (issue 11).
    outreach.project(event, tx)
