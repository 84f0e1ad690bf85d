"""Matching open needs against funds (pure: no I/O, no clock, no store).

Ranking policy (the documented policy; the docs quote it):

1. **Needs in priority order.** Needs are matched one at a time, the most urgent first
   (critical, then urgent, then normal), then the earliest due date, then the earliest
   opened, then by need id. All needs of one matching draw on one ledger of what each fund
   has available, so a more urgent need is served first and no fund is ever proposed more
   than it has.
2. **Which funds fit.** A fund fits a need when its criteria do not exclude it on the
   matching date (`Criteria.excludes`: need category, region at any GB/T 2260 level from the
   province down to the village, household type, validity dates).
3. **Which fund gives first.** Among the fitting funds: the one whose validity ends soonest
   (money that expires is used before money that keeps; open-ended funds last), then the one
   with the narrowest criteria (`Criteria.narrowness`: the deepest region, then fewer
   regions, need categories and household types: a village's named fund before the county's
   special fund before a province-wide fund), then the one with the largest amount available
   now, then by fund id.
4. **How much.** Each fund in that order gives the least of: what the need still lacks, what
   the fund has available, what its per-case cap leaves for this need (minus what the need
   already got from it), and what its per-household-year cap leaves for the household this
   calendar year (minus what the household already got from it, and what this matching
   already proposed to the household from it). A need no single fund covers is split across
   funds in that order; what no fund covers is the shortfall (published to the federation
   when the household consented to sharing).
5. **Every fund explained.** Each portion names what it matched (all of `MATCHED`) and what
   limited it (`need`: it covered what was left; `no_available_balance`, `per_case_cap`,
   `per_household_year_cap`). Each fund not used is explained by the first reason in
   `domain.EXCLUSIONS` that kept it out: a criterion (need_category, region, household_type,
   not_yet_valid, expired), else a cap already reached (per_case_cap,
   per_household_year_cap), else nothing available when the need was matched
   (no_available_balance), else funds ranked before it already covered the need
   (need_covered).

Speed: funds are indexed once by (need category, region prefix, household type); a need looks
up its region's prefixes (province, prefecture, county, township, village, and the whole
country) and so sees only candidate funds, which `Criteria.excludes` then confirms (once per
distinct need category, region and household type). The ranking's fixed part (validity end,
narrowness, fund id) is computed once; only funds tied on it are ordered by what they have
available when a need reaches them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lifeline.rules.regions import scope_prefix
from services.charity.domain import EXCLUSIONS, MATCHED, URGENCY_ORDER, Criteria

LIMITS = ("need", "no_available_balance", "per_case_cap", "per_household_year_cap")


@dataclass(frozen=True)
class FundView:
    fund_id: str
    name: str
    criteria: Criteria
    available_fen: int


@dataclass(frozen=True)
class NeedView:
    need_id: str
    case_id: str
    need_category: str
    region_code: str
    household_type: str
    urgency: str
    due_date: str
    opened_at: str
    still_needed_fen: int
    used_fen: Mapping[str, int] = field(default_factory=dict)  # fund_id -> allocated+disbursed for THIS need
    household_year_fen: Mapping[str, int] = field(default_factory=dict)  # fund_id -> this case, this year


@dataclass(frozen=True)
class Portion:
    fund_id: str
    name: str
    amount_fen: int
    matched: tuple[str, ...]
    limited_by: str  # one of LIMITS


@dataclass(frozen=True)
class Exclusion:
    fund_id: str
    name: str
    criterion: str  # one of domain.EXCLUSIONS
    detail: str


@dataclass(frozen=True)
class Proposal:
    need_id: str
    portions: tuple[Portion, ...]
    shortfall_fen: int

    @property
    def proposed_fen(self) -> int:
        return sum(p.amount_fen for p in self.portions)


def priority(need: NeedView) -> tuple:
    """Most urgent first (critical, urgent, normal; anything else after), then due date,
    opened_at, need id."""
    return (URGENCY_ORDER.get(need.urgency, len(URGENCY_ORDER)), need.due_date, need.opened_at, need.need_id)


def _fixed_rank(criteria: Criteria) -> tuple:
    """The part of a fund's rank that does not change while matching."""
    until = criteria.valid_until
    return (until is None, until or "", criteria.narrowness())


def fund_rank(fund: FundView, available_fen: int | None = None) -> tuple:
    """Smaller gives first: validity ending soonest (open-ended last), narrowest criteria,
    largest available (`available_fen` when given: the matcher's ledger now, else the
    view's), fund id."""
    available = fund.available_fen if available_fen is None else available_fen
    return (*_fixed_rank(fund.criteria), -available, fund.fund_id)


def _join(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


class Matcher:
    """Proposes allocations from `funds` on the ISO date `on` (Asia/Shanghai business date),
    drawing on its own ledger of what each fund has available (starting from the views')."""

    def __init__(self, funds: Iterable[FundView], on: str):
        self.on = on
        fs = list(funds)
        self._index_of: dict[str, int] = {}
        for i, f in enumerate(fs):
            if f.fund_id in self._index_of:
                raise ValueError(f"fund {f.fund_id} is given twice")
            self._index_of[f.fund_id] = i
        self._funds = fs
        self._avail = [max(f.available_fen, 0) for f in fs]
        self._case_cap = [f.criteria.per_case_cap_fen for f in fs]
        self._year_cap = [f.criteria.per_household_year_cap_fen for f in fs]
        # The fixed part of the rank: a group per distinct (validity end, narrowness), and
        # the fund's position when sorted by (group, fund id).
        fixed = [_fixed_rank(f.criteria) for f in fs]
        self._order = sorted(range(len(fs)), key=lambda i: (fixed[i], fs[i].fund_id))
        self._pos = [0] * len(fs)
        self._group = [0] * len(fs)
        group, previous = -1, None
        for pos, i in enumerate(self._order):
            if fixed[i] != previous:
                group, previous = group + 1, fixed[i]
            self._pos[i], self._group[i] = pos, group
        # (need category, region prefix, household type) -> funds, and the prefix lengths used.
        index: dict[tuple[str, str, str], list[int]] = {}
        lengths: set[int] = set()
        for i, f in enumerate(fs):
            c = f.criteria
            prefixes = {scope_prefix(r) for r in c.regions}
            lengths.update(len(p) for p in prefixes)
            for category in c.need_categories:
                for p in prefixes:
                    for household_type in c.household_types:
                        index.setdefault((category, p, household_type), []).append(i)
        self._index = index
        self._lengths = tuple(sorted(lengths))
        self._fitting_cache: dict[tuple[str, str, str], tuple[tuple[int, ...], ...]] = {}
        # The ledger's history, for explaining a need after later needs drew on the funds.
        self._seq = 0
        self._when: dict[str, int] = {}  # need_id -> its sequence number (last propose)
        self._drawn_seq: dict[int, list[int]] = {}  # fund -> sequence numbers that drew on it
        self._drawn_left: dict[int, list[int]] = {}  # fund -> available after each
        self._given: dict[tuple[str, int], int] = {}  # (case_id, fund) -> proposed (yearly-capped funds)
        self._given_seq: dict[tuple[str, int], list[int]] = {}
        self._given_total: dict[tuple[str, int], list[int]] = {}
        self._listings: dict[int, tuple[str, str, str]] = {}
        self._exclusions: dict[tuple[int, str, str], Exclusion] = {}

    # --- the ledger -----------------------------------------------------------------------
    def available(self, fund_id: str) -> int:
        """What the fund has left after what this matcher proposed."""
        return self._avail[self._index_of[fund_id]]

    # --- matching -------------------------------------------------------------------------
    def _fitting(self, category: str, region: str, household_type: str) -> tuple[tuple[int, ...], ...]:
        """The funds that fit, in groups of the fixed rank (each group in fund-id order)."""
        key = (category, region, household_type)
        groups = self._fitting_cache.get(key)
        if groups is not None:
            return groups
        index, candidates = self._index, set()
        for n in self._lengths:
            if n <= len(region):
                candidates.update(index.get((category, region[:n], household_type), ()))
        fs, on = self._funds, self.on
        fitting = sorted((i for i in candidates
                          if fs[i].criteria.excludes(category, region, household_type, on) is None),
                         key=self._pos.__getitem__)
        grouped: list[tuple[int, ...]] = []
        current: list[int] = []
        for i in fitting:
            if current and self._group[current[0]] != self._group[i]:
                grouped.append(tuple(current))
                current = []
            current.append(i)
        if current:
            grouped.append(tuple(current))
        groups = self._fitting_cache[key] = tuple(grouped)
        return groups

    def propose(self, need: NeedView) -> Proposal:
        """Portions from the fitting funds in ranked order; draws them from the ledger."""
        self._seq += 1
        seq = self._seq
        self._when[need.need_id] = seq
        remaining = need.still_needed_fen
        if remaining <= 0:
            return Proposal(need.need_id, (), 0)
        avail, fs, pos = self._avail, self._funds, self._pos
        portions: list[Portion] = []
        for group in self._fitting(need.need_category, need.region_code, need.household_type):
            if len(group) > 1:  # tied on the fixed rank: the largest available now first
                group = sorted(group, key=lambda i: (-avail[i], pos[i]))
            for i in group:
                room = avail[i]
                if room <= 0:
                    continue
                limit = "no_available_balance"
                fund_id = fs[i].fund_id
                cap = self._case_cap[i]
                if cap is not None:
                    left = cap - need.used_fen.get(fund_id, 0)
                    if left < room:
                        room, limit = left, "per_case_cap"
                cap = self._year_cap[i]
                if cap is not None:
                    left = (cap - need.household_year_fen.get(fund_id, 0)
                            - self._given.get((need.case_id, i), 0))
                    if left < room:
                        room, limit = left, "per_household_year_cap"
                if room <= 0:
                    continue
                if remaining <= room:
                    amount, limit = remaining, "need"
                else:
                    amount = room
                avail[i] -= amount
                self._drawn_seq.setdefault(i, []).append(seq)
                self._drawn_left.setdefault(i, []).append(avail[i])
                if cap is not None:
                    key = (need.case_id, i)
                    total = self._given[key] = self._given.get(key, 0) + amount
                    self._given_seq.setdefault(key, []).append(seq)
                    self._given_total.setdefault(key, []).append(total)
                portions.append(Portion(fund_id, fs[i].name, amount, MATCHED, limit))
                remaining -= amount
                if remaining == 0:
                    return Proposal(need.need_id, tuple(portions), 0)
        return Proposal(need.need_id, tuple(portions), remaining)

    def match_all(self, needs: Iterable[NeedView]) -> list[Proposal]:
        """Every need, in priority order (the proposals come back in that order)."""
        return [self.propose(need) for need in sorted(needs, key=priority)]

    # --- explaining -----------------------------------------------------------------------
    def _before(self, seqs: dict, values: dict, key: Any, seq: int | None, default: int) -> int:
        """A ledger figure just before the need with sequence number `seq` was matched."""
        history = seqs.get(key)
        if not history:
            return default
        n = len(history) if seq is None else bisect_left(history, seq)
        return values[key][n - 1] if n else default

    def explain(self, need: NeedView, proposal: Proposal) -> list[Exclusion]:
        """For every fund not in the proposal, the first reason of domain.EXCLUSIONS that
        kept it out, as it stood when the need was matched; in the order of the rank's fixed
        part (validity end, narrowness), then by fund id."""
        used = {p.fund_id for p in proposal.portions}
        seq = self._when.get(need.need_id)
        category, region, household_type = need.need_category, need.region_code, need.household_type
        fs, on, cache = self._funds, self.on, self._exclusions
        out: list[Exclusion] = []
        for i in self._order:
            f = fs[i]
            if f.fund_id in used:
                continue
            criterion = f.criteria.excludes(category, region, household_type, on)
            if criterion is None:  # it fits: an amount kept it out
                out.append(Exclusion(f.fund_id, f.name, *self._why_not(i, f, need, seq)))
            elif criterion == "region":
                out.append(Exclusion(f.fund_id, f.name, criterion,
                                     f"region {region} not within [{self._listed(i)[1]}]"))
            else:  # the same for every need of this category and household type: made once
                key = (i, criterion, category if criterion == "need_category" else household_type)
                e = cache.get(key)
                if e is None:
                    e = cache[key] = Exclusion(f.fund_id, f.name, criterion, self._detail(i, criterion, key[2]))
                out.append(e)
        return out

    def _detail(self, i: int, criterion: str, value: str) -> str:
        c = self._funds[i].criteria
        if criterion == "need_category":
            return f"need category {value} not in [{self._listed(i)[0]}]"
        if criterion == "household_type":
            return f"household type {value} not in [{self._listed(i)[2]}]"
        if criterion == "not_yet_valid":
            return f"valid from {c.valid_from}, matched on {self.on}"
        return f"valid until {c.valid_until}, matched on {self.on}"  # expired

    def _listed(self, i: int) -> tuple[str, str, str]:
        """The fund's categories, regions and household types as an explanation lists them."""
        listed = self._listings.get(i)
        if listed is None:
            c = self._funds[i].criteria
            listed = self._listings[i] = (
                _join(c.need_categories), ", ".join(c.regions), _join(c.household_types))
        return listed

    def _why_not(self, i: int, f: FundView, need: NeedView, seq: int | None) -> tuple[str, str]:
        """Why a fund that fits the need gave it nothing."""
        c = f.criteria
        if c.per_case_cap_fen is not None:
            got = need.used_fen.get(f.fund_id, 0)
            if c.per_case_cap_fen - got <= 0:
                return "per_case_cap", f"per-case cap {c.per_case_cap_fen} fen reached: this need has {got} fen from it"
        if c.per_household_year_cap_fen is not None:
            key = (need.case_id, i)
            got = need.household_year_fen.get(f.fund_id, 0) + self._before(
                self._given_seq, self._given_total, key, seq, 0)
            if c.per_household_year_cap_fen - got <= 0:
                return "per_household_year_cap", (
                    f"per-household-year cap {c.per_household_year_cap_fen} fen reached: "
                    f"the household has {got} fen from it this year")
        available = self._before(self._drawn_seq, self._drawn_left, i, seq, max(f.available_fen, 0))
        if available <= 0:
            return "no_available_balance", "no available balance when this need was matched"
        if need.still_needed_fen <= 0:
            return "need_covered", "the need asks for nothing more"
        return "need_covered", "funds ranked before it covered the need"


assert set(LIMITS) - {"need"} <= set(EXCLUSIONS)
