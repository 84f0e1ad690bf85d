"""Charity's composition root: what it stores, consumes and serves."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from services.charity import api
from services.charity.application import CharityApplication, project
from services.charity.consumers import CONSUMES
from services.charity.federation import federation_worker


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> CharityApplication:
    return CharityApplication(env, clock=clock)


SPEC = ServiceSpec(
    name="charity", title="Lifeline charity (慈善衔接)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
    # Publication to the federation feed and webhook delivery (services/charity/federation.py).
    workers=(federation_worker,),
    # 2: funds with their figures now, needs with their allocations (issue 12).
    views_version=2,
)
