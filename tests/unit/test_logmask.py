"""Personal data never reaches a log line unmasked."""

from __future__ import annotations

import io
import logging
from datetime import date

import pytest

from lifeline.ops.logmask import MaskingFormatter, mask_personal_data
from lifeline.rules.ids import make_resident_id, mask_resident_id

ID = make_resident_id("370502", date(1980, 5, 17), 12, female=False)
ID_X = next(i for i in (make_resident_id("370502", date(1975, 1, 1), s, female=True) for s in range(500)) if i.endswith("X"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"schema: '{ID}' is not valid", f"schema: '{mask_resident_id(ID)}' is not valid"),
        (f"id={ID_X.lower()}", f"id={ID_X[:6]}********{ID_X[-4:].lower()}"),
        ("call 13912345678 now", "call 139****5678 now"),
        (f"{ID},{ID}", f"{mask_resident_id(ID)},{mask_resident_id(ID)}"),
        # A bank account number quoted as one: first 4 and last 4 kept (BankAccount.mask's form).
        ('{"account_number": "6228480012345670001"}', '{"account_number": "6228***********0001"}'),
        ("account_number='622848001234' x", "account_number='6228****1234' x"),
        ("Transfer(creditor_account='6217990012345678888', amount_fen=189000)",
         "Transfer(creditor_account='6217***********8888', amount_fen=189000)"),
        (f"debtor_account={ID}", f"debtor_account={ID[:4]}{'*' * 10}{ID[-4:]}"),  # an account, not an ID
        ("PUT /v1/accounts/6228480012345670001 200", "PUT /v1/accounts/6228***********0001 200"),
        ("bank_account_ref='RCC:6228***********0001'", "bank_account_ref='RCC:6228***********0001'"),
        # Not personal data: longer digit runs (offsets, fen totals), ids inside other ids.
        ("offset 1234567890123456789", "offset 1234567890123456789"),
        (f"C-{ID}A", f"C-{ID}A"),
        ("case C-ED13676887F04BCAAC25 amount 49000", "case C-ED13676887F04BCAAC25 amount 49000"),
    ],
)
def test_mask_personal_data(text, expected):
    assert mask_personal_data(text) == expected


def test_the_formatter_masks_messages_arguments_and_tracebacks():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(MaskingFormatter("%(message)s"))
    log = logging.getLogger("lifeline.test.logmask")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("rejected %s (mobile %s)", ID, "13812345678")
        try:
            raise ValueError(f"bad member {ID}")
        except ValueError:
            log.exception("handler failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert ID not in text and "13812345678" not in text
    assert text.count(mask_resident_id(ID)) == 2 and "138****5678" in text
    assert "Traceback" in text


def test_every_lifeline_process_logs_through_the_masking_formatter():
    from lifeline.ops.logmask import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging()
        assert root.handlers and all(isinstance(h.formatter, MaskingFormatter) for h in root.handlers)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
