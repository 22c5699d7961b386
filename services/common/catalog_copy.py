"""A consumer's own copy of the catalog editions in force, kept from catalog.changed events.

The column and supervision render catalogs without asking the publisher: each keeps, per scope
(standard, a county, a township), the newest edition it was sent, in a table of its store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

from sqlalchemy import JSON, Column, Connection, Engine, Integer, MetaData, String, Table, insert, select, update

from contracts.catalog import Catalog
from contracts.events import CatalogChangedEvent

from .projection import newest, to_apply

_CHUNK = 500


def catalog_copy_table(metadata: MetaData, store: str) -> Table:
    return Table(
        f"{store}_catalogs",
        metadata,
        Column("scope", String(20), primary_key=True),
        Column("edition", String(40), nullable=False),
        Column("version", Integer, nullable=False),
        Column("document", JSON, nullable=False),
    )


def scope_of(event: CatalogChangedEvent) -> str:
    return event.data.scope


def newest_by_scope(events: Sequence[CatalogChangedEvent]) -> dict[str, CatalogChangedEvent]:
    """Each scope's event with the highest publish version in the batch."""
    return newest(events, scope_of)


def keep_newest(connection: Connection, table: Table, events: Sequence[CatalogChangedEvent]) -> None:
    """Store each scope's newest edition unless the copy already holds a later one (a replay
    or a late delivery never moves a scope back): the projections' version rule, per scope."""
    scopes = list({scope_of(event) for event in events})
    stored = dict(connection.execute(select(table.c.scope, table.c.version).where(table.c.scope.in_(scopes))).tuples().all())
    for event in to_apply(events, stored, scope_of):
        values = dict(edition=event.data.edition, version=event.data.version, document=json.loads(event.data.catalog.model_dump_json()))
        if event.data.scope in stored:
            connection.execute(update(table).where(table.c.scope == event.data.scope).values(**values))
        else:
            connection.execute(insert(table).values(scope=event.data.scope, **values))


class CatalogCopy:
    """Scope → edition in force, as pages need it on every request: looked up again every
    `ttl` seconds (or at once after `expire`), and a scope's document parsed again only when
    its version moved, so unchanged catalogs stay the same objects (and keep their caches)."""

    def __init__(self, engine: Engine, table: Table, ttl: float = 2.0) -> None:
        self.engine = engine
        self.table = table
        self.ttl = ttl
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._held: dict[str, tuple[int, Catalog]] = {}

    def expire(self) -> None:
        self._checked_at = float("-inf")

    def versions(self) -> dict[str, int]:
        """Scope → the version of the edition held, read now (for `tongyuan verify`)."""
        with self.engine.connect() as connection:
            return dict(connection.execute(select(self.table.c.scope, self.table.c.version)).tuples().all())

    def current(self) -> dict[str, Catalog]:
        with self._lock:
            # An empty copy is looked up every time: the first catalog event may land any moment.
            if not self._held or time.monotonic() - self._checked_at > self.ttl:
                self._refresh()
            return {scope: catalog for scope, (_, catalog) in self._held.items()}

    def _refresh(self) -> None:
        table = self.table
        with self.engine.connect() as connection:
            versions = dict(connection.execute(select(table.c.scope, table.c.version)).tuples().all())
            stale = [scope for scope, version in versions.items() if scope not in self._held or self._held[scope][0] != version]
            fresh: dict[str, tuple[int, Catalog]] = {}
            for start in range(0, len(stale), _CHUNK):
                rows = connection.execute(select(table.c.scope, table.c.version, table.c.document).where(table.c.scope.in_(stale[start : start + _CHUNK])))
                for scope, version, document in rows:
                    fresh[scope] = (version, Catalog.model_validate(document))
        self._held = {scope: fresh.get(scope) or self._held[scope] for scope in versions if scope in fresh or scope in self._held}
        self._checked_at = time.monotonic()
