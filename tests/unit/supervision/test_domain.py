"""Supervision's pure rules: time-limit texts, timeliness, windows, completeness, coverage,
staleness and milestones, with fixtures computed by hand."""

from datetime import date, datetime, timezone

import pytest

from contracts.catalog import Region, derive_catalog, localise, standard_catalog
from services.supervision.calendar import official_calendar
from services.supervision.domain import (
    EXEMPT,
    LATE,
    NO_CALENDAR,
    ON_TIME,
    UNPARSED,
    ItemState,
    LateItem,
    Milestone,
    Timeliness,
    assess,
    beijing_date,
    completeness,
    measure_unit,
    milestone_status,
    parse_time_limit,
    rank,
    split_window,
)

CAL = official_calendar()
TOWNSHIP = Region(code="430102001", name="文艺路街道", level="township", parent_code="430102")
COUNTY = Region(code="430102", name="芙蓉区", level="county", parent_code="4301")


@pytest.mark.parametrize(
    ("text", "kind", "days"),
    [
        ("信息形成或者变更之日起20个工作日内", "working_days", 20),
        ("信息形成(变更) 20 个工作日内", "working_days", 20),
        ("信息形成（变更）二十个工作日内", "working_days", 20),
        ("制定或获取信息之日起10个工作日内，公示7个工作日", "working_days", 10),  # 公示7个工作日 is how long it stays up
        ("信息形成或者变更之日起20个工作日内。法律、法规对政府信息公开的期限另有规定的,从其规定。", "working_days", 20),
        ("长期/公开事项信息形成或变更之日起20个工作日内公开", "working_days", 20),
        ("本级人民代表大会或其常务委员会批准后20日内", "calendar_days", 20),
        ("本级财政部门批复后二十日内", "calendar_days", 20),
        ("实时公开", "realtime", 1),
        ("及时公开，公告期限为5个工作日", "realtime", 1),
        ("按进展情况及时公开", "realtime", 1),
        ("长期公开", "standing", None),
        ("每季度公开", "periodic", 92),
        ("每月10日前公开", "periodic", 31),
    ],
)
def test_time_limit_texts_become_rules(text, kind, days):
    rule = parse_time_limit(text)
    assert (rule.kind, rule.days) == (kind, days)


@pytest.mark.parametrize(
    "text",
    [
        "信息形成20个工作日内公开；其中行政许可、行政处罚事项应自作出行政决定之日起7个工作日内公示",
        "1.除处罚决定外其他内容:长期公开(动态调整); 2.处罚决定:20个工作日内。",
        "向社会公开征求意见期限一般不少于30日;因情况紧急等原因需要缩短期限的,公开征求意见时应当予以说明",
        "提前一周发通知邀请",
        "3个月内",
    ],
)
def test_limits_that_are_not_one_rule_are_reported_not_guessed(text):
    rule = parse_time_limit(text)
    assert rule.kind == "unparsed" and rule.reason and rule.label == "无法解析"


def test_no_limit_in_the_catalog_means_the_statutory_twenty_working_days():
    rule = parse_time_limit(None)
    assert (rule.kind, rule.days, rule.statutory) == ("working_days", 20, True)
    assert "法定默认" in rule.label


def test_every_standard_catalog_limit_is_parsed_or_reported():
    texts = {item.time_limit for d in standard_catalog().domains for l1 in d.level1 for item in l1.items}
    rules = [parse_time_limit(t) for t in texts]
    assert all(r.kind != "unparsed" or r.reason for r in rules)
    assert sum(r.kind == "working_days" for r in rules) > sum(r.kind == "unparsed" for r in rules)


TWENTY = parse_time_limit("信息形成之日起20个工作日内")


@pytest.mark.parametrize(
    ("published", "status", "deadline", "days_late"),
    [
        # Formed Monday 2026-09-28: the 20th working day is Friday 10-30 (see the calendar test).
        (date(2026, 10, 28), ON_TIME, date(2026, 10, 30), None),  # weekday arithmetic would call this late
        (date(2026, 10, 30), ON_TIME, date(2026, 10, 30), None),
        (date(2026, 10, 31), LATE, date(2026, 10, 30), 1),  # a Saturday after the deadline: at least one day late
        (date(2026, 11, 2), LATE, date(2026, 10, 30), 1),
        (date(2026, 11, 4), LATE, date(2026, 10, 30), 3),
    ],
)
def test_national_day_twenty_working_days(published, status, deadline, days_late):
    verdict = assess(TWENTY, date(2026, 9, 28), published, CAL)
    assert (verdict.status, verdict.deadline, verdict.days_late) == (status, deadline, days_late)


def test_working_days_elapsed_are_reported():
    # 9/28 → 11/4: 20 working days to 10/30, then 11/2, 11/3, 11/4.
    assert assess(TWENTY, date(2026, 9, 28), date(2026, 11, 4), CAL).working_days == 23


def test_realtime_means_by_the_next_working_day_and_a_make_up_sunday_is_one():
    rule = parse_time_limit("实时公开")
    assert assess(rule, date(2026, 9, 18), date(2026, 9, 20), CAL).status == ON_TIME  # Sunday 9/20 is a working day
    late = assess(rule, date(2026, 9, 18), date(2026, 9, 21), CAL)
    assert (late.status, late.deadline, late.days_late) == (LATE, date(2026, 9, 20), 1)


def test_calendar_days_ending_in_a_holiday_run_to_the_next_working_day():
    rule = parse_time_limit("批准后20日内")
    # 9/11 + 20 days = 10/1, National Day: the period ends on 10/8, the first working day after.
    on_time = assess(rule, date(2026, 9, 11), date(2026, 10, 8), CAL)
    assert (on_time.status, on_time.deadline) == (ON_TIME, date(2026, 10, 8))
    late = assess(rule, date(2026, 9, 11), date(2026, 10, 12), CAL)
    assert (late.status, late.days_late) == (LATE, 4)


def test_standing_and_unparsed_limits_are_not_judged():
    assert assess(parse_time_limit("长期公开"), date(2026, 1, 5), date(2026, 9, 1), CAL).status == EXEMPT
    unparsed = assess(parse_time_limit("提前一周发通知邀请"), date(2026, 1, 5), date(2026, 9, 1), CAL)
    assert unparsed.status == UNPARSED and unparsed.note


def test_an_uncovered_year_is_not_guessed():
    last = CAL.years[1]
    verdict = assess(TWENTY, date(last + 1, 1, 10), date(last + 1, 3, 1), CAL)
    assert verdict.status == NO_CALENDAR and str(last + 1) in verdict.note
    # Published before the new year: earlier than any deadline the new schedule could give.
    early = assess(TWENTY, date(last, 12, 20), date(last, 12, 24), CAL)
    assert early.status == ON_TIME and early.deadline is None
    assert assess(TWENTY, date(last, 12, 20), date(last + 1, 2, 1), CAL).status == NO_CALENDAR


def test_published_at_is_a_beijing_date():
    assert beijing_date(datetime(2026, 10, 30, 15, 59, tzinfo=timezone.utc)) == date(2026, 10, 30)
    assert beijing_date(datetime(2026, 10, 30, 16, 0, tzinfo=timezone.utc)) == date(2026, 10, 31)


@pytest.mark.parametrize(
    ("start", "end", "months", "edges"),
    [
        (date(2026, 1, 1), date(2026, 3, 31), (202601, 202603), []),
        (date(2026, 1, 15), date(2026, 4, 10), (202602, 202603), [(date(2026, 1, 15), date(2026, 1, 31)), (date(2026, 4, 1), date(2026, 4, 10))]),
        (date(2026, 2, 3), date(2026, 2, 20), None, [(date(2026, 2, 3), date(2026, 2, 20))]),
        (date(2026, 2, 1), date(2026, 3, 15), (202602, 202602), [(date(2026, 3, 1), date(2026, 3, 15))]),
        (date(2025, 12, 31), date(2026, 1, 31), (202601, 202601), [(date(2025, 12, 31), date(2025, 12, 31))]),
    ],
)
def test_a_window_is_whole_months_plus_edges(start, end, months, edges):
    assert split_window(start, end) == (months, edges)


def _levels(catalog, wanted):
    return {i.id for d in catalog.domains for l1 in d.level1 for i in l1.items if not i.levels or wanted in i.levels}


def test_completeness_counts_dropped_and_added_items_that_apply_to_the_level():
    standard = standard_catalog()
    county = derive_catalog(standard, scope="430102", edition="2023")
    dropped = "D14-02-02"
    county = localise(county, drop={dropped})
    township = completeness(county, standard, "township")
    assert township.standard_items == len(_levels(standard, "乡级"))
    assert township.dropped == (dropped,) and township.present == township.standard_items - 1
    # A county-only item missing from a township's catalog is not a gap.
    county_only = next(i for d in standard.domains for l1 in d.level1 for i in l1.items if i.levels == ("县级",))
    unit = localise(derive_catalog(standard, scope="430102001", edition="2023"), drop={county_only.id})
    assert completeness(unit, standard, "township").dropped == ()
    assert completeness(unit, standard, "county").dropped == (county_only.id,)


def _state(first, latest, live=1):
    return ItemState(live, first, latest)


def test_coverage_staleness_and_late_items_of_a_unit():
    standard = standard_catalog()
    as_of = date(2026, 8, 31)
    # D14-02-02 (办事指南, 20 working days → a 365-day cycle) published 2025-08-30: 366 days old.
    states = {"D14-02-02": _state(date(2025, 8, 30), date(2025, 8, 30)), "D14-02-01": _state(date(2026, 3, 1), date(2026, 8, 1), 3)}
    unit = measure_unit(
        TOWNSHIP,
        standard,
        standard,
        as_of=as_of,
        states=states,
        timeliness={"D14": Timeliness(on_time=3, late=1)},
        late={"D14-02-01": LateItem("D14-02-01", 1, 4)},
        own_catalog_since=None,
        domain_code="D14",
    )
    applicable = [i for l1 in standard.domain("D14").level1 for i in l1.items if not i.levels or "乡级" in i.levels]
    assert len(unit.applicable) == len(applicable)
    assert unit.covered == 2 and unit.coverage == pytest.approx(2 / len(applicable))
    assert [i.item.id for i in unit.stale] == ["D14-02-02"] and unit.stale[0].age_days == 366
    assert [(i.item.id, i.late, i.max_days_late) for i in unit.late_items] == [("D14-02-01", 1, 4)]
    assert unit.timeliness.share == pytest.approx(0.75)
    assert not unit.own_catalog


def test_milestone_states():
    catalog = Milestone("catalog", "目录编制并公开", "07-31", "own_catalog")
    assert milestone_status(catalog, 2022, date(2022, 6, 1), None).state == "pending"
    assert milestone_status(catalog, 2022, date(2022, 8, 31), date(2022, 7, 20)).state == "met"
    assert milestone_status(catalog, 2022, date(2022, 8, 31), date(2022, 8, 2)).state == "met_late"
    assert milestone_status(catalog, 2022, date(2022, 8, 31), None).state == "missed"
    # Achieved after the date the report looks at: not yet achieved then.
    assert milestone_status(catalog, 2022, date(2022, 7, 1), date(2022, 7, 20)).state == "pending"


def test_content_milestone_follows_the_first_publication_of_the_last_item():
    standard = standard_catalog()
    domain = "D32"  # 新闻出版版权: one level-2 item
    items = [i.id for l1 in standard.domain(domain).level1 for i in l1.items]
    plan = [Milestone("new-domains", "新增6个领域内容到位", "09-30", "content_complete", "added_2022")]
    news_only = localise(derive_catalog(standard, scope=COUNTY.code, edition="2022"), drop={d.code for d in standard.domains if d.code != domain})
    states = {items[0]: _state(date(2022, 9, 12), date(2022, 9, 12))}
    unit = measure_unit(COUNTY, news_only, standard, as_of=date(2022, 10, 10), states=states, timeliness={}, late={}, own_catalog_since=None, milestones=plan)
    assert (unit.milestones[0].state, unit.milestones[0].done_on) == ("met", date(2022, 9, 12))
    missing = measure_unit(COUNTY, news_only, standard, as_of=date(2022, 10, 10), states={}, timeliness={}, late={}, own_catalog_since=None, milestones=plan)
    assert missing.milestones[0].state == "missed" and "1/1" in missing.milestones[0].detail


def test_ranking_is_by_the_chosen_measure_then_the_others():
    standard = standard_catalog()

    def unit(code, covered_items, on_time, late):
        region = Region(code=code, name=code, level="township", parent_code="430102")
        states = {i: _state(date(2026, 1, 5), date(2026, 6, 1)) for i in covered_items}
        return measure_unit(
            region,
            standard,
            standard,
            as_of=date(2026, 8, 31),
            states=states,
            timeliness={"D14": Timeliness(on_time=on_time, late=late)},
            late={},
            own_catalog_since=None,
        )

    a = unit("430102001", ["D14-02-01", "D14-02-02"], 1, 9)
    b = unit("430102002", ["D14-02-01"], 9, 1)
    c = unit("430102003", ["D14-02-01"], 5, 5)
    assert [u.region.code for u in rank([c, b, a], "coverage")] == ["430102001", "430102002", "430102003"]
    assert [u.region.code for u in rank([c, b, a], "on_time")] == ["430102002", "430102003", "430102001"]
