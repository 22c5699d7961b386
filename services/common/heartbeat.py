"""Consumer heartbeats, kept in each consumer's own store (a `<store>_heartbeats` table).

The portal's /healthz reads them, so it learns whether a consumer is alive without
calling it (consumers never serve HTTP) and without any consumer knowing about the portal.
A reader names the store (`store_heartbeats`) instead of importing the store's tables.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from functools import cache

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    select,
)

from .db import writing


def heartbeat_table(metadata: MetaData, store: str) -> Table:
    return Table(
        f"{store}_heartbeats",
        metadata,
        Column("worker", String(200), primary_key=True),
        Column("group_id", String(100), nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False),
        Column("applied", Integer, nullable=False, default=0),
        Column("dead_lettered", Integer, nullable=False, default=0),
        Column("lag", Integer),  # messages behind the end of its partitions, when known
    )


@cache
def store_heartbeats(store: str) -> Table:
    """The heartbeat table the store named `store` keeps, for reading it from outside the
    store's own module (the same name and columns as `heartbeat_table` gives the store)."""
    return heartbeat_table(MetaData(), store)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(engine: Engine, table: Table, *, group_id: str, applied: int, dead_lettered: int, lag: int | None = None) -> None:
    now = datetime.now(timezone.utc)
    worker = worker_name()
    with writing(engine) as connection:
        updated = connection.execute(
            table.update().where(table.c.worker == worker).values(seen_at=now, applied=applied, dead_lettered=dead_lettered, lag=lag)
        ).rowcount
        if not updated:
            connection.execute(table.insert().values(worker=worker, group_id=group_id, seen_at=now, applied=applied, dead_lettered=dead_lettered, lag=lag))


def live_workers(engine: Engine, table: Table, *, within: float) -> list[dict]:
    since = datetime.now(timezone.utc) - timedelta(seconds=within)
    with engine.connect() as connection:
        rows = connection.execute(select(table)).mappings().all()
    live = []
    for row in rows:
        seen = row["seen_at"] if row["seen_at"].tzinfo else row["seen_at"].replace(tzinfo=timezone.utc)
        if seen >= since:
            live.append(dict(row))
    return live
