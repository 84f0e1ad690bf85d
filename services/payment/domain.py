"""Payment's aggregate: the Entitlement an approval gives a household.

Monthly benefits are paid every period from the first; one-off relief is one
payable, paid once by the next payment run; a recognition (低收入家庭认定) is
recorded so the household's file is whole, and is never payable.
"""

from __future__ import annotations

from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import BankAccount, Benefit, fen


class NothingToPay(Exception):
    """A command about paying on an entitlement that pays nothing (a recognition)."""


class Entitlement(LifelineAggregate):
    id_kind = "entitlement"

    class Opened(LifelineAggregate.Created):
        """A monthly benefit, paid from `first_period` on."""

        entitlement_id: str
        case_id: str
        benefit_id: str
        benefit_type: str
        monthly_amount_fen: int
        first_period: str
        bank_account_ref: str
        bank_account: BankAccount | None  # sealed: the payment run's bank file unseals it
        region_code: str
        opened_at: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["bank_account"] = None  # v1 knew the account by its reference only

    class OneOffRecorded(LifelineAggregate.Created):
        """One-off relief to pay once, in `first_period`, from `fund_source`."""

        entitlement_id: str
        case_id: str
        benefit_id: str
        benefit_type: str
        one_off_amount_fen: int
        fund_source: str
        first_period: str
        bank_account_ref: str
        bank_account: BankAccount | None
        region_code: str
        opened_at: str

    class RecognitionRecorded(LifelineAggregate.Created):
        """低收入家庭认定: the household is recognised; nothing is paid."""

        entitlement_id: str
        case_id: str
        benefit_id: str
        benefit_type: str
        first_period: str
        region_code: str
        opened_at: str

    class AccountCorrected(LifelineAggregate.Event):
        """The household's account, corrected (e.g. after a return for a closed account): the
        next payment goes there. The number stays sealed."""

        entitlement_id: str
        case_id: str
        bank_account: BankAccount
        bank_account_ref: str
        reason: str
        corrected_at: str

        def apply(self, e: "Entitlement") -> None:
            e.bank_account = self.bank_account
            e.bank_account_ref = self.bank_account_ref

    @classmethod
    def from_benefit(cls, case_id: str, benefit: Benefit, bank_account: BankAccount | None,
                     bank_account_ref: str, region_code: str, opened_at: str, by: Meta) -> "Entitlement":
        """One entitlement per benefit: its id is derived from the benefit id."""
        entitlement_id = "E-" + benefit.benefit_id.split("-", 1)[-1]
        common = dict(
            id=cls.create_id(entitlement_id), entitlement_id=entitlement_id, case_id=case_id,
            benefit_id=benefit.benefit_id, benefit_type=benefit.benefit_type,
            first_period=benefit.first_period, region_code=region_code, opened_at=opened_at,
            meta=by.as_dict(),
        )
        if benefit.kind == "recognition":
            return cls._create(cls.RecognitionRecorded, **common)
        # Both kinds of money keep where to pay it.
        account = dict(bank_account=bank_account, bank_account_ref=bank_account_ref)
        if benefit.kind == "monthly":
            return cls._create(cls.Opened, monthly_amount_fen=fen(benefit.monthly_amount_fen, "monthly"),
                               **account, **common)
        return cls._create(cls.OneOffRecorded, one_off_amount_fen=fen(benefit.one_off_amount_fen, "one-off"),
                           fund_source=benefit.fund_source, **account, **common)

    def __init__(
        self, entitlement_id: str, case_id: str, benefit_id: str, benefit_type: str,
        first_period: str, region_code: str, meta: dict,
        monthly_amount_fen: int | None = None, one_off_amount_fen: int | None = None,
        fund_source: str | None = None, bank_account: BankAccount | None = None,
        bank_account_ref: str = "", **recorded: Any,
    ):
        # The opening time stays in the event (and the read model): no rule reads it.
        if monthly_amount_fen is not None and monthly_amount_fen < 0:
            raise ValueError("a monthly amount is never negative")
        self.status = "active"
        self.entitlement_id = entitlement_id
        self.case_id = case_id
        self.benefit_id = benefit_id
        self.benefit_type = benefit_type
        self.first_period = first_period
        self.region_code = region_code
        self.monthly_amount_fen = monthly_amount_fen
        self.one_off_amount_fen = one_off_amount_fen
        self.fund_source = fund_source
        self.bank_account = bank_account  # sealed: only a bank file unseals it
        self.bank_account_ref = bank_account_ref

    def correct_account(self, account: BankAccount, reason: str, corrected_at: str, by: Meta) -> None:
        if not self.payable:
            raise NothingToPay(f"{self.entitlement_id} is a recognition: nothing is paid into an account")
        if not reason.strip():
            raise ValueError("a correction says why")
        self.trigger_event(
            self.AccountCorrected, entitlement_id=self.entitlement_id, case_id=self.case_id,
            bank_account=account, bank_account_ref=account.ref, reason=reason,
            corrected_at=corrected_at, meta=by.as_dict(),
        )

    @property
    def kind(self) -> str:
        if self.monthly_amount_fen is not None:
            return "monthly"
        return "one_off" if self.one_off_amount_fen is not None else "recognition"

    @property
    def payable(self) -> bool:
        return self.kind != "recognition"
