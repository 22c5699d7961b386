"""Working days on China's official calendar, checked by hand around the 2026 National Day.

The 2026 schedule (国务院办公厅, published November 2025), transcribed here independently of
the chinese-calendar package:
元旦 1/1–1/3 (work Sun 1/4) · 春节 2/15–2/23 (work Sat 2/14, Sat 2/28) · 清明 4/4–4/6 ·
劳动节 5/1–5/5 (work Sat 5/9) · 端午 6/19–6/21 · 中秋 9/25–9/27 ·
国庆 10/1–10/7 (work Sun 9/20, Sat 10/10).
"""

from datetime import date, timedelta

import pytest

from services.supervision.calendar import CalendarNotCovered, WorkCalendar, calendar_from_schedule, official_calendar


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


HOLIDAYS_2026 = [
    *_days(date(2026, 1, 1), date(2026, 1, 3)),
    *_days(date(2026, 2, 15), date(2026, 2, 23)),
    *_days(date(2026, 4, 4), date(2026, 4, 6)),
    *_days(date(2026, 5, 1), date(2026, 5, 5)),
    *_days(date(2026, 6, 19), date(2026, 6, 21)),
    *_days(date(2026, 9, 25), date(2026, 9, 27)),
    *_days(date(2026, 10, 1), date(2026, 10, 7)),
]
MAKEUP_2026 = [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)]


@pytest.fixture(scope="module")
def official() -> WorkCalendar:
    return official_calendar()


def test_the_package_agrees_with_the_published_2026_schedule_day_by_day(official):
    transcribed = calendar_from_schedule(2026, holidays=HOLIDAYS_2026, makeup_workdays=MAKEUP_2026)
    disagreements = [d for d in _days(date(2026, 1, 1), date(2026, 12, 31)) if official.is_workday(d) != transcribed.is_workday(d)]
    assert disagreements == []
    assert [d for d in MAKEUP_2026 if official.is_workday(d)] == MAKEUP_2026  # weekend days that are working days


def test_the_calendar_says_what_the_package_says_on_every_day_it_covers(official):
    import chinese_calendar

    first, last = official.years
    days = _days(date(first, 1, 1), date(last, 12, 31))
    assert [d for d in days if official.is_workday(d) != chinese_calendar.is_workday(d)] == []


def test_twenty_working_days_from_28_september_2026_end_on_30_october(official):
    # By hand: 9/29 (1), 9/30 (2), 10/1–10/7 off, 10/8 (3), 10/9 (4), Sat 10/10 make-up (5),
    # 10/12–10/16 (6–10), 10/19–10/23 (11–15), 10/26–10/30 (16–20).
    assert official.add_working_days(date(2026, 9, 28), 20) == date(2026, 10, 30)
    # Monday-to-Friday arithmetic would say 26 October: the holiday week counts for nothing.
    weekdays = [d for d in _days(date(2026, 9, 29), date(2026, 10, 31)) if d.weekday() < 5]
    assert weekdays[19] == date(2026, 10, 26)


def test_counting_starts_the_day_after_and_make_up_days_count(official):
    assert official.working_days_between(date(2026, 9, 28), date(2026, 9, 28)) == 0
    assert official.working_days_between(date(2026, 9, 28), date(2026, 10, 7)) == 2  # 9/29, 9/30
    assert official.working_days_between(date(2026, 10, 9), date(2026, 10, 11)) == 1  # Sat 10/10 only
    assert official.add_working_days(date(2026, 9, 18), 1) == date(2026, 9, 20)  # Friday → the make-up Sunday
    assert official.add_working_days(date(2026, 9, 30), 7) == date(2026, 10, 15)
    assert official.next_workday(date(2026, 10, 1)) == date(2026, 10, 8)
    assert official.next_workday(date(2026, 10, 10)) == date(2026, 10, 10)


def test_a_year_the_package_does_not_cover_is_a_clear_error(official):
    first, last = official.years
    for day in (date(last + 1, 3, 2), date(first - 1, 3, 2)):
        with pytest.raises(CalendarNotCovered, match=rf"{day.year}.*upgrade the chinese-calendar package"):
            official.is_workday(day)
    with pytest.raises(CalendarNotCovered, match="upgrade"):
        official.working_days_between(date(last, 12, 1), date(last + 1, 1, 15))
    # Counting forward past the last covered year fails too, rather than guessing weekdays.
    with pytest.raises(CalendarNotCovered, match=f"run past {last}"):
        official.add_working_days(date(last, 12, 20), 20)
