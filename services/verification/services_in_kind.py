"""资金+实物+服务 (issue 17): assistance in kind and in services bought from registered providers.

Seed 002 asks that, besides money, the county buy services (走访探视、照料护理、康复训练、送医陪护、
社会融入、能力提升、心理疏导) and give goods in kind. Casework after approval, so verification:

- `Provider`: registered by the county (统一社会信用代码, its check character verified); what it
  offers at what unit price, in which divisions, for which contract term; its bank account sealed
  at once (only payment's bank file unseals it). ProviderRegistered (the masked reference only).
- `ServiceOrder`: a caseworker orders a kind for an approved case from a provider that offers it,
  serves the case's division and is under contract in the order's month (ServiceOrdered); the
  provider reports deliveries over its own role, idempotent by its reference; a caseworker
  confirms each (ServiceDeliveryConfirmed, with the provider's sealed account): payment pays the
  provider quantity × unit price once per confirmed delivery (services/payment/providers.py).
- `ServiceAllowance`: what a case's orders cost in one calendar year, saved with each order in
  one transaction, so two orders at once cannot both pass the county's limit
  (config/policy.yaml `services`: per order and per case and year, in fen).

Pure rules, aggregates, use cases, read models (`project_services`) and routes (`router`) are
all here; verification's application, outbound map and api mount them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from lifeline.domain.aggregate import LifelineAggregate, Meta, new_id
from lifeline.domain.values import BankAccount
from lifeline.http.app import (
    COMMAND_ERRORS, CREATE_ERRORS, LIST_ERRORS, READ_ERRORS, idempotent_id, region_filter,
)
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.iso20022 import XML_TEXT_PATTERN
from lifeline.rules.periods import add_periods, business_date, parse_period, period_start
from lifeline.rules.policy import ServiceLimits
from lifeline.rules.regions import InvalidRegionCode, region_contains, validate_division_in_force
from lifeline.rules.vocabulary import BANK_CHANNELS, IN_KIND_ITEMS, SERVICE_KINDS, SERVICE_UNITS
from lifeline.stores.sidestore import SideTx
from services.verification.domain import ProcedureError
from services.verification.filings import strict

if TYPE_CHECKING:  # application.py imports this module: no import cycle at run time
    from lifeline.runtime.service import ServiceRuntime
    from services.verification.application import VerificationApplication

__all__ = [
    "Provider", "ServiceAllowance", "ServiceOrder", "Refused", "ProviderIn", "ServiceOrderIn", "DeliveryIn",
    "check_order_limits", "confirm_delivery", "credit_code_check_char", "credit_code_problem",
    "delivery_id_of", "order_amount", "period_in_term", "place_order", "project_services", "register_provider",
    "report_delivery", "router",
]

PROVIDER_REGISTRARS = ("county_officer", "admin")
PROVIDER_READERS = (*CASE_READERS, "provider")
SERVICE_ORDERERS = ("caseworker", "county_officer", "admin")
DELIVERY_CONFIRMERS = ("caseworker", "county_officer", "admin")
DELIVERY_REPORTERS = ("provider",)
ORDER_READERS = (*CASE_READERS, "provider")
# How often a command is tried again when another one saved the same order or allowance meanwhile.
ATTEMPTS = 3
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE_FEN = 10_000_000


class Refused(ProcedureError):
    """A service command refused: `rule` names the rule, `status` the HTTP answer (409 a state,
    422 the request's content, 403 not this caller's, 404 nothing of that id); `extras` go into
    the problem+json (the field, the limit)."""

    def __init__(self, message: str, rule: str, status: int = 409, **extras: Any):
        super().__init__(message, rule)
        self.status = status
        self.extras = extras


# --- pure rules -------------------------------------------------------------------------------
# GB 32100-2015 统一社会信用代码: 18 characters of these 31 (no I, O, S, V, Z); the 18th is a check
# character over the first 17, weighted by 3^i mod 31.
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))


def credit_code_check_char(first17: str) -> str:
    """The check character of a unified social credit code's first 17 characters (GB 32100-2015
    §4.3: C18 = 31 − (Σ Ci × Wi mod 31), 31 written as 0)."""
    total = sum(CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARS[-total % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a unified social credit code (never quoting it), or None."""
    if len(code) != 18:
        return "a unified social credit code has 18 characters"
    if any(c not in CREDIT_CODE_CHARS for c in code):
        return "a unified social credit code uses digits and upper-case letters other than I, O, S, V and Z"
    if not code[2:8].isdigit():
        return "characters 3 to 8 of a unified social credit code are the registering division's code"
    if code[17] != credit_code_check_char(code[:17]):
        return "the check character (the 18th) does not match the first 17 (GB 32100-2015)"
    return None


def provider_id_of(credit_code: str) -> str:
    """One provider per unified social credit code: its id is derived from it."""
    return f"PV-{credit_code}"


def category_of(kind: str) -> str:
    """service (bought from a provider) or in_kind (goods)."""
    return "in_kind" if kind in IN_KIND_ITEMS else "service"


def order_amount(quantity: int, unit_price_fen: int) -> int:
    """What an order or a delivery costs: quantity × the provider's unit price, in fen."""
    if quantity < 1 or unit_price_fen < 1:
        raise ValueError("quantity and unit price are positive")
    return quantity * unit_price_fen


def check_order_limits(amount_fen: int, ordered_in_year_fen: int, limits: ServiceLimits) -> None:
    """An order within the county's limits (both inclusive): at most `per_order_fen` itself, and
    with what the case's orders for the same calendar year already cost, at most
    `per_case_year_fen`. Refused (422) naming the limit otherwise."""
    if amount_fen > limits.per_order_fen:
        raise Refused(f"the order costs {amount_fen} fen; the county's limit per order is "
                      f"{limits.per_order_fen} fen", "service_order_limit", 422,
                      limit="per_order_fen", limit_fen=limits.per_order_fen)
    if ordered_in_year_fen + amount_fen > limits.per_case_year_fen:
        raise Refused(f"the case's orders for the year would cost {ordered_in_year_fen + amount_fen} fen; the "
                      f"county's limit per case and year is {limits.per_case_year_fen} fen "
                      f"({ordered_in_year_fen} ordered already)", "service_year_limit", 422,
                      limit="per_case_year_fen", limit_fen=limits.per_case_year_fen)


def period_in_term(period: str, contract_from: date, contract_to: date) -> bool:
    """Whether the contract term (both days inclusive) covers any day of the month `period`."""
    first = period_start(period)
    last = period_start(add_periods(period, 1)) - timedelta(days=1)
    return first <= contract_to and last >= contract_from


def serves(regions: Iterable[str], region_code: str) -> bool:
    """Whether a provider serving `regions` serves a household of `region_code`."""
    return any(region_contains(r, region_code) for r in regions)


def overlaps(a: str, b: str) -> bool:
    try:
        return region_contains(a, b) or region_contains(b, a)
    except InvalidRegionCode:
        return False


def delivery_id_of(order_id: str, reference: str) -> str:
    """A delivery is the provider's reference on an order: the same report twice is one delivery."""
    return "SD-" + hashlib.sha256(f"{order_id}\0{reference}".encode()).hexdigest()[:20].upper()


def _regions_problem(regions: list[str]) -> str | None:
    if not regions:
        return "a provider serves at least one division"
    if len(set(regions)) != len(regions):
        return "a division is listed twice"
    for r in regions:
        try:
            validate_division_in_force(r)
        except InvalidRegionCode:
            return "each region is a GB/T 2260 division code (county, township or village) in force"
    if len({r[:6] for r in regions}) != 1:
        return "a provider's regions lie in one county (the county that registers and pays it)"
    return None


def _prices_problem(kinds: list[str], prices: list[dict[str, Any]]) -> str | None:
    if not kinds or len(set(kinds)) != len(kinds) or any(k not in SERVICE_KINDS for k in kinds):
        return f"service_kinds: one or more of {', '.join(SERVICE_KINDS)}, each once"
    priced = [p["kind"] for p in prices]
    if sorted(priced) != sorted(kinds):
        return "prices: one price for each kind in service_kinds, and none for another"
    for p in prices:
        if p["unit"] not in SERVICE_UNITS or not 1 <= p["unit_price_fen"] <= MAX_UNIT_PRICE_FEN:
            return f"prices: a unit of {', '.join(SERVICE_UNITS)} and a unit price of 1 to {MAX_UNIT_PRICE_FEN} fen"
    return None


# --- aggregates -------------------------------------------------------------------------------
class Provider(LifelineAggregate):
    """A provider of services or goods in kind the county contracts with (政府购买服务)."""

    id_kind = "service_provider"  # one per unified social credit code

    class Registered(LifelineAggregate.Created):
        provider_id: str
        name: str
        credit_code: str
        county_code: str
        service_kinds: list[str]
        regions: list[str]
        prices: list[dict[str, Any]]
        contract_from: str
        contract_to: str
        bank_account: BankAccount  # sealed: only payment's bank file unseals it
        bank_account_ref: str
        registered_by: str
        registered_at: str

    @classmethod
    def register(cls, *, name: str, credit_code: str, service_kinds: list[str], regions: list[str],
                 prices: list[dict[str, Any]], contract_from: date, contract_to: date, bank_account: BankAccount,
                 registered_at: datetime, by: Meta) -> "Provider":
        for field, problem in (("credit_code", credit_code_problem(credit_code)),
                               ("regions", _regions_problem(regions)),
                               ("prices", _prices_problem(service_kinds, prices))):
            if problem:
                raise Refused(problem, "invalid_provider", 422, field=field)
        if contract_from > contract_to:
            raise Refused("contract_to is before contract_from", "invalid_provider", 422, field="contract_to")
        if not name.strip():
            raise Refused("a provider has a name", "invalid_provider", 422, field="name")
        provider_id = provider_id_of(credit_code)
        return cls._create(
            cls.Registered, id=cls.create_id(provider_id), provider_id=provider_id, name=name.strip(),
            credit_code=credit_code, county_code=regions[0][:6], service_kinds=list(service_kinds),
            regions=list(regions), prices=[{"kind": p["kind"], "unit": p["unit"], "unit_price_fen": p["unit_price_fen"]}
                                           for p in prices],
            contract_from=contract_from.isoformat(), contract_to=contract_to.isoformat(), bank_account=bank_account,
            bank_account_ref=bank_account.ref, registered_by=by.user_id, registered_at=registered_at.isoformat(),
            meta=by.as_dict())

    def __init__(self, provider_id: str, name: str, credit_code: str, county_code: str, service_kinds: list[str],
                 regions: list[str], prices: list[dict[str, Any]], contract_from: str, contract_to: str,
                 bank_account: BankAccount, registered_by: str, registered_at: str):
        self.provider_id, self.name, self.credit_code = provider_id, name, credit_code
        self.county_code = county_code
        self.service_kinds, self.regions = list(service_kinds), list(regions)
        self.prices = {p["kind"]: dict(p) for p in prices}
        self.contract_from, self.contract_to = date.fromisoformat(contract_from), date.fromisoformat(contract_to)
        self.bank_account = bank_account
        self.registered_by, self.registered_at = registered_by, registered_at

    @property
    def region_code(self) -> str:
        return self.county_code


class ServiceAllowance(LifelineAggregate):
    """What a case's orders cost in one calendar year (by the orders' periods). Saved with each
    order in one transaction: two orders at once on two replicas cannot both pass the limit
    (the second finds the allowance's version taken and is checked again on the new total)."""

    id_kind = "service_allowance"  # case × year

    class Opened(LifelineAggregate.Created):
        case_id: str
        year: str

    class Committed(LifelineAggregate.Event):
        case_id: str
        year: str
        order_id: str
        amount_fen: int
        total_fen: int

        def apply(self, a: "ServiceAllowance") -> None:
            a.total_fen = self.total_fen
            a.orders.append(self.order_id)

    @classmethod
    def open(cls, case_id: str, year: str, by: Meta) -> "ServiceAllowance":
        return cls._create(cls.Opened, id=cls.create_id(case_id, year), case_id=case_id, year=year,
                           meta=by.as_dict())

    def __init__(self, case_id: str, year: str):
        self.case_id, self.year = case_id, year
        self.total_fen = 0
        self.orders: list[str] = []

    def commit(self, order_id: str, amount_fen: int, limits: ServiceLimits, by: Meta) -> None:
        check_order_limits(amount_fen, self.total_fen, limits)
        self.trigger_event(self.Committed, case_id=self.case_id, year=self.year, order_id=order_id,
                           amount_fen=amount_fen, total_fen=self.total_fen + amount_fen, meta=by.as_dict())


class ServiceOrder(LifelineAggregate):
    """One order of a kind for a case from a provider, its deliveries and their confirmations."""

    id_kind = "service_order"

    class Placed(LifelineAggregate.Created):
        order_id: str
        case_id: str
        region_code: str
        provider_id: str
        kind: str
        quantity: int
        unit: str
        unit_price_fen: int
        amount_fen: int
        period: str
        contract_from: str
        contract_to: str
        ordered_by: str
        ordered_at: str

    class DeliveryReported(LifelineAggregate.Event):
        order_id: str
        delivery_id: str
        case_id: str
        provider_id: str
        delivered_on: str
        quantity: int
        note: str
        reference: str
        reported_at: str

        def apply(self, o: "ServiceOrder") -> None:
            o.deliveries[self.delivery_id] = {
                "delivery_id": self.delivery_id, "delivered_on": self.delivered_on, "quantity": self.quantity,
                "note": self.note, "reference": self.reference, "reported_at": self.reported_at,
                "status": "reported", "amount_fen": None, "confirmed_by": None, "confirmed_at": None}

    class DeliveryConfirmed(LifelineAggregate.Event):
        order_id: str
        delivery_id: str
        case_id: str
        provider_id: str
        region_code: str
        kind: str
        quantity: int
        unit: str
        unit_price_fen: int
        amount_fen: int
        delivered_on: str
        bank_account: BankAccount  # the provider's, sealed: payment pays into it
        confirmed_by: str
        confirmed_at: str

        def apply(self, o: "ServiceOrder") -> None:
            o.deliveries[self.delivery_id].update(status="confirmed", amount_fen=self.amount_fen,
                                                  confirmed_by=self.confirmed_by, confirmed_at=self.confirmed_at)
            o.confirmed_quantity += self.quantity

    @classmethod
    def place(cls, order_id: str, case_id: str, region_code: str, provider: Provider, kind: str, quantity: int,
              unit: str, period: str, ordered_at: datetime, by: Meta) -> "ServiceOrder":
        """Refused (422) when the provider does not offer the kind, prices it in another unit or
        does not serve the case's division; (409) when its contract does not cover the month."""
        parse_period(period)
        if not 1 <= quantity <= MAX_QUANTITY:
            raise Refused(f"quantity is 1 to {MAX_QUANTITY}", "quantity", 422, field="quantity")
        price = provider.prices.get(kind)
        if price is None:
            raise Refused(f"provider {provider.provider_id} does not offer {kind}", "provider_kind", 422, field="kind")
        if unit != price["unit"]:
            raise Refused(f"provider {provider.provider_id} prices {kind} by the {price['unit']}", "unit", 422,
                          field="unit")
        if not serves(provider.regions, region_code):
            raise Refused(f"provider {provider.provider_id} does not serve the case's division", "provider_region",
                          422, field="provider_id")
        if not period_in_term(period, provider.contract_from, provider.contract_to):
            raise Refused(f"provider {provider.provider_id}'s contract ({provider.contract_from} to "
                          f"{provider.contract_to}) does not cover {period}", "contract_term", 409, field="period")
        return cls._create(
            cls.Placed, id=cls.create_id(order_id), order_id=order_id, case_id=case_id, region_code=region_code,
            provider_id=provider.provider_id, kind=kind, quantity=quantity, unit=unit,
            unit_price_fen=price["unit_price_fen"], amount_fen=order_amount(quantity, price["unit_price_fen"]),
            period=period, contract_from=provider.contract_from.isoformat(),
            contract_to=provider.contract_to.isoformat(), ordered_by=by.user_id, ordered_at=ordered_at.isoformat(),
            meta=by.as_dict())

    def __init__(self, order_id: str, case_id: str, region_code: str, provider_id: str, kind: str, quantity: int,
                 unit: str, unit_price_fen: int, amount_fen: int, period: str, contract_from: str,
                 contract_to: str, ordered_by: str, ordered_at: str):
        self.order_id, self.case_id, self.region_code = order_id, case_id, region_code
        self.provider_id, self.kind, self.quantity, self.unit = provider_id, kind, quantity, unit
        self.unit_price_fen, self.amount_fen, self.period = unit_price_fen, amount_fen, period
        self.contract_from, self.contract_to = date.fromisoformat(contract_from), date.fromisoformat(contract_to)
        self.ordered_by, self.ordered_at = ordered_by, ordered_at
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.confirmed_quantity = 0

    def report_delivery(self, provider_id: str, delivered_on: date, quantity: int, note: str, reference: str,
                        today: date, reported_at: datetime, by: Meta) -> tuple[str, bool]:
        """The provider's report: (delivery id, True when recorded now). The same reference again
        with the same content changes nothing (False); with other content it is refused (409)."""
        if provider_id != self.provider_id:
            raise Refused("this order is another provider's", "not_your_order", 403)
        delivery_id = delivery_id_of(self.order_id, reference)
        known = self.deliveries.get(delivery_id)
        if known is not None:
            if (known["delivered_on"], known["quantity"], known["note"]) != (delivered_on.isoformat(), quantity, note):
                raise Refused(f"delivery reference {reference} was reported with other content", "delivery_reference",
                              409, field="reference")
            return delivery_id, False
        if delivered_on > today:
            raise Refused("delivered_on is in the future", "delivered_on", 422, field="delivered_on")
        if delivered_on < period_start(self.period):
            raise Refused(f"delivered_on is before the order's month {self.period}", "delivered_on", 422,
                          field="delivered_on")
        if not self.contract_from <= delivered_on <= self.contract_to:
            raise Refused("delivered_on is outside the provider's contract term", "contract_term", 422,
                          field="delivered_on")
        if not 1 <= quantity <= self.quantity:
            raise Refused(f"quantity is 1 to the {self.quantity} ordered", "quantity", 422, field="quantity")
        self.trigger_event(self.DeliveryReported, order_id=self.order_id, delivery_id=delivery_id,
                           case_id=self.case_id, provider_id=self.provider_id, delivered_on=delivered_on.isoformat(),
                           quantity=quantity, note=note, reference=reference, reported_at=reported_at.isoformat(),
                           meta=by.as_dict())
        return delivery_id, True

    def confirm_delivery(self, delivery_id: str, bank_account: BankAccount, confirmed_at: datetime, by: Meta) -> None:
        """A caseworker confirms a reported delivery: the provider is paid quantity × unit price.
        Once per delivery (409 `delivery_confirmed`); never more than ordered in all (409)."""
        delivery = self.deliveries.get(delivery_id)
        if delivery is None:
            raise Refused(f"order {self.order_id} has no delivery {delivery_id}", "unknown_delivery", 404)
        if delivery["status"] == "confirmed":
            raise Refused(f"delivery {delivery_id} was confirmed already", "delivery_confirmed", 409)
        if self.confirmed_quantity + delivery["quantity"] > self.quantity:
            raise Refused(f"{self.confirmed_quantity} of the {self.quantity} {self.unit} ordered are confirmed "
                          f"already; this delivery reports {delivery['quantity']} more", "delivery_exceeds_order", 409)
        self.trigger_event(
            self.DeliveryConfirmed, order_id=self.order_id, delivery_id=delivery_id, case_id=self.case_id,
            provider_id=self.provider_id, region_code=self.region_code, kind=self.kind, quantity=delivery["quantity"],
            unit=self.unit, unit_price_fen=self.unit_price_fen,
            amount_fen=order_amount(delivery["quantity"], self.unit_price_fen), delivered_on=delivery["delivered_on"],
            bank_account=bank_account, confirmed_by=by.user_id, confirmed_at=confirmed_at.isoformat(),
            meta=by.as_dict())


# --- use cases on the verification application ----------------------------------------------
def get_provider(app: "VerificationApplication", provider_id: str) -> Provider:
    return app.load(Provider.create_id(provider_id), Refused(f"no provider {provider_id}", "not_found", 404))


def get_order(app: "VerificationApplication", order_id: str) -> ServiceOrder:
    return app.load(ServiceOrder.create_id(order_id), Refused(f"no service order {order_id}", "not_found", 404))


def register_provider(app: "VerificationApplication", *, name: str, credit_code: str, service_kinds: list[str],
                      regions: list[str], prices: list[dict[str, Any]], contract_from: date, contract_to: date,
                      bank_account: BankAccount, meta: Meta) -> Provider:
    """Register a provider (its account sealed by the caller); a code registered before is 409."""
    provider = Provider.register(name=name, credit_code=credit_code, service_kinds=service_kinds, regions=regions,
                                 prices=prices, contract_from=contract_from, contract_to=contract_to,
                                 bank_account=bank_account, registered_at=app.clock.now(), by=meta)
    registered = Refused(f"a provider with this unified social credit code is registered ({provider.provider_id})",
                         "provider_registered", 409, provider_id=provider.provider_id)
    if app.exists(provider.id):
        raise registered
    try:
        app.save(provider)
    except IntegrityError:
        raise registered from None
    return provider


def place_order(app: "VerificationApplication", order_id: str, case_id: str, kind: str, quantity: int, unit: str,
                period: str, provider_id: str, meta: Meta) -> ServiceOrder:
    """Order a kind for an approved case (its benefit not ended) within the county's limits in
    force today; the order and the case's allowance for the period's year saved together."""
    ident = ServiceOrder.create_id(order_id)
    if app.exists(ident):
        return app.repository.get(ident)  # the same request again (its Idempotency-Key): one order
    try:
        v = app.get_verification(case_id)
    except LookupError:
        raise Refused(f"no case {case_id}", "not_found", 404) from None
    if v.state != "approved" or v.benefit is None or v.benefit_status == "terminated":
        raise Refused("services and goods in kind are ordered for an approved case whose benefit has not ended",
                      "case_not_approved", 409)
    try:
        provider = get_provider(app, provider_id)
    except Refused:
        raise Refused(f"no provider {provider_id} is registered", "unknown_provider", 422, field="provider_id") from None
    year = period[:4]
    for _ in range(ATTEMPTS):
        now = app.clock.now()
        limits = app._policy(v.region_code, now).services
        order = ServiceOrder.place(order_id, case_id, v.region_code, provider, kind, quantity, unit, period, now, meta)
        allowance = app.load_or_create(ServiceAllowance.create_id(case_id, year),
                                       lambda: ServiceAllowance.open(case_id, year, meta))
        allowance.commit(order_id, order.amount_fen, limits, meta)
        try:
            app.save(order, allowance)
            return order
        except IntegrityError:
            if app.exists(ident):
                return app.repository.get(ident)
            continue  # another order of the case this year came first: checked again on the new total
    raise Refused("the case's orders keep changing; retry", "service_allowance_busy", 409)


def report_delivery(app: "VerificationApplication", order_id: str, provider_id: str, delivered_on: date,
                    quantity: int, note: str, reference: str, meta: Meta) -> tuple[ServiceOrder, str, bool]:
    """The provider's delivery report: (order, delivery id, recorded now?)."""
    for _ in range(ATTEMPTS):
        order = get_order(app, order_id)
        now = app.clock.now()
        delivery_id, new = order.report_delivery(provider_id, delivered_on, quantity, note, reference,
                                                 business_date(now), now, meta)
        if not new:
            return order, delivery_id, False
        try:
            app.save(order)
            return order, delivery_id, True
        except IntegrityError:
            continue  # a confirmation or another report saved meanwhile: on the fresh order
    raise Refused("the order keeps changing; retry", "service_order_busy", 409)


def confirm_delivery(app: "VerificationApplication", order_id: str, delivery_id: str, meta: Meta) -> ServiceOrder:
    """Confirm a reported delivery: ServiceDeliveryConfirmed with the provider's account as
    registered (sealed), for payment to pay once."""
    for _ in range(ATTEMPTS):
        order = get_order(app, order_id)
        provider = get_provider(app, order.provider_id)
        order.confirm_delivery(delivery_id, provider.bank_account, app.clock.now(), meta)
        try:
            app.save(order)
            return order
        except IntegrityError:
            continue
    raise Refused("the order keeps changing; retry", "service_order_busy", 409)


# --- views and read models --------------------------------------------------------------------
def provider_view(p: Provider.Registered | Provider) -> dict[str, Any]:
    prices = p.prices if isinstance(p.prices, list) else list(p.prices.values())
    contract_from, contract_to = (str(p.contract_from), str(p.contract_to))
    return {"provider_id": p.provider_id, "name": p.name, "credit_code": p.credit_code, "county_code": p.county_code,
            "service_kinds": list(p.service_kinds), "regions": list(p.regions), "prices": [dict(x) for x in prices],
            "contract_from": contract_from, "contract_to": contract_to, "bank_account_ref": p.bank_account.ref,
            "registered_by": p.registered_by, "registered_at": p.registered_at}


def order_view(o: ServiceOrder) -> dict[str, Any]:
    """An order as its read model keeps it (`service_order`)."""
    confirmed = [d for d in o.deliveries.values() if d["status"] == "confirmed"]
    return {
        "order_id": o.order_id, "case_id": o.case_id, "region_code": o.region_code, "provider_id": o.provider_id,
        "kind": o.kind, "category": category_of(o.kind), "quantity": o.quantity, "unit": o.unit,
        "unit_price_fen": o.unit_price_fen, "amount_fen": o.amount_fen, "period": o.period,
        "ordered_by": o.ordered_by, "ordered_at": o.ordered_at, "status": _status(o.confirmed_quantity, o.quantity),
        "confirmed_quantity": o.confirmed_quantity, "confirmed_fen": sum(d["amount_fen"] for d in confirmed),
        "deliveries": [dict(d) for d in o.deliveries.values()],
    }


def delivery_view(o: ServiceOrder, delivery_id: str) -> dict[str, Any]:
    return {"order_id": o.order_id, "case_id": o.case_id, "provider_id": o.provider_id,
            **o.deliveries[delivery_id]}


def _status(confirmed: int, ordered: int) -> str:
    return "ordered" if confirmed == 0 else "delivered" if confirmed >= ordered else "partly_delivered"


def project_services(event: Any, tx: SideTx) -> bool:
    """Read models of services and goods in kind; True when `event` was one of theirs.

    - `provider`, keyed by provider id (ref: its county): what GET /v1/providers lists (the
      account by its masked reference only).
    - `service_order`, keyed by order id (ref: the case): the order, its deliveries, what is
      confirmed; `provider_order`, keyed by order id (ref: the provider): the provider's orders.
    """
    if isinstance(event, Provider.Registered):
        tx.put("provider", event.provider_id, provider_view(event), ref=event.county_code)
    elif isinstance(event, ServiceOrder.Placed):
        tx.put("service_order", event.order_id, {
            "order_id": event.order_id, "case_id": event.case_id, "region_code": event.region_code,
            "provider_id": event.provider_id, "kind": event.kind, "category": category_of(event.kind),
            "quantity": event.quantity, "unit": event.unit, "unit_price_fen": event.unit_price_fen,
            "amount_fen": event.amount_fen, "period": event.period, "ordered_by": event.ordered_by,
            "ordered_at": event.ordered_at, "status": "ordered", "confirmed_quantity": 0, "confirmed_fen": 0,
            "deliveries": [],
        }, ref=event.case_id)
        tx.put("provider_order", event.order_id, {"order_id": event.order_id, "case_id": event.case_id},
               ref=event.provider_id)
    elif isinstance(event, (ServiceOrder.DeliveryReported, ServiceOrder.DeliveryConfirmed)):
        doc = tx.get("service_order", event.order_id)
        if doc is None:
            return True
        if isinstance(event, ServiceOrder.DeliveryReported):
            doc["deliveries"].append({
                "delivery_id": event.delivery_id, "delivered_on": event.delivered_on, "quantity": event.quantity,
                "note": event.note, "reference": event.reference, "reported_at": event.reported_at,
                "status": "reported", "amount_fen": None, "confirmed_by": None, "confirmed_at": None})
        else:
            for d in doc["deliveries"]:
                if d["delivery_id"] == event.delivery_id:
                    d.update(status="confirmed", amount_fen=event.amount_fen, confirmed_by=event.confirmed_by,
                             confirmed_at=event.confirmed_at)
            doc["confirmed_quantity"] += event.quantity
            doc["confirmed_fen"] += event.amount_fen
            doc["status"] = _status(doc["confirmed_quantity"], doc["quantity"])
        tx.put("service_order", event.order_id, doc, ref=event.case_id)
    elif not isinstance(event, (ServiceAllowance.Opened, ServiceAllowance.Committed)):
        return False
    return True


# --- HTTP -------------------------------------------------------------------------------------
CREDIT_CODE = "91370502MA3C8Y4L28"  # a valid code of county 370502 (check character computed)
ACCOUNT_EXAMPLE = {"channel": "ICBC", "account_number": "1602000009000012345", "account_name": "东营区心晴社会工作服务中心"}
PRICE_EXAMPLE = {"kind": "psychological_support", "unit": "session", "unit_price_fen": 20000}
ProviderId = Annotated[str, Field(pattern=r"^PV-[0-9A-HJ-NPQRTUWXY]{18}$", description="the provider's id",
                                  examples=[f"PV-{CREDIT_CODE}"])]


class ProviderAccountIn(BaseModel):
    """The provider's account: the number is sealed at once and shown masked."""

    model_config = strict(ACCOUNT_EXAMPLE)
    channel: Literal[tuple(BANK_CHANNELS)]
    account_number: str = Field(pattern=r"^\d{12,30}$", description="sealed at once; shown masked")
    account_name: str = Field(min_length=1, max_length=64, pattern=XML_TEXT_PATTERN,
                              description="the account holder: the provider")


class ProviderPriceIn(BaseModel):
    model_config = strict(PRICE_EXAMPLE)
    kind: Literal[SERVICE_KINDS]
    unit: Literal[SERVICE_UNITS]
    unit_price_fen: int = Field(ge=1, le=MAX_UNIT_PRICE_FEN, description="the price of one unit (fen)")


PROVIDER_EXAMPLE = {
    "name": "东营区心晴社会工作服务中心", "credit_code": CREDIT_CODE,
    "service_kinds": ["psychological_support", "visit"], "regions": ["370502"],
    "prices": [PRICE_EXAMPLE, {"kind": "visit", "unit": "visit", "unit_price_fen": 5000}],
    "contract_from": "2026-01-01", "contract_to": "2027-12-31", "bank_account": ACCOUNT_EXAMPLE,
}


class ProviderIn(BaseModel):
    """A provider the county contracts with (政府购买服务): what it offers, where, at what price."""

    model_config = strict(PROVIDER_EXAMPLE)
    name: str = Field(min_length=1, max_length=100)
    credit_code: str = Field(min_length=18, max_length=18,
                             description="统一社会信用代码 (GB 32100-2015): its check character is verified")
    service_kinds: list[Literal[SERVICE_KINDS]] = Field(min_length=1, max_length=len(SERVICE_KINDS))
    regions: list[str] = Field(min_length=1, max_length=200,
                               description="GB/T 2260 divisions it serves (county, township or village), one county")
    prices: list[ProviderPriceIn] = Field(min_length=1, max_length=len(SERVICE_KINDS),
                                          description="one per kind offered")
    contract_from: date
    contract_to: date
    bank_account: ProviderAccountIn

    @field_validator("credit_code", mode="before")
    @classmethod
    def _credit_code(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            problem = credit_code_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("service_kinds")
    @classmethod
    def _kinds_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a kind is listed twice")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        problem = _regions_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("prices")
    @classmethod
    def _one_price_per_kind(cls, value: list[ProviderPriceIn], info: ValidationInfo) -> list[ProviderPriceIn]:
        kinds = info.data.get("service_kinds")
        if kinds is not None and sorted(p.kind for p in value) != sorted(kinds):
            raise ValueError("one price for each kind in service_kinds, and none for another")
        return value

    @field_validator("contract_to")
    @classmethod
    def _term(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("contract_from")
        if start is not None and value < start:
            raise ValueError("the contract ends before it starts")
        return value


class ProviderPriceOut(BaseModel):
    kind: Literal[SERVICE_KINDS]
    unit: Literal[SERVICE_UNITS]
    unit_price_fen: int


class ProviderOut(BaseModel):
    provider_id: str
    name: str
    credit_code: str
    county_code: str
    service_kinds: list[Literal[SERVICE_KINDS]]
    regions: list[str]
    prices: list[ProviderPriceOut]
    contract_from: str = Field(description="YYYY-MM-DD")
    contract_to: str = Field(description="YYYY-MM-DD")
    bank_account_ref: str = Field(description="channel and masked number", examples=["ICBC:1602***********2345"])
    registered_by: str
    registered_at: str = Field(description="ISO 8601 timestamp")


class ProvidersOut(BaseModel):
    items: list[ProviderOut] = Field(description="those serving the caller's region (narrowed by region and kind)")


ORDER_EXAMPLE = {"case_id": "C-0123456789ABCDEF0123", "kind": "psychological_support", "quantity": 4,
                 "unit": "session", "period": "2026-06", "provider_id": f"PV-{CREDIT_CODE}"}


class ServiceOrderIn(BaseModel):
    """A service or goods in kind for an approved case, from a provider that offers it there."""

    model_config = strict(ORDER_EXAMPLE)
    case_id: str = Field(min_length=3, max_length=64)
    kind: Literal[SERVICE_KINDS]
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description="how many units")
    unit: Literal[SERVICE_UNITS] = Field(description="the unit the provider prices the kind in")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="the month it is for (YYYY-MM)")
    provider_id: ProviderId


class DeliveryIn(BaseModel):
    """The provider's report of what it delivered; the same reference twice is one delivery."""

    model_config = strict({"delivered_on": "2026-06-10", "quantity": 2, "note": "两次心理疏导，情绪稳定",
                           "reference": "XQ-2026-0610-01"})
    delivered_on: date
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    note: str = Field("", max_length=2000)
    reference: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$",
                           description="the provider's own reference of the delivery (its 服务单号)")


class DeliveryOut(BaseModel):
    delivery_id: str
    delivered_on: str
    quantity: int
    note: str
    reference: str
    reported_at: str
    status: Literal["reported", "confirmed"]
    amount_fen: int | None = Field(description="quantity × unit price, once confirmed")
    confirmed_by: str | None
    confirmed_at: str | None


class DeliveryAnswer(DeliveryOut):
    order_id: str
    case_id: str
    provider_id: str


class ServiceOrderOut(BaseModel):
    order_id: str
    case_id: str
    region_code: str
    provider_id: str
    kind: Literal[SERVICE_KINDS]
    category: Literal["service", "in_kind"]
    quantity: int
    unit: Literal[SERVICE_UNITS]
    unit_price_fen: int
    amount_fen: int = Field(description="quantity × unit price")
    period: str
    ordered_by: str
    ordered_at: str
    status: Literal["ordered", "partly_delivered", "delivered"]
    confirmed_quantity: int
    confirmed_fen: int
    deliveries: list[DeliveryOut]


class ServiceOrdersOut(BaseModel):
    items: list[ServiceOrderOut] = Field(description="within the caller's region (a provider: its own only)")


@contextlib.contextmanager
def refused_as_problem(title: str) -> Iterator[None]:
    try:
        yield
    except Refused as exc:
        if exc.status == 404:
            raise Problem(404, title, str(exc), slug="not-found") from None
        raise Problem(exc.status, title, str(exc), slug=exc.rule.replace("_", "-"), rule=exc.rule,
                      **exc.extras) from None


def router(runtime: "ServiceRuntime") -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["services-in-kind"])
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    def order_in_reach(order_id: str, principal: Principal) -> ServiceOrder:
        with refused_as_problem("Service order not found"):
            order = get_order(app, order_id)
        if principal.role == "provider":
            if order.provider_id != principal.user_id:
                raise Problem(403, "Not your order", "this order is another provider's", slug="not-your-order",
                              rule="not_your_order")
        else:
            ensure_region(principal, order.region_code)
        return order

    @api.post("/providers", status_code=201, response_model=ProviderOut, responses=CREATE_ERRORS)
    async def register(body: ProviderIn, request: Request,
                       principal: Principal = runtime.auth.require(*PROVIDER_REGISTRARS)):
        """Register a provider of services or goods in kind (ProviderRegistered): the county that
        registers it contracts with it and pays it; its account number is sealed at once."""
        for region in body.regions:
            ensure_region(principal, region)
        if app.sealer is None:
            raise Problem(503, "Cannot seal the account", "verification was built without a sealer")

        async def handle() -> tuple[int, dict]:
            account = app.sealer.account(body.bank_account.channel, body.bank_account.account_number,
                                         body.bank_account.account_name)
            with refused_as_problem("Provider not registered"):
                provider = await asyncio.to_thread(
                    register_provider, app, name=body.name, credit_code=body.credit_code,
                    service_kinds=list(body.service_kinds), regions=list(body.regions),
                    prices=[p.model_dump() for p in body.prices], contract_from=body.contract_from,
                    contract_to=body.contract_to, bank_account=account, meta=Meta.of(principal))
            runtime.saved()
            return 201, provider_view(provider)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/providers", response_model=ProvidersOut, responses=LIST_ERRORS)
    async def list_providers(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only those serving this division (within yours)")] = None,
        kind: Annotated[Literal[SERVICE_KINDS] | None, Query(description="only those offering this kind")] = None,
        principal: Principal = runtime.auth.require(*PROVIDER_READERS),
    ):
        """Registered providers whose regions meet the caller's region (a provider: itself)."""
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [doc for _, _, _, doc in tx.all("provider")]
        items = [d for d in docs
                 if (principal.role != "provider" or d["provider_id"] == principal.user_id)
                 and any(overlaps(principal.region, r) for r in d["regions"])
                 and (region is None or any(overlaps(region, r) for r in d["regions"]))
                 and (kind is None or kind in d["service_kinds"])]
        items.sort(key=lambda d: (d["county_code"], d["name"], d["provider_id"]))
        return {"items": items}

    @api.get("/providers/{provider_id}", response_model=ProviderOut, responses=READ_ERRORS)
    async def get_provider_doc(provider_id: Annotated[str, Path(max_length=64)],
                               principal: Principal = runtime.auth.require(*PROVIDER_READERS)):
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get("provider", provider_id)
        if doc is None or (principal.role == "provider" and provider_id != principal.user_id) \
                or not any(overlaps(principal.region, r) for r in doc["regions"]):
            raise Problem(404, "Provider not found", f"no provider {provider_id} in your region", slug="not-found")
        return doc

    @api.post("/service-orders", status_code=201, response_model=ServiceOrderOut, responses=CREATE_ERRORS)
    async def order(body: ServiceOrderIn, request: Request,
                    principal: Principal = runtime.auth.require(*SERVICE_ORDERERS)):
        """Order a service or goods in kind for an approved case (ServiceOrdered): 422 rules when
        the provider does not offer the kind there (`provider_kind`, `unit`, `provider_region`,
        `unknown_provider`) or the order passes the county's limits (`service_order_limit`,
        `service_year_limit`); 409 `contract_term`, `case_not_approved`."""
        from services.verification.application import VerificationNotFound

        def load_case() -> None:
            try:
                ensure_region(principal, app.get_verification(body.case_id).region_code)
            except VerificationNotFound:
                raise Problem(404, "Case not found", f"no case {body.case_id}", slug="not-found") from None

        await asyncio.to_thread(load_case)
        order_id = idempotent_id("SO", principal.user_id, request.headers.get("Idempotency-Key")) or new_id("SO")

        async def handle() -> tuple[int, dict]:
            with refused_as_problem("Service not ordered"):
                placed = await asyncio.to_thread(place_order, app, order_id, body.case_id, body.kind, body.quantity,
                                                 body.unit, body.period, body.provider_id, Meta.of(principal))
            runtime.saved()
            return 201, order_view(placed)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/service-orders", response_model=ServiceOrdersOut, responses=LIST_ERRORS)
    async def list_orders(
        case_id: Annotated[str | None, Query(min_length=3, max_length=64)] = None,
        provider: Annotated[str | None, Query(max_length=64, description="a provider's id")] = None,
        principal: Principal = runtime.auth.require(*ORDER_READERS),
    ):
        """A case's orders (`case_id`) or a provider's (`provider`), within the caller's region; a
        provider sees its own orders only (another provider's: 403)."""
        if principal.role == "provider":
            if provider is not None and provider != principal.user_id:
                raise Problem(403, "Not your orders", "a provider sees its own orders only", slug="not-your-order",
                              rule="not_your_order")
            provider = principal.user_id
        views = await runtime.views()
        with views.transaction() as tx:
            if provider is not None:
                docs = [tx.get("service_order", i["order_id"]) for i in tx.find("provider_order", provider)]
                docs = [d for d in docs if d is not None and (case_id is None or d["case_id"] == case_id)]
            elif case_id is not None:
                docs = tx.find("service_order", case_id)
            else:
                docs = [doc for _, _, _, doc in tx.all("service_order")]
        items = [d for d in docs if principal.can_access(d["region_code"])]
        items.sort(key=lambda d: (d["ordered_at"], d["order_id"]))
        return {"items": items}

    @api.get("/service-orders/{order_id}", response_model=ServiceOrderOut, responses=READ_ERRORS)
    async def get_order_doc(order_id: Annotated[str, Path(max_length=64)],
                            principal: Principal = runtime.auth.require(*ORDER_READERS)):
        return order_view(await asyncio.to_thread(order_in_reach, order_id, principal))

    @api.post("/service-orders/{order_id}/deliveries", status_code=201, response_model=DeliveryAnswer,
              responses={**COMMAND_ERRORS, 200: {"model": DeliveryAnswer,
                                                 "description": "reported before under this reference"}})
    async def report(order_id: Annotated[str, Path(max_length=64)], body: DeliveryIn, request: Request,
                     principal: Principal = runtime.auth.require(*DELIVERY_REPORTERS)):
        """The provider reports a delivery on its order (201); the same reference again with the
        same content changes nothing (200), with other content 409 `delivery_reference`."""
        await asyncio.to_thread(order_in_reach, order_id, principal)

        async def handle() -> tuple[int, dict]:
            with refused_as_problem("Delivery not recorded"):
                order, delivery_id, new = await asyncio.to_thread(
                    report_delivery, app, order_id, principal.user_id, body.delivered_on, body.quantity, body.note,
                    body.reference, Meta.of(principal))
            if new:
                runtime.saved()
            return (201 if new else 200), delivery_view(order, delivery_id)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.post("/service-orders/{order_id}/deliveries/{delivery_id}/confirmation", response_model=DeliveryAnswer,
              responses=COMMAND_ERRORS)
    async def confirm(order_id: Annotated[str, Path(max_length=64)], delivery_id: Annotated[str, Path(max_length=64)],
                      request: Request, principal: Principal = runtime.auth.require(*DELIVERY_CONFIRMERS)):
        """A caseworker confirms the delivery (ServiceDeliveryConfirmed): payment pays the provider
        quantity × unit price once. 409 `delivery_confirmed` the second time."""
        await asyncio.to_thread(order_in_reach, order_id, principal)

        async def handle() -> tuple[int, dict]:
            with refused_as_problem("Delivery not confirmed"):
                order = await asyncio.to_thread(confirm_delivery, app, order_id, delivery_id, Meta.of(principal))
            runtime.saved()
            return 200, delivery_view(order, delivery_id)

        return await runtime.idempotent(request, principal.user_id, handle)

    return api
