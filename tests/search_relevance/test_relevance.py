"""Relevance of the embedded search index on a judged set: recall@10 and MRR.

corpus.json holds 67 realistic disclosure documents of Changsha units; judged.json holds 43
queries (two-character words, phrases, mixed queries, 索引号, one-character, with filters),
each with every document a citizen asking it would want. The floors sit a little below what
the index measures, so a change that makes ranking or matching worse fails here; the figures
are printed with -s (measured: see README's search section).

`evaluate` takes any search function, so another backend can be judged the same way: the
production engine, OpenSearch with smartcn, is judged against the same floors when a node is
given (TONGYUAN_TEST_OPENSEARCH_URL, or TONGYUAN_TEST_OPENSEARCH=start: tests/opensearch_node.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from contracts.catalog import regions_of_city, standard_catalog
from contracts.events import Attachment, Placement, PublicationData, PublishedEvent, SourceRef
from services.indexer.embedded import EmbeddedSearchIndex
from services.indexer.index import SearchQuery

HERE = Path(__file__).parent
CORPUS = json.loads((HERE / "corpus.json").read_text(encoding="utf-8"))
JUDGED = json.loads((HERE / "judged.json").read_text(encoding="utf-8"))["queries"]
TOP = 10
RECALL_FLOOR = 0.97
MRR_FLOOR = 0.95


def events() -> list[PublishedEvent]:
    catalog = standard_catalog()
    regions = {region.code: region for region in regions_of_city("4301")}
    made = []
    for doc in CORPUS:
        level2 = catalog.level2(doc["level2"])
        level1 = catalog.level1(doc["level2"][:6])
        domain = catalog.domain(doc["level2"][:3])
        placement = Placement(
            region_code=doc["region"],
            domain_code=domain.code,
            level1_id=level1.id,
            level2_id=level2.id,
            region_name=regions[doc["region"]].name,
            domain_name=domain.name,
            level1_name=level1.name,
            level2_name=level2.name,
        )
        data = PublicationData(
            publication_id=doc["id"],
            version=1,
            placements=(placement,),
            kind=doc["kind"],
            title=doc["title"],
            summary=doc["summary"],
            body_html=doc["body"],
            attachments=tuple(Attachment(name=name, url="https://example.gov.cn/file") for name in doc["attachments"]),
            index_number=doc["index_number"],
            formed_at=date.fromisoformat(doc["published"]),
            published_at=datetime.fromisoformat(doc["published"]).replace(hour=9, tzinfo=timezone.utc),
            source_ref=SourceRef(source="/cms/relevance", ref=doc["id"]),
        )
        made.append(PublishedEvent(id=f"relevance-{doc['id']}", source="/publisher", subject=doc["id"], data=data))
    return made


def evaluate(search: Callable[[SearchQuery], list[str]]) -> tuple[float, float, list[tuple[str, float, float, list[str]]]]:
    """(mean recall@10, MRR, per query (q, recall, reciprocal rank, top ids))."""
    rows = []
    for judged in JUDGED:
        filters = dict(judged.get("filters", {}))
        found = search(SearchQuery(q=judged["q"], per_page=TOP, facets=False, **filters))
        relevant = set(judged["relevant"])
        recall = len(relevant & set(found[:TOP])) / len(relevant)
        rank = next((i for i, pid in enumerate(found[:TOP], start=1) if pid in relevant), None)
        rows.append((judged["q"] + (f" {filters}" if filters else ""), recall, 1 / rank if rank else 0.0, found[:TOP]))
    return sum(r[1] for r in rows) / len(rows), sum(r[2] for r in rows) / len(rows), rows


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    index = EmbeddedSearchIndex(f"sqlite:///{tmp_path_factory.mktemp('relevance') / 'search.db'}")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(index.create())
    loop.run_until_complete(index.apply(events()))
    yield lambda query: [hit.publication_id for hit in loop.run_until_complete(index.search(query)).hits]
    loop.run_until_complete(index.close())
    loop.close()


@pytest.fixture(scope="module")
def opensearch(opensearch_url):
    from services.indexer.opensearch import OpenSearchIndex

    # refresh: the corpus is searchable when apply returns; no replicas: one node stays green.
    index = OpenSearchIndex(opensearch_url, index_prefix=f"tongyuan-relevance-{uuid.uuid4().hex[:8]}", refresh=True, replicas=0)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(index.create())
    try:
        assert loop.run_until_complete(index.apply(events())) == []
        yield lambda query: [hit.publication_id for hit in loop.run_until_complete(index.search(query)).hits]
    finally:

        async def drop() -> None:
            await index.delete_indices(await index.concrete_indices())
            await index.client.indices.delete_index_template(name=index.template_name)
            await index.close()

        loop.run_until_complete(drop())
        loop.close()


def test_the_judged_set_is_sound():
    ids = {doc["id"] for doc in CORPUS}
    assert len(ids) == len(CORPUS) and len(JUDGED) >= 30
    for judged in JUDGED:
        assert judged["relevant"] and set(judged["relevant"]) <= ids, judged["q"]


def test_recall_at_10_and_mrr_of_the_embedded_index(embedded):
    recall, mrr, rows = evaluate(embedded)
    report = "\n".join(f"{q:<28} recall@10 {r:.2f}  RR {rr:.2f}  {top}" for q, r, rr, top in rows if r < 1 or rr < 1)
    print(f"\nembedded index: recall@10 {recall:.3f}, MRR {mrr:.3f} over {len(rows)} judged queries\n{report}")
    assert recall >= RECALL_FLOOR, report
    assert mrr >= MRR_FLOOR, report


def test_recall_at_10_and_mrr_of_opensearch(opensearch):
    recall, mrr, rows = evaluate(opensearch)
    report = "\n".join(f"{q:<28} recall@10 {r:.2f}  RR {rr:.2f}  {top}" for q, r, rr, top in rows if r < 1 or rr < 1)
    print(f"\nOpenSearch (smartcn): recall@10 {recall:.3f}, MRR {mrr:.3f} over {len(rows)} judged queries\n{report}")
    assert recall >= RECALL_FLOOR, report
    assert mrr >= MRR_FLOOR, report
