from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from lifeline.rules.policy import PolicyBook

REPO = Path(__file__).resolve().parents[3]
POLICY_FILE = REPO / "config" / "policy.yaml"


@pytest.fixture(scope="session")
def raw_policy() -> dict:
    with open(POLICY_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def book() -> PolicyBook:
    return PolicyBook.load(POLICY_FILE)


@pytest.fixture(scope="session")
def dongying_2026(book):
    return book.policy_for("370502", date(2026, 3, 1))


@pytest.fixture(scope="session")
def dongying_2025(book):
    return book.policy_for("370502", date(2025, 9, 1))


@pytest.fixture(scope="session")
def zhifu_2026(book):
    return book.policy_for("370602", date(2026, 3, 1))


@pytest.fixture(scope="session")
def request_policies(dongying_2026, dongying_2025, zhifu_2026) -> dict:
    return {"dongying_2026": dongying_2026, "dongying_2025": dongying_2025,
            "zhifu_2026": zhifu_2026}
