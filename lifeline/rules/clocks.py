"""Statutory clocks of the verification procedure (SPEC §4, seed 002 审核确认流程).

Counting follows the Civil Code arts. 201-203:
- the day of the starting event does not count (art. 201);
- N working days end at 24:00 Asia/Shanghai of the N-th working day after it;
- N calendar days end at 24:00 of the N-th day after it; if that day is a rest day (weekend or
  statutory holiday, never a make-up working day) the period ends on the first working day
  after the rest (art. 203).

Representation: ``Deadline.due_at`` is the *exclusive* end of the due day, i.e. 00:00 Asia/Shanghai
of the following day ("24:00 of the due day"). A moment ``m`` is late iff ``m >= due_at``;
``due_date`` carries the last day itself for display.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from lifeline.rules.calendar import StatutoryCalendar, default_calendar
from lifeline.rules.periods import require_aware, start_of_day, to_shanghai

Kind = Literal["working", "calendar"]


@dataclass(frozen=True)
class ClockSpec:
    """A clock's default length. Every number here is the seed default, overridable by callers."""

    name: str
    kind: Kind
    days: int
    warn_lead_days: int
    label_zh: str
    source: str


CLOCKS: dict[str, ClockSpec] = {c.name: c for c in (
    ClockSpec("verification_request", "working", 3, 1, "提请家庭经济状况核对",
              "seed 002: 各乡镇在3个工作日内提请县民政部门开展经济状况核对"),
    ClockSpec("verification_report", "working", 5, 1, "出具核对报告（3至5个工作日）",
              "seed 002: 县民政核对机构应在3至5个工作日内出具核对报告"),
    ClockSpec("household_survey", "working", 3, 1, "入户调查",
              "seed 002: 各乡镇应当于受理申请后3个工作日内…调查申请人家庭经济状况"),
    ClockSpec("initial_review", "working", 3, 1, "初步审核",
              "seed 002: 入户调查工作结束3个工作日内，各乡镇经办机构提出初审意见"),
    ClockSpec("public_notice", "calendar", 7, 1, "初审公示（7天）",
              "seed 002: 在村(居)务公开栏进行7天公示"),
    ClockSpec("democratic_appraisal", "working", 3, 1, "民主评议",
              "seed 002: 3个工作日内组织…村级民主评议"),
    ClockSpec("decision", "working", 3, 1, "审核确认",
              "seed 002: 上报…材料3个工作日内，领导小组要召开审核确认会"),
    ClockSpec("refusal_notice", "working", 3, 1, "不予批准决定书",
              "seed 002: 应当在作出决定3个工作日内，出具《不予批准决定书》"),
    ClockSpec("whole_procedure", "working", 20, 3, "审核确认全程（20个工作日）",
              "seed 002: 自受理委托核查之日起…20个工作日内完成救助审核确认工作"),
    ClockSpec("whole_procedure_major_dispute", "working", 30, 3, "审核确认全程（重大异议，30个工作日）",
              "seed 002: 遇有重大异议…最长不得超过30个工作日"),
    ClockSpec("referral", "working", 5, 1, "转介办理", "SPEC §4: referred with a due date"),
    ClockSpec("grievance", "working", 15, 3, "异议申诉办理",
              "SPEC §4: each grievance gets a due date; default 15 working days (judgement)"),
    ClockSpec("emergency_post_approval", "working", 5, 1, "先行救助后补审批手续",
              "SPEC §4 先救助、后补手续; seed 004 后置审批; default 5 working days (judgement)"),
    ClockSpec("discovery_contact", "working", 3, 1, "主动发现后联系核实",
              "SPEC §4 主动发现: the office makes contact after a report; default 3 working days (issue 11)"),
    ClockSpec("care_visit", "calendar", 30, 3, "分散供养探访",
              "seed 002: 每月至少开展一次分散供养特困人员探视巡访服务工作; the cycle is the policy's "
              "care.visit_cycle_months (default 1, counted in months: calendar_months_due; issue 17)"),
    ClockSpec("county_filing", "working", 5, 1, "乡镇审核确认结果报县备案",
              "seed 002: 负责在审批新增和出保结束后5个工作日内上报县民政局备案"),
)}


@dataclass(frozen=True)
class Deadline:
    due_at: datetime          # exclusive end: 00:00 Asia/Shanghai of the day after due_date
    warn_at: datetime         # when the deadline watch should warn (DeadlineWarning)
    calendar_known: bool      # False when a year in the period fell back to weekdays
    warnings: tuple[str, ...] = ()
    clock: str = ""
    start_date: date | None = None
    due_date: date | None = None
    period: str = ""

    def is_breached(self, now: datetime) -> bool:
        return require_aware(now, "now") >= self.due_at

    def is_warning(self, now: datetime) -> bool:
        return self.warn_at <= require_aware(now, "now") < self.due_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "period": self.period,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "due_date": self.due_date.isoformat() if self.due_date else None,
            "due_at": self.due_at.isoformat(),
            "warn_at": self.warn_at.isoformat(),
            "calendar_known": self.calendar_known,
            "warnings": list(self.warnings),
        }


def _positive(n: int, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return n


def working_days_due(start: datetime, days: int, *, cal: StatutoryCalendar | None = None,
                     clock: str = "", warn_lead_days: int = 1) -> Deadline:
    """Due at the end of the ``days``-th working day after the day of ``start``.

    ``warn_at`` is 00:00 of the first of the last ``warn_lead_days`` working days of the period
    (with the default 1: the start of the due day), never earlier than ``start``.
    """
    cal = cal or default_calendar()
    _positive(days, "days")
    local = to_shanghai(start)
    first = local.date()
    due_date = cal.add_working_days(first, days)
    warn_day = cal.add_working_days(due_date, -(max(warn_lead_days, 1) - 1))
    return _deadline(cal, local, due_date, warn_day, clock, f"{days} working days")


def calendar_days_due(start: datetime, days: int, *, cal: StatutoryCalendar | None = None,
                      clock: str = "", warn_lead_days: int = 1) -> Deadline:
    """Due at the end of the ``days``-th day after the day of ``start``, moved past a rest day."""
    cal = cal or default_calendar()
    _positive(days, "days")
    local = to_shanghai(start)
    first = local.date()
    nominal = first + timedelta(days=days)
    due_date = cal.next_working_day(nominal)  # art. 203: a rest day moves to the day after rest
    warn_day = due_date - timedelta(days=max(warn_lead_days, 1) - 1)
    return _deadline(cal, local, due_date, warn_day, clock, f"{days} calendar days")


def calendar_months_due(start: datetime, months: int, *, cal: StatutoryCalendar | None = None,
                        clock: str = "", warn_lead_days: int = 1) -> Deadline:
    """Due at the end of the same day ``months`` months after the day of ``start`` (the month's
    last day when it has no such day: 31 Jan + 1 month is 28/29 Feb; Civil Code art. 202), moved
    past a rest day (art. 203) as for calendar days; warned from ``warn_lead_days`` days before."""
    cal = cal or default_calendar()
    _positive(months, "months")
    local = to_shanghai(start)
    first = local.date()
    index = first.year * 12 + first.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    nominal = date(year, month, min(first.day, last))
    due_date = cal.next_working_day(nominal)
    warn_day = due_date - timedelta(days=max(warn_lead_days, 1) - 1)
    unit = "month" if months == 1 else "months"
    return _deadline(cal, local, due_date, warn_day, clock, f"{months} {unit}")


def _deadline(cal: StatutoryCalendar, local: datetime, due_date: date, warn_day: date,
              clock: str, period: str) -> Deadline:
    """Due at 24:00 of ``due_date``; warned from the start of ``warn_day``, never before ``local``."""
    warnings = cal.warnings_for(local.date(), due_date)
    return Deadline(
        due_at=start_of_day(due_date + timedelta(days=1)),
        warn_at=max(start_of_day(warn_day), local),
        calendar_known=not warnings,
        warnings=warnings,
        clock=clock,
        start_date=local.date(),
        due_date=due_date,
        period=period,
    )


def clock_due(name: str, start: datetime, *, cal: StatutoryCalendar | None = None,
              days: int | None = None) -> Deadline:
    """Any clock of :data:`CLOCKS` by name (``days`` overrides the default length)."""
    spec = CLOCKS[name]
    n = spec.days if days is None else days
    fn = working_days_due if spec.kind == "working" else calendar_days_due
    return fn(start, n, cal=cal, clock=name, warn_lead_days=spec.warn_lead_days)


def verification_request_due(start: datetime, cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("verification_request", start, cal=cal)


def verification_report_due(requested_at: datetime, cal: StatutoryCalendar | None = None, *,
                            target_days: int = 3, limit_days: int = 5) -> Deadline:
    """The report is expected within 3 and due within 5 working days: the warning fires when
    the 3-day target has passed, the breach when the 5-day limit has."""
    if target_days > limit_days:
        raise ValueError("target_days must not exceed limit_days")
    limit = working_days_due(requested_at, limit_days, cal=cal, clock="verification_report")
    target = working_days_due(requested_at, target_days, cal=cal)
    return Deadline(due_at=limit.due_at, warn_at=target.due_at,
                    calendar_known=limit.calendar_known, warnings=limit.warnings,
                    clock="verification_report", start_date=limit.start_date,
                    due_date=limit.due_date, period=f"{target_days}-{limit_days} working days")


def household_survey_due(accepted_at: datetime, cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("household_survey", accepted_at, cal=cal)


def initial_review_due(survey_done_at: datetime, cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("initial_review", survey_done_at, cal=cal)


def public_notice_due(posted_at: datetime, cal: StatutoryCalendar | None = None) -> Deadline:
    """The 7-day notice ends at 24:00 of the 7th day (moved past a rest day)."""
    return clock_due("public_notice", posted_at, cal=cal)


def democratic_appraisal_due(objection_at: datetime,
                             cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("democratic_appraisal", objection_at, cal=cal)


def decision_due(material_received_at: datetime, cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("decision", material_received_at, cal=cal)


def refusal_notice_due(decided_at: datetime, cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("refusal_notice", decided_at, cal=cal)


def whole_procedure_due(accepted_at: datetime, cal: StatutoryCalendar | None = None, *,
                        major_dispute: bool = False) -> Deadline:
    """20 working days from acceptance; 30 with a major dispute (keyword-only, so that a
    calendar passed positionally, as to every other clock, can never select the 30 days)."""
    if not isinstance(major_dispute, bool):
        raise TypeError("major_dispute must be True or False")
    name = "whole_procedure_major_dispute" if major_dispute else "whole_procedure"
    return clock_due(name, accepted_at, cal=cal)


def referral_due(raised_at: datetime, working_days: int = CLOCKS["referral"].days,
                 cal: StatutoryCalendar | None = None) -> Deadline:
    return clock_due("referral", raised_at, cal=cal, days=working_days)


def emergency_post_approval_due(granted_at: datetime, working_days: int | None = None,
                                cal: StatutoryCalendar | None = None) -> Deadline:
    """Paperwork after relief paid from the township reserve (先救助、后补手续). The policy's
    ``emergency.post_approval_working_days`` is the value callers should pass."""
    return clock_due("emergency_post_approval", granted_at, cal=cal, days=working_days)
