"""Charity's aggregates. This slice: named Funds and the Needs referrals open."""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import fen


class Fund(LifelineAggregate):
    """A fund (救急难 special fund, 冠名基金, project fund) with its criteria and balance."""

    id_kind = "fund"

    class Registered(LifelineAggregate.Created):
        fund_id: str
        name: str
        kind: str
        need_categories: list[str]
        region_code: str
        balance_fen: int
        per_case_cap_fen: int
        valid_until: str | None
        registered_at: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(state.pop("details"))  # v1 kept the criteria in one dict

    @classmethod
    def register(cls, fund_id: str, name: str, kind: str, need_categories: list[str],
                 region_code: str, balance_fen: int, per_case_cap_fen: int,
                 valid_until: str | None, registered_at: str, by: Meta) -> "Fund":
        return cls._create(
            cls.Registered, id=cls.create_id(fund_id), fund_id=fund_id, name=name, kind=kind,
            need_categories=list(need_categories), region_code=region_code,
            balance_fen=fen(balance_fen, "balance_fen"),
            per_case_cap_fen=fen(per_case_cap_fen, "per_case_cap_fen"), valid_until=valid_until,
            registered_at=registered_at, meta=by.as_dict(),
        )

    def __init__(self, fund_id: str, name: str, kind: str, need_categories: list[str],
                 region_code: str, balance_fen: int, per_case_cap_fen: int,
                 valid_until: str | None, registered_at: str, meta: dict):
        self.fund_id = fund_id
        self.name = name
        self.kind = kind
        self.need_categories = list(need_categories)
        self.region_code = region_code
        self.balance_fen = balance_fen
        self.per_case_cap_fen = per_case_cap_fen
        self.valid_until = valid_until
        self.registered_at = registered_at

    @property
    def details(self) -> dict[str, Any]:
        """The fund as registered (FundRegistered's fields but its id)."""
        return {
            "name": self.name, "kind": self.kind, "need_categories": list(self.need_categories),
            "region_code": self.region_code, "balance_fen": self.balance_fen,
            "per_case_cap_fen": self.per_case_cap_fen, "valid_until": self.valid_until,
            "registered_at": self.registered_at,
        }


class Need(LifelineAggregate):
    """What a household needs that the state does not cover (one case, one plan)."""

    id_kind = "need"

    class Opened(LifelineAggregate.Created):
        need_id: str
        case_id: str
        referral_id: str
        need_category: str
        amount_asked_fen: int
        region_code: str
        urgency: str
        opened_at: str

    @classmethod
    def open_for(cls, referral_id: str, case_id: str, need_category: str, amount_asked_fen: int,
                 region_code: str, urgency: str, opened_at: str, by: Meta) -> "Need":
        """One referral, one need: the need id is derived from the referral id."""
        need_id = "N-" + referral_id.split("-", 1)[-1]
        return cls._create(
            cls.Opened, id=cls.create_id(need_id), need_id=need_id, case_id=case_id,
            referral_id=referral_id, need_category=need_category,
            amount_asked_fen=fen(amount_asked_fen, "amount_asked_fen"), region_code=region_code,
            urgency=urgency, opened_at=opened_at, meta=by.as_dict(),
        )

    def __init__(self, need_id: str, case_id: str, referral_id: str, need_category: str,
                 amount_asked_fen: int, **recorded: Any):
        # Region, urgency and times stay in the Opened event (and the read model): no rule
        # of the need reads them yet.
        self.need_id = need_id
        self.case_id = case_id
        self.referral_id = referral_id
        self.need_category = need_category
        self.amount_asked_fen = amount_asked_fen
        self.status = "open"
