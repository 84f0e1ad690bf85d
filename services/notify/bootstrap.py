"""Notify's composition root: what it stores, consumes and serves, and what it runs beside."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from services.notify import api
from services.notify.application import NotifyApplication, project
from services.notify.consumers import CONSUMES
from services.notify.deadlines import deadline_watch
from services.notify.delivery import notice_delivery
from services.notify.letters import configure as configure_letters


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> NotifyApplication:
    configure_letters(settings.chromium)  # the PDF letters: started on the first one
    return NotifyApplication(env, clock=clock, hotline=settings.reporting_hotline)


SPEC = ServiceSpec(
    name="notify", title="Lifeline notify (告知与公示)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
    views_version=4,  # 2: the public notice board, objections and deadlines; 3: deliveries, the inbox;
    # 4: the issuing office
    workers=(deadline_watch, notice_delivery),
)
