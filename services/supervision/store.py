"""The supervision store: what the disclosure office's dashboard and reports read.

Why a consumer of its own (group tongyuan-supervision) rather than a cursor over the column
store: consumers own their stores (a service never reads another's tables, whose shape is
that service's business), the column store has no change cursor to follow (it deletes and
rewrites placements), and the measures need facts the column keeps only inside its JSON
documents (formed_at, the time limit). So supervision sees the same canonical topic, assesses
each publication once when it arrives (the working-day arithmetic is the costly part), and
keeps three tables up to date in the same transaction:

- `supervision_filings`: one row per placement of a live publication, with its assessment;
- `supervision_items`: per unit × catalog item, the roll-up the dashboard reads (live count,
  first and newest publication date, counts by timeliness status, worst lateness);
- `supervision_months`: per unit × domain × month, counts by timeliness status, so a report
  window costs whole months from the roll-up plus at most two partial months of filings.

A batch adds its new filings to the unit × item and month rows it touches, recomputes from
their filings only the items that lost one (a revision moved it, a withdrawal removed it: min
and max cannot be subtracted) and subtracts those from the month rows. A page view never
scans the publications: a city's ranking is one aggregate over the unit × item roll-up joined
to the units' catalogs (unit_counts), the month roll-up, and index ranges for late filings and
the partial months of the window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import (
    Engine,
    String,
    and_,
    case,
    func,
    insert,
    literal_column,
    select,
    type_coerce,
)

from contracts.catalog import Catalog
from contracts.events import CatalogChangedEvent, PublicationData, PublishedEvent, WithdrawnEvent
from services.common.catalog_copy import CatalogCopy, keep_newest
from services.common.db import writing
from services.common.projection import InThread, LedgeredStore, Projection, held_versions, publications_to_apply, record_versions
from services.common.schema import ensure as ensure_schema

from . import ranking, rollups
from .calendar import WorkCalendar, official_calendar
from .domain import (
    LATE,
    NO_CALENDAR,
    STATUSES,
    CatalogProfile,
    ItemState,
    LateItem,
    Timeliness,
    UnitCounts,
    ancestor_scopes,
    assess,
    beijing_date,
    parse_time_limit,
    split_window,
)
from .ranking import as_date as _as_date
from .tables import catalogs, editions, filings, items, months, publications
from .tables import heartbeats as heartbeats  # the worker's heartbeats, which app.py writes

# Up to this many units the partial months of a window are read by the (unit, item, date) index;
# for more (a county with its townships, a city) by the date range, dropping other units' rows.
FEW_UNITS = 5


@dataclass(frozen=True)
class LateFiling:
    publication_id: str
    unit: str
    domain: str
    level1: str
    level2: str
    title: str
    formed_on: date
    published_on: date
    deadline: date | None
    working_days: int | None
    days_late: int
    time_limit: str | None


class SupervisionStore(LedgeredStore):
    ledger = publications

    def __init__(self, engine: Engine, *, calendar: WorkCalendar | None = None, catalog_ttl: float = 2.0):
        self.engine = engine
        self._calendar = calendar
        self._catalog_copy = CatalogCopy(engine, catalogs, ttl=catalog_ttl)

    @property
    def calendar(self) -> WorkCalendar:
        if self._calendar is None:
            self._calendar = official_calendar()
        return self._calendar

    def create(self) -> None:
        ensure_schema(self.engine, "supervision")

    # --- the consumer's side ------------------------------------------------------------
    def catalog_projection(self) -> Projection[CatalogChangedEvent]:
        """What the supervision consumer applies catalog editions to (apply_catalogs, in a thread)."""
        return InThread(self.apply_catalogs, self.healthy)

    def apply(self, events: Sequence[PublishedEvent | WithdrawnEvent]) -> None:
        """Apply a batch in one transaction: newer versions only; roll-ups of touched keys only."""
        # Only a publication filed under several items needs the catalogs (read before writing).
        in_force = self.catalogs() if any(isinstance(e, PublishedEvent) and len(e.data.placements) > 1 for e in events) else {}
        with writing(self.engine) as connection:
            stored = held_versions(connection, publications, list({e.data.publication_id for e in events}))
            chosen = publications_to_apply(events, stored)
            if not chosen:
                return
            rows = [row for e in chosen if isinstance(e, PublishedEvent) for row in self.filing_rows(e.data, in_force)]
            # Only a publication this store has seen has filings to replace (see EmbedStore.apply).
            rollups.replace_filings(connection, [e.data.publication_id for e in chosen if e.data.publication_id in stored], rows)
            record_versions(connection, publications, chosen, stored, datetime.now(timezone.utc))

    def filing_rows(self, data: PublicationData, in_force: dict[str, Catalog]) -> list[dict]:
        """One row per placement (a unit × item once), assessed against its item's time limit.

        The publication carries the time limit of its first placement's item (the publisher
        enriches from it); another item's limit comes from the catalog in force for its unit."""
        published_on, formed_on = beijing_date(data.published_at), data.formed_at
        first = data.placements[0].level2_id
        rows, seen = [], set()
        for placement in data.placements:
            key = (placement.region_code, placement.level2_id)
            if key in seen:
                continue
            seen.add(key)
            time_limit = (
                data.catalog.time_limit
                if placement.level2_id == first
                else self._time_limit(placement.region_code, placement.level2_id, in_force, data.catalog.time_limit)
            )
            verdict = assess(parse_time_limit(time_limit), formed_on, published_on, self.calendar)
            rows.append(
                dict(
                    publication_id=data.publication_id,
                    unit=placement.region_code,
                    domain=placement.domain_code,
                    level1=placement.level1_id,
                    level2=placement.level2_id,
                    title=data.title[:200],
                    formed_on=formed_on,
                    published_on=published_on,
                    time_limit=time_limit,
                    status=verdict.status,
                    deadline=verdict.deadline,
                    working_days=verdict.working_days,
                    days_late=verdict.days_late,
                )
            )
        return rows

    @staticmethod
    def _time_limit(region_code: str, level2_id: str, in_force: dict[str, Catalog], fallback: str | None) -> str | None:
        for scope in ancestor_scopes(region_code):
            if scope in in_force:
                item = in_force[scope].level2(level2_id)
                return item.time_limit if item is not None else fallback
        return fallback

    def reassess(self, statuses: Iterable[str] = (NO_CALENDAR,)) -> int:
        """Assess again the filings that could not be (a newer chinese-calendar covers more
        years); run at consumer start-up. Returns how many filings changed status."""
        with writing(self.engine) as connection:
            return rollups.reassess(connection, self.calendar, statuses)

    def apply_catalogs(self, events: Sequence[CatalogChangedEvent]) -> None:
        """Keep each scope's newest edition, and remember when every edition was published."""
        with writing(self.engine) as connection:
            seen = set(connection.execute(select(editions.c.scope, editions.c.version).where(editions.c.scope.in_([e.data.scope for e in events]))).tuples())
            fresh = {}
            for event in events:
                key = (event.data.scope, event.data.version)
                if key not in seen and key not in fresh:
                    fresh[key] = dict(
                        scope=key[0], version=key[1], edition=event.data.edition, published_on=beijing_date(event.time or datetime.now(timezone.utc))
                    )
            if fresh:
                connection.execute(insert(editions), list(fresh.values()))
            keep_newest(connection, catalogs, events)
        self._catalog_copy.expire()  # look again at once; unchanged scopes stay parsed

    # --- the pages' side ----------------------------------------------------------------
    def catalog_versions(self) -> dict[str, int]:
        """Scope → the version of the catalog edition this store holds."""
        return self._catalog_copy.versions()

    def catalogs(self) -> dict[str, Catalog]:
        """Scope → edition in force (see CatalogCopy: unchanged scopes stay the same objects, so
        the measures cache per catalog object)."""
        return self._catalog_copy.current()

    def own_catalog_since(self, scopes: Sequence[str]) -> dict[str, date]:
        """When each scope first had an edition of its own published."""
        with self.engine.connect() as connection:
            return dict(
                connection.execute(
                    select(editions.c.scope, func.min(editions.c.published_on)).where(editions.c.scope.in_(list(scopes))).group_by(editions.c.scope)
                )
                .tuples()
                .all()
            )

    def item_states(self, units: Sequence[str], as_of: date, domain: str | None = None, *, count: bool = False) -> dict[str, dict[str, ItemState]]:
        """Per unit and item with content on `as_of`: the first and the newest date (and, with
        `count`, how many live filings were published by then; else `live` is None).

        The roll-up answers directly when the newest filing is not after `as_of` (the usual
        case: the dashboard looks at today); otherwise one index seek finds the newest date on
        or before `as_of` (and one range counts the filings)."""
        f = filings.alias("f")
        own = (f.c.unit == items.c.unit, f.c.level2 == items.c.level2, f.c.published_on <= as_of)
        newest_by = select(f.c.published_on).where(*own).order_by(f.c.published_on.desc()).limit(1).scalar_subquery()
        after = items.c.last_on > as_of
        # Dates as the driver gives them (ISO text on SQLite): SQLAlchemy's per-value date
        # parsing costs more than the query on a city-wide page.
        columns = [
            items.c.unit,
            items.c.level2,
            type_coerce(items.c.first_on, String),
            type_coerce(case((after, newest_by), else_=items.c.last_on), String),
        ]
        if count:
            columns.append(case((after, select(func.count()).where(*own).scalar_subquery()), else_=items.c.live))
        query = select(*columns).where(items.c.unit.in_(list(units)), items.c.first_on <= as_of)
        if domain:
            query = query.where(items.c.domain == domain)
        found: dict[str, dict[str, ItemState]] = defaultdict(dict)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        for row in rows:
            found[row[0]][row[1]] = ItemState(row[4] if count else None, _as_date(row[2]), _as_date(row[3]))
        return found

    def timeliness(
        self, units: Sequence[str], start: date, end: date, domain: str | None = None, *, by_domain: bool = True
    ) -> dict[str, dict[str, Timeliness]]:
        """Per unit and domain, filings published in [start, end] by timeliness status; with
        by_domain=False per unit only (under the key "")."""
        whole, edges = split_window(start, end)
        found: dict[str, dict[str, Timeliness]] = defaultdict(lambda: defaultdict(Timeliness))
        unit_list, wanted = list(units), set(units)
        with self.engine.connect() as connection:
            if whole:
                domain_column = months.c.domain if by_domain else literal_column("''")
                query = (
                    select(months.c.unit, domain_column, *(func.sum(months.c[s]) for s in STATUSES))
                    .where(months.c.unit.in_(unit_list), months.c.month.between(*whole))
                    .group_by(months.c.unit, *([months.c.domain] if by_domain else []))
                )
                if domain:
                    query = query.where(months.c.domain == domain)
                for unit, code, *counts in connection.execute(query):
                    for status, count in zip(STATUSES, counts, strict=True):
                        found[unit][code].add(status, int(count or 0))
            for low, high in edges:
                # A region's many units: no unit filter in SQL (with a long list of units SQLite
                # walks the per-unit index over all dates instead of the date range; the other
                # units' rows are dropped here). A unit's own page: its rows by the unit index.
                domain_column = filings.c.domain if by_domain else literal_column("''")
                query = (
                    select(filings.c.unit, domain_column, filings.c.status, func.count())
                    .where(filings.c.published_on.between(low, high))
                    .group_by(filings.c.unit, *([filings.c.domain] if by_domain else []), filings.c.status)
                )
                if len(unit_list) <= FEW_UNITS:
                    query = query.where(filings.c.unit.in_(unit_list))
                if domain:
                    query = query.where(filings.c.domain == domain)
                for unit, code, status, count in connection.execute(query):
                    if unit in wanted:
                        found[unit][code].add(status, count)
        return found

    def unit_counts(
        self, groups: Sequence[tuple[CatalogProfile, Sequence[str]]], as_of: date, start: date, end: date, domain: str | None = None
    ) -> dict[str, UnitCounts]:
        """The ranking's counts for many units in two statements, counted by the database
        (see ranking.py: the same counts domain.count_unit takes item by item)."""
        with self.engine.connect() as connection:
            return ranking.unit_counts(connection, groups, as_of, start, end, domain)

    def late_items(self, units: Sequence[str], start: date, end: date, domain: str | None = None) -> dict[str, dict[str, LateItem]]:
        """Per unit, the items with late filings published in [start, end]: count, worst lateness.

        Read by the covering (status, date, unit, item) index over the window, however many units."""
        query = (
            select(filings.c.unit, filings.c.level2, func.count(), func.max(filings.c.days_late))
            .where(filings.c.status == LATE, filings.c.published_on.between(start, end), filings.c.unit.in_(list(units)))
            .group_by(filings.c.unit, filings.c.level2)
        )
        if domain:
            query = query.where(filings.c.domain == domain)
        found: dict[str, dict[str, LateItem]] = defaultdict(dict)
        wanted = set(units)
        with self.engine.connect() as connection:
            for unit, level2, count, worst in connection.execute(query):
                if unit in wanted:
                    found[unit][level2] = LateItem(level2, count, worst or 0)
        return found

    def item_timeliness(self, unit: str, start: date, end: date, domain: str | None = None) -> dict[str, Timeliness]:
        """One unit's filings in [start, end] per item by status (a drill-down: one unit's rows)."""
        query = (
            select(filings.c.level2, filings.c.status, func.count())
            .where(filings.c.unit == unit, filings.c.published_on.between(start, end))
            .group_by(filings.c.level2, filings.c.status)
        )
        if domain:
            query = query.where(filings.c.domain == domain)
        found: dict[str, Timeliness] = defaultdict(Timeliness)
        with self.engine.connect() as connection:
            for level2, status, count in connection.execute(query):
                found[level2].add(status, count)
        return found

    def late_filings(self, unit: str, start: date, end: date, *, domain: str | None = None, level2: str | None = None, limit: int = 200) -> list[LateFiling]:
        """The late filings of a unit in [start, end], latest first."""
        conditions = [filings.c.status == LATE, filings.c.unit == unit, filings.c.published_on.between(start, end)]
        if domain:
            conditions.append(filings.c.domain == domain)
        if level2:
            conditions.append(filings.c.level2 == level2)
        query = (
            select(
                filings.c.publication_id,
                filings.c.unit,
                filings.c.domain,
                filings.c.level1,
                filings.c.level2,
                filings.c.title,
                filings.c.formed_on,
                filings.c.published_on,
                filings.c.deadline,
                filings.c.working_days,
                filings.c.days_late,
                filings.c.time_limit,
            )
            .where(and_(*conditions))
            .order_by(filings.c.published_on.desc(), filings.c.publication_id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [LateFiling(*row) for row in connection.execute(query)]

    def unassessed(self, units: Sequence[str]) -> dict[str, int]:
        """Filings that could not be assessed for want of a calendar, per unit (a loud banner)."""
        query = select(filings.c.unit, func.count()).where(filings.c.status == NO_CALENDAR, filings.c.unit.in_(list(units))).group_by(filings.c.unit)
        with self.engine.connect() as connection:
            return dict(connection.execute(query).tuples().all())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                "publications": connection.execute(select(func.count()).select_from(publications).where(publications.c.status == "published")).scalar_one(),
                "filings": connection.execute(select(func.count()).select_from(filings)).scalar_one(),
                "items": connection.execute(select(func.count()).select_from(items)).scalar_one(),
            }
