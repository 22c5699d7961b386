"""The embedded search backend: SQLite FTS5 over Chinese bigrams (see tokenize.py).

Always a SQLite file, even when the other stores are on PostgreSQL: FTS5 is the point.
The indexer consumer is its only writer; the portal reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.engine import Connection

from contracts.events import PublishedEvent
from services.common.db import create_store_engine, writing
from services.common.heartbeat import heartbeat_table

from .index import (
    Event,
    SearchIndex,
    SearchQuery,
    SearchResults,
    as_utc,
    document_of,
    hit_of,
    newest_per_publication,
    searchable_text,
)
from .tokenize import both_terms, query_expression

metadata = MetaData()

documents = Table(
    "search_documents",
    metadata,
    # An explicit INTEGER PRIMARY KEY is SQLite's rowid, stable across VACUUM, so the FTS
    # rows can be keyed by it; publication_id is the natural key.
    Column("id", Integer, primary_key=True),
    Column("publication_id", String(80), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # published | withdrawn (a tombstone)
    Column("published_at", DateTime, nullable=True),  # naive UTC, for ordering
    Column("document", Text, nullable=True),  # JSON of index.document_of; NULL for tombstones
)

placements = Table(
    "search_placements",
    metadata,
    Column("document_id", Integer, ForeignKey("search_documents.id", ondelete="CASCADE"), nullable=False),
    Column("region_code", String(20), nullable=False),
    Column("domain_code", String(8), nullable=False),
    Index("search_placements_region", "region_code", "domain_code"),
    Index("search_placements_document", "document_id"),
)

heartbeats = heartbeat_table(metadata, "search")

# title and body carry bigrams; the *_chars columns carry unigrams for one-character queries.
_FTS_DDL = "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(title, body, title_chars, body_chars, tokenize='unicode61')"
# bm25 weights per column: a title match outranks a body match.
_RANK = "bm25(search_fts, 10.0, 1.0, 10.0, 1.0)"
_CODE = re.compile(r"^[0-9A-Z]{1,20}$")


class EmbeddedSearchIndex(SearchIndex):
    def __init__(self, url: str) -> None:
        self.engine = create_store_engine(url)
        self.heartbeats = heartbeats

    def create(self) -> None:
        metadata.create_all(self.engine)
        with writing(self.engine) as connection:
            connection.exec_driver_sql(_FTS_DDL)

    def apply(self, events: Sequence[Event]) -> None:
        newest = newest_per_publication(events)
        if not newest:
            return
        with writing(self.engine) as connection:  # one transaction per batch
            stored = {
                row.publication_id: row
                for row in connection.execute(select(documents.c.id, documents.c.publication_id, documents.c.version).where(documents.c.publication_id.in_(list(newest))))
            }
            fresh = [
                (event, stored[pid].id if pid in stored else None)
                for pid, event in newest.items()
                # Skipped: a duplicate, a replay, or older than what we hold.
                if pid not in stored or stored[pid].version < event.data.version
            ]
            if fresh:
                _write_batch(connection, fresh)

    def search(self, query: SearchQuery) -> SearchResults:
        expression = query_expression(query.q)
        empty = SearchResults(total=0, hits=[], page=query.page, per_page=query.per_page)
        if query.q.strip() and expression is None:
            return empty  # only punctuation, emoji …: nothing can match
        params: dict[str, Any] = {"limit": query.per_page, "offset": query.offset}
        conditions = ["d.status = 'published'"]
        if query.region is not None or query.domain is not None:
            placement = _placement_condition(query, params)
            if placement is None:
                return empty
            conditions.append(placement)
        if expression is None:
            source, order = "search_documents AS d", "d.published_at DESC, d.id DESC"
        else:
            source, order = "search_fts JOIN search_documents AS d ON d.id = search_fts.rowid", f"{_RANK}, d.published_at DESC, d.id DESC"
            conditions.append("search_fts MATCH :expression")
            params["expression"] = expression
        where = " AND ".join(conditions)
        with self.engine.connect() as connection:
            total = connection.execute(text(f"SELECT count(*) FROM {source} WHERE {where}"), params).scalar_one()
            rows = connection.execute(
                text(f"SELECT d.publication_id, d.version, d.document FROM {source} WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset"), params
            ).all()
        hits = [hit_of(row.publication_id, row.version, json.loads(row.document), query.q) for row in rows]
        return SearchResults(total=total, hits=hits, page=query.page, per_page=query.per_page)

    def version_of(self, publication_id: str) -> int | None:
        with self.engine.connect() as connection:
            return connection.execute(select(documents.c.version).where(documents.c.publication_id == publication_id)).scalar_one_or_none()

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM search_documents WHERE status = 'published'")).scalar_one()

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT rowid FROM search_fts LIMIT 1")).all()
            return True
        except Exception:
            return False


def _placement_condition(query: SearchQuery, params: dict[str, Any]) -> str | None:
    """One placement must satisfy both filters; None when a code cannot match anything."""
    clauses = ["p.document_id = d.id"]
    for name, code in (("region", query.region), ("domain", query.domain)):
        if code is None:
            continue
        if not _CODE.match(code):
            return None  # stored codes are all [0-9A-Z], so this also keeps LIKE wildcards out
        params[name] = code
    if query.region is not None:
        clauses.append("p.region_code LIKE :region || '%'")
    if query.domain is not None:
        clauses.append("p.domain_code = :domain")
    return f"EXISTS (SELECT 1 FROM search_placements AS p WHERE {' AND '.join(clauses)})"


def _write_batch(connection: Connection, fresh: list[tuple[Event, int | None]]) -> None:
    """Replace what is stored for each publication with its newer event: one statement per
    kind of row for the whole batch (the indexer's throughput is bound by this)."""
    # New rows get ids here; the write lock taken at BEGIN makes max(id) safe.
    next_id = (connection.execute(text("SELECT coalesce(max(id), 0) FROM search_documents")).scalar_one() or 0) + 1
    inserted, updated, fts_rows, placement_rows = [], [], [], []
    for event, document_id in fresh:
        data = event.data
        published = isinstance(event, PublishedEvent)
        document = document_of(data) if published else None
        if document_id is None:
            document_id, next_id = next_id, next_id + 1
            target = inserted
        else:
            target = updated
        target.append(
            {
                "id": document_id,
                "publication_id": data.publication_id,
                "version": data.version,
                "status": "published" if published else "withdrawn",
                "published_at": as_utc(data.published_at).replace(tzinfo=None) if published else None,
                "document": json.dumps(document, ensure_ascii=False) if document else None,
            }
        )
        if document is None:
            continue  # a tombstone: kept for its version, invisible to search
        title, body = searchable_text(document)
        title_terms, title_chars = both_terms(title)
        body_terms, body_chars = both_terms(body)
        fts_rows.append({"id": document_id, "title": title_terms, "body": body_terms, "title_chars": title_chars, "body_chars": body_chars})
        placement_rows += [{"document_id": document_id, "region_code": p["region_code"], "domain_code": p["domain_code"]} for p in document["placements"]]
    if updated:
        ids = [{"id": row["id"]} for row in updated]
        connection.execute(text("DELETE FROM search_fts WHERE rowid = :id"), ids)
        connection.execute(text("DELETE FROM search_placements WHERE document_id = :id"), ids)
        connection.execute(
            text("UPDATE search_documents SET version = :version, status = :status, published_at = :published_at, document = :document WHERE id = :id"), updated
        )
    if inserted:
        connection.execute(documents.insert(), inserted)
    if fts_rows:
        connection.execute(text("INSERT INTO search_fts (rowid, title, body, title_chars, body_chars) VALUES (:id, :title, :body, :title_chars, :body_chars)"), fts_rows)
    if placement_rows:
        connection.execute(placements.insert(), placement_rows)
