from datetime import date, datetime, timezone

import pytest

from contracts.events import PlacementRef, SourceRef
from services.publisher.gate import domain
from services.publisher.gate.domain import Rejected
from tests.conftest import COUNTY, TOWNSHIP, draft, placement

NOW = datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc)


def build(directory, **overrides):
    return domain.build_publication(
        draft(**overrides), publication_id="p1", version=1, index_number="430102001/2026-00001", source=SourceRef(source="/http"), directory=directory, now=NOW
    )


def test_placements_are_enriched_with_catalog_and_region_names(directory):
    data = build(directory, placements=[placement(TOWNSHIP), placement(COUNTY, "D14-02-01")])
    first, second = data.placements
    assert (first.region_name, first.domain_name, first.level1_name, first.level2_name) == ("文艺路街道", "社会救助", "最低生活保障", "办事指南")
    assert second.region_name == "芙蓉区" and second.level2_name == "政策法规文件"
    assert data.catalog.time_limit == "制定或获取信息之日起10个工作日内"
    assert "政务服务中心" in data.catalog.channels


def test_domain_alias_resolves_to_the_canonical_domain(directory):
    refs = [PlacementRef(region_code=TOWNSHIP, domain_code="环境保护", level1_id="D09-01", level2_id="D09-01-01")]
    (resolved,) = domain.resolve_placements(refs, directory)
    assert resolved.domain_code == "D09" and resolved.domain_name == "生态环境"


def test_unknown_level2_lists_the_level2_items_of_that_level1(directory):
    refs = [PlacementRef(region_code=TOWNSHIP, domain_code="D14", level1_id="D14-02", level2_id="D14-02-99")]
    with pytest.raises(Rejected) as caught:
        domain.resolve_placements(refs, directory)
    (error,) = caught.value.errors
    assert error.loc == ("placements", 0, "level2_id")
    assert error.type == "catalog.unknown_level2"
    assert [c["id"] for c in error.choices] == [f"D14-02-{n:02d}" for n in range(1, len(error.choices) + 1)]
    assert {"id": "D14-02-02", "name": "办事指南"} in error.choices


def test_every_bad_placement_is_reported_at_once(directory):
    refs = [
        PlacementRef(region_code="999999", domain_code="D14", level1_id="D14-02", level2_id="D14-02-01"),
        PlacementRef(region_code=TOWNSHIP, domain_code="没有这个领域", level1_id="x", level2_id="y"),
        PlacementRef(region_code=TOWNSHIP, domain_code="D14", level1_id="D18-01", level2_id="y"),
    ]
    with pytest.raises(Rejected) as caught:
        domain.resolve_placements(refs, directory)
    types = [(e.loc, e.type) for e in caught.value.errors]
    assert types == [
        (("placements", 0, "region_code"), "catalog.unknown_region"),
        (("placements", 1, "domain_code"), "catalog.unknown_domain"),
        (("placements", 2, "level1_id"), "catalog.unknown_level1"),
    ]
    assert len(caught.value.errors[1].choices) == 32


def test_the_same_item_twice_is_a_duplicate_filing(directory):
    with pytest.raises(Rejected) as caught:
        domain.resolve_placements([placement(), placement()], directory)
    assert caught.value.errors[0].type == "placement.duplicate"


def test_body_html_is_sanitised(directory):
    data = build(directory, body_html='<p onclick="x()">低保<script>alert(1)</script><a href="javascript:alert(1)">链接</a><img src=x onerror=alert(1)></p>')
    assert "script" not in data.body_html and "onclick" not in data.body_html and "onerror" not in data.body_html
    assert "javascript:" not in data.body_html
    assert "低保" in data.body_html


def test_summary_is_plain_text_from_the_body(directory):
    data = build(directory, body_html="<p>第一段&amp;<b>加粗</b></p>")
    assert data.summary == "第一段&加粗"


def test_formed_after_published_is_rejected(directory):
    with pytest.raises(Rejected) as caught:
        build(directory, formed_at=date(2026, 4, 1))
    assert caught.value.errors[0].loc == ("formed_at",)


@pytest.mark.parametrize(
    ("kind", "explanation", "redirect_to", "field"),
    [("withdrawn", "", None, "explanation"), ("gone", "  ", None, "explanation"), ("redirect", "", None, "redirect_to"), ("vanish", "", "/x", "redirect_to")],
)
def test_withdrawal_needs_what_its_notice_shows(directory, kind, explanation, redirect_to, field):
    current = build(directory)
    with pytest.raises(Rejected) as caught:
        domain.build_withdrawal(current, version=2, withdrawal_type=kind, explanation=explanation, redirect_to=redirect_to, now=NOW)
    assert caught.value.errors[0].loc == (field,)


def test_vanish_keeps_no_title(directory):
    current = build(directory)
    tombstone = domain.build_withdrawal(current, version=2, withdrawal_type="vanish", explanation="", redirect_to=None, now=NOW)
    assert tombstone.title is None and tombstone.placements == ()
