"""The search contract and the reindex, against a real Elasticsearch 8.

Runs only when TONGYUAN_TEST_ES_URL points at a server (see deploy/README.md):

    docker compose -f deploy/compose.yaml up -d elasticsearch
    TONGYUAN_TEST_ES_URL=http://localhost:9200 make test

TONGYUAN_TEST_ES_ANALYZER picks the Chinese analyzer (default smartcn, which the compose
image installs; `cjk` works on a stock server). Every test works under its own index prefix
and removes its indices and template afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

ES_URL = os.environ.get("TONGYUAN_TEST_ES_URL")
if not ES_URL:
    pytest.skip(
        "TONGYUAN_TEST_ES_URL is not set: no Elasticsearch to test against "
        "(docker compose -f deploy/compose.yaml up -d elasticsearch, then TONGYUAN_TEST_ES_URL=http://localhost:9200)",
        allow_module_level=True,
    )
ANALYZER = os.environ.get("TONGYUAN_TEST_ES_ANALYZER", "smartcn")

from elasticsearch import AsyncElasticsearch  # noqa: E402

from services.indexer.elasticsearch import ElasticsearchIndex  # noqa: E402
from services.indexer.index import SearchQuery  # noqa: E402
from services.indexer.reindex import reindex  # noqa: E402
from tests.factories import published, withdrawn  # noqa: E402
from tests.unit.indexer.test_search_index_contract import SearchIndexContract  # noqa: E402


def new_index(prefix: str) -> ElasticsearchIndex:
    # refresh: a write is searchable when apply returns, as the contract expects;
    # no replicas: a single-node test server stays green.
    return ElasticsearchIndex(ES_URL, index_prefix=prefix, analyzer=ANALYZER, refresh=True, replicas=0)


async def drop(prefixes: list[str]) -> None:
    client = AsyncElasticsearch(ES_URL)
    try:
        lenient = client.options(ignore_status=404)
        for prefix in prefixes:
            # By name: Elasticsearch 8 refuses wildcard deletes (action.destructive_requires_name).
            names = list((await lenient.indices.get(index=f"{prefix}-publications-*")).body)
            if names:
                await lenient.indices.delete(index=",".join(names))
            await lenient.indices.delete_index_template(name=f"{prefix}-publications")
    finally:
        await client.close()


@pytest.fixture
def prefixes():
    made: list[str] = []
    yield made
    asyncio.run(drop(made))


def fresh_prefix(prefixes: list[str]) -> str:
    prefix = f"tongyuan-test-{uuid.uuid4().hex[:12]}"
    prefixes.append(prefix)
    return prefix


@pytest.fixture
def make_index(prefixes):
    """A factory of fresh, empty ElasticsearchIndex objects (the contract's `make_index`)."""

    def make(*_args, **_kwargs) -> ElasticsearchIndex:  # the contract may pass tmp_path; ES has no use for it
        return new_index(fresh_prefix(prefixes))

    return make


class TestElasticsearchSearchIndex(SearchIndexContract):
    """The same contract the embedded and in-memory indices pass. The contract gets its
    index from the `make_index` fixture above; should it call `self.make_index(tmp_path)`
    instead, the method below answers the same."""

    @pytest.fixture(autouse=True)
    def _track(self, prefixes):
        self._prefixes = prefixes

    def make_index(self, *_args, **_kwargs) -> ElasticsearchIndex:
        return new_index(fresh_prefix(self._prefixes))


def test_reindex_keeps_documents_versions_and_tombstones_and_moves_the_alias(prefixes):
    async def scenario():
        index = new_index(fresh_prefix(prefixes))
        try:
            await index.create()
            [old] = await index.concrete_indices()
            await index.apply([published("p1", 2, title="低保标准调整公告"), published("p2", 1, title="养老服务补贴"), withdrawn("p3", 4)])
            new = await reindex(index, settle_seconds=0, poll_seconds=0.2)
            assert await index.concrete_indices() == [new] != [old]
            assert not await index.client.indices.exists(index=old)
            assert [await index.version_of(p) for p in ("p1", "p2", "p3")] == [2, 1, 4]
            assert await index.count() == 2
            assert [hit.publication_id for hit in (await index.search(SearchQuery(q="公告"))).hits] == ["p1"]  # p2's body mentions 低保 too
            # The tombstone still wins over a late older publish, in the new index.
            await index.apply([published("p3", 3, title="低保")])
            assert await index.count() == 2
            # And writes go to the new index through the alias.
            await index.apply([published("p4", 1, title="临时救助")])
            assert [hit.publication_id for hit in (await index.search(SearchQuery(q="临时救助"))).hits] == ["p4"]
        finally:
            await index.close()

    asyncio.run(scenario())


def test_a_document_elasticsearch_cannot_parse_is_refused_not_raised(prefixes):
    async def scenario():
        index = new_index(fresh_prefix(prefixes))
        try:
            await index.create()
            good, bad = published("good", 1), published("bad", 1)
            # Events are validated, so the unparsable field is put in on the way out.
            original = index._action

            def action(event):
                made = original(event)
                if event is bad:
                    made["_source"]["published_at"] = "not a date"
                return made

            index._action = action  # type: ignore[method-assign]
            refused = await index.apply([bad, good])
            assert [(event.data.publication_id, "400" in reason) for event, reason in refused] == [("bad", True)]
            assert await index.version_of("good") == 1
            assert await index.version_of("bad") is None
        finally:
            await index.close()

    asyncio.run(scenario())


def test_health_follows_the_alias(prefixes):
    async def scenario():
        index = new_index(fresh_prefix(prefixes))
        try:
            assert not await index.healthy()
            await index.create()
            assert await index.healthy()
        finally:
            await index.close()

    asyncio.run(scenario())
