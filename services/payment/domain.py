"""Payment's aggregates.

- `Entitlement`: what an approval gives a household. Monthly benefits are paid every
  period from the first, as adjusted, suspended, resumed or terminated since; one-off
  relief is paid once, at once; a recognition (低收入家庭认定) is never payable.
- `Payment`: one entitlement × period (its id is derived from both, so the event store
  refuses a second one: a payment cannot be made twice). Instructed in a bank file,
  then settled, or returned and held until the account is corrected and released.
- `BankBatch`: one pain.001 file for one channel; `PaymentRun`: a county's period;
  `Budget`: a county's budget per period and fund source; `ReserveFund`: a township's
  备用金; `BankMessage`: a status report or statement received from a bank.
- `ReliefGrant`: emergency relief intake granted, paid from the reserve fund (or held until it
  holds it); `Recovery`: what a household is to pay back (追回), one per cause.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain import people
from lifeline.domain.values import BankAccount, Benefit, fen, period as checked_period
from lifeline.rules.periods import period_of, to_shanghai
from lifeline.rules.vocabulary import MONTHLY_FUND_SOURCES


class NothingToPay(Exception):
    """A command about paying on an entitlement that pays nothing (a recognition)."""


class PaymentConflict(Exception):
    """A command that contradicts where a payment, run or fund stands (HTTP 409); `rule` names it."""

    def __init__(self, message: str, rule: str):
        super().__init__(message)
        self.rule = rule


def payment_id_of(entitlement_id: str, period: str) -> str:
    """The payment's id, and its EndToEndId in the bank files: entitlement × period
    (E-0123456789ABCDEF0123-202612, 29 characters; ISO allows 35)."""
    return f"{entitlement_id}-{period.replace('-', '')}"


# What follows a benefit after approval (BenefitAdjusted/Suspended/Resumed/Terminated, a death).
CHANGES = ("adjust", "suspend", "resume", "terminate")


def amount_for(kind: str, first_period: str, monthly_amount_fen: int | None,
               one_off_amount_fen: int | None, changes: list[dict[str, Any]], period: str) -> int:
    """What an entitlement pays for `period`, in fen (0: nothing).

    One rule for the aggregate and for the read model the payment run reads (the same
    function over the same recorded changes). Changes apply in the order recorded, each
    from its `from_period` on; a termination is final."""
    if period < first_period or kind == "recognition":
        return 0
    if kind == "one_off":
        # Paid once, for the period it was granted in; a termination before that stops it.
        if period != first_period:
            return 0
        stopped = any(c["change"] == "terminate" and c["from_period"] <= period for c in changes)
        return 0 if stopped else int(one_off_amount_fen or 0)
    amount, paying = int(monthly_amount_fen or 0), True
    for c in changes:
        if c["from_period"] > period:
            continue
        if c["change"] == "terminate":
            return 0
        if c["change"] == "adjust":
            amount = int(c["monthly_amount_fen"])
        elif c["change"] == "suspend":
            paying = False
        elif c["change"] == "resume":
            paying = True
    return amount if paying else 0


def payment_fund_source(benefit_type: str, fund_source: str | None) -> str:
    """What a payment is charged to (the budget it draws on): one-off relief's own fund source,
    a monthly benefit's by its type."""
    return fund_source or MONTHLY_FUND_SOURCES[benefit_type]


def status_of(changes: list[dict[str, Any]]) -> str:
    """active, suspended or terminated, after every change recorded."""
    status = "active"
    for c in changes:
        if c["change"] == "terminate":
            return "terminated"
        if c["change"] == "suspend":
            status = "suspended"
        elif c["change"] == "resume":
            status = "active"
    return status


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

    class Changed(LifelineAggregate.Event):
        """The benefit changed from `from_period` on: adjusted, suspended, resumed or
        terminated by a decision (`ground` decision), or terminated by a death reported
        by a department (`ground` death). `source` names the event that said so."""

        entitlement_id: str
        case_id: str
        change: str
        from_period: str
        monthly_amount_fen: int | None
        ground: str
        reason: str
        source: str
        changed_at: str

        def apply(self, e: "Entitlement") -> None:
            e.changes.append({"change": self.change, "from_period": self.from_period,
                              "monthly_amount_fen": self.monthly_amount_fen})
            e.sources.add(self.source)

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
        self.changes: list[dict[str, Any]] = []
        self.sources: set[str] = set()

    def _ends_earlier(self, change: str, from_period: str) -> bool:
        """A termination before the one recorded (fraud found during a grace period): the
        benefit ends sooner. Anything else after a termination changes nothing."""
        ends = [c["from_period"] for c in self.changes if c["change"] == "terminate"]
        return change == "terminate" and from_period < min(ends)

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

    def change(self, change: str, from_period: str, reason: str, source: str, changed_at: str,
               by: Meta, monthly_amount_fen: int | None = None, ground: str = "decision") -> bool:
        """Record a change of the benefit; False when `source` was recorded already (a
        redelivery) or the change changes nothing (a death after termination)."""
        if change not in CHANGES:
            raise ValueError(f"change must be one of {', '.join(CHANGES)}")
        checked_period(from_period, "from_period")
        if source in self.sources or (self.status == "terminated" and not self._ends_earlier(change, from_period)):
            return False
        if change == "adjust":
            if self.kind != "monthly":
                raise NothingToPay(f"{self.entitlement_id} has no monthly amount to adjust")
            fen(monthly_amount_fen, "monthly_amount_fen")
        elif monthly_amount_fen is not None:
            raise ValueError("only an adjustment names a monthly amount")
        if not self.payable:
            return False  # a recognition pays nothing either way; the review keeps its file
        self.trigger_event(
            self.Changed, entitlement_id=self.entitlement_id, case_id=self.case_id, change=change,
            from_period=from_period, monthly_amount_fen=monthly_amount_fen, ground=ground,
            reason=reason, source=source, changed_at=changed_at, meta=by.as_dict(),
        )
        self.sources.add(source)
        return True

    def amount_for(self, period: str) -> int:
        return amount_for(self.kind, self.first_period, self.monthly_amount_fen, self.one_off_amount_fen,
                          self.changes, period)

    @property
    def status(self) -> str:
        return status_of(self.changes)

    @property
    def payment_fund_source(self) -> str:
        return payment_fund_source(self.benefit_type, self.fund_source)

    @property
    def kind(self) -> str:
        if self.monthly_amount_fen is not None:
            return "monthly"
        return "one_off" if self.one_off_amount_fen is not None else "recognition"

    @property
    def payable(self) -> bool:
        return self.kind != "recognition"


class Payment(LifelineAggregate):
    """One entitlement × period, paid once: its id is derived from both, so however often a
    run, a batch or an event repeats, the store holds one Payment for it (a second
    `Instructed` collides on the aggregate's first version and is refused)."""

    id_kind = "payment"

    class Instructed(LifelineAggregate.Created):
        payment_id: str  # = the EndToEndId of the bank file
        entitlement_id: str
        case_id: str
        period: str
        amount_fen: int
        fund_source: str
        channel: str
        account_name: str
        number_sealed: str  # sealed: only the bank file unseals it
        bank_account_ref: str
        region_code: str
        run_id: str
        batch_id: str
        instructed_at: str

    class Settled(LifelineAggregate.Event):
        """Booked on the household's account: the bank's statement says so."""

        payment_id: str
        case_id: str
        batch_id: str
        amount_fen: int
        booked_on: str
        statement_id: str

        def apply(self, p: "Payment") -> None:
            p.status = "settled"
            p.settled_on = self.booked_on

    class Returned(LifelineAggregate.Event):
        """The bank refused or returned it (ISO reason code), also after booking it (a return on
        a later statement): held until the account is corrected."""

        payment_id: str
        case_id: str
        batch_id: str
        amount_fen: int
        reason_code: str
        reason: str
        message_id: str
        returned_at: str

        def apply(self, p: "Payment") -> None:
            p.status = "returned"
            p.returns += 1

    class Released(LifelineAggregate.Event):
        """A held payment goes again, into a new batch, to the corrected account."""

        payment_id: str
        case_id: str
        batch_id: str
        account_name: str
        number_sealed: str
        bank_account_ref: str
        released_at: str

        def apply(self, p: "Payment") -> None:
            p.status = "instructed"
            p.batch_id = self.batch_id
            p.account_name, p.number_sealed = self.account_name, self.number_sealed
            p.bank_account_ref = self.bank_account_ref

    class RecallRequested(LifelineAggregate.Event):
        """A death or termination reported after the payment was instructed, before it
        settled: the county asks the bank to recall it (reported in the reconciliation)."""

        payment_id: str
        case_id: str
        reason: str
        requested_at: str

        def apply(self, p: "Payment") -> None:
            p.recall_requested = True

    @classmethod
    def instruction(cls, *, entitlement_id: str, case_id: str, period: str, amount_fen: int,
                    fund_source: str, channel: str, account_name: str, number_sealed: str,
                    bank_account_ref: str, region_code: str, run_id: str, batch_id: str,
                    instructed_at: str, meta: dict[str, str], payment_id: str | None = None) -> dict[str, Any]:
        """The state of the event that creates a payment (`Instructed`), without building the
        event or the aggregate: a run saves thousands per transaction (`Bulk`), and nothing
        of the new aggregate is read back."""
        if not amount_fen or fen(amount_fen, "amount_fen") <= 0:
            raise ValueError("a payment pays a positive amount of fen")
        if not number_sealed:
            raise NothingToPay(f"{entitlement_id} has no account to pay into")
        return dict(
            payment_id=payment_id or payment_id_of(entitlement_id, period), entitlement_id=entitlement_id,
            case_id=case_id, period=period, amount_fen=amount_fen, fund_source=fund_source, channel=channel,
            account_name=account_name, number_sealed=number_sealed, bank_account_ref=bank_account_ref,
            region_code=region_code, run_id=run_id, batch_id=batch_id, instructed_at=instructed_at, meta=meta,
        )

    @classmethod
    def instructed(cls, ident: Any, state: dict[str, Any]) -> "Payment":
        """The aggregate of one instruction's state (`instruction`): for a payment saved with other
        aggregates by a consumed event (emergency relief paid from the reserve fund)."""
        return cls._create(cls.Instructed, id=ident, **state)

    def __init__(self, payment_id: str, entitlement_id: str, case_id: str, period: str, amount_fen: int,
                 fund_source: str, channel: str, account_name: str, number_sealed: str,
                 bank_account_ref: str, region_code: str, run_id: str, batch_id: str, **recorded: Any):
        self.payment_id = payment_id
        self.entitlement_id = entitlement_id
        self.case_id = case_id
        self.period = period
        self.amount_fen = amount_fen
        self.fund_source = fund_source
        self.channel = channel
        self.account_name = account_name
        self.number_sealed = number_sealed
        self.bank_account_ref = bank_account_ref
        self.region_code = region_code
        self.run_id = run_id
        self.batch_id = batch_id
        self.status = "instructed"
        self.returns = 0
        self.recall_requested = False
        self.settled_on: str | None = None  # the booking date of its (latest) settlement

    def settle(self, batch_id: str, amount_fen: int, booked_on: str, statement_id: str, by: Meta) -> bool:
        """The statement booked it. False when it was booked already (a statement twice)."""
        if self.status == "settled":
            return False
        if self.status != "instructed":
            raise PaymentConflict(f"{self.payment_id} is {self.status}: a booking of it is not taken as paid",
                                  "booked_after_return")
        if amount_fen != self.amount_fen:
            raise PaymentConflict(f"{self.payment_id}: booked {amount_fen} fen, instructed {self.amount_fen}",
                                  "amount_mismatch")
        self.trigger_event(self.Settled, payment_id=self.payment_id, case_id=self.case_id, batch_id=batch_id,
                           amount_fen=amount_fen, booked_on=booked_on, statement_id=statement_id,
                           meta=by.as_dict())
        return True

    def return_(self, batch_id: str, reason_code: str, reason: str, message_id: str, returned_at: str,
                by: Meta, after_booking: bool = False) -> bool:
        """The bank returned it: refused in a status report, or (`after_booking`) returned on a
        statement after it was booked. False for a status about an earlier batch of this payment
        (it has been released since), one already recorded (a status report twice), or a status
        report's refusal of a payment its statement booked already."""
        if self.status == "returned" or batch_id != self.batch_id:
            return False
        if self.status == "settled" and not after_booking:
            return False
        self.trigger_event(self.Returned, payment_id=self.payment_id, case_id=self.case_id, batch_id=batch_id,
                           amount_fen=self.amount_fen, reason_code=reason_code, reason=reason,
                           message_id=message_id, returned_at=returned_at, meta=by.as_dict())
        return True

    def release(self, batch_id: str, account: BankAccount, released_at: str, by: Meta) -> None:
        if self.status != "returned":
            raise PaymentConflict(f"{self.payment_id} is {self.status}: only a returned payment is released",
                                  "release_only_returned")
        if self.recall_requested:
            raise PaymentConflict(f"{self.payment_id} is to be recalled: it is not paid again", "recalled")
        self.trigger_event(self.Released, payment_id=self.payment_id, case_id=self.case_id, batch_id=batch_id,
                           account_name=account.account_name, number_sealed=account.number_sealed,
                           bank_account_ref=account.ref, released_at=released_at, meta=by.as_dict())

    def request_recall(self, reason: str, requested_at: str, by: Meta) -> bool:
        if self.recall_requested or self.status == "settled":
            return False  # a settled payment is recovered by the review, not recalled from the bank
        self.trigger_event(self.RecallRequested, payment_id=self.payment_id, case_id=self.case_id,
                           reason=reason, requested_at=requested_at, meta=by.as_dict())
        return True


class BankBatch(LifelineAggregate):
    """One pain.001 file for one channel: which payments it carries, and whether the bank took it."""

    id_kind = "bank-batch"

    class Assembled(LifelineAggregate.Created):
        batch_id: str  # also the file's MsgId
        run_id: str
        county_code: str
        period: str
        channel: str
        purpose: str  # monthly, one_off, release
        payment_ids: list[str]
        count: int
        total_fen: int
        requested_execution_date: str
        assembled_at: str

    class Submitted(LifelineAggregate.Event):
        """The bank received the file (its group status in the synchronous answer)."""

        batch_id: str
        run_id: str
        channel: str
        count: int
        total_fen: int
        file_name: str
        file_sha256: str
        group_status: str
        submitted_at: str

        def apply(self, b: "BankBatch") -> None:
            b.submitted = True

    @classmethod
    def assemble(cls, *, batch_id: str, run_id: str, county_code: str, period: str, channel: str,
                 purpose: str, payments: list[tuple[str, int]], requested_execution_date: str,
                 assembled_at: str, by: Meta) -> "BankBatch":
        if not payments:
            raise ValueError("a bank batch carries at least one payment")
        return cls._create(
            cls.Assembled, id=cls.create_id(batch_id), batch_id=batch_id, run_id=run_id, county_code=county_code,
            period=period, channel=channel, purpose=purpose, payment_ids=[p for p, _ in payments],
            count=len(payments), total_fen=sum(a for _, a in payments),
            requested_execution_date=requested_execution_date, assembled_at=assembled_at, meta=by.as_dict(),
        )

    def __init__(self, batch_id: str, run_id: str, county_code: str, period: str, channel: str, purpose: str,
                 payment_ids: list[str], count: int, total_fen: int, requested_execution_date: str,
                 assembled_at: str, **recorded: Any):
        self.assembled_at = assembled_at
        self.batch_id, self.run_id, self.county_code, self.period = batch_id, run_id, county_code, period
        self.channel, self.purpose, self.payment_ids = channel, purpose, payment_ids
        self.count, self.total_fen = count, total_fen
        self.requested_execution_date = requested_execution_date
        self.submitted = False

    def submit(self, file_name: str, file_sha256: str, group_status: str, submitted_at: str, by: Meta) -> bool:
        if self.submitted:
            return False
        self.trigger_event(self.Submitted, batch_id=self.batch_id, run_id=self.run_id, channel=self.channel,
                           count=self.count, total_fen=self.total_fen, file_name=file_name,
                           file_sha256=file_sha256, group_status=group_status, submitted_at=submitted_at,
                           meta=by.as_dict())
        return True


def run_id_of(county_code: str, period: str) -> str:
    """One run per county and period: PR-370502-202612."""
    return f"PR-{county_code}-{period.replace('-', '')}"


class PaymentRun(LifelineAggregate):
    """A county's monthly run: planned, checked against the budgets, instructed in batches,
    completed when every file is with its bank, reconciled against the statements."""

    id_kind = "payment-run"

    class Started(LifelineAggregate.Created):
        run_id: str
        county_code: str
        period: str
        started_by: str
        started_at: str

    class Planned(LifelineAggregate.Event):
        """What the run will pay, per fund source, against each fund source's budget."""

        run_id: str
        count: int
        total_fen: int
        by_fund_source: dict[str, dict[str, int]]
        budget_check: list[dict[str, Any]]
        skipped: list[dict[str, Any]]  # channels with payments but no county paying account
        arrears_since: str  # when the county's previous run was planned ("" : none)
        needs_approval: bool
        planned_at: str

        def apply(self, r: "PaymentRun") -> None:
            r.planned = {"count": self.count, "total_fen": self.total_fen,
                         "by_fund_source": self.by_fund_source, "budget_check": self.budget_check}
            # The moment of the plan, by the store's own clock (the injected clock may stand still
            # in tests): what was opened after it is not this run's.
            r.planned_ts = self.timestamp.isoformat()
            r.arrears_since = self.arrears_since
            r.status = "awaiting_approval" if self.needs_approval else "instructing"

    class Approved(LifelineAggregate.Event):
        run_id: str
        approved_by: str
        reason: str
        approved_at: str

        def apply(self, r: "PaymentRun") -> None:
            r.status = "instructing"
            r.approved_by = self.approved_by

    class BatchAdded(LifelineAggregate.Event):
        run_id: str
        batch_id: str
        channel: str
        count: int
        total_fen: int

        def apply(self, r: "PaymentRun") -> None:
            r.batches.append(self.batch_id)
            r.seq[self.channel] = r.seq.get(self.channel, 0) + 1
            r.count += self.count
            r.total_fen += self.total_fen

    class Instructed(LifelineAggregate.Event):
        """Every payment of the run is in a batch."""

        run_id: str
        count: int
        total_fen: int
        batches: int
        instructed_at: str

        def apply(self, r: "PaymentRun") -> None:
            r.status = "instructed"

    class Completed(LifelineAggregate.Event):
        """Every batch is with its bank."""

        run_id: str
        county_code: str
        period: str
        count: int
        total_fen: int
        by_channel: dict[str, dict[str, int]]
        by_fund_source: dict[str, dict[str, int]]
        batches: list[str]
        completed_at: str

        def apply(self, r: "PaymentRun") -> None:
            r.status = "completed"

    class Reconciled(LifelineAggregate.Event):
        run_id: str
        county_code: str
        period: str
        balanced: bool
        totals: dict[str, Any]
        by_channel: dict[str, dict[str, Any]]
        differences: list[dict[str, Any]]
        reconciled_at: str

        def apply(self, r: "PaymentRun") -> None:
            r.reconciled = self.balanced

    @classmethod
    def start(cls, county_code: str, period: str, started_at: str, by: Meta) -> "PaymentRun":
        checked_period(period)
        run_id = run_id_of(county_code, period)
        return cls._create(cls.Started, id=cls.create_id(run_id), run_id=run_id, county_code=county_code,
                           period=period, started_by=by.user_id, started_at=started_at, meta=by.as_dict())

    def __init__(self, run_id: str, county_code: str, period: str, started_by: str, **recorded: Any):
        self.run_id, self.county_code, self.period, self.started_by = run_id, county_code, period, started_by
        self.status = "started"
        self.planned: dict[str, Any] | None = None
        self.approved_by = ""
        self.batches: list[str] = []
        self.seq: dict[str, int] = {}
        self.count = 0  # instructed so far
        self.total_fen = 0
        self.reconciled = False
        self.planned_ts: str | None = None
        self.arrears_since = ""

    def plan(self, count: int, total_fen: int, by_fund_source: dict[str, dict[str, int]],
             budget_check: list[dict[str, Any]], skipped: list[dict[str, Any]], planned_at: str,
             by: Meta, arrears_since: str = "") -> None:
        if self.status != "started":
            raise PaymentConflict(f"{self.run_id} is {self.status}: it was planned already", "planned_once")
        needs = any(line["exceeds"] for line in budget_check)
        self.trigger_event(self.Planned, run_id=self.run_id, count=count, total_fen=total_fen,
                           by_fund_source=by_fund_source, budget_check=budget_check, skipped=skipped,
                           arrears_since=arrears_since, needs_approval=needs,
                           planned_at=planned_at, meta=by.as_dict())

    def approve(self, approved_at: str, reason: str, by: Meta) -> None:
        if self.status != "awaiting_approval":
            raise PaymentConflict(f"{self.run_id} is {self.status}: there is nothing to approve",
                                  "approval_not_needed")
        if by.user_id == self.started_by:
            raise PaymentConflict("the officer who started the run cannot approve it (four eyes)", "four_eyes")
        self.trigger_event(self.Approved, run_id=self.run_id, approved_by=by.user_id, reason=reason,
                           approved_at=approved_at, meta=by.as_dict())

    def next_batch_id(self, channel: str) -> str:
        """B-370502-202612-ICBC-0001: the run, the channel and the batch's number in it."""
        return f"B-{self.run_id[3:]}-{channel}-{self.seq.get(channel, 0) + 1:04d}"

    def add_batch(self, batch: BankBatch, by: Meta) -> None:
        if self.status != "instructing":
            raise PaymentConflict(f"{self.run_id} is {self.status}: no batch is added", "not_instructing")
        self.trigger_event(self.BatchAdded, run_id=self.run_id, batch_id=batch.batch_id, channel=batch.channel,
                           count=batch.count, total_fen=batch.total_fen, meta=by.as_dict())

    def finish_instructing(self, instructed_at: str, by: Meta) -> None:
        if self.status == "instructing":
            self.trigger_event(self.Instructed, run_id=self.run_id, count=self.count, total_fen=self.total_fen,
                               batches=len(self.batches), instructed_at=instructed_at, meta=by.as_dict())

    def complete(self, by_channel: dict[str, dict[str, int]], by_fund_source: dict[str, dict[str, int]],
                 completed_at: str, by: Meta) -> None:
        if self.status == "instructed":
            self.trigger_event(self.Completed, run_id=self.run_id, county_code=self.county_code,
                               period=self.period, count=self.count, total_fen=self.total_fen,
                               by_channel=by_channel,
                               by_fund_source=by_fund_source, batches=list(self.batches),
                               completed_at=completed_at, meta=by.as_dict())

    def reconcile(self, report: dict[str, Any], reconciled_at: str, by: Meta) -> None:
        self.trigger_event(self.Reconciled, run_id=self.run_id, county_code=self.county_code, period=self.period,
                           balanced=report["balanced"], totals=report["totals"], by_channel=report["by_channel"],
                           differences=report["differences"], reconciled_at=reconciled_at, meta=by.as_dict())


class Budget(LifelineAggregate):
    """A county's budget for one period and fund source (the latest amount set counts)."""

    id_kind = "budget"

    class Set(LifelineAggregate.Event):
        county_code: str
        period: str
        fund_source: str
        amount_fen: int
        set_at: str

        def apply(self, b: "Budget") -> None:
            b.amount_fen = self.amount_fen

    class Opened(LifelineAggregate.Created):
        county_code: str
        period: str
        fund_source: str
        amount_fen: int
        set_at: str

    @classmethod
    def open(cls, county_code: str, period: str, fund_source: str, amount_fen: int, set_at: str,
             by: Meta) -> "Budget":
        checked_period(period)
        fen(amount_fen, "amount_fen")
        return cls._create(cls.Opened, id=cls.create_id(county_code, period, fund_source), county_code=county_code,
                           period=period, fund_source=fund_source, amount_fen=amount_fen, set_at=set_at,
                           meta=by.as_dict())

    def __init__(self, county_code: str, period: str, fund_source: str, amount_fen: int, **recorded: Any):
        self.county_code, self.period, self.fund_source, self.amount_fen = county_code, period, fund_source, amount_fen

    def set(self, amount_fen: int, set_at: str, by: Meta) -> None:
        self.trigger_event(self.Set, county_code=self.county_code, period=self.period, fund_source=self.fund_source,
                           amount_fen=fen(amount_fen, "amount_fen"), set_at=set_at, meta=by.as_dict())


class ReserveFund(LifelineAggregate):
    """A township's reserve fund (备用金) for emergency relief paid at once. Its balance never
    goes below zero: every advance checks it, and the store's version check makes two
    concurrent advances on two replicas serialise (one retries on the new balance)."""

    id_kind = "reserve-fund"

    class Opened(LifelineAggregate.Created):
        township_code: str

    class Replenished(LifelineAggregate.Event):
        township_code: str
        amount_fen: int
        balance_fen: int
        reference: str
        replenished_at: str

        def apply(self, f: "ReserveFund") -> None:
            f.balance_fen = self.balance_fen
            f.references.add(self.reference)

    class Advanced(LifelineAggregate.Event):
        township_code: str
        amount_fen: int
        balance_fen: int
        payment_id: str
        case_id: str
        advanced_at: str

        def apply(self, f: "ReserveFund") -> None:
            f.balance_fen = self.balance_fen
            f.references.add(self.payment_id)

    @classmethod
    def open(cls, township_code: str, by: Meta) -> "ReserveFund":
        return cls._create(cls.Opened, id=cls.create_id(township_code), township_code=township_code,
                           meta=by.as_dict())

    def __init__(self, township_code: str, **recorded: Any):
        self.township_code = township_code
        self.balance_fen = 0
        self.references: set[str] = set()

    def replenish(self, amount_fen: int, reference: str, replenished_at: str, by: Meta) -> bool:
        if fen(amount_fen, "amount_fen") <= 0:
            raise ValueError("amount_fen: a replenishment adds a positive amount")
        if reference in self.references:
            return False
        self.trigger_event(self.Replenished, township_code=self.township_code, amount_fen=amount_fen,
                           balance_fen=self.balance_fen + amount_fen, reference=reference,
                           replenished_at=replenished_at, meta=by.as_dict())
        return True

    def advance(self, amount_fen: int, payment_id: str, case_id: str, advanced_at: str, by: Meta) -> bool:
        if payment_id in self.references:
            return False
        if fen(amount_fen, "amount_fen") <= 0:
            raise ValueError("amount_fen: an advance pays a positive amount")
        if amount_fen > self.balance_fen:
            raise PaymentConflict(
                f"the reserve fund of {self.township_code} holds {self.balance_fen} fen; {amount_fen} were asked",
                "reserve_fund_balance")
        self.trigger_event(self.Advanced, township_code=self.township_code, amount_fen=amount_fen,
                           balance_fen=self.balance_fen - amount_fen, payment_id=payment_id, case_id=case_id,
                           advanced_at=advanced_at, meta=by.as_dict())
        return True


# --- emergency relief granted by intake, and recoveries (追回) ---------------------------------
# Why a grant paid from the reserve fund waits (the read model shows it under its fund).
HOLD_PROBLEMS = ("reserve_fund_balance", "no_paying_account", "no_account")
RECOVERY_GROUNDS = ("fraud", "emergency_post_approval_refused")


def grant_payment_id(grant_id: str, period: str) -> str:
    """The payment of a grant: grant × the period it was granted in, like an entitlement's (the
    store refuses a second); a grant id too long for an EndToEndId (35) is shortened by its hash."""
    payment_id = payment_id_of(grant_id, period)
    if len(payment_id) <= 35:
        return payment_id
    return payment_id_of("ER-" + hashlib.sha256(grant_id.encode()).hexdigest()[:20].upper(), period)


def recovery_id_of(cause: str) -> str:
    """One recovery per cause (a grant id or a benefit id): RC-ER-…, RC-B-…."""
    rid = f"RC-{cause}"
    return rid if len(rid) <= 64 else "RC-" + hashlib.sha256(cause.encode()).hexdigest()[:32].upper()


def overpaid(payments: list[dict[str, Any]], since: date) -> list[dict[str, Any]]:
    """What a fraud that began on `since` makes to recover, to the fen (docs/RULES.md §8).

    `payments`: the case's payments, each {payment_id, period, amount_fen, kind (monthly |
    one_off), status, settled_on}. In scope: those settled (a returned one came back; one
    still with the bank is recalled instead), a monthly one for a period from the one the
    fraud began in, a one-off one (relief, a reserve-fund advance) booked on or after `since`.
    Answers [{payment_id, period, amount_fen}] by period and id."""
    first = period_of(since)
    out = []
    for p in payments:
        if p["status"] != "settled":
            continue
        if p["kind"] == "monthly":
            if p["period"] < first:
                continue
        elif not p["settled_on"] or date.fromisoformat(p["settled_on"]) < since:
            continue
        out.append({"payment_id": p["payment_id"], "period": p["period"], "amount_fen": int(p["amount_fen"])})
    return sorted(out, key=lambda p: (p["period"], p["payment_id"]))


class ReliefGrant(LifelineAggregate):
    """Emergency relief intake granted (EmergencyReliefGranted, 先行救助): paid at once from the
    township's reserve fund, or held while the fund holds less (paid when it is replenished).
    Its post-approval (后置审批) refused: cancelled while still held, recovered once paid.
    Its id comes from the grant id: however often the grant is delivered, one is recorded."""

    id_kind = "relief-grant"

    class Recorded(LifelineAggregate.Created):
        grant_id: str
        case_id: str
        region_code: str
        township_code: str
        amount_fen: int
        reason: str
        approval_level: str
        granted_by: str
        bank_account: BankAccount | None  # sealed: only the bank file unseals it
        bank_account_ref: str
        period: str  # the month it was granted in: its payment's period
        post_approval_due_date: str
        granted_at: str
        recorded_at: str

    class Held(LifelineAggregate.Event):
        """Not paid yet: `problem` says why (the fund holds less, no paying account, no account)."""

        grant_id: str
        case_id: str
        township_code: str
        amount_fen: int
        problem: str
        detail: str
        held_at: str

        def apply(self, g: "ReliefGrant") -> None:
            g.status, g.problem = "held", self.problem

    class Paid(LifelineAggregate.Event):
        """Advanced from the reserve fund and instructed in a bank batch of its own."""

        grant_id: str
        case_id: str
        township_code: str
        amount_fen: int
        payment_id: str
        batch_id: str
        paid_at: str

        def apply(self, g: "ReliefGrant") -> None:
            g.status, g.problem = "paid", ""
            g.payment_id, g.batch_id = self.payment_id, self.batch_id

    class PostApprovalDecided(LifelineAggregate.Event):
        grant_id: str
        case_id: str
        decision: str  # approved | refused
        reason: str
        decided_by: str
        decided_at: str

        def apply(self, g: "ReliefGrant") -> None:
            g.post_approval = self.decision

    class Cancelled(LifelineAggregate.Event):
        """Refused at post-approval while still held: never paid, the fund keeps its balance."""

        grant_id: str
        case_id: str
        township_code: str
        amount_fen: int
        reason: str
        cancelled_at: str

        def apply(self, g: "ReliefGrant") -> None:
            g.status, g.problem = "cancelled", ""

    @classmethod
    def record(cls, granted: dict[str, Any], bank_account: BankAccount | None, recorded_at: str,
               by: Meta) -> "ReliefGrant":
        if fen(granted["amount_fen"], "amount_fen") <= 0:
            raise ValueError("amount_fen: a grant pays a positive amount")
        # The month it was granted in, in Asia/Shanghai (the statutory calendar's).
        period = period_of(to_shanghai(datetime.fromisoformat(granted["granted_at"])).date())
        return cls._create(
            cls.Recorded, id=cls.create_id(granted["grant_id"]), grant_id=granted["grant_id"],
            case_id=granted["case_id"], region_code=granted["region_code"], township_code=granted["township_code"],
            amount_fen=granted["amount_fen"], reason=granted["reason"], approval_level=granted["approval_level"],
            granted_by=granted["granted_by"], bank_account=bank_account,
            bank_account_ref=bank_account.ref if bank_account else "", period=period,
            post_approval_due_date=granted["post_approval_due_date"], granted_at=granted["granted_at"],
            recorded_at=recorded_at, meta=by.as_dict())

    def __init__(self, grant_id: str, case_id: str, region_code: str, township_code: str, amount_fen: int,
                 bank_account: BankAccount | None, period: str, **recorded: Any):
        self.grant_id, self.case_id = grant_id, case_id
        self.region_code, self.township_code = region_code, township_code
        self.amount_fen = amount_fen
        self.bank_account = bank_account
        self.period = period
        self.status = "granted"  # then held, paid or cancelled
        self.problem = ""
        self.payment_id = ""
        self.batch_id = ""
        self.post_approval = ""  # approved | refused once decided

    @property
    def payment(self) -> str:
        """The id its payment has (or will have)."""
        return grant_payment_id(self.grant_id, self.period)

    @property
    def payable(self) -> bool:
        return self.status in ("granted", "held") and self.post_approval != "refused"

    def hold(self, problem: str, detail: str, held_at: str, by: Meta) -> bool:
        """False when it is held for that reason already (a worker tries again and again)."""
        if problem not in HOLD_PROBLEMS:
            raise ValueError(f"problem must be one of {', '.join(HOLD_PROBLEMS)}")
        if not self.payable or (self.status == "held" and self.problem == problem):
            return False
        self.trigger_event(self.Held, grant_id=self.grant_id, case_id=self.case_id,
                           township_code=self.township_code, amount_fen=self.amount_fen, problem=problem,
                           detail=detail, held_at=held_at, meta=by.as_dict())
        return True

    def pay(self, payment_id: str, batch_id: str, paid_at: str, by: Meta) -> None:
        if not self.payable:
            raise PaymentConflict(f"{self.grant_id} is {self.status}: it is not paid", "grant_not_payable")
        self.trigger_event(self.Paid, grant_id=self.grant_id, case_id=self.case_id,
                           township_code=self.township_code, amount_fen=self.amount_fen, payment_id=payment_id,
                           batch_id=batch_id, paid_at=paid_at, meta=by.as_dict())

    def decide_post_approval(self, decision: str, reason: str, decided_by: str, decided_at: str, by: Meta) -> bool:
        """The post-approval's outcome, once (False for a second one). Refused while held: the grant
        is cancelled with it."""
        if decision not in ("approved", "refused"):
            raise ValueError("decision must be approved or refused")
        if self.post_approval:
            return False
        self.trigger_event(self.PostApprovalDecided, grant_id=self.grant_id, case_id=self.case_id,
                           decision=decision, reason=reason, decided_by=decided_by, decided_at=decided_at,
                           meta=by.as_dict())
        if decision == "refused" and self.status in ("granted", "held"):
            self.trigger_event(self.Cancelled, grant_id=self.grant_id, case_id=self.case_id,
                               township_code=self.township_code, amount_fen=self.amount_fen,
                               reason=f"后置审批未通过：{reason}", cancelled_at=decided_at, meta=by.as_dict())
        return True


class Recovery(LifelineAggregate):
    """What a household must pay back (追回): the advance of an emergency grant whose
    post-approval was refused, or what was overpaid since a fraud began. One per cause (its
    id comes from it), opened once; repayments recorded against it, never below zero."""

    id_kind = "recovery"

    class Opened(LifelineAggregate.Created):
        recovery_id: str
        case_id: str
        region_code: str
        ground: str
        amount_fen: int
        payments: list[dict[str, Any]]  # [{payment_id, period, amount_fen}]
        since: str | None  # the date the fraud began (null for a refused grant)
        cause: str  # the grant id or the benefit id
        opened_at: str

    class Repaid(LifelineAggregate.Event):
        recovery_id: str
        case_id: str
        amount_fen: int
        balance_fen: int
        reference: str
        repaid_at: str

        def apply(self, r: "Recovery") -> None:
            r.balance_fen = self.balance_fen
            r.references.add(self.reference)

    @classmethod
    def open(cls, case_id: str, region_code: str, ground: str, payments: list[dict[str, Any]],
             since: str | None, cause: str, opened_at: str, by: Meta) -> "Recovery":
        if ground not in RECOVERY_GROUNDS:
            raise ValueError(f"ground must be one of {', '.join(RECOVERY_GROUNDS)}")
        recovery_id = recovery_id_of(cause)
        lines = [{"payment_id": p["payment_id"], "period": p["period"], "amount_fen": fen(p["amount_fen"], "payments[].amount_fen")}
                 for p in payments]
        return cls._create(cls.Opened, id=cls.create_id(recovery_id), recovery_id=recovery_id, case_id=case_id,
                           region_code=region_code, ground=ground, amount_fen=sum(p["amount_fen"] for p in lines),
                           payments=lines, since=since, cause=cause, opened_at=opened_at, meta=by.as_dict())

    def __init__(self, recovery_id: str, case_id: str, region_code: str, ground: str, amount_fen: int,
                 payments: list[dict[str, Any]], cause: str, **recorded: Any):
        self.recovery_id, self.case_id, self.region_code = recovery_id, case_id, region_code
        self.ground, self.amount_fen, self.cause = ground, amount_fen, cause
        self.payments = payments
        self.balance_fen = amount_fen
        self.references: set[str] = set()

    def repay(self, amount_fen: int, reference: str, repaid_at: str, by: Meta) -> bool:
        """An amount paid back; False when this reference was recorded already. Never more than
        what is still owed (409 `recovery_balance`)."""
        if fen(amount_fen, "amount_fen") <= 0:
            raise ValueError("amount_fen: a repayment is a positive amount")
        if reference in self.references:
            return False
        if amount_fen > self.balance_fen:
            raise PaymentConflict(f"{self.recovery_id} has {self.balance_fen} fen left to recover; "
                                  f"{amount_fen} were recorded", "recovery_balance")
        self.trigger_event(self.Repaid, recovery_id=self.recovery_id, case_id=self.case_id, amount_fen=amount_fen,
                           balance_fen=self.balance_fen - amount_fen, reference=reference, repaid_at=repaid_at,
                           meta=by.as_dict())
        return True


class BankMessage(LifelineAggregate):
    """A status report or statement a bank sent, once: received twice, it changes nothing the
    second time. What it said about transactions Lifeline does not know is kept here for an
    operator (`unmatched`), never dropped."""

    id_kind = "bank-message"

    class Received(LifelineAggregate.Created):
        channel: str
        kind: str  # pain.002 or camt.053
        message_id: str
        sha256: str
        entries: int
        applied: int
        unmatched: list[dict[str, Any]]
        received_at: str

    @classmethod
    def receive(cls, channel: str, kind: str, message_id: str, sha256: str, entries: int, applied: int,
                unmatched: list[dict[str, Any]], received_at: str, by: Meta) -> "BankMessage":
        return cls._create(cls.Received, id=cls.create_id(channel, kind, message_id), channel=channel, kind=kind,
                           message_id=message_id, sha256=sha256, entries=entries, applied=applied,
                           unmatched=unmatched, received_at=received_at, meta=by.as_dict())

    def __init__(self, channel: str, kind: str, message_id: str, sha256: str, unmatched: list[dict[str, Any]],
                 **recorded: Any):
        self.channel, self.kind, self.message_id, self.sha256 = channel, kind, message_id, sha256
        self.unmatched = unmatched


class Household(LifelineAggregate):
    """Whom a death report concerns: the household's people (keyed fingerprints of their ID
    numbers, never the numbers) and its entitlements. Filled from ApplicationSubmitted and
    BenefitApproved in whichever order they arrive (two topics)."""

    id_kind = "household"

    class Registered(LifelineAggregate.Created):
        case_id: str

    class MembersRecorded(LifelineAggregate.Event):
        case_id: str
        applicant: str
        members: list[str]
        # Where the household applied: what payment's audit timeline of the case is scoped by
        # (lifeline/audit/routes.py). Empty in events recorded before it was kept.
        region_code: str = ""

        def apply(self, h: "Household") -> None:
            h.applicant, h.members = self.applicant, list(self.members)

    class EntitlementLinked(LifelineAggregate.Event):
        case_id: str
        entitlement_id: str

        def apply(self, h: "Household") -> None:
            h.entitlements.append(self.entitlement_id)

    class GrantLinked(LifelineAggregate.Event):
        """Emergency relief granted to the household (paid from a reserve fund, no entitlement)."""

        case_id: str
        grant_id: str

        def apply(self, h: "Household") -> None:
            h.grants.append(self.grant_id)

    class RecoveryLinked(LifelineAggregate.Event):
        """A recovery opened on the household's payments (a payment is recovered once)."""

        case_id: str
        recovery_id: str
        payment_ids: list[str]

        def apply(self, h: "Household") -> None:
            h.recoveries.append(self.recovery_id)
            h.recovered.update(self.payment_ids)

    @classmethod
    def register(cls, case_id: str, by: Meta) -> "Household":
        return cls._create(cls.Registered, id=cls.create_id(case_id), case_id=case_id, meta=by.as_dict())

    def __init__(self, case_id: str, **recorded: Any):
        self.case_id = case_id
        self.applicant = ""
        self.members: list[str] = []
        self.entitlements: list[str] = []
        self.grants: list[str] = []
        self.recoveries: list[str] = []
        self.recovered: set[str] = set()  # payment ids some recovery of the household claims

    def record_members(self, applicant: str, members: list[str], by: Meta, region_code: str = "") -> bool:
        if self.applicant:
            return False
        self.trigger_event(self.MembersRecorded, case_id=self.case_id, applicant=applicant, members=members,
                           region_code=region_code, meta=by.as_dict())
        return True

    def link(self, entitlement_id: str, by: Meta) -> bool:
        if entitlement_id in self.entitlements:
            return False
        self.trigger_event(self.EntitlementLinked, case_id=self.case_id, entitlement_id=entitlement_id,
                           meta=by.as_dict())
        return True

    def link_grant(self, grant_id: str, by: Meta) -> bool:
        if grant_id in self.grants:
            return False
        self.trigger_event(self.GrantLinked, case_id=self.case_id, grant_id=grant_id, meta=by.as_dict())
        return True

    def link_recovery(self, recovery_id: str, payment_ids: list[str], by: Meta) -> bool:
        if recovery_id in self.recoveries:
            return False
        self.trigger_event(self.RecoveryLinked, case_id=self.case_id, recovery_id=recovery_id,
                           payment_ids=list(payment_ids), meta=by.as_dict())
        return True

    def stops_on_death_of(self, person: str) -> bool:
        """The applicant (the account holder) or the household's only member."""
        return person == self.applicant or self.members == [person]


# Events stored before `Person` moved to lifeline/domain/people.py name it
# services.payment.domain:Person.*: they resolve through this name.
Person = people.Person
