"""Payment use cases. This slice: record what an approval entitles the household to."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import Clock
from lifeline.domain.values import BankAccount, Benefit
from lifeline.stores.application import ServiceApplication
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideTx
from services.payment.channels import ChannelBook, shipped_channel_book
from services.payment.consumers import HANDLERS
from services.payment.domain import Entitlement
from services.payment.outbound import OUTBOUND


class EntitlementNotFound(LookupError):
    pass


class PaymentApplication(ServiceApplication):
    name = "payment"
    service = "payment"
    handlers = HANDLERS
    outbound = OUTBOUND

    def __init__(self, env=None, *, clock: Clock | None = None, channels: ChannelBook | None = None,
                 sealer: Sealer | None = None):
        super().__init__(env, clock=clock)
        # Seals a corrected account number as intake seals the first (one deployment secret).
        self.sealer = sealer
        # The bank channels (config/bank-channels.yaml): the composition root loads the
        # operator's file; without one, the shipped book.
        self.channels = channels if channels is not None else shipped_channel_book()

    def correct_account(self, entitlement_id: str, account: dict[str, str], reason: str, meta: Meta) -> Entitlement:
        """A caseworker corrects where the household is paid; the number is sealed at once."""
        entitlement = self.get_entitlement(entitlement_id)
        if self.sealer is None:
            raise RuntimeError("payment was built without a sealer: it cannot take an account number")
        sealed = self.sealer.account(account["channel"], account["account_number"], account["account_name"])
        entitlement.correct_account(sealed, reason, self.clock.now().isoformat(), meta)
        self.save(entitlement)
        return entitlement

    def get_entitlement(self, entitlement_id: str) -> Entitlement:
        return self.load(Entitlement.create_id(entitlement_id), EntitlementNotFound(entitlement_id))

    def record_benefit(self, approved: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """BenefitApproved → one entitlement (monthly, one-off payable, or recognition)."""
        benefit = Benefit.from_wire(approved)
        account = approved["bank_account"]
        entitlement = Entitlement.from_benefit(
            approved["case_id"], benefit, BankAccount(**account) if account else None,
            approved["bank_account_ref"], approved["household"]["region_code"],
            self.clock.now().isoformat(), meta,
        )
        if self.exists(entitlement.id):
            return  # one benefit, one entitlement, however often the approval comes
        pe.collect_events(entitlement)


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, (Entitlement.Opened, Entitlement.OneOffRecorded, Entitlement.RecognitionRecorded)):
        entitlement = event.mutate(None)
        tx.put("entitlement", event.entitlement_id, {
            "entitlement_id": event.entitlement_id, "case_id": event.case_id,
            "benefit_id": event.benefit_id, "benefit_type": event.benefit_type,
            "kind": entitlement.kind, "payable": entitlement.payable,
            "monthly_amount_fen": entitlement.monthly_amount_fen,
            "one_off_amount_fen": entitlement.one_off_amount_fen,
            "fund_source": entitlement.fund_source, "first_period": event.first_period,
            "region_code": event.region_code, "opened_at": event.opened_at, "status": "active",
            "bank_account_ref": getattr(event, "bank_account_ref", None) or None,
        }, ref=event.case_id)
    elif isinstance(event, Entitlement.AccountCorrected):
        doc = tx.get("entitlement", event.entitlement_id)
        if doc is not None:
            tx.put("entitlement", event.entitlement_id, {**doc, "bank_account_ref": event.bank_account_ref},
                   ref=event.case_id)
