"""Charity's public events: how its domain events appear on the wire.

Each carries its domain event's own fields, by the names its schema declares. A fund's events
are keyed by the fund (its ledger stays in order on one partition), a need's by its case.
"""

from __future__ import annotations

from lifeline.messaging.outbound import Outbound
from services.charity.domain import Fund, Need

OUTBOUND = Outbound()


def _fund(event: object) -> str:
    return event.fund_id  # type: ignore[attr-defined]


OUTBOUND.copies(Fund.Registered, "FundRegistered", subject=_fund)
OUTBOUND.copies(Fund.DonationReceived, "DonationReceived", subject=_fund)
OUTBOUND.copies(Fund.Allocated, "FundAllocated", subject=_fund)
OUTBOUND.copies(Fund.AllocationReleased, "AllocationReleased", subject=_fund)
OUTBOUND.copies(Fund.AllocationDisbursed, "AllocationDisbursed", subject=_fund)
OUTBOUND.copies(Need.Opened, "NeedOpened")
OUTBOUND.copies(Need.Published, "NeedPublished")
OUTBOUND.copies(Need.Accepted, "NeedAccepted")
OUTBOUND.copies(Need.Fulfilled, "NeedFulfilled")
