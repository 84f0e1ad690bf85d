"""The county officer's screens (issue 15): payment runs with their live progress, budgets and the
approvals of runs over them, payments the banks returned and the corrected accounts, and the
breached statutory deadlines the county supervises (督办).

Every figure comes from payment's and notify's APIs with the officer's token. A run's page shows
what `lifeline payment-run` prints (lifeline/cli.py run_progress, run_summary, approval_lines),
with the same figures: its part that changes is fetched again from /county/runs/{id}/progress
(static/console.js) until the run is finished.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from lifeline.console.forms import fen_of, typed
from lifeline.console.gateway import ServiceDown, ServiceProblem
from lifeline.console.i18n import add_labels
from lifeline.console.pages import (
    Services, failure_status, form_page, form_page_again, form_values, new_form_key, redirect, render, today,
)
from lifeline.console.session import User, role_user
from lifeline.rules.periods import period_of
from lifeline.rules.vocabulary import BANK_CHANNELS, PAYMENT_FUND_SOURCES

router = APIRouter()

Officer = Annotated[User, role_user("county_officer")]
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
EntitlementId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

# payment's vocabularies (lifeline/rules/vocabulary.py, services/payment) as the county reads them.
add_labels("run_status", {"started": "已启动", "awaiting_approval": "超出预算，待审批",
                          "instructing": "正在生成支付指令", "instructed": "支付指令已生成，正在送银行",
                          "completed": "已完成"})
add_labels("fund_source", {"dibao_fund": "低保资金", "tekun_fund": "特困人员供养资金",
                           "temporary_relief_budget": "临时救助资金", "township_reserve_fund": "乡镇临时救助备用金",
                           "service_purchase": "购买服务资金"})
add_labels("payment_status", {"instructed": "已发出支付指令", "settled": "已到账", "returned": "被退回，暂挂"})
# ISO 20022 reasons of a return (lifeline/iso20022/pain002.py REASONS).
add_labels("return_reason", {"AC01": "账号有误", "AC04": "账户已销户", "AC06": "账户已冻结",
                             "AG01": "账户不允许此交易", "BE01": "户名与账户不符", "MD07": "收款人已死亡",
                             "RC01": "银行代码有误", "FF01": "文件格式无效", "DUPL": "重复付款",
                             "NARR": "见银行附言", "AM04": "余额不足"})
add_labels("batch_purpose", {"monthly": "按月发放", "one_off": "一次性发放", "release": "更正账户后重发"})
# A reconciliation's lines (services/payment/runs.py reconciliation), in the order shown.
MONEY_LINES = ("instructed", "reinstructed", "settled", "returned", "pending", "held")
add_labels("money_line", {"instructed": "已发出", "reinstructed": "更正后重发", "settled": "已到账",
                          "returned": "被退回", "pending": "待银行确认", "held": "暂挂（待更正账户）"})
add_labels("difference", {"missing_from_statement": "对账单缺少此笔", "recall_requested": "已申请撤回"})
add_labels("skip_reason", {"no_paying_account": "本县在该银行没有付款账户"})
# notify's deadline watch (services/notify/application.py DEADLINE_STATES, vocabulary.py).
DEADLINE_ORDER = ("breached", "warned", "open", "cleared")
add_labels("deadline_state", {"open": "未到期", "warned": "临近期限", "breached": "已超期", "cleared": "已办结"})
add_labels("escalation", {"county": "县级", "prefecture": "市级", "province": "省级"})

# --- what every county screen needs ------------------------------------------------------
def this_period(request: Request) -> str:
    return period_of(today(request))


def county_of(user: User) -> str:
    """The county a person works for, when their region names one ("" for the whole country)."""
    county = user.region[:6]
    return county if len(county) == 6 and county != "000000" else ""


def lookup_errors(problem: ServiceProblem) -> dict[str, str]:
    """A listing's bad filter (422 naming the parameter) as errors next to the filter's fields;
    anything else is the page's failure."""
    errors = problem.field_errors() if problem.status == 422 else {}
    if not errors:
        raise problem
    return errors


async def filtered(services: Services, user: User, service: str, path: str,
                   values: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A list as the filter form asks for it, or (a filter the service refuses) no rows and the
    service's messages next to the filter's fields."""
    try:
        return (await services.get(service, path, user.token, **values))["items"], {}
    except ServiceProblem as problem:
        return [], lookup_errors(problem)


# --- payment runs ------------------------------------------------------------------------
def finished(view: dict[str, Any]) -> bool:
    """What the run's page waits for: the run completed and reconciled with the banks'
    statements, or an approval only another officer can give (`lifeline payment-run` stops there
    too)."""
    return view["status"] == "awaiting_approval" or (
        view["status"] == "completed" and bool(view.get("reconciliation")))


def progress(view: dict[str, Any]) -> dict[str, Any]:
    """The figures of lifeline/cli.py run_progress: payments instructed of those planned, the
    amount so far of the plan's, the batches with their bank."""
    planned = view.get("planned")
    batches = view.get("batches") or []
    total = planned["count"] if planned else 0
    done = view.get("count", 0)
    return {"planning": planned is None, "done": done, "total": total,
            "percent": 100 if total == 0 else min(100, done * 100 // total),
            "amount_fen": view.get("total_fen", 0), "planned_fen": planned["total_fen"] if planned else 0,
            "batches": len(batches), "submitted": sum(1 for b in batches if b.get("submitted"))}


async def run_context(services: Services, user: User, run_id: str) -> dict[str, Any]:
    view = await services.get("payment", f"/v1/payment-runs/{run_id}", user.token)
    report = None
    if view.get("batches"):
        report = await services.get("payment", f"/v1/payment-runs/{run_id}/reconciliation", user.token)
    return {"run": view, "report": report, "progress": progress(view), "finished": finished(view),
            "money_lines": MONEY_LINES}


@router.get("/county/runs")
async def runs(request: Request, user: Officer, services: Services) -> Response:
    answer = await services.get("payment", "/v1/payment-runs", user.token)
    items = sorted(answer["items"], key=lambda r: (r["period"], r["county_code"]), reverse=True)
    return render(request, "county/runs.html", runs=items)


@router.get("/county/runs/new")
async def new_run(request: Request, user: Officer) -> Response:
    values = {"period": this_period(request), "county_code": county_of(user)}
    return form_page(request, "county/run_new.html", values, form_key=new_form_key())


@router.post("/county/runs")
async def start_run(request: Request, user: Officer, services: Services) -> Response:
    values = form_values(await request.form())
    body = {"period": values.get("period", ""), "county_code": values.get("county_code", "")}
    try:
        started = await services.post("payment", "/v1/payment-runs", user.token, body,
                                      key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        return form_page(request, "county/run_new.html", values, failure,
                         form_key=values.get("form_key") or new_form_key())
    # A period is paid once: payment answers the run that exists (started false).
    return redirect(f"/county/runs/{started['run_id']}" + ("" if started["started"] else "?existing=1"))


@router.get("/county/runs/{run_id}")
async def run_page(request: Request, run_id: RunId, user: Officer, services: Services,
                   existing: str | None = None, approved: str | None = None) -> Response:
    context = await run_context(services, user, run_id)
    return form_page(request, "county/run.html", {}, existing=bool(existing), approved=bool(approved),
                     form_key=new_form_key(), **context)


@router.get("/county/runs/{run_id}/progress")
async def run_progress(request: Request, run_id: RunId, user: Officer, services: Services) -> Response:
    """The changing part of the run's page, fetched again until `X-Poll-Done: 1`."""
    context = await run_context(services, user, run_id)
    response = form_page(request, "county/_run_live.html", {}, form_key=new_form_key(), **context)
    if context["finished"]:
        response.headers["X-Poll-Done"] = "1"
    return response


@router.post("/county/runs/{run_id}/approval")
async def approve_run(request: Request, run_id: RunId, user: Officer, services: Services) -> Response:
    values = form_values(await request.form())
    try:
        await services.post("payment", f"/v1/payment-runs/{run_id}/approval", user.token,
                            {"reason": values.get("reason", "")}, key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        return await form_page_again(request, "county/run.html", values, failure, run_context(services, user, run_id),
                                     existing=False, approved=False, form_key=values.get("form_key") or new_form_key())
    return redirect(f"/county/runs/{run_id}?approved=1")


# --- budgets -----------------------------------------------------------------------------
async def budgets_page(request: Request, user: User, services: Services, values: dict[str, str],
                       failure: Exception | None = None, errors: dict[str, str] | None = None,
                       saved: str | None = None) -> Response:
    errors = dict(errors or {})
    if isinstance(failure, ServiceProblem):
        for name, message in failure.field_errors().items():
            # The amount is typed in yuan; payment names it amount_fen.
            errors.setdefault("amount_yuan" if name == "amount_fen" else name, message)
    budgets: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    lookup = {"county_code": values.get("county_code", ""), "period": values.get("period", "")}
    if all(lookup.values()):
        try:
            budgets = (await services.get("payment", "/v1/budgets", user.token, **lookup))["items"]
            runs = (await services.get("payment", "/v1/payment-runs", user.token, **lookup))["items"]
        except ServiceProblem as problem:
            for name, message in lookup_errors(problem).items():
                errors.setdefault(name, message)
        except ServiceDown:
            if failure is None:
                raise
    status = failure_status(failure) if failure else 422 if errors else 200
    return render(request, "county/budgets.html", status_code=status, values=values, errors=errors,
                  failure=failure, budgets=budgets, runs=runs, saved=saved,
                  fund_sources=PAYMENT_FUND_SOURCES, form_key=values.get("form_key") or new_form_key())


@router.get("/county/budgets")
async def budgets(request: Request, user: Officer, services: Services, county_code: str | None = None,
                  period: str | None = None, saved: str | None = None) -> Response:
    values = {"county_code": (county_code or county_of(user)).strip(), "period": (period or this_period(request)).strip(),
              "fund_source": saved or "dibao_fund"}
    return await budgets_page(request, user, services, values, saved=saved)


@router.post("/county/budgets")
async def set_budget(request: Request, user: Officer, services: Services) -> Response:
    values = form_values(await request.form())
    # A negative amount is payment's to refuse, in its words (it names the rule).
    amount_fen = fen_of(values.get("amount_yuan", ""), negative=True)
    if amount_fen is None:
        return await budgets_page(request, user, services, values,
                                  errors={"amount_yuan": "请填写金额（元），最多两位小数"})
    body = {"county_code": values.get("county_code", ""), "period": values.get("period", ""),
            "fund_source": values.get("fund_source", ""), "amount_fen": amount_fen}
    try:
        await services.post("payment", "/v1/budgets", user.token, body, key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        return await budgets_page(request, user, services, values, failure)
    return redirect("/county/budgets?" + urlencode({"county_code": body["county_code"], "period": body["period"],
                                                    "saved": body["fund_source"]}))


# --- returned payments and corrected accounts --------------------------------------------
@router.get("/county/returns")
async def returns(request: Request, user: Officer, services: Services, period: str | None = None,
                  region: str | None = None, corrected: str | None = None) -> Response:
    values = typed(period=period, region=region)
    items, errors = await filtered(services, user, "payment", "/v1/returned-payments", values)
    return render(request, "county/returns.html", status_code=422 if errors else 200, values=values,
                  errors=errors, items=items, corrected=corrected)


async def account_context(services: Services, user: User, entitlement_id: str, case_id: str) -> dict[str, Any]:
    entitlements = (await services.get("payment", "/v1/entitlements", user.token, case_id=case_id))["items"]
    entitlement = next((e for e in entitlements if e["entitlement_id"] == entitlement_id), None)
    if entitlement is None:
        raise ServiceProblem("payment", 404, {"title": "Entitlement not found",
                                              "detail": f"no entitlement {entitlement_id} in case {case_id}"})
    payments = (await services.get("payment", "/v1/payments", user.token, case_id=case_id))["items"]
    return {"entitlement": entitlement, "case_id": case_id, "channels": BANK_CHANNELS,
            "payments": [p for p in payments if p["entitlement_id"] == entitlement_id]}


@router.get("/county/returns/{entitlement_id}")
async def account_form(request: Request, entitlement_id: EntitlementId, case_id: str, user: Officer,
                       services: Services) -> Response:
    context = await account_context(services, user, entitlement_id, case_id)
    channel = (context["entitlement"].get("bank_account_ref") or "").split(":", 1)[0]
    return form_page(request, "county/account.html", {"channel": channel}, form_key=new_form_key(), **context)


@router.post("/county/returns/{entitlement_id}")
async def correct_account(request: Request, entitlement_id: EntitlementId, user: Officer,
                          services: Services) -> Response:
    values = form_values(await request.form())
    case_id = values.get("case_id", "")
    body = {k: values.get(k, "") for k in ("channel", "account_number", "account_name", "reason")}
    try:
        await services.put("payment", f"/v1/entitlements/{entitlement_id}/bank-account", user.token, body,
                           key=values.get("form_key") or None)
    except (ServiceProblem, ServiceDown) as failure:
        return await form_page_again(request, "county/account.html", values, failure,
                                     account_context(services, user, entitlement_id, case_id),
                                     form_key=values.get("form_key") or new_form_key())
    return redirect(f"/county/returns?corrected={entitlement_id}")


# --- breached deadlines (督办) ------------------------------------------------------------
@router.get("/county/deadlines")
async def deadlines(request: Request, user: Officer, services: Services, state: str | None = None,
                    region: str | None = None) -> Response:
    values = typed(state=state, region=region)
    items, errors = await filtered(services, user, "notify", "/v1/deadlines", values)
    counts = {s: sum(1 for d in items if d["state"] == s) for s in DEADLINE_ORDER}
    if not values["state"]:
        items = [d for d in items if d["state"] != "cleared"]  # met already: asked for by the filter
    # The breached first (what the county supervises), then the warned, each by due time.
    items.sort(key=lambda d: (DEADLINE_ORDER.index(d["state"]) if d["state"] in DEADLINE_ORDER else 9,
                              d["due_at"], d["deadline_id"]))
    return render(request, "county/deadlines.html", status_code=422 if errors else 200, values=values,
                  errors=errors, items=items, counts=counts, states=DEADLINE_ORDER)
