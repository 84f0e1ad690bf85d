"""Notify's wiring."""

from lifeline.runtime.service import ServiceSpec
from services.notify import api
from services.notify.application import NotifyApplication, project
from services.notify.consumers import CONSUMES

SPEC = ServiceSpec(
    name="notify", title="Lifeline notify (告知与公示)", application=NotifyApplication,
    project=project, router=api.router, consumes=CONSUMES,
)
