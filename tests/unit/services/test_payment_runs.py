"""Payment runs end to end on the real stores (SQLite files under tmp_path): bulk-saved
payments, batches and pain.001 files, crashes and replicas, budgets and approvals, benefit
changes and recalls, what the banks answer (pain.002, camt.053), releases after an account
correction, the township reserve fund.

`World` builds what the payment service runs with (bootstrap's SPEC, a SideStore, its
Projection, a RunEngine writing files in a thread) from a small bank-channels file whose
per-file limits are small enough for several batches per channel; test_payment_properties
builds its worlds with it too."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.domain.values import BankAccount
from lifeline.iso20022._xml import Iso20022Error, check_valid, parse_document
from lifeline.iso20022.camt053 import Balance, Statement, StatementEntry, build_camt053
from lifeline.iso20022.pain001 import parse_pain001
from lifeline.iso20022.pain002 import TransactionStatus, build_pain002
from lifeline.settings import Settings
from lifeline.stores.application import Bulk
from lifeline.stores.projection import Projection
from lifeline.stores.sidestore import SideStore
from services.payment import runs
from services.payment.application import PaymentApplication
from services.payment.bootstrap import SPEC
from services.payment.domain import (
    BankBatch, BankMessage, Entitlement, Payment, PaymentConflict, PaymentRun, ReserveFund, payment_id_of,
)
from services.payment.files import FileWriter
from services.payment.runs import Jobs, RunBusy, RunEngine, reconciliation

from . import SYSTEM, benefit_data, cloud, log_length, new_case_id, pid, stored, submitted_data

COUNTY = "370502"
OTHER_COUNTY = "370602"
VILLAGE = "370502101001"
OTHER_VILLAGE = "370602001001"
TOWNSHIP = "370502101"
NOW = "2026-12-01T09:00:00+08:00"
OFFICER = Meta("officer-001", "county_officer", COUNTY)
OTHER_OFFICER = Meta("officer-002", "county_officer", COUNTY)
PAIN001 = "pain.001.001.09"

# Every channel of the vocabulary must be configured. Small per-file limits give several
# batches per channel; BOC pays nothing in 370502 (no paying account there: skipped).
CHANNELS_YAML = """\
schema_version: 1
description: test channels with small file limits
channels:
  - channel_id: ICBC
    name: 中国工商银行
    bank_code: ICBKCNBJ
    max_transactions_per_file: 3
    single_pmtinf: false
    cutoff: "16:00"
    paying_accounts:
      - {county_code: "370502", account_number: "160200000000000101", account_name: 东营市东营区民政局}
      - {county_code: "370602", account_number: "160600000000000101", account_name: 烟台市芝罘区民政局}
  - channel_id: ABC
    name: 中国农业银行
    bank_code: ABOCCNBJ
    max_transactions_per_file: 5000
    single_pmtinf: false
    cutoff: "16:00"
    paying_accounts:
      - {county_code: "370502", account_number: "150200000000000102", account_name: 东营市东营区民政局}
  - channel_id: BOC
    name: 中国银行
    bank_code: BKCHCNBJ
    max_transactions_per_file: 5000
    single_pmtinf: false
    cutoff: "15:30"
    paying_accounts:
      - {county_code: "370602", account_number: "230600000000000103", account_name: 烟台市芝罘区民政局}
  - channel_id: CCB
    name: 中国建设银行
    bank_code: PCBCCNBJ
    max_transactions_per_file: 5000
    single_pmtinf: false
    cutoff: "16:00"
    paying_accounts:
      - {county_code: "370502", account_number: "370502000000000104", account_name: 东营市东营区民政局}
  - channel_id: BOCOM
    name: 交通银行
    bank_code: COMMCNSH
    max_transactions_per_file: 4
    single_pmtinf: true
    cutoff: "15:00"
    paying_accounts:
      - {county_code: "370502", account_number: "372000000000000105", account_name: 东营市东营区民政局}
  - channel_id: PSBC
    name: 中国邮政储蓄银行
    bank_code: PSBCCNBJ
    max_transactions_per_file: 5000
    single_pmtinf: true
    cutoff: "15:30"
    paying_accounts:
      - {county_code: "370502", account_number: "937002000000000106", account_name: 东营市东营区民政局}
  - channel_id: RCC
    name: 农村信用合作社
    bank_code: "402455000017"
    max_transactions_per_file: 2
    single_pmtinf: true
    cutoff: "14:30"
    paying_accounts:
      - {county_code: "370502", account_number: "902000000000000107", account_name: 东营市东营区民政局}
"""
LIMITS = {"ICBC": 3, "RCC": 2, "BOCOM": 4}

_numbers = itertools.count(1)


def account_number() -> str:
    """A fresh 19-digit household account number (distinct last four digits for a while)."""
    return f"622848{next(_numbers):013d}"


class FakeBank:
    """A bank channel that accepts every transaction of every file it is sent (Jobs.submit_batches)."""

    def __init__(self, clock: FixedClock):
        self.clock = clock
        self.received: list[tuple[str, str, bytes]] = []

    def send(self, channel_id: str, file_name: str, content: bytes) -> bytes:
        self.received.append((channel_id, file_name, content))
        batch = parse_pain001(content)
        return build_pain002(batch.msg_id, [TransactionStatus(t.end_to_end_id, "ACSC") for t in batch.transfers],
                             self.clock.now(), f"ACK-{batch.msg_id}"[:35])


class World:
    """One payment service replica on SQLite files under `root`; `replica()` is a second one on
    the same files (another process of the same deployment)."""

    def __init__(self, root: Path, *, cipher: bool = False, clock: FixedClock | None = None,
                 holder: str | None = None, unit_payments: int | None = None):
        self.root = root
        self.unit_payments = unit_payments  # None: the engine's own (whole batches up to 20 000 payments)
        channels = root / "bank-channels.yaml"
        if not channels.exists():
            channels.write_text(CHANNELS_YAML, encoding="utf-8")
        env = {"LIFELINE_DATA_DIR": str(root / "data"), "LIFELINE_BANK_CHANNELS_FILE": str(channels)}
        if cipher:
            env["LIFELINE_CIPHER_KEY"] = "test-cipher-key-for-payment-runs"
        self.settings = Settings.from_env(env)
        self.clock = clock or FixedClock(NOW)
        self.app: PaymentApplication = SPEC.application(self.settings, clock=self.clock)
        self.side = SideStore(self.settings, "payment")
        self.projection = Projection(self.app, self.side, SPEC.project, SPEC.views_version)
        self.projection.ensure_version()
        self.files_dir = root / "data" / "payment" / "files"
        self.writer = FileWriter(self.app.sealer)
        self.engine = self.new_engine(holder)
        self.sequence = itertools.count(1)
        self.numbers: dict[str, str] = {}  # entitlement id -> its account number now

    def new_engine(self, holder: str | None = None) -> RunEngine:
        unit = {} if self.unit_payments is None else {"unit_payments": self.unit_payments}
        return RunEngine(self.app, self.side, self.projection, self.writer, self.files_dir, holder=holder, **unit)

    def replica(self, holder: str | None = None) -> "World":
        return World(self.root, clock=self.clock, holder=holder, unit_payments=self.unit_payments)

    def close(self) -> None:
        self.writer.close()
        self.side.close()
        self.app.close()

    # --- consumed events ----------------------------------------------------------------
    def deliver(self, name: str, data: dict, subject: str, source: str = "lifeline/verification",
                **kw: Any) -> bool:
        event = cloud(name, data, subject=subject, source=source, **kw)
        return self.app.process_cloud_event(event)

    def sealed(self, channel: str, number: str, name: str = "王小明") -> dict[str, str]:
        return dataclasses.asdict(self.app.sealer.account(channel, number, name))

    def approve(self, channel: str = "ICBC", amount: int = 50000, *, benefit_type: str = "dibao",
                first_period: str = "2026-12", region_code: str = VILLAGE, case_id: str | None = None,
                number: str | None = None) -> str:
        """A monthly benefit approved (BenefitApproved consumed): its entitlement id."""
        case_id = case_id or new_case_id()
        benefit_id = f"B-{case_id[2:]}{next(self.sequence):06d}"
        number = number or account_number()
        account = self.sealed(channel, number)
        data = benefit_data(case_id, benefit_id, monthly_amount_fen=amount, benefit_type=benefit_type,
                            tier="B" if benefit_type == "dibao" else None, first_period=first_period,
                            bank_account=account, bank_account_ref=BankAccount(**account).ref,
                            household={"members_count": 1, "region_code": region_code, "area": "urban"})
        assert self.deliver("BenefitApproved", data, case_id)
        entitlement_id = "E-" + benefit_id.split("-", 1)[-1]
        self.numbers[entitlement_id] = number
        return entitlement_id

    def change(self, entitlement_id: str, change: str, from_period: str, amount: int | None = None,
               **kw: Any) -> Any:
        """The CloudEvent verification publishes for a change of the benefit (not delivered)."""
        e = self.app.get_entitlement(entitlement_id)
        name = {"adjust": "BenefitAdjusted", "suspend": "BenefitSuspended", "resume": "BenefitResumed",
                "terminate": "BenefitTerminated"}[change]
        data = {"case_id": e.case_id, "benefit_id": e.benefit_id, "from_period": from_period,
                "reason": f"{change} by the review", "decided_by": "reviewer-001",
                "decided_at": "2026-11-28T10:00:00+08:00"}
        if change == "adjust":
            data.update(monthly_amount_fen=amount, previous_monthly_amount_fen=e.monthly_amount_fen)
        return cloud(name, data, subject=e.case_id, source="lifeline/verification", **kw)

    # --- runs -----------------------------------------------------------------------------
    def budget(self, period: str, amount: int = 10**12, funds: tuple[str, ...] = ("dibao_fund", "tekun_fund"),
               county: str = COUNTY) -> None:
        for fund in funds:
            self.app.set_budget(county, period, fund, amount, OFFICER)
        self.projection.catch_up()

    def run(self, period: str, by: Meta = OFFICER, county: str = COUNTY,
            engine: RunEngine | None = None) -> PaymentRun:
        run, _ = self.app.start_run(county, period, by)
        return (engine or self.engine).advance(run.run_id, by)

    # --- what is stored -------------------------------------------------------------------
    def events(self, *types: type) -> list:
        return stored(self.app, *types)

    def instructed(self) -> Counter:
        """Instructed events per payment id, from the whole log."""
        return Counter(e.payment_id for e in self.events(Payment.Instructed))

    def batches(self, run_id: str | None = None) -> list[BankBatch.Assembled]:
        return [e for e in self.events(BankBatch.Assembled) if run_id is None or e.run_id == run_id]

    def files(self) -> dict[str, Any]:
        """Every pain.001 written, parsed (and so valid against the XSD), by batch id."""
        out = {}
        for path in sorted(self.files_dir.glob("*.xml")):
            content = path.read_bytes()
            check_valid(parse_document(content, PAIN001), PAIN001, incoming=True)
            parsed = parse_pain001(content)
            assert parsed.msg_id == path.stem
            out[path.stem] = parsed
        return out

    def doc(self, kind: str, key: str) -> dict | None:
        self.projection.catch_up()
        with self.side.transaction() as tx:
            return tx.get(kind, key)

    def paying_account(self, channel: str, county: str = COUNTY) -> str:
        return self.app.channels.paying_account(channel, county).account_number

    # --- the bank's answers -----------------------------------------------------------------
    def receive_report(self, channel: str, xml: bytes, meta: Meta = SYSTEM) -> dict[str, Any]:
        return self.app.receive_status_report(channel, xml, meta)

    def receive_statement(self, channel: str, xml: bytes, meta: Meta = SYSTEM) -> dict[str, Any]:
        return self.app.receive_statement(channel, xml, meta)

    def status_report(self, batch_id: str, statuses: list[tuple[str, str, str | None]], msg_id: str) -> bytes:
        return build_pain002(batch_id, [TransactionStatus(e2e, status, code) for e2e, status, code in statuses],
                             self.clock.now(), msg_id)

    def statement(self, channel: str, entries: list[tuple[str, int]], msg_id: str, *,
                  returns: dict[str, str] | None = None, county: str = COUNTY) -> bytes:
        """A camt.053 of the county's paying account at `channel`: a debit booked per (EndToEndId,
        amount), or a returned credit for those in `returns` (EndToEndId -> reason code)."""
        returns = returns or {}
        day = self.clock.now().date()
        items = tuple(StatementEntry(amount_fen=amount, credit_debit="CRDT" if e2e in returns else "DBIT",
                                     booking_date=day, end_to_end_id=e2e, return_reason=returns.get(e2e))
                      for e2e, amount in entries)
        total = sum(-i.amount_fen if i.credit_debit == "DBIT" else i.amount_fen for i in items)
        return build_camt053(Statement(msg_id=msg_id, statement_id=msg_id, created_at=self.clock.now(),
                                       account=self.paying_account(channel, county), entries=items,
                                       closing_balance=Balance(total, day)))


def submit_all(w: World, jobs: Jobs) -> int:
    """Jobs.submit_batches once the projection has caught up (as in the service): every batch is
    with its bank after it; how many there are."""
    w.projection.catch_up()
    sent = jobs.submit_batches(OFFICER)
    w.projection.catch_up()
    with w.side.transaction() as tx:
        docs = [doc for _, _, _, doc in tx.all("batch")]
    assert all(d["submitted"] for d in docs) and sent == len(docs)
    return len(docs)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def population(w: World, spec: dict[str, int], **kw: Any) -> dict[str, str]:
    """Entitlements per channel ({channel: how many}): entitlement id -> channel. Every third is
    tekun (another fund source), amounts differ."""
    only = kw.pop("benefit_type", None)
    out = {}
    n = 0
    for channel, count in spec.items():
        for _ in range(count):
            n += 1
            kind = only or ("tekun" if n % 3 == 0 else "dibao")
            out[w.approve(channel, 30000 + 137 * n, benefit_type=kind, **kw)] = channel
    return out


def all_instructed_once(w: World, entitlements: list[str], period: str) -> None:
    counts = w.instructed()
    for e in entitlements:
        assert counts[payment_id_of(e, period)] == 1, e
    assert max(counts.values()) == 1


def assert_numbered_without_gaps(batch_ids: list[str]) -> None:
    by_channel: dict[tuple[str, str], list[int]] = {}
    for batch_id in batch_ids:
        head, seq = batch_id.rsplit("-", 1)
        by_channel.setdefault((head.rsplit("-", 1)[0], head.rsplit("-", 1)[1]), []).append(int(seq))
    for key, seqs in by_channel.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), (key, seqs)


# === 1. bulk-saved payments decode as mapper-made ones ==========================================
def _instruction(i: int, run_id: str = "PR-370502-202612") -> dict[str, Any]:
    meta = Meta("officer-001", "county_officer", COUNTY, correlation_id=f"corr-{i}", causation_id=f"cause-{i}",
                reason="月度发放 «test» \"quoted\"")
    return Payment.instruction(
        entitlement_id=f"E-BULK{i:016d}", case_id=f"C-BULK{i:016d}", period="2026-12", amount_fen=123456 + i,
        fund_source="dibao_fund", channel="RCC", account_name="王小明·测试", number_sealed=f"sealed/{i}==",
        bank_account_ref="RCC:***************0001", region_code=VILLAGE, run_id=run_id,
        batch_id="B-370502-202612-RCC-0001", instructed_at=NOW, meta=meta.as_dict())


def plain_app(w: World) -> PaymentApplication:
    """Payment on a store without encryption (as in-memory test stores are; every configured
    store is encrypted, by default with the data directory's secret)."""
    from lifeline.stores.eventstore import event_store_env

    env = {k: v for k, v in event_store_env(w.settings, "payment").items()
           if k not in ("CIPHER_TOPIC", "CIPHER_KEY", "COMPRESSOR_TOPIC")}
    return SPEC.build(w.settings, w.clock, {**env, "SQLITE_DBNAME": str(w.root / "plain.events.sqlite")})


@pytest.mark.parametrize("cipher", [False, True], ids=["plain", "cipher+compressor"])
def test_bulk_saved_payments_decode_exactly_like_mapper_made_ones(tmp_path, cipher):
    w = World(tmp_path, cipher=cipher)
    app = w.app if cipher else plain_app(w)
    try:
        assert (app.mapper.cipher is not None) is cipher and (app.mapper.compressor is not None) is cipher
        moment = datetime.fromisoformat("2026-12-01T09:00:00.123456+08:00")
        items = [(Payment.create_id(s["payment_id"]), s) for s in (_instruction(i) for i in range(3))]
        bulk = Bulk(Payment.Instructed, moment, items)
        batch = BankBatch.assemble(batch_id="B-370502-202612-RCC-0001", run_id="PR-370502-202612",
                                   county_code=COUNTY, period="2026-12", channel="RCC", purpose="monthly",
                                   payments=[(s["payment_id"], s["amount_fen"]) for _, s in items],
                                   requested_execution_date="2026-12-01", assembled_at=NOW, by=OFFICER)
        before = log_length(app)
        app.save_unit([batch], bulk)
        assert log_length(app) == before + 4  # one transaction: the batch and three payments

        notifications = app.recorder.select_notifications(before + 1, 10)
        decoded = {n.originator_id: app.mapper.to_domain_event(n) for n in notifications}
        for i, (ident, state) in enumerate(items):
            expected = bulk.event(i)
            got = decoded[ident]
            assert type(got) is Payment.Instructed
            assert vars(got) == vars(expected)  # every field, the meta, the originator's id and version
            assert got.timestamp == moment and got.timestamp.utcoffset() == timedelta(hours=8)
            assert got.timestamp.isoformat() == expected.timestamp.isoformat()
            assert got.meta == state["meta"] and got.meta["reason"] == "月度发放 «test» \"quoted\""
            # What the generic mapper makes of the same event decodes to the same thing.
            via_mapper = app.mapper.to_domain_event(app.mapper.to_stored_event(expected))
            assert vars(via_mapper) == vars(got)
            # The aggregate the repository rebuilds.
            payment = app.repository.get(ident)
            assert isinstance(payment, Payment) and payment.version == 1
            assert payment.created_on == moment and payment.modified_on == moment
            for field in ("payment_id", "entitlement_id", "case_id", "period", "amount_fen", "fund_source",
                          "channel", "account_name", "number_sealed", "bank_account_ref", "region_code",
                          "run_id", "batch_id"):
                assert getattr(payment, field) == state[field], field
            assert (payment.status, payment.returns, payment.recall_requested) == ("instructed", 0, False)
        # The store refuses the same payments again, whole: nothing of a second unit is saved.
        again = BankBatch.assemble(batch_id="B-370502-202612-RCC-0002", run_id="PR-370502-202612",
                                   county_code=COUNTY, period="2026-12", channel="RCC", purpose="monthly",
                                   payments=[("x", 1)], requested_execution_date="2026-12-01", assembled_at=NOW,
                                   by=OFFICER)
        with pytest.raises(IntegrityError):
            app.save_unit([again], Bulk(Payment.Instructed, moment, items[:1]))
        assert log_length(app) == before + 4 and not app.existing([again.id])
    finally:
        if app is not w.app:
            app.close()
        w.close()


def test_bulk_saved_payments_of_a_run_are_read_back_by_a_second_replica_with_the_cipher(tmp_path):
    """The same deployment secret on another process: a run's bulk-saved payments load there."""
    w = World(tmp_path, cipher=True)
    try:
        e = w.approve("ICBC", 41234)
        w.budget("2026-12")
        run = w.run("2026-12")
        assert run.status == "instructed"
        other = World(tmp_path, cipher=True)
        try:
            payment = other.app.get_payment(payment_id_of(e, "2026-12"))
            assert (payment.amount_fen, payment.batch_id, payment.run_id) == (41234, run.batches[0], run.run_id)
            assert other.app.sealer.unseal(payment.number_sealed) == w.numbers[e]
        finally:
            other.close()
    finally:
        w.close()


# === 2. a run pays each entitlement once, in valid files ==========================================
def test_a_run_pays_each_entitlement_once_in_valid_files_per_channel(world):
    w = world
    spec = {"ICBC": 7, "RCC": 5, "BOCOM": 5, "BOC": 3}
    population_ = population(w, spec)
    paid = [e for e, c in population_.items() if c != "BOC"]
    w.budget("2026-12")
    run = w.run("2026-12")
    assert run.status == "instructed"

    all_instructed_once(w, paid, "2026-12")
    payments = {e.payment_id: e for e in w.events(Payment.Instructed)}
    assert set(payments) == {payment_id_of(e, "2026-12") for e in paid}  # BOC's: no paying account

    # The plan: what is paid, and what is skipped for want of a paying account.
    (planned,) = w.events(PaymentRun.Planned)
    assert planned.count == len(paid) and planned.total_fen == sum(p.amount_fen for p in payments.values())
    (skipped,) = planned.skipped
    assert (skipped["channel"], skipped["reason"], skipped["count"]) == ("BOC", "no_paying_account", 3)
    assert sum(v["count"] for v in planned.by_fund_source.values()) == len(paid)
    assert set(planned.by_fund_source) == {"dibao_fund", "tekun_fund"}

    # Files: one per batch, valid, within the channel's limit, paying exactly the run's payments.
    files = w.files()
    batches = w.batches(run.run_id)
    assert sorted(files) == sorted(b.batch_id for b in batches) == sorted(run.batches)
    assert_numbered_without_gaps(run.batches)
    expected_batches = {c: -(-n // LIMITS[c]) for c, n in spec.items() if c in LIMITS}
    assert Counter(b.channel for b in batches) == expected_batches
    e2e = [t.end_to_end_id for f in files.values() for t in f.transfers]
    assert len(e2e) == len(set(e2e)) and set(e2e) == set(payments)

    per_channel: dict[str, Counter] = {}
    for b in batches:
        f = files[b.batch_id]
        assert len(f.transfers) == b.count <= LIMITS[b.channel]
        assert [t.end_to_end_id for t in f.transfers] == b.payment_ids
        assert f.debtor_account == w.paying_account(b.channel)
        line = per_channel.setdefault(b.channel, Counter())
        line["count"] += len(f.transfers)
        line["total_fen"] += sum(t.amount_fen for t in f.transfers)
        for t in f.transfers:
            p = payments[t.end_to_end_id]
            assert (t.amount_fen, p.channel, p.batch_id) == (p.amount_fen, b.channel, b.batch_id)
            assert t.creditor_account == w.numbers[p.entitlement_id]  # unsealed only in the file
            assert t.remittance.startswith("2026-12 ")
    for channel, line in per_channel.items():
        in_run = [p for p in payments.values() if p.channel == channel]
        assert line == Counter(count=len(in_run), total_fen=sum(p.amount_fen for p in in_run))
    # The run's own figures agree with the files.
    assert run.count == len(paid) and run.total_fen == sum(p.amount_fen for p in payments.values())
    (instructed,) = w.events(PaymentRun.Instructed)
    assert (instructed.count, instructed.total_fen, instructed.batches) == (run.count, run.total_fen, len(files))
    doc = w.doc("run", run.run_id)
    assert (doc["status"], doc["count"], doc["total_fen"]) == ("instructed", run.count, run.total_fen)
    # Every file goes to the bank (the worker's job), once.
    bank = FakeBank(w.clock)
    assert submit_all(w, Jobs(w.engine, bank)) == len(files)
    assert sorted(name for _, name, _ in bank.received) == sorted(f"{b}.xml" for b in files)


def test_a_run_completes_when_the_bank_has_every_file_and_is_reconciled_when_every_payment_is_settled(world):
    w = world
    population_ = population(w, {"ICBC": 4, "RCC": 3})
    w.budget("2026-12")
    run = w.run("2026-12")
    jobs = Jobs(w.engine, FakeBank(w.clock))
    submit_all(w, jobs)
    assert jobs.complete_runs(OFFICER) == 1
    (completed,) = w.events(PaymentRun.Completed)
    payments = {p.payment_id: p for p in w.events(Payment.Instructed)}
    assert completed.count == len(population_) and completed.total_fen == run.total_fen
    assert {c: (v["count"], v["batches"]) for c, v in completed.by_channel.items()} == {"ICBC": (4, 2), "RCC": (3, 2)}
    assert sum(v["total_fen"] for v in completed.by_fund_source.values()) == run.total_fen
    w.projection.catch_up()
    assert jobs.complete_runs(OFFICER) == 0  # once
    # Reconciled only when no payment is open.
    ids = sorted(payments)
    w.receive_statement("ICBC", w.statement("ICBC", [(p, payments[p].amount_fen) for p in ids
                                                     if payments[p].channel == "ICBC"], "CAMT053-C1"))
    w.projection.catch_up()
    assert jobs.reconcile_runs(OFFICER) == 0
    w.receive_statement("RCC", w.statement("RCC", [(p, payments[p].amount_fen) for p in ids
                                                   if payments[p].channel == "RCC"], "CAMT053-C2"))
    w.projection.catch_up()
    assert jobs.reconcile_runs(OFFICER) == 1
    (reconciled,) = w.events(PaymentRun.Reconciled)
    assert reconciled.balanced is True and reconciled.differences == []
    w.projection.catch_up()
    assert jobs.reconcile_runs(OFFICER) == 0


# === 3. a period is run once ======================================================================
def test_starting_the_same_period_again_returns_the_run_and_advancing_again_adds_nothing(world):
    w = world
    population(w, {"ICBC": 4, "RCC": 3})
    w.budget("2026-12")
    first = w.run("2026-12")
    length = log_length(w.app)
    files = sorted(p.name for p in w.files_dir.glob("*"))

    again, started = w.app.start_run(COUNTY, "2026-12", OTHER_OFFICER)
    assert started is False and again.run_id == first.run_id and again.status == "instructed"
    assert again.started_by == OFFICER.user_id
    w.engine.advance(again.run_id, OTHER_OFFICER)
    w.new_engine().advance(again.run_id, OFFICER)
    w.replica().engine.advance(again.run_id, OFFICER)
    assert log_length(w.app) == length
    assert sorted(p.name for p in w.files_dir.glob("*")) == files
    assert len(w.events(PaymentRun.Started)) == 1


# === 4. a crash in the middle, resumed by another replica ========================================
@pytest.mark.parametrize("where", ["save_unit", "queue_file"])
def test_a_run_crashed_mid_way_is_resumed_by_another_replica_paying_each_once(world, monkeypatch, where):
    w = world
    population_ = population(w, {"ICBC": 7, "RCC": 5, "BOCOM": 5})
    w.budget("2026-12")
    w.unit_payments = 1  # a unit of work per batch
    crashing = w.new_engine("replica-a")
    monkeypatch.setattr(crashing, "_release", lambda run_id: None)  # the process died: the lease stays
    units = []

    if where == "save_unit":
        real = w.app.save_unit

        def save_unit(aggregates=(), bulk=None):
            if bulk is not None and bulk.event_class is Payment.Instructed:
                if len(units) == 2:
                    raise SystemExit("killed while saving the third unit")
                units.append(bulk)
            return real(aggregates, bulk)

        monkeypatch.setattr(w.app, "save_unit", save_unit)
    else:
        real_queue = crashing._queue_file

        def queue_file(batch, transfers, channel, account):
            units.append(batch.batch_id)
            if len(units) == 2:
                raise SystemExit("killed after the second unit was saved, before its file")
            return real_queue(batch, transfers, channel, account)

        monkeypatch.setattr(crashing, "_queue_file", queue_file)

    run, _ = w.app.start_run(COUNTY, "2026-12", OFFICER)
    with pytest.raises(SystemExit):
        crashing.advance(run.run_id, OFFICER)
    crashing.wait_for_files()
    monkeypatch.undo()
    half = w.app.get_run(run.run_id)
    assert half.status == "instructing" and len(half.batches) == 2
    assert sum(w.instructed().values()) == half.count

    replica = w.replica("replica-b")
    try:
        with pytest.raises(RunBusy):
            replica.engine.advance(run.run_id, OFFICER)
        # The dead replica's lease expires.
        later = runs.time.time() + runs.LEASE_SECONDS + 1
        monkeypatch.setattr(runs, "time", SimpleNamespace(time=lambda: later))
        resumed = replica.engine.advance(run.run_id, OFFICER)
        assert resumed.status == "instructed"
        all_instructed_once(w, list(population_), "2026-12")
        assert_numbered_without_gaps(resumed.batches)
        assert len(resumed.batches) == len(set(resumed.batches)) == 3 + 3 + 2
        assert sorted(b.batch_id for b in w.batches(run.run_id)) == sorted(resumed.batches)
        # The file lost in the crash is written again when the batches go to the bank.
        jobs = Jobs(replica.engine, FakeBank(w.clock))
        replica.projection.catch_up()
        assert submit_all(replica, jobs) == 8
        files = w.files()
        assert sorted(files) == sorted(resumed.batches)
        e2e = Counter(t.end_to_end_id for f in files.values() for t in f.transfers)
        assert e2e == Counter({payment_id_of(e, "2026-12"): 1 for e in population_})
    finally:
        replica.close()


# === 5. two replicas advance the same run at once ===============================================
def _advance_concurrently(engines: list[RunEngine], run_id: str) -> list[Any]:
    barrier = threading.Barrier(len(engines))
    outcomes: list[Any] = [None] * len(engines)

    def go(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = engines[i].advance(run_id, OFFICER).status
        except (RunBusy, PaymentConflict, IntegrityError) as exc:
            outcomes[i] = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcomes[i] = ("unexpected", exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


@pytest.mark.parametrize("holders", [("replica-a", "replica-b"), ("same", "same")],
                         ids=["two-leases", "lease-lost"])
def test_two_replicas_advancing_one_run_at_once_pay_each_entitlement_once(world, monkeypatch, holders):
    w = world
    population_ = population(w, {"ICBC": 10, "RCC": 6, "BOCOM": 6})
    w.budget("2026-12")
    w.unit_payments = 1
    a = w.replica(holders[0])
    b = w.replica(holders[1])
    try:
        run, _ = a.app.start_run(COUNTY, "2026-12", OFFICER)
        if holders[0] == holders[1]:
            # Lease lost: both hold it. Planned first, then both instruct at once.
            a.engine._plan(a.app.get_run(run.run_id), OFFICER).unlink()
        outcomes = _advance_concurrently([a.engine, b.engine], run.run_id)
        assert not [o for o in outcomes if isinstance(o, tuple)], outcomes
        a.engine.wait_for_files()
        b.engine.wait_for_files()
        # Whatever was left (a loser's exception) the worker's next pass finishes.
        final = w.new_engine().advance(run.run_id, OFFICER)
        assert final.status == "instructed"
        all_instructed_once(w, list(population_), "2026-12")
        assert len(final.batches) == len(set(final.batches))
        assert_numbered_without_gaps(final.batches)
        assert sorted(b_.batch_id for b_ in w.batches(run.run_id)) == sorted(final.batches)
        files = w.files()
        assert sorted(files) == sorted(final.batches)  # files = batches
        e2e = Counter(t.end_to_end_id for f in files.values() for t in f.transfers)
        assert e2e == Counter({payment_id_of(e, "2026-12"): 1 for e in population_})
        assert final.count == len(population_)
    finally:
        a.close()
        b.close()


# === 6. budgets and four eyes ====================================================================
def test_without_a_budget_the_run_waits_for_another_officers_approval(world):
    w = world
    population(w, {"ICBC": 2, "RCC": 1})
    run = w.run("2026-12")
    assert run.status == "awaiting_approval" and w.instructed() == Counter()
    (planned,) = w.events(PaymentRun.Planned)
    assert planned.needs_approval and all(line["budget_fen"] is None for line in planned.budget_check)
    assert not list((w.files_dir.parent / "spool").glob("*"))  # read again when approved
    # Advancing a run that waits does nothing.
    length = log_length(w.app)
    w.engine.advance(run.run_id, OFFICER)
    assert log_length(w.app) == length

    with pytest.raises(PaymentConflict) as exc:
        w.app.approve_run(run.run_id, "预算已追加", OFFICER)  # the officer who started it
    assert exc.value.rule == "four_eyes"
    assert w.app.get_run(run.run_id).status == "awaiting_approval"

    approved = w.app.approve_run(run.run_id, "预算已追加", OTHER_OFFICER)
    assert approved.status == "instructing" and approved.approved_by == OTHER_OFFICER.user_id
    done = w.engine.advance(run.run_id, OTHER_OFFICER)
    assert done.status == "instructed" and done.count == 3
    with pytest.raises(PaymentConflict) as exc:
        w.app.approve_run(run.run_id, "again", OTHER_OFFICER)
    assert exc.value.rule == "approval_not_needed"


@pytest.mark.parametrize("short_by, status", [(1, "awaiting_approval"), (0, "instructed")])
def test_a_budget_short_by_one_fen_needs_approval_and_an_exact_one_goes_straight_through(world, short_by, status):
    w = world
    population(w, {"ICBC": 3, "RCC": 3})  # dibao and tekun
    w.projection.catch_up()
    needed: Counter = Counter()
    with w.side.transaction() as tx:
        for kind in ("payable:370502:ICBC", "payable:370502:RCC"):
            for _, _, _, doc in tx.all(kind):
                needed[doc["fund_source"]] += doc["monthly_amount_fen"]
    assert set(needed) == {"dibao_fund", "tekun_fund"}
    w.app.set_budget(COUNTY, "2026-12", "dibao_fund", needed["dibao_fund"] - short_by, OFFICER)
    w.app.set_budget(COUNTY, "2026-12", "tekun_fund", needed["tekun_fund"], OFFICER)
    run = w.run("2026-12")
    assert run.status == status
    (planned,) = w.events(PaymentRun.Planned)
    checks = {line["fund_source"]: line for line in planned.budget_check}
    assert checks["dibao_fund"]["exceeds"] is bool(short_by)
    assert checks["dibao_fund"]["remaining_fen"] == needed["dibao_fund"] - short_by
    assert checks["tekun_fund"]["exceeds"] is False
    assert sum(w.instructed().values()) == (0 if short_by else 6)


def test_what_was_spent_in_the_period_counts_against_the_budget(world):
    """One-off relief instructed in the period already draws on the same county's budget."""
    w = world
    e = w.approve("ICBC", 50000)
    w.budget("2026-12", amount=50000, funds=("dibao_fund",))
    w.budget("2026-12", amount=10**9, funds=("tekun_fund",))
    # Something else of the county's dibao fund was paid this period already (one fen).
    state = Payment.instruction(
        entitlement_id="E-ELSEWHERE", case_id="C-ELSEWHERE", period="2026-12", amount_fen=1,
        fund_source="dibao_fund", channel="ICBC", account_name="某", number_sealed="x", bank_account_ref="r",
        region_code=VILLAGE, run_id="PR-other", batch_id="B-other", instructed_at=NOW, meta=SYSTEM.as_dict())
    w.app.save_unit([], Bulk(Payment.Instructed, w.clock.now(), [(Payment.create_id(state["payment_id"]), state)]))
    run = w.run("2026-12")
    assert run.status == "awaiting_approval"
    assert w.instructed()[payment_id_of(e, "2026-12")] == 0


# === 7. benefit changes ==========================================================================
def test_changes_decide_what_each_period_pays(world):
    w = world
    suspended, resumed_, adjusted, terminated, steady = (w.approve("ICBC", 40000 + i) for i in range(5))
    for change in (w.change(suspended, "suspend", "2026-12"), w.change(resumed_, "suspend", "2026-12"),
                   w.change(resumed_, "resume", "2027-01"), w.change(adjusted, "adjust", "2027-01", 55500),
                   w.change(terminated, "terminate", "2027-01")):
        assert w.app.process_cloud_event(change)
    for period in ("2026-12", "2027-01", "2027-02"):
        w.budget(period)
        assert w.run(period).status == "instructed"
    amounts = {(e.entitlement_id, e.period): e.amount_fen for e in w.events(Payment.Instructed)}
    assert amounts == {
        (resumed_, "2027-01"): 40001, (resumed_, "2027-02"): 40001,
        (adjusted, "2026-12"): 40002, (adjusted, "2027-01"): 55500, (adjusted, "2027-02"): 55500,
        (terminated, "2026-12"): 40003,
        (steady, "2026-12"): 40004, (steady, "2027-01"): 40004, (steady, "2027-02"): 40004,
    }
    assert w.app.get_entitlement(terminated).status == "terminated"
    assert w.app.get_entitlement(suspended).status == "suspended"
    # A termination is final: a resumption after it changes nothing.
    assert w.app.process_cloud_event(w.change(terminated, "resume", "2027-03"))
    assert w.app.get_entitlement(terminated).amount_for("2027-03") == 0
    w.budget("2027-03")
    w.run("2027-03")
    assert w.instructed()[payment_id_of(terminated, "2027-03")] == 0
    assert w.doc("entitlement", terminated)["status"] == "terminated"


def test_a_change_delivered_twice_is_recorded_once(world):
    w = world
    e = w.approve("ICBC", 40000)
    change = w.change(e, "suspend", "2027-01")
    assert w.app.process_cloud_event(change) is True
    length = log_length(w.app)
    assert w.app.process_cloud_event(change) is False  # redelivery of the same position
    assert log_length(w.app) == length
    # The same CloudEvent (same id) again through another partition (another position).
    again = dataclasses.replace(change, sequence=change.sequence + 100_000)
    assert w.app.process_cloud_event(again) is True
    assert len(w.events(Entitlement.Changed)) == 1
    assert w.app.get_entitlement(e).changes == [{"change": "suspend", "from_period": "2027-01",
                                                 "monthly_amount_fen": None}]
    assert w.doc("entitlement", e)["changes"] == w.app.get_entitlement(e).changes


def _instructed_then_terminated(w: World, via: str) -> tuple[str, str, PaymentRun]:
    """A payment for 2027-01 instructed; then the benefit stops from 2027-01 (a termination, or
    the death of the applicant in December) before the bank settles it."""
    case_id = new_case_id()
    applicant = pid(71)
    if via == "death":
        assert w.deliver("ApplicationSubmitted", submitted_data(case_id, [applicant, pid(72, female=True)]),
                         case_id, source="lifeline/intake")
    e = w.approve("ICBC", 45600, case_id=case_id)
    other = w.approve("ICBC", 45700)
    w.clock.set("2026-12-20T09:00:00+08:00")
    w.budget("2027-01")
    run = w.run("2027-01")
    assert run.status == "instructed" and w.instructed()[payment_id_of(e, "2027-01")] == 1
    if via == "death":
        event = cloud("DeathReported", {"record_id": "D-0001", "department": "public_security",
                                        "id_number": applicant, "name": "王小明", "date_of_death": "2026-12-15",
                                        "reported_at": "2026-12-20T08:00:00+08:00"},
                      subject="D-0001", source="partner/public_security")
    else:
        event = w.change(e, "terminate", "2027-01")
    assert w.app.process_cloud_event(event)
    assert w.app.process_cloud_event(event) is False
    assert w.app.process_cloud_event(dataclasses.replace(event, sequence=event.sequence + 100_000))
    return e, other, run


@pytest.mark.parametrize("via", ["termination", "death"])
def test_a_stop_after_instructing_asks_the_bank_to_recall_the_payment_once(world, via):
    w = world
    e, other, run = _instructed_then_terminated(w, via)
    payment = w.app.get_payment(payment_id_of(e, "2027-01"))
    assert payment.recall_requested is True and payment.status == "instructed"
    assert len(w.events(Payment.RecallRequested)) == 1
    assert len(w.events(Entitlement.Changed)) == 1
    (changed,) = w.events(Entitlement.Changed)
    assert (changed.change, changed.from_period, changed.ground) == (
        "terminate", "2027-01", "death" if via == "death" else "decision")
    assert w.app.get_payment(payment_id_of(other, "2027-01")).recall_requested is False
    assert w.doc("payment", payment_id_of(e, "2027-01"))["recall_requested"] is True
    # Never paid again, and a return of the recalled payment is not released.
    w.budget("2027-02")
    w.run("2027-02")
    assert w.instructed()[payment_id_of(e, "2027-02")] == 0
    assert w.instructed()[payment_id_of(other, "2027-02")] == 1


def test_the_reconciliation_lists_a_payment_asked_to_be_recalled(world):
    w = world
    e, _, run = _instructed_then_terminated(w, "termination")
    w.projection.catch_up()
    report = reconciliation(w.app, w.side, run.run_id)
    assert payment_id_of(e, "2027-01") in {d.get("payment_id") or d.get("end_to_end_id")
                                           for d in report["differences"]}
    assert report["balanced"] is False


def test_a_termination_recalls_a_payment_instructed_two_periods_ahead(world):
    w = world
    e = w.approve("ICBC", 45600, first_period="2026-12")
    w.budget("2027-02")
    w.run("2027-02")  # instructed ahead (e.g. before the Spring Festival), on 2026-12-01
    assert w.app.process_cloud_event(w.change(e, "terminate", "2027-01"))
    assert w.app.get_payment(payment_id_of(e, "2027-02")).recall_requested is True


# === 8. what the bank answers ===================================================================
def _instructed_run(w: World, spec: dict[str, int] | None = None) -> tuple[PaymentRun, dict[str, Payment]]:
    population(w, spec or {"ICBC": 5})
    w.budget("2026-12")
    run = w.run("2026-12")
    payments = {p: w.app.get_payment(p) for p in w.instructed()}
    return run, payments


def test_a_rejection_holds_the_payment_once_and_unknown_or_malformed_reports_change_nothing(world):
    w = world
    run, payments = _instructed_run(w)
    rejected = sorted(payments)[0]
    batch_id = payments[rejected].batch_id
    report = w.status_report(batch_id, [(rejected, "RJCT", "AC04")] +
                             [(p, "ACSC", None) for p in sorted(payments)[1:] if payments[p].batch_id == batch_id],
                             "PAIN002-0001")
    answer = w.receive_report("ICBC", report, SYSTEM)
    assert answer["duplicate"] is False and answer["applied"] == 1 and answer["unmatched"] == []
    payment = w.app.get_payment(rejected)
    assert (payment.status, payment.returns) == ("returned", 1)
    (returned,) = w.events(Payment.Returned)
    assert (returned.reason_code, returned.batch_id, returned.message_id) == ("AC04", batch_id, "PAIN002-0001")
    held = w.doc("held", rejected)
    assert held["reason_code"] == "AC04" and held["entitlement_id"] == payments[rejected].entitlement_id
    assert w.doc("payment", rejected)["status"] == "returned"
    assert all(w.app.get_payment(p).status == "instructed" for p in payments if p != rejected)

    # The same report again: a duplicate, nothing changes.
    length = log_length(w.app)
    again = w.receive_report("ICBC", report, SYSTEM)
    assert again["duplicate"] is True and log_length(w.app) == length

    # A report naming a transaction Lifeline never sent: kept for an operator, nothing else.
    unknown = w.status_report(batch_id, [("E-NOBODY-202612", "RJCT", "AC01")], "PAIN002-0002")
    answer = w.receive_report("ICBC", unknown, SYSTEM)
    assert answer["applied"] == 0
    assert log_length(w.app) == length + 1
    (message,) = [m for m in w.events(BankMessage.Received) if m.message_id == "PAIN002-0002"]
    assert message.unmatched == [{"end_to_end_id": "E-NOBODY-202612", "status": "RJCT", "reason_code": "AC01",
                                  "problem": "unknown_transaction"}]
    assert w.doc("bank_message", "ICBC:pain.002:PAIN002-0002")["unmatched"] == message.unmatched

    # Malformed: refused, nothing saved.
    length = log_length(w.app)
    for bad in (b"<Document><not-closed>", report.replace(b"RJCT", b"RJCTX"), b""):
        with pytest.raises(Iso20022Error):
            w.receive_report("ICBC", bad, SYSTEM)
        with pytest.raises(Iso20022Error):
            w.receive_statement("ICBC", bad, SYSTEM)
    assert log_length(w.app) == length


def test_a_statement_settles_once_and_a_wrong_amount_stays_open_and_is_reported(world):
    w = world
    run, payments = _instructed_run(w)
    ids = sorted(payments)
    wrong = ids[-1]
    entries = [(p, payments[p].amount_fen) for p in ids[:-1]] + [(wrong, payments[wrong].amount_fen + 1)]
    statement = w.statement("ICBC", entries, "CAMT053-0001")
    answer = w.receive_statement("ICBC", statement, SYSTEM)
    assert answer["duplicate"] is False and answer["applied"] == len(ids) - 1
    assert [(u["end_to_end_id"], u["problem"]) for u in answer["unmatched"]] == [(wrong, "amount_mismatch")]
    assert len(w.events(Payment.Settled)) == len(ids) - 1
    assert {w.app.get_payment(p).status for p in ids[:-1]} == {"settled"}
    assert w.app.get_payment(wrong).status == "instructed"

    length = log_length(w.app)
    assert w.receive_statement("ICBC", statement, SYSTEM)["duplicate"] is True
    assert log_length(w.app) == length
    # The same bookings in another statement (another MsgId): no second Settled.
    again = w.statement("ICBC", entries[:-1], "CAMT053-0002")
    assert w.receive_statement("ICBC", again, SYSTEM)["applied"] == 0
    assert len(w.events(Payment.Settled)) == len(ids) - 1

    w.projection.catch_up()
    report = reconciliation(w.app, w.side, run.run_id)
    assert report["balanced"] is False
    listed = [d for d in report["differences"] if (d.get("payment_id") or d.get("end_to_end_id")) == wrong]
    assert {d["problem"] for d in listed} >= {"amount_mismatch"}
    totals = report["totals"]
    assert totals["settled"]["count"] == len(ids) - 1 and totals["pending"]["count"] == 1
    assert totals["pending"]["total_fen"] == payments[wrong].amount_fen
    assert totals["instructed"]["total_fen"] == (totals["settled"]["total_fen"] + totals["held"]["total_fen"]
                                                 + totals["pending"]["total_fen"])


@pytest.mark.parametrize("kind", ["pain.002", "camt.053"])
def test_a_new_bank_message_is_answered_with_what_it_changed(world, kind):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 2})
    first, second = sorted(payments)
    if kind == "pain.002":
        xml = w.status_report(payments[first].batch_id, [(first, "RJCT", "AC04"), ("E-NOBODY-202612", "RJCT", "AC01")],
                              "PAIN002-ANSWER")
        receive = w.app.receive_status_report
    else:
        xml = w.statement("ICBC", [(first, payments[first].amount_fen), ("E-NOBODY-202612", 1)], "CAMT053-ANSWER")
        receive = w.app.receive_statement
    length = log_length(w.app)
    try:
        answer = receive("ICBC", xml, SYSTEM)
    finally:
        assert log_length(w.app) == length + 2  # the message and the payment it changed: saved either way
    assert answer["duplicate"] is False and answer["applied"] == 1
    assert [u["end_to_end_id"] for u in answer["unmatched"]] == ["E-NOBODY-202612"]


def test_the_reconciliation_of_one_county_does_not_list_another_countys_differences(world):
    w = world
    mine = w.approve("ICBC", 40000)
    theirs = w.approve("ICBC", 40001, region_code=OTHER_VILLAGE)
    w.budget("2026-12")
    w.budget("2026-12", county=OTHER_COUNTY)
    run = w.run("2026-12")
    w.run("2026-12", county=OTHER_COUNTY)
    theirs_id = payment_id_of(theirs, "2026-12")
    bad = w.statement("ICBC", [(theirs_id, 1)], "CAMT053-OTHER", county=OTHER_COUNTY)
    assert w.receive_statement("ICBC", bad, SYSTEM)["unmatched"]
    good = w.statement("ICBC", [(payment_id_of(mine, "2026-12"), 40000)], "CAMT053-MINE")
    assert w.receive_statement("ICBC", good, SYSTEM)["applied"] == 1
    w.projection.catch_up()
    report = reconciliation(w.app, w.side, run.run_id)
    assert report["differences"] == [] and report["balanced"] is True


def test_a_return_after_the_booking_is_not_dropped(world):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 1})
    (p,) = payments
    amount = payments[p].amount_fen
    assert w.receive_statement("ICBC", w.statement("ICBC", [(p, amount)], "CAMT053-D1"), SYSTEM)["applied"] == 1
    # Next day: the household's bank sends the money back (account closed).
    answer = w.receive_statement("ICBC", w.statement("ICBC", [(p, amount)], "CAMT053-D2", returns={p: "AC04"}),
                                     SYSTEM)
    assert w.app.get_payment(p).status == "returned" or [u["end_to_end_id"] for u in answer["unmatched"]] == [p]


# === 9. returned, corrected, released once ========================================================
def test_a_returned_payment_is_released_once_to_the_corrected_account_and_reconciles(world):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 4})
    ids = sorted(payments)
    rejected = ids[1]
    original = payments[rejected]
    w.receive_report("ICBC", w.status_report(original.batch_id, [(rejected, "RJCT", "AC04")],
                                                         "PAIN002-R1"), SYSTEM)
    jobs = Jobs(w.engine, None)
    w.projection.catch_up()
    assert jobs.release_held(OFFICER) == 0  # not corrected yet

    new_number = "6217001234567898888"
    w.clock.advance(timedelta(hours=2))  # the caseworker corrects it later that day
    w.app.correct_account(original.entitlement_id, {"channel": "PSBC", "account_number": new_number,
                                                    "account_name": "王小明"}, "原账户已销户", OFFICER)
    w.projection.catch_up()
    assert jobs.release_held(OFFICER) == 1
    w.engine.wait_for_files()
    w.projection.catch_up()
    length = log_length(w.app)
    assert jobs.release_held(OFFICER) == 0  # once
    assert log_length(w.app) == length

    payment = w.app.get_payment(rejected)
    (release,) = [b for b in w.batches() if b.purpose == "release"]
    assert payment.status == "instructed" and payment.batch_id == release.batch_id
    assert (release.channel, release.run_id, release.payment_ids, release.total_fen) == (
        "PSBC", run.run_id, [rejected], original.amount_fen)
    assert len(w.events(Payment.Released)) == 1
    (f,) = [f for b, f in w.files().items() if b == release.batch_id]
    (t,) = f.transfers
    assert (t.end_to_end_id, t.amount_fen, t.creditor_account) == (rejected, original.amount_fen, new_number)
    assert f.debtor_account == w.paying_account("PSBC")
    assert w.doc("held", rejected) is None and w.doc("payment", rejected)["batch_id"] == release.batch_id

    # The statements book the others at ICBC and the released one at PSBC.
    others = [(p, payments[p].amount_fen) for p in ids if p != rejected]
    assert w.receive_statement("ICBC", w.statement("ICBC", others, "CAMT053-I1"), SYSTEM)["applied"] == 3
    assert w.receive_statement("PSBC", w.statement("PSBC", [(rejected, original.amount_fen)], "CAMT053-P1"),
                                   SYSTEM)["applied"] == 1
    w.projection.catch_up()
    report = reconciliation(w.app, w.side, run.run_id)
    totals = report["totals"]
    assert totals["instructed"] == {"count": 4, "total_fen": run.total_fen}
    assert totals["reinstructed"] == {"count": 1, "total_fen": original.amount_fen}
    assert totals["settled"] == {"count": 4, "total_fen": run.total_fen}
    assert totals["held"] == totals["pending"] == {"count": 0, "total_fen": 0}
    assert totals["instructed"]["total_fen"] == (totals["settled"]["total_fen"] + totals["held"]["total_fen"]
                                                 + totals["pending"]["total_fen"])
    assert report["balanced"] is True and report["differences"] == []


def test_a_file_refused_whole_holds_every_payment_of_its_batch_once(world):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 5})  # batches of 3 and 2
    first, second = run.batches
    report = build_pain002(first, [], w.clock.now(), "PAIN002-WHOLE", group_status="RJCT", group_reason_code="FF01")
    answer = w.receive_report("ICBC", report)
    assert answer["group_status"] == "RJCT" and answer["applied"] == 3
    returned = {p for p, x in payments.items() if w.app.get_payment(p).status == "returned"}
    assert returned == {p for p, x in payments.items() if x.batch_id == first}
    assert {e.reason_code for e in w.events(Payment.Returned)} == {"FF01"}
    assert w.receive_report("ICBC", report)["duplicate"] is True
    assert len(w.events(Payment.Returned)) == 3


def test_a_rejection_of_the_batch_before_the_release_changes_nothing(world):
    """The bank sends the first rejection again, under another MsgId, after the payment went
    again in a release batch: it is about the earlier batch, so nothing changes."""
    w = world
    run, payments = _instructed_run(w, {"ICBC": 2})
    p = sorted(payments)[0]
    original = payments[p].batch_id
    w.receive_report("ICBC", w.status_report(original, [(p, "RJCT", "AC04")], "PAIN002-S1"))
    w.clock.advance(timedelta(hours=1))
    w.app.correct_account(payments[p].entitlement_id, {"channel": "ICBC", "account_number": "6222000011112222333",
                                                       "account_name": "王小明"}, "换卡", OFFICER)
    w.projection.catch_up()
    assert Jobs(w.engine, None).release_held(OFFICER) == 1
    w.engine.wait_for_files()
    length = log_length(w.app)
    answer = w.receive_report("ICBC", w.status_report(original, [(p, "RJCT", "AC04")], "PAIN002-S2"))
    assert answer["applied"] == 0 and answer["unmatched"] == []
    assert log_length(w.app) == length + 1  # the message only
    payment = w.app.get_payment(p)
    assert payment.status == "instructed" and payment.batch_id != original and payment.returns == 1


def test_the_death_of_another_member_stops_nothing(world):
    w = world
    case_id = new_case_id()
    applicant, member = pid(81), pid(82, female=True)
    assert w.deliver("ApplicationSubmitted", submitted_data(case_id, [applicant, member]), case_id,
                     source="lifeline/intake")
    e = w.approve("ICBC", 45600, case_id=case_id)
    death = cloud("DeathReported", {"record_id": "D-0002", "department": "civil_affairs", "id_number": member,
                                    "name": "李红", "date_of_death": "2026-12-15",
                                    "reported_at": "2026-12-20T08:00:00+08:00"},
                  subject="D-0002", source="partner/civil_affairs")
    assert w.app.process_cloud_event(death)
    assert w.events(Entitlement.Changed) == [] and w.app.get_entitlement(e).status == "active"
    # Someone Lifeline does not pay: nothing at all.
    length = log_length(w.app)
    stranger = cloud("DeathReported", {"record_id": "D-0003", "department": "civil_affairs", "id_number": pid(99),
                                       "name": "某", "date_of_death": "2026-12-15",
                                       "reported_at": "2026-12-20T08:00:00+08:00"},
                     subject="D-0003", source="partner/civil_affairs")
    assert w.app.process_cloud_event(stranger)
    assert w.events(Entitlement.Changed) == [] and log_length(w.app) == length


def test_a_booking_of_a_held_payment_leaves_the_reconciliation_consistent(world):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 2})
    p = sorted(payments)[0]
    w.receive_report("ICBC", w.status_report(payments[p].batch_id, [(p, "RJCT", "AC04")], "PAIN002-X1"))
    # A statement that (wrongly, or late) books the rejected transfer anyway.
    w.receive_statement("ICBC", w.statement("ICBC", [(p, payments[p].amount_fen)], "CAMT053-X1"))
    w.projection.catch_up()
    totals = reconciliation(w.app, w.side, run.run_id)["totals"]
    statuses = Counter(w.app.get_payment(x).status for x in payments)
    assert totals["held"]["count"] == statuses["returned"]
    assert totals["settled"]["count"] == statuses["settled"]
    assert totals["pending"]["count"] == statuses["instructed"] and totals["pending"]["total_fen"] >= 0


def test_a_held_payment_is_counted_held_until_released(world):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 3})
    ids = sorted(payments)
    w.receive_report("ICBC", w.status_report(payments[ids[0]].batch_id, [(ids[0], "RJCT", "AC04")],
                                                         "PAIN002-H1"), SYSTEM)
    w.receive_statement("ICBC", w.statement("ICBC", [(p, payments[p].amount_fen) for p in ids[1:]],
                                                "CAMT053-H1"), SYSTEM)
    w.projection.catch_up()
    totals = reconciliation(w.app, w.side, run.run_id)["totals"]
    assert totals["held"] == {"count": 1, "total_fen": payments[ids[0]].amount_fen}
    assert totals["settled"]["count"] == 2 and totals["pending"]["count"] == 0
    assert totals["instructed"]["total_fen"] == (totals["settled"]["total_fen"] + totals["held"]["total_fen"]
                                                 + totals["pending"]["total_fen"])


def test_a_payment_returned_for_the_name_is_released_after_the_name_is_corrected(world):
    w = world
    run, payments = _instructed_run(w, {"ICBC": 1})
    (p,) = payments
    e = payments[p].entitlement_id
    w.receive_report("ICBC", w.status_report(payments[p].batch_id, [(p, "RJCT", "BE01")],
                                                         "PAIN002-BE01"), SYSTEM)
    w.app.correct_account(e, {"channel": "ICBC", "account_number": w.numbers[e], "account_name": "王晓明"},
                          "户名与账户不符，已更正", OFFICER)
    w.projection.catch_up()
    assert Jobs(w.engine, None).release_held(OFFICER) == 1


# === 10. the township reserve fund =================================================================
RELIEF_ACCOUNT = {"channel": "ICBC", "account_number": "6222021234567890123", "account_name": "李红"}


def test_an_advance_beyond_the_reserve_funds_balance_is_refused(world):
    w = world
    with pytest.raises(PaymentConflict) as exc:
        w.app.advance_relief(TOWNSHIP, "C-R1", 100, RELIEF_ACCOUNT, OFFICER)
    assert exc.value.rule == "reserve_fund_balance"
    w.app.replenish(TOWNSHIP, 100000, "拨付-2026-12", OFFICER)
    assert w.app.replenish(TOWNSHIP, 100000, "拨付-2026-12", OFFICER).balance_fen == 100000  # same reference
    length = log_length(w.app)
    with pytest.raises(PaymentConflict) as exc:
        w.app.advance_relief(TOWNSHIP, "C-R1", 100001, RELIEF_ACCOUNT, OFFICER)
    assert exc.value.rule == "reserve_fund_balance"
    assert log_length(w.app) == length
    done = w.app.advance_relief(TOWNSHIP, "C-R1", 100000, RELIEF_ACCOUNT, OFFICER)
    assert done["balance_fen"] == 0
    payment = w.app.get_payment(done["payment_id"])
    assert (payment.amount_fen, payment.fund_source, payment.batch_id) == (
        100000, "township_reserve_fund", done["batch_id"])
    assert w.doc("reserve_fund", TOWNSHIP)["balance_fen"] == 0
    with pytest.raises(PaymentConflict):
        w.app.advance_relief(TOWNSHIP, "C-R2", 1, RELIEF_ACCOUNT, OFFICER)


def test_two_replicas_advancing_at_once_never_take_the_fund_below_zero(world):
    w = world
    w.app.replenish(TOWNSHIP, 150000, "拨付-2026-12", OFFICER)
    replicas = [w.replica() for _ in range(2)]
    try:
        for attempt in range(3):  # two advances of 100000 each: only one fits
            barrier = threading.Barrier(2)
            outcomes: list[Any] = [None, None]

            def go(i: int) -> None:
                barrier.wait()
                try:
                    outcomes[i] = replicas[i].app.advance_relief(TOWNSHIP, f"C-R{attempt}{i}", 100000,
                                                                 RELIEF_ACCOUNT, OFFICER)
                except PaymentConflict as exc:
                    outcomes[i] = exc.rule

            threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            if attempt == 0:
                wins = [o for o in outcomes if isinstance(o, dict)]
                assert len(wins) == 1, outcomes
                assert [o for o in outcomes if not isinstance(o, dict)] == ["reserve_fund_balance"]
                assert wins[0]["balance_fen"] == 50000
            else:
                assert outcomes == ["reserve_fund_balance"] * 2
        fund = w.app.repository.get(ReserveFund.create_id(TOWNSHIP))
        assert fund.balance_fen == 50000
        advances = w.events(ReserveFund.Advanced)
        assert len(advances) == 1 and all(a.balance_fen >= 0 for a in advances)
        assert len([p for p in w.events(Payment.Instructed) if p.fund_source == "township_reserve_fund"]) == 1
    finally:
        for r in replicas:
            r.close()


# === bugs of the run itself ==========================================================================
def test_a_resumed_run_pays_only_what_was_planned(world, monkeypatch):
    w = world
    population(w, {"ICBC": 4}, benefit_type="dibao")
    w.projection.catch_up()
    with w.side.transaction() as tx:
        needed = sum(doc["monthly_amount_fen"] for _, _, _, doc in tx.all("payable:370502:ICBC"))
    w.app.set_budget(COUNTY, "2026-12", "dibao_fund", needed, OFFICER)  # exactly enough
    w.app.set_budget(COUNTY, "2026-12", "tekun_fund", needed, OFFICER)
    w.unit_payments = 1
    crashing = w.new_engine("replica-a")
    real = crashing._queue_file

    def queue_file(*args):
        real(*args)
        raise SystemExit("killed after the first unit")

    monkeypatch.setattr(crashing, "_queue_file", queue_file)
    run, _ = w.app.start_run(COUNTY, "2026-12", OFFICER)
    with pytest.raises(SystemExit):
        crashing.advance(run.run_id, OFFICER)
    monkeypatch.undo()
    late = w.approve("ICBC", 99999)  # approved after the plan
    w.projection.catch_up()
    resumed = w.new_engine("replica-b").advance(run.run_id, OFFICER)
    planned = resumed.planned
    assert resumed.count == planned["count"] and resumed.total_fen == planned["total_fen"] <= needed
    assert w.instructed()[payment_id_of(late, "2026-12")] == 0


def test_the_lease_is_held_for_as_long_as_the_run_advances(world, monkeypatch):
    w = world
    population(w, {"ICBC": 15})  # five batches
    w.budget("2026-12")
    w.unit_payments = 1
    moment = [runs.time.time()]
    monkeypatch.setattr(runs, "time", SimpleNamespace(time=lambda: moment[0]))
    first, second = w.new_engine("replica-a"), w.new_engine("replica-b")
    taken = []
    real = first._queue_file

    def queue_file(*args):
        real(*args)
        moment[0] += runs.LEASE_SECONDS / 2 - 1  # each unit of work takes half a lease
        taken.append(second._take(run.run_id))

    monkeypatch.setattr(first, "_queue_file", queue_file)
    run, _ = w.app.start_run(COUNTY, "2026-12", OFFICER)
    first.advance(run.run_id, OFFICER)
    assert len(taken) == 5 and not any(taken)


def test_advance_returns_the_run_as_it_left_it_after_a_collision(world, monkeypatch):
    w = world
    population(w, {"ICBC": 2})
    w.budget("2026-12")
    real = w.app.save_unit
    collided = []

    def save_unit(aggregates=(), bulk=None):
        if bulk is not None and not collided:
            collided.append(True)
            raise IntegrityError("another writer saved first")
        return real(aggregates, bulk)

    monkeypatch.setattr(w.app, "save_unit", save_unit)
    run = w.run("2026-12")
    in_store = w.app.get_run(run.run_id)
    assert collided and (in_store.status, in_store.count) == ("instructed", 2)
    assert (run.status, run.count, run.version) == (in_store.status, in_store.count, in_store.version)


@pytest.mark.parametrize("change, amount", [("resume", None), ("adjust", 61000)])
def test_a_change_that_still_pays_the_period_does_not_recall_its_payment(world, change, amount):
    w = world
    e = w.approve("ICBC", 50000)
    w.budget("2027-01")
    w.run("2027-01")
    assert w.app.process_cloud_event(w.change(e, change, "2027-01", amount))
    assert w.app.get_entitlement(e).amount_for("2027-01") > 0
    assert w.app.get_payment(payment_id_of(e, "2027-01")).recall_requested is False


def test_the_files_of_a_run_are_a_pure_function_of_its_batches(world):
    """A file lost is written again byte for byte (the submitter may have sent the first)."""
    w = world
    run, payments = _instructed_run(w, {"ICBC": 4, "RCC": 3})
    before = {p.name: p.read_bytes() for p in w.files_dir.glob("*.xml")}
    for path in w.files_dir.glob("*.xml"):
        path.unlink()
    w.projection.catch_up()
    assert submit_all(w, Jobs(w.engine, FakeBank(w.clock))) == len(before)
    after = {p.name: p.read_bytes() for p in w.files_dir.glob("*.xml")}
    assert after == before
    assert all(w.doc("batch", b)["submitted"] for b in run.batches)


def test_one_off_relief_is_paid_once_by_the_worker(world):
    w = world
    case_id = new_case_id()
    account = w.sealed("RCC", "6228480000000012345")
    data = benefit_data(case_id, "B-ONEOFF0000000000001", kind="one_off", benefit_type="linshi_jinan", tier=None,
                        monthly_amount_fen=None, one_off_amount_fen=200000, fund_source="temporary_relief_budget",
                        first_period="2026-12", bank_account=account, bank_account_ref=BankAccount(**account).ref)
    assert w.deliver("BenefitApproved", data, case_id)
    w.projection.catch_up()
    jobs = Jobs(w.engine, None)
    assert jobs.pay_one_offs(OFFICER) == 1
    w.engine.wait_for_files()
    assert jobs.pay_one_offs(OFFICER) == 0  # the read model still lists it: the store refuses it
    w.projection.catch_up()
    assert jobs.pay_one_offs(OFFICER) == 0
    (p,) = w.events(Payment.Instructed)
    assert (p.payment_id, p.amount_fen, p.fund_source) == ("E-ONEOFF0000000000001-202612", 200000,
                                                          "temporary_relief_budget")
    (f,) = w.files().values()
    assert [t.creditor_account for t in f.transfers] == ["6228480000000012345"]
    # A monthly run of the period does not pay it again.
    w.budget("2026-12")
    w.run("2026-12")
    assert w.instructed() == Counter({p.payment_id: 1})


def test_batch_numbers_and_dates(world):
    """Batch ids name the run, the channel and a number; the requested execution date is the
    day itself before the cut-off on a working day, else the next working day."""
    w = world
    population(w, {"RCC": 3})
    w.budget("2026-12")
    w.clock.set("2026-12-01T15:00:00+08:00")  # after RCC's 14:30 cut-off, a Tuesday
    run = w.run("2026-12")
    assert run.batches == ["B-370502-202612-RCC-0001", "B-370502-202612-RCC-0002"]
    dates = {b.requested_execution_date for b in w.batches()}
    assert dates == {"2026-12-02"}
    assert date.fromisoformat("2026-12-02").weekday() == 2
