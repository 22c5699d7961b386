"""The catalog's tables — editions and regions — in the publisher's database, and their queries.

`CatalogStore` works inside a transaction of the publisher (`Publisher.transaction`), so an
edition's publication, its event and the publications it re-issues commit together; `Catalogs`
reads over the engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Connection, DateTime, Engine, Integer, MetaData, String, Table, func, insert, select, text, update

from contracts.catalog import Catalog, Region
from services.common.db import writing
from services.common.schema import ensure as ensure_schema

metadata = MetaData()

# Catalog editions: drafts are edited (Excel import), published ones never change.
catalog_editions = Table(
    "publisher_catalog_editions",
    metadata,
    Column("scope", String(20), primary_key=True),  # "standard" or a region code
    Column("edition", String(40), primary_key=True),
    Column("status", String(12), nullable=False),  # draft | published
    Column("derived_from", String(80)),
    Column("version", Integer),  # publish sequence within the scope; the newest is current
    Column("document", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True)),
)

regions = Table(
    "publisher_regions",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("level", String(16), nullable=False),
    Column("parent_code", String(20)),
)


# Plain SQL, built once: it runs before every request and batch, and SQLAlchemy's cache key for
# the same three subqueries as a select() costs more than the query.
_DIRECTORY_STAMP = text(
    f"SELECT (SELECT count(*) FROM {catalog_editions.name} WHERE status = 'published'),"
    f" (SELECT coalesce(sum(version), 0) FROM {catalog_editions.name} WHERE status = 'published'),"
    f" (SELECT count(*) FROM {regions.name})"
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class CatalogStore:
    """The catalog's queries over one open connection (the publisher's transaction's)."""

    def __init__(self, connection: Connection):
        self.connection = connection

    def edition(self, scope: str, edition: str) -> tuple[Catalog, str, int | None] | None:
        row = self.connection.execute(
            select(catalog_editions.c.document, catalog_editions.c.status, catalog_editions.c.version).where(
                catalog_editions.c.scope == scope, catalog_editions.c.edition == edition
            )
        ).first()
        return (Catalog.model_validate(row.document), row.status, row.version) if row else None

    def save_draft(self, catalog: Catalog) -> None:
        values = dict(status="draft", derived_from=catalog.derived_from, document=json.loads(catalog.model_dump_json()), updated_at=_now())
        updated = self.connection.execute(
            update(catalog_editions)
            .where(catalog_editions.c.scope == catalog.scope, catalog_editions.c.edition == catalog.edition, catalog_editions.c.status == "draft")
            .values(**values)
        ).rowcount
        if not updated:
            self.connection.execute(insert(catalog_editions).values(scope=catalog.scope, edition=catalog.edition, **values))

    def mark_published(self, scope: str, edition: str) -> int:
        latest = self.connection.execute(select(func.max(catalog_editions.c.version)).where(catalog_editions.c.scope == scope)).scalar() or 0
        self.connection.execute(
            update(catalog_editions)
            .where(catalog_editions.c.scope == scope, catalog_editions.c.edition == edition)
            .values(status="published", version=latest + 1, published_at=_now(), updated_at=_now())
        )
        return latest + 1

    def current_catalogs(self) -> dict[str, Catalog]:
        """Each scope's newest published edition."""
        rows = self.connection.execute(
            select(catalog_editions.c.scope, catalog_editions.c.version, catalog_editions.c.document).where(catalog_editions.c.status == "published")
        ).all()
        newest: dict[str, tuple[int, dict]] = {}
        for scope, version, document in rows:
            if scope not in newest or version > newest[scope][0]:
                newest[scope] = (version, document)
        return {scope: Catalog.model_validate(document) for scope, (_, document) in newest.items()}

    def editions(self) -> list[dict]:
        rows = self.connection.execute(
            select(
                catalog_editions.c.scope,
                catalog_editions.c.edition,
                catalog_editions.c.status,
                catalog_editions.c.version,
                catalog_editions.c.derived_from,
                catalog_editions.c.published_at,
            ).order_by(catalog_editions.c.scope, catalog_editions.c.edition)
        ).mappings()
        return [dict(r) for r in rows]

    def save_regions(self, region_list: tuple[Region, ...]) -> None:
        existing = {r for (r,) in self.connection.execute(select(regions.c.code))}
        fresh = [r.model_dump() for r in region_list if r.code not in existing]
        if fresh:
            self.connection.execute(insert(regions), fresh)

    def regions(self) -> dict[str, Region]:
        rows = self.connection.execute(select(regions)).mappings().all()
        return {r["code"]: Region.model_validate(dict(r)) for r in rows}

    def directory_stamp(self) -> tuple[int, int, int]:
        """Changes whenever an edition is published or a region added, by any process: published
        editions and regions are only ever added, never edited or removed."""
        row = self.connection.execute(_DIRECTORY_STAMP).one()
        return (row[0], row[1], row[2])


class Catalogs:
    """The catalog's tables over the publisher's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        ensure_schema(self.engine, "publisher")  # the catalog's tables are the publisher store's

    @contextmanager
    def reading(self) -> Iterator[CatalogStore]:
        with self.engine.connect() as connection:
            yield CatalogStore(connection)

    @contextmanager
    def writing(self) -> Iterator[CatalogStore]:
        with writing(self.engine) as connection:
            yield CatalogStore(connection)

    def in_force(self) -> dict[str, Catalog]:
        """Each scope's newest published edition."""
        with self.reading() as store:
            return store.current_catalogs()

    def regions(self) -> dict[str, Region]:
        with self.reading() as store:
            return store.regions()

    def directory_stamp(self) -> tuple[int, int, int]:
        with self.reading() as store:
            return store.directory_stamp()

    def editions(self) -> list[dict[str, Any]]:
        with self.reading() as store:
            return store.editions()

    def edition(self, scope: str, edition: str) -> tuple[Catalog, str, int | None] | None:
        with self.reading() as store:
            return store.edition(scope, edition)
