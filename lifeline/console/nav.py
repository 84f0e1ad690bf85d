"""The screens each role works on, in the order the menu shows them (issue 15, "screens, by role").
The services decide what a role may do; this only decides what the menu offers."""

from __future__ import annotations

NAV: dict[str, list[tuple[str, str]]] = {
    "clerk": [("/clerk/applications/new", "一窗受理"), ("/clerk/cases", "受理台账"),
              ("/clerk/referrals", "转介"), ("/clerk/discovery", "主动发现")],
    "caseworker": [("/caseworker", "我的案件"), ("/caseworker/reviews", "待复核"),
                   ("/charity/needs", "慈善需求")],
    "reviewer": [("/reviewer", "待审批")],
    "county_officer": [("/county/runs", "发放批次"), ("/county/budgets", "预算"),
                       ("/county/returns", "退回与更正"), ("/county/deadlines", "超期督办"),
                       ("/charity/needs", "慈善需求"), ("/charity/funds", "慈善基金")],
    "auditor": [("/audit", "案件时间线"), ("/audit/verify", "日志校验")],
    "charity_federation": [("/charity/funds", "慈善基金")],
}
# Everyone, signed in or not.
PUBLIC = [("/board", "公示栏")]


def nav_for(role: str | None) -> list[tuple[str, str]]:
    if role == "admin":
        seen: dict[str, str] = {}
        for items in NAV.values():
            seen.update({path: name for path, name in items if path not in seen})
        return [*seen.items(), *PUBLIC]
    return [*NAV.get(role or "", []), *PUBLIC]


def home_for(role: str | None) -> str:
    items = nav_for(role)
    return items[0][0] if items else "/board"
