"""What a form alone can know before anything is sent, the same on every screen: an amount typed in
元 as fen, the values a filter form shows again, an id fit to be put into a service's path.

Everything else (a range, a rule, a region) is the service's to judge: its problem is shown next
to the field it names.
"""

from __future__ import annotations

import re

from fastapi import HTTPException

# Yuan as a person types them: whole yuan, or with thousands grouped by commas ("1,234"), and at
# most two decimals; a full-width comma ("，", a Chinese keyboard's) counts as a comma.
_YUAN = re.compile(r"(-?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")
# More than any amount the services take (a county's budget in fen fits in 15 digits).
_MOST_DIGITS = 13

# An id as the services write them (C-…, N-…, A-…, a fund's id): anything else is no page here,
# and is never put into a service's path.
SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{2,63}")


def checked_id(value: str) -> str:
    """`value` when it is an id as the services write them; else no page (404)."""
    if not SERVICE_ID.fullmatch(value):
        raise HTTPException(404)
    return value


def fen_of(text: str, *, negative: bool = False) -> int | None:
    """An amount typed in 元 as fen, exactly (no float on the way): "1234.5" → 123450,
    "1,234.56" → 123456, "0.05" → 5; anything else None. A minus sign is read only where the
    service is to judge a negative amount and say why (`negative`); elsewhere it is no amount."""
    m = _YUAN.fullmatch(text.strip().replace("，", ","))
    if m is None or (m[1] and not negative):
        return None
    whole = m[2].replace(",", "")
    if len(whole) > _MOST_DIGITS:
        return None
    fen = int(whole) * 100 + int((m[3] or "0").ljust(2, "0"))
    return -fen if m[1] else fen


def yuan_input(fen: int) -> str:
    """Fen as an amount field shows it, the inverse of `fen_of`: 300000 → "3000.00"."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def typed(**params: str | None) -> dict[str, str]:
    """A filter form's values shown again as typed: each query parameter stripped, "" when absent."""
    return {name: (value or "").strip() for name, value in params.items()}
