"""SQLAlchemy engine factory: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url

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


def create_store_engine(url: str, *, pool_size: int = 5) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, json_serializer=_serialise_json)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A server that stops answering (host gone, packets dropped) would otherwise hold each new
    # connection, and so a consumer's retry or an HTTP request, for psycopg's default of 130 s.
    # Whatever the URL says wins over our defaults.
    connect_args = {key: value for key, value in {"connect_timeout": PG_CONNECT_TIMEOUT, **PG_LINK_CHECKS}.items() if key not in parsed.query}
    return create_engine(url, pool_size=pool_size, max_overflow=5, pool_pre_ping=True, connect_args=connect_args, json_serializer=_serialise_json)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The Python driver's own transaction handling would defer BEGIN; we issue it ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL is durable against process crashes (kill -9), which is what offsets depend on.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # Writers take the write lock at BEGIN, so two processes never deadlock upgrading a read
    # lock (SQLite answers that with SQLITE_BUSY at once, ignoring busy_timeout); readers
    # begin deferred and never wait for a writer (WAL).
    if connection.get_execution_options().get(_WRITE):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


_WRITE = "tongyuan_write"


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on exit, rolled back on error."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


def create_tables(engine: Engine, metadata: MetaData) -> None:
    metadata.create_all(engine)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
