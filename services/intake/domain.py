"""Intake's aggregates: the household's Case and the Referrals raised from it.

No I/O here. Events are declared beside the methods that trigger them; the ones
with `integration()` are published by the outbox relay.
"""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Outgoing

# A case moves forward only; a late or repeated event never moves it back.
CASE_STATUSES = ("submitted", "verified", "approved", "refused")


def later_status(current: str, new: str) -> str:
    return new if CASE_STATUSES.index(new) > CASE_STATUSES.index(current) else current


class Case(LifelineAggregate):
    class Submitted(LifelineAggregate.Created):
        case_id: str
        application: dict[str, Any]

        def integration(self) -> Outgoing:
            return Outgoing("ApplicationSubmitted", self.case_id, dict(self.application))

    class VerificationNoted(LifelineAggregate.Event):
        case_id: str
        outcome: str
        per_capita_income_fen: int

        def apply(self, case: "Case") -> None:
            case.verification_outcome = self.outcome
            case.per_capita_income_fen = self.per_capita_income_fen
            case._advance("verified")

    class BenefitDecided(LifelineAggregate.Event):
        case_id: str
        decision: str  # approved | refused
        benefit_id: str
        reason: str

        def apply(self, case: "Case") -> None:
            case.benefit_id = self.benefit_id or case.benefit_id
            case.decision_reason = self.reason
            case._advance(self.decision)

    def __init__(self, case_id: str, application: dict[str, Any], meta: dict[str, str]):
        self.case_id = case_id
        self.application = application
        self.status = "submitted"
        self.verification_outcome: str | None = None
        self.per_capita_income_fen: int | None = None
        self.benefit_id: str | None = None
        self.decision_reason: str | None = None
        self.referral_ids: list[str] = []

    @property
    def region_code(self) -> str:
        return self.application["region_code"]

    def _advance(self, status: str) -> None:
        self.status = later_status(self.status, status)

    def note_verification(self, outcome: str, per_capita_income_fen: int, meta: dict) -> None:
        self.trigger_event(
            self.VerificationNoted,
            case_id=self.case_id,
            outcome=outcome,
            per_capita_income_fen=per_capita_income_fen,
            meta=meta,
        )

    def note_decision(self, decision: str, benefit_id: str, reason: str, meta: dict) -> None:
        if decision not in ("approved", "refused"):
            raise ValueError(f"unknown decision {decision!r}")
        self.trigger_event(
            self.BenefitDecided, case_id=self.case_id, decision=decision, benefit_id=benefit_id, reason=reason, meta=meta
        )


class Referral(LifelineAggregate):
    """A referral (转介) to a department or to charity, tracked until answered."""

    class Raised(LifelineAggregate.Created):
        referral_id: str
        case_id: str
        details: dict[str, Any]

        def integration(self) -> Outgoing:
            data = {"referral_id": self.referral_id, "case_id": self.case_id, **self.details}
            # Also on the referral feed, read by departments and the charity
            # federation: it carries the masked profile only.
            return Outgoing("ReferralRaised", self.case_id, data)

    def __init__(self, referral_id: str, case_id: str, details: dict[str, Any], meta: dict):
        self.referral_id = referral_id
        self.case_id = case_id
        self.details = details


def mask_name(name: str) -> str:
    """张三丰 → 张**: the surname stays, the given name is hidden."""
    return name[:1] + "*" * max(len(name) - 1, 1)
