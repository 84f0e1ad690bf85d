"""camt.053.001.08 BankToCustomerStatement: the county paying account's statement, for
reconciliation (debits for payments, credits for returned payments)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from ._xml import (
    Builder,
    Iso20022Error,
    Reader,
    check_text,
    format_date,
    format_datetime,
    parse_date,
    parse_datetime,
    parse_document,
    serialize,
)
from .amounts import decimal_to_fen, fen_to_decimal

MESSAGE = "camt.053.001.08"
CREDIT = "CRDT"
DEBIT = "DBIT"


@dataclass(frozen=True)
class Balance:
    """A balance in fen; negative means a debit balance (CdtDbtInd DBIT)."""

    amount_fen: int
    date: date


@dataclass(frozen=True)
class StatementEntry:
    amount_fen: int
    credit_debit: str  # "CRDT" or "DBIT"
    booking_date: date | None
    end_to_end_id: str | None = None
    status: str = "BOOK"
    #: set on a returned payment (RtrInf/Rsn/Cd, e.g. AC04 closed account)
    return_reason: str | None = None
    entry_ref: str | None = None


@dataclass(frozen=True)
class Statement:
    msg_id: str
    statement_id: str
    created_at: datetime
    account: str
    entries: tuple[StatementEntry, ...]
    opening_balance: Balance | None = None
    closing_balance: Balance | None = None
    currency: str = "CNY"


def _bank_tx_code(e: StatementEntry) -> tuple[str, str, str]:
    if e.return_reason is not None:
        return ("PMNT", "ICDT", "RRTN")  # issued credit transfer, returned
    if e.credit_debit == DEBIT:
        return ("PMNT", "ICDT", "DMCT")  # issued domestic credit transfer
    return ("PMNT", "RCDT", "DMCT")  # received domestic credit transfer


def _check(s: Statement) -> None:
    check_text(s.msg_id, "msg_id", 35)
    check_text(s.statement_id, "statement_id", 35)
    format_datetime(s.created_at, "created_at")
    check_text(s.account, "account", 34)
    check_text(s.currency, "currency", 3, min_len=3)
    if s.opening_balance is None and s.closing_balance is None:
        raise ValueError("opening_balance / closing_balance: camt.053.001.08 needs at least one balance")
    for name, bal in (("opening_balance", s.opening_balance), ("closing_balance", s.closing_balance)):
        if bal is None:
            continue
        if isinstance(bal.amount_fen, bool) or not isinstance(bal.amount_fen, int):
            raise ValueError(f"{name}.amount_fen: must be an integer number of fen")
        format_date(bal.date, f"{name}.date")
    for i, e in enumerate(s.entries):
        where = f"entries[{i}]"
        if isinstance(e.amount_fen, bool) or not isinstance(e.amount_fen, int) or e.amount_fen < 0:
            raise ValueError(f"{where}.amount_fen: must be a non-negative integer number of fen")
        if e.credit_debit not in (CREDIT, DEBIT):
            raise ValueError(f"{where}.credit_debit: must be CRDT or DBIT")
        if e.booking_date is not None:
            format_date(e.booking_date, f"{where}.booking_date")
        check_text(e.status, f"{where}.status", 4)
        if e.end_to_end_id is not None:
            check_text(e.end_to_end_id, f"{where}.end_to_end_id", 35)
        if e.return_reason is not None:
            check_text(e.return_reason, f"{where}.return_reason", 4)
        if e.entry_ref is not None:
            check_text(e.entry_ref, f"{where}.entry_ref", 35)


def build_camt053(statement: Statement) -> bytes:
    """A valid camt.053.001.08 with one Stmt; one Ntry (with one TxDtls) per entry."""
    _check(statement)
    b = Builder(MESSAGE)
    doc = b.root()
    msg = b.sub(doc, "BkToCstmrStmt")
    hdr = b.sub(msg, "GrpHdr")
    stamp = format_datetime(statement.created_at, "created_at")
    b.sub(hdr, "MsgId", statement.msg_id)
    b.sub(hdr, "CreDtTm", stamp)
    stmt = b.sub(msg, "Stmt")
    b.sub(stmt, "Id", statement.statement_id)
    b.sub(stmt, "CreDtTm", stamp)
    acct = b.sub(stmt, "Acct")
    b.path(acct, "Id/Othr/Id", statement.account)
    b.sub(acct, "Ccy", statement.currency)
    for code, bal in (("OPBD", statement.opening_balance), ("CLBD", statement.closing_balance)):
        if bal is None:
            continue
        el = b.sub(stmt, "Bal")
        b.path(el, "Tp/CdOrPrtry/Cd", code)
        b.sub(el, "Amt", fen_to_decimal(abs(bal.amount_fen)), Ccy=statement.currency)
        b.sub(el, "CdtDbtInd", DEBIT if bal.amount_fen < 0 else CREDIT)
        b.path(el, "Dt/Dt", format_date(bal.date, "balance date"))
    for e in statement.entries:
        ntry = b.sub(stmt, "Ntry")
        if e.entry_ref is not None:
            b.sub(ntry, "NtryRef", e.entry_ref)
        b.sub(ntry, "Amt", fen_to_decimal(e.amount_fen), Ccy=statement.currency)
        b.sub(ntry, "CdtDbtInd", e.credit_debit)
        b.path(ntry, "Sts/Cd", e.status)
        if e.booking_date is not None:
            b.path(ntry, "BookgDt/Dt", format_date(e.booking_date, "booking_date"))
        domain, family, sub = _bank_tx_code(e)
        dom = b.path(ntry, "BkTxCd/Domn")
        b.sub(dom, "Cd", domain)
        fmly = b.sub(dom, "Fmly")
        b.sub(fmly, "Cd", family)
        b.sub(fmly, "SubFmlyCd", sub)
        if e.end_to_end_id is not None or e.return_reason is not None:
            tx = b.path(ntry, "NtryDtls/TxDtls")
            if e.end_to_end_id is not None:
                b.path(tx, "Refs/EndToEndId", e.end_to_end_id)
            if e.return_reason is not None:
                b.path(tx, "RtrInf/Rsn/Cd", e.return_reason)
    return serialize(doc, MESSAGE)


_r = Reader(MESSAGE)


def _fen(el: etree._Element | None, where: str) -> int:
    if el is None or el.text is None:
        raise Iso20022Error(f"{where}: no amount")
    try:
        return decimal_to_fen(el.text.strip())
    except ValueError as exc:
        raise Iso20022Error(f"{where}: {exc}") from None


def _ccy(el: etree._Element, where: str, currency: str) -> None:
    if el.get("Ccy") != currency:
        raise Iso20022Error(f"{where}: the amount is not in the account currency {currency}")


def parse_camt053(xml: bytes) -> Statement:
    """Validate `xml` against the camt.053.001.08 XSD and read its (first) statement.

    An entry with several TxDtls (batch booking) gives one StatementEntry per TxDtls, each
    with its own amount. Amounts are exact fen; a currency other than the account's, or an
    amount with more than two decimals, raises Iso20022Error."""
    root = parse_document(xml, MESSAGE)
    msg = _r.find(root, "BkToCstmrStmt")
    hdr = _r.find(msg, "GrpHdr")
    stmts = _r.findall(msg, "Stmt")
    if len(stmts) != 1:
        raise Iso20022Error(f"{MESSAGE}: expected one Stmt, found {len(stmts)}")
    stmt = stmts[0]
    acct = _r.find(stmt, "Acct")
    account = _r.text(acct, "Id/Othr/Id") or _r.text(acct, "Id/IBAN") or ""
    currency = _r.text(acct, "Ccy") or "CNY"
    created = _r.text(stmt, "CreDtTm") or _r.text(hdr, "CreDtTm")

    balances: dict[str, Balance] = {}
    for n, bal in enumerate(_r.findall(stmt, "Bal"), start=1):
        code = _r.text(bal, "Tp/CdOrPrtry/Cd")
        if code not in ("OPBD", "CLBD") or code in balances:
            continue
        where = f"{MESSAGE}: Bal[{n}] (line {bal.sourceline})"
        amt = _r.find(bal, "Amt")
        _ccy(amt, where, currency)
        fen = _fen(amt, where)
        if _r.text(bal, "CdtDbtInd") == DEBIT:
            fen = -fen
        day = _r.text(bal, "Dt/Dt") or _r.text(bal, "Dt/DtTm")
        balances[code] = Balance(fen, parse_date(day, where))

    entries: list[StatementEntry] = []
    for n, ntry in enumerate(_r.findall(stmt, "Ntry"), start=1):
        where = f"{MESSAGE}: Ntry[{n}] (line {ntry.sourceline})"
        amt = _r.find(ntry, "Amt")
        _ccy(amt, where, currency)
        indicator = _r.text(ntry, "CdtDbtInd") or ""
        status = _r.text(ntry, "Sts/Cd") or _r.text(ntry, "Sts/Prtry") or ""
        day = _r.text(ntry, "BookgDt/Dt") or _r.text(ntry, "BookgDt/DtTm")
        booking = parse_date(day, where) if day else None
        ref = _r.text(ntry, "NtryRef")
        details = _r.findall(ntry, "NtryDtls/TxDtls")
        if len(details) <= 1:
            tx = details[0] if details else None
            entries.append(StatementEntry(
                amount_fen=_fen(amt, where),
                credit_debit=indicator,
                booking_date=booking,
                end_to_end_id=_r.text(tx, "Refs/EndToEndId") if tx is not None else None,
                status=status,
                return_reason=_return_reason(tx),
                entry_ref=ref,
            ))
            continue
        for m, tx in enumerate(details, start=1):
            tx_where = f"{where}/TxDtls[{m}]"
            tx_amt = _r.find(tx, "Amt")
            if tx_amt is None:
                raise Iso20022Error(f"{tx_where}: a batch-booked entry needs an amount per transaction")
            _ccy(tx_amt, tx_where, currency)
            entries.append(StatementEntry(
                amount_fen=_fen(tx_amt, tx_where),
                credit_debit=_r.text(tx, "CdtDbtInd") or indicator,
                booking_date=booking,
                end_to_end_id=_r.text(tx, "Refs/EndToEndId"),
                status=status,
                return_reason=_return_reason(tx),
                entry_ref=ref,
            ))
    return Statement(
        msg_id=_r.text(hdr, "MsgId") or "",
        statement_id=_r.text(stmt, "Id") or "",
        created_at=parse_datetime(created, f"{MESSAGE}: CreDtTm"),
        account=account,
        entries=tuple(entries),
        opening_balance=balances.get("OPBD"),
        closing_balance=balances.get("CLBD"),
        currency=currency,
    )


def _return_reason(tx: etree._Element | None) -> str | None:
    if tx is None:
        return None
    return _r.text(tx, "RtrInf/Rsn/Cd") or _r.text(tx, "RtrInf/Rsn/Prtry")
