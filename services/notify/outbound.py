"""Notify's public events: how its domain events appear on the wire."""

from __future__ import annotations

from lifeline.messaging.outbound import Outbound
from services.notify.domain import Notice

OUTBOUND = Outbound()


OUTBOUND.copies(Notice.Issued, "NoticeIssued")
