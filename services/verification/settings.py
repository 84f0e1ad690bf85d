"""Verification's wiring: what it stores, consumes and serves."""

from lifeline.runtime.service import ServiceSpec
from services.verification import api
from services.verification.application import VerificationApplication, project
from services.verification.consumers import CONSUMES

SPEC = ServiceSpec(
    name="verification",
    title="Lifeline verification (审核确认)",
    application=VerificationApplication,
    project=project,
    router=api.router,
    consumes=CONSUMES,
)
