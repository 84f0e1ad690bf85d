"""Charity use cases. This slice: register funds, open needs from referrals."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.contracts import registry
from lifeline.stores.application import DuplicateRequest, ServiceApplication
from lifeline.domain.aggregate import Meta, aggregate_id, new_id
from lifeline.stores.sidestore import SideTx
from services.charity.consumers import HANDLERS
from services.charity.outbound import OUTBOUND
from services.charity.domain import Fund, Need


class FundNotFound(LookupError):
    pass


class CharityApplication(ServiceApplication):
    name = "charity"
    service = "charity"
    handlers = HANDLERS
    outbound = OUTBOUND

    def register_fund(self, details: dict[str, Any], meta: Meta, fund_id: str | None = None) -> str:
        fund_id = fund_id or new_id("F")
        details = {**details, "registered_at": self.clock.now().isoformat()}
        registry.validate_data("FundRegistered", {"fund_id": fund_id, **details})
        fund = Fund._create(
            Fund.Registered, id=aggregate_id("fund", fund_id), fund_id=fund_id,
            details=details, meta=meta.as_dict(),
        )
        try:
            self.save_new(fund, fund_id)
        except DuplicateRequest:
            pass  # a retried registration: the first one stands
        return fund_id

    def get_fund(self, fund_id: str) -> Fund:
        return self.load(aggregate_id("fund", fund_id), FundNotFound(fund_id))

    def open_need(self, referral: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        # One referral, one need: the need id is derived from the referral id.
        need_id = "N-" + referral["referral_id"].split("-", 1)[-1]
        ident = aggregate_id("need", need_id)
        if self.exists(ident):
            return
        need = Need._create(
            Need.Opened, id=ident, need_id=need_id, case_id=referral["case_id"],
            referral_id=referral["referral_id"], need_category=referral["need_category"],
            amount_asked_fen=referral["amount_asked_fen"],
            region_code=referral["household_profile"]["region_code"], urgency=referral["urgency"],
            opened_at=self.clock.now().isoformat(), meta=meta.as_dict(),
        )
        pe.collect_events(need)


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, Need.Opened):
        tx.put("need", event.need_id, {
            "need_id": event.need_id, "case_id": event.case_id, "referral_id": event.referral_id,
            "need_category": event.need_category, "amount_asked_fen": event.amount_asked_fen,
            "region_code": event.region_code, "urgency": event.urgency,
            "opened_at": event.opened_at, "status": "open",
        }, ref=event.case_id)
    elif isinstance(event, Fund.Registered):
        tx.put("fund", event.fund_id, {"fund_id": event.fund_id, **event.details},
               ref=event.details["region_code"])
