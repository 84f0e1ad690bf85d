"""Notify use cases. This slice: 受理通知书 on application, 不予批准决定书 on refusal."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from lifeline.domain.values import Application, mask_name
from lifeline.stores.application import ServiceApplication
from lifeline.stores.sidestore import SideTx
from services.notify.consumers import HANDLERS
from services.notify.domain import Notice, acceptance_text, refusal_text
from services.notify.outbound import OUTBOUND


class NotifyApplication(ServiceApplication):
    name = "notify"
    service = "notify"
    handlers = HANDLERS
    outbound = OUTBOUND

    def issue_acceptance(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        application = Application.from_wire(event.data)
        if self.exists(Notice.create_id(application.case_id, "acceptance")):
            return  # one acceptance notice per case, however often the event comes
        masked = mask_name(application.household.applicant.name)
        text = acceptance_text(masked, application.case_id, application.assistance_type)
        pe.collect_events(Notice.issue(application.case_id, "acceptance", masked,
                                       application.region_code, text, event.id,
                                       self.clock.now().isoformat(), meta))

    def issue_refusal(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        case_id = event.data["case_id"]
        if self.exists(Notice.create_id(case_id, "refusal")):
            return
        acceptance = self._find(case_id, "acceptance")
        # The refusal may overtake the acceptance (different topics): address it generically then.
        masked = acceptance.recipient_masked if acceptance else "申请人"
        text = refusal_text(masked, case_id, event.data["reason"])
        pe.collect_events(Notice.issue(case_id, "refusal", masked, event.data["region_code"], text,
                                       event.id, self.clock.now().isoformat(), meta))

    def _find(self, case_id: str, kind: str) -> Notice | None:
        try:
            return self.load(Notice.create_id(case_id, kind), LookupError(case_id))
        except LookupError:
            return None


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, Notice.Issued):
        # The document is the published NoticeIssued, plus the region (for scoping reads) and
        # where its delivery stands.
        doc = {**OUTBOUND(event).data, "region_code": event.region_code, "delivery": "pending"}
        tx.put("notice", event.notice_id, doc, ref=event.case_id)
