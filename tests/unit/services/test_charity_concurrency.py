"""Never overdrawn under concurrency (issue 12, part 3): two charity applications (two HTTP
apps, as two replicas would be) on ONE SQLite event store, many threads allocating from one
fund at the same moment while donations arrive. Every request is answered 201 or 409 with a
re-proposal; the fund's committed amount never exceeds its balance at any point of its
history; what was allocated less what was released is what the fund has committed."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from fastapi.testclient import TestClient

from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from services.charity.bootstrap import SPEC
from services.charity.domain import EXCLUSIONS, Fund, need_id_of

from . import feed, new_case_id, service_http, stored

SECRET = "test-charity-race-secret-0123456789abcdef012345"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
TOWNSHIP = "370502101"


def bearer(role: str, region: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


def referral(n: int, amount: int) -> dict:
    return {
        "referral_id": f"R-RACE{n:016d}", "case_id": new_case_id(), "target": "charity", "need_category": "medical",
        "amount_asked_fen": amount, "urgency": "urgent", "due_date": "2026-12-05", "consent_to_share": True,
        "household_profile": {"region_code": f"{TOWNSHIP}001", "members_count": 2, "name_masked": "李*",
                              "assistance_type": "dibao"},
        "raised_at": "2026-11-24T09:00:00+08:00",
    }


def history_never_overdrawn(events: list) -> None:
    """The fund replayed event by event: committed <= balance after each."""
    fund = None
    for event in events:
        fund = event.mutate(fund)
        assert 0 <= fund.committed_fen <= fund.balance_fen, event


def test_two_replicas_allocating_from_one_fund_at_once_never_overdraw_it(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as one, service_http(SPEC, tmp_path, SECRET, NOW) as two:
        first = TestClient(one, raise_server_exceptions=False)
        r = first.post("/v1/funds", headers=bearer("county_officer", "370502"), json={
            "name": "东营区救急难专项基金", "kind": "special", "need_categories": ["medical"], "region_code": "370502",
            "balance_fen": 1_000_000})
        assert r.status_code == 201, r.text
        fund_id = r.json()["fund_id"]
        needs = []
        for n in range(12):
            data = referral(n, 250_000)
            feed(one.state.runtime.app, "ReferralRaised", data, data["case_id"], "lifeline/intake")
            needs.append(need_id_of(data["referral_id"]))

        start = threading.Barrier(32)
        answers: list[tuple[str, int, dict]] = []
        lock = threading.Lock()

        def allocate(i: int) -> None:
            app = (one, two)[i % 2]
            client = TestClient(app, raise_server_exceptions=False)
            mine: list[dict] = []
            start.wait()
            for k in range(4):
                amount = random.Random(i * 10 + k).randrange(10_000, 90_000)
                r = client.post(f"/v1/needs/{needs[(i + k) % len(needs)]}/allocations",
                                json={"fund_id": fund_id, "amount_fen": amount}, headers=bearer("caseworker", TOWNSHIP))
                with lock:
                    answers.append(("allocate", r.status_code, r.json()))
                if r.status_code == 201:
                    mine.append(r.json())
                if k == 2 and i % 3 == 0 and mine:  # some give one back while the others allocate
                    a = mine[0]
                    r = client.post(f"/v1/needs/{a['need_id']}/allocations/{a['allocation_id']}/release",
                                    json={"reason": "家庭情况变化"}, headers=bearer("caseworker", TOWNSHIP))
                    assert r.status_code == 200, r.text
                    with lock:
                        answers.append(("release", r.status_code, a))

        def donate(i: int) -> None:
            client = TestClient((one, two)[i % 2], raise_server_exceptions=False)
            start.wait()
            for k in range(3):
                r = client.post(f"/v1/funds/{fund_id}/donations", headers=bearer("county_officer", "370502"),
                                json={"reference": f"RACE-{i}-{k}", "donor": "某公司", "amount_fen": 20_000})
                with lock:
                    answers.append(("donate", r.status_code, r.json()))

        with ThreadPoolExecutor(32) as pool:
            done = [pool.submit(allocate, i) for i in range(28)] + [pool.submit(donate, i) for i in range(4)]
            for f in done:
                f.result()

        allocated = [a for kind, status, a in answers if kind == "allocate" and status == 201]
        refused = [a for kind, status, a in answers if kind == "allocate" and status != 201]
        assert len(allocated) + len(refused) == 28 * 4
        for body in refused:
            assert body["status"] == 409, body
            assert body["rule"] in (*EXCLUSIONS, "more_than_needed", "busy"), body
            assert isinstance(body["proposal"], list) and "shortfall_fen" in body, body
        assert refused, "the fund was large enough for every request: no race was run"
        assert {status for kind, status, _ in answers if kind == "donate"} == {201}

        app = one.state.runtime.app
        fund = app.get_fund(fund_id)
        events = stored(app, Fund.Registered, Fund.DonationReceived, Fund.Allocated, Fund.AllocationReleased,
                        Fund.AllocationDisbursed)
        history_never_overdrawn(events)
        made = [e for e in events if isinstance(e, Fund.Allocated)]
        assert sorted(e.allocation_id for e in made) == sorted(a["allocation_id"] for a in allocated)
        released = [a for kind, _, a in answers if kind == "release"]
        assert released and len(stored(app, Fund.AllocationReleased)) == len(released)
        assert fund.committed_fen == (sum(a["amount_fen"] for a in allocated)
                                      - sum(a["amount_fen"] for a in released)) <= fund.balance_fen
        assert fund.balance_fen == 1_000_000 + 12 * 20_000
        # Each need got no more than it asked, and the read models of both replicas agree.
        for need_id in needs:
            assert app.get_need(need_id).still_needed_fen >= 0
        for http in (one, two):
            r = TestClient(http).get(f"/v1/funds/{fund_id}", headers=bearer("county_officer", "370502"))
            assert (r.json()["committed_fen"], r.json()["balance_fen"]) == (fund.committed_fen, fund.balance_fen)
