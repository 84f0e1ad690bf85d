"""Notify's aggregates. This slice: written notices with their legal names."""

from __future__ import annotations


from lifeline.domain.aggregate import LifelineAggregate, Meta

LEGAL_NAMES = {
    "acceptance": "受理通知书",
    "non_acceptance": "不予受理告知书",
    "materials": "补正材料一次性告知书",
    "refusal": "不予批准决定书",
    "public_notice": "审核确认公示单",
    "adjustment": "调整/停发告知书",
}


class Notice(LifelineAggregate):
    id_kind = "notice"  # keyed (case, kind): one notice of each kind per case

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

    @classmethod
    def issue(cls, case_id: str, kind: str, recipient_masked: str, region_code: str, body: str,
              cause_event_id: str, issued_at: str, by: Meta, channel: str = "letter") -> "Notice":
        ident = cls.create_id(case_id, kind)
        return cls._create(
            cls.Issued, id=ident, notice_id=f"N{kind[:3].upper()}-{ident.hex[:16].upper()}",
            case_id=case_id, kind=kind, legal_name=LEGAL_NAMES[kind], channel=channel,
            recipient_masked=recipient_masked, region_code=region_code, body=body,
            cause_event_id=cause_event_id, issued_at=issued_at, meta=by.as_dict(),
        )

    def __init__(self, notice_id: str, case_id: str, kind: str, legal_name: str, channel: str,
                 recipient_masked: str, region_code: str, body: str, cause_event_id: str,
                 issued_at: str, meta: dict):
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


def acceptance_text(name_masked: str, case_id: str, assistance_type: str) -> str:
    return (
        f"{name_masked}：您的社会救助申请（{assistance_type}，案件号 {case_id}）已受理。"
        "我们将在法定期限内完成家庭经济状况核查与审核确认，并书面告知结果。"
    )


def refusal_text(name_masked: str, case_id: str, reason: str) -> str:
    return (
        f"{name_masked}：经审核，您的社会救助申请（案件号 {case_id}）不予批准。理由：{reason}。"
        "如对本决定有异议，可自收到之日起六十日内申请行政复议，或六个月内提起行政诉讼。"
    )
