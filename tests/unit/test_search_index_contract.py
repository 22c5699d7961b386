"""One contract for every SearchIndex adapter: the in-memory fake and embedded SQLite FTS5."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from itertools import count

import pytest

from contracts.events import (
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


def placement(region_code: str = FURONG_TOWNSHIP, domain_code: str = "D14") -> Placement:
    return Placement(
        region_code=region_code,
        domain_code=domain_code,
        level1_id=f"{domain_code}-02",
        level2_id=f"{domain_code}-02-01",
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
) -> PublishedEvent:
    data = PublicationData(
        publication_id=publication_id,
        version=version,
        placements=placements or (placement(),),
        title=title,
        summary=summary,
        body_html=body,
        index_number=f"430102001/2024-{next(_ids):05d}",
        formed_at=date(2024, 3, 1),
        published_at=BASE_TIME + timedelta(days=days),
        source_ref=SourceRef(source="cms", ref=publication_id),
    )
    return PublishedEvent(id=f"evt-{next(_ids)}", source="/publisher", subject=publication_id, data=data)


def withdrawn(publication_id: str, version: int) -> WithdrawnEvent:
    data = WithdrawalData(publication_id=publication_id, version=version, withdrawal_type="withdrawn", withdrawn_at=BASE_TIME)
    return WithdrawnEvent(id=f"evt-{next(_ids)}", source="/publisher", subject=publication_id, data=data)


def ids(index: SearchIndex, q: str = "", **filters) -> list[str]:
    return [hit.publication_id for hit in index.search(SearchQuery(q=q, per_page=100, **filters)).hits]


class SearchIndexContract:
    def make_index(self, tmp_path) -> SearchIndex:
        raise NotImplementedError

    @pytest.fixture
    def index(self, tmp_path) -> SearchIndex:
        index = self.make_index(tmp_path)
        index.create()
        index.create()  # idempotent
        return index

    # --- matching -------------------------------------------------------------------------

    def test_two_character_word_finds_it_inside_a_longer_text(self, index):
        index.apply([published("dibao", title="救助政策", body="<p>城乡最低生活保障（以下简称低保）对象认定办法</p>"), published("other", title="道路养护", body="<p>养护计划</p>")])
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

    def test_title_match_ranks_above_body_match(self, index):
        index.apply([published("in-body", title="通知", body="<p>关于临时救助的说明</p>", days=5), published("in-title", title="临时救助办法", body="<p>正文</p>")])
        assert ids(index, "临时救助") == ["in-title", "in-body"]

    def test_equal_matches_list_newest_first(self, index):
        index.apply([published("old", title="低保公示", days=1), published("new", title="低保公示", days=3), published("mid", title="低保公示", days=2)])
        assert ids(index, "低保") == ["new", "mid", "old"]

    def test_empty_query_lists_newest_documents(self, index):
        index.apply([published("a", days=1), published("b", days=2)])
        assert ids(index, "") == ["b", "a"]

    def test_hit_carries_what_the_page_shows(self, index):
        index.apply([published("a", version=3, title="低保名单", summary="摘要", body="<p>本月低保<b>名单</b></p>")])
        [hit] = index.search(SearchQuery(q="低保")).hits
        assert (hit.publication_id, hit.version, hit.title, hit.summary, hit.kind) == ("a", 3, "低保名单", "摘要", "info")
        assert hit.published_at == BASE_TIME
        assert hit.index_number.startswith("430102001/2024-")
        assert hit.placements == [
            {"region_code": FURONG_TOWNSHIP, "region_name": f"区划{FURONG_TOWNSHIP}", "domain_code": "D14", "domain_name": "领域D14", "level1_name": "一级事项", "level2_name": "二级事项"}
        ]
        assert hit.snippet == "本月<mark>低保</mark>名单"

    def test_snippet_escapes_text(self, index):
        index.apply([published("x", title="<script>alert(1)</script> 低保", body="<p>a &lt;b&gt; 低保 &amp; c</p>")])
        [hit] = index.search(SearchQuery(q="低保")).hits
        assert hit.title == "<script>alert(1)</script> 低保"  # raw: the template escapes it
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

    def test_filters_apply_to_one_placement(self, index):
        filed_twice = (placement(FURONG_TOWNSHIP, "D14"), placement(YUELU_TOWNSHIP, "D09"))
        index.apply([published("a", placements=filed_twice)])
        assert ids(index, "", region="430104", domain="D09") == ["a"]
        assert ids(index, "", region="430104", domain="D14") == []

    # --- versions and tombstones ----------------------------------------------------------

    def test_duplicate_event_changes_nothing(self, index):
        event = published("a", version=2, title="低保")
        index.apply([event])
        index.apply([event, event])
        assert ids(index, "低保") == ["a"]
        assert index.count() == 1
        assert index.version_of("a") == 2

    def test_older_version_after_newer_is_ignored(self, index):
        index.apply([published("a", version=2, title="新标题")])
        index.apply([published("a", version=1, title="旧标题")])
        assert ids(index, "新标题") == ["a"]
        assert ids(index, "旧标题") == []
        assert index.version_of("a") == 2

    def test_highest_version_in_a_batch_wins_whatever_the_order(self, index):
        index.apply([published("a", version=3, title="第三版"), published("a", version=2, title="第二版"), published("b", version=1)])
        assert index.version_of("a") == 3
        assert ids(index, "第三版") == ["a"]
        assert ids(index, "第二版") == []

    def test_newer_version_replaces_text_and_placements(self, index):
        index.apply([published("a", version=1, title="旧标题", placements=(placement(FURONG_TOWNSHIP),))])
        index.apply([published("a", version=2, title="新标题", placements=(placement(YUELU_TOWNSHIP),))])
        assert ids(index, "旧标题") == []
        assert ids(index, "新标题", region="430104") == ["a"]
        assert ids(index, "", region="430102") == []

    def test_withdrawal_removes_and_late_older_publish_does_not_revive(self, index):
        index.apply([published("a", version=1, title="低保")])
        index.apply([withdrawn("a", version=2)])
        assert ids(index, "低保") == []
        assert ids(index, "") == []
        assert index.count() == 0
        assert index.version_of("a") == 2  # the tombstone
        index.apply([published("a", version=1, title="低保")])
        assert ids(index, "低保") == []

    def test_withdrawal_before_any_publish_is_kept_as_tombstone(self, index):
        index.apply([withdrawn("a", version=5)])
        index.apply([published("a", version=4, title="低保")])
        assert ids(index, "低保") == []
        assert index.version_of("a") == 5

    def test_republish_with_higher_version_brings_it_back(self, index):
        index.apply([published("a", version=1, title="低保")])
        index.apply([withdrawn("a", version=2)])
        index.apply([published("a", version=3, title="低保（更正）")])
        assert ids(index, "低保") == ["a"]
        assert index.count() == 1
        assert index.version_of("a") == 3

    def test_unknown_publication_has_no_version(self, index):
        assert index.version_of("nope") is None
        assert index.count() == 0
        assert index.healthy()

    # --- hostile input and paging ---------------------------------------------------------

    @pytest.mark.parametrize("q", ['"', 'AND OR NOT', "'; DROP TABLE x; --", "title:*", "😀", "a" * 500, "低保 OR", "NEAR(a b)", "(", "-低保", "^a", "低" * 500, "\x00", "{title}: x"])
    def test_hostile_queries_never_raise(self, index, q):
        index.apply([published("a", title="低保 and or not drop table")])
        results = index.search(SearchQuery(q=q))
        assert results.total == len(results.hits) <= 1

    def test_punctuation_only_query_finds_nothing(self, index):
        index.apply([published("a")])
        assert index.search(SearchQuery(q="？！…")).total == 0

    def test_paging_is_stable_and_complete(self, index):
        # Same title and time for all: only the tie-breaker decides the order.
        index.apply([published(f"p{i:02d}", title="低保公示") for i in range(23)])
        pages = [index.search(SearchQuery(q="低保", page=page, per_page=10)) for page in (1, 2, 3)]
        assert [r.total for r in pages] == [23, 23, 23]
        assert [len(r.hits) for r in pages] == [10, 10, 3]
        seen = [hit.publication_id for r in pages for hit in r.hits]
        assert sorted(seen) == [f"p{i:02d}" for i in range(23)]
        again = [hit.publication_id for page in (1, 2, 3) for hit in index.search(SearchQuery(q="低保", page=page, per_page=10)).hits]
        assert again == seen
        assert index.search(SearchQuery(q="低保", page=4, per_page=10)).hits == []


class TestInMemorySearchIndex(SearchIndexContract):
    def make_index(self, tmp_path) -> SearchIndex:
        return InMemorySearchIndex()


class TestEmbeddedSearchIndex(SearchIndexContract):
    def make_index(self, tmp_path) -> SearchIndex:
        return EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}")

    def test_index_survives_reopening(self, index, tmp_path):
        index.apply([published("a", version=2, title="低保"), withdrawn("b", version=3)])
        reopened = self.make_index(tmp_path)
        reopened.create()
        assert ids(reopened, "低保") == ["a"]
        assert reopened.version_of("b") == 3

    def test_unhealthy_before_create(self, tmp_path):
        assert not self.make_index(tmp_path).healthy()
