"""Payment's public events: how its domain events appear on the wire."""

from __future__ import annotations

from lifeline.messaging.outbound import Outbound
from services.payment.domain import BankBatch, Entitlement, Payment, PaymentRun, Recovery

OUTBOUND = Outbound()


def _run(event) -> str:
    # A run's and a batch's events are keyed by the run: one county's period stays in order.
    return event.run_id


OUTBOUND.copies(Entitlement.Opened, "EntitlementOpened")
OUTBOUND.copies(PaymentRun.Started, "PaymentRunStarted", subject=_run)
OUTBOUND.copies(Payment.Instructed, "PaymentInstructed")
OUTBOUND.copies(BankBatch.Submitted, "BankBatchSubmitted", subject=_run)
OUTBOUND.copies(Payment.Settled, "PaymentSettled")
OUTBOUND.copies(Payment.Returned, "PaymentReturned")
OUTBOUND.copies(Payment.RecallRequested, "PaymentRecallRequested")
OUTBOUND.copies(PaymentRun.Completed, "PaymentRunCompleted", subject=_run)
OUTBOUND.copies(PaymentRun.Reconciled, "ReconciliationCompleted", subject=_run)
OUTBOUND.copies(Recovery.Opened, "RecoveryOpened")
