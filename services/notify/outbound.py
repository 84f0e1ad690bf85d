"""Notify's public events: how its domain events appear on the wire."""

from __future__ import annotations

from typing import Any

from lifeline.messaging.outbound import Outbound
from services.notify.domain import Notice

OUTBOUND = Outbound()


@OUTBOUND.maps(Notice.Issued, "NoticeIssued")
def notice_issued(e: Notice.Issued) -> dict[str, Any]:
    return {
        "notice_id": e.notice_id, "case_id": e.case_id, "kind": e.kind,
        "legal_name": e.legal_name, "channel": e.channel,
        "recipient_masked": e.recipient_masked, "body": e.body,
        "cause_event_id": e.cause_event_id, "issued_at": e.issued_at,
    }
