"""Intake's wiring: what it stores, consumes and serves."""

from lifeline.runtime.service import ServiceSpec
from services.intake import api
from services.intake.application import IntakeApplication, project
from services.intake.consumers import CONSUMES

SPEC = ServiceSpec(
    name="intake",
    title="Lifeline intake (一门受理)",
    application=IntakeApplication,
    project=project,
    router=api.router,
    consumes=CONSUMES,
)
