"""What matching reads from charity's read models (application.project): funds as the
matcher sees them, a need with what it and its household already got, and a proposal.

The read models are caught up with the store before these are called (`runtime.views()`),
so a proposal is made from what every replica has saved; the Fund aggregate still decides
when a caseworker confirms it (a proposal can be overtaken, never overdraw).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lifeline.stores.sidestore import SideTx
from services.charity.domain import Criteria
from services.charity.matching import FundView, Matcher, NeedView, Proposal

# What counts as used from a fund: allocations not released.
USED = ("allocated", "disbursed")


def fund_view(doc: dict[str, Any]) -> FundView:
    return FundView(doc["fund_id"], doc["name"], Criteria.of(doc), doc["available_fen"])


def fund_views(tx: SideTx, on: str) -> list[FundView]:
    """Every registered fund (the matcher decides which fit on the business date `on`, and
    explains the others), in fund-id order."""
    return [fund_view(doc) for _, _, _, doc in tx.all("fund")]


def need_view(tx: SideTx, need_doc: dict[str, Any], on: str) -> NeedView:
    """The need as matching sees it: what it still lacks, what it got from each fund, and what
    its household (case) got from each fund in the calendar year of `on` over all its needs."""
    used: dict[str, int] = defaultdict(int)
    for a in need_doc["allocations"]:
        if a["status"] in USED:
            used[a["fund_id"]] += a["amount_fen"]
    year = int(on[:4])
    household: dict[str, int] = defaultdict(int)
    for doc in tx.find("need", need_doc["case_id"]):
        for a in doc["allocations"]:
            if a["status"] in USED and a["year"] == year:
                household[a["fund_id"]] += a["amount_fen"]
    return NeedView(
        need_id=need_doc["need_id"], case_id=need_doc["case_id"], need_category=need_doc["need_category"],
        region_code=need_doc["region_code"], household_type=need_doc["household_type"],
        urgency=need_doc["urgency"], due_date=need_doc["due_date"], opened_at=need_doc["opened_at"],
        still_needed_fen=need_doc["still_needed_fen"] if need_doc["status"] != "fulfilled" else 0,
        used_fen=dict(used), household_year_fen=dict(household),
    )


def propose(tx: SideTx, need_doc: dict[str, Any], on: str) -> tuple[Matcher, NeedView, Proposal]:
    """The matcher over every fund, the need's view and its proposal on the business date `on`."""
    matcher = Matcher(fund_views(tx, on), on)
    need = need_view(tx, need_doc, on)
    return matcher, need, matcher.propose(need)


def proposal_json(matcher: Matcher, need: NeedView, proposal: Proposal) -> dict[str, Any]:
    """A proposal with its explanation, as `GET /v1/needs/{need_id}/matches` answers it."""
    return {
        "need_id": need.need_id,
        "still_needed_fen": need.still_needed_fen,
        "proposal": [{"fund_id": p.fund_id, "name": p.name, "amount_fen": p.amount_fen,
                      "matched": list(p.matched), "limited_by": p.limited_by} for p in proposal.portions],
        "shortfall_fen": proposal.shortfall_fen,
        "excluded": [{"fund_id": e.fund_id, "name": e.name, "criterion": e.criterion, "detail": e.detail}
                     for e in matcher.explain(need, proposal)],
        "policy": POLICY,
    }


POLICY = ("Funds whose criteria fit the need (category, region, household type, validity) give in this "
          "order: the one whose validity ends soonest (open-ended last), then the narrowest criteria, then "
          "the largest available, then fund id; each gives the least of what the need still lacks, what it "
          "has available and what its per-case and per-household-year caps leave; what none covers is the "
          "shortfall. Across needs: critical, urgent, normal, then the earliest due date.")
