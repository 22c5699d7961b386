"""End to end on the production search engine: a publication goes through the gate, the relay
and the indexer consumer (its own process, TONGYUAN_SEARCH_BACKEND=opensearch) into OpenSearch,
the portal's search finds it there, and a withdrawal leaves a versioned tombstone.

Runs when a node is given (TONGYUAN_TEST_OPENSEARCH_URL, or TONGYUAN_TEST_OPENSEARCH=start:
tests/opensearch_node.py). The stack is one of its own (tests/integration/conftest.py's
running_stack), on SQLite, with its own index prefix.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

OPENSEARCH_URL = os.environ.get("TONGYUAN_TEST_OPENSEARCH_URL", "")
if not OPENSEARCH_URL:
    pytest.skip("TONGYUAN_TEST_OPENSEARCH_URL is not set: no OpenSearch to test against", allow_module_level=True)

from services.indexer.opensearch import OpenSearchIndex  # noqa: E402
from tests.integration import test_search_live as live  # noqa: E402
from tests.integration.conftest import running_stack, wait_for  # noqa: E402

TOWNSHIP = "430102001"


@pytest.fixture(scope="module")
def prefix():
    made = [f"tongyuan-e2e-{uuid.uuid4().hex[:10]}"]
    yield made[0]
    asyncio.run(live.drop(made))


@pytest.fixture(scope="module")
def opensearch_stack(prefix, tmp_path_factory):
    # running_stack and every process it starts read the TONGYUAN_* environment.
    engine = {"TONGYUAN_SEARCH_BACKEND": "opensearch", "TONGYUAN_OPENSEARCH_URL": OPENSEARCH_URL, "TONGYUAN_ELASTICSEARCH_INDEX_PREFIX": prefix}
    saved = {name: os.environ.get(name) for name in engine}
    os.environ.update(engine)
    try:
        yield from running_stack("sqlite", tmp_path_factory)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_the_indexer_fills_opensearch_and_a_withdrawal_leaves_a_tombstone(opensearch_stack, prefix):
    stack = opensearch_stack
    tag = f"e2e{uuid.uuid4().hex[:8]}"
    body = {
        "placements": [{"region_code": TOWNSHIP, "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": f"城乡低保标准调整公告 {tag}",
        "body_html": "<p>城乡最低生活保障（低保）标准调整。</p>",
        "formed_at": "2026-03-02",
    }
    pid = stack.publish(body)["publication_id"]
    wait_for(lambda: stack.search_ids(tag) == [pid], timeout=60, what="the publication in OpenSearch")
    assert pid in stack.search_ids("低保", region="430102")

    index = OpenSearchIndex(OPENSEARCH_URL, index_prefix=prefix)

    async def held() -> tuple[int | None, int]:
        try:
            return await index.version_of(pid), await index.count()
        finally:
            await index.close()

    assert asyncio.run(held())[0] == 1  # in the engine itself, not only through the portal

    response = stack.client.post(f"/v1/publications/{pid}/withdraw", json={"type": "withdrawn", "explanation": "政策已废止"})
    assert response.status_code == 202
    wait_for(lambda: stack.search_ids(tag) == [], timeout=60, what="the withdrawal to leave search")
    index = OpenSearchIndex(OPENSEARCH_URL, index_prefix=prefix)
    version, _ = asyncio.run(held())
    assert version == 2  # the tombstone keeps the version
