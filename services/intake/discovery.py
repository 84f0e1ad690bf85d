"""Finding households (issue 11): discovery reports (主动发现) and dynamic monitoring's risk
rules (低收入人口动态监测预警), and the statutory clocks intake starts itself.

No I/O here. A `DiscoveryReport` is made by a person (a grid worker, a hospital, the hotline …)
or by a risk rule that fired on partner records; it reserves the case id an application made
from it will take, and starts the `discovery_contact` clock for the responsible township.
A `RiskWatch` is what monitoring remembers of one person: the partner records it has seen (each
evaluated once) and which of them a rule has already reported. `evaluate` is the pure rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.deadlines import DeadlineClearedEvent, DeadlineSetEvent, deadline_fields, outcome_at
from lifeline.domain.values import mask_name
from lifeline.rules import clocks
from lifeline.rules.calendar import default_calendar
from lifeline.rules.periods import start_of_day, to_shanghai
from lifeline.rules.vocabulary import DISCOVERY_CONTACT_OUTCOMES

DEATH = "death"  # a risk rule on DeathReported (the other kinds are LifeEventReported's)


def mask_id_number(number: str) -> str:
    """370502196803150258 → 370502********0258: the region and the last four stay."""
    return number[:6] + "*" * 8 + number[-4:]


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(("lifeline", *parts)).encode()).hexdigest()[:20].upper()


def reserved_case_id(report_id: str) -> str:
    """The case id a discovery report reserves: derived from the report, so a repeated report
    (the same Idempotency-Key, the same rule and record) reserves the same case."""
    return f"C-{_digest('discovery-case', report_id)}"


def monitoring_report_id(rule_id: str, record_id: str) -> str:
    """A risk rule's report on one partner record: the same rule on the same record is the same
    report, however often the record is delivered, republished or reported again."""
    return f"D-{_digest('monitoring', rule_id, record_id)}"


# --- statutory clocks intake starts (DeadlineSet / DeadlineCleared) -----------------------------
def deadline_on(clock: str, start: datetime, due_date: date | None = None,
                days: int | None = None) -> clocks.Deadline:
    """The deadline of `clock` from `start` (its configured length, or `days`), or ending on a
    `due_date` someone chose (a clerk's date for a referral)."""
    if due_date is None:
        return clocks.clock_due(clock, start, days=days)
    local = to_shanghai(start)
    if due_date < local.date():
        raise ValueError(f"the due date {due_date.isoformat()} is before today")
    cal = default_calendar()
    warnings = cal.warnings_for(local.date(), due_date)
    return clocks.Deadline(
        due_at=start_of_day(due_date + timedelta(days=1)), warn_at=max(start_of_day(due_date), local),
        calendar_known=not warnings, warnings=warnings, clock=clock, start_date=local.date(),
        due_date=due_date, period=f"to {due_date.isoformat()} (given)",
    )


class DiscoveryNotAllowed(Exception):
    """The report's state does not allow this (409); `rule` names why, `state` the state."""

    def __init__(self, rule: str, message: str, state: str | None = None, case_id: str | None = None):
        super().__init__(message)
        self.rule = rule
        self.state = state
        self.case_id = case_id


class RuleBroken(ValueError):
    """The request breaks a rule of discovery (422); `rule` names it."""

    def __init__(self, rule: str, message: str, field: str = ""):
        super().__init__(message)
        self.rule = rule
        self.field = field


@dataclass(frozen=True)
class Person:
    """Whom a report is about, as the reporter knows them."""

    name: str
    region_code: str                  # village (12) or township (9)
    id_number: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Reporter:
    kind: str                         # DISCOVERY_REPORTERS
    organisation: str
    name: str | None = None
    contact: str | None = None


class DiscoveryReport(LifelineAggregate):
    """A person reported in trouble: `discovered` → (`contacted`) → `applied`, once. The case
    id it reserves is the case of the application made from it."""

    id_kind = "discovery_report"

    class Reported(LifelineAggregate.Created):
        report_id: str
        case_id: str
        region_code: str
        responsible_office: str
        reporter_kind: str
        reporter_organisation: str
        reporter_name: str | None
        reporter_contact: str | None
        person_name: str
        person_name_masked: str
        id_number: str | None
        id_number_masked: str | None
        address: str | None
        seen: str
        urgency: str
        rule_id: str | None
        record_ids: list[str]
        related_case_id: str | None
        contact_due_date: str
        reported_at: str

    class DeadlineSet(DeadlineSetEvent):
        def apply(self, report: "DiscoveryReport") -> None:
            report.deadline_id = self.deadline_id
            report.due_at = self.due_at
            report.deadline_state = "open"

    class Contacted(LifelineAggregate.Event):
        report_id: str
        case_id: str
        region_code: str
        outcome: str
        note: str
        contacted_at: str

        def apply(self, report: "DiscoveryReport") -> None:
            if report.state != "applied":
                report.state = "contacted"
            report.contact_outcome = self.outcome
            report.contacted_at = self.contacted_at

    class DeadlineCleared(DeadlineClearedEvent):
        def apply(self, report: "DiscoveryReport") -> None:
            report.deadline_state = self.outcome

    class Applied(LifelineAggregate.Event):
        report_id: str
        case_id: str
        applied_at: str

        def apply(self, report: "DiscoveryReport") -> None:
            report.state = "applied"
            report.applied_at = self.applied_at

    class Overdue(LifelineAggregate.Event):
        """The deadline watch breached the contact clock (DeadlineBreached): escalated."""

        report_id: str
        deadline_id: str
        breached_at: str
        escalated_to: dict[str, str]

        def apply(self, report: "DiscoveryReport") -> None:
            report.deadline_state = "breached"
            report.escalated_to = dict(self.escalated_to)

    @classmethod
    def report(cls, report_id: str, person: Person, reporter: Reporter, seen: str, urgency: str,
               at: datetime, by: Meta, *, rule_id: str | None = None, record_ids: Iterable[str] = (),
               related_case_id: str | None = None, contact_days: int | None = None) -> "DiscoveryReport":
        """Record the report, reserve its case and start the contact clock (DeadlineSet)."""
        case_id = reserved_case_id(report_id)
        due = deadline_on("discovery_contact", at, days=contact_days)
        report = cls._create(
            cls.Reported, id=cls.create_id(report_id), report_id=report_id, case_id=case_id,
            region_code=person.region_code, responsible_office=person.region_code[:9],
            reporter_kind=reporter.kind, reporter_organisation=reporter.organisation,
            reporter_name=reporter.name, reporter_contact=reporter.contact,
            person_name=person.name, person_name_masked=mask_name(person.name),
            id_number=person.id_number,
            id_number_masked=mask_id_number(person.id_number) if person.id_number else None,
            address=person.address, seen=seen, urgency=urgency, rule_id=rule_id,
            record_ids=list(record_ids), related_case_id=related_case_id,
            contact_due_date=due.due_date.isoformat() if due.due_date else "",
            reported_at=at.isoformat(), meta=by.as_dict(),
        )
        report.trigger_event(
            cls.DeadlineSet, **deadline_fields(f"{report_id}/discovery_contact", case_id, person.region_code,
                                               person.region_code[:9], due, at),
            meta=by.as_dict(),
        )
        return report

    def __init__(self, report_id: str, case_id: str, region_code: str, responsible_office: str,
                 reporter_kind: str, reporter_organisation: str, reporter_name: str | None,
                 reporter_contact: str | None, person_name: str, person_name_masked: str,
                 id_number: str | None, id_number_masked: str | None, address: str | None,
                 seen: str, urgency: str, rule_id: str | None, record_ids: list[str],
                 related_case_id: str | None, contact_due_date: str, reported_at: str, meta: dict):
        self.report_id = report_id
        self.case_id = case_id
        self.region_code = region_code
        self.person = Person(person_name, region_code, id_number, address)
        self.reporter = Reporter(reporter_kind, reporter_organisation, reporter_name, reporter_contact)
        self.seen = seen
        self.urgency = urgency
        self.rule_id = rule_id
        self.record_ids = list(record_ids)
        self.related_case_id = related_case_id
        self.contact_due_date = contact_due_date
        self.reported_at = reported_at
        self.state = "discovered"
        self.contact_outcome: str | None = None
        self.contacted_at: str | None = None
        self.applied_at: str | None = None
        self.deadline_id: str | None = None
        self.due_at: str | None = None
        self.deadline_state: str | None = None  # open | met | late | breached (escalated)
        self.escalated_to: dict[str, str] | None = None

    @property
    def clock_running(self) -> bool:
        return self.deadline_state in ("open", "breached")

    def contact(self, outcome: str, note: str, at: datetime, by: Meta) -> None:
        """The office made contact (or tried): the clock stops at the first contact. More
        contacts may follow (not found, then found) until an application is made."""
        if outcome not in DISCOVERY_CONTACT_OUTCOMES:
            raise RuleBroken("contact_outcome", f"unknown contact outcome {outcome!r}", "outcome")
        if self.state == "applied":
            raise DiscoveryNotAllowed(
                "discovery_applied", f"the household applied already (case {self.case_id}); "
                "the case follows it now", state=self.state, case_id=self.case_id)
        self.trigger_event(self.Contacted, report_id=self.report_id, case_id=self.case_id,
                           region_code=self.region_code, outcome=outcome, note=note,
                           contacted_at=at.isoformat(), meta=by.as_dict())
        self._stop_clock(at, by)

    def check_can_apply(self, region_code: str) -> None:
        """An application may be made from the report once, in its township."""
        if self.state == "applied":
            raise DiscoveryNotAllowed(
                "discovery_applied_once", f"an application was made from this report already: "
                f"case {self.case_id}", state=self.state, case_id=self.case_id)
        if region_code[:9] != self.region_code[:9]:
            raise RuleBroken(
                "discovery_report_township", f"the application's region {region_code} is not in the "
                f"report's township {self.region_code[:9]}, whose case the report reserved",
                "discovery_report_id")

    def applied(self, case_id: str, at: datetime, by: Meta) -> None:
        """The application was registered on the reserved case: the link is the case id."""
        if case_id != self.case_id:
            raise ValueError("an application from a report takes the case id it reserved")
        self.trigger_event(self.Applied, report_id=self.report_id, case_id=self.case_id,
                           applied_at=at.isoformat(), meta=by.as_dict())
        self._stop_clock(at, by)

    def breached(self, deadline_id: str, breached_at: str, escalated_to: Mapping[str, str], by: Meta) -> bool:
        """DeadlineBreached for the contact clock: recorded once, while it runs."""
        if deadline_id != self.deadline_id or self.deadline_state != "open":
            return False
        self.trigger_event(self.Overdue, report_id=self.report_id, deadline_id=deadline_id,
                           breached_at=breached_at, escalated_to=dict(escalated_to), meta=by.as_dict())
        return True

    def _stop_clock(self, at: datetime, by: Meta) -> None:
        if self.deadline_id is None or not self.clock_running:
            return
        assert self.due_at is not None
        self.trigger_event(self.DeadlineCleared, deadline_id=self.deadline_id, case_id=self.case_id,
                           clock="discovery_contact", outcome=outcome_at(self.due_at, at),
                           cleared_at=at.isoformat(), meta=by.as_dict())


# --- dynamic monitoring: risk rules ---------------------------------------------------------------
@dataclass(frozen=True)
class RiskRule:
    """One rule of config/risk-rules.yaml (services/intake/monitoring.py loads and checks it).

    It fires on a record of kind `record_kind` about a person when: nobody is handling an application of
    theirs (no open case); they are covered by one of `covered_by` (when given) and by none of
    `unless_covered_by`; the record says `only_earner` (when given); and the amount is above
    `amount_above_fen` (when given) — the record's own, or with `within_months` the sum of the
    person's records of that kind in the months up to the record's day that no earlier report of
    the rule named."""

    rule_id: str
    label_zh: str
    record_kind: str
    urgency: str = "normal"
    amount_above_fen: int | None = None
    within_months: int | None = None
    only_earner: bool | None = None
    covered_by: tuple[str, ...] = ()
    unless_covered_by: tuple[str, ...] = ("dibao", "tekun")
    source: str = ""  # "file:line"


@dataclass(frozen=True)
class RiskRules:
    rules: tuple[RiskRule, ...] = ()
    origin: str = ""

    def on(self, kind: str) -> tuple[RiskRule, ...]:
        return tuple(r for r in self.rules if r.record_kind == kind)


@dataclass(frozen=True)
class PartnerRecord:
    """What monitoring keeps of a partner record about a person."""

    record_id: str
    kind: str                 # LIFE_EVENT_KINDS or "death"
    occurred_on: date
    amount_fen: int = 0
    only_earner: bool | None = None
    department: str = ""


@dataclass(frozen=True)
class Hit:
    rule: RiskRule
    record_ids: tuple[str, ...]
    amount_fen: int


@dataclass(frozen=True)
class PersonCoverage:
    """What monitoring needs of a person's files (from services/intake/persons.py's Coverage)."""

    covered: frozenset[str] = frozenset()  # benefit types the person is covered by
    open_case: bool = False                # an application of theirs is being handled

    @classmethod
    def of(cls, found: Any) -> "PersonCoverage":
        """From the person index's answer (`open_cases` {case_id: type}, `covered` {type: case_id})."""
        if found is None:
            return cls()
        return cls(frozenset(getattr(found, "covered", {}) or {}), bool(getattr(found, "open_cases", {})))


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier (the month's last day when it is shorter)."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    m += 1
    for d in range(day.day, 0, -1):
        try:
            return date(y, m, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def evaluate(rules: RiskRules, record: PartnerRecord, history: Iterable[PartnerRecord],
             reported: Mapping[str, Iterable[str]], coverage: PersonCoverage) -> list[Hit]:
    """The rules `record` makes fire, given the person's earlier records (`history`), the record
    ids each rule has reported already (`reported`: rule id → ids) and the person's coverage."""
    hits = []
    earlier = [r for r in history if r.record_id != record.record_id]
    for rule in rules.on(record.kind):
        if coverage.open_case:
            continue  # the office is handling an application of theirs already
        if rule.covered_by and not coverage.covered & set(rule.covered_by):
            continue
        if coverage.covered & set(rule.unless_covered_by):
            continue
        if rule.only_earner is not None and record.only_earner is not rule.only_earner:
            continue
        named = set(reported.get(rule.rule_id, ()))
        counted = [record]
        if rule.within_months:
            since = months_before(record.occurred_on, rule.within_months)
            counted += [r for r in earlier if r.kind == record.kind and r.record_id not in named
                        and since < r.occurred_on <= record.occurred_on]
        total = sum(r.amount_fen for r in counted)
        if rule.amount_above_fen is not None and total <= rule.amount_above_fen:
            continue
        counted.sort(key=lambda r: (r.occurred_on, r.record_id))
        hits.append(Hit(rule, tuple(r.record_id for r in counted), total))
    return hits


class RiskWatch(LifelineAggregate):
    """Monitoring's memory of one person, keyed as the person index is (a keyed fingerprint of
    the ID number, never the number): each partner record is evaluated once; a rule never counts
    a record twice."""

    id_kind = "risk_watch"

    class Opened(LifelineAggregate.Created):
        fingerprint: str

    class RecordNoted(LifelineAggregate.Event):
        record_id: str
        kind: str
        department: str
        occurred_on: str
        amount_fen: int
        only_earner: bool | None

        def apply(self, watch: "RiskWatch") -> None:
            watch.records[self.record_id] = PartnerRecord(
                self.record_id, self.kind, date.fromisoformat(self.occurred_on), self.amount_fen,
                self.only_earner, self.department)

    class RuleFired(LifelineAggregate.Event):
        rule_id: str
        report_id: str
        record_ids: list[str]
        amount_fen: int

        def apply(self, watch: "RiskWatch") -> None:
            watch.reported.setdefault(self.rule_id, set()).update(self.record_ids)
            watch.reports.append(self.report_id)

    @classmethod
    def open(cls, fingerprint: str, by: Meta) -> "RiskWatch":
        return cls._create(cls.Opened, id=cls.create_id(fingerprint), fingerprint=fingerprint, meta=by.as_dict())

    def __init__(self, fingerprint: str, meta: dict):
        self.fingerprint = fingerprint
        self.records: dict[str, PartnerRecord] = {}
        self.reported: dict[str, set[str]] = {}
        self.reports: list[str] = []

    def has_seen(self, record_id: str) -> bool:
        return record_id in self.records

    def note(self, record: PartnerRecord, rules: RiskRules, coverage: PersonCoverage, by: Meta) -> list[Hit]:
        """Evaluate a new record (nothing for one seen before) and remember it."""
        if self.has_seen(record.record_id):
            return []
        hits = evaluate(rules, record, self.records.values(), self.reported, coverage)
        self.trigger_event(self.RecordNoted, record_id=record.record_id, kind=record.kind,
                           department=record.department, occurred_on=record.occurred_on.isoformat(),
                           amount_fen=record.amount_fen, only_earner=record.only_earner, meta=by.as_dict())
        return hits

    def fired(self, hit: Hit, report_id: str, by: Meta) -> None:
        self.trigger_event(self.RuleFired, rule_id=hit.rule.rule_id, report_id=report_id,
                           record_ids=list(hit.record_ids), amount_fen=hit.amount_fen, meta=by.as_dict())
