"""The ranking's counts for many units, counted by the database in two statements.

Units sharing a catalog profile are a group. The profiles go in as a VALUES table (item,
applies, the date before which its newest content is stale, 2022 domain), so coverage,
staleness and the milestones' progress are sums over the unit × item roll-up joined to it:
the same counts domain.count_unit takes item by item (and is tested against).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from .domain import LATE, CatalogProfile, UnitCounts
from .tables import filings, items


def unit_counts(
    connection: Connection, groups: Sequence[tuple[CatalogProfile, Sequence[str]]], as_of: date, start: date, end: date, domain: str | None = None
) -> dict[str, UnitCounts]:
    cat_rows: list[tuple[int, str, int, date, int]] = []
    unit_rows: list[tuple[str, int]] = []
    for number, (profile, units) in enumerate(groups):
        cat_rows += [(number, item, int(applies), as_of - timedelta(days=cycle), int(new)) for item, applies, cycle, new in profile.items]
        unit_rows += [(unit, number) for unit in units]
    if not cat_rows or not unit_rows:
        return {}
    sqlite = connection.dialect.name == "sqlite"
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"

    def day(value: date) -> date | str:
        return value.isoformat() if sqlite else value  # SQLite keeps dates as ISO text

    parameters = (
        *(value for grp, item, applies, stale_before, fresh in cat_rows for value in (grp, item, applies, day(stale_before), fresh)),
        *(value for row in unit_rows for value in row),
        day(as_of),
        day(as_of),
        day(as_of),
    )
    counted = connection.exec_driver_sql(_statement(mark, len(cat_rows), len(unit_rows)), parameters).all()
    late_by_unit = _late_items(connection, [unit for unit, _ in unit_rows], start, end, domain)
    found = {unit: UnitCounts(late_items=late_by_unit.get(unit, 0)) for unit, _ in unit_rows}
    for unit, covered, stale, covered_new, last, last_new in counted:
        found[unit] = UnitCounts(int(covered or 0), int(stale or 0), late_by_unit.get(unit, 0), int(covered_new or 0), maybe_date(last), maybe_date(last_new))
    return found


def _statement(mark: str, catalog_rows: int, unit_rows: int) -> str:
    """Plain SQL (the same on SQLite and PostgreSQL) sent as it is: through SQLAlchemy's
    expression compiler, ~1,000 VALUES parameters cost more than running the query. Keys are
    typed again after VALUES (which has no column types in SQLite): with typed keys the planner
    seeks the roll-up by (unit, item) instead of scanning the catalog."""
    cat_values = ", ".join([f"({mark}, {mark}, {mark}, {mark}, {mark})"] * catalog_rows)
    unit_values = ", ".join([f"({mark}, {mark})"] * unit_rows)
    return f"""
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


def _late_items(connection: Connection, units: list[str], start: date, end: date, domain: str | None) -> dict[str, int]:
    """Per unit, the items with late filings published in [start, end]."""
    late = select(filings.c.unit, func.count(func.distinct(filings.c.level2))).where(filings.c.status == LATE, filings.c.published_on.between(start, end))
    late = late.where(filings.c.unit.in_(units))  # scanned by the (status, date) index all the same
    if domain:
        late = late.where(filings.c.domain == domain)
    return dict(connection.execute(late.group_by(filings.c.unit)).tuples().all())


def maybe_date(value: Any) -> date | None:
    return None if value is None else as_date(value)


def as_date(value: Any) -> date:
    """A date as the driver gives it: ISO text on SQLite, a date or datetime on PostgreSQL."""
    if value.__class__ is str:
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        return value.date()
    return value
