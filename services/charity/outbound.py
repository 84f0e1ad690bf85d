"""Charity's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.charity.domain import Fund, Need

OUTBOUND = Outbound()


@OUTBOUND.maps(Fund.Registered, "FundRegistered", subject=lambda e: e.fund_id)
def fund_registered(e: Fund.Registered) -> dict[str, Any]:
    return {
        "fund_id": e.fund_id, "name": e.name, "kind": e.kind,
        "need_categories": list(e.need_categories), "region_code": e.region_code,
        "balance_fen": e.balance_fen, "per_case_cap_fen": e.per_case_cap_fen,
        "valid_until": e.valid_until, "registered_at": e.registered_at,
    }


@OUTBOUND.maps(Need.Opened, "NeedOpened")
def need_opened(e: Need.Opened) -> dict[str, Any]:
    return {
        "need_id": e.need_id, "case_id": e.case_id, "referral_id": e.referral_id,
        "need_category": e.need_category, "amount_asked_fen": e.amount_asked_fen,
        "region_code": e.region_code, "urgency": e.urgency, "opened_at": e.opened_at,
    }
