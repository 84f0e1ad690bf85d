"""Personal data masked in every log line (SPEC §6: "masked in logs").

Log lines can quote a payload (a schema error names the value it refused, a
traceback shows arguments), so masking is applied to the formatted line, traceback
included, not left to each call site.
"""

from __future__ import annotations

import logging
import re

# An 18-character resident ID (GB 11643) standing alone: first 6 and last 4 kept,
# as mask_resident_id does for feeds.
_RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")
# A mainland mobile number standing alone: first 3 and last 4 kept.
_MOBILE = re.compile(r"(?<![0-9A-Za-z])(1[3-9]\d)\d{4}(\d{4})(?![0-9A-Za-z])")
# A bank account number (12 to 30 digits) quoted as one: after a key or a path segment naming an
# account (account_number=, "creditor_account": ..., /accounts/...). First 4 and last 4 kept, as
# BankAccount.mask shows it; a bare run of digits is not masked (offsets and totals look alike).
_ACCOUNT = re.compile(
    r"(?i)((?:account|acct)s?(?:_?(?:number|no))?['\"]?\s*[:=/]\s*['\"]?)(\d{4})(\d{4,22})(\d{4})(?![0-9A-Za-z])"
)


def _mask_account(m: re.Match[str]) -> str:
    return m[1] + m[2] + "*" * len(m[3]) + m[4]


def mask_personal_data(text: str) -> str:
    # Accounts first: an 18-digit account number must not be taken for a resident ID.
    text = _ACCOUNT.sub(_mask_account, text)
    return _MOBILE.sub(r"\1****\2", _RESIDENT_ID.sub(r"\1********\2", text))


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_personal_data(super().format(record))


def configure_logging(level: str = "INFO") -> None:
    """Root logging for a Lifeline process at ``level`` (``Settings.log_level``); uvicorn's
    loggers propagate here (log_config=None). Each line names the HTTP request it was written
    for (its X-Request-Id; "-" outside one: lifeline.http.requestid)."""
    from lifeline.http.requestid import install_log_records

    install_log_records()
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
