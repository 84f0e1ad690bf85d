"""Exact conversions between integer fen and ISO 20022 decimal amounts (yuan, two decimals).

Never through floats: the decimal string is built from the integer and parsed back by digits."""

from __future__ import annotations

import re

_DECIMAL = re.compile(r"(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?")


def fen_to_decimal(fen: int) -> str:
    """12345 -> "123.45"; 1 -> "0.01"; 0 -> "0.00". Refuses negatives and non-integers."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"fen must be an int, not {type(fen).__name__}")
    if fen < 0:
        raise ValueError("fen must not be negative")
    yuan, rest = divmod(fen, 100)
    return f"{yuan}.{rest:02d}"


def decimal_to_fen(text: str) -> int:
    """"123.45" -> 12345, "5" -> 500, "0.1" -> 10. Refuses a sign, more than two decimals,
    exponents, whitespace and anything else that is not a plain non-negative decimal."""
    if not isinstance(text, str):
        raise TypeError(f"amount must be a str, not {type(text).__name__}")
    if text.startswith("-"):
        raise ValueError("amount must not be negative")
    m = _DECIMAL.fullmatch(text)
    if m is None or not (m.group("int") or m.group("frac")):
        raise ValueError("amount is not a plain decimal number")
    frac = m.group("frac") or ""
    if len(frac) > 2:
        raise ValueError("amount has more than two decimals (fen)")
    return int(m.group("int") or "0") * 100 + int(frac.ljust(2, "0"))
