"""The OpenSearch adapter against a fake client: what it sends (external versions, tombstones,
the alias, chunks) and what it makes of the answers (409 stale, 400 refused, 429/5xx resent
with backoff, anything else held). The real node runs the same adapter in
tests/integration/test_search_live.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError
from pydantic import ValidationError

from services.common.settings import Settings
from services.indexer.elasticsearch import SearchBackendUnavailable
from services.indexer.index import SearchQuery
from services.indexer.opensearch import CHUNK_SIZE, OpenSearchIndex, opensearch_index
from tests.factories import published, withdrawn


class FakeIndices:
    def __init__(self, node: FakeOpenSearch) -> None:
        self.node = node

    async def put_index_template(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.node.templates[name] = body
        return {"acknowledged": True}

    async def exists_alias(self, name: str, params: Any = None) -> bool:
        return name in self.node.aliases

    async def create(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        self.node.indices.append(index)
        for alias in body.get("aliases", {}):
            self.node.aliases[alias] = [index]
        return {"acknowledged": True}

    async def get_alias(self, name: str) -> dict[str, Any]:
        return {index: {} for index in self.node.aliases[name]}


class FakeCluster:
    async def health(self, index: str, params: Any = None) -> dict[str, Any]:
        return {"status": "yellow"}


class FakeOpenSearch:
    """Keeps documents with external versions as a node does (a version must beat the one
    held), and answers a bulk item as `bulk_plan` says when it names that item."""

    def __init__(self) -> None:
        self.templates: dict[str, Any] = {}
        self.aliases: dict[str, list[str]] = {}
        self.indices: list[str] = []
        self.documents: dict[str, tuple[int, dict[str, Any]]] = {}
        self.bulk_plan: list[dict[str, tuple[int, str]]] = []  # one entry per bulk call
        self.whole_bulk: list[Exception] = []  # raised by the next bulk calls, one each
        self.bulks: list[tuple[list[dict[str, Any]], dict[str, str]]] = []
        self.search_error: Exception | None = None
        self.indices_api = FakeIndices(self)
        self.cluster = FakeCluster()

    async def bulk(self, body: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        self.bulks.append((body, params))
        if self.whole_bulk:
            raise self.whole_bulk.pop(0)
        plan = self.bulk_plan.pop(0) if self.bulk_plan else {}
        items = []
        for meta, source in zip(body[::2], body[1::2], strict=True):
            action = meta["index"]
            publication_id, version = action["_id"], action["version"]
            assert action["version_type"] == "external" and action["_index"].endswith("-publications")
            if publication_id in plan:
                status, kind = plan[publication_id]
                items.append({"index": {"_id": publication_id, "status": status, "error": {"type": kind, "reason": "planned"}}})
            elif publication_id in self.documents and self.documents[publication_id][0] >= version:
                items.append({"index": {"_id": publication_id, "status": 409, "error": {"type": "version_conflict_engine_exception"}}})
            else:
                self.documents[publication_id] = (version, source)
                items.append({"index": {"_id": publication_id, "status": 201}})
        return {"errors": any(item["index"]["status"] >= 300 for item in items), "items": items}

    async def get(self, index: str, id: str, params: dict[str, Any]) -> dict[str, Any]:
        if id not in self.documents:
            return {"found": False}
        return {"found": True, "_version": self.documents[id][0]}

    async def count(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"count": sum(1 for _, source in self.documents.values() if source["status"] == "published")}

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.search_error:
            raise self.search_error
        return {"hits": {"total": {"value": 0}, "hits": []}}

    async def close(self) -> None:
        pass

    def visible(self) -> list[tuple[str, str]]:
        return [(pid, source["title"]) for pid, (_, source) in self.documents.items() if source["status"] == "published"]


def client_of(node: FakeOpenSearch) -> Any:
    """The fake, with `indices` pointing at its index API (the attribute holds the list of names)."""

    class Client:
        def __getattr__(self, name: str) -> Any:
            return node.indices_api if name == "indices" else getattr(node, name)

    return Client()


def make_index(node: FakeOpenSearch, **options: Any) -> OpenSearchIndex:
    return OpenSearchIndex("http://search.test:9200", client=client_of(node), **{"initial_backoff": 0, "max_backoff": 0, **options})


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def node() -> FakeOpenSearch:
    return FakeOpenSearch()


def test_create_puts_the_template_and_one_write_index_behind_the_alias_once(node):
    index = make_index(node)
    run(index.create())
    run(index.create())
    assert list(node.templates) == ["tongyuan-publications"]
    template = node.templates["tongyuan-publications"]
    assert template["index_patterns"] == ["tongyuan-publications-*"]
    assert template["template"]["mappings"]["properties"]["title"]["analyzer"] == "smartcn"
    assert len(node.indices) == 1 and node.aliases == {"tongyuan-publications": node.indices}


def test_writes_carry_external_versions_through_the_alias_and_a_withdrawal_is_a_tombstone(node):
    index = make_index(node, refresh=True)
    assert run(index.apply([published("a", 1), withdrawn("b", 3)])) == []
    [(body, params)] = node.bulks
    assert params == {"require_alias": "true", "refresh": "true"}
    assert [line["index"]["version"] for line in body[::2]] == [1, 3]
    assert body[3]["status"] == "withdrawn" and "title" not in body[3]
    assert run(index.apply([published("b", 2, title="迟到")])) == []  # stale: 409, not an error
    assert node.visible() == [("a", "低保标准调整公告")]


def test_items_answered_429_are_resent_until_taken(node):
    node.bulk_plan = [{"a": (429, "es_rejected_execution_exception")}, {"a": (503, "unavailable_shards_exception")}]
    index = make_index(node, bulk_retries=3)
    assert run(index.apply([published("a"), published("b")])) == []
    assert [len(body) // 2 for body, _ in node.bulks] == [2, 1, 1]  # only what was refused goes again
    assert run(index.version_of("a")) == 1


def test_a_whole_request_answered_429_is_resent(node):
    node.whole_bulk = [TransportError(429, "too_many_requests", {})]
    assert run(make_index(node).apply([published("a")])) == []
    assert len(node.bulks) == 2 and run(make_index(node).version_of("a")) == 1


def test_still_overloaded_after_the_retries_holds_the_batch(node):
    node.bulk_plan = [{"a": (429, "es_rejected_execution_exception")}] * 4
    with pytest.raises(SearchBackendUnavailable, match="1 of 2 documents not indexed after 2 retries"):
        run(make_index(node, bulk_retries=2).apply([published("a"), published("b")]))
    assert len(node.bulks) == 3


def test_a_document_refused_for_good_is_returned_for_the_dlq(node):
    node.bulk_plan = [{"bad": (400, "mapper_parsing_exception")}]
    good, bad = published("good"), published("bad")
    refused = run(make_index(node).apply([bad, good]))
    assert [(event, "OpenSearch 400 mapper_parsing_exception" in reason) for event, reason in refused] == [(bad, True)]
    assert run(make_index(node).version_of("good")) == 1


def test_a_missing_alias_or_a_refusal_is_not_resent_but_held(node):
    node.bulk_plan = [{"a": (404, "index_not_found_exception")}]
    with pytest.raises(SearchBackendUnavailable, match="index_not_found_exception"):
        run(make_index(node).apply([published("a")]))
    assert len(node.bulks) == 1
    node.whole_bulk = [TransportError(403, "forbidden", {})]
    with pytest.raises(SearchBackendUnavailable, match="refused a bulk request"):
        run(make_index(node).apply([published("a")]))


def test_no_answer_at_all_is_transient(node):
    node.whole_bulk = [OpenSearchConnectionError("N/A", "connection refused", None)]
    with pytest.raises(SearchBackendUnavailable) as raised:
        run(make_index(node).apply([published("a")]))
    assert isinstance(raised.value, ConnectionError)  # what the consumer retries with backoff


def test_a_large_batch_goes_in_chunks(node):
    events = [published(f"p{i:04d}") for i in range(CHUNK_SIZE * 2 + 10)]
    assert run(make_index(node).apply(events)) == []
    assert [len(body) // 2 for body, _ in node.bulks] == [CHUNK_SIZE, CHUNK_SIZE, 10]


def test_a_missing_index_is_unavailable_but_a_bad_query_stays_loud(node):
    index = make_index(node)
    node.search_error = NotFoundError(404, "index_not_found_exception", {})
    with pytest.raises(SearchBackendUnavailable):
        run(index.search(SearchQuery(q="低保")))
    node.search_error = RequestError(400, "parsing_exception", {})
    with pytest.raises(RequestError):
        run(index.search(SearchQuery(q="低保")))
    assert run(index.search(SearchQuery(q="？！"))).total == 0  # no words: no request at all


def test_the_settings_name_the_node_and_fail_fast_without_one(tmp_path):
    with pytest.raises(ValidationError, match="TONGYUAN_OPENSEARCH_URL"):
        Settings(var_dir=tmp_path, search_backend="opensearch")
    settings = Settings(var_dir=tmp_path, search_backend="opensearch", opensearch_url="http://search:9200", elasticsearch_index_prefix="city")
    index = opensearch_index(settings)
    assert (index.url, index.alias, index.analyzer) == ("http://search:9200", "city-publications", "smartcn")
    run(index.close())


def test_each_event_loop_gets_a_client_of_its_own():
    """A client's HTTP session belongs to the loop it first ran in; the portal under a test
    client runs each request in a new loop."""
    index = OpenSearchIndex("http://search.test:9200")

    async def twice() -> tuple[Any, Any]:
        first, again = index.client, index.client
        await index.close()
        return first, again

    first, again = run(twice())
    assert first is again
    other, _ = run(twice())
    assert other is not first
