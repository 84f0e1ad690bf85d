"""Delivering notices: every written notice reaches the household by letter and in-app, and by
SMS when the household gave a mobile number, exactly once per channel.

- `Contact`: the household's mobile number, as intake's ApplicationSubmitted (v6) carried it:
  sealed (`lifeline.stores.sealing`) and masked. Notify keeps it per case in its own event store
  and unseals it only to hand an SMS to the gateway; it is never projected, logged or published.
- `Delivery`: one per (notice, channel), scheduled in the transaction that issues the notice:
  `pending` → `delivered` (NoticeDelivered, once) or, for SMS, `failed` for good (NoticeFailed
  with retry_at null: the retries are spent, the gateway refused the number, or no number is
  known). A failed SMS attempt that will be retried is a NoticeFailed with its retry_at; the
  next attempt waits 1 s, 2 s, 4 s ... at most `notice_retry_max_seconds`, counted on the wall
  clock from the failure's wall time, stored with it (so a test clock set days ahead neither
  hurries nor stalls it, and every replica and restart agrees).
- Channels: in-app is delivered by the worker at once, into the case's inbox read model (the
  console and any app read `GET /v1/inbox?case_id=`; there is no household portal); a letter
  waits in the print queue until an operator marks it printed (`POST
  /v1/print-queue/{notice_id}/printed`: printed is delivered, as handing it over at the window
  or posting it follows from printing); SMS goes through the gateway.
- Exactly once per channel on at-least-once machinery: the aggregate's state decides (a second
  delivery of the same channel is refused, and a concurrent one loses on the stored version),
  and every SMS is sent with the Idempotency-Key `<notice_id>:sms`, so a resend after a crash
  between the gateway's answer and the stored NoticeDelivered (kill -9) is the same message to
  the gateway, not a second SMS.
- An SMS never carries an ID number or an amount: `sms_text` says only whose notice of which
  legal name on which case, and where to read it; `sms_text_problems` refuses anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.rules.ids import has_resident_id_form
from lifeline.rules.vocabulary import NOTICE_CHANNELS
from lifeline.runtime.backoff import backoff_seconds
from lifeline.stores.sealing import Sealer
from lifeline.stores.sidestore import SideTx

if TYPE_CHECKING:
    from lifeline.runtime.service import ServiceRuntime
    from services.notify.domain import Notice

log = logging.getLogger(__name__)

DELIVERY_DOC = "notice_delivery"  # read model: one per (notice, channel), ref "<channel>:<state>"
INBOX_DOC = "inbox"               # read model: the notices delivered in-app, ref case id
MESSAGES_PATH = "/v1/messages"    # the SMS gateway's


# --- the household's mobile number ----------------------------------------------------------
class Contact(LifelineAggregate):
    """Where a case's notices go by SMS: the number sealed, as intake sealed it."""

    id_kind = "notice_contact"  # keyed by case id

    class Recorded(LifelineAggregate.Created):
        case_id: str
        phone_masked: str
        phone_sealed: str
        recorded_at: str

    @classmethod
    def record(cls, case_id: str, phone_masked: str, phone_sealed: str, recorded_at: str, by: Meta) -> "Contact":
        return cls._create(cls.Recorded, id=cls.create_id(case_id), case_id=case_id, phone_masked=phone_masked,
                           phone_sealed=phone_sealed, recorded_at=recorded_at, meta=by.as_dict())

    def __init__(self, case_id: str, phone_masked: str, phone_sealed: str, recorded_at: str, meta: dict):
        self.case_id = case_id
        self.phone_masked = phone_masked
        self.phone_sealed = phone_sealed

    def phone(self, sealer: Sealer) -> str:
        return sealer.unseal(self.phone_sealed)


# --- one notice on one channel ---------------------------------------------------------------
class DeliveryNotAllowed(Exception):
    """The delivery is over: delivered already (409 `already_delivered`), or failed for good."""

    def __init__(self, rule: str, detail: str):
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


class Delivery(LifelineAggregate):
    """A notice's delivery on one channel: pending until delivered, once; an SMS may fail and
    be retried, and fails for good after `max_attempts` or when the gateway refuses it."""

    id_kind = "notice_delivery"  # keyed (notice id, channel)

    class Scheduled(LifelineAggregate.Created):
        notice_id: str
        case_id: str
        channel: str
        kind: str
        legal_name: str
        region_code: str
        recipient_masked: str
        to_masked: str | None  # the SMS's number, masked (None on the other channels)
        issued_at: str

    class Delivered(LifelineAggregate.Event):
        notice_id: str
        case_id: str
        channel: str
        attempt: int
        reference: str
        delivered_at: str

        def apply(self, d: "Delivery") -> None:
            d.state = "delivered"
            d.attempts = self.attempt
            d.reference = self.reference

    class Failed(LifelineAggregate.Event):
        notice_id: str
        case_id: str
        channel: str
        attempt: int
        reason: str
        retry_at: str | None  # None: failed for good
        failed_at: str
        failed_wall: float  # the wall clock's seconds then: the backoff counts from it (not published)

        def apply(self, d: "Delivery") -> None:
            d.attempts = self.attempt
            d.state = "pending" if self.retry_at is not None else "failed"
            d.failed_wall = self.failed_wall

    @classmethod
    def identity(cls, notice_id: str, channel: str):
        return cls.create_id(notice_id, channel)

    @classmethod
    def schedule(cls, notice: "Notice", channel: str, to_masked: str | None, by: Meta) -> "Delivery":
        if channel not in NOTICE_CHANNELS:
            raise ValueError(f"a notice is delivered by {', '.join(NOTICE_CHANNELS)}, not {channel!r}")
        return cls._create(
            cls.Scheduled, id=cls.identity(notice.notice_id, channel), notice_id=notice.notice_id,
            case_id=notice.case_id, channel=channel, kind=notice.kind, legal_name=notice.legal_name,
            region_code=notice.region_code, recipient_masked=notice.recipient_masked,
            to_masked=to_masked if channel == "sms" else None, issued_at=notice.issued_at, meta=by.as_dict(),
        )

    def __init__(self, notice_id: str, case_id: str, channel: str, kind: str, legal_name: str,
                 region_code: str, recipient_masked: str, to_masked: str | None, issued_at: str, meta: dict):
        self.notice_id = notice_id
        self.case_id = case_id
        self.channel = channel
        self.kind = kind
        self.legal_name = legal_name
        self.region_code = region_code
        self.recipient_masked = recipient_masked
        self.state = "pending"
        self.attempts = 0
        self.reference: str | None = None
        self.failed_wall: float | None = None  # wall-clock seconds of the last failure
        # The chain of causes goes on from the event that issued the notice.
        self.correlation_id = meta.get("correlation_id", "")
        self.cause_id = meta.get("causation_id", "")

    @property
    def idempotency_key(self) -> str:
        """What the gateway knows this message by: a resend is the same message."""
        return f"{self.notice_id}:{self.channel}"

    def due(self, wall_now: float, retry_max: float) -> bool:
        """Pending, and the backoff after its last failure (if any) has passed."""
        if self.state != "pending":
            return False
        return self.failed_wall is None or wall_now >= self.failed_wall + backoff_seconds(self.attempts, retry_max)

    def _check_open(self) -> None:
        if self.state == "delivered":
            raise DeliveryNotAllowed("already_delivered",
                                     f"notice {self.notice_id} was delivered by {self.channel} already")
        if self.state == "failed":
            raise DeliveryNotAllowed("delivery_failed",
                                     f"the {self.channel} delivery of notice {self.notice_id} failed for good")

    def deliver(self, reference: str, at: datetime, by: Meta) -> None:
        self._check_open()
        if not reference:
            raise ValueError("a delivery names its reference (message id, print batch, inbox id)")
        self.trigger_event(self.Delivered, notice_id=self.notice_id, case_id=self.case_id, channel=self.channel,
                           attempt=self.attempts + 1, reference=reference, delivered_at=at.isoformat(),
                           meta=by.as_dict())

    def fail(self, reason: str, at: datetime, retry_in: float | None, by: Meta, wall: float | None = None) -> None:
        """An attempt failed (at `at` on the service's clock, `wall` on the wall clock): tried
        again `retry_in` seconds on, or (None) never again."""
        self._check_open()
        retry_at = (at + timedelta(seconds=retry_in)).isoformat() if retry_in is not None else None
        self.trigger_event(self.Failed, notice_id=self.notice_id, case_id=self.case_id, channel=self.channel,
                           attempt=self.attempts + 1, reason=reason[:300], retry_at=retry_at,
                           failed_at=at.isoformat(), failed_wall=time.time() if wall is None else wall,
                           meta=by.as_dict())

    def sender(self, service: str) -> Meta:
        """Who delivers: the service, for the chain that issued the notice."""
        return Meta(user_id=f"system:{service}", role="system", org_code="",
                    correlation_id=self.correlation_id, causation_id=self.cause_id)


def inbox_id(notice_id: str) -> str:
    return f"IN-{notice_id}"


# --- the SMS text ---------------------------------------------------------------------------------
SMS_SIGNATURE = "【社会救助】"
# Anything that states money: the unit, the signs, the capital numerals (大写) used only for sums.
_MONEY = re.compile(r"元|圆|¥|￥|人民币|块钱|yuan|rmb|cny|[壹贰叁肆伍陆柒捌玖拾佰仟]", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9０-９]")
_ID_RUN = re.compile(r"[0-9]{17}[0-9Xx]")


def sms_text_problems(text: str, case_id: str) -> list[str]:
    """What makes `text` unfit for an SMS (empty: fit). An SMS never carries an ID number or an
    amount: no 18-character run that is a resident ID number anywhere, no digit at all outside
    the case number (an amount, an old 15-digit ID, a phone or an account number all have
    digits), and no word or sign of money."""
    problems = []
    if any(has_resident_id_form(m.group(0).upper()) for m in _ID_RUN.finditer(text)):
        problems.append("id_number")
    rest = text.replace(case_id, "") if case_id else text
    if _DIGITS.search(rest):
        problems.append("digits")
    if _MONEY.search(rest):
        problems.append("money")
    return problems


def _county_name(region_code: str) -> str:
    from lifeline.rules.regions import region_register

    with contextlib.suppress(Exception):
        division = region_register().get(region_code)
        if division is not None:
            return division.name
    return ""


def sms_text(legal_name: str, recipient_masked: str, case_id: str, region_code: str) -> str:
    """Whose notice of which legal name, on which case, and where to read it: nothing else.
    When the case number itself would not pass (an 18-digit run that is an ID number's form),
    the text leaves it out."""
    where = f"请到{_county_name(region_code)}所在乡镇（街道）社会救助窗口领取书面通知，或在app查看全文。"
    text = f"{SMS_SIGNATURE}{recipient_masked}：您的社会救助申请（案件号 {case_id}）有一份《{legal_name}》。{where}"
    if sms_text_problems(text, case_id):
        text = f"{SMS_SIGNATURE}{recipient_masked}：您的社会救助申请有一份《{legal_name}》。{where}"
    return text


# --- the SMS gateway --------------------------------------------------------------------------------
class GatewayError(Exception):
    """The gateway did not take the message: `final` when trying again cannot help."""

    def __init__(self, reason: str, final: bool):
        super().__init__(reason)
        self.reason = reason
        self.final = final


class SmsGateway(Protocol):
    def send(self, to: str, text: str, key: str) -> str:
        """The gateway's message id; GatewayError when it did not take the message."""
        ...


class HttpSmsGateway:
    """The gateway over HTTP (`POST <sms_url>/v1/messages`, the Idempotency-Key header). What it
    answers is never quoted in a reason: a gateway may echo the number."""

    def __init__(self, url: str, timeout: float, client: httpx.Client | None = None):
        self.url = url.rstrip("/") + MESSAGES_PATH
        self.timeout = timeout
        self.client = client or httpx.Client(follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def send(self, to: str, text: str, key: str) -> str:
        try:
            r = self.client.post(self.url, json={"to": to, "text": text}, headers={"Idempotency-Key": key},
                                 timeout=self.timeout)
        except httpx.TimeoutException:
            raise GatewayError(f"gateway_timeout: no answer within {self.timeout:g} s", final=False) from None
        except httpx.HTTPError as exc:
            raise GatewayError(f"gateway_unreachable: {type(exc).__name__}", final=False) from None
        if 200 <= r.status_code < 300:
            with contextlib.suppress(ValueError, AttributeError):
                message_id = r.json().get("message_id")
                if isinstance(message_id, str) and 0 < len(message_id) <= 128:
                    return message_id
            raise GatewayError(f"gateway_unavailable: HTTP {r.status_code} without a message id", final=False)
        if r.status_code in (408, 425, 429) or r.status_code >= 500:
            raise GatewayError(f"gateway_unavailable: HTTP {r.status_code}", final=False)
        if r.status_code == 422 and _slug(r) == "invalid-number":
            raise GatewayError("invalid_number: the gateway refused the number", final=True)
        raise GatewayError(f"gateway_refused: HTTP {r.status_code}", final=True)


def _slug(r: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(r.json().get("type", "")).rsplit("/", 1)[-1]
    return ""


# --- use cases (mixed into NotifyApplication) --------------------------------------------------------
class NoticeNotFound(LookupError):
    """No such notice, or none to deliver on that channel (404)."""


class NoticeDeliveries:
    """Notify's delivery use cases; `self` is the NotifyApplication."""

    def remember_contact(self, event: CloudEvent, meta: Meta, pe: ProcessingEvent) -> None:
        """ApplicationSubmitted: the household's mobile number (sealed), if it gave one."""
        contact = event.data.get("contact")
        case_id = event.data["case_id"]
        if not contact or self.exists(Contact.create_id(case_id)):
            return
        pe.collect_events(Contact.record(case_id, contact["phone_masked"], contact["phone_sealed"],
                                         self.clock.now().isoformat(), meta))
        # A notice caused on another topic can overtake the number (PublicNoticePosted or
        # BenefitRefused on verification's, consumed before this ApplicationSubmitted on
        # intake's after a restart): it was scheduled without an SMS, which goes now.
        for notice in self._notices_without_sms(case_id):
            pe.collect_events(Delivery.schedule(notice, "sms", contact["phone_masked"], meta))

    def _notices_without_sms(self, case_id: str) -> list["Notice"]:
        """The case's notices of the kinds issued once per case that have no SMS delivery."""
        from services.notify.domain import Notice

        kinds = {Notice.identity(case_id, kind): kind for kind in ("acceptance", "non_acceptance", "refusal",
                                                                    "public_notice")}
        found = []
        # Almost always none yet (the number comes with the application): one query to know.
        present = self.existing(list(kinds))
        for ident in (i for i in kinds if i in present):  # in the kinds' order
            notice = self.load(ident, LookupError(case_id))
            if not self.exists(Delivery.identity(notice.notice_id, "sms")):
                found.append(notice)
        return found

    def contact_of(self, case_id: str) -> Contact | None:
        try:
            return self.load(Contact.create_id(case_id), LookupError(case_id))
        except LookupError:
            return None

    def deliveries_for(self, notice: "Notice", meta: Meta) -> list[Delivery]:
        """A new notice's deliveries: letter and in-app always, SMS when a number is known."""
        contact = self.contact_of(notice.case_id)
        channels = ["letter", "in_app"] + (["sms"] if contact is not None else [])
        return [Delivery.schedule(notice, channel, contact.phone_masked if contact else None, meta)
                for channel in channels]

    def get_delivery(self, notice_id: str, channel: str) -> Delivery:
        return self.load(Delivery.identity(notice_id, channel), NoticeNotFound(notice_id))

    def _save_delivery(self, delivery: Delivery) -> bool:
        try:
            self.save(delivery)
        except IntegrityError:
            return False  # another replica (or request) recorded this delivery first: its record stands
        return True

    def mark_printed(self, notice_id: str, batch: str | None, meta: Meta) -> dict[str, Any]:
        """The letter was printed (and so delivered): once. NoticeNotFound (404),
        DeliveryNotAllowed (409) when it was marked before."""
        delivery = self.get_delivery(notice_id, "letter")
        now = self.clock.now()
        reference = batch or f"PRINT-{now:%Y%m%d}-{meta.org_code or meta.user_id}"
        delivery.deliver(reference, now, meta)
        if not self._save_delivery(delivery):
            raise DeliveryNotAllowed("already_delivered", f"notice {notice_id} was marked printed meanwhile")
        return {"notice_id": notice_id, "channel": "letter", "reference": reference,
                "delivered_at": now.isoformat(), "attempt": delivery.attempts}

    def deliver_in_app(self, notice_id: str) -> bool:
        """Into the case's inbox; False when it was there already."""
        try:
            delivery = self.get_delivery(notice_id, "in_app")
            delivery.deliver(inbox_id(notice_id), self.clock.now(), delivery.sender(self.service))
        except (NoticeNotFound, DeliveryNotAllowed):
            return False
        return self._save_delivery(delivery)

    def send_sms(self, notice_id: str, gateway: SmsGateway, sealer: Sealer, *, retry_max: float,
                 max_attempts: int, wall: Callable[[], float] = time.time) -> str | None:
        """One attempt at a notice's SMS if it is due: "delivered", "retry" (failed, tried again
        after the backoff), "failed" (for good), or None (not due, or recorded elsewhere)."""
        try:
            delivery = self.get_delivery(notice_id, "sms")
        except NoticeNotFound:
            return None
        if not delivery.due(wall(), retry_max):
            return None
        by = delivery.sender(self.service)
        contact = self.contact_of(delivery.case_id)
        if contact is None:  # cannot happen: scheduled because the number was known
            delivery.fail("no_contact: no mobile number is known for the case", self.clock.now(), None, by, wall())
            return "failed" if self._save_delivery(delivery) else None
        text = sms_text(delivery.legal_name, delivery.recipient_masked, delivery.case_id, delivery.region_code)
        if sms_text_problems(text, delivery.case_id):
            delivery.fail("text_refused: " + ", ".join(sms_text_problems(text, delivery.case_id)),
                          self.clock.now(), None, by, wall())
            return "failed" if self._save_delivery(delivery) else None
        try:
            try:
                phone = contact.phone(sealer)
            except ValueError:  # sealed with another key: a configuration to fix, then tried again
                log.error("notify: the mobile number of case %s does not unseal with this cipher key",
                          delivery.case_id)
                raise GatewayError("contact_unreadable: the sealed number does not open with this key",
                                   final=False) from None
            message_id = gateway.send(phone, text, delivery.idempotency_key)
        except GatewayError as exc:
            final = exc.final or delivery.attempts + 1 >= max_attempts
            retry_in = None if final else backoff_seconds(delivery.attempts + 1, retry_max)
            delivery.fail(exc.reason, self.clock.now(), retry_in, by, wall())  # the backoff runs from now
            if not self._save_delivery(delivery):
                return None
            return "failed" if final else "retry"
        delivery.deliver(message_id, self.clock.now(), by)
        return "delivered" if self._save_delivery(delivery) else None


# --- the worker ----------------------------------------------------------------------------------------
def _due_doc(doc: dict[str, Any], wall_now: float, retry_max: float) -> bool:
    """Whether a pending delivery document is due (the aggregate decides again)."""
    failed = doc.get("failed_wall")
    return failed is None or wall_now >= failed + backoff_seconds(doc["attempts"], retry_max)


class Deliverer:
    """Delivers what is due, one replica at a time (a lease in notify's side store): in-app at
    once, then the SMS due, oldest first. When the gateway fails transiently the scan stops
    sending (the rest wait for the next scan) rather than spend every notice's attempts on an
    outage."""

    LEASE = "notice-delivery"

    def __init__(self, app: Any, side: Any, sealer: Sealer, gateway: SmsGateway, *, retry_max: float,
                 max_attempts: int, lease_seconds: float = 30.0, catch_up: Callable[[], None] | None = None,
                 wall: Callable[[], float] = time.time):
        self.app = app
        self.side = side
        self.sealer = sealer
        self.gateway = gateway
        self.retry_max = retry_max
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.catch_up = catch_up
        self.wall = wall
        self.holder = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def _lease(self) -> bool:
        with self.side.transaction() as tx:
            return tx.take_lease(self.LEASE, self.holder, self.wall(), self.lease_seconds)

    def _release(self) -> None:
        with self.side.transaction() as tx:
            tx.release_lease(self.LEASE, self.holder)

    def deliver_due(self) -> dict[str, int]:
        """One scan; how many deliveries ended how ({"in_app": n, "delivered": n, "retry": n, ...})."""
        if self.catch_up is not None:
            self.catch_up()
        if not self._lease():
            return {}
        done: dict[str, int] = {}
        try:
            with self.side.transaction() as tx:
                in_app = tx.find(DELIVERY_DOC, "in_app:pending")
                sms = tx.find(DELIVERY_DOC, "sms:pending")
            for n, doc in enumerate(in_app, start=1):
                if n % 100 == 0 and not self._lease():
                    return done  # taken over (this scan ran past its lease)
                if self.app.deliver_in_app(doc["notice_id"]):
                    done["in_app"] = done.get("in_app", 0) + 1
            wall_now = self.wall()
            due = sorted((d for d in sms if _due_doc(d, wall_now, self.retry_max)),
                         key=lambda d: (d["issued_at"], d["notice_id"]))
            for doc in due:
                if not self._lease():
                    break  # taken over (this scan ran past its lease)
                outcome = self.app.send_sms(doc["notice_id"], self.gateway, self.sealer, retry_max=self.retry_max,
                                            max_attempts=self.max_attempts, wall=self.wall)
                if outcome is not None:
                    done[outcome] = done.get(outcome, 0) + 1
                if outcome == "retry":
                    break  # the gateway is down or slow: the others wait for the next scan
        finally:
            self._release()
        return done


async def notice_delivery(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """The delivery loop (a `ServiceSpec.workers` entry): every `notice_scan_seconds`."""
    from lifeline.stores.sealing import sealer_for

    settings = runtime.settings
    gateway = HttpSmsGateway(settings.sms_url, settings.sms_timeout_seconds)
    deliverer = Deliverer(runtime.app, runtime.side, sealer_for(settings), gateway,
                          retry_max=settings.notice_retry_max_seconds, max_attempts=settings.notice_max_attempts,
                          lease_seconds=max(10.0, 3 * settings.sms_timeout_seconds),
                          catch_up=runtime.projection.catch_up)
    interval = float(settings.notice_scan_seconds)
    try:
        while not stop.is_set():
            try:
                done = await asyncio.to_thread(deliverer.deliver_due)
                if done:
                    log.info("notify: notices %s", ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
                    runtime.saved()
            except Exception:
                log.exception("notify: notice delivery failed; retrying")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        gateway.close()


# --- read models -------------------------------------------------------------------------------------------
def overall(deliveries: dict[str, dict[str, Any]]) -> str:
    """A notice's delivery as a whole: delivered on every channel, still pending on one, or
    partly delivered (an SMS failed for good; the letter and in-app stand)."""
    states = {d["state"] for d in deliveries.values()}
    if not states or "pending" in states:
        return "pending"
    return "delivered" if states == {"delivered"} else "partly_delivered"


CHANNEL_FIELDS = ("state", "attempts", "reference", "delivered_at", "last_reason", "retry_at", "failed_at", "to_masked")


def _mirror(tx: SideTx, doc: dict[str, Any]) -> None:
    """The delivery's state on its notice's document (GET /v1/notices?case_id=)."""
    notice = tx.get("notice", doc["notice_id"])
    if notice is None:
        return
    deliveries = dict(notice.get("deliveries") or {})
    deliveries[doc["channel"]] = {name: doc[name] for name in CHANNEL_FIELDS}
    notice.update(deliveries=deliveries, delivery=overall(deliveries))
    tx.put("notice", doc["notice_id"], notice, ref=notice["case_id"])


def project_delivery(event: Any, tx: SideTx) -> None:
    if isinstance(event, Delivery.Scheduled):
        doc = {
            "notice_id": event.notice_id, "case_id": event.case_id, "channel": event.channel, "kind": event.kind,
            "legal_name": event.legal_name, "region_code": event.region_code,
            "recipient_masked": event.recipient_masked, "to_masked": event.to_masked, "issued_at": event.issued_at,
            "state": "pending", "attempts": 0, "reference": None, "delivered_at": None, "last_reason": None,
            "retry_at": None, "failed_at": None, "failed_wall": None,
        }
    elif isinstance(event, (Delivery.Delivered, Delivery.Failed)):
        doc = tx.get(DELIVERY_DOC, f"{event.notice_id}/{event.channel}")
        if doc is None:
            return
        if isinstance(event, Delivery.Delivered):
            doc.update(state="delivered", attempts=event.attempt, reference=event.reference,
                       delivered_at=event.delivered_at, retry_at=None)
            if event.channel == "in_app":
                notice = tx.get("notice", event.notice_id) or {}
                tx.put(INBOX_DOC, event.reference, {
                    "inbox_id": event.reference, "notice_id": event.notice_id, "case_id": event.case_id,
                    "kind": doc["kind"], "legal_name": doc["legal_name"], "body": notice.get("body", ""),
                    "recipient_masked": doc["recipient_masked"], "region_code": doc["region_code"],
                    "issued_at": doc["issued_at"], "delivered_at": event.delivered_at,
                }, ref=event.case_id)
        else:
            doc.update(state="pending" if event.retry_at is not None else "failed", attempts=event.attempt,
                       last_reason=event.reason, retry_at=event.retry_at, failed_at=event.failed_at,
                       failed_wall=event.failed_wall)
    else:
        return
    tx.put(DELIVERY_DOC, f"{doc['notice_id']}/{doc['channel']}", doc, ref=f"{doc['channel']}:{doc['state']}")
    _mirror(tx, doc)


def print_queue(tx: SideTx) -> list[dict[str, Any]]:
    """Letters waiting to be printed, oldest first."""
    docs = tx.find(DELIVERY_DOC, "letter:pending")
    docs.sort(key=lambda d: (d["issued_at"], d["notice_id"]))
    return [{"notice_id": d["notice_id"], "case_id": d["case_id"], "kind": d["kind"], "legal_name": d["legal_name"],
             "recipient_masked": d["recipient_masked"], "region_code": d["region_code"], "issued_at": d["issued_at"],
             "pdf": f"/v1/notices/{d['notice_id']}.pdf"} for d in docs]
