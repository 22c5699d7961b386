"""A long batch gives a waiting writer its turn (services/common/turns.py, db.write_in_turns).

A migration's batch and a clerk's are applied by two threads of one consumer, both writing
the same SQLite file. The clerk's must wait for one part of the migration's, not for all of it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, text

from services.common import db
from services.common.turns import TurnLock


def _queued(lock: TurnLock, count: int = 1, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(lock._waiting) < count:
        assert time.monotonic() < deadline, "the other thread never queued"
        time.sleep(0.001)


def test_a_release_hands_the_lock_to_the_longest_waiter_even_if_the_releaser_asks_again():
    lock, order = TurnLock(), []
    lock.acquire()

    def waiter(name: str) -> None:
        with lock:
            order.append(name)

    first = threading.Thread(target=waiter, args=("first",))
    first.start()
    _queued(lock, 1)
    second = threading.Thread(target=waiter, args=("second",))
    second.start()
    _queued(lock, 2)
    assert lock.waited_for()
    lock.release()
    # threading.Lock would let this acquire win (the waiters are only woken): here it queues.
    lock.acquire()
    order.append("releaser")
    lock.release()
    first.join(5)
    second.join(5)
    assert order == ["first", "second", "releaser"]
    assert not lock.waited_for()


def test_a_waiter_that_gives_up_leaves_the_queue_and_the_lock_stays_usable():
    lock = TurnLock()
    lock.acquire()
    assert lock.acquire(timeout=0.05) is False
    assert not lock.waited_for()
    lock.release()
    assert lock.acquire(timeout=0.05) is True
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


@pytest.fixture
def engine(tmp_path):
    engine = db.create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with db.writing(engine) as connection:
        connection.exec_driver_sql("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, writer TEXT)")
    commits: list[int] = []
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    yield engine, commits
    engine.dispose()


def _insert(connection, writer: str) -> None:
    connection.execute(text("INSERT INTO t (writer) VALUES (:w)"), {"w": writer})


def _writers_in_order(engine) -> list[str]:
    with engine.connect() as connection:
        return [row.writer for row in connection.execute(text("SELECT writer FROM t ORDER BY seq"))]


def test_with_nobody_waiting_every_part_goes_in_one_transaction(engine):
    engine, commits = engine
    db.write_in_turns(engine, ["a", "b", "c", "d"], _insert)
    assert _writers_in_order(engine) == ["a", "b", "c", "d"]
    assert len(commits) == 1


def test_a_writer_that_starts_waiting_mid_batch_writes_after_the_current_part(engine):
    engine, commits = engine
    clerk_waiting, clerk_done = threading.Event(), threading.Event()

    def clerk() -> None:
        clerk_waiting.set()
        with db.writing(engine) as connection:
            _insert(connection, "clerk")
        clerk_done.set()

    def bulk_part(connection, part: str) -> None:
        _insert(connection, part)
        if part == "bulk-1":
            # The clerk's batch arrives while the first part is being written.
            threading.Thread(target=clerk).start()
            assert clerk_waiting.wait(5)
            _queued(db._ENGINE_WRITERS[engine])

    db.write_in_turns(engine, ["bulk-1", "bulk-2", "bulk-3"], bulk_part)
    assert clerk_done.wait(5)
    assert _writers_in_order(engine) == ["bulk-1", "clerk", "bulk-2", "bulk-3"]
    assert len(commits) == 3  # bulk-1; the clerk's; bulk-2 and bulk-3 together again


def test_a_part_that_fails_rolls_back_its_own_transaction_only(engine):
    engine, _ = engine

    def write(connection, part: str) -> None:
        _insert(connection, part)
        if part == "bad":
            raise ValueError("refused")

    with pytest.raises(ValueError):
        db.write_in_turns(engine, ["a", "bad"], write)
    assert _writers_in_order(engine) == []  # one transaction while nobody waited: nothing kept


def test_parts_split_a_batch_in_order_without_losing_anything():
    assert db.in_parts(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert db.in_parts([], 3) == []
    assert sum(len(part) for part in db.in_parts(list(range(2001)))) == 2001
