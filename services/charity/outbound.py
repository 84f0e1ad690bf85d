"""Charity's public events: how its domain events appear on the wire.

Both carry their domain event's own fields, by the names their schemas declare.
"""

from __future__ import annotations

from lifeline.messaging.outbound import Outbound
from services.charity.domain import Fund, Need

OUTBOUND = Outbound()
OUTBOUND.copies(Fund.Registered, "FundRegistered", subject=lambda e: e.fund_id)
OUTBOUND.copies(Need.Opened, "NeedOpened")
