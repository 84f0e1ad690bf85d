"""Charity's wiring."""

from lifeline.runtime.service import ServiceSpec
from services.charity import api
from services.charity.application import CharityApplication, project
from services.charity.consumers import CONSUMES

SPEC = ServiceSpec(
    name="charity", title="Lifeline charity (慈善衔接)", application=CharityApplication,
    project=project, router=api.router, consumes=CONSUMES,
)
