"""Payment's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.payment.domain import Entitlement

OUTBOUND = Outbound()


@OUTBOUND.maps(Entitlement.Opened, "EntitlementOpened")
def entitlement_opened(e: Entitlement.Opened) -> dict[str, Any]:
    return {
        "entitlement_id": e.entitlement_id, "case_id": e.case_id, "benefit_id": e.benefit_id,
        "benefit_type": e.benefit_type, "monthly_amount_fen": e.monthly_amount_fen,
        "first_period": e.first_period, "bank_account_ref": e.bank_account_ref,
        "opened_at": e.opened_at,
    }
