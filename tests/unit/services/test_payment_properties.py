"""Properties of paying, over random sequences of what happens to a small world: four monthly
entitlements of county 370502 (one at ICBC, three at RCC: three bank batches a period), periods
2026-12..2027-02, budgets set. Commands: a period's run (sometimes killed after some units of
work, then resumed by another engine at once), a payment rejected (pain.002) or booked
(camt.053), a bank message delivered again, an account corrected and held payments released,
a benefit changed (suspend, resume, adjust, terminate), a consumed event delivered again.

After every step:
- at most one Payment per entitlement × period (Instructed events per payment id, whole log);
- every payment is for a period its entitlement paid, at that amount, when its run planned it;
- a run, once advanced, paid every entitlement that paid for its period when it was planned;
- each payment settled at most once; released at most once per return (never without one);
- each run's reconciliation: instructed = settled + held + pending, and each of these is what
  the payments of the run say (counted from the aggregates, not from the batches);
- every bank batch has its file, and each payment is in 1 + (times released) files.

A resume is immediate (a resume after later changes is test_payment_runs'
test_a_resumed_run_pays_only_what_was_planned). PAYMENT_PROPERTY_EXAMPLES draws more (default 30).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lifeline.iso20022.pain001 import parse_pain001
from services.payment.domain import Entitlement, Payment, payment_id_of
from services.payment.runs import Jobs, reconciliation

from .test_payment_runs import COUNTY, OFFICER, World, account_number

PERIODS = ("2026-12", "2027-01", "2027-02")
CHANNELS = ("ICBC", "RCC", "RCC", "RCC")
CHANGES = ("suspend", "resume", "adjust", "terminate")


class Killed(BaseException):
    """The process dies (not an Exception: nothing on the way catches it)."""


class PaymentWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="lifeline-payment-props-"))
        self.w = World(self.root, unit_payments=1)  # a unit of work per batch: a crash can fall between them
        # Fixed case ids: the ids sort the same way in every example (draws pick by position).
        self.entitlements = [self.w.approve(channel, 40000 + 1000 * i, case_id=f"C-PROP{i:08d}")
                             for i, channel in enumerate(CHANNELS)]
        for period in PERIODS:
            self.w.budget(period)
        self.planned: dict[tuple[str, str], int] = {}  # (entitlement, period) -> amount when planned
        self.run_ids: set[str] = set()
        self.messages: list[tuple[str, str, bytes]] = []  # (kind, channel, xml) delivered
        self.consumed: list = []  # CloudEvents delivered
        self.serial = 0
        self.engines = 0

    def teardown(self) -> None:
        self.w.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------
    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial:06d}"

    def tick(self) -> None:
        self.w.clock.advance(timedelta(minutes=1))

    def payments(self) -> dict[str, Payment]:
        return {p: self.w.app.get_payment(p) for p in self.w.instructed()}

    def engine(self):
        self.engines += 1
        return self.w.new_engine(f"engine-{self.engines}")

    # --- commands -------------------------------------------------------------------------
    @initialize(period=st.sampled_from(PERIODS), crash_after=st.sampled_from([None, 0, 1, 2]))
    def first_run(self, period: str, crash_after: int | None) -> None:
        self.run(period, crash_after)

    @rule(period=st.sampled_from(PERIODS), crash_after=st.sampled_from([None, None, 0, 1, 2]))
    def run(self, period: str, crash_after: int | None) -> None:
        self.tick()
        w = self.w
        run, started = w.app.start_run(COUNTY, period, OFFICER)
        self.run_ids.add(run.run_id)
        if started:
            for e in self.entitlements:
                amount = w.app.get_entitlement(e).amount_for(period)
                if amount:
                    self.planned[(e, period)] = amount
        length = w.app.recorder.max_notification_id()
        engine = self.engine()
        if crash_after is not None:
            real = w.app.save_unit
            units = []

            def save_unit(aggregates=(), bulk=None):
                if bulk is not None and bulk.event_class is Payment.Instructed:
                    if len(units) == crash_after:
                        raise Killed()
                    units.append(bulk)
                return real(aggregates, bulk)

            w.app.save_unit = save_unit
            try:
                engine.advance(run.run_id, OFFICER)
            except Killed:
                pass
            finally:
                del w.app.save_unit
            engine.wait_for_files()
            engine = self.engine()  # another replica resumes it at once
        done = engine.advance(run.run_id, OFFICER)
        assert w.app.get_run(run.run_id).status == "instructed", done
        if not started:
            assert w.app.recorder.max_notification_id() == length  # a period is run once
        counts = w.instructed()
        for e in self.entitlements:
            assert counts[payment_id_of(e, period)] == (1 if (e, period) in self.planned else 0), (e, period)

    @precondition(lambda self: self.w.instructed())
    @rule(data=st.data(), code=st.sampled_from(["AC04", "AC01", "MD07"]),
          then_to=st.sampled_from([None, "ICBC", "RCC", "PSBC"]))
    def reject(self, data, code: str, then_to: str | None) -> None:
        """The bank rejects a payment; then (`then_to`) the household's account is corrected to
        another bank and the worker releases what is held."""
        self.tick()
        payments = self.payments()
        instructed = sorted(p for p, x in payments.items() if x.status == "instructed")
        # One the bank has (instructed), or any when all are settled or held (changes nothing).
        p = data.draw(st.sampled_from(instructed or sorted(payments)))
        payment = payments[p]
        channel = self.w.app.get_batch(payment.batch_id).channel
        xml = self.w.status_report(payment.batch_id, [(p, "RJCT", code)], self.next_id("PAIN002"))
        answer = self.w.receive_report(channel, xml)
        assert answer["applied"] == (1 if payment.status == "instructed" else 0)
        self.messages.append(("pain.002", channel, xml))
        if then_to is not None:
            self.correct_then_release(payment.entitlement_id, then_to)

    @precondition(lambda self: self.w.instructed())
    @rule(data=st.data())
    def book(self, data) -> None:
        """The bank states what it booked: payments not returned (some booked before)."""
        self.tick()
        payments = {p: x for p, x in self.payments().items() if x.status != "returned"}
        if not payments:
            return
        chosen = data.draw(st.lists(st.sampled_from(sorted(payments)), min_size=1, max_size=4, unique=True))
        by_channel = defaultdict(list)
        for p in chosen:
            by_channel[self.w.app.get_batch(payments[p].batch_id).channel].append((p, payments[p].amount_fen))
        for channel, entries in sorted(by_channel.items()):
            xml = self.w.statement(channel, entries, self.next_id("CAMT053"))
            answer = self.w.receive_statement(channel, xml)
            assert answer["applied"] == sum(1 for p, _ in entries if payments[p].status == "instructed")
            assert answer["unmatched"] == []
            self.messages.append(("camt.053", channel, xml))

    @precondition(lambda self: self.messages)
    @rule(data=st.data())
    def redeliver_message(self, data) -> None:
        self.tick()
        kind, channel, xml = data.draw(st.sampled_from(self.messages))
        length = self.w.app.recorder.max_notification_id()
        receive = self.w.receive_report if kind == "pain.002" else self.w.receive_statement
        assert receive(channel, xml)["duplicate"] is True
        assert self.w.app.recorder.max_notification_id() == length

    def correct(self, e: str, channel: str) -> str:
        number = account_number()
        self.w.app.correct_account(e, {"channel": channel, "account_number": number, "account_name": "王小明"},
                                   "原账户已销户", OFFICER)
        self.w.numbers[e] = number
        return number

    @rule(which=st.integers(0, len(CHANNELS) - 1), channel=st.sampled_from(["ICBC", "RCC", "PSBC"]))
    def correct_only(self, which: int, channel: str) -> None:
        """An account corrected (its held payments go with the next release, also those returned
        later that were sent before the correction)."""
        self.tick()
        self.correct(self.entitlements[which], channel)

    @rule(data=st.data(), channel=st.sampled_from(["ICBC", "RCC", "PSBC"]))
    def correct_and_release(self, data, channel: str) -> None:
        """The account of an entitlement with a payment held (of any when none is) corrected, then
        the worker's release of held payments."""
        holding = sorted({x.entitlement_id for x in self.payments().values() if x.status == "returned"})
        self.correct_then_release(data.draw(st.sampled_from(holding or self.entitlements)), channel)

    def correct_then_release(self, e: str, channel: str) -> None:
        w = self.w
        self.tick()
        number = self.correct(e, channel)
        self.tick()
        w.projection.catch_up()
        before = self.payments()
        held = [p for p, x in before.items() if x.entitlement_id == e and x.status == "returned"
                and not x.recall_requested]
        jobs = Jobs(w.engine, None)
        released = jobs.release_held(OFFICER)
        w.engine.wait_for_files()
        w.projection.catch_up()
        assert jobs.release_held(OFFICER) == 0  # once
        after = self.payments()
        # What went again: every payment of this entitlement held (not to be recalled), to the new
        # account; others held too whose account was corrected since they were sent.
        moved = [p for p in after if before[p].status == "returned" and after[p].status == "instructed"]
        assert released == len(moved) and set(held) <= set(moved)
        assert all(after[p].status == before[p].status for p in after if p not in moved)
        for p in held:
            assert w.app.sealer.unseal(after[p].number_sealed) == number
        for p in moved:
            assert not after[p].recall_requested and after[p].returns == before[p].returns

    @rule(which=st.integers(0, len(CHANNELS) - 1), change=st.sampled_from(CHANGES),
          from_period=st.sampled_from(PERIODS), amount=st.integers(1, 99999))
    def change_benefit(self, which: int, change: str, from_period: str, amount: int) -> None:
        self.tick()
        event = self.w.change(self.entitlements[which], change, from_period,
                              amount if change == "adjust" else None)
        assert self.w.app.process_cloud_event(event)
        self.consumed.append(event)

    @precondition(lambda self: self.consumed)
    @rule(data=st.data(), other_position=st.booleans())
    def redeliver_event(self, data, other_position: bool) -> None:
        self.tick()
        event = data.draw(st.sampled_from(self.consumed))
        changes = len(self.w.events(Entitlement.Changed))
        length = self.w.app.recorder.max_notification_id()
        if other_position:  # the same CloudEvent (same id) through another partition
            # A position no event of this world has (its sequences are below 10**6).
            again = dataclasses.replace(event, sequence=10**12 + self.serial)
            self.serial += 1
            assert self.w.app.process_cloud_event(again) is True
        else:
            assert self.w.app.process_cloud_event(event) is False
            assert self.w.app.recorder.max_notification_id() == length
        assert len(self.w.events(Entitlement.Changed)) == changes

    # --- invariants -----------------------------------------------------------------------
    @invariant()
    def paid_at_most_once_and_only_as_planned(self) -> None:
        instructed = self.w.events(Payment.Instructed)
        counts = Counter(e.payment_id for e in instructed)
        assert not counts or max(counts.values()) == 1, counts
        for e in instructed:
            assert payment_id_of(e.entitlement_id, e.period) == e.payment_id
            assert self.planned.get((e.entitlement_id, e.period)) == e.amount_fen, (e.payment_id, e.amount_fen)

    @invariant()
    def settled_once_released_once_per_return(self) -> None:
        history: dict[str, list[str]] = defaultdict(list)
        for e in self.w.events(Payment.Settled, Payment.Returned, Payment.Released):
            history[e.payment_id].append(type(e).__name__)
        for payment_id, steps in history.items():
            assert steps.count("Settled") <= 1, (payment_id, steps)
            outstanding = 0  # returns not yet released
            for step in steps:
                if step == "Returned":
                    outstanding += 1
                elif step == "Released":
                    assert outstanding == 1, (payment_id, steps)
                    outstanding = 0
                assert outstanding <= 1, (payment_id, steps)

    @invariant()
    def every_run_reconciles_with_its_payments(self) -> None:
        w = self.w
        w.projection.catch_up()
        payments = self.payments()
        for run_id in sorted(self.run_ids):
            report = reconciliation(w.app, w.side, run_id)
            totals = report["totals"]
            mine = [p for p in payments.values() if p.run_id == run_id]

            def money(status: str | None) -> dict[str, int]:
                chosen = [p for p in mine if status is None or p.status == status]
                return {"count": len(chosen), "total_fen": sum(p.amount_fen for p in chosen)}

            assert totals["instructed"] == money(None), run_id
            assert totals["settled"] == money("settled"), run_id
            assert totals["held"] == money("returned"), run_id
            assert totals["pending"] == money("instructed"), run_id
            for field in ("count", "total_fen"):
                assert totals["instructed"][field] == (totals["settled"][field] + totals["held"][field]
                                                       + totals["pending"][field])

    @invariant()
    def every_batch_has_its_file(self) -> None:
        w = self.w
        batches = {b.batch_id for b in w.batches()}
        files = {p.stem: parse_pain001(p.read_bytes()) for p in w.files_dir.glob("*.xml")}
        assert set(files) == batches
        in_files = Counter(t.end_to_end_id for f in files.values() for t in f.transfers)
        released = Counter(e.payment_id for e in w.events(Payment.Released))
        assert in_files == Counter({p: 1 + released[p] for p in w.instructed()})


PaymentWorld.TestCase.settings = settings(
    max_examples=int(os.environ.get("PAYMENT_PROPERTY_EXAMPLES", "30")), stateful_step_count=15, deadline=None,
    database=None,
    # No explain phase: it traces every line of a failing example again, for minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPaymentWorld = PaymentWorld.TestCase
