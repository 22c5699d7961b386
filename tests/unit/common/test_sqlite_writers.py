"""How SQLite write transactions wait for each other (services/common/db.py).

Threads of one process queue on a lock of ours; another process is asked again every
millisecond. Both replace SQLite's busy handler, whose sleeps grow to 100 ms and made
the tail of publish → visible."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from services.common import db


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "store.db"
    engine = db.create_store_engine(f"sqlite:///{path}")
    with db.writing(engine) as connection:
        connection.exec_driver_sql("CREATE TABLE t (writer TEXT)")
    yield path, engine
    engine.dispose()


@pytest.fixture
def sleeps(monkeypatch):
    """Every sleep of db's polling loop, in seconds."""
    recorded: list[float] = []
    monkeypatch.setattr(db.time, "sleep", recorded.append)
    return recorded


def _hold_write_lock(path, released: threading.Event, *, until: threading.Event) -> threading.Thread:
    """Another process's writer, as SQLite sees it: a connection outside our engines. Returns
    once it holds the lock."""
    holding = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES ('other')")
        holding.set()
        until.wait(10)
        other.execute("COMMIT")
        other.close()
        released.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    return thread


def test_threads_of_one_process_queue_on_our_lock_and_never_meet_sqlites_busy_wait(database, sleeps):
    path, engine = database
    same_file = db.create_store_engine(f"sqlite:///{path}")  # another store object on the same file
    holding, finished = threading.Event(), []

    def second_writer() -> None:
        holding.wait(5)
        with db.writing(same_file) as connection:
            connection.execute(text("INSERT INTO t VALUES ('second')"))
        finished.append("second")

    thread = threading.Thread(target=second_writer)
    thread.start()
    with db.writing(engine) as connection:
        connection.execute(text("INSERT INTO t VALUES ('first')"))
        holding.set()
        thread.join(0.3)
        assert thread.is_alive(), "the second writer did not wait for the first"
        finished.append("first")
    thread.join(5)

    assert finished == ["first", "second"]
    assert sleeps == [], "a thread of the same process was left to poll SQLite's lock"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT writer FROM t ORDER BY rowid")).scalars().all() == ["first", "second"]
    same_file.dispose()


def test_a_writer_asks_again_every_millisecond_while_another_process_writes(database, sleeps, monkeypatch):
    path, engine = database
    release, released = threading.Event(), threading.Event()
    holder = _hold_write_lock(path, released, until=release)
    # Let the other writer go after a few polls (time.sleep is recorded, not slept).
    monkeypatch.setattr(db.time, "sleep", lambda seconds: (sleeps.append(seconds), len(sleeps) == 5 and (release.set(), released.wait(5))))

    with db.writing(engine) as connection:
        connection.execute(text("INSERT INTO t VALUES ('ours')"))
        # SQLite's own wait is back for the statements inside the transaction.
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_SECONDS * 1000
    holder.join(5)

    assert len(sleeps) >= 5 and set(sleeps) == {db.SQLITE_BUSY_POLL_SECONDS}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT writer FROM t ORDER BY rowid")).scalars().all() == ["other", "ours"]


def test_a_writer_gives_up_with_sqlalchemys_locked_error_when_the_other_never_commits(database, monkeypatch):
    path, engine = database
    monkeypatch.setattr(db, "SQLITE_BUSY_SECONDS", 0.2)
    release, released = threading.Event(), threading.Event()
    holder = _hold_write_lock(path, released, until=release)
    try:
        with pytest.raises(OperationalError, match="locked"):
            with db.writing(engine) as connection:
                connection.execute(text("INSERT INTO t VALUES ('ours')"))
    finally:
        release.set()
        holder.join(5)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT writer FROM t")).scalars().all() == ["other"]
        # and the connection went back to the pool with SQLite's wait restored
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200


def test_a_thread_gives_up_when_another_thread_holds_the_file_too_long(database, monkeypatch):
    _path, engine = database
    monkeypatch.setattr(db, "SQLITE_BUSY_SECONDS", 0.2)
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with db.writing(engine):
            holding.set()
            done.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(5)
    try:
        with pytest.raises(TimeoutError, match="write lock"):
            with db.writing(engine):
                pass
    finally:
        done.set()
        thread.join(5)
