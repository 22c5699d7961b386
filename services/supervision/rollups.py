"""Keeping the supervision roll-ups exact: a batch's filings replace the old ones of its
publications, and the unit × item and unit × domain × month rows they touch move with them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from sqlalchemy import case, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection

from services.common.db import insert_rows

from .calendar import WorkCalendar
from .domain import STATUSES, assess, month_key, parse_time_limit
from .tables import ADD_TO_ITEMS, ADD_TO_MONTHS, filings, items, months

_CHUNK = 400


def replace_filings(connection: Connection, publication_ids: list[str], rows: list[dict]) -> None:
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
    add_to_months(connection, deltas)
    # New filings only add to their items (counts up, first/last widen); an item that lost a
    # filing (revision, withdrawal) is recomputed from its filings, so min/max stay exact.
    shrunk = {(unit, level2) for unit, _, level2, _, _ in old}
    add_to_items(connection, [r for r in rows if (r["unit"], r["level2"]) not in shrunk])
    recompute_items(connection, shrunk)


def add_to_items(connection: Connection, rows: list[dict]) -> None:
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
    connection.execute(ADD_TO_ITEMS(connection), list(per_item.values()))


def add_to_months(connection: Connection, deltas: Counter) -> None:
    per_month: dict[tuple, dict[str, int]] = defaultdict(lambda: {s: 0 for s in ("filings", *STATUSES)})
    for (unit, domain, month, status), count in deltas.items():
        if count:
            per_month[(unit, domain, month)][status] += count
            per_month[(unit, domain, month)]["filings"] += count
    if not per_month:
        return
    values = [dict(unit=u, domain=d, month=m, **counts) for (u, d, m), counts in per_month.items()]
    connection.execute(ADD_TO_MONTHS(connection), values)
    connection.execute(delete(months).where(months.c.filings <= 0))


def recompute_items(connection: Connection, keys: set[tuple[str, str]]) -> None:
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


def reassess(connection: Connection, calendar: WorkCalendar, statuses: Iterable[str]) -> int:
    """Assess again the filings of these statuses with `calendar`; returns how many changed."""
    rows = connection.execute(select(filings).where(filings.c.status.in_(list(statuses)))).mappings().all()
    changed = []
    for row in rows:
        verdict = assess(parse_time_limit(row["time_limit"]), row["formed_on"], row["published_on"], calendar)
        if verdict.status != row["status"]:
            changed.append((row, verdict))
    if not changed:
        return 0
    deltas: Counter[tuple[str, str, int, str]] = Counter()
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
    add_to_months(connection, deltas)
    recompute_items(connection, {(row["unit"], row["level2"]) for row, _ in changed})
    return len(changed)
