"""Intake's composition root: what it stores, consumes and serves, and what it needs."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.rules.policy import PolicyHolder, default_policy_book
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from lifeline.stores.sealing import sealer_for
from services.intake import api
from services.intake.application import IntakeApplication, project
from services.intake.consumers import CONSUMES
from services.intake.monitoring import load_risk_rules


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> IntakeApplication:
    return IntakeApplication(env, clock=clock, sealer=sealer_for(settings),
                             policies=PolicyHolder(default_policy_book(settings)),
                             # A malformed risk-rules file stops the service here, naming file and line.
                             risk_rules=load_risk_rules(settings.risk_rules_file),
                             clock_days={"discovery_contact": settings.discovery_contact_days,
                                         "referral": settings.referral_days})


SPEC = ServiceSpec(
    name="intake", title="Lifeline intake (一门受理)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
    # 2: referrals show their follow-up (assignee, state, outcome, escalation); discovered cases
    # 3: cases show the applicant's name masked, the household's size and urgency (GET /v1/cases)
    views_version=3,
)
