"""Payment's public events: how its domain events appear on the wire."""

from __future__ import annotations

from lifeline.messaging.outbound import Outbound
from services.payment.domain import Entitlement

OUTBOUND = Outbound()


OUTBOUND.copies(Entitlement.Opened, "EntitlementOpened")
