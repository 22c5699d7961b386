"""What the disclosure office measures, as pure rules: time limits, timeliness, staleness,
catalog completeness, coverage and the work plan's milestones.

Conventions (shown on the dashboard as 口径, so a figure can always be explained):
- Dates are Beijing dates (UTC+8, no daylight saving); `published_at` is converted.
- A period starts the day after the information is formed (民法典 第二百零一条); "N个工作日内"
  ends on the N-th official working day after formed_at. A calendar-day limit ("批准后20日内")
  whose last day is a rest day ends on the next working day (第二百零三条).
- A catalog item without a time limit gets the statutory default, 20 working days
  (政府信息公开条例 第二十六条), labelled as such. A limit text that cannot be read as one rule
  (several limits for different content, a consultation period, "提前一周…") is reported
  as unparseable, never guessed.
- 实时/及时 has no number: it is assessed as "by the next working day" (REALTIME_WORKING_DAYS).
- 长期 (standing) and periodic (每月/每季度/每年) items have no per-publication deadline: their
  publications are exempt from timeliness and judged by staleness instead.
- Timeliness is counted per filing (a publication filed under two items counts for each);
  a late filing is at least one day late.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property, lru_cache
from typing import Literal

from contracts.catalog import Catalog, Domain, Level1Item, Level2Item, Region

from .calendar import CalendarNotCovered, WorkCalendar

BEIJING = timezone(timedelta(hours=8))
STATUTORY_WORKING_DAYS = 20
REALTIME_WORKING_DAYS = 1

# --- time limits (公开时限) ------------------------------------------------------------------

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


# --- timeliness ------------------------------------------------------------------------

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


# --- catalog completeness and coverage ----------------------------------------------------

UNIT_LEVEL_WORDS = {"county": "县级", "township": "乡级", "city": "市级", "province": "省级"}


def applies_to(item: Level2Item, level: str) -> bool:
    """An item applies to a unit when its 公开层级 is blank or names the unit's level."""
    return not item.levels or UNIT_LEVEL_WORDS.get(level, "") in item.levels


def _items(catalog: Catalog, domain_code: str | None) -> Iterable[tuple[Domain, Level1Item, Level2Item]]:
    for domain in catalog.domains:
        if domain_code and domain.code != domain_code:
            continue
        for level1 in domain.level1:
            for item in level1.items:
                yield domain, level1, item


@lru_cache(maxsize=1024)
def _skeleton(catalog: Catalog, level: str, domain_code: str | None) -> tuple[tuple[str, str, str, str, Level2Item, bool, TimeRule], ...]:
    """A catalog's items as the measures need them, once per edition, level and domain."""
    return tuple(
        (domain.code, domain.name, level1.id, level1.name, item, applies_to(item, level), parse_time_limit(item.time_limit))
        for domain, level1, item in _items(catalog, domain_code)
    )


@dataclass(frozen=True)
class Completeness:
    """A unit's catalog in force against the standard one (items that apply to its level)."""

    standard_items: int
    present: int
    dropped: tuple[str, ...]
    added: tuple[str, ...]
    standard_domains: int
    domains_present: int
    domains_dropped: tuple[str, ...]
    domains_added: tuple[str, ...]

    @property
    def share(self) -> float | None:
        return self.present / self.standard_items if self.standard_items else None


@lru_cache(maxsize=2048)
def completeness(unit_catalog: Catalog, standard: Catalog, level: str, domain_code: str | None = None) -> Completeness:
    wanted = {item.id for _, _, item in _items(standard, domain_code) if applies_to(item, level)}
    held = {item.id for _, _, item in _items(unit_catalog, domain_code)}
    standard_domains = {d.code for d in standard.domains if d.level1 and (not domain_code or d.code == domain_code)}
    unit_domains = {d.code for d in unit_catalog.domains if d.level1 and (not domain_code or d.code == domain_code)}
    return Completeness(
        standard_items=len(wanted),
        present=len(wanted & held),
        dropped=tuple(sorted(wanted - held)),
        added=tuple(sorted(held - {item.id for _, _, item in _items(standard, domain_code)})),
        standard_domains=len(standard_domains),
        domains_present=len(standard_domains & unit_domains),
        domains_dropped=tuple(sorted(standard_domains - unit_domains)),
        domains_added=tuple(sorted(unit_domains - standard_domains)),
    )


@dataclass(frozen=True)
class ItemState:
    """A unit's content for one catalog item as of a date (from the store's roll-up)."""

    live: int | None  # live filings published on or before the date; None: at least one, not counted
    first_on: date
    latest_on: date


@dataclass(slots=True)
class ItemMeasure:
    domain_code: str
    domain_name: str
    level1_id: str
    level1_name: str
    item: Level2Item
    applicable: bool
    rule: TimeRule
    live: int | None = 0  # None: covered, not counted
    first_on: date | None = None
    latest_on: date | None = None
    age_days: int | None = None
    stale: bool = False
    timeliness: Timeliness | None = None
    late: int = 0
    max_days_late: int = 0

    @property
    def covered(self) -> bool:
        return self.live is None or self.live > 0


@dataclass
class LateItem:
    level2_id: str
    late: int
    max_days_late: int


# --- milestones of the work plan ------------------------------------------------------------

MilestoneMeasure = Literal["own_catalog", "content_complete"]
MilestoneState = Literal["met", "met_late", "missed", "pending"]
STATE_NAMES = {"met": "按期完成", "met_late": "逾期完成", "missed": "未完成（已逾期）", "pending": "未到期"}


@dataclass(frozen=True)
class Milestone:
    id: str
    name: str
    due: str  # MM-DD of the plan's year
    measure: MilestoneMeasure
    domains: Literal["all", "added_2022"] = "all"

    def due_in(self, year: int) -> date:
        month, day = (int(x) for x in self.due.split("-"))
        return date(year, month, day)


@dataclass(frozen=True)
class MilestoneStatus:
    milestone: Milestone
    due: date
    state: MilestoneState
    done_on: date | None
    detail: str

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


def milestone_status(milestone: Milestone, year: int, as_of: date, done_on: date | None, detail: str = "") -> MilestoneStatus:
    """Where a unit stands on one milestone on `as_of`; `done_on` is when it was achieved (≤ as_of)."""
    due = milestone.due_in(year)
    if done_on is not None and done_on > as_of:
        done_on = None
    if done_on is not None:
        state: MilestoneState = "met" if done_on <= due else "met_late"
    else:
        state = "pending" if as_of <= due else "missed"
    return MilestoneStatus(milestone, due, state, done_on, detail)


# --- one unit, all measures -------------------------------------------------------------------

_ADDED_2022_CODES = frozenset({"D27", "D28", "D29", "D30", "D31", "D32"})


@dataclass(frozen=True)
class Progress:
    """How far a group of applicable items (all, or the 2022 domains) is filled in."""

    wanted: int
    covered: int
    last_first_on: date | None  # when the last of them got its first publication


@dataclass
class UnitMeasures:
    """One unit's measures. The counts come ready (from the store's SQL, or count_unit); the
    item lists (drill-down, reports) are built only when asked for, so a ranking stays cheap."""

    region: Region
    catalog_key: str
    own_catalog: bool
    completeness: Completeness
    timeliness: Timeliness
    applicable_count: int
    covered: int
    stale_count: int
    late_count: int  # items with late filings in the window (also ones a later edition dropped)
    by_domain: dict[str, Timeliness] = field(default_factory=dict)
    milestones: list[MilestoneStatus] = field(default_factory=list)
    build_items: Callable[[], list[ItemMeasure]] = field(default=lambda: [], repr=False)

    @property
    def coverage(self) -> float | None:
        return self.covered / self.applicable_count if self.applicable_count else None

    @property
    def missing_count(self) -> int:
        return self.applicable_count - self.covered

    @cached_property
    def items(self) -> list[ItemMeasure]:
        return self.build_items()

    @cached_property
    def applicable(self) -> list[ItemMeasure]:
        return [i for i in self.items if i.applicable]

    @cached_property
    def missing(self) -> list[ItemMeasure]:
        return [i for i in self.applicable if not i.covered]

    @cached_property
    def stale(self) -> list[ItemMeasure]:
        return [i for i in self.applicable if i.stale]

    @cached_property
    def late_items(self) -> list[ItemMeasure]:
        return [i for i in self.items if i.late]

    @cached_property
    def unparsed_limits(self) -> list[ItemMeasure]:
        return [i for i in self.applicable if i.rule.kind == "unparsed"]


@dataclass
class DomainMeasure:
    code: str
    name: str
    applicable: int = 0
    covered: int = 0
    stale: int = 0
    late_items: int = 0
    timeliness: Timeliness = field(default_factory=Timeliness)

    @property
    def coverage(self) -> float | None:
        return self.covered / self.applicable if self.applicable else None


def domain_measures(unit: UnitMeasures) -> list[DomainMeasure]:
    """A unit's measures per domain of its catalog, in catalog order."""
    rows: dict[str, DomainMeasure] = {}
    for item in unit.items:
        row = rows.setdefault(item.domain_code, DomainMeasure(item.domain_code, item.domain_name))
        if item.applicable:
            row.applicable += 1
            row.covered += item.covered
            row.stale += item.stale
        row.late_items += bool(item.late)
    for code, counts in unit.by_domain.items():
        if code in rows:
            rows[code].timeliness = counts
    return list(rows.values())


@dataclass(frozen=True)
class CatalogProfile:
    """What counting a unit's measures needs from its catalog: per item, whether it applies to
    the unit's level, its update cycle and whether it is one of the 2022 domains. Units whose
    catalogs give the same profile are counted together (by the store, in SQL)."""

    items: tuple[tuple[str, bool, int, bool], ...]  # (level-2 id, applies, cycle days, added in 2022)

    @cached_property
    def applicable(self) -> int:
        return sum(1 for _, applies, _, _ in self.items if applies)

    @cached_property
    def applicable_new(self) -> int:
        return sum(1 for _, applies, _, new in self.items if applies and new)


@lru_cache(maxsize=1024)
def catalog_profile(catalog: Catalog, level: str, domain_code: str | None = None) -> CatalogProfile:
    return _profile(
        tuple((item.id, applies, rule.cycle_days, code in _ADDED_2022_CODES) for code, _, _, _, item, applies, rule in _skeleton(catalog, level, domain_code))
    )


@lru_cache(maxsize=1024)
def _profile(items: tuple) -> CatalogProfile:
    # Equal profiles are one object, so the store groups units by identity.
    return CatalogProfile(items)


@dataclass(frozen=True)
class UnitCounts:
    """A unit's counts on a date: applicable items covered and stale, items with late filings
    in the window, and when the last item of each milestone group got its first publication."""

    covered: int = 0
    stale: int = 0
    late_items: int = 0
    covered_new: int = 0
    last_first_on: date | None = None
    last_first_on_new: date | None = None


def count_unit(profile: CatalogProfile, states: Mapping[str, ItemState], late: Mapping[str, LateItem], as_of: date) -> UnitCounts:
    """The counts, item by item (the reference the store's SQL counting is tested against)."""
    covered = stale = covered_new = 0
    last: date | None = None
    last_new: date | None = None
    for item_id, applies, cycle_days, new in profile.items:
        state = states.get(item_id)
        if not applies or state is None or state.live == 0:
            continue
        covered += 1
        stale += (as_of - state.latest_on).days > cycle_days
        last = state.first_on if last is None or state.first_on > last else last
        if new:
            covered_new += 1
            last_new = state.first_on if last_new is None or state.first_on > last_new else last_new
    return UnitCounts(covered, stale, len(late), covered_new, last, last_new)


def measure_unit(
    region: Region,
    catalog: Catalog,
    standard: Catalog,
    *,
    as_of: date,
    states: Mapping[str, ItemState],
    timeliness: Mapping[str, Timeliness],
    late: Mapping[str, LateItem],
    own_catalog_since: date | None,
    milestones: Sequence[Milestone] = (),
    domain_code: str | None = None,
    item_timeliness: Mapping[str, Timeliness] | None = None,
) -> UnitMeasures:
    """Every measure of one unit on `as_of`, from its items' states; `timeliness` is per
    domain within the window, `late` the items with late filings in it."""
    counts = count_unit(catalog_profile(catalog, region.level, domain_code), states, late, as_of)
    return unit_measures(
        region,
        catalog,
        standard,
        as_of=as_of,
        counts=counts,
        timeliness=timeliness,
        own_catalog_since=own_catalog_since,
        milestones=milestones,
        domain_code=domain_code,
        build_items=lambda: measure_items(catalog, region.level, as_of, states, late, domain_code=domain_code, item_timeliness=item_timeliness),
    )


def unit_measures(
    region: Region,
    catalog: Catalog,
    standard: Catalog,
    *,
    as_of: date,
    counts: UnitCounts,
    timeliness: Mapping[str, Timeliness],
    own_catalog_since: date | None,
    milestones: Sequence[Milestone] = (),
    domain_code: str | None = None,
    build_items: Callable[[], list[ItemMeasure]] = lambda: [],
) -> UnitMeasures:
    """A unit's measures from its counts; the item lists come from `build_items` when asked for.

    With a domain filter the milestones are left out: they are about the whole catalog."""
    profile = catalog_profile(catalog, region.level, domain_code)
    total = Timeliness()
    for code, by_status in timeliness.items():
        if not domain_code or code in (domain_code, ""):  # "": the store's all-domain total
            total.merge(by_status)
    progress = {
        "all": Progress(profile.applicable, counts.covered, counts.last_first_on),
        "added_2022": Progress(profile.applicable_new, counts.covered_new, counts.last_first_on_new),
    }
    return UnitMeasures(
        region=region,
        catalog_key=catalog.key,
        own_catalog=catalog.scope == region.code,
        completeness=completeness(catalog, standard, region.level, domain_code),
        timeliness=total,
        applicable_count=profile.applicable,
        covered=counts.covered,
        stale_count=counts.stale,
        late_count=counts.late_items,
        by_domain=dict(timeliness),
        milestones=[] if domain_code else [_milestone(m, as_of, progress[m.domains], own_catalog_since) for m in milestones],
        build_items=build_items,
    )


def measure_items(
    catalog: Catalog,
    level: str,
    as_of: date,
    states: Mapping[str, ItemState],
    late: Mapping[str, LateItem],
    *,
    domain_code: str | None = None,
    item_timeliness: Mapping[str, Timeliness] | None = None,
) -> list[ItemMeasure]:
    """Item by item, in catalog order; then items with late filings that the catalog in force
    no longer has (a later edition dropped them: they were late all the same)."""
    built = []
    for code, domain_name, level1_id, level1_name, item, applies, rule in _skeleton(catalog, level, domain_code):
        measure = ItemMeasure(code, domain_name, level1_id, level1_name, item, applies, rule)
        state = states.get(item.id)
        if state is not None and state.live != 0:
            measure.live, measure.first_on, measure.latest_on = state.live, state.first_on, state.latest_on
            measure.age_days = (as_of - state.latest_on).days
            measure.stale = measure.age_days > rule.cycle_days
        if item.id in late:
            measure.late, measure.max_days_late = late[item.id].late, late[item.id].max_days_late
        if item_timeliness is not None:
            measure.timeliness = item_timeliness.get(item.id, Timeliness())
        built.append(measure)
    in_force = {m.item.id for m in built}
    for item_id, gone in sorted(late.items()):
        if item_id not in in_force:
            archived = Level2Item(id=item_id, name=f"{item_id}（已不在现行目录）")
            built.append(
                ItemMeasure(item_id[:3], "归档事项", item_id[:6], "", archived, False, parse_time_limit(None), late=gone.late, max_days_late=gone.max_days_late)
            )
    return built


def _milestone(milestone: Milestone, as_of: date, progress: Progress, own_catalog_since: date | None) -> MilestoneStatus:
    if milestone.measure == "own_catalog":
        detail = "" if own_catalog_since else "尚未发布本级目录（沿用上级或标准目录）"
        return milestone_status(milestone, as_of.year, as_of, own_catalog_since, detail)
    if progress.wanted == 0:
        return milestone_status(milestone, as_of.year, as_of, None, "目录中无适用事项")
    if progress.covered < progress.wanted:
        return milestone_status(milestone, as_of.year, as_of, None, f"{progress.wanted - progress.covered}/{progress.wanted}项无内容")
    return milestone_status(milestone, as_of.year, as_of, progress.last_first_on, f"{progress.wanted}项均有内容")


# --- ranking ----------------------------------------------------------------------------------

SORTS = {
    "coverage": "覆盖率",
    "on_time": "按时率",
    "completeness": "目录完整度",
    "stale": "长期未更新",
    "late": "逾期事项",
}


def rank(units: Sequence[UnitMeasures], by: str = "coverage") -> list[UnitMeasures]:
    """Best first; ties broken by the other measures, then by code (stable, explainable)."""

    def key(u: UnitMeasures):
        coverage = u.coverage if u.coverage is not None else -1
        on_time = u.timeliness.share if u.timeliness.share is not None else -1
        complete = u.completeness.share if u.completeness.share is not None else -1
        primary = {
            "coverage": -coverage,
            "on_time": -on_time,
            "completeness": -complete,
            "stale": u.stale_count,
            "late": u.late_count,
        }[by]
        return (primary, -coverage, -on_time, u.stale_count, u.region.code)

    return sorted(units, key=key)


def ancestor_scopes(region_code: str) -> list[str]:
    """Scopes a region's catalog may come from, by the shape of statistical codes (township
    9 digits → county 6 → city 4; 4301GX → 4301), for the consumer, which has no regions."""
    chain = [region_code]
    if region_code.isdigit():
        chain += [region_code[:n] for n in (6, 4, 2) if len(region_code) > n]
    elif len(region_code) > 4:
        chain += [region_code[:4], region_code[:2]]
    return [*chain, "standard"]
