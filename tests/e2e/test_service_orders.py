"""资金+实物+服务 across the separate processes (issue 17): a county registers a provider, a
caseworker orders psychological support for an approved household, the provider reports the
delivery over its own role (twice: one delivery), a caseworker confirms it, and payment pays the
provider once — one credit transfer in the pain.001 the bank simulator received, into the
provider's account — even when verification's whole log is published again. Bad input is 422
problem+json naming the field, with nothing stored or published; a provider sees, reports on and
is paid for its own orders only."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from lifeline.contracts import registry
from lifeline.iso20022 import parse_pain001
from services.verification.services_in_kind import credit_code_check_char
from tests.e2e.test_flows import REGION, approved_case, metric
from tests.e2e.test_payment import pain001_files, payments
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY, TOWNSHIP = REGION[:6], REGION[:9]
SESSION_FEN = 20000


def code(first17: str) -> str:
    """A unified social credit code with its GB 32100-2015 check character."""
    return first17 + credit_code_check_char(first17)


def officer(lifeline) -> httpx.Client:
    return lifeline.client("verification", "county_officer", COUNTY, user="county-officer-wang")


def caseworker(lifeline) -> httpx.Client:
    return lifeline.client("verification", "caseworker", TOWNSHIP, user="caseworker-zhao")


def as_provider(lifeline, provider_id: str, service: str = "verification") -> httpx.Client:
    return lifeline.client(service, "provider", COUNTY, user=provider_id)


def provider_body(lifeline, credit_code: str, name: str, account_number: str) -> dict:
    today = lifeline.clock("show").date()
    return {"name": name, "credit_code": credit_code, "service_kinds": ["psychological_support"],
            "regions": [COUNTY], "prices": [{"kind": "psychological_support", "unit": "session",
                                              "unit_price_fen": SESSION_FEN}],
            "contract_from": (today - timedelta(days=60)).isoformat(),
            "contract_to": (today + timedelta(days=365)).isoformat(),
            "bank_account": {"channel": "ICBC", "account_number": account_number, "account_name": name}}


def register(lifeline, credit_code: str, name: str, account_number: str) -> str:
    with officer(lifeline) as c:
        r = c.post("/v1/providers", json=provider_body(lifeline, credit_code, name, account_number))
    assert r.status_code == 201, r.text
    assert account_number not in r.text and r.json()["bank_account_ref"].startswith("ICBC:1602")
    return r.json()["provider_id"]


def order(lifeline, case_id: str, provider_id: str, **overrides) -> httpx.Response:
    period = lifeline.clock("show").strftime("%Y-%m")
    with caseworker(lifeline) as c:
        return c.post("/v1/service-orders", json={
            "case_id": case_id, "kind": "psychological_support", "quantity": 4, "unit": "session",
            "period": period, "provider_id": provider_id, **overrides})


def delivery(lifeline, **overrides) -> dict:
    return {"delivered_on": lifeline.clock("show").date().isoformat(), "quantity": 2,
            "note": "两次心理疏导，情绪稳定", "reference": "XQ-0001", **overrides}


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    return r.json()


def transfers_to(lifeline, account_number: str) -> list:
    return [t for f in pain001_files(lifeline) for t in parse_pain001(f).transfers
            if t.creditor_account == account_number]


def test_a_psychological_support_service_is_ordered_delivered_confirmed_and_paid_once(lifeline):
    account = "1602000009000054321"
    name = "东营区心晴社会工作服务中心"
    provider_id = register(lifeline, code("91370502MA3C8Y4L2"), name, account)
    case_id = approved_case(lifeline)
    r = order(lifeline, case_id, provider_id)
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    assert (r.json()["amount_fen"], r.json()["status"]) == (4 * SESSION_FEN, "ordered")

    with as_provider(lifeline, provider_id) as p:
        first = p.post(f"/v1/service-orders/{order_id}/deliveries", json=delivery(lifeline))
        second = p.post(f"/v1/service-orders/{order_id}/deliveries", json=delivery(lifeline),
                        headers={"Idempotency-Key": "xq-0001-resent"})
    assert first.status_code == 201, first.text
    assert (second.status_code, second.json()) == (200, first.json())  # the same report: one delivery
    delivery_id = first.json()["delivery_id"]
    with caseworker(lifeline) as c:
        r = c.post(f"/v1/service-orders/{order_id}/deliveries/{delivery_id}/confirmation")
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["amount_fen"]) == ("confirmed", 2 * SESSION_FEN)
        assert problem(c.post(f"/v1/service-orders/{order_id}/deliveries/{delivery_id}/confirmation"),
                       409)["rule"] == "delivery_confirmed"
        listed = c.get("/v1/service-orders", params={"case_id": case_id}).json()["items"]
    assert [(o["order_id"], o["confirmed_quantity"], o["confirmed_fen"], len(o["deliveries"])) for o in listed] == [
        (order_id, 2, 2 * SESSION_FEN, 1)]

    [paid] = wait_for(lambda: [p for p in payments(lifeline, case_id)
                               if p["fund_source"] == "service_purchase" and p["status"] == "settled"],
                      timeout=90, what="the provider paid and the payment settled")
    assert (paid["amount_fen"], paid["entitlement_id"], paid["bank_account_ref"]) == (
        2 * SESSION_FEN, order_id, "ICBC:1602***********4321")
    with as_provider(lifeline, provider_id, "payment") as p:
        [mine] = p.get("/v1/provider-payments", params={"provider_id": provider_id}).json()["items"]
    assert (mine["delivery_id"], mine["payment_id"], mine["status"], mine["payment_status"]) == (
        delivery_id, paid["payment_id"], "paid", "settled")
    # The pain.001 the bank received names the provider's account, once.
    [transfer] = transfers_to(lifeline, account)
    assert (transfer.end_to_end_id, transfer.amount_fen, transfer.creditor_name) == (
        paid["payment_id"], 2 * SESSION_FEN, name)

    # Verification's whole log published again: ServiceDeliveryConfirmed reaches payment a second time.
    r = lifeline.cli("republish", "verification", "--from", "1")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: metric(lifeline, "payment", "lifeline_events_consumed_total", event="ServiceDeliveryConfirmed",
                            outcome="duplicate") >= 1, what="the confirmation delivered again")
    lifeline.settled_log_sizes(["payment"])
    assert [p["payment_id"] for p in payments(lifeline, case_id) if p["fund_source"] == "service_purchase"] == [
        paid["payment_id"]]
    assert len(transfers_to(lifeline, account)) == 1


def test_bad_input_is_422_naming_the_field_and_nothing_is_stored_or_published(lifeline):
    name = "东营区暖心居家养老服务中心"
    good = code("52370502MJD765432")
    provider_id = register(lifeline, good, name, "1602000009000054322")
    case_id = approved_case(lifeline)
    before = lifeline.settled_log_sizes(["verification"])
    bad_code = good[:17] + ("0" if good[17] != "0" else "1")
    with officer(lifeline) as c:
        body = problem(c.post("/v1/providers", json=provider_body(lifeline, bad_code, "错码机构", "1602000009000054323")),
                       422)
        assert "#/credit_code" in [e["pointer"] for e in body["errors"]]
        body = problem(c.post("/v1/providers", json={**provider_body(lifeline, code("52370502MJD765433"), "两县机构",
                                                                     "1602000009000054324"),
                                                     "regions": [COUNTY, "370602"]}), 422)
        assert "#/regions" in [e["pointer"] for e in body["errors"]]
    body = problem(order(lifeline, case_id, provider_id, period="2026-13"), 422)
    assert "#/period" in [e["pointer"] for e in body["errors"]]
    limit = problem(order(lifeline, case_id, provider_id, quantity=16), 422)  # 320,000 fen > 300,000 an order
    assert (limit["rule"], limit["limit"], limit["limit_fen"]) == ("service_order_limit", "per_order_fen", 300000)
    assert problem(order(lifeline, case_id, provider_id, unit="hour"), 422)["rule"] == "unit"
    assert lifeline.settled_log_sizes(["verification"]) == before  # nothing stored
    r = order(lifeline, case_id, provider_id)
    assert r.status_code == 201, r.text
    before = lifeline.settled_log_sizes(["verification"])
    with as_provider(lifeline, provider_id) as p:
        body = problem(p.post(f"/v1/service-orders/{r.json()['order_id']}/deliveries",
                              json=delivery(lifeline, quantity=0)), 422)
        body_date = problem(p.post(f"/v1/service-orders/{r.json()['order_id']}/deliveries",
                                   json=delivery(lifeline, delivered_on="2099-01-01")), 422)
    assert "#/quantity" in [e["pointer"] for e in body["errors"]]
    assert (body_date["rule"], body_date["field"]) == ("delivered_on", "delivered_on")
    assert lifeline.settled_log_sizes(["verification"]) == before
    # Nothing of the refused requests published; the good order once.
    events = [registry.decode(v) for v in lifeline.published()]
    assert not [e for e in events if e.name == "ProviderRegistered" and e.data["name"] in ("错码机构", "两县机构")]
    assert [e.data["quantity"] for e in events if e.name == "ServiceOrdered" and e.subject == case_id] == [4]


def test_a_provider_cannot_see_another_providers_orders(lifeline):
    mine = register(lifeline, code("52370502MJD111111"), "东营区阳光社工服务社", "1602000009000054331")
    theirs = register(lifeline, code("52370502MJD222222"), "东营区康宁护理服务站", "1602000009000054332")
    case_id = approved_case(lifeline)
    my_order = order(lifeline, case_id, mine).json()["order_id"]
    their_order = order(lifeline, case_id, theirs).json()["order_id"]
    with as_provider(lifeline, mine) as p:
        assert [o["order_id"] for o in p.get("/v1/service-orders").json()["items"]] == [my_order]
        assert [o["order_id"] for o in p.get("/v1/service-orders", params={"case_id": case_id}).json()["items"]] == [
            my_order]
        assert problem(p.get("/v1/service-orders", params={"provider": theirs}), 403)["rule"] == "not_your_order"
        problem(p.get(f"/v1/service-orders/{their_order}"), 403)
        problem(p.post(f"/v1/service-orders/{their_order}/deliveries", json=delivery(lifeline)), 403)
    with as_provider(lifeline, mine, "payment") as p:
        problem(p.get("/v1/provider-payments", params={"provider_id": theirs}), 403)
    with caseworker(lifeline) as c:
        assert {o["order_id"] for o in c.get("/v1/service-orders", params={"case_id": case_id}).json()["items"]} == {
            my_order, their_order}
