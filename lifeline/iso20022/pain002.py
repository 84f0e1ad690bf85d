"""pain.002.001.12 CustomerPaymentStatusReport: the bank's answer to a pain.001."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from ._xml import Builder, Iso20022Error, Reader, check_text, format_datetime, parse_datetime, parse_document, serialize

MESSAGE = "pain.002.001.12"

#: Transaction / group statuses (ISO ExternalPaymentTransactionStatus1Code, a selection).
ACCEPTED_STATUSES = frozenset({"ACCP", "ACSC", "ACSP", "ACTC", "ACWC", "ACCC", "ACFC", "ACWP"})
REJECTED = "RJCT"
PENDING = "PDNG"
#: Reason codes we expect on a rejection (ISO ExternalStatusReason1Code, a selection).
REASONS = {
    "AC01": "incorrect account number",
    "AC04": "closed account number",
    "AC06": "blocked account",
    "AG01": "transaction forbidden on this account",
    "AM04": "insufficient funds",
    "BE01": "creditor name does not match the account",
    "MD07": "beneficiary deceased",
    "RC01": "bank identifier incorrect",
    "FF01": "invalid file format",
    "DUPL": "duplicate payment",
    "NARR": "narrative (see additional information)",
}


@dataclass(frozen=True)
class TransactionStatus:
    end_to_end_id: str
    status: str
    reason_code: str | None = None
    additional_info: str | None = None
    #: the PmtInf it belonged to; when building, None means the original message id
    original_pmtinf_id: str | None = None

    @property
    def rejected(self) -> bool:
        return self.status == REJECTED


@dataclass(frozen=True)
class PaymentInfoStatus:
    """A status the bank gave to a whole PmtInf (applies to its transactions not listed)."""

    original_pmtinf_id: str
    status: str | None
    reason_code: str | None = None


@dataclass(frozen=True)
class StatusReport:
    msg_id: str
    created_at: datetime
    original_msg_id: str
    original_msg_name_id: str
    group_status: str | None
    transactions: tuple[TransactionStatus, ...]
    group_reason_code: str | None = None
    payment_infos: tuple[PaymentInfoStatus, ...] = ()

    def by_end_to_end_id(self) -> dict[str, TransactionStatus]:
        return {t.end_to_end_id: t for t in self.transactions}


_r = Reader(MESSAGE)


def _reason(el: etree._Element) -> tuple[str | None, str | None]:
    info = _r.find(el, "StsRsnInf")
    if info is None:
        return None, None
    code = _r.text(info, "Rsn/Cd") or _r.text(info, "Rsn/Prtry")
    addtl = [a.text.strip() for a in _r.findall(info, "AddtlInf") if a.text and a.text.strip()]
    return code, (" ".join(addtl) or None)


def parse_pain002(xml: bytes) -> StatusReport:
    """Validate `xml` against the pain.002.001.12 XSD and extract the statuses.

    Raises Iso20022Error (readable, quoting no value from the file) when the file is not
    well-formed, not valid, or a transaction status cannot be tied to an EndToEndId."""
    root = parse_document(xml, MESSAGE)
    rpt = _r.find(root, "CstmrPmtStsRpt")
    grp = _r.find(rpt, "OrgnlGrpInfAndSts")
    group_status = _r.text(grp, "GrpSts")
    group_reason, _ = _reason(grp)
    infos: list[PaymentInfoStatus] = []
    txs: list[TransactionStatus] = []
    for n, pmt in enumerate(_r.findall(rpt, "OrgnlPmtInfAndSts"), start=1):
        pmtinf_id = _r.text(pmt, "OrgnlPmtInfId") or ""
        pmt_status = _r.text(pmt, "PmtInfSts")
        pmt_reason, _ = _reason(pmt)
        if pmt_status is not None:
            infos.append(PaymentInfoStatus(pmtinf_id, pmt_status, pmt_reason))
        for m, tx in enumerate(_r.findall(pmt, "TxInfAndSts"), start=1):
            where = f"{MESSAGE}: OrgnlPmtInfAndSts[{n}]/TxInfAndSts[{m}] (line {tx.sourceline})"
            e2e = _r.text(tx, "OrgnlEndToEndId")
            if not e2e:
                raise Iso20022Error(f"{where}: no OrgnlEndToEndId, the status cannot be matched")
            status = _r.text(tx, "TxSts") or pmt_status or group_status
            if status is None:
                raise Iso20022Error(f"{where}: no TxSts and no PmtInf or group status to inherit")
            code, addtl = _reason(tx)
            txs.append(TransactionStatus(e2e, status, code, addtl, pmtinf_id))
    hdr = _r.find(rpt, "GrpHdr")
    return StatusReport(
        msg_id=_r.text(hdr, "MsgId") or "",
        created_at=parse_datetime(_r.text(hdr, "CreDtTm"), f"{MESSAGE}: GrpHdr/CreDtTm"),
        original_msg_id=_r.text(grp, "OrgnlMsgId") or "",
        original_msg_name_id=_r.text(grp, "OrgnlMsgNmId") or "",
        group_status=group_status,
        transactions=tuple(txs),
        group_reason_code=group_reason,
        payment_infos=tuple(infos),
    )


def group_status_of(statuses: tuple[TransactionStatus, ...] | list[TransactionStatus]) -> str | None:
    """All the same -> that status; some rejected and some not -> PART; none -> None."""
    kinds = {t.status for t in statuses}
    if not kinds:
        return None
    if len(kinds) == 1:
        return next(iter(kinds))
    if REJECTED in kinds:
        return "PART"
    if PENDING in kinds:
        return PENDING
    return "ACSP" if "ACSP" in kinds else sorted(kinds)[0]


def build_pain002(
    original_msg_id: str,
    statuses: tuple[TransactionStatus, ...] | list[TransactionStatus],
    created_at: datetime,
    msg_id: str,
    *,
    group_status: str | None = None,
    group_reason_code: str | None = None,
    original_msg_name_id: str = "pain.001.001.09",
) -> bytes:
    """A valid pain.002.001.12 reporting `statuses` for the pain.001 `original_msg_id`
    (for the bank simulator). `group_status` defaults to `group_status_of(statuses)`."""
    check_text(original_msg_id, "original_msg_id", 35)
    check_text(msg_id, "msg_id", 35)
    check_text(original_msg_name_id, "original_msg_name_id", 35)
    groups: OrderedDict[str, list[TransactionStatus]] = OrderedDict()
    for i, t in enumerate(statuses):
        where = f"statuses[{i}]"
        if not isinstance(t, TransactionStatus):
            raise ValueError(f"{where}: must be a TransactionStatus")
        check_text(t.end_to_end_id, f"{where}.end_to_end_id", 35)
        check_text(t.status, f"{where}.status", 4)
        if t.reason_code is not None:
            check_text(t.reason_code, f"{where}.reason_code", 4)
        if t.additional_info is not None:
            check_text(t.additional_info, f"{where}.additional_info", 105)
        pmtinf = t.original_pmtinf_id if t.original_pmtinf_id is not None else original_msg_id
        check_text(pmtinf, f"{where}.original_pmtinf_id", 35)
        groups.setdefault(pmtinf, []).append(t)
    stamp = format_datetime(created_at, "created_at")
    if group_status is None:
        group_status = group_status_of(statuses)
    if group_status is not None:
        check_text(group_status, "group_status", 4)
    if group_reason_code is not None:
        check_text(group_reason_code, "group_reason_code", 4)

    b = Builder(MESSAGE)
    doc = b.root()
    rpt = b.sub(doc, "CstmrPmtStsRpt")
    hdr = b.sub(rpt, "GrpHdr")
    b.sub(hdr, "MsgId", msg_id)
    b.sub(hdr, "CreDtTm", stamp)
    grp = b.sub(rpt, "OrgnlGrpInfAndSts")
    b.sub(grp, "OrgnlMsgId", original_msg_id)
    b.sub(grp, "OrgnlMsgNmId", original_msg_name_id)
    if group_status is not None:
        b.sub(grp, "GrpSts", group_status)
    if group_reason_code is not None:
        b.path(grp, "StsRsnInf/Rsn/Cd", group_reason_code)
    for pmtinf, txs in groups.items():
        pmt = b.sub(rpt, "OrgnlPmtInfAndSts")
        b.sub(pmt, "OrgnlPmtInfId", pmtinf)
        for t in txs:
            tx = b.sub(pmt, "TxInfAndSts")
            b.sub(tx, "OrgnlEndToEndId", t.end_to_end_id)
            b.sub(tx, "TxSts", t.status)
            if t.reason_code is not None or t.additional_info is not None:
                info = b.sub(tx, "StsRsnInf")
                if t.reason_code is not None:
                    b.path(info, "Rsn/Cd", t.reason_code)
                if t.additional_info is not None:
                    b.sub(info, "AddtlInf", t.additional_info)
    return serialize(doc, MESSAGE)
