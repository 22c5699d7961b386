"""The catalog's 公开时限 (time limit) texts, read as one rule each, or as unparseable (never guessed)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

STATUTORY_WORKING_DAYS = 20
REALTIME_WORKING_DAYS = 1

RuleKind = Literal["working_days", "calendar_days", "realtime", "periodic", "standing", "unparsed"]

# Expected update cycle per rule kind, in calendar days (staleness). Items with a deadline
# after formation are mostly annual (plans, budgets, standards, lists, guides reviewed each
# year); 实时/及时 items are dynamic and expected to move at least quarterly; a periodic item's
# cycle is its period plus a month to publish it; standing information is reviewed yearly.
CYCLE_DAYS: dict[str, int] = {"working_days": 365, "calendar_days": 365, "realtime": 90, "standing": 365, "unparsed": 365}
PERIODIC_GRACE_DAYS = 31
PERIODS = {"月": 31, "季": 92, "季度": 92, "半年": 183, "年": 366}


@dataclass(frozen=True)
class TimeRule:
    kind: RuleKind
    days: int | None = None  # N for working/calendar days, the period's length for periodic
    text: str | None = None
    statutory: bool = False  # the catalog gave no limit: 条例第二十六条's default
    reason: str | None = None  # why a text is unparseable
    period: str | None = None  # 月 / 季度 / 半年 / 年

    @property
    def label(self) -> str:
        if self.kind == "working_days":
            return f"{self.days}个工作日" + ("（法定默认）" if self.statutory else "")
        if self.kind == "calendar_days":
            return f"{self.days}日（自然日）"
        if self.kind == "realtime":
            return f"实时/及时（{REALTIME_WORKING_DAYS}个工作日内）"
        if self.kind == "periodic":
            return f"定期（每{self.period}）"
        if self.kind == "standing":
            return "长期公开"
        return "无法解析"

    @property
    def cycle_days(self) -> int:
        if self.kind == "periodic" and self.days:
            return self.days + PERIODIC_GRACE_DAYS
        return CYCLE_DAYS[self.kind]

    @property
    def has_deadline(self) -> bool:
        return self.kind in ("working_days", "calendar_days", "realtime")


_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"[零一二两三四五六七八九十百]+(?=个?(?:工作日|日|天|月|周|个月))")
# Durations that are not deadlines: how long a notice stays up, how long a consultation runs.
_DURATIONS = (
    re.compile(r"(?:公示|公告|公示期|公告期|公示期限|公告期限|张贴|征求意见期限?)(?:为|一般|不少于|不低于|不得少于)*\d+个?(?:工作日|日|天)"),
    re.compile(r"(?:不少于|不低于|不得少于|至少)\d+个?(?:工作日|日|天)"),
)
_BOILERPLATE = re.compile(r"法律[、,，]?法规[^。;；]*?另有规定的?[,，]?从其规定[。;；]?")
_WORKING = re.compile(r"(\d+)个?工作日")
_CALENDAR = re.compile(r"(\d+)个?(?:自然)?(?:日|天)(?!历)")
_MONTHS = re.compile(r"\d+个?月")
_REALTIME = re.compile(r"实时|及时|即时|随时")
_STANDING = re.compile(r"长期|常态化?公开|动态调整")
_PERIODIC = re.compile(r"(?:每|按)(半年|季度|季|月|年)")
_ENUMERATED = re.compile(r"(?:^|[;；。,，])\s*[1-9][.、．)）]|其中")


def _cn_to_int(text: str) -> int:
    if "百" in text:
        hundreds, _, rest = text.partition("百")
        return _cn_to_int(hundreds or "一") * 100 + (_cn_to_int(rest) if rest else 0)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0)
    value = 0
    for ch in text:
        value = value * 10 + _CN_DIGITS[ch]
    return value


@lru_cache(maxsize=4096)
def parse_time_limit(text: str | None) -> TimeRule:
    """The catalog's 公开时限 text as one rule, or an `unparsed` rule saying why."""
    if text is None or not text.strip():
        return TimeRule("working_days", STATUTORY_WORKING_DAYS, text, statutory=True)
    normal = unicodedata.normalize("NFKC", text)
    normal = re.sub(r"\s+", "", normal)
    normal = _CN_NUMBER.sub(lambda m: str(_cn_to_int(m.group(0))), normal)
    normal = _BOILERPLATE.sub("", normal)
    for pattern in _DURATIONS:
        normal = pattern.sub("", normal)
    numeric: set[tuple[str, int]] = {("working_days", int(n)) for n in _WORKING.findall(normal)}
    without_working = _WORKING.sub("", normal)
    periodic = _PERIODIC.search(normal)
    if periodic:
        # "每月10日前" names a day of the period, not a number of days.
        without_working = re.sub(r"\d+(?:日|号)(?:前|之前|以前)", "", without_working)
    numeric |= {("calendar_days", int(n)) for n in _CALENDAR.findall(without_working)}
    numeric = {(kind, n) for kind, n in numeric if n > 0}
    realtime, standing = bool(_REALTIME.search(normal)), bool(_STANDING.search(normal))
    if _ENUMERATED.search(normal):
        kinds = {f"{k}:{n}" for k, n in numeric} | ({"realtime"} if realtime else set()) | ({"standing"} if standing else set())
        if len(kinds) > 1:
            return TimeRule("unparsed", text=text, reason="several limits for different content")
    if len(numeric) > 1:
        return TimeRule("unparsed", text=text, reason="several different limits")
    if numeric:
        kind, n = next(iter(numeric))
        return TimeRule(kind, n, text)  # type: ignore[arg-type]
    if _MONTHS.search(normal):
        return TimeRule("unparsed", text=text, reason="a limit in months")
    if periodic:
        period = periodic.group(1)
        return TimeRule("periodic", PERIODS[period], text, period="季度" if period == "季" else period)
    if realtime:
        return TimeRule("realtime", REALTIME_WORKING_DAYS, text)
    if standing:
        return TimeRule("standing", None, text)
    return TimeRule("unparsed", text=text, reason="no time limit recognised")
