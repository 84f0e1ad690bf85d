"""Payment use cases: entitlements that follow the benefit, runs, budgets, what comes back
from the banks, the township reserve fund. The run itself is `runs.RunEngine`."""

from __future__ import annotations

import hashlib
import logging
from datetime import date
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.domain.people import fingerprint
from lifeline.domain.aggregate import Meta, new_id
from lifeline.domain.clock import Clock
from lifeline.domain.values import BankAccount, Benefit
from lifeline.iso20022.camt053 import parse_camt053
from lifeline.iso20022.pain002 import REASONS, TransactionStatus, parse_pain002
from lifeline.ops.faults import maybe_crash
from lifeline.rules.periods import add_periods, next_period, period_of
from lifeline.rules.vocabulary import MONTHLY_FUND_SOURCES
from lifeline.stores.application import ServiceApplication
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideTx
from services.payment.channels import BankChannelsError, ChannelBook, shipped_channel_book
from services.payment.consumers import HANDLERS
from services.payment.domain import (
    BankBatch, BankMessage, Budget, Entitlement, Household, Payment, PaymentConflict, PaymentRun, Person,
    Recovery, ReliefGrant, ReserveFund, overpaid, payment_fund_source, payment_id_of, recovery_id_of, run_id_of,
    status_of,
)
from services.payment.outbound import OUTBOUND
from services.payment.providers import project_provider_payment
from services.payment.runs import payable_kind, single_payment


log = logging.getLogger(__name__)

# Attempts at a command that lost a race with another replica (IntegrityError) before 409.
CONFLICT_ATTEMPTS = 5
# How many months past the current one a change looks for instructed payments to recall.
RECALL_HORIZON_MONTHS = 12


class EntitlementNotFound(LookupError):
    pass


class RunNotFound(LookupError):
    pass


class BatchNotFound(LookupError):
    pass


class PaymentNotFound(LookupError):
    pass


class UnknownChannel(LookupError):
    pass


class GrantNotFound(LookupError):
    pass


class RecoveryNotFound(LookupError):
    pass


# The changes verification publishes after approval, by event name.
BENEFIT_CHANGES = {"BenefitAdjusted": "adjust", "BenefitSuspended": "suspend", "BenefitResumed": "resume",
                   "BenefitTerminated": "terminate"}


def entitlement_id_of(benefit_id: str) -> str:
    """One entitlement per benefit: its id is derived from the benefit id."""
    return "E-" + benefit_id.split("-", 1)[-1]


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

    def _now(self) -> str:
        return self.clock.now().isoformat()

    # --- entitlements -------------------------------------------------------------------
    def get_entitlement(self, entitlement_id: str) -> Entitlement:
        return self.load(Entitlement.create_id(entitlement_id), EntitlementNotFound(entitlement_id))

    def record_benefit(self, approved: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """BenefitApproved → one entitlement (monthly, one-off payable, or recognition)."""
        benefit = Benefit.from_wire(approved)
        account = approved["bank_account"]
        entitlement = Entitlement.from_benefit(
            approved["case_id"], benefit, BankAccount(**account) if account else None,
            approved["bank_account_ref"], approved["household"]["region_code"], self._now(), meta,
        )
        if self.exists(entitlement.id):
            return  # one benefit, one entitlement, however often the approval comes
        pe.collect_events(entitlement, self.link_entitlement(approved["case_id"], entitlement.entitlement_id, meta))

    def correct_account(self, entitlement_id: str, account: dict[str, str], reason: str, meta: Meta) -> Entitlement:
        """A caseworker corrects where the household is paid; the number is sealed at once. A
        payment held after a return goes again, to this account, with the channel's next batch."""
        entitlement = self.get_entitlement(entitlement_id)
        entitlement.correct_account(self._seal(account), reason, self._now(), meta)
        self.save(entitlement)
        return entitlement

    def _seal(self, account: dict[str, str]) -> BankAccount:
        """A household's account as given (channel, number, name), its number sealed at once."""
        if self.sealer is None:
            raise RuntimeError("payment was built without a sealer: it cannot take an account number")
        return self.sealer.account(account["channel"], account["account_number"], account["account_name"])

    def change_benefit(self, name: str, data: dict[str, Any], source: str, meta: Meta, pe: ProcessingEvent) -> None:
        """BenefitAdjusted / Suspended / Resumed / Terminated → the entitlement pays accordingly
        from `from_period`; a payment already instructed for a period it stops is recalled."""
        try:
            entitlement = self.get_entitlement(entitlement_id_of(data["benefit_id"]))
        except EntitlementNotFound:
            return  # an approval this service never saw paid nothing; nothing to change
        change = BENEFIT_CHANGES[name]
        amount = data.get("monthly_amount_fen") if change == "adjust" else None
        if entitlement.change(change, data["from_period"], data["reason"], source, self._now(), meta,
                              monthly_amount_fen=amount):
            pe.collect_events(entitlement, *self._recalls(entitlement, data["from_period"], data["reason"], meta))

    def _household(self, case_id: str, meta: Meta) -> Household:
        return self.load_or_create(Household.create_id(case_id), lambda: Household.register(case_id, meta))

    def record_household(self, submitted: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """ApplicationSubmitted → whom a death report may concern (fingerprints, not numbers)."""
        case_id = submitted["case_id"]
        members = [self._fingerprint(m["id_number"]) for m in submitted["members"] if m.get("co_resident", True)]
        household = self._household(case_id, meta)
        if not household.record_members(self._fingerprint(submitted["members"][0]["id_number"]), members, meta,
                                        region_code=submitted.get("region_code", "")):
            return
        people = []
        for person in members:
            found = self.load_or_create(Person.create_id(person), lambda: Person.register(person, meta))
            found.link(case_id, meta)
            people.append(found)
        pe.collect_events(household, *people)

    def link_entitlement(self, case_id: str, entitlement_id: str, meta: Meta) -> Household | None:
        household = self._household(case_id, meta)
        return household if household.link(entitlement_id, meta) else None

    def record_death(self, data: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """DeathReported → the household's entitlements stop from the month after the death
        when the deceased was the applicant (the account holder) or the household's only
        member; a payment instructed for a stopped period and not yet settled is recalled.
        Another member's death changes the amount: that is the review's (verification's) call."""
        person = self._fingerprint(data["id_number"])
        ident = Person.create_id(person)
        if not self.exists(ident):
            return  # nobody Lifeline pays
        from_period = next_period(period_of(date.fromisoformat(data["date_of_death"])))
        reason = f"死亡（{data['department']} 记录 {data['record_id']}，{data['date_of_death']}）"
        for case_id in self.repository.get(ident).cases:
            household = self.repository.get(Household.create_id(case_id))
            if not household.stops_on_death_of(person):
                continue
            for entitlement_id in household.entitlements:
                entitlement = self.get_entitlement(entitlement_id)
                if entitlement.change("terminate", from_period, reason, f"death:{data['record_id']}", self._now(),
                                      meta, ground="death"):
                    pe.collect_events(entitlement, *self._recalls(entitlement, from_period, reason, meta))

    def _recalls(self, entitlement: Entitlement, from_period: str, reason: str, meta: Meta) -> list[Payment]:
        """Payments instructed for a period the entitlement no longer pays, and not settled:
        recalled. (An adjusted amount is the review's to settle: the payment stands.)"""
        out = []
        p = max(from_period, entitlement.first_period)
        # Runs may be started ahead: look as far as a year past this month.
        last = add_periods(period_of(self.clock.now().date()), RECALL_HORIZON_MONTHS)
        while p <= last:
            ident = Payment.create_id(payment_id_of(entitlement.entitlement_id, p))
            if entitlement.amount_for(p) == 0 and self.exists(ident):
                payment = self.repository.get(ident)
                if payment.request_recall(reason, self._now(), meta):
                    out.append(payment)
            p = next_period(p)
        return out

    def _fingerprint(self, id_number: str) -> str:
        # Keyed, so the read model cannot be searched for a number without the deployment's secret.
        return fingerprint(self.sealer.secret if self.sealer is not None else "", id_number)

    # --- runs and budgets -----------------------------------------------------------------
    def get_run(self, run_id: str) -> PaymentRun:
        return self.load(PaymentRun.create_id(run_id), RunNotFound(run_id))

    def start_run(self, county_code: str, period: str, meta: Meta) -> tuple[PaymentRun, bool]:
        """The county's run for the period: started now (True) or the one that exists (False)."""
        run = PaymentRun.start(county_code, period, self._now(), meta)
        try:
            self.save(run)
        except IntegrityError:
            return self.get_run(run_id_of(county_code, period)), False
        return run, True

    def approve_run(self, run_id: str, reason: str, meta: Meta) -> PaymentRun:
        run = self.get_run(run_id)
        run.approve(self._now(), reason, meta)
        self.save(run)
        return run

    def set_budget(self, county_code: str, period: str, fund_source: str, amount_fen: int, meta: Meta) -> Budget:
        ident = Budget.create_id(county_code, period, fund_source)
        if self.exists(ident):
            budget = self.repository.get(ident)
            budget.set(amount_fen, self._now(), meta)
        else:
            budget = Budget.open(county_code, period, fund_source, amount_fen, self._now(), meta)
        self.save(budget)
        return budget

    def get_batch(self, batch_id: str) -> BankBatch:
        return self.load(BankBatch.create_id(batch_id), BatchNotFound(batch_id))

    def get_payment(self, payment_id: str) -> Payment:
        return self.load(Payment.create_id(payment_id), PaymentNotFound(payment_id))

    # --- back from the bank ---------------------------------------------------------------
    def receive_status_report(self, channel_id: str, xml: bytes, meta: Meta) -> dict[str, Any]:
        """A pain.002: rejected transactions are returned and held. Received twice, it changes
        nothing the second time; what it says of unknown transactions is kept for an operator."""
        self._channel(channel_id)
        report = parse_pain002(xml)
        if self.exists(BankMessage.create_id(channel_id, "pain.002", report.msg_id)):
            return {"message_id": report.msg_id, "duplicate": True, "group_status": report.group_status}
        statuses = list(report.transactions)
        if report.group_status == "RJCT" and not statuses:
            # The whole file refused: every payment of the batch comes back.
            try:
                batch = self.get_batch(report.original_msg_id)
            except BatchNotFound:
                batch = None
            statuses = [TransactionStatus(pid, "RJCT", report.group_reason_code or "NARR")
                        for pid in (batch.payment_ids if batch else [])]
        known = self._known([s.end_to_end_id for s in statuses])
        changed: dict[str, Payment] = {}
        unmatched = []
        for s in statuses:
            if s.end_to_end_id not in known:
                unmatched.append({"end_to_end_id": s.end_to_end_id, "status": s.status,
                                  "reason_code": s.reason_code, "problem": "unknown_transaction"})
                continue
            if s.status != "RJCT":
                continue  # accepted for execution: settled when the statement books it
            payment = changed.get(s.end_to_end_id) or self.get_payment(s.end_to_end_id)
            code = s.reason_code or "NARR"
            if payment.return_(report.original_msg_id, code, REASONS.get(code, code), report.msg_id, self._now(), meta):
                changed[s.end_to_end_id] = payment
        message = BankMessage.receive(channel_id, "pain.002", report.msg_id, hashlib.sha256(xml).hexdigest(),
                                      len(statuses), len(changed), unmatched, self._now(), meta)
        return {**self._save_message(message, changed, report.msg_id), "group_status": report.group_status}

    def receive_statement(self, channel_id: str, xml: bytes, meta: Meta) -> dict[str, Any]:
        """A camt.053: booked debits settle their payments; returned entries return them."""
        self._channel(channel_id)
        statement = parse_camt053(xml)
        if self.exists(BankMessage.create_id(channel_id, "camt.053", statement.msg_id)):
            return {"message_id": statement.msg_id, "duplicate": True}
        entries = list(statement.entries)
        known = self._known([e.end_to_end_id for e in entries if e.end_to_end_id])
        changed: dict[str, Payment] = {}
        unmatched = []
        for e in entries:
            line = {"end_to_end_id": e.end_to_end_id, "amount_fen": e.amount_fen, "credit_debit": e.credit_debit,
                    "entry_ref": e.entry_ref}
            if e.status != "BOOK":
                continue
            if not e.end_to_end_id or e.end_to_end_id not in known:
                unmatched.append({**line, "problem": "unknown_transaction"})
                continue
            payment = changed.get(e.end_to_end_id) or self.get_payment(e.end_to_end_id)
            booked_on = (e.booking_date or self.clock.now().date()).isoformat()
            if e.return_reason:
                done = payment.return_(payment.batch_id, e.return_reason, REASONS.get(e.return_reason, e.return_reason),
                                       statement.msg_id, self._now(), meta, after_booking=True)
            elif e.credit_debit != "DBIT":
                unmatched.append({**line, "problem": "credit_without_return_reason"})
                continue
            else:
                try:
                    done = payment.settle(payment.batch_id, e.amount_fen, booked_on, statement.statement_id, meta)
                except PaymentConflict as exc:
                    unmatched.append({**line, "problem": exc.rule, "detail": str(exc)})
                    continue
            if done:
                changed[e.end_to_end_id] = payment
        message = BankMessage.receive(channel_id, "camt.053", statement.msg_id, hashlib.sha256(xml).hexdigest(),
                                      len(entries), len(changed), unmatched, self._now(), meta)
        maybe_crash("payment_statement_before_save", "camt.053")  # the fault tests' kill -9 mid-statement
        return self._save_message(message, changed, statement.msg_id)

    def _save_message(self, message: BankMessage, changed: dict[str, Payment], message_id: str) -> dict[str, Any]:
        try:
            self.save_unit([message, *changed.values()])
        except IntegrityError:
            # The same message, delivered twice at once, was saved by the other delivery.
            if self.exists(message.id):
                return {"message_id": message_id, "duplicate": True}
            raise
        return {"message_id": message_id, "duplicate": False, "applied": len(changed),
                "unmatched": message.unmatched}

    def _known(self, payment_ids: list[str]) -> set[str]:
        by_ident = {Payment.create_id(p): p for p in payment_ids}
        return {by_ident[i] for i in self.existing(list(by_ident))}

    def _channel(self, channel_id: str) -> None:
        if channel_id not in self.channels:
            raise UnknownChannel(channel_id)

    # --- the township reserve fund ----------------------------------------------------------
    def reserve_fund(self, township_code: str, meta: Meta) -> ReserveFund:
        return self.load_or_create(ReserveFund.create_id(township_code), lambda: ReserveFund.open(township_code, meta))

    def replenish(self, township_code: str, amount_fen: int, reference: str, meta: Meta) -> ReserveFund:
        for attempt in range(CONFLICT_ATTEMPTS):
            fund = self.reserve_fund(township_code, meta)
            fund.replenish(amount_fen, reference, self._now(), meta)
            try:
                self.save(fund)
                return fund
            except IntegrityError:
                continue  # an advance or replenishment on another replica came first
        raise PaymentConflict(f"the reserve fund of {township_code} is busy; retry", "reserve_fund_busy")

    def advance_relief(self, township_code: str, case_id: str, amount_fen: int, account: dict[str, str],
                       meta: Meta) -> dict[str, Any]:
        """Emergency relief (急难型临时救助) paid at once from the township's reserve fund: the
        advance and the payment (a bank batch of its own) in one transaction. Two advances at
        once on two replicas: one is saved, the other reads the new balance and tries again,
        so the balance never goes below zero."""
        sealed = self._seal(account)
        channel = self.channels.channel(sealed.channel)
        self.channels.paying_account(sealed.channel, township_code)  # NoPayingAccount: nothing to pay from
        for attempt in range(CONFLICT_ATTEMPTS):
            now = self.clock.now()
            fund = self.reserve_fund(township_code, meta)
            if not self.exists(fund.id):
                raise PaymentConflict(f"the reserve fund of {township_code} holds nothing yet", "reserve_fund_balance")
            batch, bulk = single_payment(
                "EM", f"EM-{township_code}", channel, now, meta, entitlement_id=new_id("EM"), case_id=case_id,
                period=now.strftime("%Y-%m"), amount_fen=amount_fen, fund_source="township_reserve_fund",
                account_name=sealed.account_name, number_sealed=sealed.number_sealed, bank_account_ref=sealed.ref,
                region_code=township_code)
            payment_id = batch.payment_ids[0]
            fund.advance(amount_fen, payment_id, case_id, now.isoformat(), meta)
            try:
                self.save_unit([fund, batch], bulk)
            except IntegrityError:
                continue  # the other replica's advance came first: read the balance again
            return {"payment_id": payment_id, "batch_id": batch.batch_id, "case_id": case_id, "amount_fen": amount_fen,
                    "township_code": township_code, "balance_fen": fund.balance_fen,
                    "bank_account_ref": sealed.ref}
        raise PaymentConflict(f"the reserve fund of {township_code} is busy; retry", "reserve_fund_busy")

    # --- emergency relief granted by intake ---------------------------------------------------
    def get_grant(self, grant_id: str) -> ReliefGrant:
        return self.load(ReliefGrant.create_id(grant_id), GrantNotFound(grant_id))

    def record_grant(self, granted: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """EmergencyReliefGranted → advanced from the township's reserve fund and instructed at
        once in a one-payment bank batch, in the transaction that records the grant; held (shown
        under its fund) while the fund holds less, and paid by the worker once it is replenished.
        Once per grant id, however often the event is delivered or republished."""
        if self.exists(ReliefGrant.create_id(granted["grant_id"])):
            return
        account = granted.get("bank_account")
        grant = ReliefGrant.record(granted, BankAccount(**account) if account else None, self._now(), meta)
        household = self._household(grant.case_id, meta)
        household.link_grant(grant.grant_id, meta)
        paid = self._pay_grant(grant, meta)
        pe.collect_events(grant, household, *paid)

    def _pay_grant(self, grant: ReliefGrant, meta: Meta) -> list[Any]:
        """The grant paid now: [fund, batch, payment] to save with it; [] when it is held (the
        grant records why, once)."""
        now = self.clock.now()
        account = grant.bank_account
        if account is None:
            grant.hold("no_account", "the grant names no account to pay into", now.isoformat(), meta)
            return []
        try:
            channel = self.channels.channel(account.channel)
            self.channels.paying_account(account.channel, grant.township_code)
        except BankChannelsError as exc:
            grant.hold("no_paying_account", str(exc), now.isoformat(), meta)
            return []
        fund = self.reserve_fund(grant.township_code, meta)
        if fund.balance_fen < grant.amount_fen:
            grant.hold("reserve_fund_balance", f"the reserve fund of {grant.township_code} holds "
                       f"{fund.balance_fen} fen; {grant.amount_fen} were granted", now.isoformat(), meta)
            return []
        batch, bulk = single_payment(
            "ER", f"ER-{grant.township_code}", channel, now, meta, payment_id=grant.payment,
            entitlement_id=grant.grant_id, case_id=grant.case_id, period=grant.period, amount_fen=grant.amount_fen,
            fund_source="township_reserve_fund", account_name=account.account_name,
            number_sealed=account.number_sealed, bank_account_ref=account.ref, region_code=grant.region_code)
        payment = Payment.instructed(*bulk.items[0])
        fund.advance(grant.amount_fen, payment.payment_id, grant.case_id, now.isoformat(), meta)
        grant.pay(payment.payment_id, batch.batch_id, now.isoformat(), meta)
        return [fund, batch, payment]

    def pay_held_grant(self, grant_id: str, meta: Meta) -> tuple[BankBatch, Payment] | None:
        """A held grant paid if its fund holds it now: (batch, payment), or None (still held, paid
        or cancelled meanwhile). Two replicas at once: one saves, the other reads again."""
        for attempt in range(CONFLICT_ATTEMPTS):
            grant = self.get_grant(grant_id)
            if not grant.payable:
                return None
            paid = self._pay_grant(grant, meta)
            if not paid and not grant.pending_events:
                return None
            try:
                self.save_unit([grant, *paid])
            except IntegrityError:
                continue  # the fund moved (an advance, a replenishment) or another replica paid it
            return (paid[1], paid[2]) if paid else None
        return None

    def decide_grant(self, decided: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """EmergencyReliefPostApprovalDecided → recorded on the grant; refused, a held grant is
        cancelled (nothing to recover, the fund keeps its balance) and a paid one is recovered
        (RecoveryOpened, ground emergency_post_approval_refused), unless the bank returned it."""
        try:
            grant = self.get_grant(decided["grant_id"])
        except GrantNotFound:
            # Intake publishes the grant before its post-approval, on the same partition (keyed by
            # the case): a decision on a grant never seen is logged and left.
            log.warning("payment: post-approval of %s, a grant payment never saw", decided["grant_id"])
            return
        if not grant.decide_post_approval(decided["decision"], decided["reason"], decided["decided_by"],
                                          decided["decided_at"], meta):
            return
        out: list[Any] = [grant]
        if decided["decision"] == "refused" and grant.status == "paid":
            payment = self.get_payment(grant.payment_id)
            if payment.status != "returned":
                household = self._household(grant.case_id, meta)
                lines = [{"payment_id": payment.payment_id, "period": payment.period, "amount_fen": payment.amount_fen}]
                recovery = self._open_recovery(household, grant.region_code, "emergency_post_approval_refused",
                                               lines, None, grant.grant_id, meta)
                if recovery is not None:
                    out += [recovery, household]
        pe.collect_events(*out)

    # --- recoveries (追回) ---------------------------------------------------------------------
    def get_recovery(self, recovery_id: str) -> Recovery:
        return self.load(Recovery.create_id(recovery_id), RecoveryNotFound(recovery_id))

    def _open_recovery(self, household: Household, region_code: str, ground: str, lines: list[dict[str, Any]],
                       since: str | None, cause: str, meta: Meta) -> Recovery | None:
        """The cause's recovery, linked to the household (None: opened already)."""
        recovery = Recovery.open(household.case_id, region_code, ground, lines, since, cause, self._now(), meta)
        if self.exists(recovery.id):
            return None
        household.link_recovery(recovery.recovery_id, [p["payment_id"] for p in lines], meta)
        return recovery

    def record_fraud(self, fraud: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """FraudRecorded → one recovery (cause: the benefit) of what the case was overpaid since
        the fraud began (`overpaid`, docs/RULES.md §8): its settled payments in scope, less any
        another recovery claims already. A payment in scope still with the bank (or held after a
        return) is recalled instead: it is never paid out. Nothing paid: the recovery says 0."""
        cause = fraud["benefit_id"]
        if self.exists(Recovery.create_id(recovery_id_of(cause))):
            return
        since = date.fromisoformat(fraud["fraud_since"])
        household = self._household(fraud["case_id"], meta)
        payments = [p for p in self._case_payments(household, since) if p.payment_id not in household.recovered]
        rows = [{"payment_id": p.payment_id, "period": p.period, "amount_fen": p.amount_fen, "status": p.status,
                 "settled_on": p.settled_on, "kind": kind} for p, kind in ((p, self._kind_of(p)) for p in payments)]
        lines = overpaid(rows, since)
        reason = f"虚报、隐瞒、伪造（自 {fraud['fraud_since']} 起），追回多发款项"
        recalled = [p for p in payments if p.status != "settled" and p.request_recall(reason, self._now(), meta)]
        recovery = self._open_recovery(household, fraud["region_code"], "fraud", lines, fraud["fraud_since"], cause,
                                       meta)
        if recovery is not None:
            pe.collect_events(recovery, household, *recalled)

    @staticmethod
    def _kind_of(payment: Payment) -> str:
        """A monthly benefit's payment, by what it is charged to; else one-off (relief, an advance)."""
        return "monthly" if payment.fund_source in MONTHLY_FUND_SOURCES.values() else "one_off"

    def _case_payments(self, household: Household, since: date) -> list[Payment]:
        """The household's payments that a fraud since `since` may concern: each entitlement's for
        the periods from the fraud's (one-off relief: its only period) up to the runs started
        ahead, and its emergency grants' advances."""
        first = period_of(since)
        last = add_periods(period_of(self.clock.now().date()), RECALL_HORIZON_MONTHS)
        ids: list[str] = []
        for entitlement_id in household.entitlements:
            entitlement = self.get_entitlement(entitlement_id)
            if not entitlement.payable:
                continue
            if entitlement.kind == "one_off":
                ids.append(payment_id_of(entitlement_id, entitlement.first_period))
                continue
            p = max(first, entitlement.first_period)
            while p <= last:
                ids.append(payment_id_of(entitlement_id, p))
                p = next_period(p)
        for grant_id in household.grants:
            grant = self.get_grant(grant_id)
            if grant.payment_id:
                ids.append(grant.payment_id)
        by_ident = {Payment.create_id(p): p for p in ids}
        found = self.existing(list(by_ident))
        return [self.repository.get(i) for i in by_ident if i in found]

    def repay(self, recovery_id: str, amount_fen: int, reference: str, meta: Meta) -> Recovery:
        """An amount paid back against a recovery; the same reference counts once; never more
        than is still owed (409 `recovery_balance`)."""
        for attempt in range(CONFLICT_ATTEMPTS):
            recovery = self.get_recovery(recovery_id)
            if not recovery.repay(amount_fen, reference, self._now(), meta):
                return recovery
            try:
                self.save(recovery)
                return recovery
            except IntegrityError:
                continue  # another repayment was recorded meanwhile: read the balance again
        raise PaymentConflict(f"{recovery_id} is busy; retry", "recovery_busy")

# --- read models --------------------------------------------------------------------------
def _add(doc: dict[str, Any] | None, count: int, total_fen: int) -> dict[str, Any]:
    doc = dict(doc or {"count": 0, "total_fen": 0})
    doc["count"] += count
    doc["total_fen"] += total_fen
    return doc


def project(event: Any, tx: SideTx) -> None:
    """Payment's read models: entitlements, what each run pays (payable), payments, batches,
    runs, budgets and what they have spent, reserve funds, emergency grants (and those held),
    recoveries, bank messages; what providers are paid (providers.project_provider_payment)."""
    if project_provider_payment(event, tx):
        return
    if isinstance(event, (Entitlement.Opened, Entitlement.OneOffRecorded, Entitlement.RecognitionRecorded)):
        entitlement = event.mutate(None)
        account = getattr(event, "bank_account", None)
        doc = {
            "entitlement_id": event.entitlement_id, "case_id": event.case_id,
            "benefit_id": event.benefit_id, "benefit_type": event.benefit_type,
            "kind": entitlement.kind, "payable": entitlement.payable,
            "monthly_amount_fen": entitlement.monthly_amount_fen,
            "one_off_amount_fen": entitlement.one_off_amount_fen,
            "fund_source": entitlement.fund_source, "first_period": event.first_period,
            "region_code": event.region_code, "opened_at": event.opened_at, "status": "active",
            "bank_account_ref": getattr(event, "bank_account_ref", None) or None, "changes": [],
            "account_corrected_at": None,
            # The store's moment of the opening (a run pays what was opened before its plan).
            "opened_ts": event.timestamp.isoformat(),
        }
        tx.put("entitlement", event.entitlement_id, doc, ref=event.case_id)
        if account is not None:
            _put_payable(tx, None, doc, entitlement.payment_fund_source, account)
    elif isinstance(event, Entitlement.AccountCorrected):
        doc = tx.get("entitlement", event.entitlement_id)
        if doc is not None:
            old = _payable_kind(doc)
            doc["bank_account_ref"] = event.bank_account_ref
            doc["account_corrected_at"] = event.corrected_at
            tx.put("entitlement", event.entitlement_id, doc, ref=event.case_id)
            fund = payment_fund_source(doc["benefit_type"], doc["fund_source"])
            _put_payable(tx, old, doc, fund, event.bank_account)
    elif isinstance(event, Entitlement.Changed):
        doc = tx.get("entitlement", event.entitlement_id)
        if doc is not None:
            doc["changes"] = [*doc["changes"], {"change": event.change, "from_period": event.from_period,
                                                "monthly_amount_fen": event.monthly_amount_fen}]
            doc["status"] = status_of(doc["changes"])
            tx.put("entitlement", event.entitlement_id, doc, ref=event.case_id)
            kind = _payable_kind(doc)
            payable = tx.get(kind, event.entitlement_id) if kind else None
            if payable is not None:
                tx.put(kind, event.entitlement_id, {**payable, "changes": doc["changes"]}, ref=event.case_id)
    elif isinstance(event, Payment.Instructed):
        tx.put("payment", event.payment_id, {
            "payment_id": event.payment_id, "entitlement_id": event.entitlement_id, "case_id": event.case_id,
            "period": event.period, "amount_fen": event.amount_fen, "fund_source": event.fund_source,
            "channel": event.channel, "bank_account_ref": event.bank_account_ref, "region_code": event.region_code,
            "run_id": event.run_id, "batch_id": event.batch_id, "status": "instructed", "reason_code": None,
            "recall_requested": False, "instructed_at": event.instructed_at, "settled_on": None,
        }, ref=event.case_id)
        county = event.region_code[:6]
        key = f"{county}:{event.period}:{event.fund_source}"
        named = {"fund_source": event.fund_source, "count": 0, "total_fen": 0}
        tx.put("spent", key, _add(tx.get("spent", key) or named, 1, event.amount_fen), ref=f"{county}:{event.period}")
        rkey = f"{event.run_id}:{event.fund_source}"
        tx.put("run_fund", rkey, _add(tx.get("run_fund", rkey) or named, 1, event.amount_fen), ref=event.run_id)
        if tx.get("one_off_due", event.entitlement_id) is not None:
            tx.delete("one_off_due", event.entitlement_id)
    elif isinstance(event, (Payment.Settled, Payment.Returned, Payment.Released, Payment.RecallRequested)):
        _project_payment_change(event, tx)
    elif isinstance(event, BankBatch.Assembled):
        tx.put("batch", event.batch_id, {
            "batch_id": event.batch_id, "run_id": event.run_id, "county_code": event.county_code,
            "period": event.period, "channel": event.channel, "purpose": event.purpose, "count": event.count,
            "total_fen": event.total_fen, "requested_execution_date": event.requested_execution_date,
            "assembled_at": event.assembled_at, "submitted": False, "submitted_at": None, "file_name": None,
            "file_sha256": None, "group_status": None,
            "settled": {"count": 0, "total_fen": 0}, "returned": {"count": 0, "total_fen": 0},
        }, ref=event.run_id)
    elif isinstance(event, BankBatch.Submitted):
        doc = tx.get("batch", event.batch_id)
        if doc is not None:
            doc.update(submitted=True, submitted_at=event.submitted_at, file_name=event.file_name,
                       file_sha256=event.file_sha256, group_status=event.group_status)
            tx.put("batch", event.batch_id, doc, ref=doc["run_id"])
    elif isinstance(event, (PaymentRun.Started, PaymentRun.Planned, PaymentRun.Approved, PaymentRun.BatchAdded,
                            PaymentRun.Instructed, PaymentRun.Completed, PaymentRun.Reconciled)):
        _project_run(event, tx)
    elif isinstance(event, (Budget.Opened, Budget.Set)):
        key = f"{event.county_code}:{event.period}:{event.fund_source}"
        tx.put("budget", key, {"county_code": event.county_code, "period": event.period,
                               "fund_source": event.fund_source, "amount_fen": event.amount_fen,
                               "set_at": event.set_at, "set_by": event.meta["user_id"]},
               ref=f"{event.county_code}:{event.period}")
    elif isinstance(event, (ReserveFund.Opened, ReserveFund.Replenished, ReserveFund.Advanced)):
        doc = tx.get("reserve_fund", event.township_code) or {
            "township_code": event.township_code, "balance_fen": 0, "replenished_fen": 0, "advanced_fen": 0,
            "advances": 0}
        if isinstance(event, ReserveFund.Replenished):
            doc.update(balance_fen=event.balance_fen, replenished_fen=doc["replenished_fen"] + event.amount_fen)
        elif isinstance(event, ReserveFund.Advanced):
            doc.update(balance_fen=event.balance_fen, advanced_fen=doc["advanced_fen"] + event.amount_fen,
                       advances=doc["advances"] + 1)
        tx.put("reserve_fund", event.township_code, doc, ref=event.township_code[:6])
    elif isinstance(event, (ReliefGrant.Recorded, ReliefGrant.Held, ReliefGrant.Paid, ReliefGrant.PostApprovalDecided,
                            ReliefGrant.Cancelled)):
        _project_grant(event, tx)
    elif isinstance(event, (Recovery.Opened, Recovery.Repaid)):
        _project_recovery(event, tx)
    elif isinstance(event, BankMessage.Received):
        tx.put("bank_message", f"{event.channel}:{event.kind}:{event.message_id}", {
            "channel": event.channel, "kind": event.kind, "message_id": event.message_id, "sha256": event.sha256,
            "entries": event.entries, "applied": event.applied, "unmatched": event.unmatched,
            "received_at": event.received_at}, ref=event.channel)


def _payable_kind(doc: dict[str, Any], channel: str | None = None) -> str | None:
    """Where a run finds the entitlement: monthly under its county and channel, one-off relief
    under `one_off_due` (until it is paid), a recognition nowhere."""
    ref = doc.get("bank_account_ref")
    if not ref:
        return None
    if doc["kind"] == "monthly":
        return payable_kind(doc["region_code"][:6], channel or ref.split(":", 1)[0])
    return "one_off_due" if doc["kind"] == "one_off" else None


def _put_payable(tx: SideTx, old: str | None, doc: dict[str, Any], fund_source: str, account: BankAccount) -> None:
    """The document a run reads, for the entitlement's (new) account."""
    kind = _payable_kind(doc, account.channel)
    if kind is None:
        return
    if kind == "one_off_due" and old and tx.get(old, doc["entitlement_id"]) is None:
        return  # paid already: a corrected account changes nothing paid
    if old:
        tx.delete(old, doc["entitlement_id"])
    tx.put(kind, doc["entitlement_id"], {
        "entitlement_id": doc["entitlement_id"], "case_id": doc["case_id"], "kind": doc["kind"],
        "first_period": doc["first_period"], "monthly_amount_fen": doc["monthly_amount_fen"],
        "one_off_amount_fen": doc["one_off_amount_fen"], "changes": doc["changes"], "fund_source": fund_source,
        "channel": account.channel, "account_name": account.account_name, "number_sealed": account.number_sealed,
        "bank_account_ref": account.ref, "region_code": doc["region_code"], "opened_ts": doc["opened_ts"],
    }, ref=doc["case_id"])


def _project_payment_change(event: Any, tx: SideTx) -> None:
    doc = tx.get("payment", event.payment_id)
    if doc is None:
        return
    batch = tx.get("batch", getattr(event, "batch_id", doc["batch_id"]))
    if isinstance(event, Payment.Settled):
        doc.update(status="settled", settled_on=event.booked_on)
        tx.delete("held", event.payment_id)
        if batch is not None:
            batch["settled"] = _add(batch["settled"], 1, event.amount_fen)
            batch["statement_id"] = event.statement_id
    elif isinstance(event, Payment.Returned):
        if batch is not None and doc["status"] == "settled":  # returned after it was booked
            batch["settled"] = _add(batch["settled"], -1, -event.amount_fen)
        doc.update(status="returned", reason_code=event.reason_code, reason=event.reason)
        tx.put("held", event.payment_id, {"payment_id": event.payment_id, "entitlement_id": doc["entitlement_id"],
                                          "channel": doc["channel"], "bank_account_ref": doc["bank_account_ref"],
                                          "reason_code": event.reason_code, "returned_at": event.returned_at},
               ref=doc["entitlement_id"])
        if batch is not None:
            batch["returned"] = _add(batch["returned"], 1, event.amount_fen)
    elif isinstance(event, Payment.Released):
        doc.update(status="instructed", batch_id=event.batch_id, bank_account_ref=event.bank_account_ref,
                   released_at=event.released_at)
        tx.delete("held", event.payment_id)
        batch = None
    elif isinstance(event, Payment.RecallRequested):
        doc.update(recall_requested=True, recall_reason=event.reason)
        tx.put("recall", event.payment_id, {"payment_id": event.payment_id, "case_id": event.case_id,
                                             "amount_fen": doc["amount_fen"], "batch_id": doc["batch_id"],
                                             "channel": doc["channel"], "reason": event.reason,
                                             "requested_at": event.requested_at}, ref=doc["run_id"])
        batch = None
    tx.put("payment", event.payment_id, doc, ref=doc["case_id"])
    if batch is not None:
        tx.put("batch", batch["batch_id"], batch, ref=batch["run_id"])


def _project_grant(event: Any, tx: SideTx) -> None:
    """`relief_grant` per grant (by case); `relief_held` per grant waiting for its fund (by
    township: the fund's view lists them, the worker pays them)."""
    if isinstance(event, ReliefGrant.Recorded):
        doc = {"grant_id": event.grant_id, "case_id": event.case_id, "region_code": event.region_code,
               "township_code": event.township_code, "amount_fen": event.amount_fen, "reason": event.reason,
               "approval_level": event.approval_level, "granted_by": event.granted_by,
               "bank_account_ref": event.bank_account_ref or None, "granted_at": event.granted_at,
               "post_approval_due_date": event.post_approval_due_date, "status": "granted", "problem": None,
               "held_at": None, "payment_id": None, "batch_id": None, "paid_at": None, "post_approval": None,
               "recovery_id": None}
        tx.put("relief_grant", event.grant_id, doc, ref=event.case_id)
        return
    doc = tx.get("relief_grant", event.grant_id)
    if doc is None:
        return
    if isinstance(event, ReliefGrant.Held):
        doc.update(status="held", problem=event.problem, held_at=event.held_at)
        tx.put("relief_held", event.grant_id, {
            "grant_id": event.grant_id, "case_id": event.case_id, "region_code": doc["region_code"],
            "township_code": event.township_code, "amount_fen": event.amount_fen, "problem": event.problem,
            "detail": event.detail, "granted_at": doc["granted_at"], "held_at": event.held_at,
        }, ref=event.township_code)
    elif isinstance(event, ReliefGrant.Paid):
        doc.update(status="paid", problem=None, payment_id=event.payment_id, batch_id=event.batch_id,
                   paid_at=event.paid_at)
        tx.delete("relief_held", event.grant_id)
    elif isinstance(event, ReliefGrant.PostApprovalDecided):
        doc["post_approval"] = {"decision": event.decision, "reason": event.reason, "decided_by": event.decided_by,
                                "decided_at": event.decided_at}
    elif isinstance(event, ReliefGrant.Cancelled):
        doc.update(status="cancelled", problem=None)
        tx.delete("relief_held", event.grant_id)
    tx.put("relief_grant", event.grant_id, doc, ref=doc["case_id"])


def _project_recovery(event: Any, tx: SideTx) -> None:
    if isinstance(event, Recovery.Opened):
        tx.put("recovery", event.recovery_id, {
            "recovery_id": event.recovery_id, "case_id": event.case_id, "region_code": event.region_code,
            "ground": event.ground, "cause": event.cause, "since": event.since, "amount_fen": event.amount_fen,
            "payments": event.payments, "opened_at": event.opened_at, "repaid_fen": 0,
            "balance_fen": event.amount_fen, "status": "open" if event.amount_fen else "closed", "repayments": [],
        }, ref=event.case_id)
        grant = tx.get("relief_grant", event.cause) if event.ground == "emergency_post_approval_refused" else None
        if grant is not None:
            tx.put("relief_grant", event.cause, {**grant, "recovery_id": event.recovery_id}, ref=grant["case_id"])
        return
    doc = tx.get("recovery", event.recovery_id)
    if doc is None:
        return
    doc["repayments"] = [*doc["repayments"], {"amount_fen": event.amount_fen, "reference": event.reference,
                                              "repaid_at": event.repaid_at, "recorded_by": event.meta["user_id"]}]
    doc.update(repaid_fen=doc["repaid_fen"] + event.amount_fen, balance_fen=event.balance_fen,
               status="open" if event.balance_fen else "closed")
    tx.put("recovery", event.recovery_id, doc, ref=doc["case_id"])


def _project_run(event: Any, tx: SideTx) -> None:
    if isinstance(event, PaymentRun.Started):
        doc = {"run_id": event.run_id, "county_code": event.county_code, "period": event.period,
               "status": "started", "started_by": event.started_by, "started_at": event.started_at,
               "planned": None, "approved_by": None, "batch_count": 0, "count": 0, "total_fen": 0,
               "completed_at": None, "reconciliation": None}
    else:
        doc = tx.get("run", event.run_id)
        if doc is None:
            return
        if isinstance(event, PaymentRun.Planned):
            doc["planned"] = {"count": event.count, "total_fen": event.total_fen,
                              "by_fund_source": event.by_fund_source, "budget_check": event.budget_check,
                              "skipped": event.skipped, "planned_at": event.planned_at,
                              "planned_ts": event.timestamp.isoformat(), "arrears_since": event.arrears_since}
            doc["status"] = "awaiting_approval" if event.needs_approval else "instructing"
        elif isinstance(event, PaymentRun.Approved):
            doc.update(status="instructing", approved_by=event.approved_by)
        elif isinstance(event, PaymentRun.BatchAdded):
            doc.update(batch_count=doc["batch_count"] + 1, count=doc["count"] + event.count,
                       total_fen=doc["total_fen"] + event.total_fen)
        elif isinstance(event, PaymentRun.Instructed):
            doc["status"] = "instructed"
        elif isinstance(event, PaymentRun.Completed):
            doc.update(status="completed", completed_at=event.completed_at)
        elif isinstance(event, PaymentRun.Reconciled):
            doc["reconciliation"] = {"balanced": event.balanced, "reconciled_at": event.reconciled_at,
                                     "differences": len(event.differences)}
    tx.put("run", event.run_id, doc, ref=doc["county_code"])


