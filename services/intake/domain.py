"""Intake's aggregates: the household's Case and the Referrals raised from it.

No I/O here. Events are declared beside the methods that trigger them;
`outbound.py` says which of them leave the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.deadlines import DeadlineClearedEvent, DeadlineSetEvent
from lifeline.domain.values import Application, HouseholdProfile, StoresApplication, mask_name
from lifeline.rules.vocabulary import REQUIRED_MATERIALS

# A case moves forward only; a late or repeated event never moves it back. Not accepted
# (不予受理) or withdrawn ends the case: nothing moves it again. A case held as a suspected
# duplicate goes back to submitted when released (DuplicateDecided, the one step back).
# Discovered: a discovery report reserved the case; the application made from it submits it.
CASE_STATUSES = (
    "discovered", "submitted", "suspected_duplicate", "materials_requested", "accepted", "verified",
    "approved", "refused", "not_accepted", "withdrawn",
)
# Where the acceptance decision (受理, 不予受理, 补正材料) may still be taken.
ACCEPTANCE_OPEN = ("submitted", "materials_requested")
# Where nothing moves the case any more.
CASE_ENDED = ("not_accepted", "withdrawn")


def later_status(current: str, new: str) -> str:
    if current in CASE_ENDED:
        return current
    return new if CASE_STATUSES.index(new) > CASE_STATUSES.index(current) else current


class AcceptanceNotAllowed(Exception):
    """The case's state does not allow this decision on acceptance (409); `rule` names why,
    `case_status` the state when that is the reason."""

    def __init__(self, rule: str, message: str, case_status: str | None = None):
        super().__init__(message)
        self.rule = rule
        self.case_status = case_status


class AcceptanceRuleBroken(ValueError):
    """The request breaks a rule of acceptance (422); `rule` names it
    (one_id_one_authorisation 一证一书, missing_materials_at_once 一次性告知, ...)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def _materials(codes: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"{code} ({REQUIRED_MATERIALS[code]})" for code in codes)


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

    class Accepted(LifelineAggregate.Event):
        """受理: the application is accepted; the statutory clocks start (ApplicationAccepted)."""

        case_id: str
        region_code: str
        assistance_type: str
        applicant_name_masked: str
        members_count: int
        reason: str
        accepted_at: str

        def apply(self, case: "Case") -> None:
            case.status = later_status(case.status, "accepted")
            case.accepted_at = self.accepted_at
            case.missing_materials = []

    class AcceptanceRefused(LifelineAggregate.Event):
        """不予受理: the application is not accepted, with reasons (ApplicationRefused)."""

        case_id: str
        region_code: str
        assistance_type: str
        applicant_name_masked: str
        reason: str
        refused_at: str

        def apply(self, case: "Case") -> None:
            case.status = later_status(case.status, "not_accepted")
            case.missing_materials = []

    class MaterialsRequested(LifelineAggregate.Event):
        """补正材料一次性告知: what is missing, all at once; a repeat names only what is still
        missing (MaterialsRequested)."""

        case_id: str
        region_code: str
        assistance_type: str
        applicant_name_masked: str
        missing_materials: list[str]
        repeat: bool
        reason: str
        requested_at: str

        def apply(self, case: "Case") -> None:
            case.status = later_status(case.status, "materials_requested")
            case.missing_materials = list(self.missing_materials)

    # --- one person, one file per benefit (the index: services/intake/persons.py) --------
    class DuplicateSuspected(LifelineAggregate.Event):
        """Held: a member is covered by this benefit already, or is on another open application
        for it (DuplicateSuspected). Never merged: a person decides (DuplicateDecided)."""

        case_id: str
        region_code: str
        assistance_type: str
        other_case_ids: list[str]
        reasons: list[str]  # covered | open_application
        suspected_at: str

        def apply(self, case: "Case") -> None:
            case.status = "suspected_duplicate"
            case.duplicate_of = list(self.other_case_ids)

    class DuplicateDecided(LifelineAggregate.Event):
        """The hold decided: proceed (back to submitted, acceptance possible) or withdraw (ends
        the case, its people's entries released)."""

        case_id: str
        region_code: str
        assistance_type: str
        other_case_ids: list[str]
        decision: str  # proceed | withdraw
        reason: str
        decided_by: str
        decided_at: str

        def apply(self, case: "Case") -> None:
            case.status = "submitted" if self.decision == "proceed" else "withdrawn"

    def hold_as_duplicate(self, matches: list[tuple[str, str]], at: str, by: Meta) -> None:
        """`matches`: (other case id, covered | open_application), from the person index."""
        self.trigger_event(
            self.DuplicateSuspected, case_id=self.case_id, region_code=self.region_code,
            assistance_type=self.application.assistance_type,
            other_case_ids=sorted({case_id for case_id, _ in matches}),
            reasons=[r for r in ("covered", "open_application") if any(m[1] == r for m in matches)],
            suspected_at=at, meta=by.as_dict(),
        )

    def decide_duplicate(self, decision: str, reason: str, at: str, by: Meta) -> None:
        if decision not in ("proceed", "withdraw"):
            raise ValueError(f"unknown duplicate decision {decision!r}")
        if self.status != "suspected_duplicate":
            raise AcceptanceNotAllowed(
                "not_held", f"the case is {self.status}, not held as a suspected duplicate", case_status=self.status,
            )
        if not reason.strip():
            raise AcceptanceRuleBroken("reason_required", "a decision on a suspected duplicate states its reason")
        self.trigger_event(
            self.DuplicateDecided, case_id=self.case_id, region_code=self.region_code,
            assistance_type=self.application.assistance_type, other_case_ids=list(self.duplicate_of),
            decision=decision, reason=reason, decided_by=by.user_id, decided_at=at, meta=by.as_dict(),
        )

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
        self.accepted_at: str | None = None
        self.missing_materials: list[str] = []  # what is still asked for (补正)
        self.duplicate_of: list[str] = []  # the cases it was held for (DuplicateSuspected)

    @property
    def region_code(self) -> str:
        return self.application.region_code

    # --- acceptance (受理) ------------------------------------------------------------
    def accept(self, reason: str, at: str, by: Meta) -> None:
        """受理: from submitted, or once the materials asked for have come."""
        self._check_acceptance_open(reason)
        self.trigger_event(
            self.Accepted, **self._public_case(), members_count=len(self.application.household.members),
            reason=reason, accepted_at=at, meta=by.as_dict(),
        )

    def refuse_acceptance(self, reason: str, at: str, by: Meta) -> None:
        """不予受理, with reasons (不予受理告知书)."""
        self._check_acceptance_open(reason)
        self.trigger_event(
            self.AcceptanceRefused, **self._public_case(), reason=reason, refused_at=at, meta=by.as_dict(),
        )

    def request_materials(self, missing: list[str] | tuple[str, ...], reason: str, at: str, by: Meta) -> None:
        """补正材料一次性告知: only the resident ID and the signed authorisation may be asked for
        (一证一书), all at once (一次性告知): a repeat names only what is still missing."""
        self._check_acceptance_open(reason)
        if any(code not in REQUIRED_MATERIALS for code in missing):
            raise AcceptanceRuleBroken(
                "one_id_one_authorisation",
                f"only {_materials(tuple(REQUIRED_MATERIALS))} may be asked for (一证一书); "
                "anything else is obtained by data sharing",
            )
        if not missing:
            raise AcceptanceRuleBroken("missing_materials_required", "name what is missing (一次性告知)")
        asked = [code for code in REQUIRED_MATERIALS if code in missing]  # each once, in one order
        repeat = self.status == "materials_requested"
        if repeat:
            new = [code for code in asked if code not in self.missing_materials]
            if new:
                raise AcceptanceRuleBroken(
                    "missing_materials_at_once",
                    f"missing materials are listed all at once (一次性告知): {_materials(new)} was not "
                    f"asked for before; a second request names only what is still missing "
                    f"({_materials(self.missing_materials) or 'nothing'})",
                )
        self.trigger_event(
            self.MaterialsRequested, **self._public_case(), missing_materials=asked, repeat=repeat,
            reason=reason, requested_at=at, meta=by.as_dict(),
        )

    def _check_acceptance_open(self, reason: str) -> None:
        if self.status == "suspected_duplicate":
            raise AcceptanceNotAllowed(
                "suspected_duplicate",
                f"held as a suspected duplicate of {', '.join(self.duplicate_of)}: the hold is decided first "
                "(duplicate-decision: proceed or withdraw)", case_status=self.status,
            )
        if self.status not in ACCEPTANCE_OPEN:
            raise AcceptanceNotAllowed(
                "acceptance_decided_once", f"acceptance already decided: the case is {self.status}",
                case_status=self.status,
            )
        if not reason.strip():
            raise AcceptanceRuleBroken("reason_required", "a decision on acceptance states its reason")

    def _public_case(self) -> dict[str, Any]:
        """What every acceptance event says about the case (the applicant's name masked)."""
        app = self.application
        return {
            "case_id": self.case_id, "region_code": app.region_code, "assistance_type": app.assistance_type,
            "applicant_name_masked": mask_name(app.household.applicant.name),
        }

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
        # Followed up until answered (issue 11): its clock, who answers for it, how it ended.
        self.urgency = urgency
        self.due_date = due_date
        self.raised_at = raised_at
        self.region_code = household_profile.region_code
        self.deadline_id: str | None = None
        self.due_at: str | None = None
        self.deadline_state: str | None = None  # open | met | late | breached
        self.responsible_clerk: str | None = None  # 首问负责人: the case's clerk
        self.raised_by: str | None = None
        self.outcome: str | None = None
        self.escalated_to: dict[str, str] | None = None

    # --- followed up until answered (issue 11) ---------------------------------------------
    class DeadlineSet(DeadlineSetEvent):
        """The referral clock runs (DeadlineSet): answered by the due date, or escalated to the
        first clerk responsible (首问负责人) and the office above."""

        responsible_clerk: str
        raised_by: str

        def apply(self, referral: "Referral") -> None:
            referral.deadline_id = self.deadline_id
            referral.due_at = self.due_at
            referral.deadline_state = "open"
            referral.responsible_clerk = self.responsible_clerk
            referral.raised_by = self.raised_by

    class OutcomeRecorded(LifelineAggregate.Event):
        """Answered, by the department (ReferralAnswered) or recorded by a clerk: once."""

        referral_id: str
        case_id: str
        target: str
        outcome: str
        note: str
        answered_by: str  # department | clerk
        due_date: str
        late: bool
        recorded_at: str

        def apply(self, referral: "Referral") -> None:
            referral.status = "answered"
            referral.outcome = self.outcome

    class DeadlineCleared(DeadlineClearedEvent):
        def apply(self, referral: "Referral") -> None:
            referral.deadline_state = self.outcome

    class Overdue(LifelineAggregate.Event):
        """The deadline watch breached the referral clock (DeadlineBreached): escalated to the
        first clerk responsible and the office above."""

        referral_id: str
        case_id: str
        deadline_id: str
        breached_at: str
        responsible_clerk: str
        escalated_to: dict[str, str]

        def apply(self, referral: "Referral") -> None:
            referral.status = "overdue"
            referral.deadline_state = "breached"
            referral.escalated_to = dict(self.escalated_to)

    def follow_up(self, case: Case, deadline: dict[str, Any], by: Meta) -> None:
        """Start the referral clock (`deadline`: DeadlineSet's fields, discovery.deadline_set);
        the case's clerk (首问负责人) answers for the referral."""
        self.trigger_event(self.DeadlineSet, **deadline, responsible_clerk=case.application.clerk_id,
                           raised_by=by.user_id, meta=by.as_dict())

    def record_outcome(self, outcome: str, note: str, answered_by: str, at: datetime, by: Meta) -> None:
        """The first answer closes the referral (ReferralOutcomeRecorded) and stops its clock."""
        if self.status == "answered":
            raise ReferralNotAllowed(
                "referral_answered_once", f"the referral was answered already ({self.outcome})", self.status)
        late = self.due_at is not None and at >= datetime.fromisoformat(self.due_at)
        self.trigger_event(
            self.OutcomeRecorded, referral_id=self.referral_id, case_id=self.case_id, target=self.target,
            outcome=outcome, note=note, answered_by=answered_by, due_date=self.due_date, late=late,
            recorded_at=at.isoformat(), meta=by.as_dict())
        if self.deadline_id is not None and self.deadline_state in ("open", "breached"):
            self.trigger_event(self.DeadlineCleared, deadline_id=self.deadline_id, case_id=self.case_id,
                               clock="referral", outcome="late" if late else "met", cleared_at=at.isoformat(),
                               meta=by.as_dict())

    def breached(self, deadline_id: str, breached_at: str, escalated_to: dict[str, str], by: Meta) -> bool:
        """DeadlineBreached for its clock: overdue and escalated once, unless answered meanwhile."""
        if deadline_id != self.deadline_id or self.deadline_state != "open" or self.status != "raised":
            return False
        self.trigger_event(self.Overdue, referral_id=self.referral_id, case_id=self.case_id,
                           deadline_id=deadline_id, breached_at=breached_at,
                           responsible_clerk=self.responsible_clerk or "", escalated_to=dict(escalated_to),
                           meta=by.as_dict())
        return True


class ReferralNotAllowed(Exception):
    """The referral's state does not allow this (409); `rule` names why."""

    def __init__(self, rule: str, message: str, state: str):
        super().__init__(message)
        self.rule = rule
        self.state = state
