"""Charity use cases. This slice: register funds, open needs from referrals."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.domain.aggregate import Meta, new_id
from lifeline.stores.application import DuplicateRequest, ServiceApplication
from lifeline.stores.sidestore import SideTx
from services.charity.consumers import HANDLERS
from services.charity.domain import Fund, Need
from services.charity.outbound import OUTBOUND


class FundNotFound(LookupError):
    pass


class CharityApplication(ServiceApplication):
    name = "charity"
    service = "charity"
    handlers = HANDLERS
    outbound = OUTBOUND

    def register_fund(self, details: dict[str, Any], meta: Meta, fund_id: str | None = None) -> str:
        fund_id = fund_id or new_id("F")
        fund = Fund.register(fund_id, **details, registered_at=self.clock.now().isoformat(), by=meta)
        try:
            self.save_new(fund, fund_id)
        except DuplicateRequest:
            pass  # a retried registration: the first one stands
        return fund_id

    def get_fund(self, fund_id: str) -> Fund:
        return self.load(Fund.create_id(fund_id), FundNotFound(fund_id))

    def open_need(self, referral: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        need = Need.open_for(
            referral["referral_id"], referral["case_id"], referral["need_category"],
            referral["amount_asked_fen"], referral["household_profile"]["region_code"],
            referral["urgency"], self.clock.now().isoformat(), meta,
        )
        if not self.exists(need.id):
            pe.collect_events(need)


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, Need.Opened):
        # The document is the published NeedOpened, plus where the need stands.
        tx.put("need", event.need_id, {**OUTBOUND(event).data, "status": "open"}, ref=event.case_id)
    elif isinstance(event, Fund.Registered):
        tx.put("fund", event.fund_id, OUTBOUND(event).data, ref=event.region_code)
