"""GB 11643-1999 citizen identification numbers (居民身份证号码).

Layout: 6-digit region code (GB/T 2260) + 8-digit birth date (YYYYMMDD) + 3-digit order code
(odd = male, even = female) + ISO 7064 MOD 11-2 check character (0-9 or X).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from lifeline.rules.regions import (
    InvalidRegionCode,
    region_register,
    validate_region_code,
)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
EARLIEST_BIRTH = date(1900, 1, 1)


class InvalidResidentId(ValueError):
    """Not a valid 18-character GB 11643 resident ID number."""


@dataclass(frozen=True)
class ResidentId:
    number: str
    region_code: str
    birth_date: date
    sex: Literal["male", "female"]

    def age_on(self, on: date) -> int:
        """Completed years on ``on`` (a person born 29 Feb turns a year older on 1 Mar)."""
        years = on.year - self.birth_date.year
        if (on.month, on.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


def check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise InvalidResidentId("the first 17 characters must be digits")
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS))
    return _CHECK[total % 11]


def has_resident_id_form(text: str) -> bool:
    """18 characters, 17 ASCII digits and the right ISO 7064 MOD 11-2 check character
    (no register or birth-date check: see parse_resident_id)."""
    return (len(text) == 18 and text[:17].isascii() and text[:17].isdigit()
            and check_digit(text[:17]) == text[17])


def parse_resident_id(text: str, *, today: date | None = None) -> ResidentId:
    """Validate and decode; a lower-case ``x`` check character is accepted and normalised."""
    if not isinstance(text, str):
        raise InvalidResidentId("resident ID must be a string")
    number = text.strip().upper()
    if len(number) != 18:
        raise InvalidResidentId(f"resident ID must have 18 characters, got {len(number)}")
    body, check = number[:17], number[17]
    if not body.isdigit() or not (check.isdigit() or check == "X"):
        raise InvalidResidentId("resident ID must be 17 digits followed by a digit or X")
    if check_digit(body) != check:
        raise InvalidResidentId("resident ID check digit does not match")
    try:
        region = validate_region_code(body[:6])
    except InvalidRegionCode as exc:
        raise InvalidResidentId(f"resident ID region prefix: {exc}") from exc
    if not region_register().known(region):
        # Codes retired since stay valid: an ID keeps the code of where it was first issued.
        raise InvalidResidentId(f"resident ID region prefix {region} is not in the GB/T 2260 register")
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError as exc:
        raise InvalidResidentId(f"resident ID birth date {body[6:14]} is not a real date") from exc
    if today is None:
        from lifeline.domain.clock import SystemClock  # rules stay importable without the domain

        today = SystemClock().now().date()
    if birth > today:
        raise InvalidResidentId(f"resident ID birth date {birth.isoformat()} is in the future")
    if birth < EARLIEST_BIRTH:
        raise InvalidResidentId(f"resident ID birth date {birth.isoformat()} is before 1900")
    sex: Literal["male", "female"] = "male" if int(body[16]) % 2 == 1 else "female"
    return ResidentId(number=number, region_code=region, birth_date=birth, sex=sex)


def is_valid_resident_id(text: object, *, today: date | None = None) -> bool:
    try:
        parse_resident_id(text, today=today)  # type: ignore[arg-type]
    except InvalidResidentId:
        return False
    return True


def make_resident_id(region_code: str, birth: date, seq: int, female: bool) -> str:
    """Build a valid number. ``seq`` (0..499) picks the order code ``2*seq + (0 if female else 1)``,
    so each (region, birth date, sex) has 500 distinct numbers."""
    validate_region_code(region_code)
    if len(region_code) != 6:
        raise InvalidRegionCode("a resident ID carries a six-digit region code")
    if not 0 <= seq <= 499:
        raise ValueError("seq must be between 0 and 499")
    order = 2 * seq + (0 if female else 1)
    body = f"{region_code}{birth:%Y%m%d}{order:03d}"
    return body + check_digit(body)


def mask_resident_id(text: str) -> str:
    """Masked form for logs and feeds: first 6 and last 4 kept (e.g. 370502********123X)."""
    number = text.strip().upper()
    if len(number) < 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]
