"""The indexer's wiring (group tongyuan-indexer): its search index and its faust app."""

from __future__ import annotations

from functools import lru_cache

import faust
from sqlalchemy.exc import OperationalError

from services.common.faust_consumer import PublicationConsumer, build_consumer_app
from services.common.heartbeat import beat, live_workers
from services.common.settings import Settings

from .embedded import EmbeddedSearchIndex
from .index import SearchIndex

STORE = "search"
GROUP = "tongyuan-indexer"


def search_url(settings: Settings) -> str:
    # Always SQLite, even when the other stores are on PostgreSQL: the embedded index is FTS5.
    return f"sqlite:///{(settings.var_dir / 'search.db').resolve()}"


def build_index(settings: Settings) -> SearchIndex:
    """The configured search index, its schema created."""
    index = _embedded(settings)
    index.create()
    return index


def create_consumer(settings: Settings) -> faust.App:
    index = _embedded(settings)
    index.create()
    consumer = PublicationConsumer(
        group=GROUP,
        apply=index.apply,
        heartbeat=lambda stats: beat(index.engine, index.heartbeats, group_id=GROUP, applied=stats.applied, dead_lettered=stats.dead_lettered),
    )
    return build_consumer_app(consumer, settings)


def heartbeat_status(settings: Settings, within: float) -> list[dict]:
    """Indexer workers seen within `within` seconds, for the portal's /healthz."""
    try:
        index = _embedded(settings)
        return live_workers(index.engine, index.heartbeats, within=within)
    except OperationalError:
        return []  # no index file or table yet: no indexer has ever run, so none is live
    except NotImplementedError:
        return []


def _embedded(settings: Settings) -> EmbeddedSearchIndex:
    if settings.search_backend == "elasticsearch":
        raise NotImplementedError(
            "TONGYUAN_SEARCH_BACKEND=elasticsearch is not available yet: the Elasticsearch adapter comes with the search issue; use 'embedded'"
        )
    return _index_at(search_url(settings))


@lru_cache(maxsize=8)
def _index_at(url: str) -> EmbeddedSearchIndex:
    # One engine per file per process: /healthz asks for heartbeats on every request.
    return EmbeddedSearchIndex(url)
