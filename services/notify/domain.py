"""Notify's aggregates: written notices with their legal names, the public notice board,
objections received on it, and the deadline watch (督办)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.rules.vocabulary import REQUIRED_MATERIALS

LEGAL_NAMES = {
    "acceptance": "受理通知书",
    "non_acceptance": "不予受理告知书",
    "materials": "补正材料一次性告知书",
    "refusal": "不予批准决定书",
    "public_notice": "审核确认公示单",
    "adjustment": "调整/停发告知书",
}

# What a notice calls each kind of assistance (the wire's assistance_type).
ASSISTANCE_NAMES = {
    "dibao": "最低生活保障",
    "tekun": "特困人员救助供养",
    "linshi_jinan": "急难型临时救助",
    "linshi_zhichu": "支出型临时救助",
    "low_income": "低收入家庭认定",
}


# The remedies a refusal in writing must name (行政复议法 art. 20, 行政诉讼法 art. 46).
REMEDY = "如对本决定不服，可自收到之日起六十日内申请行政复议，或六个月内依法提起行政诉讼。"


class Notice(LifelineAggregate):
    # Keyed (case, kind): one notice of each kind per case; a kind a case may receive more
    # than once (补正材料 asked again) adds what occasioned it (the cause event's id).
    id_kind = "notice"

    class Issued(LifelineAggregate.Created):
        notice_id: str
        case_id: str
        kind: str
        legal_name: str
        channel: str
        recipient_masked: str
        region_code: str
        body: str
        cause_event_id: str
        issued_at: str
        issuing_office: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Issued before the deciding office was kept: in the case's township's name.
            state["issuing_office"] = state["region_code"][:9]

    @classmethod
    def identity(cls, case_id: str, kind: str, occasion: str = ""):
        return cls.create_id(case_id, kind, occasion) if occasion else cls.create_id(case_id, kind)

    @classmethod
    def issue(cls, case_id: str, kind: str, recipient_masked: str, region_code: str, body: str,
              cause_event_id: str, issued_at: str, by: Meta, channel: str = "letter",
              occasion: str = "", issuing_office: str = "") -> "Notice":
        ident = cls.identity(case_id, kind, occasion)
        return cls._create(
            cls.Issued, id=ident, notice_id=f"N{kind[:3].upper()}-{ident.hex[:16].upper()}",
            case_id=case_id, kind=kind, legal_name=LEGAL_NAMES[kind], channel=channel,
            recipient_masked=recipient_masked, region_code=region_code, body=body,
            cause_event_id=cause_event_id, issued_at=issued_at,
            issuing_office=issuing_office or region_code[:9], meta=by.as_dict(),
        )

    def __init__(self, notice_id: str, case_id: str, kind: str, legal_name: str, channel: str,
                 recipient_masked: str, region_code: str, body: str, cause_event_id: str,
                 issued_at: str, issuing_office: str, meta: dict):
        if LEGAL_NAMES.get(kind) != legal_name:
            raise ValueError(f"notice kind {kind!r} has the legal name {LEGAL_NAMES.get(kind)!r}")
        self.notice_id = notice_id
        self.case_id = case_id
        self.kind = kind
        self.legal_name = legal_name
        self.channel = channel
        self.recipient_masked = recipient_masked
        self.region_code = region_code
        self.body = body
        self.cause_event_id = cause_event_id
        self.issued_at = issued_at
        self.issuing_office = issuing_office


def issuing_office_of(actor_office: str, region_code: str) -> str:
    """The division a notice is issued in the name of: the office whose officer acted, when it
    is the case's own township or county (a county's refusal is the county's decision and
    names the county's remedy); otherwise (a service acting on its own) the case's township."""
    if len(actor_office) in (6, 9) and region_code.startswith(actor_office):
        return actor_office
    return region_code[:9]


# --- the public notice board (公示) -------------------------------------------------------
# What notify keeps of a PublicNoticePosted (BoardEntry.Posted).
BOARD_FIELDS = ("public_notice_id", "case_id", "village_code", "applicant_name_masked",
                "members_count", "assistance_type", "monthly_amount_fen", "one_off_amount_fen",
                "notice_from", "notice_until", "ends_at", "posted_at")

class BoardEntry(LifelineAggregate):
    """A proposed inclusion on a village's board for its notice period: only what the board
    may show (masked name, members, amount), the case it belongs to, and when it ends."""

    id_kind = "board_entry"  # keyed by public_notice_id: a repeated posting is one entry

    class Posted(LifelineAggregate.Created):
        public_notice_id: str
        case_id: str
        village_code: str
        applicant_name_masked: str
        members_count: int
        assistance_type: str
        monthly_amount_fen: int | None
        one_off_amount_fen: int | None
        notice_from: str
        notice_until: str
        ends_at: str
        posted_at: str

    @classmethod
    def post(cls, data: dict[str, Any], by: Meta) -> "BoardEntry":
        """From a PublicNoticePosted's data; the verification id and anything else stay out."""
        fields = {name: data[name] for name in BOARD_FIELDS}
        return cls._create(cls.Posted, id=cls.create_id(data["public_notice_id"]), **fields,
                           meta=by.as_dict())

    def __init__(self, public_notice_id: str, case_id: str, village_code: str,
                 applicant_name_masked: str, members_count: int, assistance_type: str,
                 monthly_amount_fen: int | None, one_off_amount_fen: int | None, notice_from: str,
                 notice_until: str, ends_at: str, posted_at: str, meta: dict):
        self.public_notice_id = public_notice_id
        self.case_id = case_id
        self.village_code = village_code
        self.ends_at = ends_at

    def is_current(self, now: datetime) -> bool:
        return now < datetime.fromisoformat(self.ends_at)


class NoticePeriodOver(Exception):
    """An objection to a board entry whose notice period has ended (409)."""


class Objection(LifelineAggregate):
    """An objection (异议) someone left on a board entry; verification raises it on the case."""

    id_kind = "objection"

    class Received(LifelineAggregate.Created):
        objection_id: str
        case_id: str
        public_notice_id: str
        village_code: str
        text: str
        contact: str | None
        received_at: str

    @classmethod
    def receive(cls, objection_id: str, entry: BoardEntry, text: str, contact: str | None,
                now: datetime, by: Meta) -> "Objection":
        if not entry.is_current(now):
            raise NoticePeriodOver(entry.public_notice_id)
        return cls._create(
            cls.Received, id=cls.create_id(objection_id), objection_id=objection_id,
            case_id=entry.case_id, public_notice_id=entry.public_notice_id,
            village_code=entry.village_code, text=text, contact=contact,
            received_at=now.isoformat(), meta=by.as_dict(),
        )

    def __init__(self, objection_id: str, case_id: str, public_notice_id: str, village_code: str,
                 text: str, contact: str | None, received_at: str, meta: dict):
        self.objection_id = objection_id
        self.case_id = case_id
        self.public_notice_id = public_notice_id
        self.village_code = village_code
        self.received_at = received_at


# --- the deadline watch (督办) ------------------------------------------------------------
def escalation_of(office: str) -> dict[str, str]:
    """The office above the responsible one, which a breach is escalated to (督办): a township
    (9 digits) → its county, a county → its prefecture, a prefecture → its province; a
    province stays answerable itself."""
    if len(office) == 9:
        above = office[:6]
    elif office[4:] != "00":
        above = office[:4] + "00"
    else:
        above = office[:2] + "0000"
    if above[2:] == "0000":
        level = "province"
    elif above[4:] == "00":
        level = "prefecture"
    else:
        level = "county"
    return {"office": above, "level": level}


# What a deadline is known by on the wire (DeadlineSet, DeadlineWarning, DeadlineBreached).
DEADLINE_IDENTITY = ("deadline_id", "case_id", "clock", "label_zh", "region_code",
                     "responsible_office", "due_date", "due_at")
# What notify keeps of a DeadlineSet (Deadline.Opened).
DEADLINE_FIELDS = (*DEADLINE_IDENTITY, "start_date", "warn_at", "period", "calendar_known",
                   "warnings", "set_at")


class Deadline(LifelineAggregate):
    """One statutory deadline of a case, as its producer set it: `open` → `warned` (at
    warn_at) → `breached` (at due_at, escalated) and, whenever its step is done or no longer
    applies, `cleared` with the producer's outcome (met, late, cancelled). Each transition
    happens once: the aggregate's state decides, so repeated scans, replays and several
    replicas change nothing more."""

    id_kind = "deadline"  # keyed by deadline_id: a repeated DeadlineSet is the same deadline

    class Opened(LifelineAggregate.Created):
        deadline_id: str
        case_id: str
        clock: str
        label_zh: str
        region_code: str
        responsible_office: str
        start_date: str
        due_date: str
        due_at: str
        warn_at: str
        period: str
        calendar_known: bool
        warnings: list[str]
        set_at: str

    class Warned(LifelineAggregate.Event):
        deadline_id: str
        case_id: str
        clock: str
        label_zh: str
        region_code: str
        responsible_office: str
        due_date: str
        due_at: str
        warned_at: str

        def apply(self, d: "Deadline") -> None:
            d.state = "warned"
            d.warned_at = self.warned_at

    class Breached(LifelineAggregate.Event):
        deadline_id: str
        case_id: str
        clock: str
        label_zh: str
        region_code: str
        responsible_office: str
        due_date: str
        due_at: str
        breached_at: str
        escalated_to: dict[str, str]

        def apply(self, d: "Deadline") -> None:
            d.state = "breached"
            d.breached_at = self.breached_at
            d.escalated_to = dict(self.escalated_to)

    class Cleared(LifelineAggregate.Event):
        deadline_id: str
        outcome: str  # met | late | cancelled
        cleared_at: str

        def apply(self, d: "Deadline") -> None:
            d.state = "cleared"
            d.outcome = self.outcome
            d.cleared_at = self.cleared_at

    @classmethod
    def open(cls, data: dict[str, Any], by: Meta) -> "Deadline":
        """From a DeadlineSet's data."""
        fields = {name: data[name] for name in DEADLINE_FIELDS}
        fields["warnings"] = list(fields["warnings"])
        return cls._create(cls.Opened, id=cls.create_id(data["deadline_id"]), **fields,
                           meta=by.as_dict())

    def __init__(self, deadline_id: str, case_id: str, clock: str, label_zh: str,
                 region_code: str, responsible_office: str, start_date: str, due_date: str,
                 due_at: str, warn_at: str, period: str, calendar_known: bool,
                 warnings: list[str], set_at: str, meta: dict):
        self.deadline_id = deadline_id
        self.case_id = case_id
        self.clock = clock
        self.label_zh = label_zh
        self.region_code = region_code
        self.responsible_office = responsible_office
        self.due_date = due_date
        self.due_at = due_at
        self.warn_at = warn_at
        self.state = "open"
        self.outcome: str | None = None
        self.escalated_to: dict[str, str] | None = None
        self.warned_at: str | None = None
        self.breached_at: str | None = None
        self.cleared_at: str | None = None
        # The chain of causes goes on from the event that set it.
        self.correlation_id = meta.get("correlation_id", "")
        self.cause_id = meta.get("causation_id", "")

    def _identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DEADLINE_IDENTITY}

    def watch(self, now: datetime, by: Meta) -> str | None:
        """Warn or breach as `now` requires: "warned", "breached" or None (nothing due, or
        already done). A deadline first seen past its due time is breached without a warning."""
        if self.state not in ("open", "warned"):
            return None
        if now >= datetime.fromisoformat(self.due_at):
            self.trigger_event(self.Breached, **self._identity(), breached_at=now.isoformat(),
                               escalated_to=escalation_of(self.responsible_office),
                               meta=by.as_dict())
            return "breached"
        if self.state == "open" and now >= datetime.fromisoformat(self.warn_at):
            self.trigger_event(self.Warned, **self._identity(), warned_at=now.isoformat(),
                               meta=by.as_dict())
            return "warned"
        return None

    def clear(self, outcome: str, cleared_at: str, by: Meta) -> bool:
        """The producer cleared it; False when it was cleared before."""
        if self.state == "cleared":
            return False
        self.trigger_event(self.Cleared, deadline_id=self.deadline_id, outcome=outcome,
                           cleared_at=cleared_at, meta=by.as_dict())
        return True

    def watcher(self, service: str) -> Meta:
        """Who acts when the watch warns or escalates: the service, for the chain that set it."""
        return Meta(user_id=f"system:{service}", role="system", org_code="",
                    correlation_id=self.correlation_id, causation_id=self.cause_id)


# --- the texts -------------------------------------------------------------------------------
def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}元"


def acceptance_text(name_masked: str, case_id: str, assistance_type: str) -> str:
    kind = ASSISTANCE_NAMES.get(assistance_type, assistance_type)
    return (
        f"{name_masked}：您的社会救助申请（{kind}，{assistance_type}，案件号 {case_id}）已受理。"
        "我们将在法定期限内完成家庭经济状况核查与审核确认，并书面告知结果。"
    )


def non_acceptance_text(name_masked: str, case_id: str, assistance_type: str, reason: str) -> str:
    kind = ASSISTANCE_NAMES.get(assistance_type, assistance_type)
    return (
        f"{name_masked}：您的社会救助申请（{kind}，案件号 {case_id}）不予受理。理由：{reason}。"
        + REMEDY
    )


def materials_text(name_masked: str, case_id: str, assistance_type: str, missing: list[str],
                   repeat: bool, reason: str) -> str:
    kind = ASSISTANCE_NAMES.get(assistance_type, assistance_type)
    items = "；".join(f"{n}. {REQUIRED_MATERIALS.get(m, m)}" for n, m in enumerate(missing, start=1))
    if repeat:
        lead = f"您补正后仍缺以下材料（本告知书只列仍缺的材料）：{items}。"
    else:
        lead = f"请一次性补齐以下材料：{items}。"
    because = f"说明：{reason}。" if reason else ""
    return (
        f"{name_masked}：您的社会救助申请（{kind}，案件号 {case_id}）材料不全。{lead}{because}"
        "其他可通过部门间数据共享获取的材料无需提供。补齐后即予受理。"
    )


def refusal_text(name_masked: str, case_id: str, reason: str) -> str:
    return (
        f"{name_masked}：经审核，您的社会救助申请（案件号 {case_id}）不予批准。理由：{reason}。"
        "如对本决定有异议，可自收到之日起六十日内申请行政复议，或六个月内提起行政诉讼。"
    )


def public_notice_text(name_masked: str, members_count: int, assistance_type: str,
                       monthly_amount_fen: int | None, one_off_amount_fen: int | None,
                       notice_from: str, notice_until: str, hotline: str) -> str:
    kind = ASSISTANCE_NAMES.get(assistance_type, assistance_type)
    if monthly_amount_fen is not None:
        amount = f"每月{yuan(monthly_amount_fen)}"
    elif one_off_amount_fen is not None:
        amount = f"一次性{yuan(one_off_amount_fen)}"
    else:
        amount = "不涉及救助金"
    return (
        f"审核确认公示：申请人{name_masked}，保障人数{members_count}人，拟给予{kind}，{amount}。"
        f"公示期：{notice_from}至{notice_until}。对公示内容有异议的，可在公示期内拨打举报电话"
        f"{hotline}或在公示栏留言反映。"
    )


# 社会救助暂行办法 art. 13: the county decides to raise, lower or stop the benefit as the
# household's situation changes, and gives its reasons in writing when it stops it.
CHANGE_BASIS = "依据《社会救助暂行办法》第十三条"


def change_text(name_masked: str, case_id: str, change: str, from_period: str, reason: str,
                monthly_amount_fen: int | None = None, previous_monthly_amount_fen: int | None = None) -> str:
    """调整/停发告知书: what changes from which month, why, on what basis, and the remedies."""
    year, month = from_period.split("-")
    start = f"自{year}年{int(month)}月起"
    if change == "BenefitAdjusted":
        what = (f"{start}，您家的救助金由每月{yuan(previous_monthly_amount_fen or 0)}"
                f"调整为每月{yuan(monthly_amount_fen or 0)}")
    elif change == "BenefitSuspended":
        what = f"{start}，暂停发放您家的救助金"
    elif change == "BenefitResumed":
        what = f"{start}，恢复发放您家的救助金"
    else:
        what = f"{start}，停止发放您家的救助金"
    return (f"{name_masked}：经审核，{what}（案件号 {case_id}）。理由：{reason}。{CHANGE_BASIS}。"
            + REMEDY)

