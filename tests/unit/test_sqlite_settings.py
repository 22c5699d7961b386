"""What every SQLite store connection is set to (services/common/db.py): WAL, NORMAL sync, a
longer WAL before checkpoints; and that the WAL is still copied back into the file."""

from __future__ import annotations

from sqlalchemy import text

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
