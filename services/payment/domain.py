"""Payment's aggregates. This slice: the Entitlement opened by an approval."""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Outgoing


class Entitlement(LifelineAggregate):
    """The household's right to a monthly benefit, from its first period on."""

    class Opened(LifelineAggregate.Created):
        entitlement_id: str
        case_id: str
        benefit_id: str
        benefit_type: str
        monthly_amount_fen: int
        first_period: str
        bank_account_ref: str
        region_code: str
        opened_at: str

        def integration(self) -> Outgoing:
            return Outgoing("EntitlementOpened", self.case_id, {
                "entitlement_id": self.entitlement_id, "case_id": self.case_id,
                "benefit_id": self.benefit_id, "benefit_type": self.benefit_type,
                "monthly_amount_fen": self.monthly_amount_fen, "first_period": self.first_period,
                "bank_account_ref": self.bank_account_ref, "opened_at": self.opened_at,
            })

    def __init__(
        self, entitlement_id: str, case_id: str, benefit_id: str, benefit_type: str,
        monthly_amount_fen: int, first_period: str, bank_account_ref: str, region_code: str,
        opened_at: str, meta: dict,
    ):
        if monthly_amount_fen < 0:
            raise ValueError("a monthly amount is never negative")
        self.entitlement_id = entitlement_id
        self.case_id = case_id
        self.benefit_id = benefit_id
        self.benefit_type = benefit_type
        self.monthly_amount_fen = monthly_amount_fen
        self.first_period = first_period
        self.bank_account_ref = bank_account_ref
        self.region_code = region_code
        self.opened_at = opened_at
        self.status = "active"

    def as_dict(self) -> dict[str, Any]:
        return {
            "entitlement_id": self.entitlement_id, "case_id": self.case_id,
            "benefit_id": self.benefit_id, "benefit_type": self.benefit_type,
            "monthly_amount_fen": self.monthly_amount_fen, "first_period": self.first_period,
            "bank_account_ref": self.bank_account_ref, "region_code": self.region_code,
            "opened_at": self.opened_at, "status": self.status,
        }
