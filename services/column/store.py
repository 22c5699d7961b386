"""The column store: what the public disclosure column shows. Only the column consumer writes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from contracts.catalog import Catalog
from contracts.events import (
    CatalogChangedEvent,
    PublicationData,
    PublishedEvent,
    WithdrawalData,
    WithdrawnEvent,
)
from services.common.catalog_copy import CatalogCopy, catalog_copy_table, keep_newest
from services.common.db import as_json, in_parts, insert_rows, write_in_turns, writing
from services.common.heartbeat import heartbeat_table
from services.common.projection import InThread, LedgeredStore, Projection, held_versions, publications_table, publications_to_apply
from services.common.sanitise import sanitise_html
from services.common.schema import ensure as ensure_schema

metadata = MetaData()

documents = publications_table(
    "column_publications",
    metadata,
    Column("withdrawal_type", String(16)),
    Column("published_at", DateTime(timezone=True)),
    Column("document", JSON),  # PublicationData; none once withdrawn (the notice shows the withdrawal)
    Column("withdrawal", JSON),  # WithdrawalData while withdrawn
)

# One row per placement of a live publication: the list pages read only this table.
placements = Table(
    "column_placements",
    metadata,
    Column("publication_id", String(80), nullable=False),
    Column("region_code", String(20), nullable=False),
    Column("domain_code", String(8), nullable=False),
    Column("level1_id", String(16), nullable=False),
    Column("level2_id", String(16), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("title", String(200), nullable=False),
    # Names as filed: what the archive shows for an item a later edition dropped.
    Column("level1_name", String(200), nullable=False),
    Column("level2_name", String(200), nullable=False),
    Index("ix_column_placements_list", "region_code", "domain_code", "level1_id", "level2_id", "published_at"),
    Index("ix_column_placements_publication", "publication_id"),
)

# The catalog edition in force per scope, from catalog.changed events: the column's own copy.
catalogs = catalog_copy_table(metadata, "column")

heartbeats = heartbeat_table(metadata, "column")


@dataclass
class ListedItem:
    publication_id: str
    title: str
    published_at: datetime


@dataclass
class ColumnEntry:
    publication_id: str
    version: int
    status: str
    document: PublicationData | None
    withdrawal: WithdrawalData | None


class ColumnStore(LedgeredStore):
    ledger = documents

    def __init__(self, engine: Engine, catalog_ttl: float = 2.0):
        self.engine = engine
        self._catalog_copy = CatalogCopy(engine, catalogs, ttl=catalog_ttl)

    def create(self) -> None:
        ensure_schema(self.engine, "column")

    # --- the consumer's side ------------------------------------------------------------
    def catalog_projection(self) -> Projection[CatalogChangedEvent]:
        """What the column consumer applies catalog editions to (apply_catalogs, in a thread)."""
        return InThread(self.apply_catalogs, self.healthy)

    def apply(self, events: Sequence[PublishedEvent | WithdrawnEvent]) -> None:
        """Apply a batch, skipping versions the store already has: in one transaction, or in
        turns with a clerk's batch that is waiting (write_in_turns).

        One statement per kind of row for each part: per-event statements cost more in
        SQLAlchemy's statement building than in the database."""
        write_in_turns(self.engine, in_parts(events), self._apply_part)

    def _apply_part(self, connection: Connection, events: Sequence[PublishedEvent | WithdrawnEvent]) -> None:
        stored = held_versions(connection, documents, list({e.data.publication_id for e in events}))
        inserted: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        placement_rows: list[dict[str, Any]] = []
        for event in publications_to_apply(events, stored):
            if isinstance(event, PublishedEvent):
                row, placed = _published(event.data)
                placement_rows += placed
            else:
                row = _tombstone(event.data)
            publication_id = event.data.publication_id
            if publication_id in stored:
                updated.append({"pid": publication_id, **row})
            else:
                inserted.append({"publication_id": publication_id, "published_at": None, "document": None, **row})
        self._write(connection, inserted, updated, placement_rows)

    @staticmethod
    def _write(connection: Connection, inserted: list[dict[str, Any]], updated: list[dict[str, Any]], placement_rows: list[dict[str, Any]]) -> None:
        now = datetime.now(timezone.utc)
        if updated:
            stale = [row["pid"] for row in updated]
            for start in range(0, len(stale), 500):
                connection.execute(delete(placements).where(placements.c.publication_id.in_(stale[start : start + 500])))
            # Published and withdrawn rows set different columns, so they go as two statements.
            for keys in {tuple(sorted(row)) for row in updated}:
                rows = [dict(row, updated_at=now) for row in updated if tuple(sorted(row)) == keys]
                columns: dict[str, Any] = {k: bindparam(k) for k in keys if k != "pid"}
                connection.execute(
                    update(documents).where(documents.c.publication_id == bindparam("pid")).values(updated_at=bindparam("updated_at"), **columns), rows
                )
        if inserted:
            insert_rows(connection, documents, [dict(row, updated_at=now) for row in inserted])
        if placement_rows:
            insert_rows(connection, placements, placement_rows)

    def apply_catalogs(self, events: Sequence[CatalogChangedEvent]) -> None:
        """Keep each scope's newest edition (by the scope's publish version)."""
        with writing(self.engine) as connection:
            keep_newest(connection, catalogs, events)
        self._catalog_copy.expire()

    def catalog_versions(self) -> dict[str, int]:
        """Scope → the version of the catalog edition this store holds."""
        return self._catalog_copy.versions()

    def catalogs(self) -> dict[str, Catalog]:
        """Scope → edition in force; cached briefly, since every page needs it."""
        return self._catalog_copy.current()

    def archived_items(self, region_prefix: str, domain_code: str, in_force: set[str]) -> list[tuple[str, str, str, int]]:
        """Items with live publications that the catalog in force no longer has:
        (level-1 id, level-2 id, level-2 name as filed, count)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    placements.c.level1_id, placements.c.level2_id, func.max(placements.c.level2_name), func.count(func.distinct(placements.c.publication_id))
                )
                .where(placements.c.region_code.startswith(region_prefix, autoescape=True), placements.c.domain_code == domain_code)
                .group_by(placements.c.level1_id, placements.c.level2_id)
            ).all()
        return [(l1, l2, name, count) for l1, l2, name, count in rows if l2 not in in_force]

    def filed_name(self, level2_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(select(placements.c.level2_name).where(placements.c.level2_id == level2_id).limit(1)).scalar()

    # --- the pages' side ----------------------------------------------------------------
    def entry(self, publication_id: str) -> ColumnEntry | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(documents).where(documents.c.publication_id == publication_id)).mappings().first()
        if row is None:
            return None
        return ColumnEntry(
            publication_id=row["publication_id"],
            version=row["version"],
            status=row["status"],
            document=PublicationData.model_validate(row["document"]) if row["document"] else None,
            withdrawal=WithdrawalData.model_validate(row["withdrawal"]) if row["withdrawal"] else None,
        )

    def counts_by_domain(self, region_prefix: str) -> dict[str, tuple[int, datetime | None]]:
        """Live publications and latest update per domain, for a region and its sub-regions."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(placements.c.domain_code, func.count(func.distinct(placements.c.publication_id)), func.max(placements.c.published_at))
                .where(placements.c.region_code.startswith(region_prefix, autoescape=True))
                .group_by(placements.c.domain_code)
            ).all()
        return {domain: (count, latest) for domain, count, latest in rows}

    def counts_by_item(self, region_prefix: str, domain_code: str) -> dict[str, int]:
        """Live publications per level-1 and per level-2 item of a domain."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(placements.c.level1_id, placements.c.level2_id, func.count(func.distinct(placements.c.publication_id)))
                .where(placements.c.region_code.startswith(region_prefix, autoescape=True), placements.c.domain_code == domain_code)
                .group_by(placements.c.level1_id, placements.c.level2_id)
            ).all()
        counts: dict[str, int] = {}
        for level1, level2, count in rows:
            counts[level2] = count
            counts[level1] = counts.get(level1, 0) + count
        return counts

    def listing(
        self,
        region_prefix: str,
        *,
        domain_code: str | None = None,
        level1_id: str | None = None,
        level2_id: str | None = None,
        page: int = 1,
        per_page: int = 20,
    ) -> tuple[int, list[ListedItem]]:
        """Newest first; a publication filed under several matching items is listed once."""
        conditions = [placements.c.region_code.startswith(region_prefix, autoescape=True)]
        if domain_code:
            conditions.append(placements.c.domain_code == domain_code)
        if level1_id:
            conditions.append(placements.c.level1_id == level1_id)
        if level2_id:
            conditions.append(placements.c.level2_id == level2_id)
        distinct = (
            select(placements.c.publication_id, func.max(placements.c.title).label("title"), func.max(placements.c.published_at).label("published_at"))
            .where(*conditions)
            .group_by(placements.c.publication_id)
            .subquery()
        )
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(distinct)).scalar_one()
            rows = connection.execute(
                select(distinct).order_by(distinct.c.published_at.desc(), distinct.c.publication_id).limit(per_page).offset((page - 1) * per_page)
            ).all()
        return total, [ListedItem(r.publication_id, r.title, r.published_at) for r in rows]


def _published(data: PublicationData) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A publication's row and its placements' rows."""
    # Cleaned with the gate's policy before it is stored: the topic is not the gate.
    data = data.model_copy(update={"body_html": sanitise_html(data.body_html)})
    row = dict(version=data.version, status="published", withdrawal_type=None, published_at=data.published_at, document=as_json(data), withdrawal=None)
    placed = [
        dict(
            publication_id=data.publication_id,
            region_code=p.region_code,
            domain_code=p.domain_code,
            level1_id=p.level1_id,
            level2_id=p.level2_id,
            published_at=data.published_at,
            title=data.title,
            level1_name=p.level1_name,
            level2_name=p.level2_name,
        )
        for p in data.placements
    ]
    return row, placed


def _tombstone(data: WithdrawalData) -> dict[str, Any]:
    # Withdrawn content (低保 lists hold personal data) is not kept where pages read; the
    # publisher keeps the record.
    return dict(version=data.version, status="withdrawn", withdrawal_type=data.withdrawal_type, document=None, withdrawal=as_json(data))
