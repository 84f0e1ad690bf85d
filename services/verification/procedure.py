"""What each step of the procedure leaves on a case (the Verification aggregate's state).

Frozen values, built by the aggregate's events as they are applied; the events themselves
keep plain fields (they are also the wire form). `dataclasses.asdict` of each is what
`GET /v1/verifications/{case_id}` shows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lifeline.rules.vocabulary import (
    ASSISTANCE_TYPES,
    BENEFIT_CHANGES,
    BENEFIT_STATUSES,
    DEADLINE_OUTCOMES,
    GRIEVANCE_CHANNELS,
    GRIEVANCE_OUTCOMES,
    GRIEVANCE_SUBJECTS,
    PROPOSALS,
    REDECISION_EVIDENCE,
    SURVEYOR_ROLES,
)


def _one_of(value: Any, allowed: tuple[Any, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(str, allowed))}; got {value!r}")


@dataclass(frozen=True)
class Surveyor:
    name: str
    role: Literal[SURVEYOR_ROLES]  # village_cadre: 驻村干部

    def __post_init__(self) -> None:
        _one_of(self.role, SURVEYOR_ROLES, "a surveyor's role")


@dataclass(frozen=True)
class Survey:
    """入户调查."""

    surveyors: tuple[Surveyor, ...]
    visited_on: str
    findings: str
    recorded_at: str
    recorded_by: str


@dataclass(frozen=True)
class Proposal:
    """初审: include with the amount the assessment gives, or refuse."""

    proposal: Literal[PROPOSALS]
    assistance_type: Literal[ASSISTANCE_TYPES]
    monthly_amount_fen: int | None
    one_off_amount_fen: int | None
    reason: str
    proposed_at: str
    proposed_by: str

    def __post_init__(self) -> None:
        _one_of(self.proposal, PROPOSALS, "a proposal")


@dataclass(frozen=True)
class PublicNotice:
    """公示 on the village board."""

    public_notice_id: str
    village_code: str
    notice_from: str
    notice_until: str
    ends_at: str
    posted_at: str

    def running_at(self, now: datetime) -> bool:
        return now < datetime.fromisoformat(self.ends_at)


@dataclass(frozen=True)
class Objection:
    objection_id: str
    text: str
    received_at: str
    raised_at: str


@dataclass(frozen=True)
class Appraisal:
    """民主评议 (advisory)."""

    held_on: str
    participants: int
    votes_for: int
    votes_against: int
    abstentions: int
    opinion: str
    recorded_at: str


@dataclass(frozen=True)
class MajorDispute:
    reason: str
    declared_at: str


@dataclass(frozen=True)
class CaseDeadline:
    """A statutory deadline on this case, as DeadlineSet carried it, and how it ended."""

    deadline_id: str
    clock: str
    label_zh: str
    start_date: str
    due_date: str
    due_at: str
    warn_at: str
    period: str
    calendar_known: bool
    warnings: tuple[str, ...]
    state: Literal[("open", *DEADLINE_OUTCOMES)] = "open"  # open, or how it was cleared
    cleared_at: str | None = None

    def __post_init__(self) -> None:
        _one_of(self.state, ("open", *DEADLINE_OUTCOMES), "a deadline's state")

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def outcome_at(self, now: datetime) -> str:
        """How the step done at `now` clears it: met before its due time, late after."""
        return "met" if now < datetime.fromisoformat(self.due_at) else "late"

    def cleared(self, outcome: str, at: str) -> "CaseDeadline":
        return dataclasses.replace(self, state=outcome, cleared_at=at)


@dataclass(frozen=True)
class Decision:
    """A decision taken on the case, with the assessment it was taken on and the version of
    the verification whose records it read (a grievance may take it again on those)."""

    decision: Literal["approve", "refuse"]
    decided_at: str
    by: str
    reason: str
    benefit_id: str | None
    assessment: dict[str, Any]
    evidence_version: int


@dataclass(frozen=True)
class Grievance:
    """异议、申诉 against the check's result, a refusal or an adjustment."""

    grievance_id: str
    against: Literal[GRIEVANCE_SUBJECTS]
    text: str
    channel: Literal[GRIEVANCE_CHANNELS]
    objection_id: str | None
    raised_at: str
    raised_by: str
    state: Literal["open", "decided"] = "open"
    outcome: Literal[GRIEVANCE_OUTCOMES] | None = None
    outcome_reason: str | None = None
    evidence: Literal[REDECISION_EVIDENCE] | None = None
    decided_at: str | None = None

    def __post_init__(self) -> None:
        _one_of(self.against, GRIEVANCE_SUBJECTS, "what a grievance contests")
        _one_of(self.channel, GRIEVANCE_CHANNELS, "a grievance's channel")
        _one_of(self.outcome, (*GRIEVANCE_OUTCOMES, None), "a grievance's outcome")
        _one_of(self.evidence, (*REDECISION_EVIDENCE, None), "the evidence of a second decision")

    def decided(self, outcome: str, reason: str, evidence: str | None, at: str) -> "Grievance":
        return dataclasses.replace(self, state="decided", outcome=outcome, outcome_reason=reason,
                                   evidence=evidence, decided_at=at)


@dataclass(frozen=True)
class BenefitChange:
    """A change to the approved monthly benefit (动态管理): from `from_period` on, the benefit is
    `status` at `monthly_amount_fen` a month (the amount in force; paid only while paying)."""

    change: Literal[BENEFIT_CHANGES]
    from_period: str
    status: Literal[BENEFIT_STATUSES]
    monthly_amount_fen: int
    reason: str
    decided_by: str
    decided_at: str

    def __post_init__(self) -> None:
        _one_of(self.change, BENEFIT_CHANGES, "a benefit change")
        _one_of(self.status, BENEFIT_STATUSES, "a benefit's status")


# --- after approval (issue 11): reviews, deaths, fraud ----------------------------------------
@dataclass(frozen=True)
class Review:
    """A periodic review (动态管理): the economic check asked again, and what it ended in."""

    review_id: str
    state: Literal["open", "completed"]
    scheduled_for: str | None  # the review date it was due on (None: started before any was set)
    grace_reason: str | None   # named by the caseworker (pensioner: computed when not named)
    grace_months: int | None
    reason: str
    started_by: str
    started_at: str
    departments: tuple[str, ...]
    outcome: str | None = None  # services.verification.review.REVIEW_OUTCOMES
    per_capita_income_fen: int | None = None
    monthly_amount_fen: int | None = None  # the new amount (adjusted)
    from_period: str | None = None         # the first period its change applies to
    grace: dict[str, Any] | None = None    # {reason, months, last_paid_period}
    next_review_date: str | None = None
    completed_at: str | None = None

    def completed(self, **outcome: Any) -> "Review":
        return dataclasses.replace(self, state="completed", **outcome)


@dataclass(frozen=True)
class Death:
    """A member's death a department reported (once per record), the member by position in the
    application and by masked name: no ID number is kept here."""

    record_id: str
    member_index: int
    member: str
    relation: str
    date_of_death: str
    department: str
    recorded_at: str


@dataclass(frozen=True)
class FraudReport:
    """虚报、隐瞒、伪造, reported by a county officer and confirmed (or refused) by another."""

    kinds: tuple[str, ...]
    evidence: str
    fraud_since: str
    reported_by: str
    reported_at: str
    state: Literal["reported", "refused", "recorded"] = "reported"
    decided_by: str | None = None
    decided_at: str | None = None
    refusal_reason: str | None = None
    terminated_from_period: str | None = None

    def decided(self, state: str, by: str, at: str, **more: Any) -> "FraudReport":
        return dataclasses.replace(self, state=state, decided_by=by, decided_at=at, **more)
