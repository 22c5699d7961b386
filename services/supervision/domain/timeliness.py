"""Was a publication on time against its item's rule, and the counts by timeliness status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from ..calendar import CalendarNotCovered, WorkCalendar
from .time_limits import REALTIME_WORKING_DAYS, TimeRule

BEIJING = timezone(timedelta(hours=8))


ON_TIME, LATE, EXEMPT, UNPARSED, NO_CALENDAR = "on_time", "late", "exempt", "unparsed", "no_calendar"
STATUSES = (ON_TIME, LATE, EXEMPT, UNPARSED, NO_CALENDAR)
STATUS_NAMES = {ON_TIME: "按时", LATE: "逾期", EXEMPT: "不计时限", UNPARSED: "时限无法解析", NO_CALENDAR: "日历未覆盖"}


@dataclass(frozen=True)
class Assessment:
    status: str
    deadline: date | None = None
    working_days: int | None = None  # working days from formed_at to published_at
    days_late: int | None = None  # in the rule's unit: working days, or calendar days
    note: str | None = None


def beijing_date(moment: datetime | date) -> date:
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return aware.astimezone(BEIJING).date()
    return moment


def assess(rule: TimeRule, formed: date, published: date, calendar: WorkCalendar) -> Assessment:
    """Was this publication on time against its item's rule?"""
    try:
        elapsed = calendar.working_days_between(formed, published)
    except CalendarNotCovered as exc:
        if rule.kind == "calendar_days" and published <= formed + timedelta(days=rule.days or 0):
            return Assessment(ON_TIME, formed + timedelta(days=rule.days or 0))
        if not rule.has_deadline:
            return Assessment(EXEMPT if rule.kind != "unparsed" else UNPARSED, note=rule.reason)
        return Assessment(NO_CALENDAR, note=str(exc))
    if rule.kind == "unparsed":
        return Assessment(UNPARSED, working_days=elapsed, note=rule.reason)
    if not rule.has_deadline:
        return Assessment(EXEMPT, working_days=elapsed)
    if rule.kind == "calendar_days":
        nominal = formed + timedelta(days=rule.days or 0)
        if published <= nominal:
            return Assessment(ON_TIME, nominal, elapsed)
        try:
            deadline = calendar.next_workday(nominal)
        except CalendarNotCovered as exc:
            return Assessment(NO_CALENDAR, working_days=elapsed, note=str(exc))
        if published <= deadline:
            return Assessment(ON_TIME, deadline, elapsed)
        return Assessment(LATE, deadline, elapsed, (published - deadline).days)
    n = rule.days or REALTIME_WORKING_DAYS
    try:
        deadline = calendar.add_working_days(formed, n)
    except CalendarNotCovered:
        # The deadline lies beyond the covered years but the publication date does not: it is
        # earlier than the deadline, whatever the new year's schedule says.
        return Assessment(ON_TIME, None, elapsed)
    if published <= deadline:
        return Assessment(ON_TIME, deadline, elapsed)
    return Assessment(LATE, deadline, elapsed, max(1, elapsed - n))


@dataclass
class Timeliness:
    on_time: int = 0
    late: int = 0
    exempt: int = 0
    unparsed: int = 0
    no_calendar: int = 0

    def add(self, status: str, count: int = 1) -> None:
        setattr(self, status, getattr(self, status) + count)

    def merge(self, other: Timeliness) -> Timeliness:
        for status in STATUSES:
            self.add(status, getattr(other, status))
        return self

    @property
    def assessed(self) -> int:
        return self.on_time + self.late

    @property
    def total(self) -> int:
        return sum(getattr(self, s) for s in STATUSES)

    @property
    def share(self) -> float | None:
        """On-time share of the filings that could be assessed; None when there are none."""
        return self.on_time / self.assessed if self.assessed else None


# --- the window of a report: whole months from the roll-up, edges from the filings ---------


def month_key(day: date) -> int:
    return day.year * 100 + day.month


def _month_end(day: date) -> date:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - timedelta(days=1)


def split_window(start: date, end: date) -> tuple[tuple[int, int] | None, list[tuple[date, date]]]:
    """[start, end] as a range of whole months (first, last month keys) plus partial edges."""
    if end < start:
        return None, []
    first = start if start.day == 1 else _month_end(start) + timedelta(days=1)
    last_end = end if end == _month_end(end) else date(end.year, end.month, 1) - timedelta(days=1)
    if first > last_end:
        return None, [(start, end)]
    edges = []
    if start < first:
        edges.append((start, first - timedelta(days=1)))
    if last_end < end:
        edges.append((last_end + timedelta(days=1), end))
    return (month_key(first), month_key(last_end)), edges
