"""Intake's composition root: what it stores, consumes and serves, and what it needs."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from lifeline.stores.sealing import sealer_for
from services.intake import api
from services.intake.application import IntakeApplication, project
from services.intake.consumers import CONSUMES


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> IntakeApplication:
    return IntakeApplication(env, clock=clock, sealer=sealer_for(settings))


SPEC = ServiceSpec(
    name="intake", title="Lifeline intake (一门受理)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
)
