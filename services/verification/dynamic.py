"""HTTP models of dynamic management and fraud (issue 11): reviews and the benefits due for one,
a review concluded with a suspension, fraud reported and confirmed by two county officers (the
routes are in api.py, with every route of the service).

The use cases are VerificationApplication's (start_review, suspend_unreachable, report_fraud,
confirm_fraud, refuse_fraud); the rules are the Verification aggregate's and review.py's. A
step refused is problem+json naming the rule (409 a state conflict, 422 a rule of the body).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from lifeline.http.app import strict

from services.verification.review import FRAUD_KINDS, GRACE_REASONS, REVIEW_OUTCOMES

# Who starts a review and concludes it with a suspension: the township's caseworkers (and above).
REVIEWERS_OF_CASES = ("caseworker", "reviewer", "county_officer", "admin")
# Who reports fraud, confirms or refuses a report: county officers of the case's county only.
FRAUD_OFFICERS = ("county_officer",)


class ReviewIn(BaseModel):
    """A review (复核) of an approved monthly benefit: the departments are asked again."""

    model_config = strict(
        {"reason": "年度复核"},
        {"reason": "半年复核：家庭成员毕业后实现就业", "grace_reason": "graduate_employed", "grace_months": 9},
        {"reason": "年度复核", "grace_reason": "public_employment"},
    )
    reason: str = Field(default="定期复核（动态管理）", min_length=1, max_length=2000)
    grace_reason: Literal[GRACE_REASONS] | None = Field(
        default=None,
        description="should income now be above the line, why the benefit goes on for a while (延退): "
                    "graduate_employed 6-12 months, public_employment 24, disabled_employment 36, epidemic 3-6 "
                    "(the county's policy); pensioner (6 months, between 1 and 2 times the standard) is also "
                    "computed when not named")
    grace_months: int | None = Field(
        default=None, ge=1, le=120, validate_default=True,
        description="with grace_reason only: the months within the policy's range (default: the policy's)")

    @field_validator("grace_months")
    @classmethod
    def _only_with_a_reason(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("grace_reason") is None:
            raise ValueError("grace_months comes with a grace_reason")
        return value


class SuspensionIn(BaseModel):
    """Conclude the running review with a suspension: the household cannot be reached."""

    model_config = strict({"reason": "复核期间多次入户、电话联系均未找到申请人，暂停发放。"})
    reason: str = Field(min_length=1, max_length=2000)


class FraudIn(BaseModel):
    """Fraud (虚报、隐瞒、伪造) reported by a county officer, with the evidence."""

    model_config = strict({
        "kinds": ["concealment"],
        "evidence": "经查，申请人隐瞒其配偶在外地务工的工资收入（每月约4500元），有银行流水为证。",
        "fraud_since": "2026-03-01",
    })
    kinds: list[Literal[FRAUD_KINDS]] = Field(
        min_length=1, max_length=3, description="false_report 虚报, concealment 隐瞒, forgery 伪造; each once")
    evidence: str = Field(min_length=1, max_length=4000)
    fraud_since: date = Field(description="the day the fraud began: what was paid since is recovered")

    @field_validator("kinds")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each kind is named once")
        return value


class FraudRefusalIn(BaseModel):
    model_config = strict({"reason": "经核查，所称收入系一次性劳务报酬，已如实申报，不构成隐瞒。"})
    reason: str = Field(min_length=1, max_length=2000)


# --- responses ---------------------------------------------------------------------------
class GraceOut(BaseModel):
    last_paid_period: str = Field(description="YYYY-MM: the last period paid")
    months: int
    reason: Literal[GRACE_REASONS]


class ReviewDoc(BaseModel):
    """A review (application.review_view, the `review` read model; keys in the side store's order)."""

    case_id: str
    completed_at: str | None
    departments_answered: list[str]
    departments_requested: list[str]
    from_period: str | None = Field(description="YYYY-MM: the first period its change applies to")
    grace: GraceOut | None
    grace_months: int | None
    grace_reason: Literal[GRACE_REASONS] | None
    monthly_amount_fen: int | None = Field(description="the new monthly amount when adjusted")
    next_review_date: str | None
    outcome: Literal[REVIEW_OUTCOMES] | None
    per_capita_income_fen: int | None
    reason: str
    region_code: str
    review_id: str
    scheduled_for: str | None
    started_at: str
    started_by: str
    state: Literal["open", "completed"]


class ReviewDueDoc(BaseModel):
    """An approved monthly benefit still running, and when it is next reviewed."""

    benefit_status: Literal["paying", "suspended"]
    case_id: str
    cycle_months: int = Field(description="12 (annual) or 6 (half-yearly), by the county's policy")
    monthly_amount_fen: int | None
    next_review_date: str = Field(description="YYYY-MM-DD")
    region_code: str
    review_id: str | None = Field(description="the review running now, if any")


class ReviewsDueOut(BaseModel):
    before: str = Field(description="YYYY-MM-DD: those due on or before this day")
    items: list[ReviewDueDoc] = Field(description="those within the caller's region, the earliest first")


class FraudOut(BaseModel):
    """The case's fraud report and its decision (application.fraud_view)."""

    case_id: str
    kinds: list[Literal[FRAUD_KINDS]]
    evidence: str
    fraud_since: str
    reported_by: str
    reported_at: str
    state: Literal["reported", "refused", "recorded"]
    decided_by: str | None
    decided_at: str | None
    refusal_reason: str | None
    terminated_from_period: str | None = Field(description="YYYY-MM, once recorded: the first period not paid")


__all__ = ["FRAUD_OFFICERS", "REVIEWERS_OF_CASES", "FraudIn", "FraudOut", "FraudRefusalIn", "ReviewDoc",
           "ReviewIn", "ReviewsDueOut", "SuspensionIn"]
