"""One unit's measures (coverage, staleness, lateness, milestones) from its items' states,
and the ranking of units."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache

from contracts.catalog import Catalog, Level2Item, Region

from .catalog import Completeness, completeness, skeleton
from .milestones import Milestone, MilestoneStatus, milestone_status
from .time_limits import TimeRule, parse_time_limit
from .timeliness import Timeliness


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


@dataclass(kw_only=True)
class Tally:
    """What a set of items adds up to: applicable and covered items, stale ones, items with late
    filings, and the timeliness of the filings."""

    applicable: int = 0
    covered: int = 0
    stale: int = 0
    late_items: int = 0
    timeliness: Timeliness = field(default_factory=Timeliness)

    @property
    def coverage(self) -> float | None:
        return self.covered / self.applicable if self.applicable else None


@dataclass
class DomainMeasure(Tally):
    code: str
    name: str


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
        tuple((item.id, applies, rule.cycle_days, code in _ADDED_2022_CODES) for code, _, _, _, item, applies, rule in skeleton(catalog, level, domain_code))
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
    for code, domain_name, level1_id, level1_name, item, applies, rule in skeleton(catalog, level, domain_code):
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
