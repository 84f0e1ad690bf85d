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
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideTx
from services.verification.assessment import Assessment, assess
from services.verification.consumers import HANDLERS
from services.verification.domain import DecisionNotAllowed, ProcedureError, RuleBroken, Verification
from services.verification import county_filings
from services.verification.filings import filing_reasons, project_filing, register_entries
from services.verification.services_in_kind import project_services
from services.verification import care
from services.verification.care import project_care
from services.verification.queue import project_procedure
from services.verification.outbound import OUTBOUND
from lifeline.domain.people import Person, fingerprint
from services.verification.review import (
    grace_months_range, household_review_cycle, next_review_date, pensioners, review_outcome,
)
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

    def __init__(self, env=None, *, clock: Clock | None = None, policies: PolicyHolder | None = None,
                 sealer: Sealer | None = None):
        super().__init__(env, clock=clock)
        self.policies = policies or PolicyHolder(shipped_policy_book())
        # Its secret keys the fingerprints of the people index (people.py); none in tests.
        self.sealer = sealer

    def _record(self, processing_event: ProcessingEvent) -> Any:
        # 镇→县备案 (county_filings.py): each township inclusion or exit about to be stored is filed
        # with the county in the same transaction, whichever command or consumed event decided it.
        processing_event.collect_events(*county_filings.filings_for(processing_event.events,
                                                                     processing_event.aggregates))
        # 特困 support ends with its benefit: the visit clock is cancelled (care.py).
        processing_event.collect_events(*care.ended_with_benefit(self, processing_event.events))
        return super()._record(processing_event)

    def _policy(self, region_code: str, on: datetime) -> CountyPolicy:
        return self.policies.book.policy_for(county_of(region_code), business_date(on))

    # --- effects of consumed events ---------------------------------------
    def open_verification(self, application: Application, meta: Meta, pe: ProcessingEvent) -> None:
        if self.exists(Verification.create_id(application.case_id)):
            return  # the same application seen through another path: one procedure per case
        pe.collect_events(Verification.open(application, new_id("V"), meta),
                          *self._index_people(application, meta))

    def _fingerprint(self, id_number: str) -> str:
        return fingerprint(self.sealer.secret if self.sealer is not None else "", id_number, "verification-person")

    def _index_people(self, application: Application, meta: Meta) -> list[Person]:
        """Each person the application names, linked to the case by a keyed fingerprint."""
        people = []
        for member in application.household.members:
            person = self._fingerprint(member.id_number)
            found = self.load_or_create(Person.create_id(person), lambda: Person.register(person, meta))
            if found.link(application.case_id, meta):
                people.append(found)
        return people

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
        if v.waits_for_review(report["department"], report["request_id"]):
            if v.receive_for_review(report["department"], report["request_id"], report["members"],
                                    report["reported_at"], meta):
                if not v.review_departments_missing:
                    self._complete_review(v, meta)
                pe.collect_events(v)
            return
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

    # --- after approval (issue 11): reviews, deaths, fraud ------------------------------------
    def start_review(self, case_id: str, grace_reason: str | None, grace_months: int | None, reason: str,
                     meta: Meta) -> Verification:
        """复核: the departments are asked again (VerificationRequested, new request ids); the
        review completes when the last one answers (`_complete_review`)."""
        review_id = new_id("RV")

        def start(v: Verification, now: datetime) -> None:
            policy = self._policy(v.region_code, now)
            if grace_months is not None and grace_reason is not None:
                lo, hi = grace_months_range(grace_reason, policy)
                if not lo <= grace_months <= hi:
                    raise RuleBroken(f"grace_months for {grace_reason} is {lo}" + (f" to {hi}" if hi != lo else "")
                                     + " months by the county's policy", "grace_months")
            requests = [(d, new_id("Q")) for d in policy.departments_for(v.application.assistance_type)]
            v.start_review(review_id, grace_reason, grace_months, reason, requests,
                           clocks.verification_report_due(now).due_at, now, meta)

        return self._step(case_id, start)

    def suspend_unreachable(self, case_id: str, reason: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.suspend_unreachable(reason, now, meta))

    def _complete_review(self, v: Verification, meta: Meta) -> None:
        """Assess the living household on the review's records by the rules in force now, and
        end the review in what that means (review.review_outcome)."""
        now = self.clock.now()
        day = business_date(now)
        policy = self._policy(v.region_code, now)
        household, records, review = v.living_household, dict(v.review_records), v.open_review
        result = assess(household, records, policy, day)
        options = dict(current_amount_fen=v.current_monthly_amount_fen or 0,
                       standard_fen=policy.standard_for(household.area), decided_at=now, policy=policy,
                       grace_reason=review.grace_reason, grace_months=review.grace_months,
                       pensioner=bool(pensioners(household, records, day)))
        try:
            outcome = review_outcome(result, **options)
        except ValueError:  # the policy's range changed since the review started: its default
            outcome = review_outcome(result, **{**options, "grace_months": None})
        cycle = household_review_cycle(household, records, policy)
        goes_on = outcome.outcome in ("no_change", "adjusted")
        next_date = next_review_date(day, cycle, result.earnings_exempt_until) if goes_on else None
        v.complete_review(assessment_record(result), outcome, next_date, cycle.months, now, meta)

    def record_death(self, death: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """DeathReported → each approved household naming the person (found by fingerprint, then
        matched by ID number) is re-assessed without them: a new amount from the month after the
        death, or the end of the benefit. Each death once (its record id, and its member)."""
        ident = Person.create_id(self._fingerprint(death["id_number"]))
        if not self.exists(ident):
            return  # nobody verification knows
        now = self.clock.now()
        for case_id in self.repository.get(ident).cases:
            v = self.get_verification(case_id)
            index = v.member_index(death["id_number"])
            if index is None or not v.record_death(death["record_id"], index,
                                                   date.fromisoformat(death["date_of_death"]),
                                                   death["department"], now, meta):
                continue
            assessment = None
            if v.death_ends_benefit(death["record_id"]) is None:
                assessment = assess(v.living_household, v.records_in_force, self._policy(v.region_code, now),
                                    business_date(now))
            v.change_after_death(death["record_id"], assessment, now, meta)
            pe.collect_events(v)

    def report_fraud(self, case_id: str, kinds: list[str], evidence: str, fraud_since: date,
                     meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.report_fraud(kinds, evidence, fraud_since, now, meta))

    def confirm_fraud(self, case_id: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.confirm_fraud(now, meta))

    def refuse_fraud(self, case_id: str, reason: str, meta: Meta) -> Verification:
        return self._step(case_id, lambda v, now: v.refuse_fraud(reason, now, meta))

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
                benefit = v.decide(result, assessment_record(result), now, meta, reason)
            else:
                v.refuse(now, meta, reason, assessment_record(result))
            decided[:] = [v.pending_events[-1]]  # the decision is the last event it triggers
            if decision == "approve" and benefit.kind == "monthly":
                # 动态管理: reviewed from the decision on, on the cycle its records call for.
                cycle = household_review_cycle(v.application.household, v.records_in_force,
                                               self._policy(v.region_code, now))
                v.schedule_reviews(cycle, business_date(now), now, meta, result.earnings_exempt_until)

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
        # After approval (issue 11): the review cycle and next date, every review, the members'
        # deaths (names masked), a fraud report and its decision.
        "review_cycle_months": v.review_cycle_months,
        "next_review_date": v.next_review_date,
        "reviews": [dataclasses.asdict(r) for r in v.reviews.values()],
        "deaths": [dataclasses.asdict(d) for d in v.deaths.values()],
        "fraud": _plain(v.fraud),
        "version": v.version,
    }


def review_view(v: Verification, review_id: str) -> dict[str, Any]:
    """A review as its read model keeps it (`review` documents, keys sorted): what the review
    routes answer."""
    r = v.reviews[review_id]
    latest = review_id == list(v.reviews)[-1]
    doc = {
        "review_id": r.review_id, "case_id": v.case_id, "region_code": v.region_code, "state": r.state,
        "scheduled_for": r.scheduled_for, "grace_reason": r.grace_reason, "grace_months": r.grace_months,
        "reason": r.reason, "started_by": r.started_by, "started_at": r.started_at,
        "departments_requested": sorted(r.departments),
        "departments_answered": sorted(v.review_records) if latest else [],
        "outcome": r.outcome, "per_capita_income_fen": r.per_capita_income_fen,
        "monthly_amount_fen": r.monthly_amount_fen, "from_period": r.from_period, "grace": r.grace,
        "next_review_date": r.next_review_date, "completed_at": r.completed_at,
    }
    return dict(sorted(doc.items()))


def fraud_view(v: Verification) -> dict[str, Any]:
    """The case's fraud report and its decision (evidence included: officials only)."""
    return {"case_id": v.case_id, **dataclasses.asdict(v.fraud), "kinds": list(v.fraud.kinds)}


def project_review(event: Any, tx: SideTx) -> bool:
    """Read models of dynamic management (issue 11); True when `event` was one of theirs.

    - `review_due`, keyed by case (ref: its region): each approved monthly benefit still
      running, with its next review date (GET /v1/reviews/due); gone once it is terminated.
    - `review`, keyed by review id (ref: the case): each review and what it ended in
      (GET /v1/reviews?case_id=).
    """
    if isinstance(event, Verification.ReviewScheduled):
        doc = tx.get("verification", event.case_id) or {}
        tx.put("review_due", event.case_id, {
            "case_id": event.case_id, "region_code": doc.get("region_code", ""),
            "benefit_status": doc.get("benefit_status", "paying"),
            "monthly_amount_fen": doc.get("monthly_amount_fen"), "cycle_months": event.cycle_months,
            "next_review_date": event.next_review_date, "review_id": None,
        }, ref=doc.get("region_code", ""))
    elif isinstance(event, Verification.ReviewStarted):
        _update(tx, "review_due", event.case_id, review_id=event.review_id)
        tx.put("review", event.review_id, {
            "review_id": event.review_id, "case_id": event.case_id, "region_code": event.region_code,
            "state": "open", "scheduled_for": event.scheduled_for, "grace_reason": event.grace_reason,
            "grace_months": event.grace_months, "reason": event.reason, "started_by": event.started_by,
            "started_at": event.started_at, "departments_requested": sorted(event.departments),
            "departments_answered": [], "outcome": None, "per_capita_income_fen": None,
            "monthly_amount_fen": None, "from_period": None, "grace": None, "next_review_date": None,
            "completed_at": None,
        }, ref=event.case_id)
    elif isinstance(event, Verification.ReviewRecordsReceived):
        doc = tx.get("review", event.review_id)
        if doc is not None:
            _update(tx, "review", event.review_id, departments_answered=sorted(
                {*doc["departments_answered"], event.department}))
    elif isinstance(event, Verification.ReviewCompleted):
        _update(tx, "review", event.review_id, state="completed", outcome=event.outcome,
                per_capita_income_fen=event.per_capita_income_fen, monthly_amount_fen=event.monthly_amount_fen,
                from_period=event.from_period, grace=event.grace, next_review_date=event.next_review_date,
                completed_at=event.completed_at)
        if event.next_review_date is None:
            tx.delete("review_due", event.case_id)
        else:
            _update(tx, "review_due", event.case_id, review_id=None, next_review_date=event.next_review_date,
                    cycle_months=event.cycle_months)
    elif isinstance(event, Verification.BenefitChanged):
        if isinstance(event, Verification.BenefitTerminated):
            tx.delete("review_due", event.case_id)  # ended (at once, or after a grace): no more reviews
        elif isinstance(event, Verification.BenefitAdjusted):
            _update(tx, "review_due", event.case_id, monthly_amount_fen=event.monthly_amount_fen)
        else:
            _update(tx, "review_due", event.case_id, benefit_status=event.status)
    else:
        return False
    return True


def _update(tx: SideTx, kind: str, key: str, **fields: Any) -> None:
    """Change some fields of a document that exists (its ref kept)."""
    doc = tx.get(kind, key)
    if doc is not None:
        tx.put(kind, key, {**doc, **fields}, ref=doc["case_id"] if kind == "review" else doc["region_code"])


def grievances_view(v: Verification) -> list[dict[str, Any]]:
    return [dataclasses.asdict(g) for g in v.grievances.values()]


def project(event: Any, tx: SideTx) -> None:
    """Read models: verifications by state, for the review group's work list (an approved monthly
    benefit with its status and the monthly amount in force); grievances by id; cases flagged
    for filing (备案) and the cadre registers' sizes (filings.project_filing); beside them, the
    county filings of decisions and what the monthly statistics count (county_filings.project)."""
    county_filings.project(event, tx)
    if project_services(event, tx):  # services and goods in kind (services_in_kind.py)
        return
    if project_filing(event, tx) or project_care(event, tx):  # care: 特困 visits due (care.py)
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
        project_review(event, tx)
    elif project_review(event, tx):
        pass
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
    # Beside the document, where its procedure stands (GET /v1/verifications: queue.py).
    project_procedure(event, tx)
