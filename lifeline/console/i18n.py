"""Chinese first, English where a person switches to it (issue 15).

Templates and pages write their words in Chinese, the language of the people who use the console,
and that text is the message id: `_("一窗受理")`. English translations live in
`locale/en/<area>.json` (one file per screen area, merged), keyed by that Chinese text; a word not
translated yet shows in Chinese rather than as a key. Codes from the services (statuses, kinds)
become words through `label(vocabulary, code)`, whose Chinese is kept beside the screens that use
them (`add_labels`).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from lifeline.rules.periods import SHANGHAI
from lifeline.rules.vocabulary import BANK_CHANNELS

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGE_COOKIE = "lifeline_lang"
_LOCALE = Path(__file__).parent / "locale"

# vocabulary → {code: Chinese}
_LABELS: dict[str, dict[str, str]] = {}


def add_labels(vocabulary: str, words: dict[str, str]) -> None:
    _LABELS.setdefault(vocabulary, {}).update(words)


# The services as a person reads their names on a page (which one is down, which one refused).
add_labels("service", {"intake": "受理服务", "verification": "核查审批服务", "payment": "资金发放服务",
                       "charity": "慈善帮扶服务", "notify": "告知公示服务"})
add_labels("role", {"clerk": "窗口受理人员", "caseworker": "经办人员", "reviewer": "审核审批人员",
                    "county_officer": "县级民政人员", "auditor": "审计人员",
                    "charity_federation": "慈善联合会", "admin": "系统管理员"})
add_labels("assistance_type", {"dibao": "最低生活保障", "tekun": "特困人员救助供养",
                               "linshi_jinan": "临时救助（急难型）", "linshi_zhichu": "临时救助（支出型）",
                               "low_income": "低收入人口认定"})

# A statutory clock's state: notify's words (open, warned, breached) and verification's due_today.
add_labels("clock", {"open": "未到期", "due_today": "今日到期", "warned": "临近期限",
                     "breached": "已超期"})
# Vocabularies more than one screen area reads (lifeline/rules/vocabulary.py): written once here.
add_labels("urgency", {"normal": "一般", "urgent": "紧急", "critical": "危急"})
add_labels("need_category", {"medical": "医疗", "education": "教育", "housing": "住房", "employment": "就业",
                             "living": "基本生活", "disaster": "受灾", "care": "照料护理", "psychological": "心理疏导"})
add_labels("bank_channel", dict(BANK_CHANNELS))
# How a statutory deadline ended (verification's deadlines, notify's deadline watch).
add_labels("deadline_outcome", {"open": "进行中", "met": "按时办结", "late": "逾期办结", "cancelled": "已撤销"})


@lru_cache(maxsize=None)
def catalog(language: str) -> dict[str, str]:
    if language == DEFAULT_LANGUAGE:
        return {}
    merged: dict[str, str] = {}
    for path in sorted((_LOCALE / language.split("-")[0]).glob("*.json")):
        merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)
    if isinstance(value, str) and "T" in value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)
    return None


def in_shanghai(value: Any) -> datetime | None:
    """A moment (a datetime, or ISO 8601 text with its time; without an offset it is Shanghai's)
    as Asia/Shanghai reads it; None when `value` is no moment."""
    moment = _as_datetime(value)
    return moment.astimezone(SHANGHAI) if moment is not None else None


def _as_date(value: Any) -> date | None:
    moment = in_shanghai(value)
    if moment is not None:
        return moment.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Words:
    """What a page needs to speak one language: `_`, `label`, and the formats of dates and money."""

    def __init__(self, language: str):
        self.language = language_of(language)
        self._catalog = catalog(self.language)

    def _(self, text: str, **values: Any) -> str:
        words = self._catalog.get(text, text)
        return words.format(**values) if values else words

    def label(self, vocabulary: str, code: Any) -> str:
        if code is None or code == "":
            return "—"
        chinese = _LABELS.get(vocabulary, {}).get(str(code))
        return self._(chinese) if chinese else str(code)

    def options(self, vocabulary: str, codes: Iterable[Any], blank: str | None = None) -> list[tuple[str, str]]:
        """(code, words) for a <select> over codes of a vocabulary; `blank` (words already in this
        language: "请选择", "全部") puts an empty choice first."""
        first = [("", blank)] if blank is not None else []
        return first + [(str(code), self.label(vocabulary, code)) for code in codes]

    def yuan(self, fen: Any) -> str:
        """Fen as yuan with two decimals: 123456 → "1,234.56 元"."""
        if fen is None or fen == "":
            return "—"
        fen = int(fen)
        sign = "-" if fen < 0 else ""
        whole, cents = divmod(abs(fen), 100)
        text = f"{sign}{whole:,}.{cents:02d}"
        return f"{text} 元" if self.language == "zh-CN" else f"CNY {text}"

    def day(self, value: Any) -> str:
        """A date as 2026年12月1日 (English: 1 Dec 2026); a moment is taken in Asia/Shanghai."""
        d = _as_date(value)
        if d is None:
            return "—" if value in (None, "") else str(value)
        if self.language == "zh-CN":
            return f"{d.year}年{d.month}月{d.day}日"
        return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"

    def moment(self, value: Any) -> str:
        """A moment in Asia/Shanghai: 2026年12月1日 14:05."""
        local = in_shanghai(value)
        if local is None:
            return self.day(value)
        return f"{self.day(local.date())} {local:%H:%M}"

    def period(self, value: Any) -> str:
        """A payment period "2026-12" as 2026年12月 (English: Dec 2026)."""
        text = str(value or "")
        if len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit():
            year, month = int(text[:4]), int(text[5:])
            return f"{year}年{month}月" if self.language == "zh-CN" else f"{_MONTHS[month - 1]} {year}"
        return text or "—"

    def functions(self) -> dict[str, Callable[..., str]]:
        return {"_": self._, "label": self.label, "options": self.options, "yuan": self.yuan, "day": self.day,
                "moment": self.moment, "period": self.period}
