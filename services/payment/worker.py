"""Payment's background loop (a `ServiceSpec.workers` entry): every `payment_scan_seconds`,
or at once when a route wakes it, runs go on, one-off relief is paid, corrected returns
are released, files go to their banks, runs complete and are reconciled (`runs.Jobs`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lifeline.domain.aggregate import Meta
from lifeline.runtime.service import nap
from services.payment.files import FileWriter
from services.payment.runs import BankClient, Jobs, RunEngine

if TYPE_CHECKING:
    from lifeline.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

SYSTEM = Meta("system:payment", "system")


def files_dir(runtime: ServiceRuntime) -> Path:
    """Where the bank files are kept (shared storage when payment runs on several hosts)."""
    return runtime.settings.data_dir / "payment" / "files"


def jobs_of(runtime: ServiceRuntime) -> Jobs:
    """The process's one engine (its lease holder id) and jobs, built at first use."""
    jobs = getattr(runtime, "payment_jobs", None)
    if jobs is None:
        app = runtime.app
        engine = RunEngine(app, runtime.side, runtime.projection,
                           FileWriter(app.sealer, processes=runtime.settings.payment_file_processes),
                           files_dir(runtime), unit_payments=runtime.settings.payment_unit_payments)
        jobs = Jobs(engine, BankClient(runtime.settings.bank_url))
        jobs.wakeup = asyncio.Event()
        runtime.payment_jobs = jobs
    return jobs


def wake(runtime: ServiceRuntime) -> None:
    jobs_of(runtime).wakeup.set()


async def payment_worker(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    jobs = jobs_of(runtime)
    interval = float(runtime.settings.payment_scan_seconds)
    try:
        while not stop.is_set():
            jobs.wakeup.clear()
            try:
                done = await asyncio.to_thread(jobs.run_once, SYSTEM)
                if done:
                    log.info("payment: %s", ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
                    runtime.saved()
            except Exception:
                log.exception("payment: background jobs failed; retrying")
            await nap(stop, jobs.wakeup, interval)
    finally:
        await asyncio.to_thread(jobs.engine.writer.close)
