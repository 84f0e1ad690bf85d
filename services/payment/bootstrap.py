"""Payment's composition root: what it stores, consumes and serves."""

from __future__ import annotations

from lifeline.domain.clock import Clock
from lifeline.runtime.service import ServiceSpec
from lifeline.settings import Settings
from lifeline.stores.sealing import sealer_for
from services.payment import api
from services.payment.application import PaymentApplication, project
from services.payment.channels import load_channel_book
from services.payment.consumers import CONSUMES
from services.payment.worker import payment_worker


def build(settings: Settings, clock: Clock, env: dict[str, str]) -> PaymentApplication:
    # A malformed bank-channels file stops the service here, naming file and line.
    return PaymentApplication(env, clock=clock, channels=load_channel_book(settings.bank_channels_file),
                              sealer=sealer_for(settings))


SPEC = ServiceSpec(
    name="payment", title="Lifeline payment (社会化发放)", build=build,
    project=project, router=api.router, consumes=CONSUMES,
    # 3: entitlements show the account they pay into (bank_account_ref); 4: payment runs
    views_version=4,
    workers=(payment_worker,),
    upload_paths=("/v1/bank-channels/",),  # status reports and statements of a whole file
)
