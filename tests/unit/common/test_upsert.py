"""services/common/db.py's Upsert: INSERT … ON CONFLICT as text built once per dialect, on
SQLite and on PostgreSQL, binding values with the columns' own types."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, String, Table, select

from services.common.db import Upsert, writing
from tests.conftest import store_backends, store_engine

metadata = MetaData()
tally = Table(
    "upsert_tally",
    metadata,
    Column("unit", String(20), primary_key=True),
    Column("month", Integer, primary_key=True),  # a keyword in SQL: quoted where it must be
    Column("count", Integer, nullable=False),
    Column("first_on", Date, nullable=False),
    Column("last_on", Date, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
ADD = Upsert(
    tally,
    conflict=("unit", "month"),
    set_={
        "count": "{table}.count + {excluded}.count",
        "first_on": "{least}({table}.first_on, {excluded}.first_on)",
        "last_on": "{greatest}({table}.last_on, {excluded}.last_on)",
        "changed_at": "{excluded}.changed_at",
    },
)
T1 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
T2 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


@pytest.fixture(params=store_backends())
def engine(request, tmp_path):
    with store_engine(request.param, tmp_path, "upsert") as engine:
        metadata.create_all(engine)
        yield engine


def row(unit: str, count: int, first: date, last: date, at: datetime, month: int = 202603) -> dict:
    return {"unit": unit, "month": month, "count": count, "first_on": first, "last_on": last, "changed_at": at}


def test_new_keys_are_inserted_and_conflicting_ones_combined_by_the_expressions(engine):
    with writing(engine) as connection:
        connection.execute(ADD(connection), [row("a", 2, date(2026, 3, 5), date(2026, 3, 9), T1), row("b", 1, date(2026, 3, 1), date(2026, 3, 1), T1)])
    with writing(engine) as connection:
        connection.execute(
            ADD(connection), [row("a", 3, date(2026, 3, 2), date(2026, 3, 7), T2), row("a", 1, date(2026, 3, 8), date(2026, 3, 8), T2, month=202604)]
        )
    with engine.connect() as connection:
        stored = {(r.unit, r.month): r for r in connection.execute(select(tally))}
    a = stored[("a", 202603)]
    assert (a.count, a.first_on, a.last_on) == (5, date(2026, 3, 2), date(2026, 3, 9))
    assert a.changed_at.replace(tzinfo=timezone.utc) == T2  # SQLite hands back naive UTC, as for insert()
    assert stored[("b", 202603)].count == 1 and stored[("a", 202604)].count == 1


def test_the_statement_is_built_once_per_dialect(engine):
    with engine.connect() as connection:
        first = ADD(connection)
    with engine.connect() as connection:
        assert ADD(connection) is first
    assert engine.dialect.name in ADD._by_dialect
