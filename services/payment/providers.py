"""Provider payments (issue 17, 资金+实物+服务): a provider is paid once per confirmed delivery.

Verification publishes `ServiceDeliveryConfirmed` when a caseworker confirms what a registered
provider delivered on an order (a service or goods in kind), with the provider's account (its
number sealed with the deployment's secret) and the amount, quantity × unit price. Payment
records a `ProviderPayment` whose id comes from the delivery id, and in the same transaction a
`Payment` (its id `PP-…` derived from the delivery id too, the EndToEndId of the bank file) in a
bank batch of its own (`runs.single_payment`, as relief grants are paid), charged to the fund
source `service_purchase`; the worker sends the pain.001 to the provider's bank. However often
the event is delivered or republished, the store holds one ProviderPayment and one Payment.

A delivery the county cannot pay from the provider's bank (no paying account of its county at
that channel) is *held*, its reason recorded once, and paid by the worker
(`pay_held_provider_payments`) once the channels file gives one (at the next start).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import BankAccount, fen
from lifeline.http.app import LIST_ERRORS
from lifeline.http.auth import Principal
from lifeline.http.problems import Problem
from lifeline.rules.periods import period_of, to_shanghai
from lifeline.rules.vocabulary import PAYMENT_STATUSES, SERVICE_KINDS, SERVICE_PURCHASE_FUND
from lifeline.stores.sidestore import SideTx
from services.payment.channels import BankChannelsError
from services.payment.domain import Payment
from services.payment.runs import single_payment

if TYPE_CHECKING:
    from lifeline.runtime.service import ServiceRuntime
    from services.payment.application import PaymentApplication
    from services.payment.runs import Jobs

log = logging.getLogger(__name__)

PROVIDER_PAYMENT_READERS = ("caseworker", "reviewer", "county_officer", "auditor", "admin", "provider")
HOLD_PROBLEMS = ("no_paying_account",)
ATTEMPTS = 3


def provider_payment_id(delivery_id: str) -> str:
    """The payment of a confirmed delivery (and its EndToEndId, at most 35 characters): PP- and
    the delivery id's own tail, so one delivery is one payment however often it is confirmed."""
    tail = delivery_id.split("-", 1)[-1]
    if len(tail) > 32 or not tail.isalnum():
        tail = hashlib.sha256(delivery_id.encode()).hexdigest()[:20].upper()
    return f"PP-{tail}"


class ProviderPayment(LifelineAggregate):
    """What payment owes a provider for one confirmed delivery, and the payment that pays it."""

    id_kind = "provider-payment"  # one per delivery

    class Recorded(LifelineAggregate.Created):
        delivery_id: str
        payment_id: str
        order_id: str
        case_id: str
        provider_id: str
        region_code: str
        kind: str
        quantity: int
        amount_fen: int
        bank_account: BankAccount  # sealed: only the bank file unseals it
        bank_account_ref: str
        period: str  # the month it was confirmed in: its payment's period
        confirmed_by: str
        confirmed_at: str
        recorded_at: str

    class Held(LifelineAggregate.Event):
        delivery_id: str
        payment_id: str
        problem: str
        detail: str
        held_at: str

        def apply(self, p: "ProviderPayment") -> None:
            p.status, p.problem = "held", self.problem

    class Paid(LifelineAggregate.Event):
        delivery_id: str
        payment_id: str
        batch_id: str
        paid_at: str

        def apply(self, p: "ProviderPayment") -> None:
            p.status, p.problem, p.batch_id = "paid", "", self.batch_id

    @classmethod
    def record(cls, confirmed: dict[str, Any], recorded_at: str, by: Meta) -> "ProviderPayment":
        if fen(confirmed["amount_fen"], "amount_fen") <= 0:
            raise ValueError("amount_fen: a delivery is paid a positive amount")
        account = BankAccount(**confirmed["bank_account"])
        period = period_of(to_shanghai(datetime.fromisoformat(confirmed["confirmed_at"])).date())
        return cls._create(
            cls.Recorded, id=cls.create_id(confirmed["delivery_id"]), delivery_id=confirmed["delivery_id"],
            payment_id=provider_payment_id(confirmed["delivery_id"]), order_id=confirmed["order_id"],
            case_id=confirmed["case_id"], provider_id=confirmed["provider_id"], region_code=confirmed["region_code"],
            kind=confirmed["kind"], quantity=confirmed["quantity"], amount_fen=confirmed["amount_fen"],
            bank_account=account, bank_account_ref=account.ref, period=period,
            confirmed_by=confirmed["confirmed_by"], confirmed_at=confirmed["confirmed_at"], recorded_at=recorded_at,
            meta=by.as_dict())

    def __init__(self, delivery_id: str, payment_id: str, order_id: str, case_id: str, provider_id: str,
                 region_code: str, amount_fen: int, bank_account: BankAccount, period: str, **recorded: Any):
        self.delivery_id, self.payment_id, self.order_id = delivery_id, payment_id, order_id
        self.case_id, self.provider_id, self.region_code = case_id, provider_id, region_code
        self.amount_fen, self.bank_account, self.period = amount_fen, bank_account, period
        self.status = "recorded"  # then held or paid
        self.problem = ""
        self.batch_id = ""

    def hold(self, problem: str, detail: str, held_at: str, by: Meta) -> bool:
        """False when it is held for that reason already (the worker tries again and again)."""
        if problem not in HOLD_PROBLEMS:
            raise ValueError(f"problem must be one of {', '.join(HOLD_PROBLEMS)}")
        if self.status == "paid" or (self.status == "held" and self.problem == problem):
            return False
        self.trigger_event(self.Held, delivery_id=self.delivery_id, payment_id=self.payment_id, problem=problem,
                           detail=detail, held_at=held_at, meta=by.as_dict())
        return True

    def pay(self, batch_id: str, paid_at: str, by: Meta) -> None:
        self.trigger_event(self.Paid, delivery_id=self.delivery_id, payment_id=self.payment_id, batch_id=batch_id,
                           paid_at=paid_at, meta=by.as_dict())


def _pay(app: "PaymentApplication", pp: ProviderPayment, meta: Meta) -> list[Any]:
    """The provider paid now: [batch, payment] to save with it; [] when it is held (recorded once)."""
    now = app.clock.now()
    account = pp.bank_account
    county = pp.region_code[:6]
    try:
        channel = app.channels.channel(account.channel)
        app.channels.paying_account(account.channel, county)
    except BankChannelsError as exc:
        pp.hold("no_paying_account", str(exc), now.isoformat(), meta)
        return []
    batch, bulk = single_payment(
        "PP", f"PP-{county}", channel, now, meta, payment_id=pp.payment_id, entitlement_id=pp.order_id,
        case_id=pp.case_id, period=pp.period, amount_fen=pp.amount_fen, fund_source=SERVICE_PURCHASE_FUND,
        account_name=account.account_name, number_sealed=account.number_sealed, bank_account_ref=account.ref,
        region_code=pp.region_code)
    payment = Payment.instructed(*bulk.items[0])
    pp.pay(batch.batch_id, now.isoformat(), meta)
    return [batch, payment]


def record_delivery(app: "PaymentApplication", confirmed: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
    """ServiceDeliveryConfirmed → the provider paid at once, in a bank batch of its own, in the
    transaction that records it; once per delivery id, however often the event comes."""
    if app.exists(ProviderPayment.create_id(confirmed["delivery_id"])):
        return
    pp = ProviderPayment.record(confirmed, app.clock.now().isoformat(), meta)
    pe.collect_events(pp, *_pay(app, pp, meta))


def get_provider_payment(app: "PaymentApplication", delivery_id: str) -> ProviderPayment:
    return app.load(ProviderPayment.create_id(delivery_id), LookupError(delivery_id))


def pay_held_provider_payments(jobs: "Jobs", meta: Meta) -> int:
    """The worker's step: each held provider payment paid if its county now has a paying account
    at the provider's bank. Two replicas at once: one saves, the other finds it paid."""
    paid = 0
    for doc in jobs._docs("provider_payment_held"):
        for _ in range(ATTEMPTS):
            pp = get_provider_payment(jobs.app, doc["delivery_id"])
            if pp.status == "paid":
                break
            out = _pay(jobs.app, pp, meta)
            if not out and not pp.pending_events:
                break
            try:
                jobs.app.save_unit([pp, *out])
            except IntegrityError:
                continue
            paid += bool(out)
            break
    return paid


# --- read models ------------------------------------------------------------------------------
def project_provider_payment(event: Any, tx: SideTx) -> bool:
    """`provider_payment` per delivery (ref: the provider), `provider_payment_held` per delivery
    waiting for a paying account (ref: the county). True when `event` was one of theirs."""
    if isinstance(event, ProviderPayment.Recorded):
        tx.put("provider_payment", event.delivery_id, {
            "delivery_id": event.delivery_id, "payment_id": event.payment_id, "order_id": event.order_id,
            "case_id": event.case_id, "provider_id": event.provider_id, "region_code": event.region_code,
            "kind": event.kind, "quantity": event.quantity, "amount_fen": event.amount_fen,
            "bank_account_ref": event.bank_account_ref, "period": event.period, "confirmed_by": event.confirmed_by,
            "confirmed_at": event.confirmed_at, "status": "recorded", "problem": None, "batch_id": None,
            "paid_at": None,
        }, ref=event.provider_id)
        return True
    if not isinstance(event, (ProviderPayment.Held, ProviderPayment.Paid)):
        return False
    doc = tx.get("provider_payment", event.delivery_id)
    if doc is None:
        return True
    if isinstance(event, ProviderPayment.Held):
        doc.update(status="held", problem=event.problem)
        tx.put("provider_payment_held", event.delivery_id, {
            "delivery_id": event.delivery_id, "provider_id": doc["provider_id"], "problem": event.problem,
            "detail": event.detail, "held_at": event.held_at}, ref=doc["region_code"][:6])
    else:
        doc.update(status="paid", problem=None, batch_id=event.batch_id, paid_at=event.paid_at)
        tx.delete("provider_payment_held", event.delivery_id)
    tx.put("provider_payment", event.delivery_id, doc, ref=doc["provider_id"])
    return True


# --- HTTP -------------------------------------------------------------------------------------
class ProviderPaymentOut(BaseModel):
    delivery_id: str
    payment_id: str = Field(description="the payment's id, the EndToEndId of its bank file (PP-…)")
    order_id: str
    case_id: str
    provider_id: str
    region_code: str
    kind: Literal[SERVICE_KINDS]
    quantity: int
    amount_fen: int
    bank_account_ref: str = Field(description="the provider's account: channel and masked number")
    period: str = Field(description="the month it was confirmed and paid in")
    confirmed_by: str
    confirmed_at: str
    status: Literal["recorded", "held", "paid"]
    problem: str | None = Field(description="why it is held (no_paying_account)")
    batch_id: str | None
    paid_at: str | None
    payment_status: Literal[PAYMENT_STATUSES] | None = Field(
        description="where its payment stands with the bank (instructed, settled, returned)")


class ProviderPaymentsOut(BaseModel):
    provider_id: str
    items: list[ProviderPaymentOut] = Field(description="within the caller's region, by confirmation time")


def router(runtime: "ServiceRuntime") -> APIRouter:
    api = APIRouter(tags=["provider-payments"])  # mounted under payment's /v1

    @api.get("/provider-payments", response_model=ProviderPaymentsOut, responses=LIST_ERRORS)
    async def provider_payments(
        provider_id: Annotated[str, Query(min_length=3, max_length=64, description="the provider's id")],
        principal: Principal = runtime.auth.require(*PROVIDER_PAYMENT_READERS),
    ):
        """What a provider is paid, one payment per confirmed delivery; a provider sees its own."""
        if principal.role == "provider" and provider_id != principal.user_id:
            raise Problem(403, "Not your payments", "a provider sees its own payments only",
                          slug="not-your-order", rule="not_your_order")
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [d for d in tx.find("provider_payment", provider_id) if principal.can_access(d["region_code"])]
            for d in docs:
                payment = tx.get("payment", d["payment_id"])
                d["payment_status"] = payment["status"] if payment else None
        docs.sort(key=lambda d: (d["confirmed_at"], d["delivery_id"]))
        return {"provider_id": provider_id, "items": docs}

    return api


__all__ = ["ProviderPayment", "pay_held_provider_payments", "project_provider_payment",
           "provider_payment_id", "record_delivery", "router"]
