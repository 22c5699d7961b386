"""The projection port: what every consumer's read model (column, embed, supervision, search)
offers the consuming loop, and the one version rule they all follow.

The rule (DESIGN.md, "idempotent consumers by version", "versioned tombstones"):
- within a batch only the newest version of each publication matters;
- a version is applied only when it is above the one held, so a duplicate or a replay
  changes nothing and an older version arriving late is ignored;
- a withdrawal is held as a tombstone with its version, so a late older publish cannot
  bring withdrawn content back.

Catalog editions follow the same rule per scope (`newest(..., key=scope_of)`).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, bindparam, literal_column, select, update
from sqlalchemy.engine import Connection, Engine

from contracts.events import PublishedEvent, WithdrawnEvent

from .db import insert_rows

PublicationEvent = PublishedEvent | WithdrawnEvent


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


class Versioned(Protocol):
    """An event whose data carries a version (publications, catalog editions)."""

    @property
    def data(self) -> _Versioned: ...


E = TypeVar("E", bound=Versioned)
T = TypeVar("T")  # what a projection is built from: events, or (the bridge) other records


class Projection(ABC, Generic[T]):
    """A read model built from a stream of versioned events.

    `apply` writes a batch durably before it returns (the consumer acks only then) and
    returns what it refused for good; trouble worth waiting for (a store down) raises, and
    the consuming loop retries with backoff. Blocking stores run their write in a thread
    (InThread), so every projection is awaited the same way."""

    @abstractmethod
    async def apply(self, events: Sequence[T]) -> list[tuple[T, str]]: ...

    @abstractmethod
    async def healthy(self) -> bool: ...


class InThread(Projection[T]):
    """A blocking store's write as a Projection: it runs in a worker thread, off the event loop
    where faust fetches, commits and beats."""

    def __init__(self, write: Callable[[Sequence[T]], Iterable[tuple[T, str]] | None], healthy: Callable[[], bool] | None = None) -> None:
        self._write = write
        self._healthy = healthy

    async def apply(self, events: Sequence[T]) -> list[tuple[T, str]]:
        refused = await asyncio.to_thread(self._write, events)
        return list(refused or [])

    async def healthy(self) -> bool:
        return True if self._healthy is None else await asyncio.to_thread(self._healthy)


# --- the version rule -----------------------------------------------------------------------


def publication_of(event: PublicationEvent) -> str:
    return event.data.publication_id


def newest(events: Iterable[E], key: Callable[[E], str]) -> dict[str, E]:
    """Each key's event with the highest version in the batch (the first of equals)."""
    found: dict[str, E] = {}
    for event in events:
        held = found.get(key(event))
        if held is None or event.data.version > held.data.version:
            found[key(event)] = event
    return found


def newest_per_publication(events: Iterable[PublicationEvent]) -> dict[str, PublicationEvent]:
    return newest(events, publication_of)


def to_apply(events: Iterable[E], held: Mapping[str, int], key: Callable[[E], str]) -> list[E]:
    """The batch's newest event per key whose version is above the one held (0: none)."""
    return [event for k, event in newest(events, key).items() if event.data.version > held.get(k, 0)]


def publications_to_apply(events: Iterable[PublicationEvent], held: Mapping[str, int]) -> list[PublicationEvent]:
    return to_apply(events, held, publication_of)


# --- the per-store publication table ----------------------------------------------------------

PUBLISHED, WITHDRAWN = "published", "withdrawn"
_CHUNK = 500


def publications_table(name: str, metadata: MetaData, *columns: Column) -> Table:
    """A store's ledger of versions: one row per publication it has seen, tombstones included
    (status withdrawn keeps the version that withdrew it). `columns`: the store's own."""
    return Table(
        name,
        metadata,
        Column("publication_id", String(80), primary_key=True),
        Column("version", Integer, nullable=False),
        Column("status", String(16), nullable=False),  # published | withdrawn (a tombstone)
        *columns,
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def status_of(event: PublicationEvent) -> str:
    return PUBLISHED if isinstance(event, PublishedEvent) else WITHDRAWN


def held_versions(connection: Connection, table: Table, publication_ids: Sequence[str]) -> dict[str, int]:
    """The versions `table` holds of these publications (tombstones included)."""
    found: dict[str, int] = {}
    for start in range(0, len(publication_ids), _CHUNK):
        chunk = publication_ids[start : start + _CHUNK]
        rows = connection.execute(select(table.c.publication_id, table.c.version).where(table.c.publication_id.in_(chunk)))
        found.update(rows.tuples().all())
    return found


def record_versions(connection: Connection, table: Table, applied: Sequence[PublicationEvent], held: Mapping[str, int], now: datetime) -> None:
    """Write the ledger rows of the events applied: an update where a row was held, else an insert."""
    rows = [{"publication_id": publication_of(e), "version": e.data.version, "status": status_of(e), "updated_at": now} for e in applied]
    known = [dict(row, pid=row["publication_id"]) for row in rows if row["publication_id"] in held]
    if known:
        connection.execute(
            update(table)
            .where(table.c.publication_id == bindparam("pid"))
            .values(version=bindparam("version"), status=bindparam("status"), updated_at=bindparam("updated_at")),
            known,
        )
    fresh = [row for row in rows if row["publication_id"] not in held]
    if fresh:
        insert_rows(connection, table, fresh)


class LedgeredStore(ABC):
    """What the SQL read models share: an engine, a ledger of versions (publications_table),
    a blocking `apply` for the consumer (run in a thread by `projection()`) and for tests and
    the operations' checks, and the version look-ups `tongyuan verify` compares."""

    engine: Engine
    ledger: ClassVar[Table]

    @abstractmethod
    def apply(self, events: Sequence[PublicationEvent]) -> None: ...

    def projection(self) -> Projection[PublicationEvent]:
        """What the store's consumer applies publications to."""
        return InThread(self.apply, self.healthy)

    def versions(self) -> dict[str, tuple[int, str]]:
        ledger = self.ledger
        with self.engine.connect() as connection:
            rows = connection.execute(select(ledger.c.publication_id, ledger.c.version, ledger.c.status))
            return {publication_id: (version, status) for publication_id, version, status in rows}

    def version_of(self, publication_id: str) -> int | None:
        with self.engine.connect() as connection:
            return held_versions(connection, self.ledger, [publication_id]).get(publication_id)

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(literal_column("1")))
            return True
        except Exception:
            return False
