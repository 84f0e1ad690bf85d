"""Builders for households and department records used by the rule tests."""
from __future__ import annotations

from datetime import date
from typing import Iterable

from lifeline.rules.ids import make_resident_id
from services.verification.assessment import DepartmentRecord, Household, Member

REGION = "370502001001"   # a village in 东营区


def pid(n: int, born: date = date(1980, 5, 1), female: bool = False) -> str:
    return make_resident_id("370502", born, n, female)


def member(n: int, **kw) -> Member:
    born = kw.pop("born", date(1980, 5, 1))
    return Member(id_number=pid(n, born), name=f"成员{n}", **kw)


def household(members: Iterable[Member], *, area="urban", kind="dibao", **kw) -> Household:
    return Household(members=tuple(members), area=area, region_code=REGION,
                     assistance_type=kind, **kw)


def records(policy, rows: dict[str, list[dict]] | None = None, *, skip: Iterable[str] = (),
            extra: Iterable[str] = ()) -> dict[str, DepartmentRecord]:
    """Every mandatory department answers (empty unless given rows), minus ``skip``."""
    rows = rows or {}
    codes = set(policy.mandatory_departments) | set(extra) | set(rows)
    return {c: DepartmentRecord(c, tuple(rows.get(c, ()))) for c in codes if c not in set(skip)}


def income_rows(pairs: Iterable[tuple[str, int]]) -> dict[str, list[dict]]:
    return {"hrss": [{"id_number": i, "monthly_income_fen": v} for i, v in pairs]}
