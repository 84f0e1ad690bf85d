"""Charity's aggregates. This slice: named Funds and the Needs referrals open."""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate


class Fund(LifelineAggregate):
    """A fund (救急难 special fund, 冠名基金, project fund) with its criteria and balance."""

    class Registered(LifelineAggregate.Created):
        fund_id: str
        details: dict[str, Any]

    def __init__(self, fund_id: str, details: dict[str, Any], meta: dict):
        if details["balance_fen"] < 0 or details["per_case_cap_fen"] < 0:
            raise ValueError("fund amounts are never negative")
        self.fund_id = fund_id
        self.details = details

    @property
    def region_code(self) -> str:
        return self.details["region_code"]


class Need(LifelineAggregate):
    """What a household needs that the state does not cover (one case, one plan)."""

    class Opened(LifelineAggregate.Created):
        need_id: str
        case_id: str
        referral_id: str
        need_category: str
        amount_asked_fen: int
        region_code: str
        urgency: str
        opened_at: str

    def __init__(self, need_id: str, case_id: str, referral_id: str, need_category: str,
                 amount_asked_fen: int, region_code: str, urgency: str, opened_at: str, meta: dict):
        self.need_id = need_id
        self.case_id = case_id
        self.referral_id = referral_id
        self.need_category = need_category
        self.amount_asked_fen = amount_asked_fen
        self.region_code = region_code
        self.urgency = urgency
        self.opened_at = opened_at
        self.status = "open"
