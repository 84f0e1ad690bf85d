"""Verification use cases: request records, assess, decide."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime
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
from services.verification.domain import DecisionNotAllowed, ProcedureError, Verification
from services.verification.filings import filing_reasons, project_filing, register_entries
from services.verification.outbound import OUTBOUND
from lifeline.rules.policy import CountyPolicy, PolicyHolder, shipped_policy_book

__all__ = ["VerificationApplication", "VerificationNotFound", "DecisionNotAllowed", "ProcedureError", "project"]


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
    def open_verification(self, application: Application, meta: Meta, pe: ProcessingEvent) -> None:
        if self.exists(Verification.create_id(application.case_id)):
            return  # the same application seen through another path: one procedure per case
        pe.collect_events(Verification.open(application, new_id("V"), meta))

    def accept(self, case_id: str, accepted_at: datetime, meta: Meta, pe: ProcessingEvent) -> None:
        """Intake accepted: ask the departments and start the procedure's clocks."""
        v = self.get_verification(case_id)
        if not v.accept(accepted_at, meta, dict(self._policy(v.region_code, accepted_at).clock_days)):
            return
        now = self.clock.now()
        self._request_records(v, now, meta)
        v.start_clocks(accepted_at, now, meta)
        self._check_filing(v, now, meta)
        pe.collect_events(v)

    def not_accepted(self, case_id: str, reason: str, meta: Meta, pe: ProcessingEvent) -> None:
        v = self.get_verification(case_id)
        if v.not_accepted(reason, meta):
            pe.collect_events(v)

    def raise_objection(self, objection: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        v = self.get_verification(objection["case_id"])
        if v.raise_objection(
            objection["objection_id"], objection["public_notice_id"], objection["text"],
            objection.get("contact"), datetime.fromisoformat(objection["received_at"]),
            self.clock.now(), meta,
        ):
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
        return self._step(case_id, lambda v, now: self._complete(v, meta)).assessment

    def record_survey(self, case_id: str, surveyors: list[dict[str, str]], visited_on: date,
                      findings: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.record_survey(surveyors, visited_on, findings, now, meta))

    def propose(self, case_id: str, proposal: str, reason: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.propose(proposal, reason, now, meta))

    def post_notice(self, case_id: str, meta: Meta) -> Verification:
        def post(v: Verification, now: datetime) -> None:
            # A decision taken again (after a grievance) is noticed again, as a new board entry.
            again = f"-{len(v.decisions) + 1}" if v.decisions else ""
            v.post_notice("P-" + v.verification_id.split("-", 1)[-1] + again, now, meta)

        return self._step(case_id, post)

    def raise_grievance(self, case_id: str, grievance_id: str, against: str, text: str, channel: str,
                        objection_id: str | None, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.raise_grievance(
            grievance_id, against, text, channel, objection_id, now, meta))

    def decide_grievance(self, case_id: str, grievance_id: str, outcome: str, reason: str,
                         evidence: str | None, meta: Meta) -> Verification:
        def decide(v: Verification, now: datetime) -> None:
            v.decide_grievance(grievance_id, outcome, reason, evidence, now, meta)
            if v.state == "requested":  # new evidence: the departments are asked again
                self._request_records(v, now, meta)

        return self._step(case_id, decide)

    def _check_filing(self, v: Verification, now: datetime, meta: Meta) -> None:
        """备案: members declared as cadres or close relatives, or found in the county's register."""
        register = register_entries(self, county_of(v.region_code))
        v.flag_filing(filing_reasons(v.application.household.members, register), now, meta)

    def _request_records(self, v: Verification, now: datetime, meta: Meta) -> None:
        policy = self._policy(v.region_code, now)
        # The department's answer is due when the report is (3-5 working days).
        due = clocks.verification_report_due(now).due_at
        for department in policy.departments_for(v.application.assistance_type):
            v.request(department, new_id("Q"), now, due, meta)

    def hold_appraisal(self, case_id: str, held_on: date, participants: int, votes_for: int,
                       votes_against: int, abstentions: int, opinion: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.hold_appraisal(
            held_on, participants, votes_for, votes_against, abstentions, opinion, now, meta))

    def declare_major_dispute(self, case_id: str, reason: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.declare_major_dispute(reason, now, meta))

    def change_benefit(self, case_id: str, change: str, from_period: str, monthly_amount_fen: int | None,
                       reason: str, meta: Meta) -> dict[str, Any]:
        """Adjust, suspend, resume or terminate the approved monthly benefit from a period on
        (动态管理); answers the change as it now stands (benefit_change_view)."""
        v = self._step(case_id, lambda v, now: v.change_benefit(
            change, from_period, monthly_amount_fen, reason, now, meta))
        return benefit_change_view(v)

    def _step(self, case_id: str, action: Callable[[Verification, datetime], None]) -> Verification:
        """One step of the procedure by a person: taken on the current state and saved whole,
        or refused whole. A consumer writing the same case meanwhile (a department's answer)
        is no reason to fail the person: the step is taken again on the fresh state, where
        its rules are checked again."""
        for _ in range(CONFLICT_ATTEMPTS):
            v = self.get_verification(case_id)
            action(v, self.clock.now())
            try:
                self.save(v)
                return v
            except IntegrityError:
                continue
        raise DecisionNotAllowed("the verification keeps changing; reload and retry")

    def decide(self, case_id: str, decision: str, reason: str, meta: Meta) -> dict[str, Any]:
        """Approve or refuse; the rules in force on the decision date decide, on the records
        as they stand (a standard raised since the check was completed applies)."""
        decided: list[Verification.Approved | Verification.Refused] = []

        def take(v: Verification, now: datetime) -> None:
            v.check_decidable(now, meta)  # before assessing: a step missing is refused at once
            self._check_filing(v, now, meta)  # the register may have been loaded since acceptance
            result = self._assess(v, now)
            if decision == "approve":
                v.decide(result, assessment_record(result), now, meta, reason)
            else:
                v.refuse(now, meta, reason, assessment_record(result))
            decided[:] = [v.pending_events[-1]]  # the decision is the last event it triggers

        self._step(case_id, take)
        return decision_view(decided[0])

    def _complete(self, v: Verification, meta: Meta) -> None:
        now = self.clock.now()
        v.complete(assessment_record(self._assess(v, now)), now, meta)

    def _assess(self, v: Verification, on: datetime) -> Assessment:
        """The assessment of the records received so far (or, when a grievance re-opened the
        decision on the original evidence, of the records as they stood then: the verification
        replayed to that version), by the policy in force on `on`."""
        records = v.records
        if v.evidence_version is not None:
            records = self.repository.get(v.id, version=v.evidence_version).records
        return assess(v.application.household, records, self._policy(v.region_code, on), business_date(on))

    # --- queries ------------------------------------------------------------
    def get_verification(self, case_id: str) -> Verification:
        return self.load(Verification.create_id(case_id), VerificationNotFound(case_id))


def decision_view(decided: Verification.Approved | Verification.Refused) -> dict[str, Any]:
    """What a decision answers: the BenefitApproved or BenefitRefused it publishes, without
    the sealed account number (the masked reference stays)."""
    data = dict(OUTBOUND(decided).data)
    data.pop("bank_account", None)
    return data


def benefit_change_view(v: Verification) -> dict[str, Any]:
    """What a benefit change answers: the latest change, with the status and the monthly
    amount in force from its period on."""
    last = v.benefit_changes[-1]
    return {
        "case_id": v.case_id, "benefit_id": v.benefit.benefit_id, "change": last.change,
        "from_period": last.from_period, "status": last.status,
        "monthly_amount_fen": last.monthly_amount_fen,
    }


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if value is not None else None


def verification_view(v: Verification) -> dict[str, Any]:
    missing = v.missing_step
    deadlines = [dataclasses.asdict(d) for d in sorted(v.deadlines.values(), key=lambda d: (d.due_at, d.deadline_id))]
    return {
        "case_id": v.case_id,
        "verification_id": v.verification_id,
        "state": v.state,
        "region_code": v.region_code,
        "accepted_at": v.accepted_at,
        "next_step": {"step": missing[0], "message": missing[1]} if missing else None,
        "survey": _plain(v.survey),
        "initial_review": _plain(v.proposal),
        "public_notice": _plain(v.notice),
        "objections": [dataclasses.asdict(o) for o in v.objections],
        "appraisals": [dataclasses.asdict(a) for a in v.appraisals],
        "major_dispute": _plain(v.major_dispute),
        "deadlines": deadlines,
        # A year whose holiday arrangement is unknown: counted on weekdays, and said so.
        "calendar_warnings": sorted({w for d in deadlines for w in d["warnings"]}),
        "filing": v.filing,
        "decisions": [dataclasses.asdict(d) for d in v.decisions],
        "grievances": grievances_view(v),
        "departments_requested": sorted(v.requests),
        "departments_answered": sorted(v.records),
        "departments_missing": sorted(v.departments_missing),
        "assessment": v.assessment,
        "benefit": _plain(v.benefit),
        # After approval (a monthly benefit): where it stands, the amount in force, every change.
        "benefit_status": v.benefit_status,
        "current_monthly_amount_fen": v.current_monthly_amount_fen,
        "benefit_changes": [dataclasses.asdict(c) for c in v.benefit_changes],
        "refusal": _plain(v.refusal),
        "version": v.version,
    }


def grievances_view(v: Verification) -> list[dict[str, Any]]:
    return [dataclasses.asdict(g) for g in v.grievances.values()]


def project(event: Any, tx: SideTx) -> None:
    """Read models: verifications by state, for the review group's work list (an approved monthly
    benefit with its status and the monthly amount in force); grievances by id; cases flagged
    for filing (备案) and the cadre registers' sizes (filings.project_filing)."""
    if project_filing(event, tx):
        return
    if isinstance(event, Verification.Started):
        tx.put("verification", event.case_id, {
            "case_id": event.case_id, "state": "awaiting_acceptance",
            "region_code": event.application.region_code,
        }, ref="awaiting_acceptance")
    elif isinstance(event, Verification.GrievanceRaised):
        doc = tx.get("verification", event.case_id) or {}
        tx.put("grievance", event.grievance_id, {
            "grievance_id": event.grievance_id, "case_id": event.case_id,
            "region_code": doc.get("region_code", ""), "state": "open",
        }, ref=event.case_id)
    elif isinstance(event, Verification.GrievanceDecided):
        doc = tx.get("grievance", event.grievance_id)
        if doc is not None:
            tx.put("grievance", event.grievance_id, {**doc, "state": "decided"}, ref=event.case_id)
    elif isinstance(event, Verification.BenefitChanged):
        doc = tx.get("verification", event.case_id)
        if doc is not None:
            doc["benefit_status"] = event.status or doc.get("benefit_status")
            if isinstance(event, Verification.BenefitAdjusted):
                doc["monthly_amount_fen"] = event.monthly_amount_fen
            tx.put("verification", event.case_id, doc, ref=doc["state"])
    elif isinstance(event, (Verification.Accepted, Verification.NotAccepted, Verification.Completed,
                            Verification.Approved, Verification.Refused, Verification.Reopened)):
        doc = tx.get("verification", event.case_id)
        if doc is not None:
            doc["state"] = {
                Verification.Accepted: "requested",
                Verification.NotAccepted: "not_accepted",
                Verification.Reopened: "completed" if getattr(event, "evidence", "") == "original" else "requested",
                Verification.Completed: "completed",
                Verification.Approved: "approved",
                Verification.Refused: "refused",
            }[type(event)]
            if isinstance(event, Verification.Completed):
                doc["outcome"] = event.assessment["outcome"]
            if isinstance(event, Verification.Approved) and event.benefit.kind == "monthly":
                doc["benefit_status"], doc["monthly_amount_fen"] = "paying", event.benefit.monthly_amount_fen
            if isinstance(event, Verification.Reopened):
                doc.pop("benefit_status", None)
                doc.pop("monthly_amount_fen", None)
            tx.put("verification", event.case_id, doc, ref=doc["state"])
