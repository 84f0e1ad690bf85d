"""pain.001.001.09 CustomerCreditTransferInitiation: one bank batch of benefit payments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from ._xml import Builder, Iso20022Error, Reader, check_text, format_date, format_datetime, parse_datetime, parse_document, serialize
from .amounts import decimal_to_fen, fen_to_decimal

MESSAGE = "pain.001.001.09"

_BIC = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
_CNAPS = re.compile(r"[0-9]{12}")
#: Amounts are xs:decimal with at most 18 digits in total; fen keep two of them.
MAX_AMOUNT_FEN = 10**18 - 1


@dataclass(frozen=True)
class CreditTransfer:
    """One payment to one household account.

    `end_to_end_id` ties the payment to entitlement × period and comes back in pain.002 and
    camt.053. `creditor_account` is the clear account number: it only ever goes into the bank file."""

    end_to_end_id: str
    amount_fen: int
    creditor_name: str
    creditor_account: str
    remittance: str | None = None


@dataclass(frozen=True, kw_only=True)
class BankBatch:
    """One pain.001 file for one bank channel.

    Exactly one of `debtor_agent_bic` (BIC, e.g. "ICBKCNBJXXX") or `debtor_agent_bank_code`
    (CNAPS 12-digit bank code, 行号) names the county's bank. `single_pmtinf`: the bank accepts
    one PmtInf per file; otherwise the transfers are split into PmtInf of `pmtinf_size`."""

    batch_id: str
    created_at: datetime
    initiating_party: str
    debtor_name: str
    debtor_account: str
    requested_execution_date: date
    transfers: tuple[CreditTransfer, ...]
    debtor_agent_bic: str | None = None
    debtor_agent_bank_code: str | None = None
    single_pmtinf: bool = True
    pmtinf_size: int = 500
    category_purpose: str | None = "SSBE"  # ISO ExternalCategoryPurpose1Code: social security benefit


def control_sum_fen(transfers: tuple[CreditTransfer, ...] | list[CreditTransfer]) -> int:
    return sum(t.amount_fen for t in transfers)


def _check(batch: BankBatch) -> None:
    check_text(batch.batch_id, "batch_id", 35)
    format_datetime(batch.created_at, "created_at")
    check_text(batch.initiating_party, "initiating_party", 140)
    check_text(batch.debtor_name, "debtor_name", 140)
    check_text(batch.debtor_account, "debtor_account", 34)
    format_date(batch.requested_execution_date, "requested_execution_date")
    if (batch.debtor_agent_bic is None) == (batch.debtor_agent_bank_code is None):
        raise ValueError("debtor_agent_bic / debtor_agent_bank_code: give exactly one")
    if batch.debtor_agent_bic is not None and not _BIC.fullmatch(batch.debtor_agent_bic):
        raise ValueError("debtor_agent_bic: not a BIC (8 or 11 upper-case letters and digits)")
    if batch.debtor_agent_bank_code is not None and not _CNAPS.fullmatch(batch.debtor_agent_bank_code):
        raise ValueError("debtor_agent_bank_code: not a CNAPS bank code (12 digits)")
    if batch.category_purpose is not None:
        check_text(batch.category_purpose, "category_purpose", 4)
    if not isinstance(batch.transfers, (tuple, list)) or not batch.transfers:
        raise ValueError("transfers: a batch needs at least one transfer")
    if not batch.single_pmtinf:
        if isinstance(batch.pmtinf_size, bool) or not isinstance(batch.pmtinf_size, int) or batch.pmtinf_size < 1:
            raise ValueError("pmtinf_size: must be a positive integer")
        if len(batch.transfers) > batch.pmtinf_size and len(batch.batch_id) > 29:
            raise ValueError("batch_id: at most 29 characters when the batch is split into several PmtInf")
    seen: set[str] = set()
    for i, t in enumerate(batch.transfers):
        where = f"transfers[{i}]"
        if not isinstance(t, CreditTransfer):
            raise ValueError(f"{where}: must be a CreditTransfer")
        check_text(t.end_to_end_id, f"{where}.end_to_end_id", 35)
        if t.end_to_end_id in seen:
            raise ValueError(f"{where}.end_to_end_id: appears twice in the batch")
        seen.add(t.end_to_end_id)
        if isinstance(t.amount_fen, bool) or not isinstance(t.amount_fen, int):
            raise ValueError(f"{where}.amount_fen: must be an integer number of fen")
        if t.amount_fen <= 0:
            raise ValueError(f"{where}.amount_fen: must be positive")
        if t.amount_fen > MAX_AMOUNT_FEN:
            raise ValueError(f"{where}.amount_fen: too large")
        check_text(t.creditor_name, f"{where}.creditor_name", 140)
        check_text(t.creditor_account, f"{where}.creditor_account", 34)
        if t.remittance is not None:
            check_text(t.remittance, f"{where}.remittance", 140)
    if control_sum_fen(batch.transfers) > MAX_AMOUNT_FEN:
        raise ValueError("transfers: the control sum is too large for one file")


def _chunks(batch: BankBatch) -> list[tuple[str, tuple[CreditTransfer, ...]]]:
    transfers = tuple(batch.transfers)
    if batch.single_pmtinf or len(transfers) <= batch.pmtinf_size:
        return [(batch.batch_id, transfers)]
    size = batch.pmtinf_size
    return [
        (f"{batch.batch_id}-P{n + 1:04d}", transfers[start:start + size])
        for n, start in enumerate(range(0, len(transfers), size))
    ]


def build_pain001(batch: BankBatch) -> bytes:
    """The pain.001.001.09 document (UTF-8 bytes) for `batch`, validated against the XSD.

    Raises ValueError naming the field for bad input; Iso20022Error if the result does not
    validate (a bug in this module)."""
    _check(batch)
    b = Builder(MESSAGE)
    doc = b.root()
    init = b.sub(doc, "CstmrCdtTrfInitn")
    hdr = b.sub(init, "GrpHdr")
    b.sub(hdr, "MsgId", batch.batch_id)
    b.sub(hdr, "CreDtTm", format_datetime(batch.created_at, "created_at"))
    b.sub(hdr, "NbOfTxs", str(len(batch.transfers)))
    b.sub(hdr, "CtrlSum", fen_to_decimal(control_sum_fen(batch.transfers)))
    b.sub(b.sub(hdr, "InitgPty"), "Nm", batch.initiating_party)

    for pmtinf_id, transfers in _chunks(batch):
        pmt = b.sub(init, "PmtInf")
        b.sub(pmt, "PmtInfId", pmtinf_id)
        b.sub(pmt, "PmtMtd", "TRF")
        b.sub(pmt, "NbOfTxs", str(len(transfers)))
        b.sub(pmt, "CtrlSum", fen_to_decimal(control_sum_fen(transfers)))
        if batch.category_purpose is not None:
            b.path(pmt, "PmtTpInf/CtgyPurp/Cd", batch.category_purpose)
        b.path(pmt, "ReqdExctnDt/Dt", format_date(batch.requested_execution_date, "requested_execution_date"))
        b.sub(b.sub(pmt, "Dbtr"), "Nm", batch.debtor_name)
        b.path(pmt, "DbtrAcct/Id/Othr/Id", batch.debtor_account)
        fin = b.path(pmt, "DbtrAgt/FinInstnId")
        if batch.debtor_agent_bic is not None:
            b.sub(fin, "BICFI", batch.debtor_agent_bic)
        else:
            mmb = b.sub(fin, "ClrSysMmbId")
            b.path(mmb, "ClrSysId/Cd", "CNAPS")
            b.sub(mmb, "MmbId", batch.debtor_agent_bank_code)
        for t in transfers:
            tx = b.sub(pmt, "CdtTrfTxInf")
            b.path(tx, "PmtId/EndToEndId", t.end_to_end_id)
            b.sub(b.sub(tx, "Amt"), "InstdAmt", fen_to_decimal(t.amount_fen), Ccy="CNY")
            b.sub(b.sub(tx, "Cdtr"), "Nm", t.creditor_name)
            b.path(tx, "CdtrAcct/Id/Othr/Id", t.creditor_account)
            if t.remittance is not None:
                b.path(tx, "RmtInf/Ustrd", t.remittance)
    return serialize(doc, MESSAGE)


@dataclass(frozen=True)
class ReceivedBatch:
    """A pain.001 as a bank reads it: the batch's id, the paying account and the transfers."""

    msg_id: str
    created_at: datetime
    debtor_account: str
    transfers: tuple[CreditTransfer, ...]


def parse_pain001(xml: bytes) -> ReceivedBatch:
    """Validate `xml` against the pain.001.001.09 XSD and read its transfers (what a bank does
    with a file it receives). Raises Iso20022Error, quoting no value, when it is not valid."""
    root = parse_document(xml, MESSAGE)
    r = Reader(MESSAGE)
    init = r.find(root, "CstmrCdtTrfInitn")
    transfers = []
    debtor_account = ""
    for pmt in r.findall(init, "PmtInf"):
        debtor_account = r.text(pmt, "DbtrAcct/Id/Othr/Id") or debtor_account
        for tx in r.findall(pmt, "CdtTrfTxInf"):
            try:
                amount_fen = decimal_to_fen(r.text(tx, "Amt/InstdAmt") or "")
            except ValueError as exc:
                raise Iso20022Error(f"{MESSAGE}: CdtTrfTxInf (line {tx.sourceline}): {exc}") from None
            transfers.append(CreditTransfer(
                end_to_end_id=r.text(tx, "PmtId/EndToEndId") or "",
                amount_fen=amount_fen,
                creditor_name=r.text(tx, "Cdtr/Nm") or "",
                creditor_account=r.text(tx, "CdtrAcct/Id/Othr/Id") or "",
                remittance=r.text(tx, "RmtInf/Ustrd"),
            ))
    hdr = r.find(init, "GrpHdr")
    return ReceivedBatch(
        msg_id=r.text(hdr, "MsgId") or "",
        created_at=parse_datetime(r.text(hdr, "CreDtTm"), f"{MESSAGE}: GrpHdr/CreDtTm"),
        debtor_account=debtor_account, transfers=tuple(transfers),
    )
