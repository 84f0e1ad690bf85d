"""Notify use cases: written notices, the public notice board and its objections, and the
deadline watch (warnings before a statutory deadline, escalation 督办 after it)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import Clock
from lifeline.settings import Settings
from lifeline.stores.application import DuplicateRequest, ServiceApplication
from lifeline.stores.sidestore import SideTx
from services.notify.consumers import HANDLERS
from services.notify.delivery import NoticeDeliveries, project_delivery
from services.notify.domain import (
    BOARD_FIELDS,
    BoardEntry,
    Deadline,
    Notice,
    Objection,
    acceptance_text,
    change_text,
    issuing_office_of,
    materials_text,
    non_acceptance_text,
    public_notice_text,
    refusal_text,
)
from services.notify.outbound import OUTBOUND

log = logging.getLogger(__name__)

DEFAULT_HOTLINE: str = Settings.model_fields["reporting_hotline"].default
# Who acts when the public leaves an objection on a board (no account, no office).
PUBLIC = Meta(user_id="public:board", role="public")


class BoardEntryNotFound(LookupError):
    """No such entry on that board (404)."""


class NotifyApplication(NoticeDeliveries, ServiceApplication):
    name = "notify"
    service = "notify"
    handlers = HANDLERS
    outbound = OUTBOUND

    def __init__(self, env=None, *, clock: Clock | None = None, hotline: str | None = None):
        super().__init__(env, clock=clock)
        self.hotline = hotline or DEFAULT_HOTLINE

    # --- notices (effects of consumed events) -----------------------------------------------
    def _issue(self, pe: ProcessingEvent, event: CloudEvent, meta: Meta, kind: str, recipient: str,
               region_code: str, body: str, occasion: str = "") -> None:
        case_id = event.data["case_id"]
        if self.exists(Notice.identity(case_id, kind, occasion)):
            return  # one notice per (case, kind[, occasion]), however often the event comes
        notice = Notice.issue(case_id, kind, recipient, region_code, body, event.id,
                              self.clock.now().isoformat(), meta, occasion=occasion,
                              issuing_office=issuing_office_of(event.actor.org_code, region_code))
        # Its deliveries (letter, in-app, SMS when a number is known) in the same transaction:
        # every notice is delivered, once per channel (delivery.py).
        pe.collect_events(notice, *self.deliveries_for(notice, meta))

    def issue_acceptance(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """受理通知书, on ApplicationAccepted."""
        d = event.data
        masked = d["applicant_name_masked"]
        self._issue(pe, event, meta, "acceptance", masked, d["region_code"],
                    acceptance_text(masked, d["case_id"], d["assistance_type"]))

    def issue_non_acceptance(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """不予受理告知书, on ApplicationRefused: the reason and the remedies."""
        d = event.data
        masked = d["applicant_name_masked"]
        self._issue(pe, event, meta, "non_acceptance", masked, d["region_code"],
                    non_acceptance_text(masked, d["case_id"], d["assistance_type"], d["reason"]))

    def issue_materials_request(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """补正材料一次性告知书, on MaterialsRequested: every missing item at once; a repeated
        request is a notice of its own listing what is still missing."""
        d = event.data
        masked = d["applicant_name_masked"]
        text = materials_text(masked, d["case_id"], d["assistance_type"], list(d["missing_materials"]),
                              bool(d["repeat"]), d["reason"])
        self._issue(pe, event, meta, "materials", masked, d["region_code"], text, occasion=event.id)

    def issue_refusal(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """不予批准决定书, on BenefitRefused, addressed as the acceptance notice was."""
        case_id = event.data["case_id"]
        acceptance = self._find(case_id, "acceptance")
        # The refusal may overtake the acceptance (different topics): address it generically then.
        masked = acceptance.recipient_masked if acceptance else "申请人"
        self._issue(pe, event, meta, "refusal", masked, event.data["region_code"],
                    refusal_text(masked, case_id, event.data["reason"]))

    def issue_change(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """调整/停发告知书, on BenefitAdjusted, BenefitSuspended, BenefitResumed or
        BenefitTerminated: one per change (a case may be adjusted many times), addressed as the
        acceptance notice was."""
        d = event.data
        acceptance = self._find(d["case_id"], "acceptance")
        masked = acceptance.recipient_masked if acceptance else "申请人"
        region = acceptance.region_code if acceptance else ""
        text = change_text(masked, d["case_id"], event.name, d["from_period"], d["reason"],
                           d.get("monthly_amount_fen"), d.get("previous_monthly_amount_fen"))
        self._issue(pe, event, meta, "adjustment", masked, region, text, occasion=event.id)

    def _find(self, case_id: str, kind: str) -> Notice | None:
        try:
            return self.load(Notice.create_id(case_id, kind), LookupError(case_id))
        except LookupError:
            return None

    # --- the public notice board ---------------------------------------------------------------
    def post_public_notice(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """PublicNoticePosted: the entry goes on its village's board, and the household gets its
        审核确认公示单."""
        d = event.data
        if not self.exists(BoardEntry.create_id(d["public_notice_id"])):
            pe.collect_events(BoardEntry.post(d, meta))
        text = public_notice_text(
            d["applicant_name_masked"], d["members_count"], d["assistance_type"],
            d["monthly_amount_fen"], d["one_off_amount_fen"], d["notice_from"], d["notice_until"],
            self.hotline)
        self._issue(pe, event, meta, "public_notice", d["applicant_name_masked"], d["village_code"], text)

    def receive_objection(self, village_code: str, public_notice_id: str, text: str,
                          contact: str | None, objection_id: str) -> dict[str, str]:
        """An objection to a board entry while its notice period runs: BoardEntryNotFound (404)
        when the entry is not on that board, NoticePeriodOver (409) when the period ended."""
        entry = self.load(BoardEntry.create_id(public_notice_id), BoardEntryNotFound(public_notice_id))
        if entry.village_code != village_code:
            raise BoardEntryNotFound(public_notice_id)
        objection = Objection.receive(objection_id, entry, text, contact, self.clock.now(), PUBLIC)
        try:
            self.save_new(objection, objection_id)
        except DuplicateRequest:
            # The same request again (its Idempotency-Key names the same objection): as first answered.
            objection = self.load(Objection.create_id(objection_id), LookupError(objection_id))
        return {"objection_id": objection.objection_id, "received_at": objection.received_at}

    # --- the deadline watch ---------------------------------------------------------------------
    def open_deadline(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """DeadlineSet: watch it from now on; a repeated one changes nothing."""
        if self.exists(Deadline.create_id(event.data["deadline_id"])):
            return
        pe.collect_events(Deadline.open(event.data, meta))

    def clear_deadline(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """DeadlineCleared: stop watching it (met, late or cancelled); unknown ones are ignored."""
        d = event.data
        try:
            deadline = self.load(Deadline.create_id(d["deadline_id"]), LookupError(d["deadline_id"]))
        except LookupError:
            return
        if deadline.clear(d["outcome"], d["cleared_at"], meta):
            pe.collect_events(deadline)

    def watch_deadlines(self, candidates: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, str]:
        """Warn about or escalate each candidate (read-model documents) that is due at `now`.
        Answers {deadline_id: "warned" | "breached"} for what this call did."""
        done: dict[str, str] = {}
        for doc in candidates:
            if not is_due(doc, now):
                continue
            try:
                outcome = self.watch_deadline(doc["deadline_id"], now)
            except Exception:
                # One deadline that cannot be handled must not hold up the others; the next
                # scan tries it again.
                log.exception("notify: deadline %s could not be watched", doc["deadline_id"])
                continue
            if outcome is not None:
                done[doc["deadline_id"]] = outcome
        return done

    def watch_deadline(self, deadline_id: str, now: datetime) -> str | None:
        """One deadline: the aggregate's state decides whether anything is still to do, so a
        stale read model, a repeated scan or a second replica does nothing twice."""
        try:
            deadline = self.load(Deadline.create_id(deadline_id), LookupError(deadline_id))
        except LookupError:
            return None
        outcome = deadline.watch(now, deadline.watcher(self.service))
        if outcome is None:
            return None
        try:
            self.save(deadline)
        except IntegrityError:
            return None  # another replica (or a DeadlineCleared) was saved first: its state stands
        return outcome


def is_due(doc: Mapping[str, Any], now: datetime) -> bool:
    """Whether a deadline document calls for the watch at `now` (the aggregate still decides)."""
    due_at = datetime.fromisoformat(doc["due_at"])
    if doc["state"] == "warned":
        return now >= due_at
    if doc["state"] == "open":
        return now >= min(datetime.fromisoformat(doc["warn_at"]), due_at)
    return False


# --- read models --------------------------------------------------------------------------------
# Deadline documents are referenced by their state, so the watch finds the open and warned
# ones without reading the cleared and breached ones.
WATCHED_STATES = ("open", "warned")
DEADLINE_STATES = ("open", "warned", "breached", "cleared")
# What the public board shows of an entry: nothing else, ever (SPEC §4 Notify).
BOARD_PUBLIC_FIELDS = ("public_notice_id", "applicant_name_masked", "members_count", "assistance_type",
                       "monthly_amount_fen", "one_off_amount_fen", "notice_from", "notice_until")


def deadlines_to_watch(tx: SideTx) -> list[dict[str, Any]]:
    return [doc for state in WATCHED_STATES for doc in tx.find("deadline", state)]


def deadline_documents(tx: SideTx, state: str | None = None) -> list[dict[str, Any]]:
    if state is not None:
        return tx.find("deadline", state)
    return [doc for _, _, _, doc in tx.all("deadline")]


def board_entries(tx: SideTx, village_code: str, now: datetime) -> list[dict[str, Any]]:
    """A board's entries whose notice period runs at `now`, as the public may see them."""
    return [
        {name: doc[name] for name in BOARD_PUBLIC_FIELDS}
        for doc in tx.find("board_entry", village_code)
        if now < datetime.fromisoformat(doc["ends_at"])
    ]


def project(event: Any, tx: SideTx) -> None:
    if isinstance(event, Notice.Issued):
        # The document is the published NoticeIssued, plus the region (for scoping reads), the
        # office it is issued in the name of (the letter's head and seal) and
        # where its delivery stands, as a whole and per channel (delivery.project_delivery).
        doc = {**OUTBOUND(event).data, "region_code": event.region_code, "issuing_office": event.issuing_office,
               "delivery": "pending", "deliveries": {}}
        tx.put("notice", event.notice_id, doc, ref=event.case_id)
    elif isinstance(event, BoardEntry.Posted):
        tx.put("board_entry", event.public_notice_id, {name: getattr(event, name) for name in BOARD_FIELDS},
               ref=event.village_code)
    elif isinstance(event, Objection.Received):
        doc = {**OUTBOUND(event).data, "region_code": event.village_code}
        tx.put("objection", event.objection_id, doc, ref=event.case_id)
    elif isinstance(event, Deadline.Opened):
        doc = {
            "deadline_id": event.deadline_id, "case_id": event.case_id, "clock": event.clock,
            "label_zh": event.label_zh, "region_code": event.region_code,
            "responsible_office": event.responsible_office, "start_date": event.start_date,
            "due_date": event.due_date, "due_at": event.due_at, "warn_at": event.warn_at,
            "period": event.period, "calendar_known": event.calendar_known,
            "warnings": list(event.warnings), "set_at": event.set_at, "state": "open",
            "outcome": None, "escalated_to": None, "warned_at": None, "breached_at": None,
            "cleared_at": None,
        }
        tx.put("deadline", event.deadline_id, doc, ref="open")
    elif isinstance(event, (Deadline.Warned, Deadline.Breached, Deadline.Cleared)):
        doc = tx.get("deadline", event.deadline_id)
        if isinstance(event, Deadline.Warned):
            doc.update(state="warned", warned_at=event.warned_at)
        elif isinstance(event, Deadline.Breached):
            doc.update(state="breached", breached_at=event.breached_at, escalated_to=dict(event.escalated_to))
        else:
            doc.update(state="cleared", outcome=event.outcome, cleared_at=event.cleared_at)
        tx.put("deadline", event.deadline_id, doc, ref=doc["state"])
    else:
        project_delivery(event, tx)
