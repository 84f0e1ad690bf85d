"""Verification's composition root: what it stores, consumes and serves, and what it needs."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from lifeline.stores.sealing import sealer_for
from services.verification import api
from services.verification.application import VerificationApplication, project
from services.verification.consumers import CONSUMES
from lifeline.rules.policy import PolicyHolder, default_policy_book


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> VerificationApplication:
    # The sealing secret keys the fingerprints of the people a death report may concern.
    return VerificationApplication(env, clock=clock, policies=PolicyHolder(default_policy_book(settings)),
                                   sealer=sealer_for(settings))


SPEC = ServiceSpec(
    name="verification", title="Lifeline verification (审核确认)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
    # 2: the procedure's states, grievances and filings (issue 9); 3: an approved monthly
    # benefit's status and monthly amount in force on the verification's document; 4: reviews
    # and the benefits due for one (issue 11); 5: county filings of decisions and the benefit roll
    # the monthly statistics count (issue 17); 6: where each case's procedure stands, for
    # GET /v1/verifications (queue.py)
    views_version=6,
    upload_paths=("/v1/cadre-registers/",),
)
