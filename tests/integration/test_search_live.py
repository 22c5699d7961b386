"""The search contract, the reindex and the refusals, against a real OpenSearch 2 (the
production engine).

Runs when TONGYUAN_TEST_OPENSEARCH_URL points at a node, or with TONGYUAN_TEST_OPENSEARCH=start,
which starts one with deploy/local/opensearch for the session (tests/opensearch_node.py).
Every test works under its own index prefix and removes its indices and template afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

OPENSEARCH_URL = os.environ.get("TONGYUAN_TEST_OPENSEARCH_URL", "")
if not OPENSEARCH_URL:
    pytest.skip(
        "TONGYUAN_TEST_OPENSEARCH_URL is not set: no OpenSearch to test against (TONGYUAN_TEST_OPENSEARCH=start starts one)",
        allow_module_level=True,
    )
ANALYZER = os.environ.get("TONGYUAN_TEST_OPENSEARCH_ANALYZER", "smartcn")

from opensearchpy import AsyncOpenSearch  # noqa: E402

from services.common.projection import PublicationEvent  # noqa: E402
from services.indexer.index import SearchQuery  # noqa: E402
from services.indexer.opensearch import OpenSearchIndex  # noqa: E402
from services.indexer.reindex import reindex  # noqa: E402
from tests.factories import published, withdrawn  # noqa: E402
from tests.unit.indexer.test_search_index_contract import SearchIndexContract  # noqa: E402


def new_index(prefix: str, **options) -> OpenSearchIndex:
    # refresh: a write is searchable when apply returns, as the contract expects;
    # no replicas: a single-node test server stays green.
    return OpenSearchIndex(OPENSEARCH_URL, index_prefix=prefix, analyzer=ANALYZER, **{"refresh": True, "replicas": 0, **options})


async def drop(prefixes: list[str]) -> None:
    client = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
    try:
        for prefix in prefixes:
            names = list(await client.indices.get(index=f"{prefix}-publications-*", params={"ignore": 404, "expand_wildcards": "all"}))
            names = [name for name in names if name.startswith(prefix)]
            if names:
                await client.indices.delete(index=",".join(names), params={"ignore": 404})
            await client.indices.delete_index_template(name=f"{prefix}-publications", params={"ignore": 404})
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
    """A factory of fresh, empty OpenSearchIndex objects (the contract's `make_index`)."""

    def make(*_args, **_kwargs) -> OpenSearchIndex:  # the contract may pass tmp_path; a node has no use for it
        return new_index(fresh_prefix(prefixes))

    return make


class TestOpenSearchSearchIndex(SearchIndexContract):
    """The same contract the embedded and in-memory indices pass."""


def test_smartcn_splits_words_on_the_live_node(prefixes):
    async def scenario():
        index = new_index(fresh_prefix(prefixes))
        try:
            await index.create()
            [name] = await index.concrete_indices()
            analysed = await index.client.indices.analyze(index=name, body={"field": "title", "text": "最低生活保障标准"})
            assert [token["token"] for token in analysed["tokens"]] == ["最低", "生活", "保障", "标准"]
        finally:
            await index.close()

    asyncio.run(scenario())


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
            assert [hit.publication_id for hit in (await index.search(SearchQuery(q="公告"))).hits] == ["p1"]
            # The tombstone still wins over a late older publish, in the new index.
            await index.apply([published("p3", 3, title="低保")])
            assert await index.count() == 2
            # And writes go to the new index through the alias.
            await index.apply([published("p4", 1, title="临时救助")])
            assert [hit.publication_id for hit in (await index.search(SearchQuery(q="临时救助"))).hits] == ["p4"]
        finally:
            await index.close()

    asyncio.run(scenario())


def test_no_write_is_lost_while_the_reindex_swaps_the_alias(prefixes):
    """An indexer keeps writing (new documents, newer versions, withdrawals) through the whole
    reindex; afterwards the new index holds exactly the newest version of each."""
    written: dict[str, int] = {}

    async def indexer(index: OpenSearchIndex, done: asyncio.Event) -> None:
        round_ = 0
        while not done.is_set() and round_ < 200:  # bounded, whatever the reindex does
            round_ += 1
            events: list[PublicationEvent] = [published(f"w{round_:03d}", 1, title="低保公示"), published("hot", round_, title=f"低保第{round_}版")]
            if round_ % 5 == 0:
                events.append(withdrawn(f"w{round_ - 1:03d}", 2))
            assert await index.apply(events) == []
            for event in events:
                written[event.data.publication_id] = max(written.get(event.data.publication_id, 0), event.data.version)
            await asyncio.sleep(0.02)

    async def scenario():
        prefix = fresh_prefix(prefixes)
        writer, rebuilder = new_index(prefix, refresh=False), new_index(prefix)
        try:
            await rebuilder.create()
            await rebuilder.apply([published(f"seed{i}", 1, title="既有公告") for i in range(50)])
            done = asyncio.Event()
            writing = asyncio.create_task(indexer(writer, done))
            await asyncio.sleep(0.2)
            await reindex(rebuilder, settle_seconds=0.5, poll_seconds=0.1)
            done.set()
            await writing
            await rebuilder.refresh_indices(await rebuilder.concrete_indices())
            held = {p: await rebuilder.version_of(p) for p in written}
            assert held == written
            withdrawn_ids = {p for p, v in written.items() if p.startswith("w") and v == 2}
            assert await rebuilder.count() == 50 + len(written) - len(withdrawn_ids)
        finally:
            await writer.close()
            await rebuilder.close()

    asyncio.run(scenario())


def test_a_document_the_node_cannot_parse_is_refused_not_raised(prefixes):
    async def scenario():
        index = new_index(fresh_prefix(prefixes))
        try:
            await index.create()
            good, bad = published("good", 1), published("bad", 1)
            original = index._action

            def action(event):  # events are validated, so the unparsable field is put in on the way out
                meta, source = original(event)
                if event is bad:
                    source["published_at"] = "not a date"
                return meta, source

            index._action = action
            refused = await index.apply([bad, good])
            assert [(event.data.publication_id, "OpenSearch 400" in reason) for event, reason in refused] == [("bad", True)]
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
