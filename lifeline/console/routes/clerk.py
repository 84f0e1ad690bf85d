"""The clerk's screens (issue 15): the one-window intake form (一窗受理), the case as the window
sees it (the one-time list of missing materials, the acceptance decision, referrals), the cases
received, referrals with their clocks, and discovery reports (主动发现).

Every fact comes from intake's API called with the clerk's token; every rule (一证一书, 一次性告知,
the region, the resident ID) is the service's. The console checks only what a form alone can
know before anything is sent: an amount typed in 元 it cannot turn into fen, the authorisation
box not ticked.
"""

from __future__ import annotations

import re
from datetime import date
from functools import partial
from typing import Annotated, Any, Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lifeline.console.forms import fen_of
from lifeline.console.gateway import ServiceDown, ServiceProblem, field_name
from lifeline.console.i18n import add_labels
from lifeline.console.pages import (
    Services, failure_status, form_page, form_values, new_form_key, redirect, render, today, words,
)
from lifeline.console.session import User, role_user
from lifeline.rules.departments import DEPARTMENTS
from lifeline.rules.vocabulary import BANK_CHANNELS, REQUIRED_MATERIALS

router = APIRouter()

Clerk = Annotated[User, role_user("clerk")]

# --- the words of intake's vocabularies (lifeline/rules/vocabulary.py) --------------------------
add_labels("case_status", {
    "discovered": "主动发现待申请", "submitted": "已提交待受理", "suspected_duplicate": "疑似重复申请（暂停）",
    "materials_requested": "已一次性告知补正", "accepted": "已受理", "verified": "已核查",
    "approved": "已批准", "refused": "不予批准", "not_accepted": "不予受理", "withdrawn": "已撤回",
})
add_labels("channel", {"window": "窗口申请", "online": "网上申请", "hotline": "热线申请", "proxy": "代为申请",
                       "discovery": "主动发现"})
add_labels("area", {"urban": "城市", "rural": "农村"})
add_labels("relation", {"self": "本人（申请人）", "spouse": "配偶", "child": "子女", "parent": "父母",
                        "sibling": "兄弟姐妹", "grandparent": "祖父母、外祖父母", "grandchild": "孙子女、外孙子女",
                        "other": "其他"})
add_labels("material", dict(REQUIRED_MATERIALS))
add_labels("referral_target", {"charity": "慈善组织", **DEPARTMENTS})
add_labels("referral_status", {"raised": "办理中", "overdue": "已超期（已督办）", "answered": "已答复"})
add_labels("referral_outcome", {"accepted": "已接收办理", "resolved": "已解决", "declined": "不予办理",
                                "not_ours": "不属本部门职责"})
add_labels("discovery_state", {"discovered": "待联系", "contacted": "已联系", "applied": "已申请"})
add_labels("contact_outcome", {"applying": "协助申请", "declined": "本人不愿申请", "not_found": "未找到本人",
                               "already_covered": "已纳入救助"})
add_labels("reporter_kind", {"grid_worker": "网格员", "village_committee": "村（居）委会", "hospital": "医院",
                             "school": "学校", "police": "公安派出所", "hotline": "热线", "caseworker": "经办人员",
                             "clerk": "窗口受理人员", "monitoring": "动态监测预警"})

ASSISTANCE_TYPES = ("dibao", "tekun", "linshi_jinan", "linshi_zhichu", "low_income")
CHANNELS = ("window", "online", "hotline", "proxy", "discovery")
AREAS = ("urban", "rural")
URGENCIES = ("normal", "urgent", "critical")
RELATIONS = ("self", "spouse", "child", "parent", "sibling", "grandparent", "grandchild", "other")
NEED_CATEGORIES = ("medical", "education", "housing", "employment", "living", "disaster", "care", "psychological")
CASE_STATUSES = ("submitted", "suspected_duplicate", "materials_requested", "accepted", "verified", "approved",
                 "refused", "not_accepted", "withdrawn", "discovered")
REFERRAL_STATES = ("raised", "overdue", "answered")
REFERRAL_OUTCOMES = ("accepted", "resolved", "declined", "not_ours")
DISCOVERY_STATES = ("discovered", "contacted", "applied")
CONTACT_OUTCOMES = ("applying", "declined", "not_found", "already_covered")
# A person reports; `monitoring` is the risk rules' own kind (intake refuses it over the API).
REPORTER_KINDS = ("grid_worker", "village_committee", "hospital", "school", "police", "hotline", "caseworker",
                  "clerk")
# Where the acceptance decision may still be taken (services/intake/domain.py ACCEPTANCE_OPEN).
ACCEPTANCE_OPEN = ("submitted", "materials_requested")
RECENT = 50


# --- what a form alone can know ------------------------------------------------------------------
_MEMBER_FIELD = re.compile(r"members\.(\d+)\.(id_number|name|relation)")
MEMBER_FIELDS = ("id_number", "name", "relation")


def member_rows(values: dict[str, str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The members typed, in the form's order and numbered again from 0 (a row removed in the
    browser leaves a gap; the service's errors name the body's index, which must be the row's),
    rows left empty dropped. Answers the values with the members renumbered, and the rows."""
    rows: dict[int, dict[str, str]] = {}
    rest: dict[str, str] = {}
    for key, value in values.items():
        m = _MEMBER_FIELD.fullmatch(key)
        if m:
            rows.setdefault(int(m[1]), {})[m[2]] = value
        else:
            rest[key] = value
    kept = [row for _, row in sorted(rows.items()) if row.get("id_number") or row.get("name")]
    for i, row in enumerate(kept):
        for name in MEMBER_FIELDS:
            rest[f"members.{i}.{name}"] = row.get(name, "")
    return rest, [{name: row.get(name, "") for name in MEMBER_FIELDS} for row in kept]


def unnamed_errors(failure: Exception | None) -> list[str]:
    """The service's errors that name no field of the form (a rule about the whole body, such as
    "exactly one member must be the applicant"): shown above the form, never lost."""
    if not isinstance(failure, ServiceProblem):
        return []
    return [str(e.get("detail") or "") for e in failure.problem.get("errors") or []
            if isinstance(e, dict) and field_name(e) is None and e.get("detail")]


def clock_state(due_date: str | None, now: date, *, stopped: bool, breached: bool) -> str | None:
    """A referral's or a contact clock's state as the console's clock words: breached once the
    service says so (or the last day has passed before the deadline watch said it), due_today on
    the last day, else open; None once answered (the clock stopped)."""
    if stopped or not due_date:
        return None
    if breached:
        return "breached"
    due = date.fromisoformat(due_date[:10])
    return "breached" if now > due else "due_today" if now == due else "open"


def _with_referral_clocks(items: list[dict[str, Any]], now: date) -> list[dict[str, Any]]:
    return [{**r, "clock_state": clock_state(
        r.get("due_date"), now, stopped=r.get("status") == "answered",
        breached=r.get("status") == "overdue" or r.get("deadline_state") == "breached")} for r in items]


def _intake_choices(request: Request) -> dict[str, list[tuple[str, str]]]:
    w = words(request)
    pick = w._("请选择")
    return {
        "assistance_type": w.options("assistance_type", ASSISTANCE_TYPES, pick),
        "channel": w.options("channel", CHANNELS),
        "area": w.options("area", AREAS, pick),
        "urgency": w.options("urgency", URGENCIES),
        "relation": w.options("relation", RELATIONS, pick),
        "bank": w.options("bank_channel", BANK_CHANNELS, pick),
    }


# --- 一窗受理 ---------------------------------------------------------------------------------------
def _intake_page(request: Request, values: dict[str, Any], failure: Exception | None = None,
                 errors: dict[str, str] | None = None) -> Response:
    rows = max(1, len({k.split(".")[1] for k in values if _MEMBER_FIELD.fullmatch(k)}))
    context = dict(choices=_intake_choices(request), member_count=rows, form_key=values.get("form_key") or new_form_key(),
                   unnamed=unnamed_errors(failure))
    if errors is not None:  # the console's own checks: nothing was sent
        return render(request, "clerk/intake.html", status_code=422, values=values, failure=None,
                      errors=errors, **context)
    return form_page(request, "clerk/intake.html", values, failure, **context)


def _local_region(user: User) -> str:
    """The township or village a clerk works in, offered as the household's ("" for a county)."""
    return user.region if len(user.region) in (9, 12) else ""


@router.get("/clerk/applications/new")
async def intake_form(request: Request, user: Clerk, services: Services,
                      discovery_report_id: str | None = None) -> Response:
    values: dict[str, Any] = {"channel": "window", "urgency": "normal", "region_code": _local_region(user),
                              "members.0.relation": "self", "form_key": new_form_key()}
    if discovery_report_id:
        # The application made from a discovery report takes the case it reserved (主动发现).
        report = await services.get("intake", f"/v1/discovery-reports/{discovery_report_id}", user.token)
        values.update({"channel": "discovery", "discovery_report_id": report["report_id"],
                       "region_code": report["region_code"], "urgency": report["urgency"],
                       "members.0.name": report["person"]["name"]})
    return _intake_page(request, values)


@router.post("/clerk/applications/new")
async def submit_application(request: Request, user: Clerk, services: Services) -> Response:
    w = words(request)
    values, members = member_rows(form_values(await request.form()))
    errors: dict[str, str] = {}
    money: dict[str, int] = {}
    for name in ("declared_monthly_income_fen", "declared_assets_fen"):
        fen = fen_of(values.get(name, ""))
        if fen is None:
            errors[name] = w._("请以元为单位填写金额，最多两位小数，例如 1234.50；没有请填 0")
        else:
            money[name] = fen
    if not values.get("authorisation_signed"):
        errors["authorisation_signed"] = w._("申请须附申请人及家庭成员签字的《家庭经济状况核对授权书》（一证一书）")
    if not members:
        errors["members.0.id_number"] = w._("请至少填写申请人本人")
    if errors:
        return _intake_page(request, values, errors=errors)

    body: dict[str, Any] = {
        "assistance_type": values.get("assistance_type", ""),
        "channel": values.get("channel", ""),
        "region_code": values.get("region_code", ""),
        "area": values.get("area", ""),
        "members": members,
        **money,
        "bank_account": {"channel": values.get("bank_account.channel", ""),
                         "account_number": values.get("bank_account.account_number", ""),
                         "account_name": values.get("bank_account.account_name", "")},
        "contact_phone": values.get("contact_phone") or None,
        "authorisation_signed": True,
        "urgency": values.get("urgency") or "normal",
        "discovery_report_id": values.get("discovery_report_id") or None,
    }
    try:
        answer = await services.post("intake", "/v1/applications", user.token, body, key=values.get("form_key"))
    except ServiceProblem as failure:
        if failure.status == 403 and str(failure.problem.get("type", "")).endswith("region-forbidden"):
            # The only region an application names is the household's: say it there.
            failure.problem.setdefault("errors", []).append({"pointer": "#/region_code", "detail": w._(
                "该村（社区）不在您的辖区内，请到户籍或居住地所在的乡镇（街道）申请")})
        return _intake_page(request, values, failure)
    except ServiceDown as failure:
        return _intake_page(request, values, failure)
    # The ID card not seen at the window: the case page offers to ask for it (一次性告知).
    missing = "" if values.get("resident_id_checked") else "?missing=resident_id"
    return redirect(f"/clerk/cases/{answer['case_id']}{missing}")


# --- the case at the window -------------------------------------------------------------------------
def _form(values: dict[str, Any] | None = None, failure: Exception | None = None) -> dict[str, Any]:
    values = values or {}
    return {"values": values, "failure": failure,
            "errors": failure.field_errors() if isinstance(failure, ServiceProblem) else {},
            "form_key": values.get("form_key") or new_form_key()}


async def _case_page(request: Request, user: User, services: Services, case_id: str, *, status_code: int = 200,
                     acceptance: dict[str, Any] | None = None, referral: dict[str, Any] | None = None,
                     done: str | None = None, missing: str | None = None) -> Response:
    case = await services.get("intake", f"/v1/cases/{case_id}", user.token)
    asked = list(case.get("missing_materials") or [])
    # A repeat request names only what is still missing (一次性告知): offer only that.
    offered = asked or list(REQUIRED_MATERIALS)
    if acceptance is None:
        acceptance = _form({"missing_materials": [m for m in (missing or "").split(",") if m in offered]})
    w = words(request)
    return render(
        request, "clerk/case.html", status_code=status_code, case=case, done=done,
        acceptance_open=case["status"] in ACCEPTANCE_OPEN, offered=offered, repeat=bool(asked),
        referrals=_with_referral_clocks(case.get("referrals") or [], today(request)),
        acceptance=acceptance, referral=referral or _form({"urgency": "normal"}),
        targets=w.options("referral_target", ("charity", *DEPARTMENTS), w._("请选择")),
        needs=w.options("need_category", NEED_CATEGORIES, w._("请选择")),
        urgencies=w.options("urgency", URGENCIES),
    )


@router.get("/clerk/cases/{case_id}")
async def case_page(request: Request, case_id: str, user: Clerk, services: Services,
                    done: str | None = None, missing: str | None = None) -> Response:
    return await _case_page(request, user, services, case_id, done=done, missing=missing)


@router.post("/clerk/cases/{case_id}/acceptance")
async def decide_acceptance(request: Request, case_id: str, user: Clerk, services: Services) -> Response:
    form = await request.form()
    values: dict[str, Any] = form_values(form)
    values["missing_materials"] = [m for m in form.getlist("missing_materials") if isinstance(m, str)]
    decision = values.get("decision", "")
    body: dict[str, Any] = {"decision": decision, "reason": values.get("reason", "")}
    if decision == "request_materials":
        body["missing_materials"] = values["missing_materials"]
    try:
        await services.post("intake", f"/v1/cases/{case_id}/acceptance", user.token, body,
                            key=values.get("form_key"))
    except (ServiceProblem, ServiceDown) as failure:
        return await _case_page(request, user, services, case_id, status_code=failure_status(failure),
                                acceptance=_form(values, failure))
    return redirect(f"/clerk/cases/{case_id}?done={decision}")


@router.post("/clerk/cases/{case_id}/referrals")
async def raise_referral(request: Request, case_id: str, user: Clerk, services: Services) -> Response:
    w = words(request)
    values: dict[str, Any] = form_values(await request.form())
    fen = fen_of(values.get("amount_asked_fen") or "0")
    if fen is None:
        form = _form(values)
        form["errors"] = {"amount_asked_fen": w._("请以元为单位填写金额，最多两位小数，例如 1234.50；没有请填 0")}
        return await _case_page(request, user, services, case_id, status_code=422, referral=form)
    body = {"target": values.get("target", ""), "need_category": values.get("need_category", ""),
            "amount_asked_fen": fen, "urgency": values.get("urgency") or "normal",
            "due_date": values.get("due_date") or None, "consent_to_share": bool(values.get("consent_to_share"))}
    try:
        await services.post("intake", f"/v1/cases/{case_id}/referrals", user.token, body, key=values.get("form_key"))
    except (ServiceProblem, ServiceDown) as failure:
        return await _case_page(request, user, services, case_id, status_code=failure_status(failure),
                                referral=_form(values, failure))
    return redirect(f"/clerk/cases/{case_id}?done=referral#referrals")


# --- 受理台账 ----------------------------------------------------------------------------------------
@router.get("/clerk/cases")
async def cases(request: Request, user: Clerk, services: Services, status: str | None = None,
                assistance_type: str | None = None, region: str | None = None) -> Response:
    w = words(request)
    values = {"status": status or "", "assistance_type": assistance_type or "", "region": region or ""}
    failure: ServiceProblem | None = None
    try:
        answer = await services.get("intake", "/v1/cases", user.token, status=status,
                                    assistance_type=assistance_type, region=region, limit=RECENT)
    except ServiceProblem as problem:
        if problem.status not in (403, 422):
            raise
        failure, answer = problem, {"items": [], "total": 0, "limit": RECENT}
    errors = failure.field_errors() if failure else {}
    if failure and failure.status == 403:
        errors["region"] = w._("该区划不在您的辖区内")
    return render(request, "clerk/cases.html", status_code=failure.status if failure else 200,
                  cases=answer["items"], total=answer["total"], limit=answer["limit"], values=values,
                  errors=errors, failure=failure,
                  statuses=w.options("case_status", CASE_STATUSES, w._("全部")),
                  types=w.options("assistance_type", ASSISTANCE_TYPES, w._("全部")))


# --- 转介 -------------------------------------------------------------------------------------------
@router.get("/clerk/referrals")
async def referrals(request: Request, user: Clerk, services: Services, state: str | None = None,
                    mine: str | None = None) -> Response:
    w = words(request)
    answer = await services.get("intake", "/v1/referrals", user.token, state=state or None,
                                assignee=user.user_id if mine else None)
    return render(request, "clerk/referrals.html", referrals=_with_referral_clocks(answer["items"], today(request)),
                  values={"state": state or "", "mine": mine or ""}, errors={},
                  states=w.options("referral_status", REFERRAL_STATES, w._("全部")))


async def _referral_page(request: Request, user: User, services: Services, referral_id: str, *,
                         status_code: int = 200, form: dict[str, Any] | None = None,
                         done: str | None = None) -> Response:
    doc = await services.get("intake", f"/v1/referrals/{referral_id}", user.token)
    (doc,) = _with_referral_clocks([doc], today(request))
    w = words(request)
    return render(request, "clerk/referral.html", status_code=status_code, referral=doc, done=done,
                  form=form or _form(), outcomes=w.options("referral_outcome", REFERRAL_OUTCOMES, w._("请选择")))


@router.get("/clerk/referrals/{referral_id}")
async def referral_page(request: Request, referral_id: str, user: Clerk, services: Services,
                        done: str | None = None) -> Response:
    return await _referral_page(request, user, services, referral_id, done=done)


async def _record_outcome(request: Request, user: User, services: Services, path: str,
                          page: Callable[..., Awaitable[Response]], done: str) -> Response:
    """An outcome with its note posted to intake (a referral answered, a discovery report's person
    contacted); refused or not answered, `page` again with what was typed and why."""
    values: dict[str, Any] = form_values(await request.form())
    body = {"outcome": values.get("outcome", ""), "note": values.get("note", "")}
    try:
        await services.post("intake", path, user.token, body, key=values.get("form_key"))
    except (ServiceProblem, ServiceDown) as failure:
        return await page(status_code=failure_status(failure), form=_form(values, failure))
    return redirect(done)


@router.post("/clerk/referrals/{referral_id}/outcome")
async def record_outcome(request: Request, referral_id: str, user: Clerk, services: Services) -> Response:
    return await _record_outcome(request, user, services, f"/v1/referrals/{referral_id}/outcome",
                                 partial(_referral_page, request, user, services, referral_id),
                                 f"/clerk/referrals/{referral_id}?done=1")


# --- 主动发现 -----------------------------------------------------------------------------------------
def _with_contact_clocks(items: list[dict[str, Any]], now: date) -> list[dict[str, Any]]:
    return [{**d, "clock_state": clock_state(
        d.get("contact_due_date"), now, stopped=d.get("contacted_at") is not None or d.get("state") != "discovered",
        breached=d.get("deadline_state") == "breached")} for d in items]


@router.get("/clerk/discovery")
async def discovery(request: Request, user: Clerk, services: Services, state: str | None = None) -> Response:
    answer = await services.get("intake", "/v1/discovery-reports", user.token, state=state or None)
    # The newest first: the service answers them in the order reported.
    items = list(reversed(_with_contact_clocks(answer["items"], today(request))))
    w = words(request)
    return render(request, "clerk/discovery.html", reports=items, values={"state": state or ""}, errors={},
                  states=w.options("discovery_state", DISCOVERY_STATES, w._("全部")))


def _report_form(request: Request, values: dict[str, Any], failure: Exception | None = None) -> Response:
    w = words(request)
    return form_page(request, "clerk/discovery_new.html", values, failure, form_key=values.get("form_key"),
                     kinds=w.options("reporter_kind", REPORTER_KINDS, w._("请选择")),
                     urgencies=w.options("urgency", URGENCIES), unnamed=unnamed_errors(failure))


@router.get("/clerk/discovery/new")
async def new_report(request: Request, user: Clerk) -> Response:
    return _report_form(request, {"person.region_code": _local_region(user), "urgency": "normal",
                                  "form_key": new_form_key()})


@router.post("/clerk/discovery/new")
async def report_discovery(request: Request, user: Clerk, services: Services) -> Response:
    values: dict[str, Any] = form_values(await request.form())

    def typed(name: str) -> str | None:
        return values.get(name) or None  # an empty optional field is not sent

    body = {
        "reporter": {"kind": values.get("reporter.kind", ""), "organisation": values.get("reporter.organisation", ""),
                     "name": typed("reporter.name"), "contact": typed("reporter.contact")},
        "person": {"id_number": typed("person.id_number"), "name": values.get("person.name", ""),
                   "address": typed("person.address"), "region_code": values.get("person.region_code", "")},
        "seen": values.get("seen", ""),
        "urgency": values.get("urgency") or "normal",
    }
    try:
        answer = await services.post("intake", "/v1/discovery-reports", user.token, body, key=values.get("form_key"))
    except ServiceProblem as failure:
        if failure.status == 403:
            failure.problem.setdefault("errors", []).append({"pointer": "#/person/region_code", "detail": words(
                request)._("该村（社区）不在您的辖区内")})
        return _report_form(request, values, failure)
    except ServiceDown as failure:
        return _report_form(request, values, failure)
    return redirect(f"/clerk/discovery/{answer['report_id']}")


async def _report_page(request: Request, user: User, services: Services, report_id: str, *,
                       status_code: int = 200, form: dict[str, Any] | None = None) -> Response:
    doc = await services.get("intake", f"/v1/discovery-reports/{report_id}", user.token)
    (doc,) = _with_contact_clocks([doc], today(request))
    w = words(request)
    return render(request, "clerk/discovery_report.html", status_code=status_code, report=doc, form=form or _form(),
                  outcomes=w.options("contact_outcome", CONTACT_OUTCOMES, w._("请选择")))


@router.get("/clerk/discovery/{report_id}")
async def report_page(request: Request, report_id: str, user: Clerk, services: Services) -> Response:
    return await _report_page(request, user, services, report_id)


@router.post("/clerk/discovery/{report_id}/contact")
async def record_contact(request: Request, report_id: str, user: Clerk, services: Services) -> Response:
    return await _record_outcome(request, user, services, f"/v1/discovery-reports/{report_id}/contact",
                                 partial(_report_page, request, user, services, report_id),
                                 f"/clerk/discovery/{report_id}")
