"""Notify's public events: how its domain events appear on the wire."""

from __future__ import annotations

from lifeline.messaging.outbound import Outbound
from services.notify.delivery import Delivery
from services.notify.domain import Deadline, Notice, Objection

OUTBOUND = Outbound()


OUTBOUND.copies(Notice.Issued, "NoticeIssued")
OUTBOUND.copies(Delivery.Delivered, "NoticeDelivered")
OUTBOUND.copies(Delivery.Failed, "NoticeFailed")
OUTBOUND.copies(Objection.Received, "ObjectionReceived")
OUTBOUND.copies(Deadline.Warned, "DeadlineWarning")
OUTBOUND.copies(Deadline.Breached, "DeadlineBreached")
