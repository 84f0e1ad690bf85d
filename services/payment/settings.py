"""Payment's wiring."""

from lifeline.runtime.service import ServiceSpec
from services.payment import api
from services.payment.application import PaymentApplication, project
from services.payment.consumers import CONSUMES

SPEC = ServiceSpec(
    name="payment", title="Lifeline payment (社会化发放)", application=PaymentApplication,
    project=project, router=api.router, consumes=CONSUMES,
)
