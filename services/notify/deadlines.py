"""The deadline watch's loop (a `ServiceSpec.workers` entry): every
`deadline_scan_seconds`, the open and warned deadlines the read model holds are checked
against the service's clock; `NotifyApplication.watch_deadlines` warns and escalates, once
per deadline, however many replicas scan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from services.notify.application import NotifyApplication, deadlines_to_watch

if TYPE_CHECKING:
    from lifeline.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)


def scan_once(runtime: ServiceRuntime) -> dict[str, str]:
    """One scan: the read model caught up, its candidates, the clock's moment."""
    runtime.projection.catch_up()
    with runtime.side.transaction() as tx:
        candidates = deadlines_to_watch(tx)
    app: NotifyApplication = runtime.app  # type: ignore[assignment]
    return app.watch_deadlines(candidates, runtime.clock.now())


async def deadline_watch(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    interval = float(runtime.settings.deadline_scan_seconds)
    while not stop.is_set():
        try:
            done = await asyncio.to_thread(scan_once, runtime)
            if done:
                log.info("notify: deadline watch %s", ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
                runtime.saved()
        except Exception:
            log.exception("notify: deadline scan failed; retrying")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
