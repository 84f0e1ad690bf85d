"""The reviewer's screens (issue 15): the queue of cases a decision is due on, one case's evidence
(the economic check, the survey, the assessment with its reasons and warnings, the public notice
and the objections received) and the decision (审核确认), approve or refuse with a reason.

The four-eyes rule is shown, not only enforced: whoever recorded the survey or proposed the initial
review (the same user id) sees why they may not decide, with the buttons disabled; verification
still refuses such a decision (403 `four_eyes`), and the page shows its words if one is posted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lifeline.console.forms import checked_id
from lifeline.console.gateway import Gateway, ServiceDown, ServiceProblem
from lifeline.console.pages import Services, failure_status, form_values, new_form_key, redirect, render
from lifeline.console.routes.caseworker import case_for_page, errors_of, listing
from lifeline.console.session import User, role_user

router = APIRouter()

ReviewerUser = Annotated[User, role_user("reviewer", "county_officer")]


def four_eyes(view: dict[str, Any], item: dict[str, Any] | None, user: User) -> str | None:
    """Why `user` may not decide this case under the four-eyes rule: the listing's reason (the
    service's), or before the case reaches the decision the same rule read off its steps."""
    if item is not None:
        return item.get("four_eyes_reason")
    surveyed = (view.get("survey") or {}).get("recorded_by") == user.user_id
    proposed = (view.get("initial_review") or {}).get("proposed_by") == user.user_id
    if surveyed and proposed:
        return "recorded_survey_and_proposed"
    return "recorded_survey" if surveyed else "proposed" if proposed else None


@router.get("/reviewer")
async def queue(request: Request, user: ReviewerUser, services: Services) -> Response:
    due = await listing(services, user, stage="decision", limit=1000)
    # The cases on notice now: what reaches the queue when the notice ends.
    running = await listing(services, user, stage="public_notice_running", limit=1000)
    return render(request, "reviewer/queue.html", items=due["items"], today=due["today"],
                  running=running["items"])


async def _case_page(request: Request, services: Gateway, user: User, case_id: str, *,
                     values: dict | None = None, failure: Exception | None = None,
                     done: str | None = None) -> Response:
    view, item, today = await case_for_page(services, user, case_id, failure)
    blocked = four_eyes(view, item, user) if view else None
    decidable = item is not None and item["stage"] == "decision"
    return render(request, "reviewer/case.html", status_code=failure_status(failure), view=view, item=item, today=today,
                  values=values or {}, failure=failure, errors=errors_of(failure) if failure else {},
                  form_key=(values or {}).get("form_key") or new_form_key(), done=done,
                  four_eyes_reason=blocked, decidable=decidable)


@router.get("/reviewer/cases/{case_id}")
async def case_page(request: Request, case_id: str, user: ReviewerUser, services: Services,
                    done: str | None = None) -> Response:
    return await _case_page(request, services, user, checked_id(case_id), done=done)


@router.post("/reviewer/cases/{case_id}/decision")
async def decide(request: Request, case_id: str, user: ReviewerUser, services: Services) -> Response:
    case_id = checked_id(case_id)
    values = form_values(await request.form())
    body = {"decision": values.get("decision", ""), "reason": values.get("reason", "")}
    try:
        await services.post("verification", f"/v1/verifications/{case_id}/decision", user.token, body,
                            key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        return await _case_page(request, services, user, case_id, values=values, failure=failure)
    return redirect(f"/reviewer/cases/{case_id}?done={body['decision']}")
