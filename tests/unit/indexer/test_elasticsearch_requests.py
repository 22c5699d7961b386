"""The Elasticsearch adapter at the HTTP level: the exact requests it sends and how it reads
the answers. No server: a fake node (the client's `node_class`) records every request after
the official client has serialised it, and answers like Elasticsearch 8 would."""

from __future__ import annotations

import asyncio
import importlib
import json
import types
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import elasticsearch.helpers  # noqa: F401 - loads elasticsearch._async.helpers without an import cycle
import pytest
from elastic_transport import ApiResponseMeta, BaseAsyncNode, HttpHeaders
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport._node._base import NodeApiResponse
from elasticsearch import AsyncElasticsearch

from contracts.events import Attachment
from services.common.consuming import ConsumerStats, is_transient, process_batch
from services.indexer.elasticsearch import ElasticsearchIndex, SearchBackendUnavailable, elasticsearch_index
from services.indexer.index import SearchQuery
from services.indexer.reindex import reindex
from tests.factories import place, published, withdrawn

ALIAS = "tongyuan-publications"
CONCRETE = "tongyuan-publications-20260305090000000000"
CLOCK = datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc)
# The module whose asyncio.sleep spaces the bulk helper's retries.
BULK_HELPERS = importlib.import_module("elasticsearch._async.helpers")


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: Any  # parsed JSON; a list of parsed lines for NDJSON; None without a body


@dataclass
class FakeElasticsearch:
    """Answers like a single Elasticsearch 8 node, keeping external versions as it does."""

    requests: list[Request] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # alias → concrete indices
    versions: dict[str, int] = field(default_factory=dict)  # _id → _version
    # One entry per coming bulk request: an HTTP status for the whole request, or
    # {_id: (status, error type)} for some of its items. Empty: every item as ES decides.
    bulk_plan: list[int | dict[str, tuple[int, str]]] = field(default_factory=list)
    search_answer: dict[str, Any] = field(default_factory=lambda: {"took": 1, "hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}})
    search_status: int = 200
    reachable: bool = True

    def client(self, **options) -> AsyncElasticsearch:
        server = self

        class RecordingNode(BaseAsyncNode):
            async def perform_request(self, method, target, body=None, headers=None, request_timeout=None):
                if not server.reachable:
                    raise TransportConnectionError("connection refused")
                status, payload = server.answer(method, target, body, headers)
                response_headers = HttpHeaders({"content-type": "application/json", "x-elastic-product": "Elasticsearch"})
                meta = ApiResponseMeta(status=status, http_version="1.1", headers=response_headers, duration=0.0, node=self.config)
                return NodeApiResponse(meta, b"" if method == "HEAD" else json.dumps(payload).encode())

            async def close(self):
                pass

        return AsyncElasticsearch("http://es.test:9200", node_class=RecordingNode, **options)

    def answer(self, method: str, target: str, body: bytes | None, headers) -> tuple[int, Any]:
        url = urlsplit(target)
        parsed: Any = None
        if body is not None:
            text = body.decode()
            parsed = [json.loads(line) for line in text.splitlines()] if "ndjson" in headers["content-type"] else json.loads(text)
        request = Request(method, unquote(url.path), dict(parse_qsl(url.query)), parsed)
        self.requests.append(request)
        path = request.path.strip("/").split("/")
        match (method, path):
            case ("PUT", ["_index_template", _]):
                return 200, {"acknowledged": True}
            case ("HEAD", ["_alias", name]):
                return (200 if name in self.aliases else 404), None
            case ("GET", ["_alias", name]):
                if name not in self.aliases:
                    return 404, {"error": "alias missing", "status": 404}
                return 200, {index: {"aliases": {name: {}}} for index in self.aliases[name]}
            case ("PUT", ["_bulk"]):
                return self._bulk(parsed)
            case ("PUT", [index]):
                for alias in (parsed or {}).get("aliases", {}):
                    self.aliases.setdefault(alias, []).append(index)
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
            case ("POST", [_, "_search"]):
                if self.search_status != 200:
                    return self.search_status, {"error": {"type": "index_not_found_exception", "reason": "no such index"}, "status": self.search_status}
                return 200, self.search_answer
            case ("GET", [_, "_doc", doc_id]):
                if doc_id in self.versions:
                    return 200, {"_index": CONCRETE, "_id": doc_id, "_version": self.versions[doc_id], "found": True}
                return 404, {"_index": CONCRETE, "_id": doc_id, "found": False}
            case ("POST", [_, "_count"]):
                return 200, {"count": 7}
            case ("GET", ["_cluster", "health", _]):
                return 200, {"status": "yellow", "timed_out": False}
            case ("POST", ["_aliases"]):
                return 200, {"acknowledged": True}
            case ("POST", [_, "_refresh"]):
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            case ("POST", ["_reindex"]):
                return 200, {"task": "node-1:42"}
            case ("GET", ["_tasks", task]):
                return 200, {"completed": True, "task": {"id": task}, "response": {"created": 3, "updated": 1, "version_conflicts": 2, "failures": []}}
            case ("DELETE", [_]):
                return 200, {"acknowledged": True}
        raise AssertionError(f"unexpected request {method} {target}")

    def _bulk(self, lines: list[dict]) -> tuple[int, Any]:
        plan = self.bulk_plan.pop(0) if self.bulk_plan else {}
        if isinstance(plan, int):
            return plan, {"error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}, "status": plan}
        items = []
        for action, _source in zip(lines[::2], lines[1::2], strict=True):
            meta = action["index"]
            doc_id = meta["_id"]
            if doc_id in plan:
                status, error_type = plan[doc_id]
                items.append(
                    {"index": {"_index": CONCRETE, "_id": doc_id, "status": status, "error": {"type": error_type, "reason": f"{error_type} for {doc_id}"}}}
                )
            elif meta["version"] <= self.versions.get(doc_id, 0):
                reason = f"[{doc_id}]: version conflict, current version [{self.versions[doc_id]}] is higher or equal to the one provided [{meta['version']}]"
                items.append(
                    {"index": {"_index": CONCRETE, "_id": doc_id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": reason}}}
                )
            else:
                created = doc_id not in self.versions
                self.versions[doc_id] = meta["version"]
                items.append({"index": {"_index": CONCRETE, "_id": doc_id, "_version": meta["version"], "status": 201 if created else 200}})
        return 200, {"took": 3, "errors": any(i["index"]["status"] >= 300 for i in items), "items": items}

    def of(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def es() -> FakeElasticsearch:
    return FakeElasticsearch()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The bulk helper's backoff, recorded instead of waited for."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay, *args, **kwargs):
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(BULK_HELPERS, "asyncio", types.SimpleNamespace(**{**vars(asyncio), "sleep": sleep}))
    return delays


def make_index(es: FakeElasticsearch, **options) -> ElasticsearchIndex:
    return ElasticsearchIndex("http://es.test:9200", client=es.client(), clock=lambda: CLOCK, **options)


# --- the index template and the alias ------------------------------------------------------

CHARS = {"type": "text", "analyzer": "tongyuan_chars"}


def text_field(analyzer: str, search_analyzer: str) -> dict:
    return {"type": "text", "analyzer": analyzer, "search_analyzer": search_analyzer, "fields": {"chars": CHARS}}


def expected_template(analyzer: str = "smartcn", search_analyzer: str = "smartcn") -> dict:
    text = text_field(analyzer, search_analyzer)
    keyword = {"type": "keyword"}
    return {
        "index_patterns": ["tongyuan-publications-*"],
        "priority": 200,
        "_meta": {"tongyuan_mapping": 1, "analyzer": analyzer},
        "template": {
            "settings": {
                "index": {"number_of_shards": 1, "number_of_replicas": 1},
                "analysis": {
                    "tokenizer": {"tongyuan_chars": {"type": "pattern", "pattern": r"\p{IsHan}|[[\p{L}\p{Nd}]&&[^\p{IsHan}]]+", "group": 0}},
                    "analyzer": {"tongyuan_chars": {"type": "custom", "tokenizer": "tongyuan_chars", "filter": ["cjk_width", "lowercase"]}},
                },
            },
            "mappings": {
                "dynamic": False,
                "properties": {
                    "publication_id": keyword,
                    "version": {"type": "long"},
                    "status": keyword,
                    "withdrawal_type": keyword,
                    "title": text,
                    "summary": text,
                    "body_text": text,
                    "attachment_names": text,
                    "publishing_body": text,
                    "index_number": {"type": "keyword", "fields": {"text": CHARS}},
                    "kind": keyword,
                    "published_at": {"type": "date"},
                    "withdrawn_at": {"type": "date"},
                    "placements": {"type": "object", "enabled": False},
                    "lead": {"type": "text", "index": False},
                    "placement_keys": {
                        "type": "nested",
                        "properties": {
                            "region_code": keyword,
                            "region_path": keyword,
                            "county": keyword,
                            "domain": keyword,
                            "level1": keyword,
                            "level2": keyword,
                        },
                    },
                },
            },
        },
    }


def test_create_puts_the_template_then_a_concrete_index_behind_a_write_alias(es):
    run(make_index(es).create())
    assert [(r.method, r.path) for r in es.requests] == [
        ("PUT", "/_index_template/tongyuan-publications"),
        ("HEAD", "/_alias/tongyuan-publications"),
        ("PUT", f"/{CONCRETE}"),
    ]
    assert es.requests[0].body == expected_template()
    # Settings and mapping come from the template; the create call only names the alias.
    assert es.requests[2].body == {"aliases": {ALIAS: {"is_write_index": True}}}


def test_create_again_only_refreshes_the_template(es):
    index = make_index(es)
    run(index.create())
    es.requests.clear()
    run(index.create())
    assert [(r.method, r.path) for r in es.requests] == [("PUT", "/_index_template/tongyuan-publications"), ("HEAD", "/_alias/tongyuan-publications")]


@pytest.mark.parametrize(("analyzer", "search_analyzer"), [("smartcn", "smartcn"), ("ik_max_word", "ik_smart"), ("cjk", "cjk")])
def test_the_chinese_analyzer_is_configurable(es, analyzer, search_analyzer):
    run(make_index(es, analyzer=analyzer).create())
    assert es.requests[0].body == expected_template(analyzer, search_analyzer)


def test_unknown_analyzer_or_bad_prefix_is_refused_at_construction(es):
    with pytest.raises(ValueError, match="analyzer"):
        ElasticsearchIndex("http://es.test:9200", analyzer="standard", client=es.client())
    with pytest.raises(ValueError, match="prefix"):
        ElasticsearchIndex("http://es.test:9200", index_prefix="Tongyuan/x", client=es.client())


def test_index_prefix_names_alias_template_and_pattern(es):
    index = ElasticsearchIndex("http://es.test:9200", index_prefix="gov-hn", client=es.client(), clock=lambda: CLOCK)
    run(index.create())
    assert es.requests[0].path == "/_index_template/gov-hn-publications"
    assert es.requests[0].body["index_patterns"] == ["gov-hn-publications-*"]
    assert es.requests[2].path == "/gov-hn-publications-20260305090000000000"


def test_settings_build_the_index():
    settings = types.SimpleNamespace(elasticsearch_url="http://search:9200", elasticsearch_index_prefix="tongyuan", elasticsearch_analyzer="cjk")
    index = elasticsearch_index(settings)
    assert (index.url, index.alias, index.analyzer) == ("http://search:9200", ALIAS, "cjk")
    with pytest.raises(ValueError, match="TONGYUAN_ELASTICSEARCH_URL"):
        elasticsearch_index(types.SimpleNamespace(elasticsearch_url=None))


# --- bulk writes -------------------------------------------------------------------------------


def published_source(publication_id: str, version: int, title: str, body_text: str, *, day: int = 0, attachments: list[str] | None = None) -> dict:
    return {
        "publication_id": publication_id,
        "version": version,
        "status": "published",
        "title": title,
        "summary": None,
        "body_text": body_text,
        "publishing_body": None,
        "index_number": f"430102001/2026-{version:05d}",
        "kind": "info",
        "published_at": f"2026-03-{5 + day:02d}T09:00:00+00:00",
        "placements": [
            {
                "region_code": "430102001",
                "region_name": "文艺路街道",
                "domain_code": "D14",
                "domain_name": "社会救助",
                "level1_name": "最低生活保障",
                "level2_name": "办事指南",
            }
        ],
        "lead": body_text,
        "attachment_names": attachments or [],
        "placement_keys": [
            {
                "region_code": "430102001",
                "region_path": ["43", "4301", "430102", "430102001"],
                "county": "430102",
                "domain": "D14",
                "level1": "D14-02",
                "level2": "D14-02-02",
            }
        ],
    }


def test_bulk_writes_external_versions_to_the_alias_and_tombstones_for_withdrawals(es):
    event = published("p1", 3, title="低保标准调整公告", body="<p>城乡<b>低保</b>标准调整。</p>")
    event = event.model_copy(
        update={"data": event.data.model_copy(update={"attachments": (Attachment(name="调整表.xlsx", url="https://example.gov.cn/a.xlsx"),)})}
    )
    refused = run(make_index(es).apply([event, withdrawn("p2", version=5, kind="gone")]))
    assert refused == []
    [bulk] = es.of("PUT", "/_bulk")
    assert bulk.params == {"require_alias": "true"}
    assert bulk.body == [
        {"index": {"_index": ALIAS, "_id": "p1", "version": 3, "version_type": "external"}},
        published_source("p1", 3, "低保标准调整公告", "城乡低保标准调整。", attachments=["调整表.xlsx"]),
        {"index": {"_index": ALIAS, "_id": "p2", "version": 5, "version_type": "external"}},
        {"publication_id": "p2", "version": 5, "status": "withdrawn", "withdrawal_type": "gone", "withdrawn_at": "2026-03-06T09:00:00+00:00"},
    ]


def test_townships_of_a_custom_county_and_city_level_placements_get_their_ancestors(es):
    placements = [place(region="4301GX001", region_name="高新区某街道"), place(region="4301", region_name="长沙市")]
    run(make_index(es).apply([published("p1", placements=placements)]))
    keys = es.of("PUT", "/_bulk")[0].body[1]["placement_keys"]
    assert [(k["region_path"], k["county"]) for k in keys] == [(["43", "4301", "4301GX", "4301GX001"], "4301GX"), (["43", "4301"], None)]


def test_the_highest_version_in_a_batch_is_the_only_one_sent(es):
    run(make_index(es).apply([published("p1", 2, title="第二版"), published("p1", 4, title="第四版"), published("p1", 3, title="第三版")]))
    [bulk] = es.of("PUT", "/_bulk")
    assert [line["index"]["version"] for line in bulk.body[::2]] == [4]
    assert bulk.body[1]["title"] == "第四版"


def test_refresh_is_asked_for_only_when_configured(es):
    run(make_index(es, refresh=True).apply([published("p1")]))
    assert es.of("PUT", "/_bulk")[0].params == {"require_alias": "true", "refresh": "true"}


def test_stale_writes_answered_409_are_ignored(es, sleeps):
    index = make_index(es)
    run(index.apply([published("p1", 3, title="新")]))
    refused = run(index.apply([published("p1", 2, title="旧"), published("p1", 3, title="重复"), published("p2", 1)]))
    assert refused == []
    assert len(es.of("PUT", "/_bulk")) == 2  # the 409 is not retried
    assert sleeps == []
    assert es.versions == {"p1": 3, "p2": 1}


def test_a_late_older_publish_after_a_withdrawal_is_a_409(es):
    index = make_index(es)
    run(index.apply([published("p1", 1)]))
    run(index.apply([withdrawn("p1", 2)]))
    assert run(index.apply([published("p1", 1)])) == []
    last = es.of("PUT", "/_bulk")[-1]
    assert last.body[0] == {"index": {"_index": ALIAS, "_id": "p1", "version": 1, "version_type": "external"}}
    assert es.versions["p1"] == 2  # the tombstone's version stands


def test_items_rejected_with_429_are_retried_with_backoff_until_they_succeed(es, sleeps):
    es.bulk_plan = [{"p2": (429, "es_rejected_execution_exception")}, {"p2": (429, "es_rejected_execution_exception")}]
    refused = run(make_index(es, initial_backoff=0.5).apply([published("p1"), published("p2"), published("p3")]))
    assert refused == []
    bulks = es.of("PUT", "/_bulk")
    assert [[line["index"]["_id"] for line in bulk.body[::2]] for bulk in bulks] == [["p1", "p2", "p3"], ["p2"], ["p2"]]
    assert sleeps == [0.5, 1.0]  # doubling
    assert es.versions == {"p1": 1, "p2": 1, "p3": 1}


def test_a_whole_bulk_answered_503_is_retried(es, sleeps):
    es.bulk_plan = [503]
    assert run(make_index(es).apply([published("p1"), withdrawn("p2", 2)])) == []
    bulks = es.of("PUT", "/_bulk")
    assert len(bulks) == 2 and bulks[0].body == bulks[1].body
    assert sleeps == [0.5]
    assert es.versions == {"p1": 1, "p2": 2}


def test_items_still_failing_after_the_retries_raise_a_transient_error(es, sleeps):
    es.bulk_plan = [{"p1": (503, "unavailable_shards_exception")}] * 4
    with pytest.raises(SearchBackendUnavailable, match="unavailable_shards_exception") as raised:
        run(make_index(es, bulk_retries=3, initial_backoff=0.25, max_backoff=0.5).apply([published("p1"), published("p2")]))
    assert is_transient(raised.value)  # the consumer holds the batch and retries; no offset is committed
    assert len(es.of("PUT", "/_bulk")) == 4
    assert sleeps == [0.25, 0.5, 0.5]  # bounded by max_backoff


def test_a_mapping_error_is_returned_as_refused_and_the_rest_applied(es, sleeps):
    bad, good = published("bad"), published("good")
    es.bulk_plan = [{"bad": (400, "document_parsing_exception")}]
    refused = run(make_index(es).apply([bad, good]))
    assert [(event, reason.split(":")[0]) for event, reason in refused] == [(bad, "Elasticsearch 400 document_parsing_exception")]
    assert "document_parsing_exception for bad" in refused[0][1]
    assert len(es.of("PUT", "/_bulk")) == 1 and sleeps == []
    assert es.versions == {"good": 1}


def test_a_whole_request_refused_is_not_blamed_on_the_events(es, sleeps):
    es.bulk_plan = [400]
    with pytest.raises(SearchBackendUnavailable):
        run(make_index(es).apply([published("p1")]))


def test_a_missing_alias_holds_the_batch_instead_of_dead_lettering_it(es):
    es.bulk_plan = [{"p1": (404, "index_not_found_exception")}]
    with pytest.raises(SearchBackendUnavailable, match="index_not_found_exception"):
        run(make_index(es).apply([published("p1")]))


def test_an_unreachable_cluster_is_transient(es):
    es.reachable = False
    index = ElasticsearchIndex("http://es.test:9200", client=es.client(max_retries=0))
    with pytest.raises(SearchBackendUnavailable) as raised:
        run(index.apply([published("p1")]))
    assert is_transient(raised.value)
    assert run(index.healthy()) is False


def test_through_the_consumer_refused_events_reach_the_dlq_and_outages_are_waited_out(es, sleeps):
    from types import SimpleNamespace

    events = [published("bad"), published("good"), published("late")]
    records = [
        SimpleNamespace(
            value=e.model_dump_json().encode(), message=SimpleNamespace(topic="tongyuan.publications.v1", partition=0, offset=i, key=e.subject.encode())
        )
        for i, e in enumerate(events)
    ]
    # First try: the cluster rejects "late" until the bulk retries run out, so apply raises;
    # the consumer waits and sends the whole batch again ("good" is then a 409, ignored),
    # and "bad", refused for good each time, goes to the DLQ.
    rejected, unparsable = (429, "es_rejected_execution_exception"), (400, "mapper_parsing_exception")
    es.bulk_plan = [{"late": rejected, "bad": unparsable}, {"late": rejected}, {"bad": unparsable}]
    letters, stats = [], ConsumerStats()

    async def dead_letter(letter):
        letters.append(letter)

    index = make_index(es, bulk_retries=1)
    run(process_batch(records, apply=index.apply, dead_letter=dead_letter, stats=stats, max_backoff=0.01, what="tongyuan-indexer"))
    assert [letter.origin for letter in letters] == ["tongyuan.publications.v1/0/0"]
    assert "mapper_parsing_exception" in letters[0].error
    assert (stats.applied, stats.dead_lettered) == (2, 1)
    assert es.versions == {"good": 1, "late": 1}
    assert [[line["index"]["_id"] for line in bulk.body[::2]] for bulk in es.of("PUT", "/_bulk")] == [
        ["bad", "good", "late"],
        ["late"],
        ["bad", "good", "late"],
    ]


# --- queries -----------------------------------------------------------------------------------

PHRASE_FIELDS = ["title.chars^4", "summary.chars^2", "attachment_names.chars^1.5", "body_text.chars", "publishing_body.chars", "index_number.text^4"]
WORD_FIELDS = ["title^3", "summary^1.5", "attachment_names^1.5", "body_text", "publishing_body"]
SOURCE = {"excludes": ["body_text", "attachment_names", "placement_keys"]}
HIGHLIGHT = {
    "pre_tags": ["<mark>"],
    "post_tags": ["</mark>"],
    "encoder": "html",
    "fields": {
        "title.chars": {"number_of_fragments": 0},
        "body_text.chars": {"fragment_size": 120, "number_of_fragments": 1},
        "summary.chars": {"fragment_size": 120, "number_of_fragments": 1},
    },
}
BY_RELEVANCE = [{"_score": {"order": "desc"}}, {"published_at": {"order": "desc"}}, {"publication_id": {"order": "asc"}}]
BY_DATE = [{"published_at": {"order": "desc"}}, {"publication_id": {"order": "asc"}}]


def facet(field: str, size: int, clauses: list[dict]) -> dict:
    matching = {"bool": {"filter": clauses}} if clauses else {"match_all": {}}
    values = {"terms": {"field": f"placement_keys.{field}", "size": size}, "aggs": {"documents": {"reverse_nested": {}}}}
    return {"nested": {"path": "placement_keys"}, "aggs": {"matching": {"filter": matching, "aggs": {"values": values}}}}


def sent_search(es: FakeElasticsearch, query: SearchQuery) -> dict:
    run(make_index(es).search(query))
    [request] = es.of("POST", f"/{ALIAS}/_search")
    return request.body


def test_a_filtered_faceted_query_with_paging(es):
    query = SearchQuery(
        q="低保 2022年", region="430102", domain="D14", kind="info", published_from=date(2024, 1, 1), published_to=date(2024, 12, 31), page=2, per_page=10
    )
    region = {"term": {"placement_keys.region_path": "430102"}}
    domain = {"term": {"placement_keys.domain": "D14"}}
    assert sent_search(es, query) == {
        "query": {
            "bool": {
                "filter": [
                    {"term": {"status": "published"}},
                    {"term": {"kind": "info"}},
                    {"range": {"published_at": {"gte": "2024-01-01T00:00:00+00:00", "lt": "2025-01-01T00:00:00+00:00"}}},
                ],
                "must": [
                    {"multi_match": {"query": "低保", "type": "phrase", "fields": PHRASE_FIELDS}},
                    {"multi_match": {"query": "2022年", "type": "phrase", "fields": PHRASE_FIELDS}},
                ],
                "should": [
                    {"multi_match": {"query": "低保 2022年", "type": "best_fields", "fields": WORD_FIELDS}},
                    {"term": {"index_number": {"value": "低保 2022年", "boost": 20}}},
                ],
            }
        },
        # The hits get the placement filters; each facet counts without its own.
        "post_filter": {"nested": {"path": "placement_keys", "query": {"bool": {"filter": [region, domain]}}}},
        "aggs": {"domain": facet("domain", 100, [region]), "region": facet("county", 5000, [domain])},
        "highlight": HIGHLIGHT,
        "sort": BY_RELEVANCE,
        "from": 10,
        "size": 10,
        "track_total_hits": True,
        "_source": SOURCE,
    }


def test_an_empty_query_by_date_without_facets_filters_in_the_query(es):
    query = SearchQuery(region="4301GX", level1="D14-02", level2="D14-02-02", sort="date", facets=False)
    assert sent_search(es, query) == {
        "query": {
            "bool": {
                "filter": [
                    {"term": {"status": "published"}},
                    {
                        "nested": {
                            "path": "placement_keys",
                            "query": {
                                "bool": {
                                    "filter": [
                                        {"term": {"placement_keys.region_path": "4301GX"}},
                                        {"term": {"placement_keys.level1": "D14-02"}},
                                        {"term": {"placement_keys.level2": "D14-02-02"}},
                                    ]
                                }
                            },
                        }
                    },
                ]
            }
        },
        "sort": BY_DATE,
        "from": 0,
        "size": 20,
        "track_total_hits": True,
        "_source": SOURCE,
    }


def test_facets_without_filters_count_every_placement(es):
    body = sent_search(es, SearchQuery(q="养老"))
    assert "post_filter" not in body
    assert body["aggs"] == {"domain": facet("domain", 100, []), "region": facet("county", 5000, [])}


def test_a_region_code_of_no_known_length_is_a_prefix(es):
    body = sent_search(es, SearchQuery(region="43010", facets=False))
    assert body["query"]["bool"]["filter"][1]["nested"]["query"] == {"bool": {"filter": [{"prefix": {"placement_keys.region_code": "43010"}}]}}


def test_hostile_text_is_only_ever_a_value_of_phrase_and_term_queries(es):
    hostile = 'title:* AND "低保 (OR) -x^2 😀 \x00 {a}; DROP TABLE'
    body = sent_search(es, SearchQuery(q=hostile, facets=False))
    words = ["title", "and", "低保", "or", "x", "2", "a", "drop", "table"]
    assert body["query"]["bool"]["must"] == [{"multi_match": {"query": w, "type": "phrase", "fields": PHRASE_FIELDS}} for w in words]
    assert body["query"]["bool"]["should"] == [
        {"multi_match": {"query": " ".join(words), "type": "best_fields", "fields": WORD_FIELDS}},
        {"term": {"index_number": {"value": hostile.strip(), "boost": 20}}},
    ]
    assert "query_string" not in json.dumps(body)


def test_a_500_character_query_is_bounded(es):
    body = sent_search(es, SearchQuery(q=" ".join(f"词{i}" for i in range(250)), facets=False))
    assert len(body["query"]["bool"]["must"]) == 32
    assert len(body["query"]["bool"]["should"][0]["multi_match"]["query"]) == 100


def test_full_width_text_is_folded_like_the_index(es):
    body = sent_search(es, SearchQuery(q="ＰＭ２.５ 监测", facets=False))
    assert [clause["multi_match"]["query"] for clause in body["query"]["bool"]["must"]] == ["pm2", "5", "监测"]


def test_punctuation_only_finds_nothing_without_asking(es):
    results = run(make_index(es).search(SearchQuery(q="？！…")))
    assert (results.total, results.hits, results.facets) == (0, [], {"domain": {}, "region": {}})
    assert es.requests == []


def test_a_missing_index_is_the_backend_being_unavailable_not_a_crash(es):
    es.search_status = 404
    with pytest.raises(SearchBackendUnavailable, match="index_not_found_exception"):
        run(make_index(es).search(SearchQuery(q="低保")))


def test_pages_past_the_result_window_ask_only_for_the_total(es):
    body = sent_search(es, SearchQuery(q="低保", page=600, per_page=20, facets=False))
    assert (body["from"], body["size"]) == (0, 0)
    assert "highlight" not in body


# --- reading answers ---------------------------------------------------------------------------


def search_hit(publication_id: str, highlight: dict | None = None, **source) -> dict:
    document = {
        "publication_id": publication_id,
        "version": 2,
        "status": "published",
        "title": "低保<名单>",
        "summary": None,
        "publishing_body": None,
        "index_number": "430102001/2026-00002",
        "kind": "service",
        "published_at": "2026-03-05T09:00:00+00:00",
        "placements": [{"region_code": "430102001", "region_name": "文艺路街道", "domain_code": "D14"}],
        "lead": "本月名单如下 & 其他",
        **source,
    }
    hit = {"_index": CONCRETE, "_id": publication_id, "_score": 3.2, "_source": document, "sort": [3.2, 1772701200000, publication_id]}
    if highlight is not None:
        hit["highlight"] = highlight
    return hit


def test_hits_facets_and_highlights_are_read_back(es):
    es.search_answer = {
        "took": 4,
        "hits": {
            "total": {"value": 41, "relation": "eq"},
            "hits": [
                search_hit(
                    "a",
                    {"title.chars": ["<mark>低</mark><mark>保</mark>&lt;名单&gt;"], "body_text.chars": ["城乡<mark>低</mark><mark>保</mark> <mark>低</mark>"]},
                ),
                search_hit("b", {"title.chars": ["<mark>低保</mark>&lt;名单&gt;"]}),
                search_hit("c", title="通知"),
            ],
        },
        "aggregations": {
            "domain": {
                "doc_count": 60,
                "matching": {"doc_count": 60, "values": {"buckets": [{"key": "D14", "doc_count": 50, "documents": {"doc_count": 40}}]}},
            },
            "region": {
                "doc_count": 60,
                "matching": {
                    "doc_count": 60,
                    "values": {
                        "buckets": [
                            {"key": "430102", "doc_count": 30, "documents": {"doc_count": 25}},
                            {"key": "430104", "doc_count": 3, "documents": {"doc_count": 3}},
                        ]
                    },
                },
            },
        },
    }
    results = run(make_index(es).search(SearchQuery(q="低保", page=3, per_page=2)))
    assert (results.total, results.page, results.per_page) == (41, 3, 2)
    assert results.facets == {"domain": {"D14": 40}, "region": {"430102": 25, "430104": 3}}
    a, b, c = results.hits
    assert (a.publication_id, a.version, a.title, a.kind, a.index_number) == ("a", 2, "低保<名单>", "service", "430102001/2026-00002")
    assert a.published_at == datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc)
    assert a.placements == [{"region_code": "430102001", "region_name": "文艺路街道", "domain_code": "D14"}]
    # Marks of neighbouring characters join into one; separate ones stay separate.
    assert a.title_html == "<mark>低保</mark>&lt;名单&gt;"
    assert a.snippet == "城乡<mark>低保</mark> <mark>低</mark>"
    # No marked body or summary: the shared helper's snippet, from the body's start kept in
    # _source, else (as here) the title.
    assert b.snippet == "<mark>低保</mark>&lt;名单&gt;"
    assert (c.title_html, c.snippet) == ("通知", "本月名单如下 &amp; 其他")


def test_version_count_and_health(es):
    index = make_index(es)
    es.versions["p1"] = 4
    assert run(index.version_of("p1")) == 4
    assert run(index.version_of("nope")) is None
    assert run(index.count()) == 7
    assert es.of("POST", f"/{ALIAS}/_count")[0].body == {"query": {"term": {"status": "published"}}}
    assert es.of("GET", f"/{ALIAS}/_doc/p1")[0].params == {"_source": "false"}
    assert run(index.healthy()) is False  # no alias yet
    run(index.create())
    assert run(index.healthy()) is True


# --- reindex -----------------------------------------------------------------------------------


def test_reindex_copies_swaps_the_alias_in_one_call_catches_up_and_deletes_the_old_index(es):
    old = "tongyuan-publications-20250101000000000000"
    es.aliases[ALIAS] = [old]
    new = run(reindex(make_index(es, analyzer="ik_max_word"), settle_seconds=0, poll_seconds=0))
    assert new == CONCRETE
    steps = [(r.method, r.path) for r in es.requests]
    assert steps == [
        ("PUT", "/_index_template/tongyuan-publications"),
        ("HEAD", f"/_alias/{ALIAS}"),
        ("GET", f"/_alias/{ALIAS}"),
        ("PUT", f"/{new}"),
        ("POST", f"/{old}/_refresh"),
        ("POST", "/_reindex"),
        ("GET", "/_tasks/node-1:42"),
        ("POST", "/_aliases"),
        ("POST", f"/{old}/_refresh"),
        ("POST", "/_reindex"),
        ("GET", "/_tasks/node-1:42"),
        ("DELETE", f"/{old}"),
    ]
    assert es.requests[0].body == expected_template("ik_max_word", "ik_smart")
    assert es.requests[3].body is None  # everything from the template, no alias yet
    copy = es.of("POST", "/_reindex")[0]
    assert copy.params == {"slices": "auto", "refresh": "true", "wait_for_completion": "false"}
    assert copy.body == {"source": {"index": [old], "size": 1000}, "dest": {"index": new, "version_type": "external"}, "conflicts": "proceed"}
    assert es.of("POST", "/_aliases")[0].body == {
        "actions": [{"remove": {"index": old, "alias": ALIAS}}, {"add": {"index": new, "alias": ALIAS, "is_write_index": True}}]
    }


def test_reindex_can_keep_the_old_index(es):
    es.aliases[ALIAS] = ["tongyuan-publications-20250101000000000000"]
    run(reindex(make_index(es), keep_old=True, settle_seconds=0, poll_seconds=0))
    assert not [r for r in es.requests if r.method == "DELETE"]


def test_a_failed_copy_removes_the_new_index_and_leaves_the_alias_alone(es):
    es.aliases[ALIAS] = ["tongyuan-publications-20250101000000000000"]
    original = es.answer

    def failing(method, target, body, headers):
        if target.startswith("/_tasks/"):
            es.requests.append(Request(method, target, {}, None))
            return 200, {"completed": True, "response": {"created": 0, "updated": 0, "failures": [{"cause": {"type": "mapper_parsing_exception"}}]}}
        return original(method, target, body, headers)

    es.answer = failing
    with pytest.raises(Exception, match="mapper_parsing_exception"):
        run(reindex(make_index(es), settle_seconds=0, poll_seconds=0))
    assert ("DELETE", f"/{CONCRETE}") in [(r.method, r.path) for r in es.requests]
    assert not es.of("POST", "/_aliases")


def test_create_racing_another_worker_keeps_the_winners_index(es):
    index = make_index(es)
    original = es.answer

    def lose_the_race(method, target, body, headers):
        if method == "PUT" and target == f"/{CONCRETE}":
            es.aliases[ALIAS] = ["tongyuan-publications-20260305085959000000"]  # the other worker's
            es.requests.append(Request(method, target, {}, None))
            return 400, {"error": {"type": "illegal_state_exception", "reason": "alias has more than one write index"}, "status": 400}
        return original(method, target, body, headers)

    es.answer = lose_the_race
    run(index.create())
    assert run(index.concrete_indices()) == ["tongyuan-publications-20260305085959000000"]


def test_the_reindex_command(es, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from services.common.settings import get_settings
    from services.indexer import reindex as reindex_module

    app = typer.Typer()
    app.command("reindex")(reindex_module.reindex_command)
    app.command("other")(lambda: None)  # two commands, so `reindex` is a subcommand as in `tongyuan`
    runner = CliRunner()

    monkeypatch.setenv("TONGYUAN_SEARCH_BACKEND", "embedded")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["reindex"])
    assert refused.exit_code == 2 and "TONGYUAN_SEARCH_BACKEND=elasticsearch" in refused.output

    monkeypatch.setenv("TONGYUAN_SEARCH_BACKEND", "elasticsearch")
    monkeypatch.setenv("TONGYUAN_ELASTICSEARCH_URL", "http://es.test:9200")
    get_settings.cache_clear()
    es.aliases[ALIAS] = ["tongyuan-publications-20250101000000000000"]
    monkeypatch.setattr(reindex_module, "elasticsearch_index", lambda settings: make_index(es))
    quick = reindex_module.reindex
    monkeypatch.setattr(reindex_module, "reindex", lambda index, keep_old: quick(index, keep_old=keep_old, settle_seconds=0, poll_seconds=0))
    done = runner.invoke(app, ["reindex", "--keep-old"])
    get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    assert done.output.strip().endswith(f"{ALIAS} → {CONCRETE}")
    assert not [r for r in es.requests if r.method == "DELETE"]
