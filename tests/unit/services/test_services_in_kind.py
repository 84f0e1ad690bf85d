"""资金+实物+服务 (issue 17) through verification's routes and payment's consumer: a provider
registered by the county (its account sealed, masked everywhere else), a service ordered for an
approved case within the county's limits, a delivery the provider reports (twice: one delivery),
confirmed once by a caseworker, and payment paying the provider once per confirmed delivery
however often ServiceDeliveryConfirmed arrives. Bad input is problem+json naming the field or the
rule and stores nothing; a provider sees and reports on its own orders only."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from eventsourcing.persistence import IntegrityError
from fastapi.testclient import TestClient

from tests.unit.services import service_http
from lifeline.contracts import registry
from lifeline.domain.clock import FixedClock
from lifeline.http.auth import mint_token
from lifeline.messaging.outbox import to_cloud_events
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.policy import ServiceLimits
from lifeline.stores.projection import Projection
from lifeline.stores.sidestore import SideStore
from services.payment.application import PaymentApplication
from services.payment.channels import ChannelBook, shipped_channel_book
from services.payment.files import FileWriter
from services.payment.application import project as payment_project
from services.payment.domain import Payment
from services.payment.providers import ProviderPayment, provider_payment_id
from services.payment.runs import Jobs, RunEngine
from services.payment.worker import SYSTEM
from services.verification.bootstrap import SPEC
from services.verification.services_in_kind import (
    CREDIT_CODE, PROVIDER_EXAMPLE, Provider, ProviderOut, ServiceAllowance, ServiceOrderOut, ServiceOrdersOut,
    credit_code_check_char,
)

from . import CASEWORKER as STAFF, MEMORY_ENV, REVIEWER, log_length, pid, stored
from .test_reviews import approved_case

SECRET = "test-services-in-kind-secret-0123456789abcdef"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
COUNTY, TOWNSHIP = "370502", "370502101"
PROVIDER_ID = f"PV-{CREDIT_CODE}"
ACCOUNT_NUMBER = PROVIDER_EXAMPLE["bank_account"]["account_number"]


def code_of(first17: str) -> str:
    return first17 + credit_code_check_char(first17)


OTHER_CODE = code_of("52370502MJD123456")  # a 民办非企业单位 of the county


def bearer(role: str, region: str = COUNTY, user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


OFFICER = bearer("county_officer")
CASEWORKER = bearer("caseworker", TOWNSHIP)
PROVIDER = bearer("provider", COUNTY, PROVIDER_ID)


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app


def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


def register(http, **overrides) -> dict:
    r = client(http).post("/v1/providers", json={**PROVIDER_EXAMPLE, **overrides}, headers=OFFICER)
    assert r.status_code == 201, r.text
    return r.json()


def order(http, case_id: str, **overrides):
    body = {"case_id": case_id, "kind": "psychological_support", "quantity": 4, "unit": "session",
            "period": "2026-11", "provider_id": PROVIDER_ID, **overrides}
    return client(http).post("/v1/service-orders", json=body, headers=CASEWORKER)


def deliver(http, order_id: str, headers=PROVIDER, **overrides):
    body = {"delivered_on": "2026-11-20", "quantity": 2, "note": "两次心理疏导", "reference": "XQ-1120-01",
            **overrides}
    return client(http).post(f"/v1/service-orders/{order_id}/deliveries", json=body, headers=headers)


def confirm(http, order_id: str, delivery_id: str, headers=CASEWORKER):
    return client(http).post(f"/v1/service-orders/{order_id}/deliveries/{delivery_id}/confirmation", headers=headers)


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


def published(app, name: str) -> list:
    """What verification's relay would publish under `name`, decoded as a consumer would."""
    out = []
    for note in app.recorder.select_notifications(1, 10_000):
        event = app.mapper.to_domain_event(note)
        for _topic, _key, cloud in to_cloud_events("verification", note.id, event, app.outbound):
            if cloud.name == name:
                out.append(registry.decode(cloud.to_json()))
    return out


def test_a_county_officer_registers_a_provider_whose_account_is_sealed_and_shown_masked(http):
    provider = register(http)
    assert ProviderOut.model_validate(provider).model_dump() == provider
    assert (provider["provider_id"], provider["county_code"], provider["bank_account_ref"]) == (
        PROVIDER_ID, COUNTY, "ICBC:1602***********2345")
    app = http.state.runtime.app
    [event] = published(app, "ProviderRegistered")
    assert ACCOUNT_NUMBER not in event.to_json().decode() and event.subject == PROVIDER_ID
    assert app.sealer.unseal(app.repository.get(Provider.create_id(PROVIDER_ID)).bank_account.number_sealed) \
        == ACCOUNT_NUMBER
    http.state.runtime.projection.catch_up()
    listed = client(http).get("/v1/providers", params={"region": "370502101001", "kind": "psychological_support"},
                              headers=CASEWORKER).json()["items"]
    assert listed == [provider]
    assert client(http).get("/v1/providers", params={"kind": "food"}, headers=CASEWORKER).json()["items"] == []
    assert client(http).get("/v1/providers", headers=bearer("caseworker", "370602101")).json()["items"] == []
    assert client(http).get(f"/v1/providers/{PROVIDER_ID}", headers=PROVIDER).json() == provider
    before = log_length(app)
    again = problem(client(http).post("/v1/providers", json=PROVIDER_EXAMPLE, headers=OFFICER), 409)
    assert (again["rule"], again["provider_id"]) == ("provider_registered", PROVIDER_ID)
    assert log_length(app) == before


@pytest.mark.parametrize(("change", "field"), [
    ({"credit_code": CREDIT_CODE[:17] + ("0" if CREDIT_CODE[17] != "0" else "1")}, "#/credit_code"),
    ({"credit_code": "9137050"}, "#/credit_code"),
    ({"regions": ["370502", "370602"]}, "#/regions"),
    ({"regions": ["370599"]}, "#/regions"),
    ({"service_kinds": ["massage"]}, "#/service_kinds/0"),
    ({"prices": [PROVIDER_EXAMPLE["prices"][0]]}, "#/prices"),
    ({"contract_to": "2025-12-31"}, "#/contract_to"),
    ({"bank_account": {**PROVIDER_EXAMPLE["bank_account"], "account_number": "12AB"}}, "#/bank_account/account_number"),
    ({"fee": 1}, "#/fee"),
])
def test_a_bad_provider_is_422_naming_the_field_and_stores_nothing(http, change, field):
    app = http.state.runtime.app
    before = log_length(app)
    body = problem(client(http).post("/v1/providers", json={**PROVIDER_EXAMPLE, **change}, headers=OFFICER), 422)
    assert field in [e.get("pointer") for e in body["errors"]], body
    assert ACCOUNT_NUMBER not in str(body)
    assert log_length(app) == before


def test_who_registers_a_provider_and_where(http):
    assert client(http).post("/v1/providers", json=PROVIDER_EXAMPLE, headers=CASEWORKER).status_code == 403
    assert client(http).post("/v1/providers", json=PROVIDER_EXAMPLE,
                             headers=bearer("county_officer", "370602")).status_code == 403
    assert log_length(http.state.runtime.app) == 0


def test_an_order_for_an_approved_case_within_the_limits_and_the_limits_refuse_naming_them(http):
    register(http)
    case_id = approved_case(http, [pid(481)])
    r = order(http, case_id)
    assert r.status_code == 201, r.text
    placed = r.json()
    assert ServiceOrderOut.model_validate(placed).model_dump() == placed
    assert (placed["amount_fen"], placed["unit_price_fen"], placed["category"], placed["status"]) == (
        80000, 20000, "service", "ordered")
    [ordered] = published(http.state.runtime.app, "ServiceOrdered")
    assert ordered.data["amount_fen"] == 80000 and ordered.subject == case_id
    app = http.state.runtime.app
    before = log_length(app)
    limit = problem(order(http, case_id, quantity=16), 422)         # 320,000 > 300,000 an order
    assert (limit["rule"], limit["limit"], limit["limit_fen"]) == ("service_order_limit", "per_order_fen", 300000)
    assert log_length(app) == before
    for _ in range(3):  # 80,000 + 3 × 300,000 = 980,000
        assert order(http, case_id, quantity=15).status_code == 201
    assert order(http, case_id, quantity=11).status_code == 201     # 1,200,000: the year's limit, inclusive
    before = log_length(app)
    year = problem(order(http, case_id, quantity=1), 422)
    assert (year["rule"], year["limit"], year["limit_fen"]) == ("service_year_limit", "per_case_year_fen", 1200000)
    assert log_length(app) == before
    assert order(http, case_id, quantity=1, period="2027-01").status_code == 201  # another year


@pytest.mark.parametrize(("change", "status", "rule"), [
    ({"kind": "food", "unit": "kg"}, 422, "provider_kind"),
    ({"unit": "hour"}, 422, "unit"),
    ({"provider_id": f"PV-{OTHER_CODE}"}, 422, "provider_region"),
    ({"period": "2028-01"}, 409, "contract_term"),
    ({"provider_id": "PV-" + code_of("91370502MA3C8Y4L3")}, 422, "unknown_provider"),
])
def test_an_order_the_provider_cannot_serve_is_refused_naming_the_rule(http, change, status, rule):
    register(http)
    register(http, credit_code=OTHER_CODE, name="另一镇的服务中心", regions=["370502102"])
    case_id = approved_case(http, [pid(482)])
    before = log_length(http.state.runtime.app)
    assert problem(order(http, case_id, **change), status)["rule"] == rule
    assert log_length(http.state.runtime.app) == before


@pytest.mark.parametrize(("change", "field"), [
    ({"quantity": 0}, "#/quantity"), ({"period": "2026-13"}, "#/period"), ({"unit": "litre"}, "#/unit"),
    ({"provider_id": "P-1"}, "#/provider_id"), ({"note": "x"}, "#/note"),
])
def test_a_bad_order_is_422_naming_the_field(http, change, field):
    register(http)
    case_id = approved_case(http, [pid(483)])
    before = log_length(http.state.runtime.app)
    assert field in [e["pointer"] for e in problem(order(http, case_id, **change), 422)["errors"]]
    assert log_length(http.state.runtime.app) == before


def test_orders_only_for_an_approved_case_in_the_callers_region(http):
    register(http)
    case_id = approved_case(http, [pid(484)])
    other = client(http).post("/v1/service-orders", headers=bearer("caseworker", "370502102"), json={
        "case_id": case_id, "kind": "visit", "quantity": 1, "unit": "visit", "period": "2026-11",
        "provider_id": PROVIDER_ID})
    assert other.status_code == 403
    assert problem(order(http, "C-NOSUCHCASE"), 404)["title"] == "Case not found"
    app = http.state.runtime.app
    app.change_benefit(case_id, "terminate", "2026-12", None, "家庭收入超过标准", REVIEWER)
    assert problem(order(http, case_id), 409)["rule"] == "case_not_approved"


def test_a_delivery_reported_twice_is_one_confirmed_once_and_paid_to_the_provider_once(http):
    register(http)
    case_id = approved_case(http, [pid(485)])
    order_id = order(http, case_id).json()["order_id"]
    app = http.state.runtime.app
    first = deliver(http, order_id)
    assert first.status_code == 201, first.text
    delivery_id = first.json()["delivery_id"]
    before = log_length(app)
    again = deliver(http, order_id)  # the same report again: nothing changes
    assert (again.status_code, again.json()) == (200, first.json())
    assert log_length(app) == before
    assert problem(deliver(http, order_id, quantity=3), 409)["rule"] == "delivery_reference"
    other = bearer("provider", COUNTY, f"PV-{OTHER_CODE}")
    assert problem(deliver(http, order_id, headers=other, reference="X-1"), 403)["rule"] == "not_your_order"
    assert deliver(http, order_id, headers=CASEWORKER).status_code == 403  # a provider reports, not staff
    assert log_length(app) == before

    r = confirm(http, order_id, delivery_id)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["amount_fen"], r.json()["confirmed_by"]) == ("confirmed", 40000,
                                                                                     f"caseworker@{TOWNSHIP}")
    assert problem(confirm(http, order_id, delivery_id), 409)["rule"] == "delivery_confirmed"
    assert confirm(http, order_id, delivery_id, headers=PROVIDER).status_code == 403
    assert problem(confirm(http, order_id, "SD-00000000000000000000"), 404)["title"] == "Delivery not confirmed"

    [confirmed] = published(app, "ServiceDeliveryConfirmed")
    data = confirmed.data
    assert (data["delivery_id"], data["order_id"], data["case_id"], data["provider_id"], data["quantity"],
            data["amount_fen"], data["kind"]) == (delivery_id, order_id, case_id, PROVIDER_ID, 2, 40000,
                                                  "psychological_support")
    assert data["bank_account"]["number_masked"] == "1602***********2345"
    assert app.sealer.unseal(data["bank_account"]["number_sealed"]) == ACCOUNT_NUMBER

    # Payment, fed the event three times (delivered twice, then republished at a new position).
    payment = PaymentApplication(MEMORY_ENV, clock=FixedClock(NOW), sealer=app.sealer)
    assert payment.process_cloud_event(confirmed) is True
    assert payment.process_cloud_event(confirmed) is False
    assert payment.process_cloud_event(dataclasses.replace(confirmed, sequence=confirmed.sequence + 1000)) is True
    [paid] = stored(payment, Payment.Instructed)
    assert (paid.payment_id, paid.amount_fen, paid.fund_source, paid.case_id, paid.entitlement_id) == (
        provider_payment_id(delivery_id), 40000, "service_purchase", case_id, order_id)
    assert app.sealer.unseal(paid.number_sealed) == ACCOUNT_NUMBER and paid.account_name == "东营区心晴社会工作服务中心"
    assert len(stored(payment, ProviderPayment.Recorded)) == len(stored(payment, ProviderPayment.Paid)) == 1
    side = SideStore.in_memory()
    Projection(payment, side, payment_project).catch_up()
    with side.transaction() as tx:
        [doc] = tx.find("provider_payment", PROVIDER_ID)
        assert tx.get("payment", paid.payment_id)["status"] == "instructed"
        assert tx.get("batch", paid.batch_id)["count"] == 1
    assert (doc["status"], doc["payment_id"], doc["amount_fen"], doc["bank_account_ref"]) == (
        "paid", paid.payment_id, 40000, "ICBC:1602***********2345")

    http.state.runtime.projection.catch_up()
    r = client(http).get("/v1/service-orders", params={"case_id": case_id}, headers=CASEWORKER)
    [listed] = r.json()["items"]
    assert ServiceOrdersOut.model_validate(r.json()).model_dump() == r.json()
    assert listed == client(http).get(f"/v1/service-orders/{order_id}", headers=CASEWORKER).json()
    assert (listed["status"], listed["confirmed_quantity"], listed["confirmed_fen"]) == ("partly_delivered", 2, 40000)
    assert [d["status"] for d in listed["deliveries"]] == ["confirmed"]


def test_a_provider_sees_its_own_orders_only(http):
    register(http)
    register(http, credit_code=OTHER_CODE, name="东营区暖阳养老服务中心")
    case_id = approved_case(http, [pid(486)])
    mine = order(http, case_id).json()["order_id"]
    theirs = order(http, case_id, provider_id=f"PV-{OTHER_CODE}").json()["order_id"]
    http.state.runtime.projection.catch_up()
    other = bearer("provider", COUNTY, f"PV-{OTHER_CODE}")
    listing = client(http).get("/v1/service-orders", headers=PROVIDER).json()["items"]
    assert [o["order_id"] for o in listing] == [mine]
    assert [o["order_id"] for o in client(http).get("/v1/service-orders", params={"case_id": case_id},
                                                    headers=other).json()["items"]] == [theirs]
    assert problem(client(http).get("/v1/service-orders", params={"provider": PROVIDER_ID}, headers=other),
                   403)["rule"] == "not_your_order"
    assert client(http).get(f"/v1/service-orders/{mine}", headers=other).status_code == 403
    assert [o["order_id"] for o in client(http).get("/v1/service-orders", params={"provider": PROVIDER_ID},
                                                    headers=CASEWORKER).json()["items"]] == [mine]
    assert client(http).get("/v1/service-orders", params={"case_id": case_id},
                            headers=bearer("caseworker", "370502102")).json()["items"] == []


@pytest.mark.parametrize(("change", "status", "rule"), [
    ({"delivered_on": "2026-11-26"}, 422, "delivered_on"),   # tomorrow
    ({"delivered_on": "2026-10-31"}, 422, "delivered_on"),   # before the order's month
    ({"quantity": 5}, 422, "quantity"),                       # more than the 4 ordered
])
def test_a_delivery_report_the_rules_refuse(http, change, status, rule):
    register(http)
    order_id = order(http, approved_case(http, [pid(487)])).json()["order_id"]
    before = log_length(http.state.runtime.app)
    body = problem(deliver(http, order_id, **change), status)
    assert body["rule"] == rule and body.get("field", rule) in ("delivered_on", "quantity")
    assert log_length(http.state.runtime.app) == before


def test_confirmed_deliveries_never_pay_more_than_was_ordered(http):
    register(http)
    order_id = order(http, approved_case(http, [pid(488)])).json()["order_id"]
    one = deliver(http, order_id, quantity=3, reference="A-1").json()["delivery_id"]
    two = deliver(http, order_id, quantity=3, reference="A-2").json()["delivery_id"]
    assert confirm(http, order_id, one).status_code == 200
    assert problem(confirm(http, order_id, two), 409)["rule"] == "delivery_exceeds_order"
    three = deliver(http, order_id, quantity=1, reference="A-3").json()["delivery_id"]
    assert confirm(http, order_id, three).status_code == 200
    assert client(http).get(f"/v1/service-orders/{order_id}", headers=CASEWORKER).json()["status"] == "delivered"


def test_two_orders_at_once_cannot_both_pass_the_years_limit(http):
    """Each order is saved with the case's allowance for the year: a stale allowance collides."""
    register(http)
    case_id = approved_case(http, [pid(489)])
    assert order(http, case_id, quantity=1).status_code == 201
    app = http.state.runtime.app
    ident = ServiceAllowance.create_id(case_id, "2026")
    a, b = app.repository.get(ident), app.repository.get(ident)
    limits = ServiceLimits()
    a.commit("SO-A", 300000, limits, STAFF)
    b.commit("SO-B", 300000, limits, STAFF)
    app.save(a)
    with pytest.raises(IntegrityError):
        app.save(b)
    assert app.repository.get(ident).total_fen == 20000 + 300000


def test_a_delivery_the_county_cannot_pay_from_the_providers_bank_is_held_then_paid_by_the_worker(http, tmp_path):
    register(http)
    order_id = order(http, approved_case(http, [pid(490)])).json()["order_id"]
    delivery_id = deliver(http, order_id).json()["delivery_id"]
    assert confirm(http, order_id, delivery_id).status_code == 200
    app = http.state.runtime.app
    [confirmed] = published(app, "ServiceDeliveryConfirmed")
    shipped = shipped_channel_book()
    no_icbc_account = ChannelBook([dataclasses.replace(c, paying_accounts=()) if c.channel_id == "ICBC" else c
                                   for c in shipped])
    payment = PaymentApplication(MEMORY_ENV, clock=FixedClock(NOW), channels=no_icbc_account, sealer=app.sealer)
    assert payment.process_cloud_event(confirmed)
    [held] = stored(payment, ProviderPayment.Held)
    assert (held.problem, stored(payment, Payment.Instructed)) == ("no_paying_account", [])
    side = SideStore.in_memory()
    engine = RunEngine(payment, side, Projection(payment, side, payment_project), FileWriter(app.sealer),
                       tmp_path / "files")
    try:
        jobs = Jobs(engine, None)
        assert jobs.run_once(SYSTEM).get("providers") is None  # still no account to pay from: held once
        assert len(stored(payment, ProviderPayment.Held)) == 1
        payment.channels = shipped  # the operator's file gives the county an account at ICBC (a restart)
        assert jobs.run_once(SYSTEM)["providers"] == 1
        assert jobs.run_once(SYSTEM).get("providers") is None
    finally:
        engine.writer.close()
    [paid] = stored(payment, Payment.Instructed)
    assert (paid.payment_id, paid.amount_fen) == (provider_payment_id(delivery_id), 40000)
    with side.transaction() as tx:
        assert tx.get("provider_payment", delivery_id)["status"] == "paid"
        assert tx.find("provider_payment_held", COUNTY) == []
