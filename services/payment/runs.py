"""The payment run: a county's period paid as a streaming batch job.

`RunEngine.advance(run_id)` plans the run once (what it pays per fund source, checked against
the budgets; the rows read are spooled to a temp file), then instructs it channel by channel.
A unit of work gathers whole bank batches (each up to the channel's file limit) until it holds
`unit_payments` payments, and saves their `Payment.Instructed` events, the `BankBatch`es and the
run's `BatchAdded`s in one transaction; the batches' files are then written by a second process.

Why nothing is paid twice:
- a payment's id is derived from entitlement × period, so the store refuses a second
  `Instructed` for it (the unit of work fails whole, and is redone without it);
- a resumed run (and every arrears row) asks the store which of its payments exist before each
  unit, so a run resumed after a crash, or started again, skips what was instructed;
- one replica at a time advances a run (a lease in the read-model store, renewed per unit); a
  second replica reports the run instead; were the lease lost, the run's version check refuses
  the unit.

A run pays what its plan read: entitlements opened later are paid by the next run, with the
periods they missed (arrears). What changes afterwards (a death, a termination) is caught by
the recall path (`PaymentApplication.change_benefit`, `record_death`). `Jobs` is the rest of the
background work: one-off relief, held emergency grants, releases, sending files, completing and
reconciling runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import Meta
from lifeline.ops.faults import maybe_crash
from lifeline.rules.calendar import default_calendar
from lifeline.rules.periods import next_period
from lifeline.stores.application import Bulk, collector_paused
from lifeline.stores.projection import Projection
from lifeline.stores.sidestore import SideStore
from services.payment.channels import BankChannel, NoPayingAccount
from services.payment.domain import BankBatch, Payment, PaymentConflict, PaymentRun, amount_for, payment_id_of
from services.payment.files import FileJob, FileWriter, Transfer, WrittenFile

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0


class Payable(NamedTuple):
    """What a run reads of an entitlement it pays: for the run's period, or an earlier one it
    missed (arrears, 补发)."""

    period: str
    entitlement_id: str
    case_id: str
    amount_fen: int
    fund_source: str
    account_name: str
    number_sealed: str
    bank_account_ref: str
    region_code: str


class RunBusy(Exception):
    """Another replica is advancing this run."""


def payable_kind(county_code: str, channel: str) -> str:
    """The read model's documents a run pays: one per monthly entitlement with an account."""
    return f"payable:{county_code}:{channel}"


def periods_between(first: str, last: str) -> list[str]:
    """The periods from `first` up to, not including, `last`."""
    out = []
    while first < last:
        out.append(first)
        first = next_period(first)
    return out


def requested_execution_date(channel: BankChannel, now: datetime) -> str:
    """Today if the file reaches the bank before its cut-off on a working day, else the next
    working day (the statutory calendar: banks do not execute on 调休 rest days either)."""
    calendar = default_calendar()
    day = now.date()
    if not calendar.is_working_day(day) or now >= channel.cutoff_on(day):
        day = calendar.next_working_day(day + timedelta(days=1))
    return day.isoformat()


class RunEngine:
    def __init__(self, app: Any, side: SideStore, projection: Projection | None, writer: FileWriter,
                 files_dir: Path, holder: str | None = None, unit_payments: int = 20_000):
        self.app = app  # PaymentApplication
        # Payments a unit of work gathers (whole batches) before it commits: fewer, larger commits.
        self.unit_payments = unit_payments
        self.side = side
        self.projection = projection
        self.writer = writer
        self.files_dir = files_dir
        self.holder = holder or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.pending: list[Future[WrittenFile]] = []

    # --- the lease: one replica advances a run ------------------------------------------
    def _take(self, run_id: str) -> bool:
        with self.side.transaction() as tx:
            return tx.take_lease(f"payment-run:{run_id}", self.holder, time.time(), LEASE_SECONDS)

    def _release(self, run_id: str) -> None:
        with self.side.transaction() as tx:
            tx.release_lease(f"payment-run:{run_id}", self.holder)

    # --- advancing ------------------------------------------------------------------------
    def advance(self, run_id: str, meta: Meta) -> PaymentRun:
        """Take the run as far as it goes now: planned, then (unless awaiting approval)
        instructed, every file written. RunBusy when another replica holds it."""
        if not self._take(run_id):
            raise RunBusy(run_id)
        try:
            with collector_paused():
                return self._advance(run_id, meta)
        finally:
            self._release(run_id)

    def _advance(self, run_id: str, meta: Meta) -> PaymentRun:
        run = self.app.get_run(run_id)
        spool = None
        if run.status == "started":
            if self.projection is not None:
                self.projection.catch_up()  # the plan sees every change saved before it
            spool = self._plan(run, meta)
        if run.status == "instructing":
            self._instruct(run, meta, spool)
        # Awaiting approval, or left by a crash: the run is read again when it goes on.
        self._spool_path(run_id).unlink(missing_ok=True)
        self.wait_for_files()
        return self.app.get_run(run_id)

    def _channels(self, county_code: str) -> list[tuple[BankChannel, Any]]:
        out = []
        for channel in self.app.channels:
            try:
                out.append((channel, self.app.channels.paying_account(channel.channel_id, county_code)))
            except NoPayingAccount:
                out.append((channel, None))
        return out

    def _payables(self, run: PaymentRun, channel_id: str, arrears_since: str,
                  opened_by: str | None = None) -> Iterator[Payable]:
        """Every entitlement of the channel that pays for the run's period, with what it pays;
        and, for one opened since the county's previous run was planned (`arrears_since`), each
        earlier period from its first that it was due and no run paid (补发: an approval after
        its first period's run). `opened_by`: only entitlements opened by then (a run read again
        after its plan pays what it planned, never what was approved since)."""
        for _, doc in self.side.scan(payable_kind(run.county_code, channel_id), page_size=5000):
            if opened_by is not None and doc["opened_ts"] > opened_by:
                continue
            periods = [run.period]
            if arrears_since and doc["opened_ts"] > arrears_since and doc["first_period"] < run.period:
                periods = periods_between(doc["first_period"], run.period) + periods
            for period in periods:
                amount = amount_for("monthly", doc["first_period"], doc["monthly_amount_fen"], None,
                                    doc["changes"], period)
                if amount > 0:
                    yield Payable(period, doc["entitlement_id"], doc["case_id"], amount, doc["fund_source"],
                                  doc["account_name"], doc["number_sealed"], doc["bank_account_ref"],
                                  doc["region_code"])

    def _arrears_since(self, run: PaymentRun) -> str:
        """When the county's latest earlier run was planned ("" when it has none: a county's
        first run on Lifeline pays its own period only, never back months)."""
        with self.side.transaction() as tx:
            earlier = [d["planned"]["planned_ts"] for d in tx.find("run", run.county_code)
                       if d["period"] < run.period and d.get("planned")]
        return max(earlier, default="")

    def _spool_path(self, run_id: str) -> Path:
        return self.files_dir.parent / "spool" / f"{run_id}.pickle"

    def _plan(self, run: PaymentRun, meta: Meta) -> Path:
        """Read what the run pays once: total it per fund source for the budget check, and spool
        it (pages of rows per channel) for the instructing that follows at once."""
        by_fund: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "total_fen": 0})
        skipped: list[dict[str, Any]] = []
        spool = self._spool_path(run.run_id)
        spool.parent.mkdir(parents=True, exist_ok=True)
        since = self._arrears_since(run)
        with open(spool, "wb") as out:
            for channel, account in self._channels(run.county_code):
                fund_here: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "total_fen": 0})
                page: list[Payable] = []
                for row in self._payables(run, channel.channel_id, since):
                    line = fund_here[row.fund_source]
                    line["count"] += 1
                    line["total_fen"] += row.amount_fen
                    if account is not None:
                        page.append(row)
                        if len(page) == 5000:
                            pickle.dump((channel.channel_id, page), out, pickle.HIGHEST_PROTOCOL)
                            page = []
                if page:
                    pickle.dump((channel.channel_id, page), out, pickle.HIGHEST_PROTOCOL)
                if account is None:
                    if fund_here:
                        skipped.append({"channel": channel.channel_id, "reason": "no_paying_account",
                                        "count": sum(v["count"] for v in fund_here.values()),
                                        "total_fen": sum(v["total_fen"] for v in fund_here.values())})
                    continue
                for fund, line in fund_here.items():
                    by_fund[fund]["count"] += line["count"]
                    by_fund[fund]["total_fen"] += line["total_fen"]
        budget_check = [self.budget_line(run.county_code, run.period, fund, line["total_fen"])
                        for fund, line in sorted(by_fund.items())]
        run.plan(count=sum(v["count"] for v in by_fund.values()),
                 total_fen=sum(v["total_fen"] for v in by_fund.values()),
                 by_fund_source=dict(by_fund), budget_check=budget_check, skipped=skipped, arrears_since=since,
                 planned_at=self.app.clock.now().isoformat(), by=meta)
        self.app.save(run)
        return spool

    def budget_line(self, county_code: str, period: str, fund_source: str, needed_fen: int) -> dict[str, Any]:
        """The fund source's budget against what the run needs: what is left is the budget set
        less what was instructed already in that county and period (e.g. one-off relief).
        No budget set counts as none: the run waits for an officer's approval."""
        key = f"{county_code}:{period}:{fund_source}"
        with self.side.transaction() as tx:
            budget = tx.get("budget", key)
            spent = tx.get("spent", key)
        budget_fen = budget["amount_fen"] if budget else None
        used_fen = spent["total_fen"] if spent else 0
        remaining_fen = (budget_fen or 0) - used_fen
        return {"fund_source": fund_source, "needed_fen": needed_fen, "budget_fen": budget_fen,
                "used_fen": used_fen, "remaining_fen": remaining_fen, "exceeds": needed_fen > remaining_fen}

    def _rows(self, run: PaymentRun, spool: Path | None) -> Iterator[tuple[str, list[Payable]]]:
        """Pages of (channel, rows): from the plan's spool when instructing follows the plan at
        once; read again otherwise (after an approval, or a restart)."""
        if spool is not None and spool.exists():
            with open(spool, "rb") as f:
                while True:
                    try:
                        yield pickle.load(f)
                    except EOFError:
                        return
        for channel, account in self._channels(run.county_code):
            if account is None:
                continue
            page: list[Payable] = []
            for row in self._payables(run, channel.channel_id, run.arrears_since, opened_by=run.planned_ts):
                page.append(row)
                if len(page) == 5000:
                    yield channel.channel_id, page
                    page = []
            if page:
                yield channel.channel_id, page

    def _instruct(self, run: PaymentRun, meta: Meta, spool: Path | None = None) -> None:
        accounts = {c.channel_id: (c, a) for c, a in self._channels(run.county_code) if a is not None}
        # A run that instructs for the first time finds none of its payments in the store (their
        # ids are the run's period's): it skips asking. A resumed run asks, unit by unit.
        check = run.count > 0
        batches: list[tuple[str, list[Payable]]] = []  # the unit of work being gathered
        chunk: list[Payable] = []
        current = None

        def close_batch() -> None:
            nonlocal chunk, run
            if chunk:
                batches.append((current, chunk))
                chunk = []
            if sum(len(c) for _, c in batches) >= self.unit_payments:
                run = self._unit(run, accounts, batches, meta, check)
                batches.clear()

        for channel_id, page in self._rows(run, spool):
            if channel_id != current:
                close_batch()
                current = channel_id
            limit = accounts[channel_id][0].max_transactions_per_file
            for row in page:
                chunk.append(row)
                if len(chunk) == limit:
                    close_batch()
        close_batch()
        if batches:
            run = self._unit(run, accounts, batches, meta, check)
        run.finish_instructing(self.app.clock.now().isoformat(), meta)
        self.app.save(run)

    def _unit(self, run: PaymentRun, accounts: dict[str, tuple[BankChannel, Any]],
              batches: list[tuple[str, list[Payable]]], meta: Meta, check: bool) -> PaymentRun:
        """Bank batches saved in one transaction with their payments and the run's progress;
        redone without what exists if another writer got there first."""
        meta_dict = meta.as_dict()
        if not self._take(run.run_id):  # renews this replica's lease; lost: stop, another goes on
            raise RunBusy(run.run_id)
        for attempt in range(3):
            now = self.app.clock.now()
            at = now.isoformat()
            aggregates: list[Any] = [run]
            items: list[tuple[Any, dict[str, Any]]] = []
            files = []
            for channel_id, chunk in batches:
                channel, account = accounts[channel_id]
                payment_ids = [payment_id_of(row.entitlement_id, row.period) for row in chunk]
                idents = [Payment.create_id(p) for p in payment_ids]
                # Arrears may have been paid by a run of their own period: always asked.
                asked = idents if check or attempt else [i for r, i in zip(chunk, idents) if r.period != run.period]
                done = self.app.existing(asked) if asked else set()
                todo = [(r, p, i) for r, p, i in zip(chunk, payment_ids, idents) if i not in done]
                if not todo:
                    continue
                batch_id = run.next_batch_id(channel_id)
                states = [
                    Payment.instruction(
                        entitlement_id=r.entitlement_id, case_id=r.case_id, period=r.period,
                        amount_fen=r.amount_fen, fund_source=r.fund_source, channel=channel_id,
                        account_name=r.account_name, number_sealed=r.number_sealed,
                        bank_account_ref=r.bank_account_ref, region_code=r.region_code, run_id=run.run_id,
                        batch_id=batch_id, instructed_at=at, meta=meta_dict, payment_id=payment_id)
                    for r, payment_id, _ in todo
                ]
                batch = BankBatch.assemble(
                    batch_id=batch_id, run_id=run.run_id, county_code=run.county_code, period=run.period,
                    channel=channel_id, purpose="monthly", payments=[(s["payment_id"], s["amount_fen"]) for s in states],
                    requested_execution_date=requested_execution_date(channel, now), assembled_at=at, by=meta)
                run.add_batch(batch, meta)
                aggregates.append(batch)
                items.extend((ident, state) for (_, _, ident), state in zip(todo, states))
                files.append((batch, tuple(Transfer(p, r.amount_fen, r.account_name, r.number_sealed, r.period,
                                                    r.fund_source) for r, p, _ in todo), channel, account))
            if not files:
                return run
            try:
                self.app.save_unit(aggregates, Bulk(Payment.Instructed, now, items))
            except IntegrityError:
                # Another writer saved some of these payments, or advanced the run: read
                # both again and redo the unit without what exists now.
                log.warning("payment run %s: a unit of %d batches collided (attempt %d); redoing", run.run_id,
                            len(files), attempt + 1)
                run = self.app.get_run(run.run_id)
                if run.status != "instructing":
                    return run
                continue
            for batch, transfers, channel, account in files:
                self._queue_file(batch, transfers, channel, account)
            maybe_crash("payment_after_unit", "PaymentRun")  # the fault tests' kill -9 between units
            return run
        raise RunBusy(run.run_id)

    # --- files ----------------------------------------------------------------------------
    def file_path(self, batch_id: str) -> Path:
        return self.files_dir / f"{batch_id}.xml"

    def _queue_file(self, batch: Any, transfers: tuple[Transfer, ...], channel: BankChannel, account: Any) -> None:
        job = FileJob.of(batch.batch_id, self.file_path(batch.batch_id), batch.assembled_at,
                         batch.requested_execution_date, channel, account, transfers)
        self.pending.append(self.writer.submit(job))

    def queue_file(self, batch: Any, payments: list[Any]) -> None:
        """Write a batch's file from the batch and its payments (Payment aggregates or their
        Instructed events): a release or a one-off, or one lost in a crash written again."""
        channel = self.app.channels.channel(batch.channel)
        account = self.app.channels.paying_account(batch.channel, batch.county_code)
        self._queue_file(batch, tuple(Transfer(p.payment_id, p.amount_fen, p.account_name, p.number_sealed, p.period,
                                               p.fund_source) for p in payments), channel, account)

    def wait_for_files(self) -> list[WrittenFile]:
        pending, self.pending = self.pending, []
        return [f.result() for f in pending]


# --- the background jobs: one-off relief, releases, submission, completion, reconciliation ----
def short_hash(parts: list[str]) -> str:
    """A batch id's tail from what it carries: the same payments give the same batch id, so a
    job redone after a crash collides in the store instead of making a second batch."""
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:10].upper()


class BankClient:
    """Sends a pain.001 file to the bank (the simulator's POST /v1/files) and returns the
    pain.002 it answers with."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def send(self, channel_id: str, file_name: str, content: bytes) -> bytes:
        import httpx

        r = httpx.post(f"{self.base_url}/v1/files", content=content, timeout=self.timeout,
                       headers={"Content-Type": "application/xml", "X-Bank-Channel": channel_id,
                                "X-File-Name": file_name})
        r.raise_for_status()
        return r.content


def single_payment(prefix: str, run_id: str, channel: BankChannel, now: datetime, meta: Meta,
                   **payment: Any) -> tuple[BankBatch, Bulk]:
    """One payment in a bank batch of its own, paid at once (one-off relief, a reserve-fund
    advance): the batch and the payment's event to save with it. The batch id comes from the
    payment's, so the same payment made twice collides in the store. `payment_id`: given (an
    emergency grant's), or entitlement × period."""
    payment_id = payment.pop("payment_id", None) or payment_id_of(payment["entitlement_id"], payment["period"])
    county = payment["region_code"][:6]
    batch_id = f"B-{prefix}-{county}-{channel.channel_id}-{short_hash([payment_id])}"
    at = now.isoformat()
    state = Payment.instruction(channel=channel.channel_id, run_id=run_id, batch_id=batch_id, instructed_at=at,
                                meta=meta.as_dict(), payment_id=payment_id, **payment)
    batch = BankBatch.assemble(
        batch_id=batch_id, run_id=run_id, county_code=county, period=payment["period"], channel=channel.channel_id,
        purpose="one_off", payments=[(payment_id, state["amount_fen"])],
        requested_execution_date=requested_execution_date(channel, now), assembled_at=at, by=meta)
    return batch, Bulk(Payment.Instructed, now, [(Payment.create_id(payment_id), state)])


class Jobs:
    """What the payment worker does every few seconds, each step safe to repeat and to run on
    several replicas at once (every unit of work collides in the store when done twice)."""

    def __init__(self, engine: RunEngine, bank: BankClient | None):
        self.engine = engine
        self.app = engine.app
        self.side = engine.side
        self.bank = bank

    def run_once(self, meta: Meta) -> dict[str, int]:
        self._catch_up()  # the jobs read what to do from the read models
        from services.payment.providers import pay_held_provider_payments  # it imports this module

        done = {"resumed": self.resume_runs(meta), "one_off": self.pay_one_offs(meta),
                "grants": self.pay_held_grants(meta), "released": self.release_held(meta),
                "providers": pay_held_provider_payments(self, meta)}
        self.engine.wait_for_files()
        self._catch_up()
        done["submitted"] = self.submit_batches(meta)
        self._catch_up()
        done["completed"] = self.complete_runs(meta)
        self._catch_up()
        done["reconciled"] = self.reconcile_runs(meta)
        return {k: v for k, v in done.items() if v}

    def _catch_up(self) -> None:
        if self.engine.projection is not None:
            self.engine.projection.catch_up()

    def _docs(self, kind: str) -> list[dict[str, Any]]:
        return [doc for _, doc in self.side.scan(kind)]

    def resume_runs(self, meta: Meta) -> int:
        """A run left half-way (its process died) goes on where it stopped."""
        n = 0
        for doc in self._docs("run"):
            if doc["status"] in ("started", "instructing"):
                try:
                    self.engine.advance(doc["run_id"], meta)
                    n += 1
                except RunBusy:
                    pass
                except (IntegrityError, PaymentConflict):
                    # Another replica took the run on meanwhile (its lease lapsed here): it goes on.
                    log.warning("payment run %s: taken on by another replica", doc["run_id"])
        return n

    def pay_one_offs(self, meta: Meta) -> int:
        """One-off relief is paid as soon as it is granted: a batch of its own per channel."""
        due = self._docs("one_off_due")
        by_channel: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for doc in due:
            by_channel[(doc["region_code"][:6], doc["channel"])].append(doc)
        paid = 0
        now = self.app.clock.now()
        period = now.strftime("%Y-%m")
        for (county, channel_id), docs in by_channel.items():
            try:
                channel = self.app.channels.channel(channel_id)
                self.app.channels.paying_account(channel_id, county)  # what the file is paid from
            except (NoPayingAccount, LookupError):
                log.error("payment: no paying account for county %s at %s: one-off relief waits", county, channel_id)
                continue
            for doc in docs:
                if self._pay_one_off(doc, channel, period, meta):
                    paid += 1
        return paid

    def _pay_one_off(self, doc: dict[str, Any], channel: BankChannel, period: str, meta: Meta) -> bool:
        ident = Payment.create_id(payment_id_of(doc["entitlement_id"], doc["first_period"]))
        if self.app.existing([ident]):
            return False
        now = self.app.clock.now()
        batch, bulk = single_payment(
            "OO", f"OO-{period}", channel, now, meta, entitlement_id=doc["entitlement_id"], case_id=doc["case_id"],
            period=doc["first_period"], amount_fen=doc["one_off_amount_fen"], fund_source=doc["fund_source"],
            account_name=doc["account_name"], number_sealed=doc["number_sealed"],
            bank_account_ref=doc["bank_account_ref"], region_code=doc["region_code"])
        instructed = bulk.event(0)
        aggregates: list[Any] = [batch]
        if doc["fund_source"] == "township_reserve_fund":
            fund = self.app.reserve_fund(doc["region_code"][:9], meta)
            try:
                fund.advance(instructed.amount_fen, instructed.payment_id, doc["case_id"], now.isoformat(), meta)
            except PaymentConflict as exc:
                log.error("payment: %s waits: %s", instructed.payment_id, exc)
                return False
            aggregates.append(fund)
        try:
            self.app.save_unit(aggregates, bulk)
        except IntegrityError:
            return False  # another replica paid it (or advanced the fund) first: seen next time
        self.engine.queue_file(batch, [instructed])
        return True

    def pay_held_grants(self, meta: Meta) -> int:
        """Emergency grants held while their reserve fund held less (or a paying account was
        missing): paid in the order granted, each as soon as its fund holds it (a larger grant
        does not keep a smaller later one waiting)."""
        held = sorted(self._docs("relief_held"), key=lambda d: (d["granted_at"], d["grant_id"]))
        paid = 0
        for doc in held:
            done = self.app.pay_held_grant(doc["grant_id"], meta)
            if done is not None:
                batch, payment = done
                self.engine.queue_file(batch, [payment])
                paid += 1
        return paid

    def release_held(self, meta: Meta) -> int:
        """A returned payment whose entitlement's account was corrected since goes again, once,
        in a release batch of the new account's channel (counted with its original run)."""
        groups: dict[tuple[str, str, str], list[tuple[Payment, Any]]] = defaultdict(list)
        for held in self._docs("held"):
            with self.side.transaction() as tx:
                doc = tx.get("entitlement", held["entitlement_id"])
            if doc is None or not doc.get("account_corrected_at"):
                continue  # never corrected (or relief from a reserve fund: a new advance pays it)
            entitlement = self.app.get_entitlement(held["entitlement_id"])
            account = entitlement.bank_account
            payment = self.app.get_payment(held["payment_id"])
            # Sealed anew at each correction: another sealed number is another account given.
            if account is None or account.number_sealed == payment.number_sealed:
                continue
            if payment.status != "returned" or payment.recall_requested:
                continue
            groups[(payment.run_id, payment.region_code[:6], account.channel)].append((payment, account))
        released = 0
        for (run_id, county, channel_id), items in groups.items():
            channel = self.app.channels.channel(channel_id)
            try:
                self.app.channels.paying_account(channel_id, county)  # what the file is paid from
            except NoPayingAccount:
                log.error("payment: no paying account for county %s at %s: releases wait", county, channel_id)
                continue
            now = self.app.clock.now()
            ids = [f"{p.payment_id}/{p.returns}" for p, _ in items]
            batch_id = f"B-RL-{county}-{channel_id}-{short_hash(ids)}"
            for payment, account in items:
                payment.release(batch_id, account, now.isoformat(), meta)
            batch = BankBatch.assemble(
                batch_id=batch_id, run_id=run_id, county_code=county, period=items[0][0].period, channel=channel_id,
                purpose="release", payments=[(p.payment_id, p.amount_fen) for p, _ in items],
                requested_execution_date=requested_execution_date(channel, now), assembled_at=now.isoformat(),
                by=meta)
            try:
                self.app.save_unit([batch, *(p for p, _ in items)])
            except IntegrityError:
                continue  # released by another replica meanwhile
            self.engine.queue_file(batch, [p for p, _ in items])
            released += len(items)
        return released

    def submit_batches(self, meta: Meta) -> int:
        """Every batch not yet with its bank: its file (written again if lost) sent, the bank's
        answer read as a status report."""
        if self.bank is None:
            return 0
        sent = 0
        for doc in self._docs("batch"):
            if doc["submitted"]:
                continue
            path = self.engine.file_path(doc["batch_id"])
            if not path.exists():
                batch = self.app.get_batch(doc["batch_id"])
                self.engine.queue_file(batch, [self.app.get_payment(p) for p in batch.payment_ids])
                self.engine.wait_for_files()
            content = path.read_bytes()
            try:
                answer = self.bank.send(doc["channel"], path.name, content)
            except Exception as exc:  # noqa: BLE001 - the bank is down or slow: next time
                log.warning("payment: %s not sent to %s: %s", doc["batch_id"], doc["channel"], exc)
                continue
            maybe_crash("payment_after_send", "BankBatch")  # the fault tests' kill -9: the bank has it
            report = self.app.receive_status_report(doc["channel"], answer, meta)
            batch = self.app.get_batch(doc["batch_id"])
            group = report.get("group_status") or "ACTC"
            if batch.submit(path.name, hashlib.sha256(content).hexdigest(), group, self.app.clock.now().isoformat(),
                            meta):
                try:
                    self.app.save(batch)
                except IntegrityError:
                    continue
            sent += 1
        return sent

    def complete_runs(self, meta: Meta) -> int:
        n = 0
        for doc in self._docs("run"):
            if doc["status"] != "instructed":
                continue
            batches, by_channel, by_fund = run_totals(self.side, doc["run_id"])
            if not all(b["submitted"] for b in batches):
                continue
            run = self.app.get_run(doc["run_id"])
            run.complete(by_channel, by_fund, self.app.clock.now().isoformat(), meta)
            n += self._save(run)
        return n

    def reconcile_runs(self, meta: Meta) -> int:
        """A completed run is reconciled once every payment of it is settled or returned
        (a run whose statement leaves payments open is reported, not recorded, until then)."""
        n = 0
        for doc in self._docs("run"):
            if doc["status"] != "completed" or doc["reconciliation"]:
                continue
            report = reconciliation(self.app, self.side, doc["run_id"])
            if report["totals"]["pending"]["count"]:
                continue
            run = self.app.get_run(doc["run_id"])
            run.reconcile(report, self.app.clock.now().isoformat(), meta)
            n += self._save(run)
        return n

    def _save(self, run: PaymentRun) -> int:
        """1 when saved; 0 when another replica recorded the same step first."""
        try:
            self.app.save(run)
        except IntegrityError:
            return 0
        return 1


def run_totals(side: SideStore, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """A run's batches, and what it pays per channel (its own payments; every batch counted,
    release batches too) and per fund source."""
    with side.transaction() as tx:
        batches = tx.find("batch", run_id)
        funds = tx.find("run_fund", run_id)
    by_channel: dict[str, dict[str, int]] = {}
    for b in batches:
        line = by_channel.setdefault(b["channel"], {"count": 0, "total_fen": 0, "batches": 0})
        if b["purpose"] == "monthly":
            line["count"] += b["count"]
            line["total_fen"] += b["total_fen"]
        line["batches"] += 1
    by_fund = {f["fund_source"]: {"count": f["count"], "total_fen": f["total_fen"]} for f in funds}
    return batches, by_channel, by_fund


def _money(count: int = 0, total_fen: int = 0) -> dict[str, int]:
    return {"count": count, "total_fen": total_fen}


def reconciliation(app: Any, side: SideStore, run_id: str) -> dict[str, Any]:
    """instructed = settled + returned (held) + pending, per channel and in total, to the fen;
    every payment its bank's statement should have booked but did not, line by line; and the
    payments asked to be recalled."""
    with side.transaction() as tx:
        run = tx.get("run", run_id)
        batches = tx.find("batch", run_id)
    if run is None:
        raise LookupError(run_id)
    channels: dict[str, dict[str, dict[str, int]]] = {}
    for b in batches:
        line = channels.setdefault(b["channel"], {k: _money() for k in (
            "instructed", "reinstructed", "settled", "returned", "pending")})
        which = "reinstructed" if b["purpose"] == "release" else "instructed"
        for key, count, total in ((which, b["count"], b["total_fen"]),
                                  ("settled", b["settled"]["count"], b["settled"]["total_fen"]),
                                  ("returned", b["returned"]["count"], b["returned"]["total_fen"])):
            line[key]["count"] += count
            line[key]["total_fen"] += total
    for line in channels.values():
        for field in ("count", "total_fen"):
            line["pending"][field] = (line["instructed"][field] + line["reinstructed"][field]
                                      - line["settled"][field] - line["returned"][field])
    totals = {k: _money(sum(c[k]["count"] for c in channels.values()), sum(c[k]["total_fen"] for c in channels.values()))
              for k in ("instructed", "reinstructed", "settled", "returned", "pending")}
    # Held now: returned and not sent again.
    totals["held"] = _money(totals["returned"]["count"] - totals["reinstructed"]["count"],
                            totals["returned"]["total_fen"] - totals["reinstructed"]["total_fen"])
    differences: list[dict[str, Any]] = []
    for b in batches:
        if not b.get("statement_id"):
            continue  # no statement for this batch yet: its open payments are pending, not missing
        batch = app.get_batch(b["batch_id"])
        with side.transaction() as tx:
            for payment_id in batch.payment_ids:
                p = tx.get("payment", payment_id)
                if p is None or p["status"] != "instructed" or p["batch_id"] != b["batch_id"]:
                    continue
                differences.append({"payment_id": payment_id, "batch_id": b["batch_id"], "channel": b["channel"],
                                    "amount_fen": p["amount_fen"], "problem": "missing_from_statement",
                                    "statement_id": b["statement_id"]})
    with side.transaction() as tx:
        differences.extend({**r, "problem": "recall_requested"} for r in tx.find("recall", run_id))
        for message in tx.all("bank_message"):
            doc = message[3]
            for line in doc["unmatched"]:
                # A line about one of this run's payments that is still not settled (a statement
                # line Lifeline cannot tie to a payment is for an operator: GET /v1/bank-messages).
                p = tx.get("payment", line["end_to_end_id"]) if line.get("end_to_end_id") else None
                if p is not None and p["run_id"] == run_id and p["status"] != "settled":
                    differences.append({**line, "channel": doc["channel"], "message_id": doc["message_id"]})
    balanced = (totals["instructed"]["total_fen"] == totals["settled"]["total_fen"] + totals["held"]["total_fen"]
                + totals["pending"]["total_fen"]) and not differences
    return {"run_id": run_id, "county_code": run["county_code"], "period": run["period"], "balanced": balanced,
            "totals": totals, "by_channel": channels, "differences": differences}
