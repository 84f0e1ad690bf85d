"""Payment use cases. This slice: open an entitlement per approved monthly benefit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.stores.application import ServiceApplication
from lifeline.domain.aggregate import Meta, aggregate_id
from lifeline.stores.sidestore import SideTx
from lifeline.rules.periods import SHANGHAI
from services.payment.consumers import PaymentConsumers
from services.payment.domain import Entitlement


class PaymentApplication(PaymentConsumers, ServiceApplication):
    name = "payment"
    service = "payment"

    def open_entitlement(self, benefit: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        if benefit.get("monthly_amount_fen") is None:
            return  # one-off relief is paid by a payment run, not an entitlement
        # One benefit, one entitlement: the id is derived from the benefit id.
        entitlement_id = "E-" + benefit["benefit_id"].split("-", 1)[-1]
        ident = aggregate_id("entitlement", entitlement_id)
        if self.exists(ident):
            return
        entitlement = Entitlement._create(
            Entitlement.Opened, id=ident, entitlement_id=entitlement_id,
            case_id=benefit["case_id"], benefit_id=benefit["benefit_id"],
            benefit_type=benefit["benefit_type"], monthly_amount_fen=benefit["monthly_amount_fen"],
            first_period=benefit["first_period"], bank_account_ref=benefit["bank_account_ref"],
            region_code=benefit["household"]["region_code"],
            opened_at=datetime.now(SHANGHAI).isoformat(), meta=meta.as_dict(),
        )
        pe.collect_events(entitlement)


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, Entitlement.Opened):
        tx.put("entitlement", event.entitlement_id, {
            "entitlement_id": event.entitlement_id, "case_id": event.case_id,
            "benefit_id": event.benefit_id, "benefit_type": event.benefit_type,
            "monthly_amount_fen": event.monthly_amount_fen, "first_period": event.first_period,
            "region_code": event.region_code, "opened_at": event.opened_at, "status": "active",
        }, ref=event.case_id)
