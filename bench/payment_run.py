"""A monthly payment run: N active entitlements paid from start to every pain.001 written.

    .venv/bin/python bench/payment_run.py --entitlements 1000000
    .venv/bin/python bench/payment_run.py --entitlements 100000 --database postgres

What is measured
  setup     a PaymentApplication on its real event store (SQLite under a temp data dir,
            or a PostgreSQL schema) holding N monthly entitlements across the shipped
            bank channels, each opened by `Entitlement.from_benefit` with its own sealed
            account, and payment's read models projected from them (what a run reads).
            Budgets for the period are set so the run does not wait for an approval.
            Reported, not part of the figure.
  run       `PaymentApplication.start_run` + `RunEngine.advance` (services/payment/runs.py),
            exactly what `POST /v1/payment-runs` does, until every file is written: the
            plan (a pass over the read model and the budget check), then per bank batch
            one transaction of Payment.Instructed events + BankBatch + the run's BatchAdded,
            and the pain.001 files (accounts unsealed, each validated against the XSD)
            written by the file-writer process on the other core.
  baseline  the same payments made the way a command makes an aggregate: the entitlement
            loaded from the store (`repository.get`), its amount for the period, one Payment
            aggregate created and saved per transaction (`app.save`); a sample of the same
            entitlements in the same store, for another period; no files.
  ratio     run rate / baseline rate.
  peak RSS  of this process and of its children (the file writer), max of each, summed.

The last line is the figure: `payment run: N entitlements in S s = R/s; ...`.
"""

from __future__ import annotations

import argparse
import cProfile
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from lifeline.domain.aggregate import Meta  # noqa: E402
from lifeline.domain.values import Benefit  # noqa: E402
from lifeline.rules.vocabulary import BANK_CHANNELS  # noqa: E402
from lifeline.stores.projection import Projection  # noqa: E402
from lifeline.stores.sealing import sealer_for  # noqa: E402
from lifeline.stores.sidestore import SideStore  # noqa: E402
from services.payment.domain import Entitlement, Payment  # noqa: E402
from services.payment.files import FileWriter  # noqa: E402
from services.payment.runs import RunEngine  # noqa: E402

COUNTY = "370502"
PERIOD = "2026-12"
OFFICER = Meta("officer-bench", "county_officer", COUNTY)
SYSTEM = Meta("system:payment", "system")


def seed(app, side: SideStore, projection: Projection, sealer, n: int, chunk: int = 5000) -> float:
    t0 = time.perf_counter()
    channels = list(BANK_CHANNELS)
    accounts = [sealer.account(channels[i % len(channels)], f"6228480{i:012d}", "王建国") for i in range(1000)]
    for start in range(0, n, chunk):
        batch = []
        for i in range(start, min(n, start + chunk)):
            benefit = Benefit(kind="monthly", benefit_id=f"B-{i:020X}", benefit_type="dibao" if i % 10 else "tekun",
                              tier=None, monthly_amount_fen=30000 + i % 20000, one_off_amount_fen=None,
                              fund_source=None, first_period="2026-06", approval_level="township",
                              approving_body="东营区某街道", approved_at="2026-05-20T10:00:00+08:00")
            account = accounts[i % len(accounts)]
            batch.append(Entitlement.from_benefit(f"C-{i:020X}", benefit, account, account.ref,
                                                  f"{COUNTY}101001", "2026-05-20T10:00:00+08:00", SYSTEM))
        app.save_unit(batch)
    projection.catch_up(batch_size=5000)
    for fund in ("dibao_fund", "tekun_fund"):
        app.set_budget(COUNTY, PERIOD, fund, 10**15, OFFICER)
    projection.catch_up()
    return time.perf_counter() - t0


def baseline(app, side: SideStore, sample: int) -> float:
    """One Payment aggregate per transaction, for another period."""
    docs = []
    for kind in (f"payable:{COUNTY}:{c}" for c in BANK_CHANNELS):
        for _, doc in side.scan(kind):
            docs.append(doc)
            if len(docs) >= sample:
                break
        if len(docs) >= sample:
            break
    t0 = time.perf_counter()
    for doc in docs:
        entitlement = app.get_entitlement(doc["entitlement_id"])
        account = entitlement.bank_account
        state = Payment.instruction(
            entitlement_id=entitlement.entitlement_id, case_id=entitlement.case_id, period="2027-01",
            amount_fen=entitlement.amount_for("2027-01"), fund_source=entitlement.payment_fund_source,
            channel=account.channel, account_name=account.account_name, number_sealed=account.number_sealed,
            bank_account_ref=account.ref, region_code=entitlement.region_code, run_id="PR-baseline",
            batch_id="B-baseline", instructed_at="2027-01-01T09:00:00+08:00", meta=SYSTEM.as_dict())
        app.save(Payment._create(Payment.Instructed, id=Payment.create_id(state["payment_id"]), **state))
    return len(docs) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entitlements", type=int, default=100_000)
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--baseline-sample", type=int, default=5000, help="payments saved one per transaction")
    p.add_argument("--writers", type=int, default=1, help="file-writer processes (0: a thread)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--unit-payments", type=int, default=None,
                   help="payments committed per transaction (default: LIFELINE_PAYMENT_UNIT_PAYMENTS's)")
    p.add_argument("--profile", metavar="FILE", help="write the run's cProfile stats to FILE")
    args = p.parse_args()
    n = args.entitlements
    root = Path(tempfile.mkdtemp(prefix="lifeline-bench-payment-", dir="/tmp"))
    root.chmod(0o711)
    pg = None
    try:
        print(C.machine_line())
        settings, app, side, projection, pg = C.payment_store(root, args.database)
        sealer = sealer_for(settings)
        print(f"setup: seeding {n:,} entitlements ({args.database}) ...", flush=True)
        seeded = seed(app, side, projection, sealer, n)
        print(f"setup: {n:,} entitlements and their read models in {seeded:.1f} s", flush=True)

        files_dir = root / "data" / "payment" / "files"
        engine = RunEngine(app, side, projection, FileWriter(sealer, processes=args.writers), files_dir,
                           unit_payments=args.unit_payments or settings.payment_unit_payments)
        profiler = cProfile.Profile() if args.profile else None
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        run, _ = app.start_run(COUNTY, PERIOD, OFFICER)
        run = engine.advance(run.run_id, OFFICER)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        engine.writer.close()
        run = app.get_run(run.run_id)
        files = len(list(files_dir.glob("*.xml")))
        assert run.status == "instructed", run.status
        assert run.count == n, (run.count, n)
        rate = n / elapsed
        print(f"run: {run.count:,} payments, {run.total_fen / 100:,.2f} yuan, {len(run.batches)} batches, "
              f"{files} files in {elapsed:.1f} s (this process's CPU {cpu:.1f} s)", flush=True)

        base = baseline(app, side, min(args.baseline_sample, n))
        print(f"baseline: one Payment aggregate per transaction: {base:,.0f}/s "
              f"({min(args.baseline_sample, n):,} payments)", flush=True)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        side.close()
        app.close()
        # The issue's line, numbers without separators: other teams' checks parse it.
        print(f"payment run: {n} entitlements in {elapsed:.1f} s = {rate:.0f}/s; one-aggregate-per-transaction "
              f"baseline {base:.0f}/s; ratio {rate / base:.1f}; peak RSS {own + children:.0f} MB; files {files}")
    finally:
        if pg is not None:
            pg.stop()
        C.keep_or_remove(root, args.keep)


if __name__ == "__main__":
    main()
