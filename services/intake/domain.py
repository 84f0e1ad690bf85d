"""Intake's aggregates: the household's Case and the Referrals raised from it.

No I/O here. Events are declared beside the methods that trigger them;
`outbound.py` says which of them leave the service.
"""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import Application, HouseholdProfile, StoresApplication

# A case moves forward only; a late or repeated event never moves it back.
CASE_STATUSES = ("submitted", "verified", "approved", "refused")


def later_status(current: str, new: str) -> str:
    return new if CASE_STATUSES.index(new) > CASE_STATUSES.index(current) else current


class Case(LifelineAggregate):
    id_kind = "case"

    class Submitted(StoresApplication, LifelineAggregate.Created):
        case_id: str
        application: Application

    class VerificationNoted(LifelineAggregate.Event):
        case_id: str
        outcome: str
        per_capita_income_fen: int

        def apply(self, case: "Case") -> None:
            case.verification_outcome = self.outcome
            case.per_capita_income_fen = self.per_capita_income_fen
            case.status = later_status(case.status, "verified")

    class BenefitDecided(LifelineAggregate.Event):
        case_id: str
        decision: str  # approved | refused
        benefit_id: str
        reason: str

        def apply(self, case: "Case") -> None:
            case.benefit_id = self.benefit_id or case.benefit_id
            case.decision_reason = self.reason
            case.status = later_status(case.status, self.decision)

    @classmethod
    def register(cls, application: Application, by: Meta) -> "Case":
        return cls._create(
            cls.Submitted, id=cls.create_id(application.case_id), case_id=application.case_id,
            application=application, meta=by.as_dict(),
        )

    def __init__(self, case_id: str, application: Application, meta: dict[str, str]):
        self.case_id = case_id
        self.application = application
        self.status = "submitted"
        self.verification_outcome: str | None = None
        self.per_capita_income_fen: int | None = None
        self.benefit_id: str | None = None
        self.decision_reason: str | None = None

    @property
    def region_code(self) -> str:
        return self.application.region_code

    def note_verification(self, outcome: str, per_capita_income_fen: int, by: Meta) -> None:
        self.trigger_event(
            self.VerificationNoted, case_id=self.case_id, outcome=outcome,
            per_capita_income_fen=per_capita_income_fen, meta=by.as_dict(),
        )

    def note_decision(self, decision: str, benefit_id: str, reason: str, by: Meta) -> None:
        if decision not in ("approved", "refused"):
            raise ValueError(f"unknown decision {decision!r}")
        self.trigger_event(
            self.BenefitDecided, case_id=self.case_id, decision=decision, benefit_id=benefit_id,
            reason=reason, meta=by.as_dict(),
        )


class Referral(LifelineAggregate):
    """A referral (转介) to a department or to charity, tracked until answered."""

    id_kind = "referral"

    class Raised(LifelineAggregate.Created):
        referral_id: str
        case_id: str
        target: str
        need_category: str
        amount_asked_fen: int
        urgency: str
        due_date: str
        consent_to_share: bool
        household_profile: HouseholdProfile  # masked: the referral feed carries it
        raised_at: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(state.pop("details"))  # v1 kept the request in one dict
            state["household_profile"] = HouseholdProfile(**state["household_profile"])

    @classmethod
    def raise_for(cls, case: Case, referral_id: str, target: str, need_category: str,
                  amount_asked_fen: int, urgency: str, due_date: str, consent_to_share: bool,
                  raised_at: str, by: Meta) -> "Referral":
        return cls._create(
            cls.Raised, id=cls.create_id(referral_id), referral_id=referral_id,
            case_id=case.case_id, target=target, need_category=need_category,
            amount_asked_fen=amount_asked_fen, urgency=urgency, due_date=due_date,
            consent_to_share=consent_to_share, household_profile=HouseholdProfile.of(case.application),
            raised_at=raised_at,
            meta=by.as_dict(),
        )

    def __init__(self, referral_id: str, case_id: str, target: str, need_category: str,
                 amount_asked_fen: int, urgency: str, due_date: str, consent_to_share: bool,
                 household_profile: HouseholdProfile, raised_at: str, meta: dict):
        self.referral_id = referral_id
        self.case_id = case_id
        self.target = target
        self.need_category = need_category
        self.status = "raised"
