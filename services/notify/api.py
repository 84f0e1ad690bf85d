"""Notify HTTP routes: notices, the public notice board (no token) and the deadline watch."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.aggregate import Meta, new_id
from lifeline.http.app import (
    COMMAND_ERRORS,
    LIST_ERRORS,
    add_case_items_route,
    found_in_region,
    idempotent_id,
    in_region,
    problem_responses,
    region_filter,
    strict,
)
from lifeline.http.auth import CASE_READERS, Principal
from lifeline.http.problems import Problem
from lifeline.http.ratelimit import FixedWindowLimit, client_address
from lifeline.rules.clocks import CLOCKS
from lifeline.rules.vocabulary import (
    ASSISTANCE_TYPES,
    DEADLINE_OUTCOMES,
    DELIVERY_STATES,
    ESCALATION_LEVELS,
    NOTICE_CHANNELS,
)
from lifeline.runtime.service import ServiceRuntime
from services.notify.application import (
    DEADLINE_STATES,
    BoardEntryNotFound,
    NotifyApplication,
    board_entries,
    deadline_documents,
)
from services.notify.delivery import DeliveryNotAllowed, NoticeNotFound, print_queue
from services.notify.domain import LEGAL_NAMES, NoticePeriodOver
from services.notify.letters import add_letter_route

DEADLINE_READERS = ("caseworker", "reviewer", "county_officer", "auditor", "admin")
# The print queue: who prints the letters (the township's clerks and caseworkers) and who may look.
PRINT_READERS = ("clerk", "caseworker", "county_officer", "auditor", "admin")
PRINTERS = ("clerk", "caseworker")

VillageCode = Annotated[str, Path(
    pattern=r"^\d{9}(\d{3})?$", description="the board: a village (12 digits) or township (9)",
    examples=["370502101001"],
)]

# The public board needs no token: 401 and 403 never happen there, but every /v1 route
# documents the same problem+json set.
_NO_TOKEN = {
    401: {"description": "Not answered: the public board needs no token"},
    403: {"description": "Not answered: the public board needs no token"},
}
BOARD_ERRORS = {
    **problem_responses(401, 403, 422, 429, 503),
    **{s: {**problem_responses(s)[s], **_NO_TOKEN[s]} for s in _NO_TOKEN},
    429: {**problem_responses(429)[429],
          "description": "Too many board requests from this address this minute; retry after Retry-After"},
}
OBJECTION_ERRORS = {
    **problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    **{s: {**problem_responses(s)[s], **_NO_TOKEN[s]} for s in _NO_TOKEN},
    404: {**problem_responses(404)[404], "description": "No such entry on this board"},
    409: {**problem_responses(409)[409], "description": "The entry's notice period is over"},
    429: {**problem_responses(429)[429],
          "description": "Too many objections from this address this hour; retry after Retry-After"},
}


class ChannelDeliveryOut(BaseModel):
    """Where a notice's delivery on one channel stands (delivery.project_delivery)."""

    # Sorted, as the side store returns the document's keys.
    attempts: int = Field(description="attempts made (an SMS may take several)")
    delivered_at: str | None = Field(description="ISO 8601 timestamp, once delivered")
    failed_at: str | None = Field(description="when the last attempt failed (ISO 8601), if one did")
    last_reason: str | None = Field(description="why the last attempt failed", examples=["gateway_unavailable: HTTP 503"])
    reference: str | None = Field(description="the gateway's message id, the print batch or the inbox id, once "
                                              "delivered", examples=["SMS-5C4B3A2918F7E6D5C4B3"])
    retry_at: str | None = Field(description="when a failed SMS is tried again (ISO 8601); null when pending "
                                             "without a failure, delivered, or failed for good")
    state: Literal[DELIVERY_STATES] = Field(description="pending, delivered (once), failed (for good)")
    to_masked: str | None = Field(description="the SMS's number, masked", examples=["138****5678"])


class NoticeDoc(BaseModel):
    """A notice as notify's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    body: str
    case_id: str
    cause_event_id: str
    channel: str = Field(examples=["letter"])
    deliveries: dict[Literal[NOTICE_CHANNELS], ChannelDeliveryOut] = Field(
        description="per channel: letter and in_app always, sms when the household gave a mobile number")
    delivery: Literal["pending", "delivered", "partly_delivered"] = Field(
        description="as a whole: delivered on every channel, pending on one, or partly delivered (an SMS "
                    "failed for good; the letter and in-app stand)", examples=["pending"])
    issued_at: str = Field(description="ISO 8601 timestamp")
    issuing_office: str = Field(description="the township (9 digits) or county (6) in whose name it is issued: "
                                            "the office whose officer acted, else the case's township",
                                examples=["370502101"])
    kind: Literal[tuple(LEGAL_NAMES)]
    legal_name: str = Field(examples=["受理通知书"])
    notice_id: str
    recipient_masked: str = Field(examples=["王**"])
    region_code: str


class InboxItem(BaseModel):
    """A notice delivered in-app: the case's inbox, which the console (and any app) shows."""

    body: str
    case_id: str
    delivered_at: str = Field(description="ISO 8601 timestamp")
    inbox_id: str = Field(examples=["IN-NACC-0123456789ABCDEF"])
    issued_at: str = Field(description="ISO 8601 timestamp")
    kind: Literal[tuple(LEGAL_NAMES)]
    legal_name: str = Field(examples=["受理通知书"])
    notice_id: str
    recipient_masked: str = Field(examples=["王**"])
    region_code: str


class PrintQueueItem(BaseModel):
    notice_id: str
    case_id: str
    kind: Literal[tuple(LEGAL_NAMES)]
    legal_name: str = Field(examples=["受理通知书"])
    recipient_masked: str = Field(examples=["王**"])
    region_code: str
    issued_at: str = Field(description="ISO 8601 timestamp")
    pdf: str = Field(description="the letter to print", examples=["/v1/notices/NACC-0123456789ABCDEF.pdf"])


class PrintQueueOut(BaseModel):
    items: list[PrintQueueItem] = Field(description="letters not printed yet within the caller's region, "
                                                    "oldest first")


class PrintedIn(BaseModel):
    model_config = strict({"batch": "PRINT-20261125-370502101-01"}, {})
    batch: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$",
                              description="the print batch (the delivery's reference); by default "
                                          "PRINT-<date>-<your office>")


class PrintedOut(BaseModel):
    notice_id: str
    channel: Literal["letter"]
    reference: str = Field(description="the print batch", examples=["PRINT-20261125-370502101"])
    delivered_at: str = Field(description="ISO 8601 timestamp")
    attempt: int


# --- the public notice board ---------------------------------------------------------------
class BoardEntryOut(BaseModel):
    """What the board shows of a proposed inclusion (SPEC §4): nothing else, ever."""

    public_notice_id: str
    applicant_name_masked: str = Field(examples=["王*明"])
    members_count: int
    assistance_type: Literal[ASSISTANCE_TYPES]
    monthly_amount_fen: int | None = Field(description="monthly amount proposed (fen), or null")
    one_off_amount_fen: int | None = Field(description="one-off amount proposed (fen), or null")
    notice_from: str = Field(description="first day of the notice period (YYYY-MM-DD)")
    notice_until: str = Field(description="last day of the notice period (YYYY-MM-DD)")


class BoardOut(BaseModel):
    village_code: str
    hotline: str = Field(description="the reporting hotline (举报电话)", examples=["12345"])
    entries: list[BoardEntryOut] = Field(description="entries whose notice period is running")


class ObjectionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True,
        json_schema_extra={"examples": [{
            "public_notice_id": "PN-0123456789ABCDEF0123",
            "text": "该户家中有一辆新购轿车，收入情况与公示不符。",
            "contact": None,
        }]},
    )
    public_notice_id: str = Field(min_length=1, max_length=64, description="the board entry objected to")
    text: str = Field(min_length=1, max_length=1000, description="the objection (异议)")
    contact: str | None = Field(None, max_length=100, description="how to reach you, if you wish")


class ObjectionReceivedOut(BaseModel):
    objection_id: str = Field(examples=["OBJ-5C4B3A2918F7E6D5C4B3"])
    received_at: str = Field(description="ISO 8601 timestamp")


# --- the deadline watch ---------------------------------------------------------------------
class EscalationOut(BaseModel):
    office: str = Field(description="the office above the responsible one (督办)", examples=["370502"])
    level: Literal[ESCALATION_LEVELS]


class DeadlineOut(BaseModel):
    deadline_id: str = Field(examples=["C-0123456789AB/household_survey"])
    case_id: str
    clock: Literal[tuple(CLOCKS)]
    label_zh: str = Field(examples=["入户调查"])
    region_code: str
    responsible_office: str
    due_date: str = Field(description="the last day (YYYY-MM-DD, Asia/Shanghai)")
    due_at: str = Field(description="exclusive end: 24:00 of the due date (ISO 8601)")
    warn_at: str = Field(description="when the watch warns (ISO 8601)")
    state: Literal[DEADLINE_STATES]
    outcome: Literal[DEADLINE_OUTCOMES] | None = Field(description="when cleared")
    escalated_to: EscalationOut | None = Field(description="when breached")
    calendar_known: bool
    warnings: list[str] = Field(description="calendar warnings (a year without a known arrangement)")
    warned_at: str | None
    breached_at: str | None
    cleared_at: str | None


class DeadlinesOut(BaseModel):
    items: list[DeadlineOut] = Field(description="those within the caller's region, by due time")


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: NotifyApplication = runtime.app  # type: ignore[assignment]
    limit = FixedWindowLimit(runtime.idempotency.redis, "objections", runtime.settings.objections_per_hour,
                             3600, namespace=runtime.redis_namespace)
    # Reading needs no token either: a scraper or a flood from one address is held off too.
    board_limit = FixedWindowLimit(runtime.idempotency.redis, "board", runtime.settings.board_reads_per_minute,
                                   60, namespace=runtime.redis_namespace)

    add_case_items_route(api, runtime, "/notices", "notice", NoticeDoc, CASE_READERS)
    add_letter_route(api, runtime)  # GET /notices/{notice_id}.pdf, before any /notices/{notice_id}
    add_case_items_route(api, runtime, "/inbox", "inbox", InboxItem, CASE_READERS)

    @api.get("/print-queue", tags=["notices"], response_model=PrintQueueOut, responses=LIST_ERRORS)
    async def print_queue_(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        principal: Principal = runtime.auth.require(*PRINT_READERS),
    ):
        """Letters to print (every notice goes by letter too), within the caller's region."""
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            items = print_queue(tx)
        return {"items": in_region(items, principal, region)}

    @api.post("/print-queue/{notice_id}/printed", tags=["notices"], response_model=PrintedOut,
              responses={**COMMAND_ERRORS, 409: {**COMMAND_ERRORS[409],
                                                 "description": "Marked printed already (rule already_delivered)"}})
    async def printed(notice_id: str, body: PrintedIn, request: Request,
                      principal: Principal = runtime.auth.require(*PRINTERS)):
        """The letter was printed: delivered by letter (NoticeDelivered), once. `{}` takes the default
        batch PRINT-<date>-<your office>."""
        await asyncio.to_thread(found_in_region, lambda nid: app.get_delivery(nid, "letter"), notice_id,
                                NoticeNotFound, "Notice", principal)

        async def handle() -> tuple[int, dict]:
            try:
                answer = await asyncio.to_thread(app.mark_printed, notice_id, body.batch,
                                                 Meta.of(principal))
            except DeliveryNotAllowed as exc:
                raise Problem(409, "Printed already", exc.detail, slug=exc.rule.replace("_", "-"),
                              rule=exc.rule) from None
            runtime.saved()
            return 200, answer

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/boards/{village_code}", tags=["boards"], response_model=BoardOut, responses=BOARD_ERRORS)
    async def board(village_code: VillageCode, request: Request):
        """The public notice board (公示栏) of a village or township: no token needed; a limited
        number of reads per client address and minute."""
        await board_limit.enforce(
            client_address(request), "Too many board requests",
            f"At most {board_limit.limit} board requests a minute from one address; retry later.")
        views = await runtime.views()
        now = runtime.clock.now()
        with views.transaction() as tx:
            entries = board_entries(tx, village_code, now)
        return {"village_code": village_code, "hotline": app.hotline, "entries": entries}

    @api.post(
        "/boards/{village_code}/objections", status_code=201, tags=["boards"],
        response_model=ObjectionReceivedOut, responses=OBJECTION_ERRORS,
    )
    async def object_to(village_code: VillageCode, body: ObjectionIn, request: Request):
        """Object to an entry while its notice period runs (异议): no token needed; a limited
        number per client address and hour."""
        client = client_address(request)
        await limit.enforce(client, "Too many objections",
                            f"At most {limit.limit} objections an hour from one address; retry later.")
        caller = f"public@{client}"
        key = request.headers.get("Idempotency-Key")
        objection_id = idempotent_id("OBJ", caller, key) or new_id("OBJ")

        async def handle() -> tuple[int, dict]:
            try:
                answer = await asyncio.to_thread(
                    app.receive_objection, village_code, body.public_notice_id, body.text,
                    body.contact, objection_id)
            except BoardEntryNotFound:
                raise Problem(404, "Board entry not found",
                              "This board has no entry with that public_notice_id.",
                              slug="board-entry-not-found") from None
            except NoticePeriodOver:
                raise Problem(409, "Notice period over",
                              "The notice period of this entry has ended; objections are closed.",
                              slug="notice-period-over") from None
            runtime.saved()
            return 201, answer

        return await runtime.idempotent(request, caller, handle)

    @api.get("/deadlines", tags=["deadlines"], response_model=DeadlinesOut, responses=LIST_ERRORS)
    async def deadlines(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        state: Annotated[Literal[DEADLINE_STATES] | None, Query()] = None,
        principal: Principal = runtime.auth.require(*DEADLINE_READERS),
    ):
        """Statutory deadlines (the deadline watch) within the caller's region. An escalated
        deadline concerns the office above the responsible one, which contains its region, so
        the supervising office sees it as well."""
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = deadline_documents(tx, state)
        items = in_region(docs, principal, region)
        items.sort(key=lambda d: (d["due_at"], d["deadline_id"]))
        return {"items": items}

    return api
