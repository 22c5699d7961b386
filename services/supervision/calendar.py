"""The official working-day calendar: statutory holidays off, make-up working days (调休) on.

Built once from the `chinese-calendar` package (the State Council's schedule, one release per
year, published around November) into a cumulative index, so every question the measures ask
is O(1) or a bisection. A date outside the years the package covers raises
CalendarNotCovered, never a weekday guess: plain Monday-to-Friday arithmetic is wrong around
every holiday.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from functools import lru_cache


class CalendarNotCovered(Exception):
    """The calendar has no official schedule for that year; upgrade chinese-calendar."""


class WorkCalendar:
    """Working days of the years first..last (whole years), from a day → is-a-working-day rule."""

    def __init__(self, is_workday: Callable[[date], bool], first_year: int, last_year: int, *, source: str):
        self.first = date(first_year, 1, 1)
        self.last = date(last_year, 12, 31)
        self.source = source
        self._base = self.first.toordinal()
        # _count[i]: working days in [first, first + i]; _nth[k]: ordinal offset of the k-th working day.
        self._count: list[int] = []
        self._workday: list[bool] = []
        running = 0
        day = self.first
        while day <= self.last:
            works = bool(is_workday(day))
            running += works
            self._workday.append(works)
            self._count.append(running)
            day += timedelta(days=1)

    @property
    def years(self) -> tuple[int, int]:
        return self.first.year, self.last.year

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last

    def _offset(self, day: date) -> int:
        if not self.covers(day):
            raise CalendarNotCovered(
                f"the official holiday calendar ({self.source}) covers {self.first.year}–{self.last.year}, not {day.year}; "
                f"upgrade the chinese-calendar package once the State Council has published {day.year}'s schedule"
            )
        return day.toordinal() - self._base

    def is_workday(self, day: date) -> bool:
        return self._workday[self._offset(day)]

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: the day a period starts from is not counted (民法典 第二百零一条)."""
        if end <= start:
            return 0
        return self._count[self._offset(end)] - self._count[self._offset(start)]

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after start (n ≥ 1)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        target = self._count[self._offset(start)] + n
        index = bisect_left(self._count, target)
        if index >= len(self._count):
            raise CalendarNotCovered(
                f"{n} working days after {start.isoformat()} run past {self.last.year}, the last year the official holiday calendar "
                f"({self.source}) covers; upgrade the chinese-calendar package"
            )
        return self.first + timedelta(days=index)

    def next_workday(self, day: date) -> date:
        """The day itself if it is a working day, else the next working day."""
        offset = self._offset(day)
        while not self._workday[offset]:
            offset += 1
            if offset >= len(self._workday):
                raise CalendarNotCovered(f"no working day after {day.isoformat()} within {self.first.year}–{self.last.year} ({self.source})")
        return self.first + timedelta(days=offset)


@lru_cache
def official_calendar() -> WorkCalendar:
    """China's official calendar as the installed chinese-calendar release knows it."""
    import chinese_calendar
    from chinese_calendar.constants import holidays, workdays

    years = {d.year for d in holidays}
    first, last = min(years), max(years)
    version = getattr(chinese_calendar, "__version__", "?")

    # chinese_calendar.is_workday's own rule on its own tables, without the year check it makes
    # on every call (a scan of all its holidays, which would dominate each process's start).
    def is_workday(day: date) -> bool:
        return day in workdays or (day.weekday() <= 4 and day not in holidays)

    return WorkCalendar(is_workday, first, last, source=f"chinese-calendar {version}")


def calendar_from_schedule(year: int, *, holidays: Iterable[date], makeup_workdays: Iterable[date]) -> WorkCalendar:
    """A one-year calendar from an explicit schedule (tests cross-check the package with it)."""
    off, on = set(holidays), set(makeup_workdays)
    return WorkCalendar(lambda d: d in on or (d.weekday() < 5 and d not in off), year, year, source=f"schedule {year}")
