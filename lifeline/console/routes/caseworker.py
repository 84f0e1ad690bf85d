"""The caseworker's screens (issue 15): my cases with their clocks, one case's procedure with the
step due next (入户调查, 初审, 公示, 民主评议: docs/PROCEDURE.md), and the reviews due (复核).

Every fact comes from verification: `GET /v1/verifications` (where each case stands, its clock
today, judged by the service's clock) and `GET /v1/verifications/{case_id}` (the procedure); every
step is the service's own route, which keeps the order, the rules and the four eyes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lifeline.console.forms import checked_id, typed
from lifeline.console.gateway import Gateway, ServiceDown, ServiceProblem
from lifeline.console.i18n import add_labels
from lifeline.console.pages import Services, failure_status, form_values, new_form_key, redirect, render
from lifeline.console.session import User, role_user
from lifeline.rules.clocks import CLOCKS
from lifeline.rules.departments import DEPARTMENTS

router = APIRouter()

# The words of verification's codes (services/verification/queue.py, procedure.py, assessment.py).
add_labels("stage", {
    "household_survey": "待入户调查", "verification_report": "待核对报告", "initial_review": "待初审",
    "public_notice": "待公示", "public_notice_running": "公示中", "democratic_appraisal": "待民主评议",
    "decision": "待审核确认", "approved": "已批准", "refused": "不予批准"})
add_labels("verification_state", {
    "awaiting_acceptance": "待受理", "not_accepted": "不予受理", "requested": "核对中", "completed": "核对完成",
    "approved": "已批准", "refused": "不予批准"})
add_labels("deadline_clock", {name: spec.label_zh for name, spec in CLOCKS.items()})
add_labels("department", DEPARTMENTS)
add_labels("surveyor_role", {"village_cadre": "驻村干部", "township_staff": "乡镇工作人员",
                             "village_committee": "村（居）委会成员", "other": "其他人员"})
add_labels("proposal", {"include": "拟纳入", "refuse": "拟不予纳入"})
add_labels("outcome", {"eligible": "符合条件", "ineligible": "不符合条件", "needs_appraisal": "需民主评议"})
add_labels("severity", {"info": "说明", "warning": "预警", "blocking": "不符合"})
add_labels("decision", {"approve": "批准", "refuse": "不予批准"})
add_labels("benefit_status", {"paying": "正常发放", "suspended": "暂停发放", "terminated": "已停发"})
add_labels("approval_level", {"township": "乡镇审核确认", "county": "县级审批"})
add_labels("grace_reason", {"pensioner": "领取养老金（渐退）", "graduate_employed": "高校毕业生就业",
                            "public_employment": "公益性岗位就业", "disabled_employment": "残疾人就业",
                            "epidemic": "疫情影响"})
add_labels("review_outcome", {"no_change": "维持", "adjusted": "调整金额", "suspended": "暂停发放",
                              "terminated": "停发", "grace": "渐退期"})
add_labels("four_eyes", {"recorded_survey": "您记录了入户调查", "proposed": "您提出了初审意见",
                         "recorded_survey_and_proposed": "您记录了入户调查并提出了初审意见"})

# The stages a caseworker still works on, in the procedure's order (the list's filter).
OPEN_STAGES = ("household_survey", "verification_report", "initial_review", "public_notice",
               "public_notice_running", "democratic_appraisal", "decision")
DEADLINE_FILTERS = ("open", "warned", "due_today", "breached")
# A rule the service names (problem.rule) that is about one field of the form: shown next to it.
# form → {rule: field} (services/verification/domain.py).
RULE_FIELDS = {
    "survey": {"date_in_future": "visited_on", "survey_two_people": "surveyors", "survey_village_cadre": "surveyors"},
    "appraisal": {"date_in_future": "held_on", "date_before_notice": "held_on", "appraisal_votes": "votes_for"},
}
SURVEY_ROWS = 2  # a survey needs two people at least: two rows shown, more added in the browser
DEFAULT_SURVEY = {"surveyors.0.role": "village_cadre", "surveyors.1.role": "township_staff"}

CaseworkerUser = Annotated[User, role_user("caseworker")]


# --- shared with the reviewer's screens -----------------------------------------------------------
async def listing(services: Gateway, user: User, **params: Any) -> dict[str, Any]:
    return await services.get("verification", "/v1/verifications", user.token, **params)


async def case_and_item(services: Gateway, user: User, case_id: str) -> tuple[dict, dict | None, str]:
    """The procedure of a case, where it stands in the listing (stage, clock, four eyes; None: not
    in the procedure) and the service's today."""
    view = await services.get("verification", f"/v1/verifications/{case_id}", user.token)
    found = await listing(services, user, region=view["region_code"], limit=1000)
    item = next((i for i in found["items"] if i["case_id"] == case_id), None)
    return view, item, found["today"]


async def case_for_page(services: Gateway, user: User, case_id: str,
                        failure: Exception | None) -> tuple[dict | None, dict | None, str | None]:
    """`case_and_item` for a case's page. Verification answering neither the step just posted
    (`failure`) nor this read: (None, None, None), and the page shows the form alone, as typed."""
    try:
        return await case_and_item(services, user, case_id)
    except ServiceDown:
        if failure is None:
            raise
        return None, None, None


def errors_of(failure: Exception, form: str = "") -> dict[str, str]:
    """{field: message}: the fields the service's problem names, and the field of `form` a rule it
    broke is about."""
    if not isinstance(failure, ServiceProblem):
        return {}
    errors = failure.field_errors()
    field = RULE_FIELDS.get(form, {}).get(failure.rule or "")
    if field:
        errors.setdefault(field, failure.detail)
    return errors


def as_int(value: str) -> Any:
    """A number typed into a form: an int, else what was typed (the service names the field)."""
    text = (value or "").strip()
    return int(text) if re.fullmatch(r"-?\d{1,9}", text) else (text or None)


# --- my cases -------------------------------------------------------------------------------------
@router.get("/caseworker")
async def my_cases(request: Request, user: CaseworkerUser, services: Services, stage: str | None = None,
                   deadline_state: str | None = None) -> Response:
    stage = stage if stage in (*OPEN_STAGES, "approved", "refused") else None
    deadline_state = deadline_state if deadline_state in DEADLINE_FILTERS else None
    found = await listing(services, user, stage=stage, deadline_state=deadline_state, limit=1000)
    # Without a stage chosen: the cases still open (the decided ones are one filter away).
    items = found["items"] if stage else [i for i in found["items"] if i["stage"] in OPEN_STAGES]
    counts = {s: sum(1 for i in items if i["deadline_state"] == s) for s in ("warned", "due_today", "breached")}
    return render(request, "caseworker/cases.html", items=items, today=found["today"], counts=counts,
                  values={"stage": stage or "", "deadline_state": deadline_state or ""}, errors={},
                  stages=OPEN_STAGES, deadline_filters=DEADLINE_FILTERS)


# --- one case -------------------------------------------------------------------------------------
async def _case_page(request: Request, services: Gateway, user: User, case_id: str, *, values: dict | None = None,
                     failure: Exception | None = None, form: str = "", done: str | None = None) -> Response:
    view, item, today = await case_for_page(services, user, case_id, failure)
    return render(request, "caseworker/case.html", status_code=failure_status(failure), view=view, item=item,
                  today=today, values=values if values is not None else dict(DEFAULT_SURVEY), failure=failure,
                  errors=errors_of(failure, form) if failure else {}, form=form, done=done, form_key=new_form_key(),
                  survey_rows=_survey_rows(values or {}))


def _survey_rows(values: dict[str, str]) -> int:
    rows = [int(m.group(1)) for k in values if (m := re.fullmatch(r"surveyors\.(\d+)\.(name|role)", k))]
    return max(SURVEY_ROWS, max(rows, default=-1) + 1)


@router.get("/caseworker/cases/{case_id}")
async def case_page(request: Request, case_id: str, user: CaseworkerUser, services: Services,
                    done: str | None = None) -> Response:
    return await _case_page(request, services, user, checked_id(case_id), done=done)


async def _step(request: Request, services: Gateway, user: User, case_id: str, form: str, path: str,
                body: dict[str, Any] | None, values: dict[str, str], *, service: str = "verification",
                then: str | None = None) -> Response:
    """One step posted to the service; the case page again, with the service's words when refused."""
    case_id = checked_id(case_id)
    try:
        await services.post(service, path, user.token, body, key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        return await _case_page(request, services, user, case_id, values=values, failure=failure, form=form)
    return redirect(then or f"/caseworker/cases/{case_id}?done={form}")


def survey_body(values: dict[str, str]) -> dict[str, Any]:
    """The survey as verification takes it; surveyor rows up to the last one typed in, so that an
    error's pointer (#/surveyors/1/name) names the row on the page."""
    rows = _survey_rows(values)
    surveyors = [{"name": values.get(f"surveyors.{i}.name", ""), "role": values.get(f"surveyors.{i}.role", "")}
                 for i in range(rows)]
    while surveyors and not any(surveyors[-1].values()):
        surveyors.pop()
    return {"surveyors": surveyors, "visited_on": values.get("visited_on") or None,
            "findings": values.get("findings", "")}


@router.post("/caseworker/cases/{case_id}/survey")
async def record_survey(request: Request, case_id: str, user: CaseworkerUser, services: Services) -> Response:
    values = form_values(await request.form())
    return await _step(request, services, user, case_id, "survey", f"/v1/verifications/{case_id}/survey",
                       survey_body(values), values)


@router.post("/caseworker/cases/{case_id}/initial-review")
async def propose(request: Request, case_id: str, user: CaseworkerUser, services: Services) -> Response:
    values = form_values(await request.form())
    body = {"proposal": values.get("proposal", ""), "reason": values.get("reason", "")}
    return await _step(request, services, user, case_id, "initial_review",
                       f"/v1/verifications/{case_id}/initial-review", body, values)


@router.post("/caseworker/cases/{case_id}/public-notice")
async def post_notice(request: Request, case_id: str, user: CaseworkerUser, services: Services) -> Response:
    values = form_values(await request.form())
    return await _step(request, services, user, case_id, "public_notice",
                       f"/v1/verifications/{case_id}/public-notice", None, values)


@router.post("/caseworker/cases/{case_id}/appraisal")
async def hold_appraisal(request: Request, case_id: str, user: CaseworkerUser, services: Services) -> Response:
    values = form_values(await request.form())
    body = {"held_on": values.get("held_on") or None, "opinion": values.get("opinion", ""),
            **{k: as_int(values.get(k, "")) for k in ("participants", "votes_for", "votes_against", "abstentions")}}
    return await _step(request, services, user, case_id, "appraisal", f"/v1/verifications/{case_id}/appraisal",
                       body, values)


@router.post("/caseworker/cases/{case_id}/review")
async def start_review(request: Request, case_id: str, user: CaseworkerUser, services: Services) -> Response:
    values = form_values(await request.form())
    body: dict[str, Any] = {"reason": values.get("reason", "")}
    if values.get("grace_reason"):
        body["grace_reason"] = values["grace_reason"]
    if values.get("grace_months"):
        body["grace_months"] = as_int(values["grace_months"])
    return await _step(request, services, user, case_id, "review", f"/v1/reviews/{case_id}", body, values)


# --- reviews due ----------------------------------------------------------------------------------
@router.get("/caseworker/reviews")
async def reviews_due(request: Request, user: CaseworkerUser, services: Services, before: str | None = None,
                      region: str | None = None) -> Response:
    values = typed(before=before, region=region)
    try:
        due = await services.get("verification", "/v1/reviews/due", user.token, **values)
    except ServiceProblem as failure:
        if failure.status != 422:
            raise
        # A day or a division the service cannot read: said next to the field, as typed.
        return render(request, "caseworker/reviews.html", status_code=422, due=None, values=values,
                      errors=failure.field_errors(), failure=failure)
    return render(request, "caseworker/reviews.html", due=due, values=values, errors={}, failure=None)
