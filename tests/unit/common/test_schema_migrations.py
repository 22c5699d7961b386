"""Schema migrations (services/common/schema): the migrated schema is the models' schema, an
upgrade keeps the rows of a database made by the previous schema, two processes may upgrade
at once, and production refuses to start on an old schema. On SQLite, and on PostgreSQL
(one database, every shared store in it) when TONGYUAN_TEST_PG_URL is set."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, MetaData, String, insert, inspect, select, text
from typer.testing import CliRunner

from devtools.store_tables import metadata_of
from services.common import schema
from services.common.db import create_store_engine
from services.common.settings import SHARED_STORES, STORES
from tests.conftest import fresh_postgres_database, store_backends

NEW_INDEXES = {"ix_publisher_placements_level1", "ix_publisher_placements_domain"}  # revision 0002's


@pytest.fixture(params=store_backends())
def database(request, tmp_path) -> Iterator[tuple[str, str]]:
    """(backend, URL) of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'store.db'}"
        return
    url, drop = fresh_postgres_database(prefix="tongyuan_schema")
    try:
        yield "postgresql", url
    finally:
        drop()


@pytest.fixture
def engine(database) -> Iterator[Engine]:
    made = create_store_engine(database[1])
    yield made
    made.dispose()


def _stores(backend: str) -> tuple[str, ...]:
    # A SQLite file holds one store; the PostgreSQL database holds every shared store at once,
    # which also proves their tables and version tables do not collide.
    return STORES if backend == "sqlite" else SHARED_STORES


def _differences(engine: Engine, stores: tuple[str, ...]) -> list:
    models = MetaData()
    for store in stores:
        for table in metadata_of(store).tables.values():
            if table.name not in models.tables:
                table.to_metadata(models)
    versions = {schema.version_table(store) for store in STORES}
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True, "include_name": lambda name, kind, _: name not in versions}
        )
        return compare_metadata(context, models)


def test_one_history_with_one_head():
    assert len(schema.scripts().get_heads()) == 1
    assert schema.head() == "0002"


def test_the_migrated_schema_is_the_models_schema(tmp_path, database):
    """Like `alembic check`: a model changed without a revision fails here."""
    backend, url = database
    if backend == "sqlite":
        for store in STORES:  # each store alone in its file: only its own tables
            engine = create_store_engine(f"sqlite:///{tmp_path / f'{store}.db'}")
            schema.upgrade(engine, store)
            assert _differences(engine, (store,)) == [], store
            assert set(inspect(engine).get_table_names()) == set(metadata_of(store).tables) | {schema.version_table(store)}
            engine.dispose()
        return
    engine = create_store_engine(url)
    for store in SHARED_STORES:
        schema.upgrade(engine, store)
    assert _differences(engine, SHARED_STORES) == []
    engine.dispose()


def test_a_store_whose_models_changed_without_a_revision_differs(tmp_path):
    engine = create_store_engine(f"sqlite:///{tmp_path / 'column.db'}")
    schema.upgrade(engine, "column")
    changed = metadata_of("column")
    changed.tables["column_placements"].append_column(Column("subtitle", String(200)))
    versions = {schema.version_table("column")}
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": lambda name, kind, _: name not in versions})
        assert [diff[0] for diff in compare_metadata(context, changed)] == ["add_column"]


def _placement(publication_id: str) -> dict:
    return dict(publication_id=publication_id, region_code="430102", domain_code="D14", level1_id="D14-02", level2_id="D14-02-02")


def _publication(publication_id: str) -> dict:
    now = datetime(2026, 3, 5, tzinfo=timezone.utc)
    return dict(publication_id=publication_id, version=3, status="published", source="test", document={"title": "公告"}, created_at=now, updated_at=now)


def test_upgrading_from_the_previous_revision_keeps_the_rows(engine):
    schema.upgrade(engine, "publisher", "0001")
    tables = metadata_of("publisher").tables
    with engine.begin() as connection:
        connection.execute(insert(tables["publisher_publications"]), [_publication("p-1"), _publication("p-2")])
        connection.execute(insert(tables["publisher_placements"]), [_placement("p-1"), _placement("p-2")])
    assert not NEW_INDEXES & {ix["name"] for ix in inspect(engine).get_indexes("publisher_placements")}

    schema.upgrade(engine, "publisher")

    assert schema.current(engine, "publisher") == schema.head()
    assert NEW_INDEXES <= {ix["name"] for ix in inspect(engine).get_indexes("publisher_placements")}
    with engine.connect() as connection:
        assert sorted(connection.execute(select(tables["publisher_placements"].c.publication_id)).scalars()) == ["p-1", "p-2"]
        assert connection.execute(
            select(tables["publisher_publications"].c.document).where(tables["publisher_publications"].c.publication_id == "p-2")
        ).scalar_one() == {"title": "公告"}
    # And back: the previous revision's schema, rows still there.
    schema.downgrade(engine, "publisher", "0001")
    assert not NEW_INDEXES & {ix["name"] for ix in inspect(engine).get_indexes("publisher_placements")}
    with engine.connect() as connection:
        assert len(connection.execute(select(tables["publisher_placements"])).all()) == 2


def test_a_database_create_all_made_is_adopted_with_its_rows(engine):
    """Databases from before migrations: create_all made the tables (without revision 0002's
    indexes) and no version table. The upgrade keeps every table and row and adds what is new."""
    before = metadata_of("publisher")
    placements = before.tables["publisher_placements"]
    for index in [ix for ix in placements.indexes if ix.name in NEW_INDEXES]:
        placements.indexes.discard(index)
    before.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(placements), [_placement("p-1")])

    if engine.dialect.name == "sqlite":
        schema.ensure(engine, "publisher")  # what the store's create() does at start
    else:
        schema.upgrade(engine, "publisher")  # `tongyuan db upgrade`

    assert schema.current(engine, "publisher") == schema.head()
    assert _differences(engine, ("publisher",)) == []
    with engine.connect() as connection:
        assert connection.execute(select(placements.c.publication_id)).scalars().all() == ["p-1"]


def test_production_refuses_to_start_on_an_old_schema(database, engine):
    """On PostgreSQL a process checks; it never creates or alters tables at start."""
    if database[0] == "sqlite":
        schema.ensure(engine, "column")  # the embedded profile upgrades
        assert schema.current(engine, "column") == schema.head()
        return
    with pytest.raises(schema.SchemaNotCurrent, match=r"column store's schema is at nothing.*run `tongyuan db upgrade`"):
        schema.ensure(engine, "column")
    assert "column_placements" not in inspect(engine).get_table_names()
    schema.upgrade(engine, "column", "0001")
    with pytest.raises(schema.SchemaNotCurrent, match="is at 0001"):
        schema.ensure(engine, "column")
    schema.upgrade(engine, "column")
    schema.ensure(engine, "column")


_UPGRADE = "import sys; from services.common import schema; from services.common.db import create_store_engine; schema.upgrade(create_store_engine(sys.argv[1]), sys.argv[2])"


def test_two_processes_may_upgrade_at_once(database, engine):
    """`tongyuan up` starts several processes together: each store's upgrade waits for the other's."""
    root = Path(__file__).resolve().parents[3]
    for store in ("publisher", "supervision"):
        runs = [subprocess.Popen([sys.executable, "-c", _UPGRADE, database[1], store], cwd=root, stderr=subprocess.PIPE) for _ in range(2)]
        errors = [run.communicate(timeout=120)[1].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0], errors
        assert schema.current(engine, store) == schema.head()
    assert _differences(engine, ("publisher", "supervision")) == []


def test_db_upgrade_brings_every_store_to_head(tmp_path, monkeypatch):
    from services.cli import cli
    from services.common.settings import get_settings

    monkeypatch.setenv("TONGYUAN_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TONGYUAN_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        before = runner.invoke(cli, ["db", "current"])
        assert before.exit_code == 1 and "column: empty" in before.output
        assert not list(tmp_path.glob("*.db")), "asking where the stores are creates none"
        first = runner.invoke(cli, ["db", "upgrade"])
        assert first.exit_code == 0, first.output
        assert f"column: empty -> {schema.head()}" in first.output
        again = runner.invoke(cli, ["db", "upgrade"])
        assert f"column: at {schema.head()}" in again.output
        current = runner.invoke(cli, ["db", "current"])
        assert current.exit_code == 0 and f"search: {schema.head()}" in current.output
        sql = runner.invoke(cli, ["db", "upgrade", "--sql"])
        assert sql.exit_code == 0 and "CREATE INDEX ix_publisher_placements_level1" in sql.output
    finally:
        get_settings.cache_clear()
    for store in ("publisher", "column", "embed", "supervision", "bridge", "search"):
        assert (tmp_path / f"{store}.db").exists(), store


def test_a_schema_from_a_newer_release_is_refused_not_upgraded(engine):
    schema.upgrade(engine, "column")
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {schema.version_table('column')} SET version_num = '9999'"))
    with pytest.raises(schema.SchemaNotCurrent, match="is at 9999, which this code does not know"):
        schema.ensure(engine, "column")
