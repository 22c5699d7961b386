"""services/common/db.py's insert_rows: many rows inserted with each column's own type, on SQLite
and on PostgreSQL, reading back exactly what SQLAlchemy's own insert stores."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Integer, MetaData, String, Table, insert, select

from services.common.db import JSONText, insert_rows, writing
from tests.conftest import store_backends, store_engine

metadata = MetaData()
filed = Table(
    "insert_rows_filed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("publication_id", String(80), nullable=False),
    Column("major", Boolean, nullable=False),
    Column("flag", Boolean),
    Column("formed_on", Date, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("document", JSON),
)
# A Python-side default must still be filled in: such a table goes through SQLAlchemy.
stamped = Table(
    "insert_rows_stamped",
    metadata,
    Column("key", String(20), primary_key=True),
    Column("kind", String(20), nullable=False, default="published"),
)
AT = datetime(2026, 3, 1, 8, 0, 15, 250_000, tzinfo=timezone.utc)


@pytest.fixture(params=store_backends())
def engine(request, tmp_path):
    with store_engine(request.param, tmp_path, "insert_rows") as engine:
        metadata.create_all(engine)
        yield engine


def rows(prefix: str) -> list[dict]:
    return [
        {
            "publication_id": f"{prefix}1",
            "major": True,
            "flag": None,
            "formed_on": date(2026, 2, 27),
            "published_at": AT,
            "document": {"title": "低保标准", "n": 1},
        },
        {
            "publication_id": f"{prefix}2",
            "major": False,
            "flag": True,
            "formed_on": date(2021, 3, 5),
            "published_at": AT,
            "document": JSONText('{"title":"公示"}'),
        },
    ]


def test_rows_read_back_as_sqlalchemys_own_insert_stores_them(engine):
    with writing(engine) as connection:
        insert_rows(connection, filed, rows("fast-"))
        connection.execute(insert(filed), rows("core-"))
    with engine.connect() as connection:
        stored = {r.publication_id: r for r in connection.execute(select(filed))}
        raw = {r[0]: r[1:] for r in connection.exec_driver_sql("SELECT publication_id, major, flag, formed_on, published_at, document FROM insert_rows_filed")}
    assert len(stored) == 4
    for n in ("1", "2"):
        fast, core = stored[f"fast-{n}"], stored[f"core-{n}"]
        assert (fast.major, fast.flag, fast.formed_on, fast.published_at, fast.document) == (
            core.major,
            core.flag,
            core.formed_on,
            core.published_at,
            core.document,
        )
        assert raw[f"fast-{n}"] == raw[f"core-{n}"]  # the very same stored text, not only the same values
    assert stored["fast-1"].document == {"title": "低保标准", "n": 1} and stored["fast-2"].document == {"title": "公示"}
    assert stored["fast-2"].formed_on == date(2021, 3, 5) and stored["fast-2"].flag is True


def test_python_side_defaults_are_still_applied(engine):
    with writing(engine) as connection:
        insert_rows(connection, stamped, [{"key": "a"}, {"key": "b"}])
    with engine.connect() as connection:
        assert connection.execute(select(stamped.c.key, stamped.c.kind).order_by(stamped.c.key)).all() == [("a", "published"), ("b", "published")]


def test_a_failed_batch_writes_nothing(engine):
    with pytest.raises(Exception), writing(engine) as connection:  # noqa: B017, PT011 - each dialect raises its own IntegrityError
        insert_rows(connection, filed, [rows("x-")[0], {**rows("x-")[1], "major": None}])  # major is NOT NULL
    with engine.connect() as connection:
        assert connection.execute(select(filed)).all() == []
