"""What every SQLite store connection is set to (services/common/db.py): WAL, NORMAL sync, a
longer WAL before checkpoints; and that the WAL is still copied back into the file."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.bootstrap import for_consumers
from services.common import db


def test_every_connection_is_wal_with_the_longer_checkpoint_interval(tmp_path):
    engine = db.create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == db.SQLITE_CHECKPOINT_PAGES


def test_the_publishers_store_keeps_checkpoints_small_for_its_http_requests(tmp_path):
    from services.common.settings import Settings
    from services.publisher.app import bootstrap

    publisher = bootstrap(Settings(var_dir=tmp_path), load_reference=False)
    with publisher.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == db.SQLITE_REQUEST_PATH_CHECKPOINT_PAGES


def test_the_wal_is_checkpointed_once_it_holds_that_many_pages(tmp_path):
    path = tmp_path / "store.db"
    engine = db.create_store_engine(f"sqlite:///{path}", checkpoint_pages=50)
    with db.writing(engine) as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    for _ in range(40):
        with db.writing(engine) as connection:
            connection.execute(text("INSERT INTO t (body) VALUES (:body)"), [{"body": "正文" * 1000}] * 5)
    # 200 rows of ~6 KB: ~300 pages went through the WAL, and checkpoints copied them back.
    assert path.stat().st_size > 150 * 4096
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 200


def test_a_larger_page_cache_only_where_asked_and_a_lifo_pool(tmp_path):
    default = db.create_store_engine(f"sqlite:///{tmp_path / 'a.db'}")
    bulk = db.create_store_engine(f"sqlite:///{tmp_path / 'b.db'}", cache_mb=db.BULK_WRITER_CACHE_MB)
    with default.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -2000  # SQLite's own default
    with bulk.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -1024 * db.BULK_WRITER_CACHE_MB
    # The connection a batch returned is the one the next batch gets, cache and all.
    first = bulk.connect()
    second = bulk.connect()
    first_dbapi = first.connection.driver_connection
    second.close()
    first.close()
    with bulk.connect() as again:
        assert again.connection.driver_connection is first_dbapi


@pytest.mark.parametrize("service", ["column", "embed", "supervision", "indexer"])
def test_every_consumer_writes_its_store_with_the_larger_cache(tmp_path, monkeypatch, service):
    import importlib

    from services.common.settings import Settings

    module = importlib.import_module(f"services.{service}.app")
    target = importlib.import_module("services.indexer.embedded") if service == "indexer" else module
    asked: list[int | None] = []
    real = db.create_store_engine

    def recording(url, **options):
        asked.append(options.get("cache_mb"))
        return real(url, **options)

    monkeypatch.setattr(target, "create_store_engine", recording)
    if service == "indexer":
        module._index_at.cache_clear()
    module.create_consumer(for_consumers(Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path)))
    assert asked and set(asked) == {db.BULK_WRITER_CACHE_MB}


def test_the_migration_writes_the_publishers_store_with_the_larger_cache(tmp_path, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from services.cli import cli
    from services.common.settings import get_settings
    from services.publisher import app

    samples = Path(__file__).parents[2] / "data" / "migration"
    monkeypatch.setenv("TONGYUAN_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    engines = []
    real = app.bootstrap

    def recording(settings, **options):
        publisher = real(settings, **options)
        engines.append(publisher.engine)
        return publisher

    monkeypatch.setattr(app, "bootstrap", recording)
    try:
        result = CliRunner().invoke(cli, ["migrate", str(samples / "changsha-county.csv"), "--config", str(samples / "changsha-county.toml"), "--dry-run"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (engine,) = engines
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -1024 * db.BULK_WRITER_CACHE_MB
        # The migration shares the store with clerks' requests: its checkpoints stay small.
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == db.SQLITE_REQUEST_PATH_CHECKPOINT_PAGES
