"""Notify use cases. This slice: 受理通知书 on application, 不予批准决定书 on refusal."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.contracts.envelope import CloudEvent
from lifeline.stores.application import ServiceApplication
from lifeline.domain.aggregate import Meta, aggregate_id
from lifeline.domain.values import mask_name
from lifeline.stores.sidestore import SideTx
from services.notify.consumers import HANDLERS
from services.notify.outbound import OUTBOUND
from services.notify.domain import LEGAL_NAMES, Notice, acceptance_text, refusal_text


class NotifyApplication(ServiceApplication):
    name = "notify"
    service = "notify"
    handlers = HANDLERS
    outbound = OUTBOUND

    def _notice(self, case_id: str, kind: str):
        return aggregate_id("notice", f"{case_id}:{kind}")

    def issue_acceptance(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        data = event.data
        ident = self._notice(data["case_id"], "acceptance")
        if self.exists(ident):
            return  # one acceptance notice per case, however often the event comes
        applicant = next(m for m in data["members"] if m["relation"] == "self")
        masked = mask_name(applicant["name"])
        self._issue(pe, ident, data["case_id"], "acceptance", masked, data["region_code"],
                    acceptance_text(masked, data["case_id"], data["assistance_type"]), event, meta)

    def issue_refusal(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        case_id = event.data["case_id"]
        ident = self._notice(case_id, "refusal")
        if self.exists(ident):
            return
        acceptance = self._find(case_id, "acceptance")
        # The refusal may overtake the acceptance (different topics): address it generically then.
        masked = acceptance.recipient_masked if acceptance else "申请人"
        self._issue(pe, ident, case_id, "refusal", masked, event.data["region_code"],
                    refusal_text(masked, case_id, event.data["reason"]), event, meta)

    def _find(self, case_id: str, kind: str) -> Notice | None:
        try:
            return self.load(self._notice(case_id, kind), LookupError(case_id))
        except LookupError:
            return None

    def _issue(self, pe, ident, case_id, kind, masked, region_code, body, event, meta) -> None:
        notice = Notice._create(
            Notice.Issued, id=ident, notice_id=f"N{kind[:3].upper()}-{ident.hex[:16].upper()}",
            case_id=case_id, kind=kind, legal_name=LEGAL_NAMES[kind], channel="letter",
            recipient_masked=masked, region_code=region_code, body=body,
            cause_event_id=event.id, issued_at=self.clock.now().isoformat(),
            meta=meta.as_dict(),
        )
        pe.collect_events(notice)


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, Notice.Issued):
        tx.put("notice", event.notice_id, {
            "notice_id": event.notice_id, "case_id": event.case_id, "kind": event.kind,
            "legal_name": event.legal_name, "channel": event.channel,
            "recipient_masked": event.recipient_masked, "region_code": event.region_code,
            "body": event.body, "cause_event_id": event.cause_event_id,
            "issued_at": event.issued_at, "delivery": "pending",
        }, ref=event.case_id)
