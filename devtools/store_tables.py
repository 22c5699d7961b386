"""Which tables make up each store: the models a store's migrated schema must match.

For drafting a revision (devtools/schema_revision.py) and for the test that the migrated schema
equals the models; it knows every service's tables, so it stays out of services/common, which the
services import. The table modules are imported lazily, one store at a time.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from services.common.settings import STORES


def metadata_of(store: str) -> MetaData:
    """Every table of `store`, in a MetaData of their own (copies of the models' tables)."""
    merged = MetaData()
    for metadata in _models(store):
        for table in metadata.tables.values():
            table.to_metadata(merged)
    return merged


def _models(store: str) -> list[MetaData]:
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}")
    if store == "publisher":
        from services.catalog.store import metadata as catalog
        from services.publisher.tables import metadata as publisher

        return [publisher, catalog]
    if store == "column":
        from services.column.store import metadata as column

        return [column]
    if store == "embed":
        from services.embed.store import metadata as embed

        return [embed]
    if store == "supervision":
        from services.supervision.tables import metadata as supervision

        return [supervision]
    if store == "bridge":
        from services.bridge.store import metadata as bridge

        return [bridge]
    if store == "search":
        from services.indexer.embedded import metadata as search

        return [search]
    from services.common.heartbeat import heartbeat_table

    alone = MetaData()
    heartbeat_table(alone, "search")  # search-heartbeat: the indexer's heartbeats beside Elasticsearch or OpenSearch
    return [alone]
