"""Charity matching: N open needs against F funds with `Matcher.match_all`
(services/charity/matching.py), pure, in memory: no store, no broker, no HTTP.

The data set is seeded (--seed): Shandong's 16 prefectures, counties, townships and villages;
funds at every level (province, prefecture, county, township, village), 8 need categories,
the four household types, per-case and per-household-year caps, validity dates (some funds
not yet valid, some expired), balances that leave some needs uncovered.

Baseline in the same run: the naive matcher of tests/unit/services/test_charity_matching.py
(`reference_match_all`): every need checked against every fund with `Criteria.excludes`, the
fitting funds sorted by `fund_rank`, split the same way. Both must give the same proposals
(asserted). Then every proposed portion is allocated on real `Fund` aggregates (one per fund,
fed by one donation of what it has available): any refusal or any fund whose committed exceeds
its balance ("overdrawn") is counted. The last line reads

    matching: N needs x F funds in S s; allocations A; overdrawn 0; baseline B s; ratio X
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _common as C  # noqa: E402

from lifeline.domain.aggregate import Meta  # noqa: E402
from lifeline.rules.vocabulary import NEED_CATEGORIES  # noqa: E402
from services.charity.domain import HOUSEHOLD_TYPES, Criteria, FundRuleViolation  # noqa: E402
from services.charity.matching import FundView, Matcher, NeedView, priority  # noqa: E402
from tests.unit.services.test_charity_matching import fund_aggregate, reference_match_all  # noqa: E402

ON = "2026-12-01"
BY = Meta(user_id="caseworker-bench", role="caseworker", org_code="370502101")
# Shandong's prefecture-level cities (3712 莱芜 joined 济南 in 2019).
PREFECTURES = [f"37{k:02d}" for k in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17)]
CATEGORY_WEIGHTS = dict(zip(NEED_CATEGORIES, (30, 15, 8, 5, 20, 7, 10, 5)))  # medical .. psychological
TYPE_WEIGHTS = dict(zip(HOUSEHOLD_TYPES, (35, 10, 25, 30)))  # dibao, tekun, low_income, none
URGENCY_WEIGHTS = {"critical": 10, "urgent": 30, "normal": 60}
# Fund levels: share of funds, and what such a fund has available (yuan, low-high).
LEVELS = {
    "province": (2, 4_000_000, 12_000_000),
    "prefecture": (8, 600_000, 3_000_000),
    "county": (30, 100_000, 800_000),
    "township": (35, 20_000, 160_000),
    "village": (25, 4_000, 40_000),
}


class Geography:
    """16 prefectures x 8 counties x 10 townships x 20 villages (25,600 villages)."""

    def __init__(self, rng: random.Random):
        self.counties = [f"{p}{c:02d}" for p in PREFECTURES for c in range(1, 9)]
        self.townships = [f"{c}{t:03d}" for c in self.counties for t in range(101, 111)]
        self.villages = [f"{t}{v:03d}" for t in self.townships for v in range(1, 21)]
        # Where needs are: some counties and townships far more than others.
        self.weights = [rng.paretovariate(1.5) for _ in self.townships]

    def region(self, rng: random.Random, level: str) -> str:
        if level == "province":
            return "370000"
        if level == "prefecture":
            return rng.choice(PREFECTURES) + "00"
        if level == "county":
            return rng.choice(self.counties)
        township = rng.choices(self.townships, self.weights)[0]  # funds follow the needs
        return township if level == "township" else f"{township}{rng.randint(1, 20):03d}"

    def village(self, rng: random.Random) -> str:
        return f"{rng.choices(self.townships, self.weights)[0]}{rng.randint(1, 20):03d}"


def pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def day(offset: int) -> str:
    return (date.fromisoformat(ON) + timedelta(days=offset)).isoformat()


def build_funds(rng: random.Random, geo: Geography, n: int) -> list[FundView]:
    funds = []
    levels = list(LEVELS)
    for i in range(n):
        level = rng.choices(levels, [LEVELS[k][0] for k in levels])[0]
        share, low, high = LEVELS[level]
        regions = sorted({geo.region(rng, level) for _ in range(rng.choice((1, 1, 1, 1, 2, 3)))})
        if rng.random() < 0.12:  # a 救急难-style fund: every category
            categories = set(NEED_CATEGORIES)
        else:
            categories = {pick(rng, CATEGORY_WEIGHTS) for _ in range(rng.randint(1, 3))}
        types = set(HOUSEHOLD_TYPES) if rng.random() < 0.5 else {
            pick(rng, TYPE_WEIGHTS) for _ in range(rng.randint(1, 3))}
        case_cap = rng.choice((None, None, None, 200_000, 500_000, 1_000_000, 2_000_000))
        year_cap = rng.choice((None, None, None, None, 300_000, 800_000, 3_000_000))
        r = rng.random()
        if r < 0.3:
            valid_from, valid_until = None, None
        elif r < 0.40:
            valid_from, valid_until = day(rng.randint(1, 30)), day(rng.randint(60, 400))  # not yet valid
        elif r < 0.45:
            valid_from, valid_until = day(-400), day(-rng.randint(1, 60))  # expired
        else:
            valid_from, valid_until = day(-rng.randint(0, 300)), day(rng.randint(0, 365))
        available = rng.randint(low, high) * 100 if rng.random() > 0.03 else 0
        criteria = Criteria(frozenset(categories), tuple(regions), frozenset(types), case_cap, year_cap,
                            valid_from, valid_until)
        funds.append(FundView(f"F-{i:05d}", f"{level} fund {i}", criteria, available))
    return funds


def build_needs(rng: random.Random, geo: Geography, n: int, funds: list[FundView]) -> list[NeedView]:
    needs = []
    case_year: dict[str, dict[str, int]] = {}
    case_place: dict[str, tuple[str, str]] = {}
    for i in range(n):
        # about one household in six has two or more needs
        case_id = rng.choice(needs).case_id if needs and rng.random() < 0.15 else f"C-{i:07d}"
        if case_id not in case_place:
            case_place[case_id] = (geo.village(rng), pick(rng, TYPE_WEIGHTS))
            # what the household already got this year from some fund (5 %)
            case_year[case_id] = ({rng.choice(funds).fund_id: rng.randint(1, 20) * 10_000}
                                  if rng.random() < 0.05 else {})
        village, household_type = case_place[case_id]
        amount = min(int(rng.lognormvariate(12.4, 0.9)), 10_000_000)  # median ≈ 2,400 yuan
        used = {rng.choice(funds).fund_id: rng.randint(1, 10) * 10_000} if rng.random() < 0.03 else {}
        opened = day(-rng.randint(0, 90))
        needs.append(NeedView(
            need_id=f"N-{i:07d}", case_id=case_id, need_category=pick(rng, CATEGORY_WEIGHTS),
            region_code=village, household_type=household_type, urgency=pick(rng, URGENCY_WEIGHTS),
            due_date=day(rng.randint(1, 60)), opened_at=f"{opened}T{rng.randint(8, 17):02d}:00:00+08:00",
            still_needed_fen=amount if rng.random() > 0.002 else 0, used_fen=used,
            household_year_fen=case_year[case_id],
        ))
    return needs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--needs", type=int, default=100_000)
    p.add_argument("--funds", type=int, default=1_000)
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--explain-sample", type=int, default=1_000, help="needs whose explanation is timed")
    args = p.parse_args()
    print(C.machine_line())
    print(f"# charity_matching needs={args.needs} funds={args.funds} seed={args.seed} on={ON}")

    started = time.perf_counter()
    rng = random.Random(args.seed)
    geo = Geography(rng)
    funds = build_funds(rng, geo, args.funds)
    needs = build_needs(rng, geo, args.needs, funds)
    levels = Counter(f.name.split()[0] for f in funds)
    print(f"data set built in {time.perf_counter() - started:.1f} s (not timed): "
          f"{len(geo.villages):,} villages in {len(geo.counties)} counties; funds by level "
          + ", ".join(f"{k} {levels[k]}" for k in LEVELS)
          + f"; {sum(f.criteria.valid_until is None for f in funds)} open-ended, "
          f"{sum(f.criteria.valid_until is not None and f.criteria.valid_until < ON for f in funds)} expired, "
          f"{sum(f.criteria.valid_from is not None and f.criteria.valid_from > ON for f in funds)} not yet valid; "
          f"{sum(f.criteria.per_case_cap_fen is not None for f in funds)} with a per-case cap, "
          f"{sum(f.criteria.per_household_year_cap_fen is not None for f in funds)} with a yearly cap")
    asked = sum(n.still_needed_fen for n in needs)
    available = sum(f.available_fen for f in funds)
    print(f"needs ask {asked / 100:,.0f} yuan; funds have {available / 100:,.0f} yuan available; "
          f"{len({n.case_id for n in needs}):,} households")

    # (a) the indexed matcher: building it (index, ranks) and matching every need
    gc.collect()
    gc.disable()
    t0 = time.perf_counter()
    matcher = Matcher(funds, ON)
    t1 = time.perf_counter()
    proposals = matcher.match_all(needs)
    t2 = time.perf_counter()
    gc.enable()
    seconds = t2 - t0
    print(f"indexed: Matcher built in {t1 - t0:.3f} s, match_all in {t2 - t1:.2f} s "
          f"({(t2 - t1) / max(len(needs), 1) * 1e6:.1f} µs a need)")

    # explain() on a sample of the needs
    by_id = {n.need_id: n for n in needs}
    sample = random.Random(args.seed + 1).sample(proposals, min(args.explain_sample, len(proposals)))
    t3 = time.perf_counter()
    explained = [matcher.explain(by_id[q.need_id], q) for q in sample]
    t4 = time.perf_counter()
    reasons = Counter(e.criterion for es in explained for e in es)
    print(f"explain: {len(sample)} needs in {t4 - t3:.2f} s ({(t4 - t3) / max(len(sample), 1) * 1e3:.2f} ms a need, "
          f"{args.funds} funds each); reasons: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))

    portions = [x for q in proposals for x in q.portions]
    covered = sum(1 for q in proposals if q.shortfall_fen == 0 and q.portions)
    partly = sum(1 for q in proposals if q.shortfall_fen and q.portions)
    nothing = sum(1 for q in proposals if not q.portions and q.shortfall_fen)
    print(f"proposals: {len(portions):,} portions; needs covered {covered:,}, partly {partly:,}, "
          f"by no fund {nothing:,}, asking nothing {len(proposals) - covered - partly - nothing:,}; "
          f"proposed {sum(x.amount_fen for x in portions) / 100:,.0f} yuan, shortfall "
          f"{sum(q.shortfall_fen for q in proposals) / 100:,.0f} yuan; portions limited by "
          + ", ".join(f"{k} {v}" for k, v in Counter(x.limited_by for x in portions).most_common()))
    split = Counter(min(len(q.portions), 4) for q in proposals)
    print("portions a need: " + ", ".join(f"{'4+' if k == 4 else k}: {split[k]:,}" for k in sorted(split)))

    # (b) the naive baseline, the whole data set, same run
    gc.collect()
    t5 = time.perf_counter()
    reference = reference_match_all(funds, needs, ON)
    baseline = time.perf_counter() - t5
    same = reference == proposals
    print(f"naive baseline (every need x every fund, {len(needs) * len(funds):,} Criteria.excludes calls): "
          f"{baseline:.2f} s; same proposals as the indexed matcher: {same}")
    assert same, "the indexed matcher and the naive baseline disagree"
    assert [q.need_id for q in proposals] == [n.need_id for n in sorted(needs, key=priority)]

    # every portion allocated on real Fund aggregates
    t6 = time.perf_counter()
    # given before any fund's validity ends, so every fund takes its donation
    aggregates = {f.fund_id: fund_aggregate(f, "2025-01-02") for f in funds}
    refused = Counter()
    for q in proposals:
        n = by_id[q.need_id]
        for k, x in enumerate(q.portions):
            f = aggregates[x.fund_id]
            try:
                f.allocate(allocation_id=f"A-{n.need_id}-{k}", need_id=n.need_id, case_id=n.case_id,
                           need_category=n.need_category, region_code=n.region_code,
                           household_type=n.household_type, amount_fen=x.amount_fen, on=ON,
                           allocated_at=f"{ON}T10:00:00+08:00", by=BY)
            except FundRuleViolation as e:
                refused[e.rule] += 1
            f.collect_events()
    overdrawn = sum(1 for f in aggregates.values() if f.committed_fen > f.balance_fen)
    ledger_agrees = all(aggregates[f.fund_id].available_fen == matcher.available(f.fund_id) for f in funds)
    print(f"Fund aggregates: {len(portions):,} allocations in {time.perf_counter() - t6:.1f} s; refused "
          f"{sum(refused.values())} {dict(refused) or ''}; overdrawn {overdrawn}; "
          f"available equals the matcher's ledger: {ledger_agrees}")
    assert not refused and ledger_agrees

    print(f"matching: {len(needs)} needs x {len(funds)} funds in {seconds:.2f} s; allocations {len(portions)}; "
          f"overdrawn {overdrawn}; baseline {baseline:.2f} s; ratio {baseline / seconds:.1f}")


if __name__ == "__main__":
    main()
