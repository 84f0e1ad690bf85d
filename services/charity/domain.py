"""Charity's aggregates: Funds with their criteria and ledger, and the Needs referrals open.

- `Criteria`: which needs a fund may help, and how much. One function (`excludes`) says
  whether a need fits and, when not, names the criterion that excludes it; matching
  (services/charity/matching.py) and the Fund's own allocation check both use it.
- `Fund`: balance (opening balance + donations - disbursed) and committed (allocations not
  yet released or disbursed). The invariant `committed <= balance` is checked by every method
  that could break it; concurrent writers meet at the store's version check, so two replicas
  allocating from one fund at the same moment cannot both spend its last yuan.
- `Need`: one referral to charity, one need (一案一策). It records the allocations made for
  it, is published to the federation (masked) when no fund covers it and the household
  consented, and is fulfilled by disbursed allocations or by the federation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import fen
from lifeline.rules.regions import scope_prefix
from lifeline.rules.vocabulary import FUND_CRITERIA, FUND_KINDS, HOUSEHOLD_TYPES

URGENCY_ORDER = {"critical": 0, "urgent": 1, "normal": 2}

# Why a fund does not help a need, in the order they are checked. The first five are the
# fund's criteria; the rest are about amounts (a fitting fund can still be unable to give).
EXCLUSIONS = (
    "need_category", "region", "household_type", "not_yet_valid", "expired",
    "per_case_cap", "per_household_year_cap", "no_available_balance", "need_covered",
)
# What a fitting fund matched, as a proposal and FundAllocated name it.
MATCHED = FUND_CRITERIA


def household_type_of(assistance_type: str | None) -> str:
    """The household type funds name, from the referral's current assistance: temporary
    assistance (临时救助) is not a standing type, so it counts as none."""
    return assistance_type if assistance_type in ("dibao", "tekun", "low_income") else "none"


def township_of(region_code: str) -> str:
    """The federation sees a household's region to the township, never the village."""
    return region_code[:9]


class FundRuleViolation(Exception):
    """A fund cannot do what was asked; `rule` names the criterion or limit (409)."""

    def __init__(self, message: str, rule: str, available_fen: int | None = None):
        super().__init__(message)
        self.rule = rule
        self.available_fen = available_fen


class NeedRuleViolation(Exception):
    def __init__(self, message: str, rule: str):
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Criteria:
    """Which needs a fund may help, and the most it gives."""

    need_categories: frozenset[str]
    regions: tuple[str, ...]  # GB/T 2260 codes at any level (province 370000 ... village)
    household_types: frozenset[str]
    per_case_cap_fen: int | None  # the most for one need (one case, one plan); None: no cap
    per_household_year_cap_fen: int | None  # the most for one household (case) in a calendar year
    valid_from: str | None  # ISO dates, inclusive; None: open
    valid_until: str | None

    def __post_init__(self) -> None:
        # Prefixes computed once: matching checks a region a million times.
        object.__setattr__(self, "_prefixes", tuple(scope_prefix(r) for r in self.regions))

    @classmethod
    def of(cls, details: dict[str, Any]) -> "Criteria":
        return cls(
            need_categories=frozenset(details["need_categories"]), regions=tuple(details["regions"]),
            household_types=frozenset(details["household_types"]),
            per_case_cap_fen=details["per_case_cap_fen"],
            per_household_year_cap_fen=details["per_household_year_cap_fen"],
            valid_from=details["valid_from"], valid_until=details["valid_until"],
        )

    def covers_region(self, region_code: str) -> bool:
        return any(region_code.startswith(p) for p in self._prefixes)  # type: ignore[attr-defined]

    def excludes(self, need_category: str, region_code: str, household_type: str, on: str) -> str | None:
        """The first criterion a need fails on the ISO date `on`, or None when it fits."""
        if need_category not in self.need_categories:
            return "need_category"
        if not self.covers_region(region_code):
            return "region"
        if household_type not in self.household_types:
            return "household_type"
        if self.valid_from is not None and on < self.valid_from:
            return "not_yet_valid"
        if self.valid_until is not None and on > self.valid_until:
            return "expired"
        return None

    def narrowness(self) -> tuple[int, int, int, int]:
        """Smaller is narrower: the deepest broadest region first (a village fund before a
        county fund before a province fund), then fewer regions, categories, household types."""
        broadest = min((len(p) for p in self._prefixes), default=0)  # type: ignore[attr-defined]
        return (-broadest, len(self.regions), len(self.need_categories), len(self.household_types))


class Fund(LifelineAggregate):
    """A fund (救急难 special fund, 冠名基金 with its donor, project fund): criteria and ledger."""

    id_kind = "fund"

    class Registered(LifelineAggregate.Created):
        fund_id: str
        name: str
        kind: str
        donor: str | None
        need_categories: list[str]
        region_code: str
        regions: list[str]
        household_types: list[str]
        balance_fen: int
        per_case_cap_fen: int | None
        per_household_year_cap_fen: int | None
        valid_from: str | None
        valid_until: str | None
        registered_at: str

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(state.pop("details"))  # v1 kept the criteria in one dict

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            # Before the criteria were complete: the owner's region, every household type,
            # no yearly cap; a per-case cap of 0 meant none.
            state.setdefault("donor", None)
            state.setdefault("regions", [state["region_code"]])
            state.setdefault("household_types", list(HOUSEHOLD_TYPES))
            state.setdefault("per_household_year_cap_fen", None)
            state.setdefault("valid_from", None)
            state["per_case_cap_fen"] = state.get("per_case_cap_fen") or None

    class DonationReceived(LifelineAggregate.Event):
        fund_id: str
        donation_id: str
        reference: str
        donor: str
        amount_fen: int
        received_on: str
        balance_fen: int
        recorded_at: str

        def apply(self, f: "Fund") -> None:
            f.balance_fen += self.amount_fen
            f.donations[self.reference] = self.amount_fen

    class Allocated(LifelineAggregate.Event):
        allocation_id: str
        fund_id: str
        need_id: str
        case_id: str
        amount_fen: int
        matched: list[str]
        year: int
        available_fen: int
        allocated_at: str

        def apply(self, f: "Fund") -> None:
            f.committed_fen += self.amount_fen
            f.allocations[self.allocation_id] = {
                "need_id": self.need_id, "case_id": self.case_id, "amount_fen": self.amount_fen,
                "year": self.year, "status": "allocated",
            }
            f._use(self.need_id, self.case_id, self.year, self.amount_fen)

    class AllocationReleased(LifelineAggregate.Event):
        allocation_id: str
        fund_id: str
        need_id: str
        case_id: str
        amount_fen: int
        reason: str
        released_at: str

        def apply(self, f: "Fund") -> None:
            allocation = f.allocations[self.allocation_id]
            allocation["status"] = "released"
            f.committed_fen -= self.amount_fen
            f._use(self.need_id, self.case_id, allocation["year"], -self.amount_fen)

    class AllocationDisbursed(LifelineAggregate.Event):
        allocation_id: str
        fund_id: str
        need_id: str
        case_id: str
        amount_fen: int
        reference: str
        disbursed_on: str
        recorded_at: str

        def apply(self, f: "Fund") -> None:
            f.allocations[self.allocation_id]["status"] = "disbursed"
            f.committed_fen -= self.amount_fen
            f.balance_fen -= self.amount_fen

    @classmethod
    def register(cls, fund_id: str, *, name: str, kind: str, donor: str | None,
                 need_categories: list[str], region_code: str, regions: list[str],
                 household_types: list[str], balance_fen: int, per_case_cap_fen: int | None,
                 per_household_year_cap_fen: int | None, valid_from: str | None,
                 valid_until: str | None, registered_at: str, by: Meta) -> "Fund":
        if kind not in FUND_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FUND_KINDS)}")
        if kind == "named" and not donor:
            raise FundRuleViolation("a named fund (冠名基金) names its donor", "donor")
        if not need_categories or not regions or not household_types:
            raise ValueError("a fund names at least one need category, region and household type")
        if set(household_types) - set(HOUSEHOLD_TYPES):
            raise ValueError(f"household types are {', '.join(HOUSEHOLD_TYPES)}")
        if valid_from and valid_until and valid_until < valid_from:
            raise FundRuleViolation("valid_until is before valid_from", "validity")
        for what, cap in (("per_case_cap_fen", per_case_cap_fen),
                          ("per_household_year_cap_fen", per_household_year_cap_fen)):
            if cap is not None and fen(cap, what) == 0:
                raise ValueError(f"{what} is a positive amount, or null for no cap")
        return cls._create(
            cls.Registered, id=cls.create_id(fund_id), fund_id=fund_id, name=name, kind=kind,
            donor=donor or None, need_categories=sorted(set(need_categories)), region_code=region_code,
            regions=sorted(set(regions)), household_types=sorted(set(household_types)),
            balance_fen=fen(balance_fen, "balance_fen"), per_case_cap_fen=per_case_cap_fen,
            per_household_year_cap_fen=per_household_year_cap_fen, valid_from=valid_from,
            valid_until=valid_until, registered_at=registered_at, meta=by.as_dict(),
        )

    def __init__(self, fund_id: str, name: str, kind: str, donor: str | None, need_categories: list[str],
                 region_code: str, regions: list[str], household_types: list[str], balance_fen: int,
                 per_case_cap_fen: int | None, per_household_year_cap_fen: int | None,
                 valid_from: str | None, valid_until: str | None, registered_at: str, meta: dict):
        self.fund_id = fund_id
        self.name = name
        self.kind = kind
        self.donor = donor
        self.region_code = region_code
        self.registered_at = registered_at
        self.criteria = Criteria(
            need_categories=frozenset(need_categories), regions=tuple(regions),
            household_types=frozenset(household_types), per_case_cap_fen=per_case_cap_fen,
            per_household_year_cap_fen=per_household_year_cap_fen, valid_from=valid_from,
            valid_until=valid_until,
        )
        self.balance_fen = balance_fen
        self.committed_fen = 0
        self.donations: dict[str, int] = {}  # reference -> amount
        self.allocations: dict[str, dict[str, Any]] = {}
        self.used_by_need: dict[str, int] = {}  # allocated or disbursed, not released
        self.used_by_household_year: dict[str, int] = {}  # "<case_id>/<year>" -> fen

    def _use(self, need_id: str, case_id: str, year: int, amount_fen: int) -> None:
        self.used_by_need[need_id] = self.used_by_need.get(need_id, 0) + amount_fen
        key = f"{case_id}/{year}"
        self.used_by_household_year[key] = self.used_by_household_year.get(key, 0) + amount_fen

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.committed_fen

    @property
    def details(self) -> dict[str, Any]:
        """The fund as registered (FundRegistered's fields but its id and opening balance)."""
        c = self.criteria
        return {
            "name": self.name, "kind": self.kind, "donor": self.donor,
            "need_categories": sorted(c.need_categories), "region_code": self.region_code,
            "regions": list(c.regions), "household_types": sorted(c.household_types),
            "per_case_cap_fen": c.per_case_cap_fen, "per_household_year_cap_fen": c.per_household_year_cap_fen,
            "valid_from": c.valid_from, "valid_until": c.valid_until, "registered_at": self.registered_at,
        }

    # --- donations -------------------------------------------------------------------
    def receive_donation(self, *, donation_id: str, reference: str, donor: str, amount_fen: int,
                         received_on: str, recorded_at: str, by: Meta) -> bool:
        """Feed the balance once per reference: the same reference again changes nothing
        (False); with another amount it is a conflict."""
        if fen(amount_fen, "amount_fen") == 0:
            raise ValueError("amount_fen: a donation is a positive amount")
        if reference in self.donations:
            if self.donations[reference] != amount_fen:
                raise FundRuleViolation(
                    f"donation {reference} was recorded with {self.donations[reference]} fen", "donation_reference")
            return False
        if self.criteria.valid_until is not None and received_on > self.criteria.valid_until:
            raise FundRuleViolation(f"{self.fund_id} expired on {self.criteria.valid_until}", "expired")
        self.trigger_event(
            self.DonationReceived, fund_id=self.fund_id, donation_id=donation_id, reference=reference,
            donor=donor, amount_fen=amount_fen, received_on=received_on,
            balance_fen=self.balance_fen + amount_fen, recorded_at=recorded_at, meta=by.as_dict(),
        )
        return True

    # --- allocations -----------------------------------------------------------------
    def room_for(self, need_id: str, case_id: str, year: int) -> tuple[int, str]:
        """The most this fund can still give the need, and what limits it."""
        room, limit = self.available_fen, "no_available_balance"
        c = self.criteria
        if c.per_case_cap_fen is not None and c.per_case_cap_fen - self.used_by_need.get(need_id, 0) < room:
            room, limit = c.per_case_cap_fen - self.used_by_need.get(need_id, 0), "per_case_cap"
        if c.per_household_year_cap_fen is not None:
            left = c.per_household_year_cap_fen - self.used_by_household_year.get(f"{case_id}/{year}", 0)
            if left < room:
                room, limit = left, "per_household_year_cap"
        return max(room, 0), limit

    def allocate(self, *, allocation_id: str, need_id: str, case_id: str, need_category: str,
                 region_code: str, household_type: str, amount_fen: int, on: str,
                 allocated_at: str, by: Meta) -> None:
        """Commit `amount_fen` to a need that fits the criteria, within what is available and
        the caps; FundRuleViolation names the criterion or limit otherwise."""
        if fen(amount_fen, "amount_fen") == 0:
            raise ValueError("amount_fen: an allocation is a positive amount")
        if allocation_id in self.allocations:
            raise FundRuleViolation(f"allocation {allocation_id} exists", "allocation_exists")
        excluded = self.criteria.excludes(need_category, region_code, household_type, on)
        if excluded is not None:
            raise FundRuleViolation(f"{self.fund_id} does not help this need: {excluded}", excluded)
        year = int(on[:4])
        room, limit = self.room_for(need_id, case_id, year)
        if amount_fen > room:
            raise FundRuleViolation(
                f"{self.fund_id} can give this need at most {room} fen now ({limit})", limit, room)
        self.trigger_event(
            self.Allocated, allocation_id=allocation_id, fund_id=self.fund_id, need_id=need_id,
            case_id=case_id, amount_fen=amount_fen, matched=list(MATCHED), year=year,
            available_fen=self.available_fen - amount_fen, allocated_at=allocated_at, meta=by.as_dict(),
        )
        assert self.committed_fen <= self.balance_fen  # the invariant, after every change

    def _allocation(self, allocation_id: str) -> dict[str, Any]:
        allocation = self.allocations.get(allocation_id)
        if allocation is None:
            raise FundRuleViolation(f"{self.fund_id} has no allocation {allocation_id}", "allocation_unknown")
        if allocation["status"] != "allocated":
            raise FundRuleViolation(f"allocation {allocation_id} is {allocation['status']}", "allocation_closed")
        return allocation

    def release(self, allocation_id: str, reason: str, released_at: str, by: Meta) -> None:
        allocation = self._allocation(allocation_id)
        if not reason.strip():
            raise ValueError("reason: a release says why")
        self.trigger_event(
            self.AllocationReleased, allocation_id=allocation_id, fund_id=self.fund_id,
            need_id=allocation["need_id"], case_id=allocation["case_id"],
            amount_fen=allocation["amount_fen"], reason=reason, released_at=released_at, meta=by.as_dict(),
        )

    def disburse(self, allocation_id: str, reference: str, disbursed_on: str, recorded_at: str,
                 by: Meta) -> None:
        allocation = self._allocation(allocation_id)
        if not reference.strip():
            raise ValueError("reference: a disbursement names its voucher or transfer")
        self.trigger_event(
            self.AllocationDisbursed, allocation_id=allocation_id, fund_id=self.fund_id,
            need_id=allocation["need_id"], case_id=allocation["case_id"],
            amount_fen=allocation["amount_fen"], reference=reference, disbursed_on=disbursed_on,
            recorded_at=recorded_at, meta=by.as_dict(),
        )
        assert 0 <= self.committed_fen <= self.balance_fen


class Need(LifelineAggregate):
    """What a household needs that the state does not cover (one case, one plan)."""

    id_kind = "need"

    class Opened(LifelineAggregate.Created):
        need_id: str
        case_id: str
        referral_id: str
        need_category: str
        amount_asked_fen: int
        region_code: str
        urgency: str
        due_date: str
        consent_to_share: bool
        household_type: str
        name_masked: str
        members_count: int
        opened_at: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Needs opened before the profile was kept: never shared without a recorded consent.
            state.setdefault("due_date", state["opened_at"][:10])
            state.setdefault("consent_to_share", False)
            state.setdefault("household_type", "none")
            state.setdefault("name_masked", "某*")
            state.setdefault("members_count", 1)

    class AllocationRecorded(LifelineAggregate.Event):
        allocation_id: str
        fund_id: str
        amount_fen: int

        def apply(self, n: "Need") -> None:
            n.allocations[self.allocation_id] = {"fund_id": self.fund_id, "amount_fen": self.amount_fen,
                                                 "status": "allocated"}

    class AllocationClosed(LifelineAggregate.Event):
        """An allocation of this need released or disbursed (the Fund's event says which)."""

        allocation_id: str
        status: str

        def apply(self, n: "Need") -> None:
            n.allocations[self.allocation_id]["status"] = self.status

    class Published(LifelineAggregate.Event):
        need_id: str
        case_id: str
        name_masked: str
        region_code: str
        members_count: int
        household_type: str
        need_category: str
        amount_still_needed_fen: int
        urgency: str
        due_date: str
        published_at: str

        def apply(self, n: "Need") -> None:
            n.published = True

    class Accepted(LifelineAggregate.Event):
        need_id: str
        case_id: str
        referral_id: str
        organisation: str
        note: str
        accepted_at: str

        def apply(self, n: "Need") -> None:
            n.accepted_by = self.organisation

    class Fulfilled(LifelineAggregate.Event):
        need_id: str
        case_id: str
        referral_id: str
        by: str
        amount_fen: int
        organisation: str | None
        note: str
        fulfilled_at: str

        def apply(self, n: "Need") -> None:
            n.status = "fulfilled"

    @classmethod
    def open_for(cls, *, referral_id: str, case_id: str, need_category: str, amount_asked_fen: int,
                 region_code: str, urgency: str, due_date: str, consent_to_share: bool,
                 household_type: str, name_masked: str, members_count: int, opened_at: str,
                 by: Meta) -> "Need":
        """One referral, one need: the need id is derived from the referral id."""
        need_id = need_id_of(referral_id)
        return cls._create(
            cls.Opened, id=cls.create_id(need_id), need_id=need_id, case_id=case_id,
            referral_id=referral_id, need_category=need_category,
            amount_asked_fen=fen(amount_asked_fen, "amount_asked_fen"), region_code=region_code,
            urgency=urgency, due_date=due_date, consent_to_share=consent_to_share,
            household_type=household_type, name_masked=name_masked, members_count=members_count,
            opened_at=opened_at, meta=by.as_dict(),
        )

    def __init__(self, need_id: str, case_id: str, referral_id: str, need_category: str,
                 amount_asked_fen: int, region_code: str, urgency: str, due_date: str,
                 consent_to_share: bool, household_type: str, name_masked: str, members_count: int,
                 opened_at: str, meta: dict):
        self.need_id = need_id
        self.case_id = case_id
        self.referral_id = referral_id
        self.need_category = need_category
        self.amount_asked_fen = amount_asked_fen
        self.region_code = region_code
        self.urgency = urgency
        self.due_date = due_date
        self.consent_to_share = consent_to_share
        self.household_type = household_type
        self.name_masked = name_masked
        self.members_count = members_count
        self.opened_at = opened_at
        self.status = "open"
        self.allocations: dict[str, dict[str, Any]] = {}
        self.published = False
        self.accepted_by: str | None = None

    # --- amounts ------------------------------------------------------------------------
    def _total(self, *statuses: str) -> int:
        return sum(a["amount_fen"] for a in self.allocations.values() if a["status"] in statuses)

    @property
    def allocated_fen(self) -> int:
        return self._total("allocated")

    @property
    def disbursed_fen(self) -> int:
        return self._total("disbursed")

    @property
    def still_needed_fen(self) -> int:
        """What no allocation covers yet (released allocations count for nothing)."""
        return max(self.amount_asked_fen - self._total("allocated", "disbursed"), 0)

    def used_from(self, fund_id: str) -> int:
        return sum(a["amount_fen"] for a in self.allocations.values()
                   if a["fund_id"] == fund_id and a["status"] in ("allocated", "disbursed"))

    # --- allocations ---------------------------------------------------------------------
    def record_allocation(self, allocation_id: str, fund_id: str, amount_fen: int, by: Meta) -> None:
        if self.status == "fulfilled":
            raise NeedRuleViolation(f"{self.need_id} is fulfilled", "need_fulfilled")
        if amount_fen > self.still_needed_fen:
            raise NeedRuleViolation(
                f"{self.need_id} still needs {self.still_needed_fen} fen, not {amount_fen}", "more_than_needed")
        self.trigger_event(self.AllocationRecorded, allocation_id=allocation_id, fund_id=fund_id,
                           amount_fen=amount_fen, meta=by.as_dict())

    def close_allocation(self, allocation_id: str, status: str, at: str, by: Meta) -> None:
        """Released or disbursed; the need is fulfilled when what was disbursed covers it."""
        self.trigger_event(self.AllocationClosed, allocation_id=allocation_id, status=status, meta=by.as_dict())
        if status == "disbursed" and self.disbursed_fen >= self.amount_asked_fen and self.status != "fulfilled":
            self.trigger_event(
                self.Fulfilled, need_id=self.need_id, case_id=self.case_id, referral_id=self.referral_id, by="funds",
                amount_fen=self.disbursed_fen, organisation=None, note="", fulfilled_at=at, meta=by.as_dict(),
            )

    # --- the federation ----------------------------------------------------------------
    def publish(self, amount_still_needed_fen: int, published_at: str, by: Meta) -> bool:
        """To the federation feed, masked, once; never without the household's consent."""
        if not self.consent_to_share:
            raise NeedRuleViolation(f"{self.need_id}: the household did not consent to sharing", "consent_to_share")
        if self.published or self.status == "fulfilled":
            return False
        self.trigger_event(
            self.Published, need_id=self.need_id, case_id=self.case_id, name_masked=self.name_masked,
            region_code=township_of(self.region_code), members_count=self.members_count,
            household_type=self.household_type, need_category=self.need_category,
            amount_still_needed_fen=amount_still_needed_fen, urgency=self.urgency, due_date=self.due_date,
            published_at=published_at, meta=by.as_dict(),
        )
        return True

    def accept(self, organisation: str, note: str, accepted_at: str, by: Meta) -> bool:
        """The federation takes the need on: once; the same organisation again changes nothing."""
        if not self.published:
            raise NeedRuleViolation(f"{self.need_id} was not published to the federation", "not_published")
        if self.accepted_by == organisation:
            return False
        if self.accepted_by is not None:
            raise NeedRuleViolation(f"{self.need_id} was accepted by {self.accepted_by}", "accepted_by_another")
        if self.status == "fulfilled":
            raise NeedRuleViolation(f"{self.need_id} is fulfilled", "need_fulfilled")
        self.trigger_event(self.Accepted, need_id=self.need_id, case_id=self.case_id, referral_id=self.referral_id,
                           organisation=organisation, note=note, accepted_at=accepted_at, meta=by.as_dict())
        return True

    def fulfil_by_federation(self, organisation: str, amount_fen: int, note: str, fulfilled_at: str,
                             by: Meta) -> bool:
        if not self.published:
            raise NeedRuleViolation(f"{self.need_id} was not published to the federation", "not_published")
        if self.status == "fulfilled":
            return False
        if self.accepted_by not in (None, organisation):
            raise NeedRuleViolation(f"{self.need_id} was accepted by {self.accepted_by}", "accepted_by_another")
        self.trigger_event(
            self.Fulfilled, need_id=self.need_id, case_id=self.case_id, referral_id=self.referral_id, by="federation",
            amount_fen=fen(amount_fen, "amount_fen"), organisation=organisation, note=note,
            fulfilled_at=fulfilled_at, meta=by.as_dict(),
        )
        return True


def need_id_of(referral_id: str) -> str:
    return "N-" + referral_id.split("-", 1)[-1]
