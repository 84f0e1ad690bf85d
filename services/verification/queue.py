"""`GET /v1/verifications`: the cases in the statutory procedure a caller may see, the step each
is at, whose work the next one is, the deadline that falls due first with its state today, and
whether the caller may take the decision (four eyes): the caseworker's cases and the reviewer's
queue (`?stage=decision`).

The read model is the `verification` document (application.project, keyed by case, ref its
state): `project_procedure` keeps beside it what the steps recorded (`procedure`), mirroring the
Verification aggregate's state as its events leave it, so that a list needs no aggregate loaded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lifeline.domain.values import mask_name
from lifeline.http.app import LIST_ERRORS, in_region, region_filter
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.rules.clocks import CLOCKS
from lifeline.rules.periods import business_date
from lifeline.rules.vocabulary import ASSISTANCE_TYPES, PROPOSALS
from lifeline.runtime.service import ServiceRuntime
from lifeline.stores.sidestore import SideTx
from services.verification.domain import Verification

# Where a case stands in the procedure, named by the step it waits for (the steps' and their
# clocks' names, docs/PROCEDURE.md): the survey first while the check also runs (a person acts
# on it), `public_notice_running` while the posted notice runs, `decision` when a reviewer may
# decide now (Verification.check_decidable passes but for four eyes), then how it was decided.
STAGES = ("household_survey", "verification_report", "initial_review", "public_notice", "public_notice_running",
          "democratic_appraisal", "decision", "approved", "refused")
DECIDED = ("approved", "refused")
# A deadline's state today, in the deadline watch's words (notify: open, warned, breached) and
# due_today (its last day is today, not yet breached).
DEADLINE_STATES = ("open", "warned", "due_today", "breached")
# Who recorded a step the four-eyes rule keeps from the decision.
FOUR_EYES_REASONS = ("recorded_survey", "proposed", "recorded_survey_and_proposed")
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000

# stage → (the step, whose work it is: the role the steps are the daily work of; None: nobody in
# Lifeline acts, the departments answer or the notice runs), what it waits for.
_NEXT: dict[str, tuple[str, str | None, str]] = {
    "household_survey": ("household_survey", "caseworker", "record the household survey (入户调查)"),
    "verification_report": ("verification_report", None,
                            "the departments' records: the economic check is not completed (核对报告)"),
    "initial_review": ("initial_review", "caseworker", "propose inclusion or refusal (初审)"),
    "public_notice": ("public_notice", "caseworker", "post the proposed inclusion on the village board (公示)"),
    "public_notice_running": ("public_notice", None, "the public notice runs until its last day (公示期)"),
    "democratic_appraisal": ("democratic_appraisal", "caseworker",
                             "an objection or a verification warning calls for a democratic appraisal (民主评议)"),
    "decision": ("decision", "reviewer", "approve or refuse (审核确认)"),
}


# --- the read model -----------------------------------------------------------------------------
def _fresh() -> dict[str, Any]:
    return {"accepted_at": None, "surveyed_by": None, "proposal": None, "proposed_by": None,
            "notice_until": None, "notice_ends_at": None, "check_warned": False, "appraisal_due": False,
            "deadlines": {}, "open_grievances": []}


_EVENTS = (Verification.Started, Verification.Accepted, Verification.Completed, Verification.SurveyRecorded,
           Verification.ReviewProposed, Verification.NoticePosted, Verification.ObjectionRaised,
           Verification.AppraisalHeld, Verification.DeadlineSet, Verification.DeadlineCleared,
           Verification.GrievanceRaised, Verification.GrievanceDecided, Verification.Reopened)


def project_procedure(event: Any, tx: SideTx) -> None:
    """The `verification` document's `procedure` (and the applicant's masked name and the type
    applied for), after application.project wrote the document itself: what each step left as
    the aggregate's `apply` leaves it (domain.Verification)."""
    if not isinstance(event, _EVENTS):
        return
    doc = tx.get("verification", event.case_id)
    if doc is None:
        return
    p = doc.get("procedure") or _fresh()
    if isinstance(event, Verification.Started):
        doc["applicant_name_masked"] = mask_name(event.application.household.applicant.name)
        doc["assistance_type"] = event.application.assistance_type
    elif isinstance(event, Verification.Accepted):
        p["accepted_at"] = event.accepted_at
    elif isinstance(event, Verification.Completed):  # Verification.check_warned
        p["check_warned"] = bool(event.assessment.get("warnings")) or (
            event.assessment.get("outcome") == "needs_appraisal")
    elif isinstance(event, Verification.SurveyRecorded):
        p["surveyed_by"] = event.meta["user_id"]
    elif isinstance(event, Verification.ReviewProposed):
        p["proposal"], p["proposed_by"] = event.proposal, event.meta["user_id"]
    elif isinstance(event, Verification.NoticePosted):
        p.update(notice_until=event.notice_until, notice_ends_at=event.ends_at, appraisal_due=p["check_warned"])
    elif isinstance(event, (Verification.ObjectionRaised, Verification.AppraisalHeld)):
        p["appraisal_due"] = isinstance(event, Verification.ObjectionRaised)
    elif isinstance(event, Verification.DeadlineSet):
        p["deadlines"][event.deadline_id] = {
            "deadline_id": event.deadline_id, "clock": event.clock, "label_zh": event.label_zh,
            "due_date": event.due_date, "due_at": event.due_at, "warn_at": event.warn_at}
    elif isinstance(event, Verification.DeadlineCleared):
        p["deadlines"].pop(event.deadline_id, None)
    elif isinstance(event, Verification.GrievanceRaised):
        p["open_grievances"] = [*p["open_grievances"], event.grievance_id]
    elif isinstance(event, Verification.GrievanceDecided):
        p["open_grievances"] = [g for g in p["open_grievances"] if g != event.grievance_id]
    else:  # Reopened: decided again from the initial review (the survey stands)
        p.update(proposal=None, proposed_by=None, notice_until=None, notice_ends_at=None, appraisal_due=False)
        if event.evidence == "new":
            p["check_warned"] = False  # the departments are asked again: no assessment yet
    doc["procedure"] = p
    tx.put("verification", event.case_id, doc, ref=doc["state"])


# --- where a case stands ------------------------------------------------------------------------
def stage_of(state: str, p: dict[str, Any], now: datetime) -> str | None:
    """The case's stage at `now` (None: not in the procedure, not accepted yet or not accepted).
    `decision` exactly when Verification.check_decidable passes at `now` for someone who took
    neither the survey nor the initial review."""
    if state in DECIDED:
        return state
    if state not in ("requested", "completed"):
        return None
    if p["surveyed_by"] is None:
        return "household_survey"
    if state == "requested":
        return "verification_report"
    if p["proposal"] is None:
        return "initial_review"
    if p["proposal"] == "include":
        if p["notice_ends_at"] is None:
            return "public_notice"
        if p["appraisal_due"]:
            return "democratic_appraisal"
        if now < datetime.fromisoformat(p["notice_ends_at"]):
            return "public_notice_running"
    return "decision"


def deadline_state(deadline: dict[str, Any], now: datetime) -> str:
    """breached from 24:00 of its last day on, due_today on that day, warned from the watch's
    warning on, else open (Asia/Shanghai)."""
    if now >= datetime.fromisoformat(deadline["due_at"]):
        return "breached"
    if business_date(now).isoformat() == deadline["due_date"]:
        return "due_today"
    return "warned" if now >= datetime.fromisoformat(deadline["warn_at"]) else "open"


def four_eyes_reason(p: dict[str, Any], user_id: str) -> str | None:
    """What keeps `user_id` from the decision (Verification.check_decidable: four eyes), if anything."""
    surveyed, proposed = p["surveyed_by"] == user_id, p["proposed_by"] == user_id
    if surveyed and proposed:
        return "recorded_survey_and_proposed"
    return "recorded_survey" if surveyed else "proposed" if proposed else None


def list_item(doc: dict[str, Any], now: datetime, principal: Principal, deciders: tuple[str, ...]) -> dict[str, Any]:
    p = doc.get("procedure") or _fresh()
    stage = stage_of(doc["state"], p, now)
    deadlines = sorted(p["deadlines"].values(), key=lambda d: (datetime.fromisoformat(d["due_at"]), d["deadline_id"]))
    first = deadlines[0] if deadlines else None
    if stage in DECIDED:
        # After the decision only a grievance (异议、申诉) is the review group's to decide.
        step = ("grievance", "reviewer", "decide the grievance (异议、申诉)") if p["open_grievances"] else None
    else:
        step = _NEXT[stage]
    reason = four_eyes_reason(p, principal.user_id)
    return {
        "case_id": doc["case_id"], "region_code": doc["region_code"],
        "applicant_name_masked": doc.get("applicant_name_masked"), "assistance_type": doc.get("assistance_type"),
        "state": doc["state"], "stage": stage, "accepted_at": p["accepted_at"], "proposal": p["proposal"],
        "notice_until": p["notice_until"],
        "next_step": {"step": step[0], "by": step[1], "message": step[2]} if step else None,
        "deadline": {**first, "warn_date": business_date(datetime.fromisoformat(first["warn_at"])).isoformat()}
        if first else None,
        "deadline_state": deadline_state(first, now) if first else None,
        "you_may_decide": stage == "decision" and principal.role.value in deciders and reason is None,
        "four_eyes_reason": reason,
    }


# --- the route ----------------------------------------------------------------------------------
class ListedDeadline(BaseModel):
    """The case's open deadline that falls due first (a DeadlineSet: lifeline.rules.clocks)."""

    deadline_id: str = Field(examples=["C-0123456789AB/household_survey"])
    clock: Literal[tuple(CLOCKS)]
    label_zh: str = Field(examples=["入户调查"])
    due_date: str = Field(description="the last day (YYYY-MM-DD, Asia/Shanghai)")
    due_at: str = Field(description="exclusive end: 24:00 of the due date (ISO 8601)")
    warn_at: str = Field(description="when the deadline watch warns (ISO 8601)")
    warn_date: str = Field(description="the day it warns (YYYY-MM-DD, Asia/Shanghai)")


class ListedStep(BaseModel):
    step: str = Field(description="the step the case waits for (docs/PROCEDURE.md)", examples=["household_survey"])
    by: Literal["caseworker", "reviewer"] | None = Field(
        description="whose work it is (the step's route also takes the other roles it lists); null: nobody in "
                    "Lifeline acts (the departments answer, the notice runs)")
    message: str


class VerificationListItem(BaseModel):
    case_id: str
    region_code: str
    applicant_name_masked: str | None = Field(examples=["王*国"])
    assistance_type: Literal[ASSISTANCE_TYPES] | None
    state: Literal["requested", "completed", "approved", "refused"] = Field(
        description="the verification's state (GET /v1/verifications/{case_id})")
    stage: Literal[STAGES] = Field(description="the step the case waits for; decision: a reviewer may decide now")
    accepted_at: str | None = Field(description="ISO 8601 timestamp (受理)")
    proposal: Literal[PROPOSALS] | None = Field(description="the initial review's proposal (初审)")
    notice_until: str | None = Field(description="the public notice's last day (YYYY-MM-DD)")
    next_step: ListedStep | None = Field(description="null: decided, nothing open")
    deadline: ListedDeadline | None = Field(description="the open deadline due first; null: none open")
    deadline_state: Literal[DEADLINE_STATES] | None = Field(
        description="the deadline today: open, warned (the watch has warned), due_today (its last day), breached")
    you_may_decide: bool = Field(description="the caller may approve or refuse it now: at stage decision, a "
                                             "deciding role, and neither its surveyor nor its proposer (four eyes)")
    four_eyes_reason: Literal[FOUR_EYES_REASONS] | None = Field(
        description="the caller recorded the survey and/or proposed the initial review: another decides")


class VerificationsOut(BaseModel):
    today: str = Field(description="the day deadlines are judged on (YYYY-MM-DD, Asia/Shanghai)")
    items: list[VerificationListItem] = Field(description="the deadline due first first (none open: last), "
                                                          "at most `limit`")
    total: int = Field(description="how many cases match (within the caller's region)")
    limit: int


def add_routes(api: APIRouter, runtime: ServiceRuntime, deciders: tuple[str, ...]) -> None:
    """GET /v1/verifications; `deciders`: the roles that take the decision (api.DECIDERS)."""

    @api.get("/verifications", tags=["verifications"], response_model=VerificationsOut, responses=LIST_ERRORS)
    async def list_verifications(
        stage: Annotated[Literal[STAGES] | None, Query(
            description="only cases at this stage (default: every undecided one); decision: those a "
                        "reviewer may decide now; approved, refused: the decided ones")] = None,
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        deadline_state: Annotated[Literal[DEADLINE_STATES] | None, Query(
            description="only cases whose deadline due first is in this state today")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many items")] = DEFAULT_LIMIT,
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        """The cases in the procedure (accepted, not decided; `?stage=approved` or `refused` the
        decided ones) within the caller's region (or `region`) and where each stands: the stage,
        the next step and whose work it is, the deadline due first and its state today (judged by
        the service's clock, Asia/Shanghai), and whether the caller may decide it under the
        four-eyes rule. `total` counts them all, `items` holds `limit`."""
        region_filter(region, principal)
        now = runtime.clock.now()
        # Decided cases have left the procedure: listed when asked for (they are many, and their
        # documents are referenced by state, not region).
        states = (stage,) if stage in DECIDED else ("requested", "completed")
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [d for state in states for d in tx.find("verification", state)]  # referenced by state
        items = [list_item(d, now, principal, deciders) for d in in_region(docs, principal, region)]
        items = [i for i in items if (stage is None or i["stage"] == stage)
                 and (deadline_state is None or i["deadline_state"] == deadline_state)]
        items.sort(key=lambda i: (i["deadline"] is None,
                                  datetime.fromisoformat(i["deadline"]["due_at"]) if i["deadline"] else now,
                                  i["case_id"]))
        return {"today": business_date(now).isoformat(), "items": items[:limit], "total": len(items),
                "limit": limit}
