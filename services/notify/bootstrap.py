"""Notify's composition root: what it stores, consumes and serves."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from services.notify import api
from services.notify.application import NotifyApplication, project
from services.notify.consumers import CONSUMES


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> NotifyApplication:
    return NotifyApplication(env, clock=clock)


SPEC = ServiceSpec(
    name="notify", title="Lifeline notify (告知与公示)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
)
