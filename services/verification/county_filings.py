"""镇→县备案: every inclusion and every exit a township decides is filed with the county within 5
working days, and the county's monthly statistics for the provincial platform (issue 17, part 5).

Not the cadre 备案 of issue 9 (filings.py: cadres and their close relatives, `GET /v1/filings`):
here the *decision* is filed, under the names `CountyFiling`, `county_filing` and
`/v1/filings/county`.

Seed 002 (镇人民政府职责): "负责在审批新增和出保结束后5个工作日内上报县民政局备案,并录入全省社会救助
综合服务平台" — the township files each new inclusion and each exit with the county civil-affairs
bureau within 5 working days, and the figures go to the province's platform.

- What is filed (`filed_decision`): a benefit approved by a township (BenefitApproved with
  approval_level township: 低保, 特困, 临时救助 within the township's cap, 低收入家庭认定) is an
  *inclusion*; a monthly benefit terminated (BenefitTerminated) by anyone but the county — a
  reviewer's change, a review's outcome, a death — is an *exit*. A suspension is not an exit (the
  benefit stays on the roll and may resume), nor an adjustment; what the county decided itself
  (its approvals above the township's cap, a fraud it confirmed) it does not file with itself.
- How (`filings_for`, called by VerificationApplication._record): each such event verification
  stores makes a `CountyFiling` in the same transaction (CountyFilingDue, and DeadlineSet of the
  clock `county_filing`: 5 working days from the decision, the township answerable). Whichever
  path decided — a command, a consumed death, a review completed by the departments' answers —
  nothing is lost and nothing is filed twice (the filing's id is the decision's position in the
  case's log).
- The county records receipt (`POST /v1/filings/county/{filing_id}/receipt`): filed, met or
  late (CountyFilingReceived, DeadlineCleared). Notify's deadline watch breaches the clock once
  (DeadlineBreached, escalated to the county); verification records it (`overdue`).
- Monthly statistics (`MonthlyStatistics`, once per county and period): per township and for the
  county, by assistance type, from the `benefit_roll` read model (`figures`), published as
  MonthlyStatisticsPublished and downloaded as CSV (`statistics_csv`).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.deadlines import DeadlineClearedEvent, DeadlineSetEvent, deadline_fields, outcome_at
from lifeline.domain.values import mask_name
from lifeline.http.app import (
    COMMAND_ERRORS, LIST_ERRORS, READ_ERRORS, in_region, problem_responses, region_filter, strict,
)
from lifeline.http.auth import Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules import clocks
from lifeline.rules.periods import business_date, next_period, parse_period, period_of
from lifeline.rules.regions import is_known_county
from lifeline.rules.vocabulary import ASSISTANCE_TYPES, BENEFIT_KINDS
from lifeline.stores.sidestore import SideTx
from services.verification.domain import COUNTY_ROLES, DecisionNotAllowed, ProcedureError, Verification

if TYPE_CHECKING:  # application.py imports this module: no import cycle at run time
    from lifeline.runtime.service import ServiceRuntime
    from services.verification.application import VerificationApplication

__all__ = [
    "CLOCK", "FILING_DECISIONS", "FILING_STATES", "RECEIPT_OUTCOMES", "CountyFiling", "CountyFilingReceiptIn",
    "FiledDecision", "MonthlyStatistics", "figures", "filed_decision", "filings_for", "note_breach", "project",
    "publish_statistics", "receive_filing", "router", "statistics_csv",
]

CLOCK = "county_filing"
# What a filing reports: a benefit approved (审批新增) or a monthly benefit ended (出保).
FILING_DECISIONS = ("inclusion", "exit")
# Where a filing stands: due (the clock runs), overdue (breached, escalated), filed (received).
FILING_STATES = ("due", "overdue", "filed")
RECEIPT_OUTCOMES = ("met", "late")
# Who records a receipt (a county officer of the filing's county) and publishes the statistics.
RECEIVERS = ("county_officer",)
STATISTICS_PUBLISHERS = ("county_officer",)
# Who lists filings (the township's offices see their own, the county all of its townships).
FILING_READERS = ("caseworker", "reviewer", "county_officer", "auditor", "admin")
STATISTICS_READERS = ("county_officer", "auditor", "admin")
NOTE_MAX = 500
# How often a receipt is tried again when the filing changed meanwhile (a breach recorded).
RECEIPT_ATTEMPTS = 3


# --- the rule: which decisions are filed -----------------------------------------------------
@dataclass(frozen=True)
class FiledDecision:
    """A township's decision as the county is told of it (masked: no ID number, no address)."""

    filing_id: str
    case_id: str
    benefit_id: str
    decision: str                 # inclusion | exit
    assistance_type: str
    benefit_kind: str
    region_code: str
    applicant_name_masked: str
    household_size: int
    monthly_amount_fen: int | None
    one_off_amount_fen: int | None
    from_period: str
    reason: str
    decided_by: str
    decided_at: str

    @property
    def township_code(self) -> str:
        return self.region_code[:9]

    @property
    def county_code(self) -> str:
        return self.region_code[:6]


def filing_id_of(case_id: str, version: int) -> str:
    """CF-<case id>-<n>: n is the deciding event's position in the case's log, so one decision
    makes one filing however often it is looked at."""
    return f"CF-{case_id}-{version}"


def people_of(v: Verification) -> int:
    """The people a running benefit covers: one for a single-person household (单人户保), else
    the living members counted in the household (共同生活), at least one."""
    household = v.living_household
    if household.single_person_member_id is not None:
        return 1
    return max(1, sum(1 for m in household.members if m.counted))


def decided_by_county(meta: Mapping[str, Any]) -> bool:
    return meta.get("role") in COUNTY_ROLES


def filed_decision(event: Any, v: Verification | None) -> FiledDecision | None:
    """The filing a stored verification event calls for, or None: a township's approval (an
    inclusion) or a termination not decided by the county (an exit). `v` is the case as saved
    with the event (its application names the applicant and the household)."""
    if v is None or event.originator_id != v.id:
        return None
    if isinstance(event, Verification.Approved):
        b = event.benefit
        if b.approval_level != "township":
            return None
        size = (event.assessment or {}).get("household_size") or event.members_count
        return FiledDecision(
            filing_id_of(event.case_id, event.originator_version), event.case_id, b.benefit_id, "inclusion",
            b.benefit_type, b.kind, event.region_code, mask_name(v.application.household.applicant.name),
            max(1, int(size)), b.monthly_amount_fen, b.one_off_amount_fen, b.first_period, event.reason,
            event.meta.get("user_id") or "system:verification", b.approved_at)
    if isinstance(event, Verification.BenefitTerminated):
        if decided_by_county(event.meta) or v.benefit is None:
            return None
        return FiledDecision(
            filing_id_of(event.case_id, event.originator_version), event.case_id, event.benefit_id, "exit",
            v.benefit.benefit_type, v.benefit.kind, v.region_code, mask_name(v.application.household.applicant.name),
            people_of(v), v.current_monthly_amount_fen, None, event.from_period, event.reason, event.decided_by,
            event.decided_at)
    return None


def filing_due(decided_at: str, days: int | None = None) -> clocks.Deadline:
    """5 working days from the decision (the county's own `clock_days` when it sets one)."""
    return clocks.clock_due(CLOCK, datetime.fromisoformat(decided_at), days=days)


# --- the aggregates --------------------------------------------------------------------------
class CountyFiling(LifelineAggregate):
    """One decision filed with the county: `due` → (`overdue`) → `filed` (met or late)."""

    id_kind = "county_filing"

    class Due(LifelineAggregate.Created):
        filing_id: str
        case_id: str
        benefit_id: str
        decision: str
        assistance_type: str
        benefit_kind: str
        region_code: str
        township_code: str
        county_code: str
        applicant_name_masked: str
        household_size: int
        monthly_amount_fen: int | None
        one_off_amount_fen: int | None
        from_period: str
        reason: str
        decided_by: str
        decided_at: str
        due_date: str

        def apply(self, f: "CountyFiling") -> None:
            f.case_id, f.decision, f.region_code = self.case_id, self.decision, self.region_code
            f.township_code, f.county_code, f.due_date = self.township_code, self.county_code, self.due_date

    class DeadlineSet(DeadlineSetEvent):
        def apply(self, f: "CountyFiling") -> None:
            f.deadline_id, f.due_at = self.deadline_id, self.due_at

    class Received(LifelineAggregate.Event):
        filing_id: str
        case_id: str
        decision: str
        township_code: str
        county_code: str
        due_date: str
        outcome: str  # met | late
        note: str | None
        received_by: str
        received_at: str

        def apply(self, f: "CountyFiling") -> None:
            f.state, f.outcome, f.received_at = "filed", self.outcome, self.received_at

    class DeadlineCleared(DeadlineClearedEvent):
        pass

    class Overdue(LifelineAggregate.Event):
        """The deadline watch breached the clock (DeadlineBreached): escalated to the county."""

        filing_id: str
        deadline_id: str
        breached_at: str
        escalated_to: dict[str, str]

        def apply(self, f: "CountyFiling") -> None:
            f.state = "overdue"

    @classmethod
    def file(cls, decision: FiledDecision, due: clocks.Deadline, by: Meta) -> "CountyFiling":
        """The filing and its clock, as the decision's actor (who decided, or the service)."""
        assert due.due_date is not None
        f = cls._create(
            cls.Due, id=cls.create_id(decision.filing_id), filing_id=decision.filing_id,
            case_id=decision.case_id, benefit_id=decision.benefit_id, decision=decision.decision,
            assistance_type=decision.assistance_type, benefit_kind=decision.benefit_kind,
            region_code=decision.region_code, township_code=decision.township_code,
            county_code=decision.county_code, applicant_name_masked=decision.applicant_name_masked,
            household_size=decision.household_size, monthly_amount_fen=decision.monthly_amount_fen,
            one_off_amount_fen=decision.one_off_amount_fen, from_period=decision.from_period,
            reason=decision.reason, decided_by=decision.decided_by, decided_at=decision.decided_at,
            due_date=due.due_date.isoformat(), meta=by.as_dict())
        f.trigger_event(cls.DeadlineSet, **deadline_fields(
            f"{decision.filing_id}/{CLOCK}", decision.case_id, decision.region_code, decision.township_code, due,
            datetime.fromisoformat(decision.decided_at)), meta=by.as_dict())
        return f

    def __init__(self, filing_id: str) -> None:
        self.filing_id = filing_id
        self.state = "due"
        self.case_id = self.decision = self.region_code = self.township_code = self.county_code = ""
        self.due_date = ""
        self.deadline_id = self.due_at = ""
        self.outcome: str | None = None
        self.received_at: str | None = None

    def receive(self, note: str | None, at: datetime, by: Meta) -> None:
        """The county records the filing as received: met by 24:00 of the due day, late after."""
        if self.state == "filed":
            raise DecisionNotAllowed(f"filing {self.filing_id} was received already ({self.received_at})",
                                     "county_filing_received")
        outcome = outcome_at(self.due_at, at)
        self.trigger_event(self.Received, filing_id=self.filing_id, case_id=self.case_id, decision=self.decision,
                           township_code=self.township_code, county_code=self.county_code,
                           due_date=self.due_date, outcome=outcome, note=note, received_by=by.user_id,
                           received_at=at.isoformat(), meta=by.as_dict())
        self.trigger_event(self.DeadlineCleared, deadline_id=self.deadline_id, case_id=self.case_id, clock=CLOCK,
                           outcome=outcome, cleared_at=at.isoformat(), meta=by.as_dict())

    def breached(self, deadline_id: str, breached_at: str, escalated_to: Mapping[str, str], by: Meta) -> bool:
        """DeadlineBreached of this filing's clock: recorded once, while still due."""
        if deadline_id != self.deadline_id or self.state != "due":
            return False
        self.trigger_event(self.Overdue, filing_id=self.filing_id, deadline_id=deadline_id,
                           breached_at=breached_at, escalated_to=dict(escalated_to), meta=by.as_dict())
        return True


class MonthlyStatistics(LifelineAggregate):
    """A county's figures for one period, as first published: never published again."""

    id_kind = "monthly_statistics"  # one per county and period

    class Published(LifelineAggregate.Created):
        statistics_id: str
        county_code: str
        period: str
        townships: list[dict[str, Any]]
        county_total: list[dict[str, Any]]
        published_by: str
        published_at: str

        def apply(self, s: "MonthlyStatistics") -> None:
            s.doc = {"statistics_id": self.statistics_id, "county_code": self.county_code, "period": self.period,
                     "townships": [dict(t) for t in self.townships], "county_total": [dict(f) for f in self.county_total],
                     "published_by": self.published_by, "published_at": self.published_at}

    @staticmethod
    def id_of(county_code: str, period: str) -> str:
        return f"MS-{county_code}-{period}"

    @classmethod
    def publish(cls, county_code: str, period: str, townships: list[dict[str, Any]],
                county_total: list[dict[str, Any]], at: datetime, by: Meta) -> "MonthlyStatistics":
        statistics_id = cls.id_of(county_code, period)
        return cls._create(cls.Published, id=cls.create_id(statistics_id), statistics_id=statistics_id,
                           county_code=county_code, period=period, townships=townships, county_total=county_total,
                           published_by=by.user_id, published_at=at.isoformat(), meta=by.as_dict())

    def __init__(self, statistics_id: str) -> None:
        self.statistics_id = statistics_id
        self.doc: dict[str, Any] = {}


# --- the statistics: pure rules over the benefit_roll documents --------------------------------
FIGURE_FIELDS = ("cases", "people", "amount_fen", "inclusions", "exits")


def standing(roll: Mapping[str, Any], period: str) -> tuple[int, int] | None:
    """(people, amount in fen) a case's benefit counts for `period`, or None when it counts for
    nothing: a monthly benefit paying for the period (its changes by their periods, the latest
    recorded last; suspended or terminated: nothing), one-off relief in its month, a recognition
    from its first period on."""
    kind = roll.get("kind")
    if kind is None or parse_period(period) < parse_period(roll["first_period"]):
        return None
    people = max(1, roll["household_size"] - sum(1 for p in roll.get("deaths", ())
                                                 if parse_period(p) <= parse_period(period)))
    if kind == "one_off":
        return (people, roll["one_off_amount_fen"] or 0) if period == roll["first_period"] else None
    if kind == "recognition":
        return people, 0
    status, amount = "paying", roll["monthly_amount_fen"] or 0
    changes = sorted(roll.get("changes", ()), key=lambda c: parse_period(c["from_period"]))  # stable
    for change in changes:
        if parse_period(change["from_period"]) > parse_period(period):
            break
        if change["change"] == "adjust":
            amount = change["monthly_amount_fen"]
        elif change["change"] == "terminate":
            return None
        else:
            status = "suspended" if change["change"] == "suspend" else "paying"
    return (people, amount) if status == "paying" else None


def _zero() -> dict[str, dict[str, int]]:
    return {t: dict.fromkeys(FIGURE_FIELDS, 0) for t in ASSISTANCE_TYPES}


def _rows(by_type: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    return [{"assistance_type": t, **{k: by_type[t][k] for k in FIGURE_FIELDS}} for t in ASSISTANCE_TYPES]


def figures(rolls: Iterable[Mapping[str, Any]], county_code: str, period: str) -> tuple[list[dict], list[dict]]:
    """(townships, county_total) for `period`: per township with any figure (by code) and for the
    county, one row per assistance type — cases and people counted for the period (`standing`),
    their amount, inclusions (approved in the period, by a township or the county) and exits
    (a monthly benefit's first termination decided in the period)."""
    towns: dict[str, dict[str, dict[str, int]]] = {}
    total = _zero()
    for roll in rolls:
        if roll.get("kind") is None or not roll["region_code"].startswith(county_code):
            continue
        counts = dict.fromkeys(FIGURE_FIELDS, 0)
        counted = standing(roll, period)
        if counted is not None:
            counts.update(cases=1, people=counted[0], amount_fen=counted[1])
        counts["inclusions"] = int(roll["decided_period"] == period)
        counts["exits"] = int(roll.get("exit_period") == period)
        if not any(counts.values()):
            continue
        town = towns.setdefault(roll["region_code"][:9], _zero())
        for target in (town[roll["assistance_type"]], total[roll["assistance_type"]]):
            for k, n in counts.items():
                target[k] += n
    return ([{"township_code": code, "figures": _rows(towns[code])} for code in sorted(towns)], _rows(total))


# --- CSV for the provincial platform -----------------------------------------------------------
ASSISTANCE_NAMES_ZH = {
    "dibao": "最低生活保障", "tekun": "特困人员救助供养", "linshi_jinan": "临时救助（急难型）",
    "linshi_zhichu": "临时救助（支出型）", "low_income": "低收入家庭认定",
}
# Each column: its Chinese heading and its English code, in one header cell "中文(code)".
CSV_COLUMNS = (
    ("统计月份", "period"), ("县级区划代码", "county_code"), ("区划代码", "region_code"), ("层级", "level"),
    ("救助类型", "assistance_type"), ("救助类型名称", "assistance_type_zh"), ("保障户数", "cases"),
    ("保障人数", "people"), ("金额（分）", "amount_fen"), ("金额（元）", "amount_yuan"), ("新增户数", "inclusions"),
    ("退出户数", "exits"),
)


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals, exactly (no float): 1234567 → 12345.67."""
    return f"{fen // 100}.{fen % 100:02d}"


def statistics_csv(doc: Mapping[str, Any]) -> bytes:
    """The published statistics as CSV for Excel and the provincial platform: UTF-8 with a byte
    order mark, CRLF line ends, one header row of "中文(code)" cells, then each township's rows
    (one per assistance type) and the county's total rows (level county)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f"{zh}({code})" for zh, code in CSV_COLUMNS])
    blocks = [(t["township_code"], "township", t["figures"]) for t in doc["townships"]]
    blocks.append((doc["county_code"], "county", doc["county_total"]))
    for region, level, rows in blocks:
        for f in rows:
            writer.writerow([doc["period"], doc["county_code"], region, level, f["assistance_type"],
                             ASSISTANCE_NAMES_ZH[f["assistance_type"]], f["cases"], f["people"], f["amount_fen"],
                             yuan(f["amount_fen"]), f["inclusions"], f["exits"]])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


# --- use cases on the verification application ----------------------------------------------
def filings_for(events: Iterable[Any], aggregates: Mapping[Any, Any]) -> list[CountyFiling]:
    """The filings the events about to be stored call for (VerificationApplication._record): one
    per township inclusion or exit, with its clock (the county's `clock_days`, kept by the case
    at acceptance, when it sets one)."""
    made = []
    for event in events:
        v = aggregates.get(event.originator_id)
        decision = filed_decision(event, v if isinstance(v, Verification) else None)
        if decision is not None:
            by = Meta(**{k: event.meta.get(k, "") for k in ("user_id", "role", "org_code", "correlation_id",
                                                              "causation_id", "reason")})
            made.append(CountyFiling.file(decision, filing_due(decision.decided_at, v.clock_days.get(CLOCK)), by))
    return made


def get_filing(app: "VerificationApplication", filing_id: str) -> CountyFiling | None:
    try:
        return app.repository.get(CountyFiling.create_id(filing_id))
    except AggregateNotFoundError:
        return None


def receive_filing(app: "VerificationApplication", filing_id: str, note: str | None, meta: Meta) -> CountyFiling:
    """The county records receipt, at the application's clock; a breach recorded meanwhile is no
    reason to fail the officer (taken again on the fresh state)."""
    for _ in range(RECEIPT_ATTEMPTS):
        f = get_filing(app, filing_id)
        if f is None:
            raise LookupError(filing_id)
        f.receive(note, app.clock.now(), meta)
        try:
            app.save(f)
            return f
        except IntegrityError:
            continue
    raise DecisionNotAllowed("the filing keeps changing; reload and retry", "changed_meanwhile")


def note_breach(app: "VerificationApplication", data: Mapping[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
    """DeadlineBreached of a county_filing clock: the filing is overdue (escalated once by notify)."""
    f = get_filing(app, data["deadline_id"].split("/", 1)[0])
    if f is not None and f.breached(data["deadline_id"], data["breached_at"], data["escalated_to"], meta):
        pe.collect_events(f)


def get_statistics(app: "VerificationApplication", county_code: str, period: str) -> MonthlyStatistics | None:
    try:
        return app.repository.get(MonthlyStatistics.create_id(MonthlyStatistics.id_of(county_code, period)))
    except AggregateNotFoundError:
        return None


def period_over(period: str, now: datetime) -> bool:
    return parse_period(period) < parse_period(period_of(business_date(now)))


def publish_statistics(app: "VerificationApplication", county_code: str, period: str,
                       rolls: Iterable[Mapping[str, Any]], meta: Meta) -> tuple[MonthlyStatistics, bool]:
    """Publish the county's figures for an ended period once: (statistics, True) when published
    now, (the statistics published before, False) when they were already."""
    found = get_statistics(app, county_code, period)
    if found is not None:
        return found, False
    now = app.clock.now()
    if not period_over(period, now):
        raise DecisionNotAllowed(f"period {period} is not over yet: its statistics are published after its end",
                                 "period_not_over")
    townships, total = figures(rolls, county_code, period)
    stats = MonthlyStatistics.publish(county_code, period, townships, total, now, meta)
    try:
        app.save(stats)
    except IntegrityError:  # another officer published them meanwhile: theirs stand
        found = get_statistics(app, county_code, period)
        assert found is not None
        return found, False
    return stats, True


# --- read models -------------------------------------------------------------------------------
ROLL = "benefit_roll"
FILING_DOC = "county_filing"
STATISTICS_DOC = "monthly_statistics"


def _update_roll(tx: SideTx, case_id: str, change: Any) -> None:
    doc = tx.get(ROLL, case_id)
    if doc is not None:
        change(doc)
        tx.put(ROLL, case_id, doc, ref=doc["region_code"][:6])


def project(event: Any, tx: SideTx) -> None:
    """Read models of 镇→县备案 and of the statistics (call it with every event; it writes beside
    the other projections and never stops them).

    - `county_filing`, keyed by filing id (ref: the township): each filing and where it stands.
    - `benefit_roll`, keyed by case (ref: the county): what the statistics count — the benefit's
      type, kind, first period, people and amount as approved, every change by its period, the
      deaths of counted members (one person fewer from the month after), the month approved and
      the month its first termination was decided.
    - `monthly_statistics`, keyed by statistics id (ref: the county): the figures as published.
    """
    if isinstance(event, Verification.Started):
        hh = event.application.household
        tx.put(ROLL, event.case_id, {
            "case_id": event.case_id, "region_code": event.application.region_code,
            "counted": [m.counted for m in hh.members], "single_person": hh.single_person_member_id is not None,
            "kind": None, "changes": [], "deaths": [], "exit_period": None,
        }, ref=event.application.region_code[:6])
    elif isinstance(event, Verification.Approved):
        b = event.benefit
        size = (event.assessment or {}).get("household_size") or event.members_count

        def approve(doc: dict[str, Any]) -> None:
            doc.update(kind=b.kind, assistance_type=b.benefit_type, first_period=b.first_period,
                       decided_period=period_of(business_date(datetime.fromisoformat(b.approved_at))),
                       approval_level=b.approval_level, household_size=max(1, int(size)),
                       monthly_amount_fen=b.monthly_amount_fen, one_off_amount_fen=b.one_off_amount_fen)

        _update_roll(tx, event.case_id, approve)
    elif isinstance(event, Verification.BenefitChanged):
        def change(doc: dict[str, Any]) -> None:
            doc["changes"].append({"change": event.change, "from_period": event.from_period,
                                   "monthly_amount_fen": getattr(event, "monthly_amount_fen", None)})
            if event.change == "terminate" and doc["exit_period"] is None:
                doc["exit_period"] = period_of(business_date(datetime.fromisoformat(event.decided_at)))

        _update_roll(tx, event.case_id, change)
    elif isinstance(event, Verification.MemberDied):
        def died(doc: dict[str, Any]) -> None:
            counted = doc["counted"]
            if not doc["single_person"] and event.member_index < len(counted) and counted[event.member_index]:
                doc["deaths"].append(next_period(period_of(date.fromisoformat(event.date_of_death))))

        _update_roll(tx, event.case_id, died)
    elif isinstance(event, CountyFiling.Due):
        tx.put(FILING_DOC, event.filing_id, {
            "filing_id": event.filing_id, "case_id": event.case_id, "benefit_id": event.benefit_id,
            "decision": event.decision, "assistance_type": event.assistance_type,
            "benefit_kind": event.benefit_kind, "region_code": event.region_code,
            "township_code": event.township_code, "county_code": event.county_code,
            "applicant_name_masked": event.applicant_name_masked, "household_size": event.household_size,
            "monthly_amount_fen": event.monthly_amount_fen, "one_off_amount_fen": event.one_off_amount_fen,
            "from_period": event.from_period, "decided_by": event.decided_by, "decided_at": event.decided_at,
            "due_date": event.due_date, "state": "due", "outcome": None, "received_by": None,
            "received_at": None, "note": None, "escalated_to": None,
        }, ref=event.township_code)
    elif isinstance(event, (CountyFiling.Received, CountyFiling.Overdue)):
        doc = tx.get(FILING_DOC, event.filing_id)
        if doc is None:
            return
        if isinstance(event, CountyFiling.Received):
            doc.update(state="filed", outcome=event.outcome, received_by=event.received_by,
                       received_at=event.received_at, note=event.note)
        elif doc["state"] == "due":
            doc.update(state="overdue", escalated_to=dict(event.escalated_to))
        tx.put(FILING_DOC, event.filing_id, doc, ref=doc["township_code"])
    elif isinstance(event, MonthlyStatistics.Published):
        tx.put(STATISTICS_DOC, event.statistics_id, {
            "statistics_id": event.statistics_id, "county_code": event.county_code, "period": event.period,
            "published_by": event.published_by, "published_at": event.published_at,
        }, ref=event.county_code)


# --- HTTP ------------------------------------------------------------------------------------
class CountyFilingReceiptIn(BaseModel):
    """The county records a township's filing as received; `{}` when there is nothing to note."""

    model_config = strict({"note": "纸质材料已随表报送，齐全"}, {})
    note: str | None = Field(default=None, min_length=1, max_length=NOTE_MAX,
                             description="anything the county officer notes on receipt")


class EscalationOut(BaseModel):
    level: Literal["county", "prefecture", "province"]
    office: str


class CountyFilingOut(BaseModel):
    """A filing as its read model keeps it (keys in the side store's order)."""

    applicant_name_masked: str
    assistance_type: Literal[ASSISTANCE_TYPES]
    benefit_id: str
    benefit_kind: Literal[BENEFIT_KINDS]
    case_id: str
    county_code: str
    decided_at: str = Field(description="the decision: the clock starts here")
    decided_by: str
    decision: Literal[FILING_DECISIONS] = Field(description="inclusion (审批新增) or exit (出保)")
    due_date: str = Field(description="YYYY-MM-DD: the last day to file (5 working days)")
    escalated_to: EscalationOut | None = Field(description="once overdue: the office notify escalated to")
    filing_id: str
    from_period: str = Field(description="YYYY-MM: an inclusion's first period, an exit's first period not paid")
    household_size: int
    monthly_amount_fen: int | None
    note: str | None
    one_off_amount_fen: int | None
    outcome: Literal[RECEIPT_OUTCOMES] | None = Field(description="once filed: met or late")
    received_at: str | None
    received_by: str | None
    region_code: str
    state: Literal[FILING_STATES]
    township_code: str = Field(description="the township answerable for the filing")


class CountyFilingsOut(BaseModel):
    items: list[CountyFilingOut] = Field(description="those within the caller's region, the earliest due first")


class FigureOut(BaseModel):
    assistance_type: Literal[ASSISTANCE_TYPES]
    cases: int = Field(description="户数: benefits paid or in force for the period (suspended ones not counted)")
    people: int = Field(description="人数: the people they cover")
    amount_fen: int = Field(description="monthly amounts for the period plus one-off relief granted in it")
    inclusions: int = Field(description="benefits approved in the period")
    exits: int = Field(description="monthly benefits whose termination was decided in the period")


class TownshipFiguresOut(BaseModel):
    township_code: str
    figures: list[FigureOut]


class MonthlyStatisticsOut(BaseModel):
    statistics_id: str
    county_code: str
    period: str
    townships: list[TownshipFiguresOut] = Field(description="each township with any figure, by code")
    county_total: list[FigureOut]
    published_by: str
    published_at: str


CountyCode = Annotated[str, Path(pattern=r"^\d{6}$", description="the county (six digits)", examples=["370502"])]
Period = Annotated[str, Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM", examples=["2026-11"])]
CSV_RESPONSES = {200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                       "description": "UTF-8 with BOM, CRLF; header cells 中文(code)"},
                 **problem_responses(401, 403, 404, 422, 503)}


def _county(county_code: str) -> str:
    if not is_known_county(county_code):
        raise Problem(422, "Request validation failed", "county_code is not a county of the register.",
                      slug="validation", errors=[{"parameter": "county_code", "in": "path",
                                                  "detail": "not a county-level GB/T 2260 code"}])
    return county_code


def router(runtime: "ServiceRuntime") -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    @api.get("/filings/county", tags=["county filings"], response_model=CountyFilingsOut, responses=LIST_ERRORS)
    async def county_filings(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        state: Annotated[Literal[FILING_STATES] | None, Query(description="due, overdue or filed")] = None,
        principal: Principal = runtime.auth.require(*FILING_READERS),
    ):
        """Township decisions filed with the county (镇→县备案: each inclusion and exit within 5
        working days), within the caller's region: due, overdue (the deadline watch escalated it)
        or filed (met or late)."""
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [doc for _, _, _, doc in tx.all(FILING_DOC)]
        items = [d for d in in_region(docs, principal, region) if state is None or d["state"] == state]
        items.sort(key=lambda d: (d["due_date"], d["decided_at"], d["filing_id"]))
        return {"items": items}

    @api.get("/filings/county/{filing_id}", tags=["county filings"], response_model=CountyFilingOut,
             responses=READ_ERRORS)
    async def county_filing(filing_id: str, principal: Principal = runtime.auth.require(*FILING_READERS)):
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get(FILING_DOC, filing_id)
        if doc is None:
            raise Problem(404, "Filing not found", f"no county filing {filing_id}")
        ensure_region(principal, doc["region_code"])
        return doc

    @api.post("/filings/county/{filing_id}/receipt", tags=["county filings"], response_model=CountyFilingOut,
              responses=COMMAND_ERRORS)
    async def receive(filing_id: str, body: CountyFilingReceiptIn, request: Request,
                      principal: Principal = runtime.auth.require(*RECEIVERS)):
        """A county officer of the filing's county records it as received (备案): met by 24:00 of
        the due day, late after it; publishes CountyFilingReceived and DeadlineCleared."""
        f = await asyncio.to_thread(get_filing, app, filing_id)
        if f is None:
            raise Problem(404, "Filing not found", f"no county filing {filing_id}")
        ensure_region(principal, f.county_code)

        async def handle() -> tuple[int, dict]:
            try:
                await asyncio.to_thread(receive_filing, app, filing_id, body.note, Meta.of(principal))
            except ProcedureError as exc:
                raise Problem(exc.status, "Filing not received", str(exc), slug=exc.rule.replace("_", "-"),
                              rule=exc.rule) from None
            runtime.saved()
            views = await runtime.views()
            with views.transaction() as tx:
                return 200, tx.get(FILING_DOC, filing_id)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/statistics/{county_code}/{period}", tags=["statistics"], response_model=MonthlyStatisticsOut,
              status_code=201, responses={200: {"model": MonthlyStatisticsOut,
                                                "description": "published before: the same figures"},
                                          **COMMAND_ERRORS})
    async def publish(county_code: CountyCode, period: Period, request: Request,
                      principal: Principal = runtime.auth.require(*STATISTICS_PUBLISHERS)):
        """Publish the county's statistics for an ended month (MonthlyStatisticsPublished, for the
        provincial platform): per township and for the county, by assistance type. Once per county
        and period: asked again, the figures first published (200)."""
        ensure_region(principal, _county(county_code))

        async def handle() -> tuple[int, dict]:
            found = await asyncio.to_thread(get_statistics, app, county_code, period)
            if found is not None:
                return 200, found.doc  # published before: never counted again
            views = await runtime.views()
            with views.transaction() as tx:
                rolls = tx.find(ROLL, county_code)
            try:
                stats, created = await asyncio.to_thread(publish_statistics, app, county_code, period, rolls,
                                                         Meta.of(principal))
            except ProcedureError as exc:
                raise Problem(exc.status, "Statistics not published", str(exc), slug=exc.rule.replace("_", "-"),
                              rule=exc.rule) from None
            runtime.saved()
            return (201 if created else 200), stats.doc

        return await runtime.idempotent(request, principal.user_id, handle)

    async def published(county_code: str, period: str, principal: Principal) -> dict[str, Any]:
        ensure_region(principal, _county(county_code))
        stats = await asyncio.to_thread(get_statistics, app, county_code, period)
        if stats is None:
            raise Problem(404, "Statistics not published",
                          f"the statistics of county {county_code} for {period} were not published")
        return stats.doc

    @api.get("/statistics/{county_code}/{period}.csv", tags=["statistics"], response_class=Response,
             responses=CSV_RESPONSES)
    async def statistics_as_csv(county_code: CountyCode, period: Period,
                                principal: Principal = runtime.auth.require(*STATISTICS_READERS)):
        """The published statistics as CSV (UTF-8 with BOM for Excel; one header row whose cells
        give the Chinese heading and the English code, 保障户数(cases)); amounts in fen and yuan."""
        doc = await published(county_code, period, principal)
        return Response(statistics_csv(doc), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="statistics-{county_code}-{period}.csv"'})

    @api.get("/statistics/{county_code}/{period}", tags=["statistics"], response_model=MonthlyStatisticsOut,
             responses=READ_ERRORS)
    async def statistics(county_code: CountyCode, period: Period,
                         principal: Principal = runtime.auth.require(*STATISTICS_READERS)):
        """The published statistics, as MonthlyStatisticsPublished carried them."""
        return await published(county_code, period, principal)

    return api
