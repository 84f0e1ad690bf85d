"""Value objects of the casework domain: money, periods, people, households, benefits.

Frozen and validated on construction, so an aggregate never holds a half-valid
value. They are stored inside domain events through `VALUE_TRANSCODINGS` (one
generic transcoding per class), and the public ones map to and from their wire
payloads in exactly one place each (`from_wire` / `to_wire`), checked field by
field against the JSON Schemas by `tests/unit/test_producers.py`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from eventsourcing.persistence import Transcoding

from lifeline.rules.ids import InvalidResidentId, has_resident_id_form, parse_resident_id
from lifeline.rules.periods import parse_period
from lifeline.rules.regions import validate_region_code
from lifeline.rules.vocabulary import (
    APPROVAL_LEVELS,
    AREAS,
    ASSISTANCE_TYPES,
    BANK_CHANNELS,
    BENEFIT_KINDS,
    CADRE_RELATIONS,
    CHANNELS,
    DISABILITY_KINDS,
    RELATIONS,
    URGENCIES,
    WORK_ABILITY,
)


def fen(value: Any, what: str) -> int:
    """Money is a non-negative int of fen (bool and float refused: no floats for money)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer number of fen, got {value!r}")
    return value


def period(value: Any, what: str = "period") -> str:
    """A monthly payment period, ``YYYY-MM``."""
    try:
        parse_period(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value


def resident_id_form(number: str) -> str:
    """An 18-character GB 11643 number with the right check digit (the API also checks its
    region prefix against the register and its birth date; a stored value keeps its form)."""
    if not has_resident_id_form(number):
        raise ValueError("a resident ID number is 17 digits and the right check character")
    return number


def mask_name(name: str) -> str:
    """张三丰 → 张*丰, 张三 → 张*: the first and (from three characters) the last character stay,
    as public notices print names (公示: 姓名中间字以*代替)."""
    if len(name) <= 2:
        return name[:1] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def _one_of(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# ----------------------------------------------------------------------------------------
# People and households
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """A person named in the application.

    Counted members (家庭成员, the divisor of per-capita income) are those living together
    (``co_resident``). A legal supporter living apart (非共同生活的法定赡养、抚养、扶养义务人,
    ``support_obligor=True, co_resident=False``) is verified but not counted; the support they
    pay (``support_paid_fen``) is household income. Someone living apart who is not an obligor
    (e.g. in military service or prison) is neither counted nor their income used.

    ``cadre_relation`` (备案): declared at intake when the member is a cadre (村/社区/乡镇干部)
    or a cadre's close relative (近亲属); None otherwise, and for applications registered
    before ApplicationSubmitted v4.
    """

    id_number: str
    name: str = ""
    relation: str = "self"
    disability_grade: int | None = None
    disability_kind: str | None = None
    serious_illness: bool = False
    work_ability: str = "full"
    co_resident: bool = True
    support_obligor: bool = False
    support_paid_fen: int = 0
    cadre_relation: str | None = None

    def __post_init__(self) -> None:
        # one spelling per person, so department rows match whatever case the X was typed in
        _set(self, "id_number", str(self.id_number).strip().upper())
        resident_id_form(self.id_number)
        _one_of(self.relation, RELATIONS, "relation")
        _one_of(self.work_ability, WORK_ABILITY, "work_ability")
        if self.disability_grade is not None and self.disability_grade not in (1, 2, 3, 4):
            raise ValueError("disability_grade must be 1-4 or None")
        if self.disability_kind is not None:
            _one_of(self.disability_kind, DISABILITY_KINDS, "disability_kind")
        fen(self.support_paid_fen, "support_paid_fen")
        if self.support_paid_fen and not self.support_obligor:
            raise ValueError("support_paid_fen is paid by a support obligor only")
        if self.cadre_relation is not None:
            _one_of(self.cadre_relation, CADRE_RELATIONS, "cadre_relation")

    @property
    def counted(self) -> bool:
        return self.co_resident

    @property
    def severe_for_single_person(self) -> bool:
        """单人户保 qualification (seed 002): grade 1-2 disability of any kind, grade 3
        intellectual or mental disability, or serious illness (重病)."""
        if self.serious_illness:
            return True
        if self.disability_grade in (1, 2):
            return True
        return self.disability_grade == 3 and self.disability_kind in ("intellectual", "mental")

    def age_on(self, on: date) -> int | None:
        try:
            return parse_resident_id(self.id_number, today=on).age_on(on)
        except InvalidResidentId:
            return None


@dataclass(frozen=True)
class Household:
    """The household as it applied: who, where, and what it declared and asked for."""

    members: tuple[Member, ...]
    area: str
    region_code: str
    assistance_type: str = "dibao"
    declared_monthly_income_fen: int = 0
    declared_assets_fen: int = 0
    single_person_member_id: str | None = None   # 单人户保: the person who applied alone
    requested_amount_fen: int = 0                # 临时救助: amount asked (0 = policy default)
    declared_medical_expense_fen: int = 0        # 支出型: rigid monthly expenses declared
    declared_education_expense_fen: int = 0

    def __post_init__(self) -> None:
        _set(self, "members", tuple(
            m if isinstance(m, Member) else Member(**m) for m in self.members))
        if self.single_person_member_id is not None:
            _set(self, "single_person_member_id", str(self.single_person_member_id).strip().upper())
        _one_of(self.area, AREAS, "area")
        validate_region_code(self.region_code)
        _one_of(self.assistance_type, ASSISTANCE_TYPES, "assistance_type")
        for name in ("declared_monthly_income_fen", "declared_assets_fen", "requested_amount_fen",
                     "declared_medical_expense_fen", "declared_education_expense_fen"):
            fen(getattr(self, name), name)
        ids = [m.id_number for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("a person may appear only once in a household")

    @property
    def applicant(self) -> Member:
        return next(m for m in self.members if m.relation == "self")

    @property
    def id_numbers(self) -> list[str]:
        return [m.id_number for m in self.members]


@dataclass(frozen=True)
class HouseholdProfile:
    """What a referral may tell departments and the charity federation about a household:
    masked, nothing that identifies a person."""

    region_code: str
    members_count: int
    name_masked: str
    assistance_type: str

    @classmethod
    def of(cls, application: "Application") -> "HouseholdProfile":
        return cls(application.region_code, len(application.household.members),
                   mask_name(application.household.applicant.name), application.assistance_type)


# A masked account number: the first four digits (absent from accounts masked before
# ApplicationSubmitted v5 / BenefitApproved v3), at least four "*", the last four.
_MASKED_NUMBER = re.compile(r"(\d{4})?\*{4,}\d{4}", re.ASCII)


@dataclass(frozen=True)
class BankAccount:
    """Where benefits are paid. The number travels sealed (encrypted); only the masked
    form is shown, and only payment's bank file unseals it."""

    channel: str                  # bank or credit union code (BANK_CHANNELS)
    account_name: str
    number_masked: str
    number_sealed: str

    def __post_init__(self) -> None:
        _one_of(self.channel, tuple(BANK_CHANNELS), "bank_account.channel")
        if not self.account_name:
            raise ValueError("bank_account.account_name is required")
        if not _MASKED_NUMBER.fullmatch(self.number_masked):  # never quote it: it may be a number in clear
            raise ValueError("bank_account.number_masked must show at most the first four and the last four digits")

    @staticmethod
    def mask(number: str) -> str:
        """6222021234567890123 → 6222***********0123: the first four and the last four digits
        stay and every digit between is an ``*`` (a 12-digit number, the shortest the API takes,
        becomes 4 digits, 4 ``*``, 4 digits). A number shorter than 12 digits (none reaches here)
        keeps only its last four, behind at least four ``*``. Accounts masked before this form
        (ApplicationSubmitted v4, BenefitApproved v2 and earlier) keep their ``***************0123``:
        nothing can recover their first four digits."""
        if len(number) < 12:
            return "*" * max(len(number) - 4, 4) + number[-4:]
        return number[:4] + "*" * (len(number) - 8) + number[-4:]

    @property
    def ref(self) -> str:
        """What documents and other services call this account: channel and masked number."""
        return f"{self.channel}:{self.number_masked}"


# A mainland mobile number (11 digits from 13x to 19x), and how it is shown: 138****5678.
MOBILE_NUMBER = re.compile(r"1[3-9]\d{9}", re.ASCII)
_MASKED_MOBILE = re.compile(r"1\d{2}\*{4}\d{4}", re.ASCII)


@dataclass(frozen=True)
class ContactPhone:
    """The household's mobile number for notices by SMS (ApplicationSubmitted v6): sealed
    wherever it is stored or sent, shown masked; only notify unseals it, to send an SMS."""

    phone_masked: str
    phone_sealed: str

    def __post_init__(self) -> None:
        if not _MASKED_MOBILE.fullmatch(self.phone_masked):  # never quote it: it may be a number in clear
            raise ValueError("contact.phone_masked must show the first three and the last four digits only")
        if not self.phone_sealed:
            raise ValueError("contact.phone_sealed is required")

    @staticmethod
    def mask(number: str) -> str:
        """13812345678 → 138****5678."""
        return number[:3] + "****" + number[-4:]


@dataclass(frozen=True)
class Application:
    """A registered application: the household, how it came in, who is responsible.
    Its wire form is the ApplicationSubmitted payload."""

    case_id: str
    channel: str
    urgency: str
    clerk_id: str
    submitted_at: str
    household: Household
    bank_account: BankAccount | None
    authorisation_signed: bool = True
    # Applications registered before v3 only referred to their account: the reference is kept.
    prior_account_ref: str = ""
    # The mobile number notices go to by SMS, sealed (ApplicationSubmitted v6); None when the
    # household gave none, and for applications registered before v6.
    contact: ContactPhone | None = None

    def __post_init__(self) -> None:
        _one_of(self.channel, CHANNELS, "channel")
        _one_of(self.urgency, URGENCIES, "urgency")
        if self.authorisation_signed is not True:
            raise ValueError("一证一书: the verification authorisation must be signed")

    @property
    def region_code(self) -> str:
        return self.household.region_code

    @property
    def assistance_type(self) -> str:
        return self.household.assistance_type

    @property
    def bank_account_ref(self) -> str:
        return self.bank_account.ref if self.bank_account else self.prior_account_ref

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> "Application":
        """From ApplicationSubmitted data at the current version."""
        hh = data
        bank = data.get("bank_account")
        contact = data.get("contact")
        return cls(
            case_id=data["case_id"], channel=data["channel"], urgency=data["urgency"],
            clerk_id=data["clerk_id"], submitted_at=data["submitted_at"],
            authorisation_signed=data["authorisation_signed"],
            bank_account=BankAccount(**bank) if bank else None,
            prior_account_ref="" if bank else data["bank_account_ref"],
            contact=ContactPhone(**contact) if contact else None,
            household=Household(
                members=tuple(Member(**m) for m in hh["members"]), area=hh["area"],
                region_code=hh["region_code"], assistance_type=hh["assistance_type"],
                declared_monthly_income_fen=hh["declared_monthly_income_fen"],
                declared_assets_fen=hh["declared_assets_fen"],
                single_person_member_id=hh["single_person_member_id"],
                requested_amount_fen=hh["requested_amount_fen"],
                declared_medical_expense_fen=hh["declared_medical_expense_fen"],
                declared_education_expense_fen=hh["declared_education_expense_fen"],
            ),
        )

    @classmethod
    def from_stored(cls, data: dict[str, Any], version: int) -> "Application":
        """From ApplicationSubmitted data at an older `version`, as older domain events
        stored it (they are upcast to the current version first)."""
        from lifeline.contracts import registry

        return cls.from_wire(registry.upcast_data("ApplicationSubmitted", version, data))

    def to_wire(self) -> dict[str, Any]:
        """The ApplicationSubmitted data (current version)."""
        hh = self.household
        return {
            "case_id": self.case_id,
            "assistance_type": hh.assistance_type,
            "channel": self.channel,
            "region_code": hh.region_code,
            "area": hh.area,
            "members": [dataclasses.asdict(m) for m in hh.members],
            "declared_monthly_income_fen": hh.declared_monthly_income_fen,
            "declared_assets_fen": hh.declared_assets_fen,
            "declared_medical_expense_fen": hh.declared_medical_expense_fen,
            "declared_education_expense_fen": hh.declared_education_expense_fen,
            "requested_amount_fen": hh.requested_amount_fen,
            "single_person_member_id": hh.single_person_member_id,
            "bank_account_ref": self.bank_account_ref,
            "bank_account": dataclasses.asdict(self.bank_account) if self.bank_account else None,
            "contact": dataclasses.asdict(self.contact) if self.contact else None,
            "authorisation_signed": self.authorisation_signed,
            "urgency": self.urgency,
            "clerk_id": self.clerk_id,
            "submitted_at": self.submitted_at,
        }


class StoresApplication:
    """Mixed into the events that store an Application (intake's Case.Submitted,
    verification's Verification.Started): their v1 stored the ApplicationSubmitted v2
    payload as a plain dict, read back here as the value. From v2 on they store the value
    itself, field by field (ValueTranscoding): a field added later with a default (a
    Member's ``cadre_relation``, ApplicationSubmitted v4) is read from older rows as that
    default, so it needs no class version of its own."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["application"] = Application.from_stored(state["application"], version=2)


# ----------------------------------------------------------------------------------------
# Decisions
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Benefit:
    """What a review group approved: a monthly benefit (gap or tier), one-off relief
    (amount and fund source), or a recognition only (低收入家庭认定, no money)."""

    kind: str
    benefit_id: str
    benefit_type: str
    tier: str | None
    monthly_amount_fen: int | None
    one_off_amount_fen: int | None
    fund_source: str | None
    first_period: str
    approval_level: str
    approving_body: str
    approved_at: str

    def __post_init__(self) -> None:
        _one_of(self.kind, BENEFIT_KINDS, "benefit kind")
        _one_of(self.benefit_type, ASSISTANCE_TYPES, "benefit_type")
        _one_of(self.approval_level, APPROVAL_LEVELS, "approval_level")
        period(self.first_period, "first_period")
        monthly, one_off = self.monthly_amount_fen, self.one_off_amount_fen
        if self.kind == "monthly":
            if not monthly or one_off is not None:
                raise ValueError("a monthly benefit has a positive monthly amount and no one-off amount")
            fen(monthly, "monthly_amount_fen")
        elif self.kind == "one_off":
            if not one_off or monthly is not None:
                raise ValueError("one-off relief has a positive one-off amount and no monthly amount")
            fen(one_off, "one_off_amount_fen")
            if not self.fund_source:
                raise ValueError("one-off relief names its fund source")
        elif monthly is not None or one_off is not None:
            raise ValueError("a recognition carries no amount")

    @property
    def payable(self) -> bool:
        return self.kind != "recognition"

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> "Benefit":
        """The benefit part of BenefitApproved data (current version)."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Refusal:
    reason: str
    refusing_body: str
    refused_at: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a refusal gives its reasons (不予批准决定书)")


# ----------------------------------------------------------------------------------------
# Storage: one generic transcoding per value class
# ----------------------------------------------------------------------------------------
class ValueTranscoding(Transcoding):
    """Stores a frozen dataclass as its fields; nested values are transcoded in turn."""

    def __init__(self, cls: type):
        self.type = cls
        self.name = f"lifeline.{cls.__name__}"

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


VALUE_CLASSES: tuple[type, ...] = (
    Member, Household, HouseholdProfile, BankAccount, ContactPhone, Application, Benefit, Refusal,
)
VALUE_TRANSCODINGS = tuple(ValueTranscoding(cls) for cls in VALUE_CLASSES)

__all__ = [
    "Application", "BankAccount", "ContactPhone", "HouseholdProfile", "StoresApplication", "Benefit", "Household", "Member", "Refusal",
    "VALUE_CLASSES", "VALUE_TRANSCODINGS", "ValueTranscoding", "fen", "mask_name", "period",
]
