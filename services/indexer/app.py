"""The indexer's wiring (group tongyuan-indexer): its search index and its faust app.

TONGYUAN_SEARCH_BACKEND picks the index: `embedded` (default; tantivy + SQLite under var/),
`opensearch` (production: services/indexer/opensearch.py) or `elasticsearch`
(services/indexer/elasticsearch.py); an engine's adapter is imported only when chosen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

import faust
from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.exc import OperationalError

from services.common.db import create_store_engine
from services.common.faust_consumer import create_consumer as consumer_app
from services.common.faust_consumer import heartbeat_into
from services.common.heartbeat import heartbeat_table, live_workers
from services.common.schema import ensure as ensure_schema
from services.common.settings import Settings

from .embedded import EmbeddedSearchIndex
from .index import SearchIndex

if TYPE_CHECKING:
    from services.bootstrap import Composition

STORE = "search"
GROUP = "tongyuan-indexer"
ENGINES = ("elasticsearch", "opensearch")  # a search server, reached by URL
T = TypeVar("T")


def build_index(settings: Settings, *, cache_mb: int | None = None) -> SearchIndex:
    """The configured search index, its schema (or template and alias) created; `cache_mb`:
    the embedded index's ledger connections' page cache."""
    if settings.search_backend in ENGINES:
        # Created through an instance of its own, in a loop of its own: an async client
        # belongs to the loop it first ran in, and the one returned will run in the caller's.
        def create_and_close() -> Awaitable[None]:
            async def run() -> None:
                index = _engine(settings)
                try:
                    await index.create()
                finally:
                    await index.close()

            return run()

        run_blocking(create_and_close)
        return _engine(settings)
    index = _embedded(settings, cache_mb)
    index.create_now()
    return index


def create_consumer(parts: Composition) -> faust.App:
    """The consumer over the index the composition root built (services.bootstrap.for_consumers)."""
    settings, index = parts.settings, parts.search_index
    engine, table = _heartbeats(settings, cache_mb=parts.cache_mb)
    return consumer_app(
        GROUP,
        index,
        settings,
        heartbeat=heartbeat_into(engine, table, GROUP),
        batch_within=settings.indexer_batch_within,
        bulk_batch_size=settings.indexer_bulk_batch_size,
    )


def heartbeat_status(settings: Settings, within: float) -> list[dict]:
    """Indexer workers seen within `within` seconds, for the portal's /healthz."""
    try:
        engine, table = _heartbeats(settings)
        return live_workers(engine, table, within=within)
    except OperationalError:
        return []  # no file or table yet: no indexer has ever run, so none is live


def health_probe(settings: Settings) -> Callable[[], bool]:
    """A blocking health check of the search index, for /healthz (which runs probes in
    threads): the index's `healthy()` is a coroutine."""
    if settings.search_backend in ENGINES:

        def engine_up() -> bool:
            async def check() -> bool:
                index = _engine(settings)
                try:
                    return await index.healthy()
                finally:
                    await index.close()

            return run_blocking(check)

        return engine_up
    return _embedded(settings).healthy_now


def run_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from blocking code, even when this thread already runs
    an event loop (the portal's startup under uvicorn): in a thread with a loop of its own."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(_awaited(make))).result()


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _engine(settings: Settings) -> SearchIndex:
    if settings.search_backend == "opensearch":
        from .opensearch import opensearch_index

        return opensearch_index(settings)
    from .elasticsearch import elasticsearch_index

    return elasticsearch_index(settings)


def _heartbeats(settings: Settings, cache_mb: int | None = None) -> tuple[Engine, Table]:
    if settings.search_backend in ENGINES:
        return _heartbeat_file(settings.store_url("search-heartbeat"))
    index = _embedded(settings, cache_mb)
    return index.engine, index.heartbeats


def _embedded(settings: Settings, cache_mb: int | None = None) -> EmbeddedSearchIndex:
    return _index_at(settings.store_url(STORE), cache_mb)


@lru_cache(maxsize=8)
def _index_at(url: str, cache_mb: int | None = None) -> EmbeddedSearchIndex:
    # One engine and text index per file per process: /healthz asks on every request. A process
    # always asks with the same cache_mb (the consumer with the bulk writers', the portal none).
    return EmbeddedSearchIndex(url, cache_mb=cache_mb)


@lru_cache(maxsize=8)
def _heartbeat_file(url: str) -> tuple[Engine, Table]:
    metadata = MetaData()
    table = heartbeat_table(metadata, STORE)
    engine = create_store_engine(url)
    ensure_schema(engine, "search-heartbeat")
    return engine, table
