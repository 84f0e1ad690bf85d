"""The emergency green channel, intake's side (先救助、后补手续, SPEC §4).

An urgent case (urgency urgent or critical) may get relief at once, before or during
verification: a township officer (reviewer, caseworker) grants up to the township's cap, a county
officer up to the county's (`config/policy.yaml` `emergency`), the case's grants counted together
so that splitting one need into small grants passes no cap. `EmergencyReliefGranted` goes to
payment, which pays it the same day from the township reserve fund (备用金). The post-approval
(后置审批) is due within the policy's working days (the `emergency_post_approval` clock, watched by
notify): a reviewer decides a township grant, a county officer a county grant (a county officer
may also decide a township's, the office the breach escalates to), never whoever granted it
(four eyes). Refused, the grant stays paid and payment opens its recovery.

`EmergencyRelief` is one aggregate per case holding its grants: the cap counts them all, and two
grants at once on two replicas are serialised by the store's version check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import LifelineAggregate, Meta, new_id
from lifeline.domain.deadlines import DeadlineClearedEvent, DeadlineSetEvent, deadline_fields
from lifeline.domain.values import BankAccount
from lifeline.rules import clocks
from lifeline.rules.policy import EmergencyCaps, PolicyError
from lifeline.rules.periods import business_date
from services.intake.domain import Case

if TYPE_CHECKING:
    from services.intake.application import IntakeApplication

CLOCK = "emergency_post_approval"
# Where relief may still come first: before or during verification, never after the decision
# nor on a case that ended.
RELIEF_OPEN = ("submitted", "materials_requested", "accepted", "verified")
URGENT = ("urgent", "critical")
GRANTING_ROLES = ("reviewer", "caseworker", "county_officer")
COUNTY_ROLES = ("county_officer",)
# Who decides the post-approval of a grant of each level.
POST_APPROVERS = {"township": ("reviewer", "county_officer"), "county": ("county_officer",)}
DECIDED = {"approve": "approved", "refuse": "refused"}
STATE_AFTER = {"approved": "post_approved", "refused": "post_approval_refused"}
ATTEMPTS = 8


class ReliefNotAllowed(Exception):
    """The case's or the grant's state forbids it (409); `rule` names why."""

    def __init__(self, rule: str, message: str, **details: Any):
        super().__init__(message)
        self.rule = rule
        self.details = details


class ReliefRuleBroken(ValueError):
    """The request breaks a rule (422): `emergency_cap` (with the cap), `reason_required`."""

    def __init__(self, rule: str, message: str, **details: Any):
        super().__init__(message)
        self.rule = rule
        self.details = details


class ReliefForbidden(Exception):
    """The caller's role may not decide this grant (403, rule `approval_level`)."""

    rule = "approval_level"


class GrantNotFound(LookupError):
    pass


def approval_level_of(role: str) -> str:
    return "county" if role in COUNTY_ROLES else "township"


def cap_of(level: str, caps: EmergencyCaps) -> int:
    """What one level may grant on a case in all (inclusive)."""
    return caps.county_cap_fen if level == "county" else caps.township_cap_fen


def check_cap(amount_fen: int, granted_fen: int, level: str, caps: EmergencyCaps) -> None:
    """ReliefRuleBroken `emergency_cap` when the case's grants with this one pass the level's cap."""
    if amount_fen < 1:
        raise ReliefRuleBroken("amount_fen", "an emergency grant is at least 1 fen")
    cap = cap_of(level, caps)
    if granted_fen + amount_fen > cap:
        above = "; the county civil-affairs bureau grants above it" if level == "township" else ""
        raise ReliefRuleBroken(
            "emergency_cap",
            f"{granted_fen + amount_fen} fen in all on this case ({granted_fen} granted before) is above the "
            f"{level} cap of {cap} fen{above}",
            cap_fen=cap, approval_level=level, granted_fen=granted_fen,
        )


@dataclass
class Grant:
    grant_id: str
    case_id: str
    amount_fen: int
    reason: str
    approval_level: str
    granted_by: str
    granted_at: str
    post_approval_due_date: str
    deadline_id: str
    due_at: str
    state: str = "granted"
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None


class EmergencyRelief(LifelineAggregate):
    """The grants of one case and their post-approvals."""

    id_kind = "emergency_relief"

    class Opened(LifelineAggregate.Created):
        case_id: str
        region_code: str

    class Granted(LifelineAggregate.Event):
        """EmergencyReliefGranted: exactly its schema's fields, and the deadline it set."""

        grant_id: str
        case_id: str
        region_code: str
        township_code: str
        amount_fen: int
        reason: str
        approval_level: str
        granted_by: str
        bank_account: BankAccount
        post_approval_due_date: str
        granted_at: str
        deadline_id: str
        due_at: str

        def apply(self, r: "EmergencyRelief") -> None:
            r.grants[self.grant_id] = asdict(Grant(
                self.grant_id, self.case_id, self.amount_fen, self.reason, self.approval_level, self.granted_by,
                self.granted_at, self.post_approval_due_date, self.deadline_id, self.due_at))

    class DeadlineSet(DeadlineSetEvent):
        """The post-approval clock runs (后置审批)."""

    class PostApprovalDecided(LifelineAggregate.Event):
        grant_id: str
        case_id: str
        region_code: str
        township_code: str
        decision: str  # approved | refused
        reason: str
        amount_fen: int
        decided_by: str
        decided_at: str

        def apply(self, r: "EmergencyRelief") -> None:
            r.grants[self.grant_id].update(state=STATE_AFTER[self.decision], decided_by=self.decided_by,
                                           decided_at=self.decided_at, decision_reason=self.reason)

    class DeadlineCleared(DeadlineClearedEvent):
        """The post-approval decided, met or late."""

    @classmethod
    def open(cls, case: Case, by: Meta) -> "EmergencyRelief":
        return cls._create(cls.Opened, id=cls.create_id(case.case_id), case_id=case.case_id,
                           region_code=case.region_code, meta=by.as_dict())

    def __init__(self, case_id: str, region_code: str, meta: dict[str, str]):
        self.case_id = case_id
        self.region_code = region_code
        self.grants: dict[str, dict[str, Any]] = {}  # grant id → Grant's fields

    @property
    def granted_fen(self) -> int:
        return sum(g["amount_fen"] for g in self.grants.values())

    def grant(self, grant_id: str, case: Case, amount_fen: int, reason: str, caps: EmergencyCaps,
              now: datetime, by: Meta) -> dict[str, Any]:
        """Relief first: checks the case, the urgency and the granting level's cap, then grants
        and starts the post-approval clock."""
        if case.status == "suspected_duplicate":
            raise ReliefNotAllowed("suspected_duplicate", "the case is held as a suspected duplicate: decide the "
                                   "hold first (never paid twice)", case_status=case.status)
        if case.status not in RELIEF_OPEN:
            raise ReliefNotAllowed("case_decided", f"relief comes first only before or during verification; "
                                   f"the case is {case.status}", case_status=case.status)
        if case.application.urgency not in URGENT:
            raise ReliefNotAllowed("not_urgent", f"the green channel is for urgent or critical cases; this one is "
                                   f"{case.application.urgency}", urgency=case.application.urgency)
        account = case.application.bank_account
        if account is None:
            raise ReliefNotAllowed("no_bank_account", "the application carries no sealed bank account to pay")
        if not reason.strip():
            raise ReliefRuleBroken("reason_required", "an emergency grant states its reason")
        if by.role not in GRANTING_ROLES:
            raise ReliefForbidden(f"a {by.role} does not grant emergency relief")
        level = approval_level_of(by.role)
        check_cap(amount_fen, self.granted_fen, level, caps)
        due = clocks.emergency_post_approval_due(now, caps.post_approval_working_days)
        n = len(self.grants)
        deadline_id = f"{self.case_id}/{CLOCK}" + (f"/{n + 1}" if n else "")
        township = self.region_code[:9]
        self.trigger_event(
            self.Granted, grant_id=grant_id, case_id=self.case_id, region_code=self.region_code,
            township_code=township, amount_fen=amount_fen, reason=reason, approval_level=level,
            granted_by=by.user_id, bank_account=account, post_approval_due_date=due.due_date.isoformat(),
            granted_at=now.isoformat(), deadline_id=deadline_id, due_at=due.due_at.isoformat(), meta=by.as_dict(),
        )
        # The office that granted answers for the paperwork; a breach goes to the one above.
        office = township if level == "township" else self.region_code[:6]
        self.trigger_event(self.DeadlineSet, **deadline_fields(deadline_id, self.case_id, self.region_code, office,
                                                               due, now), meta=by.as_dict())
        return dict(self.grants[grant_id])

    def decide(self, grant_id: str, decision: str, reason: str, now: datetime, by: Meta) -> dict[str, Any]:
        """The post-approval (后置审批): once, by another person than the granting one, of the
        level the grant needs; clears the clock, met or late."""
        grant = self.grants.get(grant_id)
        if grant is None:
            raise GrantNotFound(grant_id)
        if decision not in DECIDED:
            raise ValueError(f"unknown post-approval decision {decision!r}")
        if grant["state"] != "granted":
            raise ReliefNotAllowed("decided_once", f"the post-approval was decided already: {grant['state']}",
                                   grant_state=grant["state"])
        if by.role not in POST_APPROVERS[grant["approval_level"]]:
            raise ReliefForbidden(
                f"a {grant['approval_level']} grant is post-approved by "
                f"{' or '.join(POST_APPROVERS[grant['approval_level']])}, not a {by.role}")
        if by.user_id == grant["granted_by"]:
            raise ReliefNotAllowed("four_eyes", "whoever granted the relief does not post-approve it (four eyes)")
        if not reason.strip():
            raise ReliefRuleBroken("reason_required", "a post-approval states its reason")
        self.trigger_event(
            self.PostApprovalDecided, grant_id=grant_id, case_id=self.case_id, region_code=self.region_code,
            township_code=self.region_code[:9], decision=DECIDED[decision], reason=reason,
            amount_fen=grant["amount_fen"], decided_by=by.user_id, decided_at=now.isoformat(), meta=by.as_dict(),
        )
        self.trigger_event(
            self.DeadlineCleared, deadline_id=grant["deadline_id"], case_id=self.case_id, clock=CLOCK,
            outcome="late" if now >= datetime.fromisoformat(grant["due_at"]) else "met",
            cleared_at=now.isoformat(), meta=by.as_dict(),
        )
        return dict(self.grants[grant_id])


# --- use cases (called by api.py) ----------------------------------------------------------
def grant_relief(app: "IntakeApplication", case_id: str, amount_fen: int, reason: str, by: Meta,
                 grant_id: str | None = None) -> tuple[dict[str, Any], bool]:
    """Grant relief on a case: (the grant, True), or (the grant made before, False) when a
    repeated request names the same grant id. Nothing is saved when a rule is broken."""
    grant_id = grant_id or new_id("ER")
    for _ in range(ATTEMPTS):
        case = app.get_case(case_id)
        relief = app.load_or_create(EmergencyRelief.create_id(case_id), lambda: EmergencyRelief.open(case, by))
        if grant_id in relief.grants:
            return dict(relief.grants[grant_id]), False
        now = app.clock.now()
        try:
            caps = app.policies.policy_for(case.region_code, business_date(now)).emergency
        except PolicyError as exc:
            raise ReliefNotAllowed("no_policy", f"no emergency caps for this county: {exc}") from None
        grant = relief.grant(grant_id, case, amount_fen, reason, caps, now, by)
        try:
            app.save(relief)
        except IntegrityError:
            continue  # another grant on this case meanwhile: the cap is counted again
        return grant, True
    raise RuntimeError(f"the emergency relief of case {case_id} kept changing")


def decide_post_approval(app: "IntakeApplication", case_id: str, grant_id: str, decision: str, reason: str,
                         by: Meta) -> dict[str, Any]:
    for _ in range(ATTEMPTS):
        relief = _relief(app, case_id, grant_id)
        grant = relief.decide(grant_id, decision, reason, app.clock.now(), by)
        try:
            app.save(relief)
        except IntegrityError:
            continue  # changed meanwhile: decided again on the fresh state (once only)
        return grant
    raise RuntimeError(f"the emergency relief of case {case_id} kept changing")


def grants_of(app: "IntakeApplication", case_id: str) -> list[dict[str, Any]]:
    """The case's grants with their state and post-approval due date (none: an empty list)."""
    try:
        relief = app.repository.get(EmergencyRelief.create_id(case_id))
    except AggregateNotFoundError:
        return []
    return [dict(g) for g in relief.grants.values()]


def _relief(app: "IntakeApplication", case_id: str, grant_id: str) -> EmergencyRelief:
    try:
        return app.repository.get(EmergencyRelief.create_id(case_id))
    except AggregateNotFoundError:
        raise GrantNotFound(grant_id) from None
