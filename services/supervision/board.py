"""From the store's roll-ups to the measures of every unit under a region (what the pages,
the xlsx 通报 and the printable report show): one set of queries per view, whatever the
number of publications."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache, partial
from importlib import resources

from contracts.catalog import Catalog, Region, effective_catalog, standard_catalog

from .domain import (
    CatalogProfile,
    ItemMeasure,
    Milestone,
    Tally,
    UnitCounts,
    UnitMeasures,
    beijing_date,
    catalog_profile,
    measure_items,
    rank,
    unit_measures,
)
from .store import SupervisionStore


@dataclass(frozen=True)
class Query:
    region: str
    as_of: date
    start: date
    end: date
    domain: str | None = None
    sort: str = "coverage"

    @classmethod
    def of(
        cls, region: str, as_of: date | None = None, start: date | None = None, end: date | None = None, domain: str | None = None, sort: str = "coverage"
    ) -> Query:
        as_of = as_of or today()
        return cls(region, as_of, start or date(as_of.year, 1, 1), end or as_of, domain, sort)

    def params(self, **overrides) -> dict[str, str]:
        """The query string of this view (for links that keep the filters)."""
        values = {"as_of": self.as_of.isoformat(), "from": self.start.isoformat(), "to": self.end.isoformat(), "domain": self.domain or "", "sort": self.sort}
        values.update({k: v for k, v in overrides.items()})
        return {k: v for k, v in values.items() if v}


def today() -> date:
    return beijing_date(datetime.now(timezone.utc))


@lru_cache
def load_plan(path: str | None = None) -> dict:
    text = open(path, encoding="utf-8").read() if path else resources.files("services.supervision").joinpath("milestones.json").read_text("utf-8")
    return json.loads(text)


def milestones_for(year: int, plan: dict | None = None) -> list[Milestone]:
    plan = plan or load_plan()
    entries = plan.get("years", {}).get(str(year), plan["default"])
    return [Milestone(**{k: v for k, v in entry.items() if k in Milestone.__dataclass_fields__}) for entry in entries]


@dataclass
class Rollup(Tally):
    """A county's townships taken together."""

    units: int = 0


@dataclass
class Board:
    query: Query
    region: Region
    standard: Catalog
    counties: list[UnitMeasures]
    townships: list[UnitMeasures]
    rollups: dict[str, Rollup]
    unassessed: dict[str, int]
    calendar: str
    regions: dict[str, Region]

    @property
    def units(self) -> list[UnitMeasures]:
        return [*self.counties, *self.townships]

    def county_of(self, unit: UnitMeasures) -> Region | None:
        parent = self.regions.get(unit.region.parent_code or "")
        return parent if parent and parent.level == "county" else None


def units_under(region: Region, regions: dict[str, Region]) -> tuple[list[Region], list[Region]]:
    """The county-level units and the townships a region's supervision covers (itself included
    when it is a county or a township)."""
    children: dict[str, list[Region]] = {}
    for r in regions.values():
        if r.parent_code:
            children.setdefault(r.parent_code, []).append(r)
    below, stack = [], [region]
    while stack:
        current = stack.pop()
        below.append(current)
        stack.extend(children.get(current.code, ()))
    counties = sorted((r for r in below if r.level == "county"), key=lambda r: r.code)
    townships = sorted((r for r in below if r.level == "township"), key=lambda r: r.code)
    return counties, townships


def build_board(
    store: SupervisionStore,
    regions: dict[str, Region],
    query: Query,
    *,
    plan: dict | None = None,
    item_detail_for: str | None = None,
    by_domain_for: str | None = None,
    include_below: bool = True,
) -> Board:
    """Every unit's measures under the query's region (itself, when `include_below` is False).

    The ranking's counts come from the store in a fixed number of statements (the database
    sums the roll-ups); the item lists of a unit (drill-down, reports) are read on first use,
    for all units at once. `item_detail_for`: the unit whose items also get their timeliness;
    `by_domain_for`: the unit whose timeliness is also broken down by domain."""
    region = regions[query.region]
    if include_below:
        counties, townships = units_under(region, regions)
    else:
        counties, townships = ([region], []) if region.level == "county" else ([], [region])
    units = [*counties, *townships]
    codes = [u.code for u in units]
    in_force = store.catalogs()
    standard = in_force.get("standard") or standard_catalog()
    catalogs = {u.code: effective_catalog(u.code, regions, in_force) or standard for u in units}
    counts = store.unit_counts(profile_groups(units, catalogs, query.domain), query.as_of, query.start, query.end, query.domain)
    timeliness = store.timeliness(codes, query.start, query.end, query.domain, by_domain=False)
    if by_domain_for:  # one unit's page breaks its timeliness down by domain
        timeliness[by_domain_for] = store.timeliness([by_domain_for], query.start, query.end, query.domain).get(by_domain_for, {})
    own = store.own_catalog_since(codes)
    milestones = milestones_for(query.as_of.year, plan)
    details = _Details(store, codes, query, item_detail_for)
    measured: dict[str, UnitMeasures] = {}
    for unit in units:
        measured[unit.code] = unit_measures(
            unit,
            catalogs[unit.code],
            standard,
            as_of=query.as_of,
            counts=counts.get(unit.code) or UnitCounts(),
            timeliness=timeliness.get(unit.code, {}),
            own_catalog_since=own.get(unit.code),
            milestones=milestones,
            domain_code=query.domain,
            build_items=partial(details.items, unit, catalogs[unit.code]),
        )
    return Board(
        query=query,
        region=region,
        standard=standard,
        counties=rank([measured[c.code] for c in counties], query.sort),
        townships=rank([measured[t.code] for t in townships], query.sort),
        rollups=roll_up(counties, townships, measured),
        unassessed=store.unassessed(codes),
        calendar=f"{store.calendar.source}（{store.calendar.years[0]}–{store.calendar.years[1]}年）",
        regions=regions,
    )


def profile_groups(units: list[Region], catalogs: dict[str, Catalog], domain: str | None) -> list[tuple[CatalogProfile, list[str]]]:
    """The units grouped by the catalog profile they are measured against (one count query each)."""
    groups: dict[int, tuple[CatalogProfile, list[str]]] = {}
    for unit in units:
        profile = catalog_profile(catalogs[unit.code], unit.level, domain)
        groups.setdefault(id(profile), (profile, []))[1].append(unit.code)
    return list(groups.values())


def roll_up(counties: list[Region], townships: list[Region], measured: dict[str, UnitMeasures]) -> dict[str, Rollup]:
    """Each county's townships summed: how many, covered and applicable items, stale and late ones."""
    rollups: dict[str, Rollup] = {c.code: Rollup() for c in counties}
    for town in townships:
        rollup = rollups.get(town.parent_code or "")
        if rollup is None:
            continue
        m = measured[town.code]
        rollup.units += 1
        rollup.covered += m.covered
        rollup.applicable += m.applicable_count
        rollup.stale += m.stale_count
        rollup.late_items += m.late_count
        rollup.timeliness.merge(m.timeliness)
    return rollups


class _Details:
    """Item states and late items of all the board's units, read once when a first unit's
    item list is needed."""

    def __init__(self, store: SupervisionStore, codes: list[str], query: Query, item_detail_for: str | None):
        self.store, self.codes, self.query, self.item_detail_for = store, codes, query, item_detail_for
        self._read: tuple | None = None

    def items(self, unit: Region, catalog: Catalog) -> list[ItemMeasure]:
        if self._read is None:
            q = self.query
            states = self.store.item_states(self.codes, q.as_of, q.domain, count=self.item_detail_for is not None)
            late = self.store.late_items(self.codes, q.start, q.end, q.domain)
            detail = self.store.item_timeliness(self.item_detail_for, q.start, q.end, q.domain) if self.item_detail_for else None
            self._read = (states, late, detail)
        states, late, detail = self._read
        return measure_items(
            catalog,
            unit.level,
            self.query.as_of,
            states.get(unit.code, {}),
            late.get(unit.code, {}),
            domain_code=self.query.domain,
            item_timeliness=detail if unit.code == self.item_detail_for else None,
        )
