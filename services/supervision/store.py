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

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import (
    Column,
    Date,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection

from contracts.catalog import Catalog
from contracts.events import CatalogChangedEvent, PublicationData, PublishedEvent, WithdrawnEvent
from services.common.catalog_copy import CatalogCopy, catalog_copy_table, keep_newest
from services.common.db import Upsert, insert_rows, writing
from services.common.heartbeat import heartbeat_table
from services.common.projection import InThread, LedgeredStore, Projection, held_versions, publications_table, publications_to_apply, record_versions

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
    month_key,
    parse_time_limit,
    split_window,
)

metadata = MetaData()

publications = publications_table("supervision_publications", metadata)

filings = Table(
    "supervision_filings",
    metadata,
    Column("publication_id", String(80), nullable=False),
    Column("unit", String(20), nullable=False),
    Column("domain", String(8), nullable=False),
    Column("level1", String(16), nullable=False),
    Column("level2", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("formed_on", Date, nullable=False),
    Column("published_on", Date, nullable=False),  # Beijing date
    Column("time_limit", String(500)),
    Column("status", String(12), nullable=False),  # on_time | late | exempt | unparsed | no_calendar
    Column("deadline", Date),
    Column("working_days", Integer),
    Column("days_late", Integer),
    Index("ix_supervision_filings_item", "unit", "level2", "published_on"),
    Index("ix_supervision_filings_day", "published_on", "unit", "domain", "status"),
    Index("ix_supervision_filings_status", "status", "published_on", "unit", "level2", "days_late"),
    Index("ix_supervision_filings_publication", "publication_id"),
)

items = Table(
    "supervision_items",
    metadata,
    Column("unit", String(20), primary_key=True),
    Column("level2", String(16), primary_key=True),
    Column("domain", String(8), nullable=False),
    Column("level1", String(16), nullable=False),
    Column("live", Integer, nullable=False),
    Column("first_on", Date, nullable=False),
    Column("last_on", Date, nullable=False),
    *(Column(status, Integer, nullable=False) for status in STATUSES),
    Column("max_days_late", Integer, nullable=False),
    sqlite_with_rowid=False,  # rows clustered by (unit, level2): a unit's items are one range
)

months = Table(
    "supervision_months",
    metadata,
    # Key order (unit, month, domain): a window reads a range of months of each unit.
    Column("unit", String(20), primary_key=True),
    Column("month", Integer, primary_key=True),  # yyyymm
    Column("domain", String(8), primary_key=True),
    Column("filings", Integer, nullable=False),
    *(Column(status, Integer, nullable=False) for status in STATUSES),
    sqlite_with_rowid=False,
)

# The edition in force per scope (like the column's copy) and when each edition was published,
# for the "catalog published by 07-31" milestone.
catalogs = catalog_copy_table(metadata, "supervision")
editions = Table(
    "supervision_catalog_editions",
    metadata,
    Column("scope", String(20), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("edition", String(40), nullable=False),
    Column("published_on", Date, nullable=False),
)

heartbeats = heartbeat_table(metadata, "supervision")

_CHUNK = 400
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
        metadata.create_all(self.engine)

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
            self._replace(connection, [e.data.publication_id for e in chosen if e.data.publication_id in stored], rows)
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

    def _replace(self, connection: Connection, publication_ids: list[str], rows: list[dict]) -> None:
        """Remove the filings of `publication_ids` (publications this store held) and add `rows`
        (the filings of every publication applied), keeping the roll-ups exact."""
        old: list = []
        for start in range(0, len(publication_ids), _CHUNK):
            chunk = publication_ids[start : start + _CHUNK]
            found = connection.execute(
                select(filings.c.unit, filings.c.domain, filings.c.level2, filings.c.published_on, filings.c.status).where(filings.c.publication_id.in_(chunk))
            ).all()
            if found:
                connection.execute(delete(filings).where(filings.c.publication_id.in_(chunk)))
                old += found
        if rows:
            insert_rows(connection, filings, rows)
        deltas: Counter = Counter()
        for unit, domain, _, published_on, status in old:
            deltas[(unit, domain, month_key(published_on), status)] -= 1
        for row in rows:
            deltas[(row["unit"], row["domain"], month_key(row["published_on"]), row["status"])] += 1
        self._add_to_months(connection, deltas)
        # New filings only add to their items (counts up, first/last widen); an item that lost a
        # filing (revision, withdrawal) is recomputed from its filings, so min/max stay exact.
        shrunk = {(unit, level2) for unit, _, level2, _, _ in old}
        self._add_to_items(connection, [r for r in rows if (r["unit"], r["level2"]) not in shrunk])
        self._recompute_items(connection, shrunk)

    def _add_to_items(self, connection: Connection, rows: list[dict]) -> None:
        per_item: dict[tuple[str, str], dict] = {}
        for row in rows:
            key = (row["unit"], row["level2"])
            held = per_item.get(key)
            if held is None:
                held = per_item[key] = dict(
                    unit=key[0],
                    level2=key[1],
                    domain=row["domain"],
                    level1=row["level1"],
                    live=0,
                    first_on=row["published_on"],
                    last_on=row["published_on"],
                    max_days_late=0,
                )
                held.update({status: 0 for status in STATUSES})
            held["live"] += 1
            held[row["status"]] += 1
            held["first_on"] = min(held["first_on"], row["published_on"])
            held["last_on"] = max(held["last_on"], row["published_on"])
            held["max_days_late"] = max(held["max_days_late"], row["days_late"] or 0)
        if not per_item:
            return
        connection.execute(_ADD_TO_ITEMS(connection), list(per_item.values()))

    def _add_to_months(self, connection: Connection, deltas: Counter) -> None:
        per_month: dict[tuple, dict[str, int]] = defaultdict(lambda: {s: 0 for s in ("filings", *STATUSES)})
        for (unit, domain, month, status), count in deltas.items():
            if count:
                per_month[(unit, domain, month)][status] += count
                per_month[(unit, domain, month)]["filings"] += count
        if not per_month:
            return
        values = [dict(unit=u, domain=d, month=m, **counts) for (u, d, m), counts in per_month.items()]
        connection.execute(_ADD_TO_MONTHS(connection), values)
        connection.execute(delete(months).where(months.c.filings <= 0))

    def _recompute_items(self, connection: Connection, keys: set[tuple[str, str]]) -> None:
        keys_list = sorted(keys)
        for start in range(0, len(keys_list), _CHUNK):
            chunk = keys_list[start : start + _CHUNK]
            where = tuple_(filings.c.unit, filings.c.level2).in_(chunk)
            rows = connection.execute(
                select(
                    filings.c.unit,
                    filings.c.level2,
                    func.min(filings.c.domain),
                    func.min(filings.c.level1),
                    func.count(),
                    func.min(filings.c.published_on),
                    func.max(filings.c.published_on),
                    *(func.sum(case((filings.c.status == status, 1), else_=0)) for status in STATUSES),
                    func.coalesce(func.max(filings.c.days_late), 0),
                )
                .where(where)
                .group_by(filings.c.unit, filings.c.level2)
            ).all()
            connection.execute(delete(items).where(tuple_(items.c.unit, items.c.level2).in_(chunk)))
            if rows:
                names = ["unit", "level2", "domain", "level1", "live", "first_on", "last_on", *STATUSES, "max_days_late"]
                connection.execute(insert(items), [dict(zip(names, row, strict=True)) for row in rows])

    def reassess(self, statuses: Iterable[str] = (NO_CALENDAR,)) -> int:
        """Assess again the filings that could not be (a newer chinese-calendar covers more
        years); run at consumer start-up. Returns how many filings changed status."""
        wanted = list(statuses)
        with writing(self.engine) as connection:
            rows = connection.execute(select(filings).where(filings.c.status.in_(wanted))).mappings().all()
            changed = []
            for row in rows:
                verdict = assess(parse_time_limit(row["time_limit"]), row["formed_on"], row["published_on"], self.calendar)
                if verdict.status != row["status"]:
                    changed.append((row, verdict))
            if not changed:
                return 0
            deltas: Counter = Counter()
            for row, verdict in changed:
                connection.execute(
                    update(filings)
                    .where(filings.c.publication_id == row["publication_id"], filings.c.unit == row["unit"], filings.c.level2 == row["level2"])
                    .values(status=verdict.status, deadline=verdict.deadline, working_days=verdict.working_days, days_late=verdict.days_late)
                )
                key = (row["unit"], row["domain"], month_key(row["published_on"]))
                deltas[(*key, row["status"])] -= 1
                deltas[(*key, verdict.status)] += 1
            # −1 and +1 on the same month row: its filing count stays, the status columns move.
            self._add_to_months(connection, deltas)
            self._recompute_items(connection, {(row["unit"], row["level2"]) for row, _ in changed})
            return len(changed)

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
        """The ranking's counts for many units in two statements, counted by the database.

        `groups`: units sharing a catalog profile. The profiles go in as a VALUES table (item,
        applies, the date before which its newest content is stale, 2022 domain), so coverage,
        staleness and the milestones' progress are sums over the roll-up joined to it — the
        same counts domain.count_unit takes item by item."""
        cat_rows, unit_rows = [], []
        for number, (profile, units) in enumerate(groups):
            cat_rows += [(number, item, int(applies), as_of - timedelta(days=cycle), int(new)) for item, applies, cycle, new in profile.items]
            unit_rows += [(unit, number) for unit in units]
        if not cat_rows or not unit_rows:
            return {}
        # Plain SQL (the same on SQLite and PostgreSQL) sent as it is: through SQLAlchemy's
        # expression compiler, ~1,000 VALUES parameters cost more than running the query.
        # Keys are typed again after VALUES (which has no column types in SQLite): with typed
        # keys the planner seeks the roll-up by (unit, item) instead of scanning the catalog.
        sqlite = self.engine.dialect.name == "sqlite"
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

        def day(value: date):
            return value.isoformat() if sqlite else value  # SQLite keeps dates as ISO text

        cat_values = ", ".join([f"({mark}, {mark}, {mark}, {mark}, {mark})"] * len(cat_rows))
        unit_values = ", ".join([f"({mark}, {mark})"] * len(unit_rows))
        statement = f"""
            WITH raw_cat(grp, level2, applies, stale_before, fresh) AS (VALUES {cat_values}),
                 raw_unit(unit, grp) AS (VALUES {unit_values}),
                 cat AS (SELECT CAST(grp AS INTEGER) AS grp, CAST(level2 AS VARCHAR(16)) AS level2, applies, stale_before, fresh FROM raw_cat),
                 unit_group AS (SELECT CAST(unit AS VARCHAR(20)) AS unit, CAST(grp AS INTEGER) AS grp FROM raw_unit)
            SELECT i.unit,
                   SUM(c.applies),
                   SUM(CASE WHEN c.applies = 1 AND (CASE WHEN i.last_on > {mark}
                           THEN (SELECT f.published_on FROM {filings.name} f
                                 WHERE f.unit = i.unit AND f.level2 = i.level2 AND f.published_on <= {mark}
                                 ORDER BY f.published_on DESC LIMIT 1)
                           ELSE i.last_on END) < c.stale_before THEN 1 ELSE 0 END),
                   SUM(CASE WHEN c.applies = 1 AND c.fresh = 1 THEN 1 ELSE 0 END),
                   MAX(CASE WHEN c.applies = 1 THEN i.first_on END),
                   MAX(CASE WHEN c.applies = 1 AND c.fresh = 1 THEN i.first_on END)
            FROM unit_group u
            JOIN {items.name} i ON i.unit = u.unit
            JOIN cat c ON c.grp = u.grp AND c.level2 = i.level2
            WHERE i.first_on <= {mark}
            GROUP BY i.unit"""
        parameters = (
            *(value for grp, item, applies, stale_before, fresh in cat_rows for value in (grp, item, applies, day(stale_before), fresh)),
            *(value for row in unit_rows for value in row),
            day(as_of),
            day(as_of),
            day(as_of),
        )
        late = select(filings.c.unit, func.count(func.distinct(filings.c.level2))).where(filings.c.status == LATE, filings.c.published_on.between(start, end))
        late = late.where(filings.c.unit.in_([unit for unit, _ in unit_rows]))  # scanned by the (status, date) index all the same
        if domain:
            late = late.where(filings.c.domain == domain)
        with self.engine.connect() as connection:
            counted = connection.exec_driver_sql(statement, parameters).all()
            late_by_unit = dict(connection.execute(late.group_by(filings.c.unit)).tuples().all())
        found = {unit: UnitCounts(late_items=late_by_unit.get(unit, 0)) for unit, _ in unit_rows}
        for unit, covered, stale, covered_new, last, last_new in counted:
            found[unit] = UnitCounts(
                int(covered or 0), int(stale or 0), late_by_unit.get(unit, 0), int(covered_new or 0), _maybe_date(last), _maybe_date(last_new)
            )
        return found

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


# New filings add to their item's and month's roll-ups: counts up, first/last widen.
_ADD_TO_ITEMS = Upsert(
    items,
    conflict=("unit", "level2"),
    set_={
        "live": "{table}.live + {excluded}.live",
        "first_on": "{least}({table}.first_on, {excluded}.first_on)",
        "last_on": "{greatest}({table}.last_on, {excluded}.last_on)",
        "max_days_late": "{greatest}({table}.max_days_late, {excluded}.max_days_late)",
        **{status: f"{{table}}.{status} + {{excluded}}.{status}" for status in STATUSES},
    },
)
_ADD_TO_MONTHS = Upsert(
    months,
    conflict=("unit", "month", "domain"),
    set_={column: f"{{table}}.{column} + {{excluded}}.{column}" for column in ("filings", *STATUSES)},
)


def _maybe_date(value) -> date | None:
    return None if value is None else _as_date(value)


def _as_date(value) -> date:
    if value.__class__ is str:
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        return value.date()
    return value
