"""SQLAlchemy engine factory: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Table, TextClause, bindparam, create_engine, event, insert, text
from sqlalchemy.engine import make_url

from .turns import TurnLock

PG_CONNECT_TIMEOUT = 5  # seconds to wait for PostgreSQL to accept a connection; libpq's minimum is 2
# A server host that vanishes mid-connection (no FIN, no RST) would otherwise leave a consumer
# waiting on its socket until the kernel gives up, ~15 minutes: TCP keepalives find an idle dead
# peer in ~25 s, and tcp_user_timeout fails a write nobody acknowledges within 30 s.
PG_LINK_CHECKS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000}


class JSONText(str):
    """A document pydantic already serialised: a JSON column stores it without encoding it again."""


def as_json(model: BaseModel) -> JSONText:
    return JSONText(model.model_dump_json())


def _serialise_json(value) -> str:
    return value if isinstance(value, JSONText) else json.dumps(value, ensure_ascii=False)


# Pages the WAL may hold before a commit copies them back into the database file. A
# consumer's batch dirties pages all over its indexes (publication ids are random), and each
# checkpoint writes and fsyncs them: at SQLite's default of 1,000 pages (4 MB) a migration's
# consumers spend much of their CPU in pwrite, pread and fdatasync. At 10,000 (40 MB of WAL a
# file) a page written by many batches is copied back once (`make bench-migration`).
SQLITE_CHECKPOINT_PAGES = 10_000
# The checkpoint runs inside whichever commit crosses the mark, holding the write lock. Where
# that commit is an HTTP request's (the publisher's store), SQLite's small default keeps each
# one short: 40 MB at once would hold a clerk's publish for as long as it takes to write.
SQLITE_REQUEST_PATH_CHECKPOINT_PAGES = 1_000


# Page cache of each connection of a process that writes a store in bulk: a consumer, or
# `tongyuan migrate` (SQLite's default is 2 MB). Every store keys its rows by publication id,
# which is random: at a migration's hundreds of thousands of rows the id indexes outgrow 2 MB,
# and each insert would read its index pages back from the file; 16 MB keeps them (more gains
# little). The portal keeps the default: it holds a pool of connections per store, where the
# cache would be multiplied.
BULK_WRITER_CACHE_MB = 16


def create_store_engine(url: str, *, pool_size: int = 5, checkpoint_pages: int | None = None, cache_mb: int | None = None) -> Engine:
    """An engine for a store. SQLite only: `checkpoint_pages` is the WAL's checkpoint mark
    (SQLITE_CHECKPOINT_PAGES when None); `cache_mb` each connection's page cache (SQLite's
    default when None)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        on_file = bool(database) and database != ":memory:"
        if on_file:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # LIFO: a consumer's batches keep taking the connection the last one returned, and with
        # it that connection's warm page cache (a heartbeat now and then takes another). An
        # in-memory database has a connection per thread, not a queue.
        pool = {"pool_use_lifo": True} if on_file else {}
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}, json_serializer=_serialise_json, **pool)
        pragmas = partial(_sqlite_pragmas, checkpoint_pages=SQLITE_CHECKPOINT_PAGES if checkpoint_pages is None else checkpoint_pages, cache_mb=cache_mb)
        event.listen(engine, "connect", pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        if on_file:
            _ENGINE_WRITERS[engine] = _writer_lock(database)
        return engine
    # A server that stops answering (host gone, packets dropped) would otherwise hold each new
    # connection, and so a consumer's retry or an HTTP request, for psycopg's default of 130 s.
    # Whatever the URL says wins over our defaults.
    connect_args = {key: value for key, value in {"connect_timeout": PG_CONNECT_TIMEOUT, **PG_LINK_CHECKS}.items() if key not in parsed.query}
    return create_engine(url, pool_size=pool_size, max_overflow=5, pool_pre_ping=True, connect_args=connect_args, json_serializer=_serialise_json)


def _sqlite_pragmas(dbapi_connection, _record, *, checkpoint_pages: int, cache_mb: int | None = None) -> None:
    # The Python driver's own transaction handling would defer BEGIN; we issue it ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL is durable against process crashes (kill -9), which is what offsets depend on.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
    if cache_mb is not None:
        cursor.execute(f"PRAGMA cache_size={-1024 * cache_mb}")  # negative: KiB, not pages
    cursor.close()


def _sqlite_begin(connection) -> None:
    # Writers take the write lock at BEGIN, so two processes never deadlock upgrading a read
    # lock (SQLite answers that with SQLITE_BUSY at once, ignoring busy_timeout); readers
    # begin deferred and never wait for a writer (WAL).
    if connection.get_execution_options().get(_WRITE):
        _begin_immediate(connection)
    else:
        connection.exec_driver_sql("BEGIN")


def _begin_immediate(connection) -> None:
    """BEGIN IMMEDIATE, asking again every millisecond while another process writes.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … then 100 ms between tries, so a writer
    that lost a few rounds to a busy neighbour (the portal's gate against the publisher's relay)
    slept for hundreds of milliseconds after the lock was free: that was the tail of
    publish → visible. Asking often costs a failed lock call per millisecond."""
    sqlite = connection.connection.driver_connection  # the pragmas and tries: µs each, not SQLAlchemy's ~50
    sqlite.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        while time.monotonic() < deadline:
            try:
                sqlite.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    break
                time.sleep(SQLITE_BUSY_POLL_SECONDS)
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # raises SQLAlchemy's error, as before
    finally:
        sqlite.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")


SQLITE_BUSY_SECONDS = 30
SQLITE_BUSY_POLL_SECONDS = 0.001
_WRITE = "tongyuan_write"
_WRITER_LOCKS: dict[str, TurnLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()
_ENGINE_WRITERS: weakref.WeakKeyDictionary[Engine, TurnLock] = weakref.WeakKeyDictionary()


def _writer_lock(database: str) -> TurnLock:
    """One lock per SQLite file in this process, shared by every engine on it."""
    key = str(Path(database).resolve())
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, TurnLock())


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on exit, rolled back on error.

    On SQLite, threads of one process queue for the file's write lock here, where the one
    after a commit starts at once, instead of in SQLite's busy handler (see _begin_immediate),
    where threads of the portal writing at once wait far longer."""
    writers = _ENGINE_WRITERS.get(engine)
    # Bounded like SQLite's own wait, so two stores written in opposite orders by two threads
    # fail as "database is locked" did instead of hanging.
    if writers is not None and not writers.acquire(timeout=SQLITE_BUSY_SECONDS):
        raise TimeoutError(f"no write lock on {engine.url.database} within {SQLITE_BUSY_SECONDS} s")
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection
    finally:
        if writers is not None:
            writers.release()


def others_waiting(engine: Engine) -> bool:
    """Another thread of this process waits to write this store (SQLite; PostgreSQL's writers
    do not queue for the file, so never)."""
    writers = _ENGINE_WRITERS.get(engine)
    return writers is not None and writers.waited_for()


# Events per part of a long batch (see write_in_turns). A clerk's batch that arrives while a
# migration's batch is written waits for at most one part instead of a whole batch of 2,000.
# Smaller parts cost the bulk writes more CPU for little less waiting (`make bench-turns`).
TURN_EVENTS = 500
P = TypeVar("P")


def write_in_turns(engine: Engine, parts: Sequence[P], write: Callable[[Connection, P], None]) -> None:
    """Write `parts` in order, in one transaction while no other thread of this process waits
    for the store; when one does, commit between two parts and let it write first.

    So a migration's batch (the bulk lane) never holds a clerk's (the canonical lane) for more
    than one part. Each `write` call must read what it depends on itself: a part after a turn
    was given up sees the other writer's commit. The caller acks the batch after all parts,
    and a replay of committed parts is skipped by version, like any redelivery."""
    done = 0
    while done < len(parts):
        with writing(engine) as connection:
            while True:
                write(connection, parts[done])
                done += 1
                if done == len(parts) or others_waiting(engine):
                    break


def in_parts(items: Sequence[P], size: int | None = None) -> list[Sequence[P]]:
    size = size or TURN_EVENTS
    return [items[start : start + size] for start in range(0, len(items), size)]


class Upsert:
    """INSERT … ON CONFLICT (…) DO UPDATE SET …, as text built once per dialect.

    SQLAlchemy 2.0 does not cache its dialects' ON CONFLICT constructs: it compiled them again
    on every execution, paid per batch by every consumer that keeps roll-ups. Text is cached like any statement. `set_` maps a column to an SQL expression
    over {table} and {excluded}; {least} and {greatest} are the dialect's two-argument min/max.
    Parameters are bound with the columns' own types, as an insert() would bind them."""

    def __init__(self, table: Table, *, conflict: Sequence[str], set_: Mapping[str, str], columns: Sequence[str] | None = None) -> None:
        self.table = table
        self.conflict = tuple(conflict)
        self.set_ = dict(set_)
        self.columns = tuple(columns) if columns is not None else tuple(column.key for column in table.columns)
        self._by_dialect: dict[str, TextClause] = {}

    def __call__(self, connection: Connection) -> TextClause:
        statement = self._by_dialect.get(connection.dialect.name)
        if statement is None:
            statement = self._by_dialect[connection.dialect.name] = self._build(connection)
        return statement

    def _build(self, connection: Connection) -> TextClause:
        quote = connection.dialect.identifier_preparer.quote
        postgresql = connection.dialect.name == "postgresql"
        names = {
            "table": quote(self.table.name),
            "excluded": "excluded",
            "least": "least" if postgresql else "min",
            "greatest": "greatest" if postgresql else "max",
        }
        columns = ", ".join(quote(name) for name in self.columns)
        values = ", ".join(f":{name}" for name in self.columns)
        updates = ", ".join(f"{quote(column)} = {expression.format(**names)}" for column, expression in self.set_.items())
        sql = f"INSERT INTO {names['table']} ({columns}) VALUES ({values}) ON CONFLICT ({', '.join(map(quote, self.conflict))}) DO UPDATE SET {updates}"
        return text(sql).bindparams(*(bindparam(name, type_=self.table.c[name].type) for name in self.columns))


_INSERT_PLANS: dict[tuple, tuple[str, tuple] | None] = {}


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping]) -> None:
    """INSERT many rows (executemany), each bound by its column's own type, as
    `connection.execute(insert(table), rows)` would, without SQLAlchemy's per-row parameter
    building, which the embed store (four feed rows per publication) pays per row. Every row
    has the keys of the first. A table whose columns have Python-side
    defaults for missing keys goes through SQLAlchemy as usual."""
    if not rows:
        return
    keys = tuple(rows[0])
    dialect = connection.dialect
    cache_key = (dialect.name, id(dialect), table, keys)
    if cache_key not in _INSERT_PLANS:
        _INSERT_PLANS[cache_key] = _insert_plan(dialect, table, keys)
    plan = _INSERT_PLANS[cache_key]
    if plan is None:
        connection.execute(insert(table), list(rows))
        return
    sql, fields = plan
    values: list[tuple[Any, ...]] | list[dict[str, Any]]
    if dialect.positional:
        values = [tuple(row[k] if p is None else p(row[k]) for k, p in fields) for row in rows]
    else:
        values = [{k: row[k] if p is None else p(row[k]) for k, p in fields} for row in rows]
    connection.exec_driver_sql(sql, values)


def _insert_plan(dialect, table: Table, keys: tuple[str, ...]):
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    if compiled.insert_prefetch or compiled.postfetch:
        return None
    order = tuple(compiled.positiontup or ()) if compiled.positional else keys
    if set(order) != set(keys):
        return None
    # (key, the column type's bind processor or None), in the statement's parameter order.
    return compiled.string, tuple((k, table.c[k].type.dialect_impl(dialect).bind_processor(dialect)) for k in order)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
