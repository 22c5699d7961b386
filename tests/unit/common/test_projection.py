"""The projection contract run against every read model: the column, embed and supervision
stores (on SQLite, and on PostgreSQL when TONGYUAN_TEST_PG_URL is set) and every search
adapter (in memory, embedded tantivy, OpenSearch and Elasticsearch through fake nodes that keep
external versions as a node does, and live servers when TONGYUAN_TEST_OPENSEARCH_URL or
TONGYUAN_TEST_ES_URL is set). Also the version
rule itself, as pure functions."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from services.column.store import ColumnStore
from services.common.projection import LedgeredStore, newest_per_publication, publications_to_apply
from services.embed.store import EmbedStore
from services.indexer.elasticsearch import ElasticsearchIndex
from services.indexer.embedded import EmbeddedSearchIndex
from services.indexer.index import SearchIndex, SearchQuery
from services.indexer.memory import InMemorySearchIndex
from services.indexer.opensearch import OpenSearchIndex
from services.supervision import store as supervision
from tests.conftest import store_backends, store_engine
from tests.factories import published, withdrawn
from tests.unit.common.projection_contract import ProjectionContract, RefusalContract, Subject
from tests.unit.indexer.test_elasticsearch_requests import CLOCK, FakeElasticsearch
from tests.unit.indexer.test_opensearch_adapter import FakeOpenSearch, client_of

ES_URL = os.environ.get("TONGYUAN_TEST_ES_URL")
OPENSEARCH_URL = os.environ.get("TONGYUAN_TEST_OPENSEARCH_URL")


# --- the rule ----------------------------------------------------------------------------------


def test_the_newest_version_per_publication_and_only_if_newer_than_held():
    events = [published(version=1), published(version=3), withdrawn(version=2), published("q", version=1)]
    assert [(e.data.publication_id, e.data.version) for e in publications_to_apply(events, {"p1": 3})] == [("q", 1)]
    assert [(e.data.publication_id, e.data.version) for e in publications_to_apply(events, {})] == [("p1", 3), ("q", 1)]


def test_of_equal_versions_in_a_batch_the_first_is_kept():
    first, again = published(title="先到"), published(title="后到")
    assert newest_per_publication([first, again])["p1"] is first


# --- the SQL stores ------------------------------------------------------------------------------


@pytest.fixture(params=store_backends())
def engine(request, tmp_path) -> Iterator[Any]:
    with store_engine(request.param, tmp_path, "projection") as engine:
        yield engine


def stored(store: LedgeredStore, visible: Callable[[], Awaitable[list[tuple[str, str]]]]) -> Subject:
    async def version_of(publication_id: str) -> int | None:
        return store.version_of(publication_id)

    return Subject(store.projection(), visible, version_of)


class TestColumnStore(ProjectionContract):
    @pytest.fixture
    def subject(self, engine) -> Subject:
        store = ColumnStore(engine)
        store.create()

        async def visible() -> list[tuple[str, str]]:
            return [(item.publication_id, item.title) for item in store.listing("43", per_page=1000)[1]]

        return stored(store, visible)


class TestEmbedStore(ProjectionContract):
    @pytest.fixture
    def subject(self, engine) -> Subject:
        store = EmbedStore(engine)
        store.create()

        async def visible() -> list[tuple[str, str]]:
            return [(item.publication_id, item.title) for item in store.major_items("4301", limit=1000)]

        return stored(store, visible)


class TestSupervisionStore(ProjectionContract):
    @pytest.fixture
    def subject(self, engine) -> Subject:
        store = supervision.SupervisionStore(engine)
        store.create()

        async def visible() -> list[tuple[str, str]]:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(select(supervision.filings.c.publication_id, supervision.filings.c.title))]

        return stored(store, visible)


# --- the search adapters -------------------------------------------------------------------------


def searched(index: SearchIndex, refuse=None) -> Subject:
    """What the search page shows: every hit of the empty query (and the live count agrees)."""

    async def visible() -> list[tuple[str, str]]:
        results = await index.search(SearchQuery(per_page=100, facets=False))
        assert await index.count() == results.total == len(results.hits)
        return [(hit.publication_id, hit.title) for hit in results.hits]

    return Subject(index, visible, index.version_of, refuse)


class TestInMemorySearchIndex(ProjectionContract):
    @pytest.fixture
    def subject(self, loop) -> Subject:
        return searched(InMemorySearchIndex())


class TestEmbeddedSearchIndex(ProjectionContract):
    @pytest.fixture
    def subject(self, loop, tmp_path) -> Iterator[Subject]:
        index = EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}")
        loop.run_until_complete(index.create())
        yield searched(index)
        loop.run_until_complete(index.close())


class KeepingElasticsearch(FakeElasticsearch):
    """The fake node, keeping the source of every document it accepted: what searches, which
    see status=published only (es_query.py), would find."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, dict[str, Any]] = {}

    def _bulk(self, lines: list[dict]) -> tuple[int, Any]:
        status, body = super()._bulk(lines)
        for (action, source), item in zip(zip(lines[::2], lines[1::2], strict=True), body.get("items", []), strict=False):
            if item["index"]["status"] in (200, 201):
                self.sources[action["index"]["_id"]] = source
        return status, body


class TestElasticsearchIndex(ProjectionContract, RefusalContract):
    @pytest.fixture
    def subject(self, loop) -> Iterator[Subject]:
        node = KeepingElasticsearch()
        index = ElasticsearchIndex("http://es.test:9200", client=node.client(), clock=lambda: CLOCK)
        loop.run_until_complete(index.create())

        async def visible() -> list[tuple[str, str]]:
            return [(pid, source["title"]) for pid, source in node.sources.items() if source["status"] == "published"]

        def refuse(event) -> None:
            node.bulk_plan.append({event.data.publication_id: (400, "mapper_parsing_exception")})

        yield Subject(index, visible, index.version_of, refuse)
        loop.run_until_complete(index.close())


@pytest.mark.skipif(not ES_URL, reason="TONGYUAN_TEST_ES_URL is not set: the projection contract did not run against a live Elasticsearch")
class TestLiveElasticsearchIndex(ProjectionContract):
    @pytest.fixture
    def subject(self, loop) -> Iterator[Subject]:
        from tests.integration import test_elasticsearch_live as live

        made: list[str] = []
        index = live.new_index(live.fresh_prefix(made))
        loop.run_until_complete(index.create())
        yield searched(index)
        loop.run_until_complete(index.close())
        asyncio.run(live.drop(made))


class TestOpenSearchIndex(ProjectionContract, RefusalContract):
    @pytest.fixture
    def subject(self, loop) -> Iterator[Subject]:
        node = FakeOpenSearch()
        index = OpenSearchIndex("http://search.test:9200", client=client_of(node), clock=lambda: CLOCK)
        loop.run_until_complete(index.create())

        async def visible() -> list[tuple[str, str]]:
            return node.visible()

        def refuse(event) -> None:
            node.bulk_plan.append({event.data.publication_id: (400, "mapper_parsing_exception")})

        yield Subject(index, visible, index.version_of, refuse)
        loop.run_until_complete(index.close())


@pytest.mark.skipif(not OPENSEARCH_URL, reason="TONGYUAN_TEST_OPENSEARCH_URL is not set: the projection contract did not run against a live OpenSearch")
class TestLiveOpenSearchIndex(ProjectionContract, RefusalContract):
    @pytest.fixture
    def subject(self, loop) -> Iterator[Subject]:
        from tests.integration import test_search_live as live

        made: list[str] = []
        index = live.new_index(live.fresh_prefix(made))
        loop.run_until_complete(index.create())
        original = index._action
        refusing: set[str] = set()

        def action(event):  # a document the node cannot parse (events are validated, so it is made on the way out)
            meta, source = original(event)
            if event.data.publication_id in refusing:
                source = {**source, "published_at": "not a date"}
            return meta, source

        index._action = action  # type: ignore[method-assign]
        yield searched(index, refuse=lambda event: refusing.add(event.data.publication_id))
        loop.run_until_complete(index.close())
        asyncio.run(live.drop(made))
