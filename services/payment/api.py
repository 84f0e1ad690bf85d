"""Payment HTTP routes."""

from __future__ import annotations

import asyncio
from typing import Literal

from eventsourcing.persistence import IntegrityError
from typing import Any

from fastapi import APIRouter, Path as PathParam, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from lifeline.domain.aggregate import Meta
from lifeline.http.app import (
    COMMAND_ERRORS, CREATE_ERRORS, LIST_ERRORS, READ_ERRORS, add_case_items_route, found_in_region, in_region,
    region_filter,
)
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.iso20022 import XML_TEXT_PATTERN, Iso20022Error
from lifeline.http.problems import Problem
from lifeline.rules.vocabulary import (
    ASSISTANCE_TYPES, BANK_CHANNELS, BENEFIT_KINDS, FUND_SOURCES, PAYMENT_FUND_SOURCES, PAYMENT_RUN_STATUSES,
    PAYMENT_STATUSES,
)
from lifeline.runtime.service import ServiceRuntime
from lifeline.audit.asof import documents_as_of
from services.payment.application import EntitlementNotFound, PaymentApplication, RecoveryNotFound, project
from services.payment.domain import Entitlement
from services.payment.channels import NoPayingAccount, UnknownBankChannel
from services.payment.domain import CHANGES, NothingToPay, PaymentConflict
from services.payment.runs import reconciliation, run_totals
from services.payment.worker import jobs_of, wake
from services.payment import providers

class EntitlementChange(BaseModel):
    change: Literal[CHANGES]
    from_period: str = Field(description="YYYY-MM: the first period it applies to")
    monthly_amount_fen: int | None = Field(description="the new amount of an adjustment; null otherwise")


class EntitlementDoc(BaseModel):
    """An entitlement as payment's read model keeps it (application.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    account_corrected_at: str | None = Field(description="when the account was last corrected; null: never")
    bank_account_ref: str | None = Field(description="channel and masked number; null for a recognition",
                                         examples=["RCC:6228***********0001"])
    benefit_id: str
    benefit_type: Literal[ASSISTANCE_TYPES]
    case_id: str
    changes: list[EntitlementChange] = Field(description="adjustments, suspensions, resumptions, termination, "
                                                         "in the order recorded")
    entitlement_id: str
    first_period: str = Field(description="YYYY-MM", examples=["2026-05"])
    fund_source: Literal[FUND_SOURCES] | None
    kind: Literal[BENEFIT_KINDS]
    monthly_amount_fen: int | None
    one_off_amount_fen: int | None
    opened_at: str = Field(description="ISO 8601 timestamp")
    opened_ts: str = Field(description="the store's moment of the opening (UTC): a run pays what was opened "
                                       "before its plan")
    payable: bool = Field(description="false for a recognition (低收入家庭认定): nothing is paid")
    region_code: str
    status: Literal["active", "suspended", "terminated"]


class BankAccountIn(BaseModel):
    """A household's account; the number is sealed at once and shown masked."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"channel": "RCC", "account_number": "6228480012345670002", "account_name": "王建国",
         "reason": "原账户已销户（银行退回 AC04），户主提供新账户"}]})
    channel: Literal[tuple(BANK_CHANNELS)]
    account_number: str = Field(pattern=r"^\d{12,30}$", description="sealed at once; shown masked")
    account_name: str = Field(min_length=1, max_length=64, pattern=XML_TEXT_PATTERN)  # it goes into pain.001
    reason: str = Field(min_length=1, max_length=2000)


class AccountIn(BaseModel):
    """The account relief is paid into (sealed at once, shown masked)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"channel": "RCC", "account_number": "6228480012345670003", "account_name": "王建国"}]})
    channel: Literal[tuple(BANK_CHANNELS)]
    account_number: str = Field(pattern=r"^\d{12,30}$", description="sealed at once; shown masked")
    account_name: str = Field(min_length=1, max_length=64, pattern=XML_TEXT_PATTERN)  # it goes into pain.001


class AccountCorrectedOut(BaseModel):
    entitlement_id: str
    case_id: str
    bank_account_ref: str = Field(examples=["RCC:6228***********0002"])


# Who corrects where a household is paid.
ACCOUNT_KEEPERS = ("caseworker", "county_officer", "admin")
# Who starts payment runs, and who reads them (auditors too); who may read a bank file (clear numbers).
RUNNERS = ("county_officer", "admin")
RUN_READERS = ("county_officer", "auditor", "admin")
# Who reads recoveries (within their region), and who records what was paid back.
RECOVERY_READERS = ("caseworker", "county_officer", "auditor", "admin")
REPAYMENT_RECORDERS = ("caseworker", "county_officer", "admin")
FILE_READERS = ("county_officer", "admin")
# Who reads the payments the banks returned: those who correct the accounts, and auditors.
RETURN_READERS = (*ACCOUNT_KEEPERS, "auditor")


class PaymentDoc(BaseModel):
    """A household's payment for one period, as payment's read model keeps it."""

    model_config = ConfigDict(extra="allow")
    amount_fen: int
    bank_account_ref: str = Field(description="channel and masked number")
    batch_id: str
    case_id: str
    channel: Literal[tuple(BANK_CHANNELS)]
    entitlement_id: str
    fund_source: Literal[PAYMENT_FUND_SOURCES]
    instructed_at: str
    payment_id: str = Field(description="entitlement × period; the EndToEndId in the bank files",
                            examples=["E-0123456789ABCDEF0123-202612"])
    period: str
    reason_code: str | None = Field(description="ISO reason of a return (AC01, AC04, AC06, MD07)")
    recall_requested: bool
    region_code: str
    run_id: str
    settled_on: str | None
    status: Literal[PAYMENT_STATUSES]


class ReturnedPaymentDoc(PaymentDoc):
    reason: str = Field(description="the bank's words for the return")
    released_at: str | None = Field(None, description="when it went again to the corrected account; "
                                                      "null: held until the account is corrected")


class ReturnedPaymentsOut(BaseModel):
    items: list[ReturnedPaymentDoc] = Field(description="within the caller's region: those held first, then "
                                                        "those sent again since; the latest period first")


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"period": "2026-12", "county_code": "370502"}]})
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    county_code: str = Field(pattern=r"^\d{6}$", description="the paying county (GB/T 2260, 6 digits)")


class RunStarted(BaseModel):
    run_id: str
    county_code: str
    period: str
    status: Literal[PAYMENT_RUN_STATUSES]
    started: bool = Field(description="false: the period's run existed already (it is resumed, never repeated)")


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reason": "超预算部分已报县财政局追加，同意继续发放"}]})
    reason: str = Field(min_length=1, max_length=2000)


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"county_code": "370502", "period": "2026-12", "fund_source": "dibao_fund", "amount_fen": 1_200_000_000}]})
    county_code: str = Field(pattern=r"^\d{6}$")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    fund_source: Literal[PAYMENT_FUND_SOURCES]
    amount_fen: int = Field(ge=0, le=10**15)


class ReplenishmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"amount_fen": 5_000_000, "reference": "DYQ-BYJ-2026-12-001"}]})
    amount_fen: int = Field(gt=0, le=10**13)
    reference: str = Field(min_length=1, max_length=64, description="the county's transfer reference: "
                                                                     "the same reference is counted once")


class AdvanceIn(BaseModel):
    """Emergency relief paid at once from the township's reserve fund (先行救助)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"case_id": "C-0123456789ABCDEF0123", "amount_fen": 200_000, "reason": "火灾致家庭住房受损，先行救助",
         "bank_account": {"channel": "RCC", "account_number": "6228480012345670003", "account_name": "王建国"}}]})
    case_id: str = Field(min_length=3, max_length=64)
    amount_fen: int = Field(gt=0, le=10**9)
    reason: str = Field(min_length=1, max_length=2000)
    bank_account: AccountIn


class BankAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")
    message_id: str
    duplicate: bool = Field(description="true: received before; nothing changed")


class Money(BaseModel):
    count: int
    total_fen: int


class BudgetLine(BaseModel):
    fund_source: Literal[PAYMENT_FUND_SOURCES]
    needed_fen: int = Field(description="what the run pays from it")
    budget_fen: int | None = Field(description="the budget set; null: none (the run waits for an approval)")
    used_fen: int = Field(description="instructed already in that county and period")
    remaining_fen: int
    exceeds: bool


class Plan(BaseModel):
    count: int
    total_fen: int
    by_fund_source: dict[str, Money]
    budget_check: list[BudgetLine]
    skipped: list[dict[str, Any]] = Field(description="channels with payments but no paying account")
    planned_at: str
    planned_ts: str = Field(description="the store's moment of the plan (UTC): entitlements opened after it "
                                        "are paid by the next run, their missed periods as arrears")
    arrears_since: str = Field(description="the county's previous run's plan: entitlements opened since are "
                                           "paid the periods they missed (补发); empty: the county's first run")


class RunDoc(BaseModel):
    """A payment run as payment's read model keeps it."""

    model_config = ConfigDict(extra="allow")
    approved_by: str | None
    batch_count: int
    completed_at: str | None
    count: int = Field(description="payments instructed so far")
    county_code: str
    period: str
    planned: Plan | None
    reconciliation: dict[str, Any] | None
    run_id: str
    started_at: str
    started_by: str
    status: Literal[PAYMENT_RUN_STATUSES]
    total_fen: int


class RunsOut(BaseModel):
    items: list[RunDoc]


class BatchDoc(BaseModel):
    """A bank batch: one pain.001 file."""

    model_config = ConfigDict(extra="allow")
    assembled_at: str
    batch_id: str
    channel: Literal[tuple(BANK_CHANNELS)]
    count: int
    county_code: str
    file_name: str | None
    file_sha256: str | None
    group_status: str | None = Field(description="the bank's first answer (ISO group status)")
    period: str
    purpose: Literal["monthly", "one_off", "release"]
    requested_execution_date: str
    returned: Money
    run_id: str
    settled: Money
    submitted: bool
    submitted_at: str | None
    total_fen: int


class ChannelMoney(Money):
    batches: int


class RunView(RunDoc):
    """The run with its batches and its totals per channel and per fund source."""

    batches: list[BatchDoc]
    by_channel: dict[str, ChannelMoney]
    by_fund_source: dict[str, Money]


class Reconciliation(BaseModel):
    run_id: str
    county_code: str
    period: str
    balanced: bool = Field(description="the figures add up and nothing differs")
    totals: dict[str, Money] = Field(description="instructed, reinstructed, settled, returned, pending, held")
    by_channel: dict[str, dict[str, Money]]
    differences: list[dict[str, Any]] = Field(description="one line per difference, never hidden")


class BankMessageDoc(BaseModel):
    model_config = ConfigDict(extra="allow")
    channel: str
    kind: Literal["pain.002", "camt.053"]
    message_id: str
    entries: int
    applied: int
    unmatched: list[dict[str, Any]] = Field(description="what it said of transactions Lifeline does not know")
    received_at: str


class BankMessagesOut(BaseModel):
    items: list[BankMessageDoc]


class BudgetDoc(BaseModel):
    model_config = ConfigDict(extra="allow")
    county_code: str
    period: str
    fund_source: Literal[PAYMENT_FUND_SOURCES]
    amount_fen: int
    spent_fen: int = Field(description="instructed so far")


class BudgetsOut(BaseModel):
    items: list[BudgetDoc]


class HeldGrant(BaseModel):
    """Emergency relief granted and not paid yet: paid as soon as the fund holds it."""

    model_config = ConfigDict(extra="allow")
    grant_id: str
    case_id: str
    amount_fen: int
    problem: Literal["reserve_fund_balance", "no_paying_account", "no_account"]
    detail: str
    granted_at: str
    held_at: str


class ReserveFundOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    township_code: str
    balance_fen: int
    replenished_fen: int
    advanced_fen: int
    advances: int
    held_grants: list[HeldGrant] = Field(description="emergency relief granted and waiting for the fund, in the "
                                                     "order granted")


class GrantDoc(BaseModel):
    """Emergency relief intake granted, as payment pays it from the township's reserve fund."""

    model_config = ConfigDict(extra="allow")
    grant_id: str
    case_id: str
    region_code: str
    township_code: str
    amount_fen: int
    status: Literal["granted", "held", "paid", "cancelled"]
    problem: str | None = Field(description="why it is held; null otherwise")
    payment_id: str | None
    batch_id: str | None
    granted_at: str
    post_approval: dict[str, Any] | None = Field(description="the post-approval's decision once made")
    recovery_id: str | None = Field(description="its recovery, when the post-approval refused it after payment")


class RecoveredPayment(BaseModel):
    payment_id: str
    period: str
    amount_fen: int


class RecoveryDoc(BaseModel):
    """A recovery (追回): what the household is to pay back, and what it has."""

    model_config = ConfigDict(extra="allow")
    recovery_id: str
    case_id: str
    region_code: str
    ground: Literal["fraud", "emergency_post_approval_refused"]
    cause: str = Field(description="the grant id or the benefit id")
    since: str | None = Field(description="the date the fraud began; null for a refused post-approval")
    amount_fen: int
    payments: list[RecoveredPayment]
    opened_at: str
    repaid_fen: int
    balance_fen: int = Field(description="still to be paid back; never below zero")
    status: Literal["open", "closed"]
    repayments: list[dict[str, Any]]


class RepaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"amount_fen": 50_000, "reference": "DYQ-ZH-2027-001"}]})
    amount_fen: int = Field(gt=0, le=10**13)
    reference: str = Field(min_length=1, max_length=64, description="the receipt's reference: the same reference "
                                                                     "is counted once")


class ApprovedOut(BaseModel):
    run_id: str
    status: Literal[PAYMENT_RUN_STATUSES]
    approved_by: str


class AdvanceOut(BaseModel):
    payment_id: str
    batch_id: str
    case_id: str
    amount_fen: int
    township_code: str
    balance_fen: int
    bank_account_ref: str


# Shortened examples of what banks post (the full documents validate against the ISO XSDs).
PAIN002_EXAMPLE = """<?xml version='1.0' encoding='UTF-8'?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.12"><CstmrPmtStsRpt>
  <GrpHdr><MsgId>PAIN0022026120100001</MsgId><CreDtTm>2026-12-01T09:05:00+08:00</CreDtTm></GrpHdr>
  <OrgnlGrpInfAndSts><OrgnlMsgId>B-370502-202612-RCC-0001</OrgnlMsgId>
    <OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId><GrpSts>PART</GrpSts></OrgnlGrpInfAndSts>
  <OrgnlPmtInfAndSts><OrgnlPmtInfId>B-370502-202612-RCC-0001</OrgnlPmtInfId>
    <TxInfAndSts><OrgnlEndToEndId>E-0123456789ABCDEF0123-202612</OrgnlEndToEndId><TxSts>RJCT</TxSts>
      <StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf></TxInfAndSts></OrgnlPmtInfAndSts>
</CstmrPmtStsRpt></Document>"""
CAMT053_EXAMPLE = """<?xml version='1.0' encoding='UTF-8'?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
  <GrpHdr><MsgId>STMT20261202000001</MsgId><CreDtTm>2026-12-02T08:00:00+08:00</CreDtTm></GrpHdr>
  <Stmt><Id>STMT20261202000001</Id><CreDtTm>2026-12-02T08:00:00+08:00</CreDtTm>
    <Acct><Id><Othr><Id>160200000000000101</Id></Othr></Id></Acct>
    <Ntry><Amt Ccy="CNY">2060.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
      <BookgDt><Dt>2026-12-01</Dt></BookgDt>
      <NtryDtls><TxDtls><Refs><EndToEndId>E-0123456789ABCDEF0123-202612</EndToEndId></Refs></TxDtls></NtryDtls>
    </Ntry></Stmt>
</BkToCstmrStmt></Document>"""


def xml_body(message: str, what: str, example: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/xml": {
        "schema": {"type": "string", "description": f"{what}: ISO 20022 {message}, valid against its XSD"},
        "example": example}}}}


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, PaymentConflict):
        return Problem(409, "Not possible now", str(exc), slug=exc.rule.replace("_", "-"), rule=exc.rule)
    if isinstance(exc, (NoPayingAccount, UnknownBankChannel)):
        return Problem(422, "No paying account", str(exc), slug="no-paying-account", rule="paying_account")
    if isinstance(exc, Iso20022Error):
        return Problem(422, "Malformed bank file", str(exc), slug="malformed-bank-file", rule="iso20022")
    raise exc


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(prefix="/v1")
    app: PaymentApplication = runtime.app  # type: ignore[assignment]

    def entitlements_as_of(case_id: str, moment) -> list[dict]:
        """The case's entitlements as they stood at `moment`: each one known now (only its id is
        read here) rebuilt by `project` from its events recorded by then (lifeline/audit/asof.py)."""
        with runtime.side.transaction() as tx:
            ids = [doc["entitlement_id"] for doc in tx.find("entitlement", case_id)]
        then = documents_as_of(app, project, [Entitlement.create_id(i) for i in ids], moment)
        with then.transaction() as tx:
            return tx.find("entitlement", case_id)

    add_case_items_route(api, runtime, "/entitlements", "entitlement", EntitlementDoc, CASE_READERS,
                         as_of_items=entitlements_as_of)

    @api.put("/entitlements/{entitlement_id}/bank-account", tags=["entitlements"],
             response_model=AccountCorrectedOut, responses=COMMAND_ERRORS)
    async def correct_account(entitlement_id: str, body: BankAccountIn, request: Request,
                              principal: Principal = runtime.auth.require(*ACCOUNT_KEEPERS)):
        """Correct the household's account (e.g. after a return): the next payment goes there."""
        await asyncio.to_thread(found_in_region, app.get_entitlement, entitlement_id, EntitlementNotFound,
                                "Entitlement", principal)

        async def handle() -> tuple[int, dict]:
            try:
                e = await asyncio.to_thread(
                    app.correct_account, entitlement_id, body.model_dump(exclude={"reason"}), body.reason,
                    Meta.of(principal, body.reason))
            except NothingToPay as exc:
                raise Problem(409, "Nothing is paid on this entitlement", str(exc)) from None
            except IntegrityError:
                raise Problem(409, "Entitlement changed meanwhile", "reload and retry") from None
            runtime.saved()
            return 200, {"entitlement_id": entitlement_id, "case_id": e.case_id,
                         "bank_account_ref": e.bank_account_ref}

        return await runtime.idempotent(request, principal.user_id, handle)

    add_case_items_route(api, runtime, "/payments", "payment", PaymentDoc, CASE_READERS)

    def returned_payments(period: str | None) -> list[dict]:
        """The payments held after a return (the worker's `held` documents) and those a release
        batch sent again since, each as its payment document stands now: both are few, so
        nothing scans the payments."""
        with runtime.side.transaction() as tx:
            ids = {doc["payment_id"] for *_, doc in tx.all("held")}
            releases = [doc["batch_id"] for *_, doc in tx.all("batch")
                        if doc["purpose"] == "release" and period in (None, doc["period"])]
        for batch_id in releases:
            ids.update(app.get_batch(batch_id).payment_ids)
        with runtime.side.transaction() as tx:
            docs = [tx.get("payment", payment_id) for payment_id in ids]
        docs = [d for d in docs if d is not None and d.get("reason_code") and period in (None, d["period"])]
        docs.sort(key=lambda d: d["payment_id"])
        docs.sort(key=lambda d: d["period"], reverse=True)
        docs.sort(key=lambda d: d["status"] != "returned")
        return docs

    @api.get("/returned-payments", tags=["payments"], response_model=ReturnedPaymentsOut, responses=LIST_ERRORS)
    async def list_returned_payments(
        region: str | None = Query(None, pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                   description="only this division (within yours)"),
        period: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
        principal: Principal = runtime.auth.require(*RETURN_READERS),
    ) -> dict:
        """Payments the banks returned (AC01, AC04, AC06, MD07), within the caller's region:
        held until the household's account is corrected (PUT /v1/entitlements/{id}/bank-account),
        then sent again once (`released_at`) and settled or returned like any payment."""
        region_filter(region, principal)
        await runtime.views()
        docs = await asyncio.to_thread(returned_payments, period)
        return {"items": in_region(docs, principal, region)}

    # --- runs ---------------------------------------------------------------------------
    def run_doc(run_id: str, principal: Principal) -> dict:
        with runtime.side.transaction() as tx:
            doc = tx.get("run", run_id)
        if doc is None:
            raise Problem(404, "No such payment run", f"no payment run {run_id}", slug="not-found")
        ensure_region(principal, doc["county_code"])
        batches, by_channel, by_fund = run_totals(runtime.side, run_id)
        return {**doc, "by_channel": by_channel, "by_fund_source": by_fund, "batches": batches}

    @api.post("/payment-runs", tags=["payment-runs"], status_code=202, response_model=RunStarted,
              responses=CREATE_ERRORS)
    async def start_run(body: RunIn, request: Request, principal: Principal = runtime.auth.require(*RUNNERS)):
        """Start the county's run for the period (202), or report the one that exists: a period
        is paid once. The run goes on in the background: GET it for its progress."""
        ensure_region(principal, body.county_code)

        async def handle() -> tuple[int, dict]:
            run, started = await asyncio.to_thread(app.start_run, body.county_code, body.period, Meta.of(principal))
            runtime.saved()
            wake(runtime)
            return 202, {"run_id": run.run_id, "county_code": run.county_code, "period": run.period,
                         "status": run.status, "started": started}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/payment-runs", tags=["payment-runs"], response_model=RunsOut, responses=LIST_ERRORS)
    async def list_runs(principal: Principal = runtime.auth.require(*RUN_READERS),
                        period: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
                        county_code: str | None = Query(None, pattern=r"^\d{6}$")) -> dict:
        views = await runtime.views()
        with views.transaction() as tx:
            docs = tx.find("run", county_code) if county_code else [d for *_, d in tx.all("run")]
        return {"items": [d for d in docs if principal.can_access(d["county_code"])
                          and (period is None or d["period"] == period)]}

    @api.get("/payment-runs/{run_id}", tags=["payment-runs"], response_model=RunView, responses=READ_ERRORS)
    async def get_run(run_id: str, principal: Principal = runtime.auth.require(*RUN_READERS)) -> dict:
        """Status, counts and totals per channel and per fund source, the plan with its budget
        check, and the batches."""
        await runtime.views()
        return await asyncio.to_thread(run_doc, run_id, principal)

    @api.post("/payment-runs/{run_id}/approval", tags=["payment-runs"], response_model=ApprovedOut,
              responses=COMMAND_ERRORS)
    async def approve_run(run_id: str, body: ApprovalIn, request: Request,
                          principal: Principal = runtime.auth.require("county_officer", "admin")):
        """A run over its budget goes on when a county officer other than its starter approves."""
        await runtime.views()
        await asyncio.to_thread(run_doc, run_id, principal)

        async def handle() -> tuple[int, dict]:
            try:
                run = await asyncio.to_thread(app.approve_run, run_id, body.reason, Meta.of(principal, body.reason))
            except PaymentConflict as exc:
                raise _problem(exc) from None
            except IntegrityError:
                raise Problem(409, "Payment run changed meanwhile", "reload and retry") from None
            runtime.saved()
            wake(runtime)
            return 200, {"run_id": run_id, "status": run.status, "approved_by": run.approved_by}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/payment-runs/{run_id}/reconciliation", tags=["payment-runs"], response_model=Reconciliation,
             responses=READ_ERRORS)
    async def get_reconciliation(run_id: str, principal: Principal = runtime.auth.require(*RUN_READERS)) -> dict:
        """instructed = settled + held + pending, per channel and in total, to the fen; every
        difference from the statements listed line by line."""
        await runtime.views()
        await asyncio.to_thread(run_doc, run_id, principal)
        return await asyncio.to_thread(reconciliation, app, runtime.side, run_id)

    # --- bank batches ------------------------------------------------------------------------
    def batch_doc(batch_id: str, principal: Principal) -> dict:
        with runtime.side.transaction() as tx:
            doc = tx.get("batch", batch_id)
        if doc is None:
            raise Problem(404, "No such bank batch", f"no bank batch {batch_id}", slug="not-found")
        ensure_region(principal, doc["county_code"])
        return doc

    @api.get("/bank-batches/{batch_id}", tags=["bank-batches"], response_model=BatchDoc, responses=READ_ERRORS)
    async def get_batch(batch_id: str, principal: Principal = runtime.auth.require(*RUN_READERS)) -> dict:
        await runtime.views()
        return await asyncio.to_thread(batch_doc, batch_id, principal)

    @api.get("/bank-batches/{batch_id}/pain001", tags=["bank-batches"], response_class=Response,
             responses={**READ_ERRORS, 200: {"content": {"application/xml": {"schema": {
                 "type": "string", "description": "pain.001.001.09 (ISO 20022), valid against its XSD"}}}}})
    async def get_pain001(batch_id: str, principal: Principal = runtime.auth.require(*FILE_READERS)):
        """The batch's pain.001.001.09 file: the account numbers in clear, as the bank gets them."""
        await runtime.views()
        await asyncio.to_thread(batch_doc, batch_id, principal)
        path = jobs_of(runtime).engine.file_path(batch_id)
        if not path.exists():
            engine = jobs_of(runtime).engine

            def rewrite() -> None:
                batch = app.get_batch(batch_id)
                engine.queue_file(batch, [app.get_payment(p) for p in batch.payment_ids])
                engine.wait_for_files()

            await asyncio.to_thread(rewrite)
        return Response(await asyncio.to_thread(path.read_bytes), media_type="application/xml")

    # --- back from the banks ----------------------------------------------------------------
    async def from_bank(channel_id: str, request: Request, principal: Principal, receive) -> Any:
        if channel_id not in app.channels:
            raise Problem(404, "No such bank channel", f"no bank channel {channel_id}", slug="not-found")
        if principal.role.value == "bank_channel" and principal.user_id != f"bank:{channel_id}":
            raise Problem(403, "Another bank's channel", "a bank posts only to its own channel",
                          slug="channel-forbidden")

        async def handle() -> tuple[int, dict]:
            xml = await request.body()
            try:
                answer = await asyncio.to_thread(receive, channel_id, xml, Meta.of(principal))
            except (Iso20022Error, PaymentConflict) as exc:
                raise _problem(exc) from None
            runtime.saved()
            wake(runtime)
            return 200, answer

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/bank-channels/{channel_id}/status-reports", tags=["bank-channels"], response_model=BankAnswer,
              responses=COMMAND_ERRORS,
              openapi_extra=xml_body("pain.002.001.12", "a payment status report", PAIN002_EXAMPLE))
    async def status_report(channel_id: str, request: Request,
                            principal: Principal = runtime.auth.require("bank_channel", "admin")):
        """A pain.002.001.12 status report: rejected payments are returned and held until the
        account is corrected; a report received twice changes nothing; what it says of unknown
        transactions is kept for an operator (GET /v1/bank-messages)."""
        return await from_bank(channel_id, request, principal, app.receive_status_report)

    @api.post("/bank-channels/{channel_id}/statements", tags=["bank-channels"], response_model=BankAnswer,
              responses=COMMAND_ERRORS,
              openapi_extra=xml_body("camt.053.001.08", "an account statement", CAMT053_EXAMPLE))
    async def statement(channel_id: str, request: Request,
                        principal: Principal = runtime.auth.require("bank_channel", "admin")):
        """A camt.053.001.08 statement: booked payments are settled; returned ones are held."""
        return await from_bank(channel_id, request, principal, app.receive_statement)

    @api.get("/bank-messages", tags=["bank-channels"], response_model=BankMessagesOut, responses=LIST_ERRORS)
    async def bank_messages(principal: Principal = runtime.auth.require(*RUN_READERS),
                            channel: str | None = None, unmatched: bool = False) -> dict:
        """Status reports and statements received; `unmatched=true`: those that named
        transactions Lifeline does not know, for an operator to follow up."""
        views = await runtime.views()
        with views.transaction() as tx:
            docs = tx.find("bank_message", channel) if channel else [d for *_, d in tx.all("bank_message")]
        return {"items": [d for d in docs if not unmatched or d["unmatched"]]}

    # --- budgets and reserve funds ------------------------------------------------------------
    @api.post("/budgets", tags=["budgets"], response_model=BudgetIn, responses=CREATE_ERRORS)
    async def set_budget(body: BudgetIn, request: Request,
                         principal: Principal = runtime.auth.require("county_officer", "admin")):
        """The county's budget for a period and fund source (the latest amount set counts)."""
        ensure_region(principal, body.county_code)

        async def handle() -> tuple[int, dict]:
            try:
                await asyncio.to_thread(app.set_budget, body.county_code, body.period, body.fund_source,
                                        body.amount_fen, Meta.of(principal))
            except IntegrityError:
                raise Problem(409, "Budget changed meanwhile", "reload and retry") from None
            runtime.saved()
            return 200, body.model_dump()

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/budgets", tags=["budgets"], response_model=BudgetsOut, responses=LIST_ERRORS)
    async def list_budgets(county_code: str = Query(pattern=r"^\d{6}$"),
                           period: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
                           principal: Principal = runtime.auth.require(*RUN_READERS)) -> dict:
        ensure_region(principal, county_code)
        views = await runtime.views()
        with views.transaction() as tx:
            budgets = tx.find("budget", f"{county_code}:{period}")
            spent = {d["fund_source"]: d for d in tx.find("spent", f"{county_code}:{period}")}
        return {"items": [{**b, "spent_fen": spent.get(b["fund_source"], {}).get("total_fen", 0)} for b in budgets]}

    def fund_doc(township_code: str) -> dict:
        with runtime.side.transaction() as tx:
            doc = tx.get("reserve_fund", township_code) or {
                "township_code": township_code, "balance_fen": 0, "replenished_fen": 0, "advanced_fen": 0,
                "advances": 0}
            held = sorted(tx.find("relief_held", township_code), key=lambda d: (d["granted_at"], d["grant_id"]))
        return {**doc, "held_grants": held}

    @api.get("/reserve-funds/{township_code}", tags=["reserve-funds"], response_model=ReserveFundOut,
             responses=READ_ERRORS)
    async def get_reserve_fund(township_code: str = PathParam(pattern=r"^\d{9}$"),
                               principal: Principal = runtime.auth.require(*RUN_READERS, "caseworker")) -> dict:
        ensure_region(principal, township_code)
        await runtime.views()
        return await asyncio.to_thread(fund_doc, township_code)

    @api.post("/reserve-funds/{township_code}/replenishments", tags=["reserve-funds"], response_model=ReserveFundOut,
              responses=COMMAND_ERRORS)
    async def replenish(body: ReplenishmentIn, request: Request, township_code: str = PathParam(pattern=r"^\d{9}$"),
                        principal: Principal = runtime.auth.require("county_officer", "admin")):
        ensure_region(principal, township_code)

        async def handle() -> tuple[int, dict]:
            try:
                fund = await asyncio.to_thread(app.replenish, township_code, body.amount_fen, body.reference,
                                               Meta.of(principal))
            except PaymentConflict as exc:
                raise _problem(exc) from None
            runtime.saved()
            wake(runtime)  # grants held for want of funds are paid now
            view = await asyncio.to_thread(fund_doc, township_code)
            return 200, {**view, "balance_fen": fund.balance_fen}

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/reserve-funds/{township_code}/advances", tags=["reserve-funds"], status_code=201,
              response_model=AdvanceOut, responses=COMMAND_ERRORS)
    async def advance(body: AdvanceIn, request: Request, township_code: str = PathParam(pattern=r"^\d{9}$"),
                      principal: Principal = runtime.auth.require("caseworker", "county_officer", "admin")):
        """Emergency relief paid at once from the reserve fund (先行救助, the procedure after):
        409 `reserve_fund_balance` when the fund holds less; the balance never goes below zero."""
        ensure_region(principal, township_code)

        async def handle() -> tuple[int, dict]:
            try:
                paid = await asyncio.to_thread(app.advance_relief, township_code, body.case_id, body.amount_fen,
                                               body.bank_account.model_dump(), Meta.of(principal, body.reason))
            except (PaymentConflict, NoPayingAccount, UnknownBankChannel) as exc:
                raise _problem(exc) from None
            runtime.saved()
            wake(runtime)
            return 201, paid

        return await runtime.idempotent(request, principal.user_id, handle)

    # --- emergency grants and recoveries ----------------------------------------------------
    add_case_items_route(api, runtime, "/relief-grants", "relief_grant", GrantDoc, RECOVERY_READERS)
    add_case_items_route(api, runtime, "/recoveries", "recovery", RecoveryDoc, RECOVERY_READERS)

    def recovery_doc(recovery_id: str, principal: Principal) -> dict:
        with runtime.side.transaction() as tx:
            doc = tx.get("recovery", recovery_id)
        if doc is None:
            raise Problem(404, "No such recovery", f"no recovery {recovery_id}", slug="not-found")
        ensure_region(principal, doc["region_code"])
        return doc

    @api.get("/recoveries/{recovery_id}", tags=["recoveries"], response_model=RecoveryDoc, responses=READ_ERRORS)
    async def get_recovery(recovery_id: str, principal: Principal = runtime.auth.require(*RECOVERY_READERS)) -> dict:
        """What the household is to pay back, the payments it is computed from, and the repayments."""
        await runtime.views()
        return await asyncio.to_thread(recovery_doc, recovery_id, principal)

    @api.post("/recoveries/{recovery_id}/repayments", tags=["recoveries"], response_model=RecoveryDoc,
              responses=COMMAND_ERRORS)
    async def repay(recovery_id: str, body: RepaymentIn, request: Request,
                    principal: Principal = runtime.auth.require(*REPAYMENT_RECORDERS)):
        """Record an amount paid back (the same reference counts once): 409 `recovery_balance` when it
        is more than is still owed; the balance never goes below zero."""
        recovery = await asyncio.to_thread(found_in_region, app.get_recovery, recovery_id, RecoveryNotFound,
                                           "Recovery", principal)

        async def handle() -> tuple[int, dict]:
            try:
                await asyncio.to_thread(app.repay, recovery.recovery_id, body.amount_fen, body.reference,
                                        Meta.of(principal))
            except PaymentConflict as exc:
                raise _problem(exc) from None
            runtime.saved()
            await runtime.views()  # read your writes
            return 200, await asyncio.to_thread(recovery_doc, recovery_id, principal)

        return await runtime.idempotent(request, principal.user_id, handle)

    # What providers are paid for confirmed deliveries (services/payment/providers.py).
    api.include_router(providers.router(runtime))
    return api
