"""The auditor's screens (issue 15): a case's timeline across the five services, the case as it
stood at a chosen moment, each service's `audit verify` status, and an export of what the page
shows.

Everything comes from the services' own audit routes (lifeline/audit/routes.py), called with the
auditor's token: GET /v1/audit/cases/{case_id}/events?as_of= and GET /v1/audit/verify on each
service, and the case's documents through each service's `?as_of=` reads. The five are asked at
once; one that does not answer is named on the page and the others still show (an auditor
looking at a case must not lose four services' evidence because the fifth is restarting).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Awaitable
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lifeline.audit.asof import parse_moment
from lifeline.console.forms import SERVICE_ID
from lifeline.console.gateway import ServiceDown, ServiceProblem
from lifeline.console.i18n import add_labels, in_shanghai
from lifeline.console.pages import Services, now, redirect, render, words
from lifeline.console.session import User, role_user
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import SERVICES

router = APIRouter()
Auditor = Annotated[User, role_user("auditor")]

# What a datetime-local input sends (Asia/Shanghai, seconds optional).
_LOCAL_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")

BAD_CASE_ID = "案件编号只含字母、数字和 - _ . :，3 至 64 位，例如 C-0123456789ABCDEF0123"
BAD_AS_OF = "请填写一个时点，例如 2026-12-01 10:00:00（北京时间）"

# Each service's documents of a case: the field that names one and the one saying where it stands.
DOC_KEYS = {"intake": ("case_id", "status"), "verification": ("verification_id", "state"),
            "payment": ("entitlement_id", "status"), "charity": ("need_id", "status"),
            "notify": ("notice_id", "kind")}

# A consumed event's "who" is the service itself (user system:<service>).
add_labels("role", {"system": "系统"})
add_labels("seal_source", {"kafka": "服务的 Kafka 主题", "store": "服务自己的存储（Kafka 未读到）", "none": "无"})
add_labels("document", {"intake": "受理案件", "verification": "核查审批", "payment": "待遇（发放资格）",
                        "charity": "慈善需求", "notify": "告知书"})


# --- asking five services at once ----------------------------------------------------------------
@dataclass
class Answer:
    """One service's answer to one question: its value, or why there is none."""

    service: str
    value: Any = None
    down: ServiceDown | None = None
    problem: ServiceProblem | None = None

    @property
    def ok(self) -> bool:
        return self.down is None and self.problem is None

    @property
    def not_found(self) -> bool:
        return self.problem is not None and self.problem.status == 404


async def ask(service: str, call: Awaitable[Any]) -> Answer:
    try:
        return Answer(service, value=await call)
    except ServiceDown as exc:
        return Answer(service, down=exc)
    except ServiceProblem as exc:
        return Answer(service, problem=exc)


def parse_as_of(text: str | None) -> datetime | None:
    """The moment typed (a datetime-local value in Asia/Shanghai, or RFC 3339 with an offset);
    None when empty; ValueError when it is no moment."""
    text = (text or "").strip()
    if not text:
        return None
    if _LOCAL_MOMENT.fullmatch(text):
        return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=SHANGHAI)
    return parse_moment(text).astimezone(SHANGHAI)


def local_input(moment: datetime | None) -> str:
    """The value a datetime-local input shows for `moment` (Asia/Shanghai, to the second)."""
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M:%S") if moment else ""


# --- the case: its timeline and documents ----------------------------------------------------------
async def _needs_as_of(services: Services, token: str, case_id: str, as_of: str | None) -> list[dict[str, Any]]:
    """Charity's needs of the case; as of a moment, each as it stood then (a need opened later
    did not exist then: charity answers 404 and it is left out). Needs are never removed, so the
    needs of now are every need the case ever had."""
    now = (await services.get("charity", "/v1/needs", token, case_id=case_id))["items"]
    if not as_of:
        return now
    found = []
    for need in now:
        try:
            found.append(await services.get("charity", f"/v1/needs/{quote(need['need_id'], safe='')}", token,
                                            as_of=as_of))
        except ServiceProblem as exc:
            if exc.status != 404:
                raise
    return found


async def case_documents(services: Services, token: str, case_id: str, as_of: datetime | None) -> dict[str, Answer]:
    """Each service's documents of the case, as they stood at `as_of` (now when None). Notify
    answers its notices only as they are now: as of a moment, those issued by then are shown."""
    q = quote(case_id, safe="")
    when = as_of.isoformat() if as_of else None

    async def listed(service: str, path: str, **params: Any) -> list[dict[str, Any]]:
        return (await services.get(service, path, token, case_id=case_id, **params))["items"]

    async def single(service: str, path: str) -> list[dict[str, Any]]:
        return [await services.get(service, path, token, as_of=when)]

    calls = {
        "intake": single("intake", f"/v1/cases/{q}"),
        "verification": single("verification", f"/v1/verifications/{q}"),
        "payment": listed("payment", "/v1/entitlements", as_of=when),
        "charity": _needs_as_of(services, token, case_id, when),
        "notify": listed("notify", "/v1/notices"),
    }
    answers = await asyncio.gather(*(ask(s, c) for s, c in calls.items()))
    docs = {a.service: a for a in answers}
    notices = docs["notify"]
    if as_of and notices.ok:
        notices.value = [n for n in notices.value if (in_shanghai(n.get("issued_at")) or as_of) <= as_of]
    for answer in docs.values():
        if answer.not_found:  # the case (or its check) did not exist then: no documents, no failure
            answer.value, answer.problem = [], None
    return docs


def timeline_lines(answers: list[Answer]) -> list[dict[str, Any]]:
    """Every service's events of the case merged in the order recorded (then service, then log
    position), each naming the line it was caused by when that line is here too."""
    order = {s: i for i, s in enumerate(SERVICES)}
    lines = []
    for answer in answers:
        if not answer.ok:
            continue
        for e in answer.value["events"]:
            lines.append({**e, "recorded": in_shanghai(e["recorded_at"]), "happened": in_shanghai(e.get("happened_at")),
                          "anchor": f"ev-{e['service']}-{e.get('position') or len(lines)}"})
    lines.sort(key=lambda e: (e["recorded"] or datetime.min.replace(tzinfo=SHANGHAI),
                              order.get(e["service"], 9), e.get("position") or 0))
    by_cloudevent = {e["cloudevent_id"]: e for e in lines if e.get("cloudevent_id")}
    for e in lines:
        e["cause"] = by_cloudevent.get(e.get("causation_id") or "")
    return lines


async def case_view(services: Services, user: User, case_id: str, as_of: datetime | None) -> dict[str, Any]:
    """What the case page shows (and the export writes)."""
    q = quote(case_id, safe="")
    when = as_of.isoformat() if as_of else None
    timelines, docs = await asyncio.gather(
        asyncio.gather(*(ask(s, services.get(s, f"/v1/audit/cases/{q}/events", user.token, as_of=when))
                         for s in SERVICES)),
        case_documents(services, user.token, case_id, as_of),
    )
    errors: dict[str, str] = {}
    for answer in [*timelines, *docs.values()]:
        if answer.problem is not None and answer.problem.status == 422:
            errors.update(answer.problem.field_errors())
    known = [a for a in timelines if a.ok]
    doc_rows = {service: [{"id": d.get(DOC_KEYS[service][0]), "state": d.get(DOC_KEYS[service][1]),
                           "json": json.dumps(d, ensure_ascii=False, indent=2)} for d in answer.value]
                for service, answer in docs.items() if answer.ok}
    refused = [a for a in timelines if a.problem is not None and not a.not_found]
    return {
        "case_id": case_id, "as_of": as_of, "timelines": timelines, "docs": docs, "doc_rows": doc_rows,
        "lines": timeline_lines(timelines), "errors": errors,
        "down": [a.service for a in timelines if a.down is not None],
        "unknown": not known and not refused and all(a.not_found or a.down for a in timelines),
        "truncated": [a.service for a in known if a.value.get("truncated")],
        "status_code": (422 if errors else 403 if refused and not known else
                        404 if not known and not any(a.down for a in timelines) else 200),
    }


@router.get("/audit")
async def audit_index(request: Request, user: Auditor, case_id: str | None = None) -> Response:
    typed = (case_id or "").strip()
    if typed:
        if SERVICE_ID.fullmatch(typed):
            return redirect(f"/audit/cases/{quote(typed, safe='')}")
        return _bad_case_id(request, typed)
    return render(request, "auditor/index.html", values={}, errors={})


def _bad_case_id(request: Request, typed: str) -> Response:
    return render(request, "auditor/index.html", status_code=422, values={"case_id": typed},
                  errors={"case_id": words(request)._(BAD_CASE_ID)})


def _as_of_or_error(request: Request, as_of: str | None) -> tuple[datetime | None, dict[str, str]]:
    try:
        return parse_as_of(as_of), {}
    except ValueError:
        return None, {"as_of": words(request)._(BAD_AS_OF)}


@router.get("/audit/cases/{case_id}")
async def case_timeline(request: Request, case_id: str, user: Auditor, services: Services,
                        as_of: str | None = None) -> Response:
    if not SERVICE_ID.fullmatch(case_id):
        return _bad_case_id(request, case_id)
    moment, errors = _as_of_or_error(request, as_of)
    values = {"as_of": local_input(moment) if moment else (as_of or "")}
    if errors:
        return render(request, "auditor/case.html", status_code=422, case_id=case_id, view=None,
                      values=values, errors=errors, export_url=None)
    view = await case_view(services, user, case_id, moment)
    export_url = f"/audit/cases/{quote(case_id, safe='')}/export" + (f"?as_of={quote(values['as_of'])}" if moment else "")
    return render(request, "auditor/case.html", status_code=view["status_code"], case_id=case_id, view=view,
                  values=values, errors=view["errors"], export_url=export_url)


# --- the export --------------------------------------------------------------------------------
def _line_text(e: dict[str, Any]) -> str:
    who = e.get("who") or {}
    parts = [e["recorded_at"], e["service"], e.get("public_event") or "-", e["event"],
             f"user={who.get('user_id') or '-'}", f"role={who.get('role') or '-'}",
             f"office={who.get('office') or '-'}"]
    if e.get("happened_at"):
        parts.append(f"happened={e['happened_at']}")
    if e.get("why"):
        parts.append(f"why={e['why']}")
    return "  ".join(parts)


def export_zip(view: dict[str, Any], user: User, made_at: datetime) -> bytes:
    """The page as files: README.txt, timeline.txt (merged), events/<service>.jsonl and
    documents/<service>.json per service that answered, unavailable.txt naming the others."""
    as_of = view["as_of"]
    unavailable = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for answer in view["timelines"]:
            if answer.ok:
                z.writestr(f"events/{answer.service}.jsonl",
                           "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in answer.value["events"]))
            elif answer.not_found:
                z.writestr(f"events/{answer.service}.jsonl", "")
            else:
                unavailable.append(f"{answer.service} events: {answer.down or answer.problem}")
        for service, answer in view["docs"].items():
            if answer.ok:
                z.writestr(f"documents/{service}.json", json.dumps(answer.value, ensure_ascii=False, indent=2) + "\n")
            else:
                unavailable.append(f"{service} documents: {answer.down or answer.problem}")
        z.writestr("timeline.txt", "".join(_line_text(e) + "\n" for e in view["lines"]))
        if unavailable:
            z.writestr("unavailable.txt", "\n".join(unavailable) + "\n")
        z.writestr("README.txt", "\n".join([
            f"Case {view['case_id']} as the Lifeline operator console showed it, "
            f"exported from the console at {made_at.isoformat()} by {user.user_id} "
            f"(role {user.role}, office {user.region}); "
            f"as of {as_of.isoformat() if as_of else 'the moment of export'}.",
            "timeline.txt: every service's events of the case merged in recorded order; "
            "events/<service>.jsonl: each service's events as its audit route answered them; "
            "documents/<service>.json: the case's documents at that moment; "
            "unavailable.txt: the services that did not answer.",
            "This file is not signed. `lifeline audit export CASE_ID --out DIR` makes the full bundle "
            "with a manifest of SHA-256 hashes that `lifeline audit check DIR` verifies.",
        ]) + "\n")
    return buffer.getvalue()


@router.get("/audit/cases/{case_id}/export")
async def case_export(request: Request, case_id: str, user: Auditor, services: Services,
                      as_of: str | None = None) -> Response:
    if not SERVICE_ID.fullmatch(case_id):
        return redirect("/audit")
    moment, errors = _as_of_or_error(request, as_of)
    if errors:
        return redirect(f"/audit/cases/{quote(case_id, safe='')}?as_of={quote(as_of or '')}")
    view = await case_view(services, user, case_id, moment)
    if view["status_code"] != 200:  # nothing to export: the page says why
        return redirect(f"/audit/cases/{quote(case_id, safe='')}" + (f"?as_of={quote(as_of or '')}" if moment else ""))
    made_at = now(request)
    name = f"audit-{case_id}" + (f"-as-of-{moment:%Y%m%dT%H%M%S}" if moment else "") + ".zip"
    return Response(export_zip(view, user, made_at), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- each service's log verified ---------------------------------------------------------------------
@router.get("/audit/verify")
async def verify(request: Request, user: Auditor, services: Services) -> Response:
    answers = await asyncio.gather(*(ask(s, services.get(s, "/v1/audit/verify", user.token)) for s in SERVICES))
    for answer in answers:
        if answer.ok:
            answer.value["checked"] = in_shanghai(answer.value.get("checked_at"))
    all_intact = all(a.ok and a.value["ok"] for a in answers)
    return render(request, "auditor/verify.html", answers=answers, all_intact=all_intact)
