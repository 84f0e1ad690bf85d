"""Intake's use cases for finding households and following referrals up (issue 11), mixed into
`IntakeApplication`, and their read models.

- Discovery reports (主动发现): a person's report, the office's contact, the application made
  from it on the case id it reserved.
- Dynamic monitoring (低收入人口动态监测预警): LifeEventReported and DeathReported evaluated once
  per person and record against the risk rules (config/risk-rules.yaml); a hit is a report.
- Referrals (转介): the referral clock, the answer (the department's ReferralAnswered or a clerk's
  record), the breach escalated to the first clerk responsible (首问负责人) and the office above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import Meta, new_id
from lifeline.domain.deadlines import deadline_fields
from lifeline.domain.people import fingerprint
from lifeline.rules import clocks
from lifeline.stores.application import DuplicateRequest
from lifeline.stores.sidestore import SideTx
from services.intake import persons
from services.intake.discovery import (
    DEATH,
    DiscoveryNotAllowed,
    DiscoveryReport,
    Hit,
    PartnerRecord,
    Person,
    PersonCoverage,
    Reporter,
    RiskRules,
    RiskWatch,
    RuleBroken,
    deadline_on,
    monitoring_report_id,
)
from services.intake.domain import Case, Referral

if TYPE_CHECKING:
    from services.intake.application import IntakeApplication


class DiscoveryReportNotFound(LookupError):
    pass


class ReferralNotFound(LookupError):
    pass


class Outreach:
    """Mixed into IntakeApplication (which gives clock, store and `risk_rules`, `clock_days`)."""

    risk_rules: RiskRules
    clock_days: Mapping[str, int]

    # --- discovery reports ----------------------------------------------------------------------
    def report_discovery(self: IntakeApplication, body: dict[str, Any], meta: Meta,
                         report_id: str | None = None) -> DiscoveryReport:
        """A person's report (the API's validated body): the case reserved, the contact clock set."""
        report_id = report_id or new_id("D")
        report = DiscoveryReport.report(
            report_id, Person(**body["person"]), Reporter(**body["reporter"]), body["seen"], body["urgency"],
            self.clock.now(), meta, contact_days=self.clock_days.get("discovery_contact"),
        )
        try:
            self.save_new(report, report_id)
        except DuplicateRequest:
            return self.get_discovery_report(report_id)  # the same request again
        return report

    def record_contact(self: IntakeApplication, report_id: str, outcome: str, note: str,
                       meta: Meta) -> DiscoveryReport:
        report = self.get_discovery_report(report_id)
        report.contact(outcome, note, self.clock.now(), meta)
        try:
            self.save(report)
        except IntegrityError as exc:
            raise DiscoveryNotAllowed("changed_meanwhile", "the report changed meanwhile; reload and retry",
                                      report.state) from exc
        return report

    def discovery_report_for(self: IntakeApplication, form: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                  DiscoveryReport | None]:
        """The application form less `discovery_report_id`, and the report it is made from (which
        may still be applied from, in the application's township)."""
        form = dict(form)
        report_id = form.pop("discovery_report_id", None)
        if not report_id:
            return form, None
        try:
            report = self.get_discovery_report(report_id)
        except DiscoveryReportNotFound:
            raise RuleBroken("discovery_report_unknown", f"no discovery report {report_id}",
                             "discovery_report_id") from None
        report.check_can_apply(form["region_code"])
        if self.exists(Case.create_id(report.case_id)):
            # Registered, its report not marked yet (a crash between the two, or a race): once.
            self.note_applied(report, report.case_id, Meta("system:intake", "system"))
            raise DiscoveryNotAllowed("discovery_applied_once", "an application was made from this report "
                                      f"already: case {report.case_id}", "applied", report.case_id)
        return form, report

    def register_from_report(self: IntakeApplication, report: DiscoveryReport, register: Callable[[], Any],
                             meta: Meta) -> Any:
        """Register the application on the report's case, then mark the report applied; what
        `register` answered. Another application that registered the case first (a race) makes
        this one 409 too."""
        try:
            registered = register()
        except DuplicateRequest:
            self.note_applied(report, report.case_id, meta)
            raise DiscoveryNotAllowed("discovery_applied_once", "an application was made from this report "
                                      f"already: case {report.case_id}", "applied", report.case_id) from None
        self.note_applied(report, report.case_id, meta)
        return registered

    def note_applied(self: IntakeApplication, report: DiscoveryReport, case_id: str, meta: Meta) -> None:
        """The application is registered on the report's case: the report is applied and its
        contact clock stops. (Saved right after the case; a report left unmarked by a crash in
        between is marked by the next attempt to apply from it.)"""
        for _ in range(5):
            if report.state == "applied":
                return
            report.applied(case_id, self.clock.now(), meta)
            try:
                self.save(report)
                return
            except IntegrityError:
                report = self.get_discovery_report(report.report_id)  # contacted meanwhile
        raise RuntimeError(f"discovery report {report.report_id} kept changing")

    def get_discovery_report(self: IntakeApplication, report_id: str) -> DiscoveryReport:
        return self.load(DiscoveryReport.create_id(report_id), DiscoveryReportNotFound(report_id))

    # --- dynamic monitoring ---------------------------------------------------------------------
    def person_coverage(self: IntakeApplication, id_number: str) -> PersonCoverage:
        return PersonCoverage.of(persons.coverage_of(self, id_number))

    def monitor_life_event(self: IntakeApplication, data: Mapping[str, Any], meta: Meta,
                           pe: ProcessingEvent) -> None:
        """LifeEventReported: the person's record against the rules on its kind."""
        record = PartnerRecord(data["record_id"], data["kind"], date.fromisoformat(data["occurred_on"]),
                               data["amount_fen"], data["only_earner"], data["department"])
        person = Person(data["name"], data["region_code"], data["id_number"])
        self._monitor(data["id_number"], record, lambda hit: (person, None), meta, pe)

    def monitor_death(self: IntakeApplication, data: Mapping[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """DeathReported: a rule on death is about the household of a case covering the deceased
        (e.g. a recognised low-income household): the report names a living member of it."""
        deceased = data["id_number"]
        record = PartnerRecord(data["record_id"], DEATH, date.fromisoformat(data["date_of_death"]),
                               department=data["department"])
        covered = persons.coverage_of(self, deceased).covered

        def household(hit: Hit) -> tuple[Person, str] | None:
            for benefit in hit.rule.covered_by:
                if benefit in covered:
                    case = self.get_case(covered[benefit])
                    living = [m for m in case.application.household.members if m.id_number != deceased]
                    living.sort(key=lambda m: m.relation != "self")
                    if living:
                        return Person(living[0].name, case.region_code, living[0].id_number), case.case_id
            return None  # nobody left to contact

        self._monitor(deceased, record, household, meta, pe)

    def _monitor(self: IntakeApplication, id_number: str, record: PartnerRecord,
                 subject: Callable[[Hit], tuple[Person, str | None] | None], meta: Meta,
                 pe: ProcessingEvent) -> None:
        """Each record once per person (RiskWatch); each rule's report on a record once (its id
        derives from both, and the store holds one aggregate per id)."""
        key = fingerprint(self.sealer.secret if self.sealer is not None else "", id_number)
        watch = self.load_or_create(RiskWatch.create_id(key), lambda: RiskWatch.open(key, meta))
        if watch.has_seen(record.record_id):
            return
        now = self.clock.now()
        reports = []
        for hit in watch.note(record, self.risk_rules, self.person_coverage(id_number), meta):
            found = subject(hit)
            report_id = monitoring_report_id(hit.rule.rule_id, record.record_id)
            if found is None or self.exists(DiscoveryReport.create_id(report_id)):
                continue
            person, related_case_id = found
            seen = (f"{hit.rule.label_zh}（{hit.rule.rule_id}）：{record.department} 记录 "
                    f"{'、'.join(hit.record_ids)}" + (f"，合计 {hit.amount_fen} 分" if hit.amount_fen else ""))
            reports.append(DiscoveryReport.report(
                report_id, person, Reporter("monitoring", record.department or "monitoring"), seen,
                hit.rule.urgency, now, meta, rule_id=hit.rule.rule_id, record_ids=hit.record_ids,
                related_case_id=related_case_id, contact_days=self.clock_days.get("discovery_contact"),
            ))
            watch.fired(hit, report_id, meta)
        pe.collect_events(watch, *reports)

    # --- referrals followed up --------------------------------------------------------------------
    def referral_due(self: IntakeApplication, due: date | str | None, now: datetime) -> clocks.Deadline:
        """The clerk's due date, or the referral clock's (`referral_days` working days)."""
        if isinstance(due, str):
            due = date.fromisoformat(due)
        try:
            return deadline_on("referral", now, due, days=self.clock_days.get("referral"))
        except ValueError as exc:
            raise RuleBroken("due_date_not_before_today", str(exc), "due_date") from None

    def follow_up_referral(self: IntakeApplication, referral: Referral, case: Case, due: clocks.Deadline,
                           now: datetime, meta: Meta) -> None:
        referral.follow_up(case, deadline_fields(f"{referral.referral_id}/referral", case.case_id,
                                                 case.region_code, case.region_code[:9], due, now), meta)

    def record_referral_outcome(self: IntakeApplication, referral_id: str, outcome: str, note: str,
                                meta: Meta) -> Referral:
        """A clerk records the answer (ReferralNotAllowed, 409, when it was answered before)."""
        referral = self.get_referral(referral_id)
        referral.record_outcome(outcome, note, "clerk", self.clock.now(), meta)
        try:
            self.save(referral)
        except IntegrityError:
            referral = self.get_referral(referral_id)  # answered (or escalated) meanwhile: again
            referral.record_outcome(outcome, note, "clerk", self.clock.now(), meta)
            self.save(referral)
        return referral

    def answer_referral(self: IntakeApplication, data: Mapping[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """ReferralAnswered from the referral's target: the first answer closes it; another
        department's answer, or a later one, changes nothing."""
        try:
            referral = self.get_referral(data["referral_id"])
        except ReferralNotFound:
            return
        if referral.status == "answered" or data["department"] != referral.target \
                or data["case_id"] != referral.case_id:
            return
        referral.record_outcome(data["outcome"], data["note"], "department", self.clock.now(), meta)
        pe.collect_events(referral)

    def get_referral(self: IntakeApplication, referral_id: str) -> Referral:
        return self.load(Referral.create_id(referral_id), ReferralNotFound(referral_id))

    # --- the deadline watch's breaches of intake's clocks -------------------------------------
    def note_breach(self: IntakeApplication, data: Mapping[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """DeadlineBreached of a referral or discovery-contact clock: overdue, escalated once."""
        owner = data["deadline_id"].split("/", 1)[0]
        try:
            if data["clock"] == "referral":
                aggregate: Any = self.get_referral(owner)
            else:
                aggregate = self.get_discovery_report(owner)
        except LookupError:
            return  # not intake's
        if aggregate.breached(data["deadline_id"], data["breached_at"], data["escalated_to"], meta):
            pe.collect_events(aggregate)


# --- read models -------------------------------------------------------------------------------
DISCOVERY_DOC_KIND = "discovery_report"


def project(event: Any, tx: SideTx) -> None:
    """Discovery reports (by township), the discovered case, and what referrals add to their
    documents (application.project writes a referral's first document)."""
    if isinstance(event, DiscoveryReport.Reported):
        tx.put(DISCOVERY_DOC_KIND, event.report_id, {
            "report_id": event.report_id, "case_id": event.case_id, "state": "discovered",
            "region_code": event.region_code, "responsible_office": event.responsible_office,
            "reporter": {"kind": event.reporter_kind, "organisation": event.reporter_organisation,
                         "name": event.reporter_name, "contact": event.reporter_contact},
            "person": {"name": event.person_name, "id_number_masked": event.id_number_masked,
                       "address": event.address},
            "seen": event.seen, "urgency": event.urgency, "rule_id": event.rule_id,
            "record_ids": list(event.record_ids), "related_case_id": event.related_case_id,
            "contact_due_date": event.contact_due_date, "deadline_state": "open",
            "contact_outcome": None, "contact_note": None, "contacted_at": None, "applied_at": None,
            "escalated_to": None, "reported_at": event.reported_at,
        }, ref=event.responsible_office)
        if tx.get("case", event.case_id) is None:
            tx.put("case", event.case_id, {
                "case_id": event.case_id, "status": "discovered", "region_code": event.region_code,
                "assistance_type": None, "submitted_at": None, "discovery_report_id": event.report_id,
            }, ref=event.region_code)
        return
    if isinstance(event, (DiscoveryReport.Contacted, DiscoveryReport.DeadlineCleared,
                          DiscoveryReport.Applied, DiscoveryReport.Overdue)):
        doc = tx.get(DISCOVERY_DOC_KIND, event.report_id) if hasattr(event, "report_id") else None
        if doc is None:  # DeadlineCleared: found by its deadline id
            doc = tx.get(DISCOVERY_DOC_KIND, event.deadline_id.split("/", 1)[0])
        if doc is None:
            return
        if isinstance(event, DiscoveryReport.Contacted):
            if doc["state"] != "applied":
                doc["state"] = "contacted"
            doc.update(contact_outcome=event.outcome, contact_note=event.note, contacted_at=event.contacted_at)
        elif isinstance(event, DiscoveryReport.DeadlineCleared):
            doc["deadline_state"] = event.outcome
        elif isinstance(event, DiscoveryReport.Overdue):
            doc.update(deadline_state="breached", escalated_to=dict(event.escalated_to))
        else:
            doc.update(state="applied", applied_at=event.applied_at)
            case = tx.get("case", event.case_id)
            if case is not None:
                case["discovery_report_id"] = event.report_id
                tx.put("case", event.case_id, case, ref=case["region_code"])
        tx.put(DISCOVERY_DOC_KIND, doc["report_id"], doc, ref=doc["responsible_office"])
        return
    if isinstance(event, (Referral.Raised, Referral.DeadlineSet, Referral.OutcomeRecorded,
                          Referral.DeadlineCleared, Referral.Overdue)):
        key = event.referral_id if hasattr(event, "referral_id") else event.deadline_id.split("/", 1)[0]
        doc = tx.get("referral", key)
        if doc is None:
            return
        if isinstance(event, Referral.Raised):
            doc.update({
                "urgency": event.urgency, "raised_at": event.raised_at,
                "region_code": event.household_profile.region_code, "assignee": None, "raised_by": None,
                "deadline_state": None, "outcome": None, "answered_by": None, "note": None,
                "answered_at": None, "late": None, "overdue_at": None, "escalated_to": None,
            })
        elif isinstance(event, Referral.DeadlineSet):
            doc.update(assignee=event.responsible_clerk, raised_by=event.raised_by, deadline_state="open")
        elif isinstance(event, Referral.OutcomeRecorded):
            doc.update(status="answered", outcome=event.outcome, answered_by=event.answered_by,
                       note=event.note, answered_at=event.recorded_at, late=event.late)
        elif isinstance(event, Referral.DeadlineCleared):
            doc["deadline_state"] = event.outcome
        else:
            doc.update(status="overdue", deadline_state="breached", overdue_at=event.breached_at,
                       escalated_to={"clerk": event.responsible_clerk, **event.escalated_to})
        tx.put("referral", key, doc, ref=doc["case_id"])


def discovery_reports(tx: SideTx, state: str | None = None) -> list[dict[str, Any]]:
    docs = [doc for _, _, _, doc in tx.all(DISCOVERY_DOC_KIND)]
    return [d for d in docs if state is None or d["state"] == state]


def referrals(tx: SideTx, assignee: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
    docs = [doc for _, _, _, doc in tx.all("referral")]
    return [d for d in docs if (assignee is None or d.get("assignee") == assignee)
            and (state is None or d["status"] == state)]
