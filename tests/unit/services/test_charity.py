"""Charity's routes in process (issue 12, parts 1-4): funds and donations, needs opened from
referrals, their matches with the explanation, allocations confirmed, released and disbursed;
problem+json for bad input (nothing stored) and region scoping. No broker, no Redis."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from services.charity.api import AllocationClosedOut, FundDoc, MatchesOut, NeedDoc
from services.charity.bootstrap import SPEC
from services.charity.domain import Fund, Need, need_id_of

from . import feed, log_length, new_case_id, service_http, stored

SECRET = "test-charity-secret-0123456789abcdef0123456789"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
COUNTY = "370502"
TOWNSHIP = "370502101"
VILLAGE = "370502101001"
OTHER_TOWNSHIP = "370502102"
_referrals = iter(range(1, 10_000))


def bearer(role: str, region: str = COUNTY, user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app


def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


def problem(r, status: int, *, rule: str | None = None, pointer: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    if rule is not None:
        assert body["rule"] == rule, body
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body["errors"]], body
    return body


def register(http, role: str = "county_officer", region: str = COUNTY, **fields) -> str:
    body = {"name": "东营区救急难专项基金", "kind": "special", "need_categories": ["medical"],
            "region_code": COUNTY, "balance_fen": 500_000, **fields}
    r = client(http).post("/v1/funds", json=body, headers=bearer(role, region))
    assert r.status_code == 201, r.text
    return r.json()["fund_id"]


def referral(case_id: str | None = None, *, amount: int = 300_000, region: str = VILLAGE, category: str = "medical",
             assistance_type: str | None = "dibao", urgency: str = "urgent", consent: bool = True) -> dict:
    n = next(_referrals)
    return {
        "referral_id": f"R-TEST{n:016d}", "case_id": case_id or new_case_id(), "target": "charity",
        "need_category": category, "amount_asked_fen": amount, "urgency": urgency, "due_date": "2026-12-05",
        "consent_to_share": consent,
        "household_profile": {"region_code": region, "members_count": 3, "name_masked": "王*明",
                              "assistance_type": assistance_type},
        "raised_at": "2026-11-24T09:00:00+08:00",
    }


def open_need(http, **kw) -> dict:
    data = referral(**kw)
    feed(http.state.runtime.app, "ReferralRaised", data, data["case_id"], "lifeline/intake")
    return {**data, "need_id": need_id_of(data["referral_id"])}


def fund_doc(http, fund_id: str, role: str = "county_officer", region: str = COUNTY) -> dict:
    r = client(http).get(f"/v1/funds/{fund_id}", headers=bearer(role, region))
    assert r.status_code == 200, r.text
    assert FundDoc.model_validate(r.json()).model_dump() == r.json()
    return r.json()


def need_doc(http, need_id: str, region: str = TOWNSHIP) -> dict:
    r = client(http).get(f"/v1/needs/{need_id}", headers=bearer("caseworker", region))
    assert r.status_code == 200, r.text
    assert NeedDoc.model_validate(r.json()).model_dump() == r.json()
    return r.json()


def allocate(http, need_id: str, fund_id: str, amount: int, region: str = TOWNSHIP, role: str = "caseworker"):
    return client(http).post(f"/v1/needs/{need_id}/allocations", json={"fund_id": fund_id, "amount_fen": amount},
                             headers=bearer(role, region))


# --- funds -------------------------------------------------------------------------------------
def test_a_fund_is_registered_with_its_criteria_and_shows_balance_committed_and_available(http):
    fund_id = register(http, kind="named", donor="张建华", regions=[TOWNSHIP], household_types=["dibao", "tekun"],
                       per_case_cap_fen=200_000, per_household_year_cap_fen=300_000, valid_from="2026-01-01",
                       valid_until="2026-12-31")
    doc = fund_doc(http, fund_id)
    assert doc == {
        "fund_id": fund_id, "name": "东营区救急难专项基金", "kind": "named", "donor": "张建华",
        "need_categories": ["medical"], "region_code": COUNTY, "regions": [TOWNSHIP],
        "household_types": ["dibao", "tekun"], "opening_balance_fen": 500_000, "balance_fen": 500_000,
        "committed_fen": 0, "available_fen": 500_000, "donations": 0, "per_case_cap_fen": 200_000,
        "per_household_year_cap_fen": 300_000, "valid_from": "2026-01-01", "valid_until": "2026-12-31",
        "registered_at": NOW.isoformat(),
    }
    # Defaults: the owner's region, every household type, no caps, open validity, nothing opening.
    plain = fund_doc(http, register(http, balance_fen=0, kind="project"))
    assert (plain["regions"], plain["household_types"], plain["per_case_cap_fen"], plain["valid_until"],
            plain["balance_fen"]) == ([COUNTY], ["dibao", "low_income", "none", "tekun"], None, None, 0)


@pytest.mark.parametrize("fields, pointer", [
    ({"kind": "named"}, "#/donor"),
    ({"balance_fen": -1}, "#/balance_fen"),
    ({"per_case_cap_fen": 0}, "#/per_case_cap_fen"),
    ({"need_categories": []}, "#/need_categories"),
    ({"need_categories": ["luxury"]}, "#/need_categories/0"),
    ({"household_types": ["rich"]}, "#/household_types/0"),
    ({"regions": ["370503"]}, "#/regions/0"),
    ({"regions": ["999999"]}, "#/regions/0"),
    ({"valid_from": "2026-12-01", "valid_until": "2026-01-01"}, "#/valid_until"),
    ({"opening_balance": 5}, "#/opening_balance"),
], ids=["named-without-donor", "negative-balance", "zero-cap", "no-category", "unknown-category",
        "unknown-household-type", "region-outside-owner", "bad-region", "validity-reversed", "unknown-field"])
def test_a_bad_fund_is_422_naming_the_field_and_nothing_is_stored(http, fields, pointer):
    app = http.state.runtime.app
    before = log_length(app)
    body = {"name": "某基金", "kind": "special", "need_categories": ["medical"], "region_code": COUNTY, **fields}
    problem(client(http).post("/v1/funds", json=body, headers=bearer("county_officer")), 422, pointer=pointer)
    assert log_length(app) == before


def test_funds_are_registered_by_fund_offices_within_their_region(http):
    body = {"name": "某基金", "kind": "special", "need_categories": ["medical"], "region_code": COUNTY}
    problem(client(http).post("/v1/funds", json=body, headers=bearer("caseworker", TOWNSHIP)), 403)
    problem(client(http).post("/v1/funds", json=body, headers=bearer("county_officer", "370503")), 403)
    r = client(http).post("/v1/funds", json={**body, "region_code": "370000"},
                          headers=bearer("charity_federation", "370000"))
    assert r.status_code == 201, r.text


def test_a_township_sees_the_funds_that_can_help_its_needs_and_no_others(http):
    county = register(http)
    province = register(http, "charity_federation", "370000", region_code="370000", name="山东省慈善总会医疗救助基金")
    mine = register(http, regions=[TOWNSHIP], name="胜利街道冠名基金")
    other = register(http, regions=[OTHER_TOWNSHIP], name="另一街道基金")
    elsewhere = register(http, "county_officer", "370503", region_code="370503", name="河口区基金")

    def listed(role: str, office: str, **params) -> set[str]:
        r = client(http).get("/v1/funds", params=params, headers=bearer(role, office))
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            assert FundDoc.model_validate(item).model_dump() == item
        return {d["fund_id"] for d in r.json()["items"]}

    assert listed("caseworker", TOWNSHIP) == {county, province, mine}
    assert listed("county_officer", COUNTY) == {county, province, mine, other}
    assert listed("county_officer", COUNTY, region=OTHER_TOWNSHIP) == {county, province, other}
    assert listed("charity_federation", "370000") == {county, province, mine, other, elsewhere}
    problem(client(http).get("/v1/funds", params={"region": "370503"}, headers=bearer("caseworker", TOWNSHIP)), 403)
    problem(client(http).get("/v1/funds", params={"region": "12"}, headers=bearer("caseworker", TOWNSHIP)), 422)
    fund_doc(http, province, "caseworker", TOWNSHIP)
    problem(client(http).get(f"/v1/funds/{other}", headers=bearer("caseworker", TOWNSHIP)), 403)
    problem(client(http).get("/v1/funds/F-NONE", headers=bearer("caseworker", TOWNSHIP)), 404)


# --- donations ---------------------------------------------------------------------------------
def test_a_donation_feeds_the_balance_once_per_reference(http):
    app = http.state.runtime.app
    fund_id = register(http)
    body = {"reference": "DYCS-2026-11-0042", "donor": "东营市某商贸有限公司", "amount_fen": 100_000}
    r = client(http).post(f"/v1/funds/{fund_id}/donations", json=body, headers=bearer("charity_federation", COUNTY))
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["amount_fen"], first["balance_fen"], first["received_on"]) == (100_000, 600_000, "2026-11-25")
    before = log_length(app)
    again = client(http).post(f"/v1/funds/{fund_id}/donations", json=body, headers=bearer("county_officer"))
    assert (again.status_code, again.json()) == (200, first)
    assert log_length(app) == before
    problem(client(http).post(f"/v1/funds/{fund_id}/donations", json={**body, "amount_fen": 1},
                              headers=bearer("county_officer")), 409, rule="donation_reference")
    assert log_length(app) == before
    doc = fund_doc(http, fund_id)
    assert (doc["balance_fen"], doc["available_fen"], doc["opening_balance_fen"], doc["donations"]) == (
        600_000, 600_000, 500_000, 1)
    [event] = stored(app, Fund.DonationReceived)
    assert event.donation_id == first["donation_id"]


@pytest.mark.parametrize("fields, status, pointer, rule", [
    ({"amount_fen": 0}, 422, "#/amount_fen", None),
    ({"amount_fen": -100}, 422, "#/amount_fen", None),
    ({"reference": ""}, 422, "#/reference", None),
    ({"received_on": "2026-11-26"}, 422, "#/received_on", None),
    ({"note": "x"}, 422, "#/note", None),
    ({"received_on": "2026-11-01"}, 409, None, "expired"),
], ids=["zero", "negative", "no-reference", "future", "unknown-field", "expired-fund"])
def test_a_bad_donation_changes_nothing(http, fields, status, pointer, rule):
    app = http.state.runtime.app
    fund_id = register(http, valid_until="2026-10-31")
    before = log_length(app)
    body = {"reference": "REF-1", "donor": "某人", "amount_fen": 100, "received_on": "2026-10-20", **fields}
    problem(client(http).post(f"/v1/funds/{fund_id}/donations", json=body, headers=bearer("county_officer")),
            status, pointer=pointer, rule=rule)
    assert log_length(app) == before


def test_donations_are_recorded_by_fund_offices_of_the_funds_region(http):
    fund_id = register(http)
    body = {"reference": "REF-2", "donor": "某人", "amount_fen": 100}
    problem(client(http).post(f"/v1/funds/{fund_id}/donations", json=body, headers=bearer("caseworker", TOWNSHIP)), 403)
    problem(client(http).post(f"/v1/funds/{fund_id}/donations", json=body,
                              headers=bearer("county_officer", "370503")), 403)
    problem(client(http).post("/v1/funds/F-NONE/donations", json=body, headers=bearer("county_officer")), 404)


# --- needs ---------------------------------------------------------------------------------------
def test_a_referral_to_charity_opens_one_need_with_the_households_masked_profile(http):
    app = http.state.runtime.app
    data = open_need(http, assistance_type="linshi_jinan", consent=False)
    feed(app, "ReferralRaised", {k: v for k, v in data.items() if k != "need_id"}, data["case_id"], "lifeline/intake")
    other = referral()
    other["target"] = "medical_insurance"
    feed(app, "ReferralRaised", other, other["case_id"], "lifeline/intake")
    [opened] = stored(app, Need.Opened)
    assert opened.need_id == data["need_id"]
    doc = need_doc(http, data["need_id"])
    assert doc == {
        "need_id": data["need_id"], "case_id": data["case_id"], "referral_id": data["referral_id"],
        "need_category": "medical", "amount_asked_fen": 300_000, "region_code": VILLAGE, "urgency": "urgent",
        "due_date": "2026-12-05", "consent_to_share": False, "household_type": "none", "name_masked": "王*明",
        "members_count": 3, "opened_at": NOW.isoformat(), "status": "open", "allocations": [],
        "allocated_fen": 0, "disbursed_fen": 0, "still_needed_fen": 300_000, "published": False,
        "accepted_by": None, "fulfilled_by": None,
    }
    r = client(http).get("/v1/needs", params={"case_id": data["case_id"]}, headers=bearer("caseworker", TOWNSHIP))
    assert [d["need_id"] for d in r.json()["items"]] == [data["need_id"]]


def test_a_need_is_read_within_its_region_and_never_by_the_federation(http):
    data = open_need(http)
    need_id = data["need_id"]
    need_doc(http, need_id, TOWNSHIP)
    need_doc(http, need_id, COUNTY)
    problem(client(http).get(f"/v1/needs/{need_id}", headers=bearer("caseworker", OTHER_TOWNSHIP)), 403)
    problem(client(http).get(f"/v1/needs/{need_id}/matches", headers=bearer("caseworker", OTHER_TOWNSHIP)), 403)
    problem(client(http).get(f"/v1/needs/{need_id}", headers=bearer("charity_federation", "000000")), 403)
    problem(client(http).get("/v1/needs", params={"case_id": data["case_id"]},
                             headers=bearer("charity_federation", "000000")), 403)
    r = client(http).get("/v1/needs", params={"case_id": data["case_id"]}, headers=bearer("caseworker", OTHER_TOWNSHIP))
    assert r.json()["items"] == []
    problem(client(http).get("/v1/needs/N-NONE", headers=bearer("caseworker", TOWNSHIP)), 404)


# --- matches -------------------------------------------------------------------------------------
def test_matches_split_a_need_across_funds_in_the_ranking_and_explain_every_other_fund(http):
    county = register(http, balance_fen=1_000_000, name="区级专项基金")
    expiring = register(http, balance_fen=100_000, valid_until="2026-12-31", name="年底到期基金")
    named = register(http, balance_fen=50_000, kind="named", donor="张建华", regions=[TOWNSHIP], name="街道冠名基金")
    education = register(http, need_categories=["education"], name="助学基金")
    elsewhere = register(http, regions=[OTHER_TOWNSHIP], name="另一街道基金")
    tekun = register(http, household_types=["tekun"], name="特困基金")
    later = register(http, valid_from="2027-01-01", name="明年基金")
    expired = register(http, valid_until="2026-10-31", name="已到期基金")
    capped = register(http, per_case_cap_fen=1, name="封顶基金")
    data = open_need(http, amount=300_000)
    r = client(http).get(f"/v1/needs/{data['need_id']}/matches", headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    body = r.json()
    assert MatchesOut.model_validate(body).model_dump() == body
    assert (body["still_needed_fen"], body["shortfall_fen"]) == (300_000, 0)
    assert [(p["fund_id"], p["amount_fen"], p["limited_by"]) for p in body["proposal"]] == [
        (expiring, 100_000, "no_available_balance"), (named, 50_000, "no_available_balance"),
        (county, 150_000, "need")]
    assert body["proposal"][0]["matched"] == ["need_category", "region", "household_type", "validity"]
    assert {e["fund_id"]: e["criterion"] for e in body["excluded"]} == {
        education: "need_category", elsewhere: "region", tekun: "household_type", later: "not_yet_valid",
        expired: "expired", capped: "need_covered"}
    assert "expiring soonest" in body["policy"] or "validity ends soonest" in body["policy"]


def test_what_no_fund_covers_is_the_shortfall(http):
    fund_id = register(http, balance_fen=100_000)
    data = open_need(http, amount=300_000)
    body = client(http).get(f"/v1/needs/{data['need_id']}/matches", headers=bearer("caseworker", TOWNSHIP)).json()
    assert ([(p["fund_id"], p["amount_fen"]) for p in body["proposal"]], body["shortfall_fen"]) == (
        [(fund_id, 100_000)], 200_000)


# --- allocations ---------------------------------------------------------------------------------
def test_an_allocation_commits_the_fund_and_is_released_or_disbursed_until_the_need_is_fulfilled(http):
    app = http.state.runtime.app
    fund_id = register(http, balance_fen=500_000)
    data = open_need(http, amount=300_000)
    need_id = data["need_id"]
    r = allocate(http, need_id, fund_id, 200_000)
    assert r.status_code == 201, r.text
    first = r.json()
    assert {k: v for k, v in first.items() if k != "allocation_id"} == {
        "fund_id": fund_id, "need_id": need_id, "amount_fen": 200_000, "available_fen": 300_000}
    doc = fund_doc(http, fund_id)
    assert (doc["balance_fen"], doc["committed_fen"], doc["available_fen"]) == (500_000, 200_000, 300_000)
    need = need_doc(http, need_id)
    assert (need["allocated_fen"], need["still_needed_fen"], need["allocations"]) == (200_000, 100_000, [
        {"allocation_id": first["allocation_id"], "fund_id": fund_id, "amount_fen": 200_000,
         "status": "allocated", "year": 2026}])
    # Released: back to the fund, the need lacks it again.
    r = client(http).post(f"/v1/needs/{need_id}/allocations/{first['allocation_id']}/release",
                          json={"reason": "家庭已获医保报销"}, headers=bearer("caseworker", TOWNSHIP))
    assert r.status_code == 200, r.text
    assert AllocationClosedOut.model_validate(r.json()).model_dump() == r.json()
    assert (r.json()["status"], r.json()["available_fen"], r.json()["still_needed_fen"]) == ("released", 500_000, 300_000)
    before = log_length(app)
    again = client(http).post(f"/v1/needs/{need_id}/allocations/{first['allocation_id']}/release",
                              json={"reason": "家庭已获医保报销"}, headers=bearer("caseworker", TOWNSHIP))
    assert (again.status_code, again.json(), log_length(app)) == (200, r.json(), before)  # once
    problem(client(http).post(f"/v1/needs/{need_id}/allocations/{first['allocation_id']}/disbursement",
                              json={"reference": "ZF-X"}, headers=bearer("caseworker", TOWNSHIP)),
            409, rule="allocation_closed")
    # Two allocations, both disbursed: the second covers the need, which is fulfilled by funds.
    ids = [allocate(http, need_id, fund_id, amount).json()["allocation_id"] for amount in (250_000, 50_000)]
    for n, allocation_id in enumerate(ids):
        r = client(http).post(f"/v1/needs/{need_id}/allocations/{allocation_id}/disbursement",
                              json={"reference": f"ZF-{n}"}, headers=bearer("county_officer", COUNTY))
        assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["need_status"], r.json()["balance_fen"], r.json()["committed_fen"]) == (
        "disbursed", "fulfilled", 200_000, 0)
    need = need_doc(http, need_id)
    assert (need["status"], need["fulfilled_by"], need["disbursed_fen"], need["still_needed_fen"]) == (
        "fulfilled", "funds", 300_000, 0)
    [fulfilled] = stored(app, Need.Fulfilled)
    assert (fulfilled.by, fulfilled.amount_fen, fulfilled.referral_id) == ("funds", 300_000, data["referral_id"])
    [disbursed, _] = stored(app, Fund.AllocationDisbursed)
    assert (disbursed.reference, disbursed.disbursed_on) == ("ZF-0", "2026-11-25")
    fund = fund_doc(http, fund_id)
    assert (fund["balance_fen"], fund["committed_fen"], fund["available_fen"]) == (200_000, 0, 200_000)
    problem(allocate(http, need_id, fund_id, 1), 409, rule="need_fulfilled")


def test_an_allocation_the_fund_cannot_give_is_409_with_the_need_re_proposed_and_changes_nothing(http):
    app = http.state.runtime.app
    small = register(http, balance_fen=100_000, name="小基金")
    other = register(http, balance_fen=150_000, name="另一基金")
    capped = register(http, balance_fen=900_000, per_case_cap_fen=50_000, name="封顶基金")
    education = register(http, need_categories=["education"], name="助学基金")
    data = open_need(http, amount=300_000)
    need_id = data["need_id"]
    before = log_length(app)
    body = problem(allocate(http, need_id, small, 100_001), 409, rule="no_available_balance")
    assert body["available_fen"] == 100_000
    assert body["still_needed_fen"] == 300_000
    assert {p["fund_id"]: p["amount_fen"] for p in body["proposal"]} == {small: 100_000, other: 150_000, capped: 50_000}
    problem(allocate(http, need_id, capped, 50_001), 409, rule="per_case_cap")
    problem(allocate(http, need_id, education, 10), 409, rule="need_category")
    problem(allocate(http, need_id, small, 300_001), 409, rule="more_than_needed")
    assert log_length(app) == before


@pytest.mark.parametrize("body, status, pointer", [
    ({"amount_fen": 0}, 422, "#/amount_fen"),
    ({"amount_fen": -5}, 422, "#/amount_fen"),
    ({"fund_id": "F-NONE"}, 422, "#/fund_id"),
    ({"note": "x"}, 422, "#/note"),
], ids=["zero", "negative", "unknown-fund", "unknown-field"])
def test_a_bad_allocation_is_422_and_changes_nothing(http, body, status, pointer):
    app = http.state.runtime.app
    fund_id = register(http)
    data = open_need(http)
    before = log_length(app)
    r = client(http).post(f"/v1/needs/{data['need_id']}/allocations",
                          json={"fund_id": fund_id, "amount_fen": 100, **body}, headers=bearer("caseworker", TOWNSHIP))
    problem(r, status, pointer=pointer)
    assert log_length(app) == before


def test_allocations_are_made_by_caseworkers_and_county_officers_of_the_needs_region(http):
    fund_id = register(http)
    data = open_need(http)
    problem(allocate(http, data["need_id"], fund_id, 100, OTHER_TOWNSHIP), 403)
    problem(allocate(http, data["need_id"], fund_id, 100, TOWNSHIP, "clerk"), 403)
    problem(allocate(http, data["need_id"], fund_id, 100, "000000", "charity_federation"), 403)
    problem(allocate(http, "N-NONE", fund_id, 100), 404)
    assert allocate(http, data["need_id"], fund_id, 100, COUNTY, "county_officer").status_code == 201
    problem(client(http).post(f"/v1/needs/{data['need_id']}/allocations/A-NONE/release", json={"reason": "x"},
                              headers=bearer("caseworker", TOWNSHIP)), 404)
    problem(client(http).post(f"/v1/needs/{data['need_id']}/allocations/A-NONE/disbursement",
                              json={"reference": "x", "disbursed_on": "2026-11-26"},
                              headers=bearer("caseworker", TOWNSHIP)), 422, pointer="#/disbursed_on")


def test_the_household_year_cap_counts_every_need_of_the_case_this_year(http):
    fund_id = register(http, balance_fen=900_000, per_household_year_cap_fen=200_000)
    case_id = new_case_id()
    first = open_need(http, case_id=case_id, amount=150_000)
    second = open_need(http, case_id=case_id, amount=150_000, category="medical")
    assert allocate(http, first["need_id"], fund_id, 150_000).status_code == 201
    body = client(http).get(f"/v1/needs/{second['need_id']}/matches", headers=bearer("caseworker", TOWNSHIP)).json()
    assert [(p["amount_fen"], p["limited_by"]) for p in body["proposal"]] == [(50_000, "per_household_year_cap")]
    problem(allocate(http, second["need_id"], fund_id, 50_001), 409, rule="per_household_year_cap")
    assert allocate(http, second["need_id"], fund_id, 50_000).status_code == 201
