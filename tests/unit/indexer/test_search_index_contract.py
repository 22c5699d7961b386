"""One contract for every SearchIndex adapter: in-memory, embedded (tantivy), OpenSearch and Elasticsearch.

How a backend runs it: its test module provides a `make_index` fixture — a factory
`make(tmp_path) -> SearchIndex` of fresh, empty, not yet created indexes — and subclasses
`SearchIndexContract`. Here `make_index` is parametrized over every backend; the Elasticsearch
case runs only when TONGYUAN_TEST_ES_URL points at a server (it borrows the live suite's
factory, tests/integration/test_elasticsearch_live.py, which also runs this contract) and is
skipped otherwise; the OpenSearch case likewise when TONGYUAN_TEST_OPENSEARCH_URL is set (or
TONGYUAN_TEST_OPENSEARCH=start, tests/opensearch_node.py), with
tests/integration/test_search_live.py's factory.

Each test drives its index through one event loop (`Blocking`), as an async client such as
AsyncElasticsearch needs.
"""

from __future__ import annotations

import asyncio
import html
import importlib
import os
from datetime import date, datetime, timedelta, timezone
from itertools import count

import pytest

from contracts.events import (
    Attachment,
    Placement,
    PublicationData,
    PublishedEvent,
    SourceRef,
    WithdrawalData,
    WithdrawnEvent,
)
from services.indexer.embedded import EmbeddedSearchIndex
from services.indexer.index import SearchIndex, SearchQuery
from services.indexer.memory import InMemorySearchIndex

BASE_TIME = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
_ids = count(1)

YUELU_TOWNSHIP = "430104001"  # 岳麓区 → 430104
FURONG_TOWNSHIP = "430102001"  # 芙蓉区 → 430102
ES_URL = os.environ.get("TONGYUAN_TEST_ES_URL")
# Read when the module is imported: tests/opensearch_node.py sets it before collection.
OPENSEARCH_URL = os.environ.get("TONGYUAN_TEST_OPENSEARCH_URL")


def placement(region_code: str = FURONG_TOWNSHIP, domain_code: str = "D14", level1: str = "02", level2: str = "01") -> Placement:
    return Placement(
        region_code=region_code,
        domain_code=domain_code,
        level1_id=f"{domain_code}-{level1}",
        level2_id=f"{domain_code}-{level1}-{level2}",
        region_name=f"区划{region_code}",
        domain_name=f"领域{domain_code}",
        level1_name="一级事项",
        level2_name="二级事项",
    )


def published(
    publication_id: str,
    version: int = 1,
    *,
    title: str = "通知",
    body: str = "",
    summary: str | None = None,
    placements: tuple[Placement, ...] | None = None,
    days: int = 0,
    kind: str = "info",
    index_number: str | None = None,
    attachments: tuple[str, ...] = (),
) -> PublishedEvent:
    data = PublicationData(
        publication_id=publication_id,
        version=version,
        placements=placements or (placement(),),
        kind=kind,
        title=title,
        summary=summary,
        body_html=body,
        attachments=tuple(Attachment(name=name, url="https://example.gov.cn/file.pdf") for name in attachments),
        index_number=index_number or f"430102001/2024-{next(_ids):05d}",
        formed_at=date(2024, 3, 1),
        published_at=BASE_TIME + timedelta(days=days),
        source_ref=SourceRef(source="cms", ref=publication_id),
    )
    return PublishedEvent(id=f"evt-{next(_ids)}", source="/publisher", subject=publication_id, data=data)


def withdrawn(publication_id: str, version: int) -> WithdrawnEvent:
    data = WithdrawalData(publication_id=publication_id, version=version, withdrawal_type="withdrawn", withdrawn_at=BASE_TIME)
    return WithdrawnEvent(id=f"evt-{next(_ids)}", source="/publisher", subject=publication_id, data=data)


class Blocking:
    """A SearchIndex driven from plain test code: every call runs in the test's one loop."""

    def __init__(self, index: SearchIndex, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = index
        self.loop = loop

    def __getattr__(self, name):
        method = getattr(self.backend, name)
        if not asyncio.iscoroutinefunction(method):
            return method
        return lambda *args, **kwargs: self.loop.run_until_complete(method(*args, **kwargs))


def blocking(index: SearchIndex):
    """Context for tests that make an index of their own: (Blocking index, teardown)."""
    loop = asyncio.new_event_loop()
    wrapped = Blocking(index, loop)

    def close() -> None:
        try:
            wrapped.close()
        finally:
            loop.close()

    return wrapped, close


def ids(index, q: str = "", **filters) -> list[str]:
    return [hit.publication_id for hit in index.search(SearchQuery(q=q, per_page=100, facets=False, **filters)).hits]


class SearchIndexContract:
    @pytest.fixture
    def index(self, make_index, tmp_path):
        wrapped, close = blocking(make_index(tmp_path))
        wrapped.create()
        wrapped.create()  # idempotent
        yield wrapped
        close()

    # --- matching -------------------------------------------------------------------------

    def test_two_character_word_finds_it_inside_a_longer_text(self, index):
        index.apply(
            [
                published("dibao", title="救助政策", body="<p>城乡最低生活保障（以下简称低保）对象认定办法</p>"),
                published("other", title="道路养护", body="<p>养护计划</p>"),
            ]
        )
        assert ids(index, "低保") == ["dibao"]

    def test_a_phrase_must_appear_in_order(self, index):
        index.apply([published("whole", body="<p>城乡最低生活保障标准</p>"), published("scattered", body="<p>生活困难，保障不足，最低标准</p>")])
        assert ids(index, "最低生活保障") == ["whole"]

    def test_every_word_of_a_mixed_query_is_required(self, index):
        index.apply(
            [
                published("budget-2022", title="2022年度部门预算公开"),
                published("budget-2023", title="2023年度部门预算公开"),
                published("report-2022", title="2022年工作报告"),
            ]
        )
        assert ids(index, "2022年 预算") == ["budget-2022"]

    def test_a_single_character_query_matches(self, index):
        index.apply([published("a", title="低保名单"), published("b", title="道路养护")])
        assert ids(index, "保") == ["a"]

    def test_full_width_and_upper_case_are_folded(self, index):
        index.apply([published("a", title="ＰＭ２.５ 监测 2024年")])
        assert ids(index, "pm2") == ["a"]
        assert ids(index, "２０２４年") == ["a"]

    def test_an_exact_index_number_finds_its_document_first(self, index):
        index.apply(
            [
                published("cites-it", title="关于430102001/2026-00001号公示的更正", days=9, index_number="430102001/2026-00009"),
                published("target", title="低保名单", index_number="430102001/2026-00001"),
                published("neighbour", title="低保名单", index_number="430102001/2026-00010"),
                published("other-year", title="低保名单", index_number="430102001/2025-00001"),
            ]
        )
        assert ids(index, "430102001/2026-00001")[0] == "target"
        assert "neighbour" not in ids(index, "430102001/2026-00001")
        assert ids(index, "  430102001/2026-00001 ")[0] == "target"

    def test_attachment_names_are_searched(self, index):
        index.apply([published("a", title="公示", attachments=("2024年第三季度低保对象名单.xlsx",)), published("b", title="公示")])
        assert ids(index, "低保对象名单") == ["a"]

    def test_title_match_ranks_above_body_match(self, index):
        index.apply(
            [published("in-body", title="通知", body="<p>关于临时救助的说明</p>", days=5), published("in-title", title="临时救助办法", body="<p>正文</p>")]
        )
        assert ids(index, "临时救助") == ["in-title", "in-body"]

    def test_equal_matches_list_newest_first(self, index):
        index.apply([published("old", title="低保公示", days=1), published("new", title="低保公示", days=3), published("mid", title="低保公示", days=2)])
        assert ids(index, "低保") == ["new", "mid", "old"]

    def test_sort_by_date_ignores_relevance(self, index):
        index.apply(
            [published("in-title", title="临时救助办法", body="<p>正文</p>"), published("in-body", title="通知", body="<p>关于临时救助的说明</p>", days=5)]
        )
        assert ids(index, "临时救助", sort="date") == ["in-body", "in-title"]

    def test_empty_query_lists_newest_documents(self, index):
        index.apply([published("a", days=1), published("b", days=2)])
        assert ids(index, "") == ["b", "a"]
        assert ids(index, "", sort="date") == ["b", "a"]

    def test_hit_carries_what_the_page_shows(self, index):
        index.apply([published("a", version=3, title="低保<名单>", summary="摘要", body="<p>本月低保<b>名单</b></p>")])
        [hit] = index.search(SearchQuery(q="低保")).hits
        assert (hit.publication_id, hit.version, hit.title, hit.summary, hit.kind) == ("a", 3, "低保<名单>", "摘要", "info")
        assert hit.published_at == BASE_TIME
        assert hit.index_number.startswith("430102001/2024-")
        assert hit.placements == [
            {
                "region_code": FURONG_TOWNSHIP,
                "region_name": f"区划{FURONG_TOWNSHIP}",
                "domain_code": "D14",
                "domain_name": "领域D14",
                "level1_name": "一级事项",
                "level2_name": "二级事项",
            }
        ]
        assert hit.title_html == "<mark>低保</mark>&lt;名单&gt;"
        assert hit.snippet == "本月<mark>低保</mark>名单"

    def test_snippet_escapes_text(self, index):
        index.apply([published("x", title="<script>alert(1)</script> 低保", body="<p>a &lt;b&gt; 低保 &amp; c</p>")])
        [hit] = index.search(SearchQuery(q="低保")).hits
        assert hit.title == "<script>alert(1)</script> 低保"  # raw: the template escapes it
        # Escaped (an encoder may also escape "/"), with only our marks left as markup.
        assert "<script>" not in hit.title_html and "</script>" not in hit.title_html
        assert html.unescape(hit.title_html.replace("<mark>", "[").replace("</mark>", "]")) == "<script>alert(1)</script> [低保]"
        assert hit.snippet == "a &lt;b&gt; <mark>低保</mark> &amp; c"

    # --- filters --------------------------------------------------------------------------

    def test_region_filter_covers_townships_of_a_county(self, index):
        index.apply(
            [
                published("county", title="低保", placements=(placement("430102"),)),
                published("township", title="低保", placements=(placement(FURONG_TOWNSHIP),)),
                published("other-county", title="低保", placements=(placement(YUELU_TOWNSHIP),)),
            ]
        )
        assert sorted(ids(index, "低保", region="430102")) == ["county", "township"]
        assert sorted(ids(index, "低保", region="4301")) == ["county", "other-county", "township"]
        assert ids(index, "", region=YUELU_TOWNSHIP) == ["other-county"]

    def test_domain_filter_is_exact(self, index):
        index.apply([published("d14", placements=(placement(domain_code="D14"),)), published("d09", placements=(placement(domain_code="D09"),))])
        assert ids(index, "", domain="D09") == ["d09"]
        assert ids(index, "通知", domain="D14") == ["d14"]

    def test_level1_and_level2_filters(self, index):
        index.apply(
            [
                published("d14-02-01", placements=(placement(level1="02", level2="01"),)),
                published("d14-02-03", placements=(placement(level1="02", level2="03"),)),
                published("d14-03-01", placements=(placement(level1="03", level2="01"),)),
            ]
        )
        assert sorted(ids(index, "", level1="D14-02")) == ["d14-02-01", "d14-02-03"]
        assert ids(index, "", level2="D14-02-03") == ["d14-02-03"]
        assert ids(index, "", domain="D14", level1="D14-03", level2="D14-03-01") == ["d14-03-01"]

    def test_contradicting_filters_find_nothing(self, index):
        index.apply([published("a")])
        assert ids(index, "", domain="D09", level1="D14-02") == []
        assert ids(index, "", level1="D14-03", level2="D14-02-01") == []

    def test_kind_filter(self, index):
        index.apply([published("guide", title="低保办事指南", kind="service"), published("notice", title="低保公示")])
        assert ids(index, "低保", kind="service") == ["guide"]
        assert ids(index, "低保", kind="info") == ["notice"]

    def test_date_range_is_inclusive_by_utc_date(self, index):
        index.apply([published(f"day{d}", title="低保", days=d) for d in range(5)])  # 2024-03-01 … 03-05, 09:00 UTC
        assert ids(index, "低保", published_from=date(2024, 3, 2), published_to=date(2024, 3, 4)) == ["day3", "day2", "day1"]
        assert ids(index, "", published_from=date(2024, 3, 5)) == ["day4"]
        assert ids(index, "", published_to=date(2024, 3, 1)) == ["day0"]

    def test_filters_apply_to_one_placement(self, index):
        filed_twice = (placement(FURONG_TOWNSHIP, "D14"), placement(YUELU_TOWNSHIP, "D09"))
        index.apply([published("a", placements=filed_twice)])
        assert ids(index, "", region="430104", domain="D09") == ["a"]
        assert ids(index, "", region="430104", domain="D14") == []
        assert ids(index, "", region="430104", level1="D09-02") == ["a"]
        assert ids(index, "", region="430104", level2="D14-02-01") == []

    # --- facets ---------------------------------------------------------------------------

    @pytest.fixture
    def filed(self, index):
        index.apply(
            [
                published("a", title="低保", placements=(placement(FURONG_TOWNSHIP, "D14"),)),
                published("b", title="低保", placements=(placement("430104", "D14"),)),
                published("c", title="低保", placements=(placement("430102", "D09"),)),
                published("d", title="低保", placements=(placement(FURONG_TOWNSHIP, "D14"), placement(YUELU_TOWNSHIP, "D09"))),
                published("e", title="低保", placements=(placement("4301", "D14"),)),  # city level: no county to count
                published("f", title="养老", placements=(placement("430103", "D15"),)),
            ]
        )
        return index

    def facets(self, index, q: str = "低保", **filters) -> dict:
        return index.search(SearchQuery(q=q, **filters)).facets

    def test_facets_count_documents_per_domain_and_county(self, filed):
        assert self.facets(filed) == {"domain": {"D14": 4, "D09": 2}, "region": {"430102": 3, "430104": 2}}
        assert self.facets(filed, "") == {"domain": {"D14": 4, "D09": 2, "D15": 1}, "region": {"430102": 3, "430104": 2, "430103": 1}}

    def test_a_facet_ignores_its_own_filter_but_not_the_others(self, filed):
        # Picking a domain keeps the other domains' counts; the regions count D14 filings only.
        assert self.facets(filed, domain="D14") == {"domain": {"D14": 4, "D09": 2}, "region": {"430102": 2, "430104": 1}}
        # d is filed in 岳麓区 under D09 only: it counts for D09 there, not for D14.
        assert self.facets(filed, region="430104") == {"domain": {"D14": 1, "D09": 1}, "region": {"430102": 3, "430104": 2}}
        assert self.facets(filed, region="430104", domain="D14") == {"domain": {"D14": 1, "D09": 1}, "region": {"430102": 2, "430104": 1}}
        assert self.facets(filed, level1="D09-02") == {"domain": {"D09": 2}, "region": {"430102": 1, "430104": 1}}

    def test_facets_follow_the_other_filters(self, filed):
        assert self.facets(filed, published_from=date(2030, 1, 1)) == {"domain": {}, "region": {}}
        assert self.facets(filed, kind="service") == {"domain": {}, "region": {}}

    def test_a_picked_facet_value_finds_what_it_counted(self, filed):
        for filters in ({}, {"domain": "D14"}, {"region": "430104"}, {"region": "430102", "domain": "D09"}):
            facets = self.facets(filed, **filters)
            for domain, counted in facets["domain"].items():
                assert filed.search(SearchQuery(q="低保", **{**filters, "domain": domain})).total == counted, (filters, domain)
            for region, counted in facets["region"].items():
                assert filed.search(SearchQuery(q="低保", **{**filters, "region": region})).total == counted, (filters, region)

    def test_no_facets_when_not_asked(self, filed):
        assert filed.search(SearchQuery(q="低保", facets=False)).facets == {}

    # --- versions and tombstones: the projection contract (tests/unit/common/) holds what the
    # public sees of them; here what only text search shows --------------------------------

    def test_only_the_text_of_the_version_applied_is_found(self, index):
        index.apply([published("a", version=2, title="新标题")])
        index.apply([published("a", version=1, title="旧标题")])
        assert ids(index, "新标题") == ["a"] and ids(index, "旧标题") == []
        index.apply([published("b", version=3, title="第三版"), published("b", version=2, title="第二版")])
        assert ids(index, "第三版") == ["b"] and ids(index, "第二版") == []
        index.apply([published("c", version=1, title="低保")])
        index.apply([withdrawn("c", version=2)])
        assert ids(index, "低保") == []
        index.apply([published("c", version=1, title="低保")])
        assert ids(index, "低保") == []
        index.apply([published("c", version=3, title="低保（更正）")])
        assert ids(index, "低保") == ["c"]

    def test_newer_version_replaces_text_and_placements(self, index):
        index.apply([published("a", version=1, title="旧标题", placements=(placement(FURONG_TOWNSHIP),))])
        index.apply([published("a", version=2, title="新标题", placements=(placement(YUELU_TOWNSHIP),))])
        assert ids(index, "旧标题") == []
        assert ids(index, "新标题", region="430104") == ["a"]
        assert ids(index, "", region="430102") == []
        assert index.count() == 1

    def test_unknown_publication_has_no_version(self, index):
        assert index.version_of("nope") is None
        assert index.count() == 0
        assert index.healthy()

    # --- hostile input and paging ---------------------------------------------------------

    @pytest.mark.parametrize(
        "q",
        [
            '"',
            '"低保',
            "AND OR NOT",
            "'; DROP TABLE x; --",
            "title:*",
            "😀",
            "a" * 500,
            "低保 OR",
            "NEAR(a b)",
            "(",
            "-低保",
            "^a",
            "低" * 500,
            "\x00",
            "{title}: x",
            "低保~2",
            "title:(低保) AND body:[* TO *]",
            "/.*/",
            "\\",
            "*?",
            " ".join(f"词{i}" for i in range(250)),
        ],
    )
    def test_hostile_queries_never_raise(self, index, q):
        index.apply([published("a", title="低保 and or not drop table")])
        results = index.search(SearchQuery(q=q))
        assert results.total == len(results.hits) <= 1

    def test_operators_are_searched_as_text(self, index):
        index.apply([published("a", title="低保 养老"), published("b", title="低保")])
        assert ids(index, '"低保" -养老') == ["a"]  # quotes and the minus only separate words

    def test_punctuation_only_query_finds_nothing(self, index):
        index.apply([published("a")])
        assert index.search(SearchQuery(q="？！…")).total == 0

    @pytest.mark.parametrize("sort", ["relevance", "date"])
    def test_paging_is_stable_and_complete(self, index, sort):
        # Same title and time for all: only the tie-breaker decides the order.
        index.apply([published(f"p{i:02d}", title="低保公示") for i in range(23)])
        pages = [index.search(SearchQuery(q="低保", page=page, per_page=10, sort=sort)) for page in (1, 2, 3)]
        assert [r.total for r in pages] == [23, 23, 23]
        assert [len(r.hits) for r in pages] == [10, 10, 3]
        seen = [hit.publication_id for r in pages for hit in r.hits]
        assert sorted(seen) == [f"p{i:02d}" for i in range(23)]
        again = [hit.publication_id for page in (1, 2, 3) for hit in index.search(SearchQuery(q="低保", page=page, per_page=10, sort=sort)).hits]
        assert again == seen
        assert index.search(SearchQuery(q="低保", page=4, per_page=10, sort=sort)).hits == []


def _elasticsearch_factory():
    live = importlib.import_module("tests.integration.test_elasticsearch_live")
    made: list[str] = []
    return (lambda *_: live.new_index(live.fresh_prefix(made))), (lambda: asyncio.run(live.drop(made)))


def _opensearch_factory():
    live = importlib.import_module("tests.integration.test_search_live")
    made: list[str] = []
    return (lambda *_: live.new_index(live.fresh_prefix(made))), (lambda: asyncio.run(live.drop(made)))


# A search server joins only when there is one; without one a single test says so.
BACKENDS = ["memory", "embedded", *(["opensearch"] if OPENSEARCH_URL else []), *(["elasticsearch"] if ES_URL else [])]


@pytest.fixture(params=BACKENDS)
def make_index(request):
    if request.param == "memory":
        yield lambda tmp_path: InMemorySearchIndex()
    elif request.param == "embedded":
        yield lambda tmp_path: EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}")
    else:
        make, cleanup = _opensearch_factory() if request.param == "opensearch" else _elasticsearch_factory()
        yield make
        cleanup()


@pytest.mark.skipif(not ES_URL, reason="TONGYUAN_TEST_ES_URL is not set: the search contract did not run against Elasticsearch")
def test_the_contract_covers_elasticsearch_when_a_server_is_given():
    assert "elasticsearch" in BACKENDS


@pytest.mark.skipif(not OPENSEARCH_URL, reason="TONGYUAN_TEST_OPENSEARCH_URL is not set: the search contract did not run against OpenSearch")
def test_the_contract_covers_opensearch_when_a_node_is_given():
    assert "opensearch" in BACKENDS


class TestSearchIndex(SearchIndexContract):
    pass


class TestEmbeddedSearchIndex:
    """What only the on-disk index has to show: restarts, crashes, other processes."""

    @pytest.fixture
    def opened(self, tmp_path):
        closers = []

        def open_index():
            wrapped, close = blocking(EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}"))
            closers.append(close)
            wrapped.create()
            return wrapped

        yield open_index
        for close in closers:
            close()

    def test_index_survives_reopening(self, opened):
        index = opened()
        index.apply([published("a", version=2, title="低保"), withdrawn("b", version=3)])
        reopened = opened()
        assert ids(reopened, "低保") == ["a"]
        assert reopened.version_of("b") == 3
        assert reopened.count() == 1

    def test_unhealthy_before_create(self, tmp_path):
        index, close = blocking(EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}"))
        try:
            assert not index.healthy()
        finally:
            close()

    def test_a_writer_in_another_instance_is_seen_at_once(self, opened):
        reader, writer = opened(), opened()
        assert ids(reader, "低保") == []
        writer.apply([published("a", title="低保")])
        assert ids(reader, "低保") == ["a"]
        assert reader.count() == 1

    def test_a_batch_that_fails_midway_leaves_nothing(self, opened, monkeypatch):
        from services.indexer import embedded

        index = opened()
        index.apply([published("kept", title="低保")])
        made = embedded.text_document
        calls = count()

        class Unwritable:
            """The third document fails as the writer reaches it, after two went in."""

            def add_integer(self, field, value):
                raise RuntimeError("disk full")

        def failing(event):
            return (Unwritable(), 0) if next(calls) == 2 else made(event)

        monkeypatch.setattr(embedded, "text_document", failing)
        batch = [published(f"n{i}", title="低保") for i in range(5)] + [published("kept", version=2, title="养老")]
        with pytest.raises(RuntimeError):
            index.apply(batch)
        assert ids(index, "低保") == ["kept"] and index.count() == 1
        assert [index.version_of(e.data.publication_id) for e in batch] == [None] * 5 + [1]
        monkeypatch.setattr(embedded, "text_document", made)
        index.apply(batch)  # the consumer's retry
        assert sorted(ids(index, "低保")) == [f"n{i}" for i in range(5)]
        assert ids(index, "养老") == ["kept"] and index.count() == 6

    def test_a_crash_between_text_and_ledger_commits_is_repaired_by_the_replay(self, opened, monkeypatch):
        from services.indexer import embedded

        index = opened()
        index.apply([published("a", title="低保")])
        batch = [published("a", version=2, title="养老"), published("b", title="养老"), withdrawn("c", 4)]

        def crash(*_):
            raise OSError("killed")

        monkeypatch.setattr(embedded, "_write_ledger", crash)
        with pytest.raises(OSError):
            index.apply(batch)
        monkeypatch.undo()
        # The offsets were not committed, so the consumer applies the same batch again.
        reopened = opened()
        reopened.apply(batch)
        assert sorted(ids(reopened, "养老")) == ["a", "b"]
        assert ids(reopened, "低保") == []
        assert reopened.count() == 2  # no document twice
        assert [reopened.version_of(p) for p in "abc"] == [2, 1, 4]

    def test_a_killed_writer_leaves_whole_batches(self, tmp_path):
        """kill -9 while a big batch is written: after a restart it is all there or not at all."""
        import signal
        import subprocess
        import sys
        import textwrap
        import time

        script = textwrap.dedent(
            f"""
            import asyncio, sys
            from services.indexer.embedded import EmbeddedSearchIndex
            from tests.unit.indexer.test_search_index_contract import published
            index = EmbeddedSearchIndex("sqlite:///{tmp_path / "search.db"}")
            asyncio.run(index.create())
            asyncio.run(index.apply([published(f"first{{i}}", title="低保") for i in range(100)]))
            print("ready", flush=True)
            asyncio.run(index.apply([published(f"second{{i}}", title="低保", body="<p>" + "城乡低保" * 200 + "</p>") for i in range(3000)]))
            print("done", flush=True)
            """
        )
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        index, close = blocking(EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}"))
        try:
            index.create()
            live = index.count()
            assert live in (100, 3100)
            versions = {index.version_of(p) for p in ("second0", "second2999")}
            assert versions in ({None}, {1})
            # Whatever was left, the replay of the unacked batch makes it whole.
            index.apply([published(f"second{i}", title="低保") for i in range(3000)])
            assert index.count() == 3100
        finally:
            close()
