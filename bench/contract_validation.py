"""Contract validation per event: the compiled validator against jsonschema, in the same run.

Times the two checks every ApplicationSubmitted passes (issue 14, goal 5: ≤ 20 µs each):
publishing (`registry.validate_data`, the write side's check before an event is stored) and
consuming (`registry.accept` of a parsed envelope, the consumer's check), against the baseline of
jsonschema's `iter_errors` + `best_match` on the same data (what both did before). Also the time
to find and describe a refusal, which still comes from jsonschema. Prints, last:

    contract validation: publish P µs, consume C µs; jsonschema baseline B µs; ratio X

    .venv/bin/python bench/contract_validation.py [--events N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonschema.exceptions import best_match  # noqa: E402

import bench._common as C  # noqa: E402
from lifeline.contracts import registry  # noqa: E402
from lifeline.contracts.envelope import ContractError  # noqa: E402
from tests.unit.services import pid, submitted_data  # noqa: E402

NAME = "ApplicationSubmitted"


def per_call(fn, n: int, repeat: int = 5) -> float:
    """The best of `repeat` timings of `n` calls, in µs per call."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=5000, help="calls per timing (best of 5)")
    n = p.parse_args().events
    print(C.machine_line())
    version = registry.CURRENT_VERSIONS[NAME]
    data = submitted_data("C-BENCH0000000001", [pid(1), pid(2, female=True), pid(3)], region_code="370502101001")
    event = registry.new_event(NAME, data, subject="C-BENCH0000000001", source="lifeline/intake", sequence=1,
                               actor={"user_id": "clerk-1", "role": "clerk", "org_code": "370502101"})
    slow = registry._validator(NAME, version)
    registry.load_all()
    baseline = per_call(lambda: best_match(slow.iter_errors(data)), n)
    publish = per_call(lambda: registry.validate_data(NAME, data), n)
    consume = per_call(lambda: registry.accept(event), n)
    bad = {**data, "declared_monthly_income_fen": -1}

    def refuse() -> None:
        try:
            registry.validate_data(NAME, bad)
        except ContractError:
            return
        raise AssertionError("the bad example passed")

    refused = per_call(refuse, max(n // 10, 100))
    print(f"ApplicationSubmitted v{version} of {len(data['members'])} members: jsonschema iter_errors + best_match "
          f"{baseline:.1f} µs; validate_data {publish:.1f} µs; accept (consumer) {consume:.1f} µs; "
          f"a refusal found and described {refused:.1f} µs")
    print(f"contract validation: publish {publish:.1f} µs, consume {consume:.1f} µs; jsonschema baseline "
          f"{baseline:.1f} µs; ratio {baseline / max(publish, consume):.1f}")


if __name__ == "__main__":
    main()
