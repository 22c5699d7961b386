import asyncio
import re
from datetime import date
from pathlib import Path

import jinja2
import pytest
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient

import services.indexer
from services.indexer.embedded import EmbeddedSearchIndex
from services.indexer.memory import InMemorySearchIndex
from services.indexer.routes import DAY, router
from tests.unit.indexer.test_search_index_contract import (
    FURONG_TOWNSHIP,
    YUELU_TOWNSHIP,
    placement,
    published,
)
from tests.wired import mounted

TEMPLATES = Path(services.indexer.__file__).parent / "templates"
# Stands in for services/portal/templates/layout.html, which provides the same two blocks.
LAYOUT = "<!doctype html><title>{% block title %}{% endblock %}</title><main>{% block content %}{% endblock %}</main>"


@pytest.fixture(params=["memory", "embedded"])
def index(request, tmp_path):
    index = InMemorySearchIndex() if request.param == "memory" else EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}")

    async def fill():
        await index.create()
        await index.apply(
            [
                published("dibao-1", title="低保对象名单公示", body="<p>本月低保对象名单</p>", days=2),
                published("dibao-2", title="临时救助", body="<p>最低生活保障（低保）与临时救助</p>", days=1),
                published("xss", title="<script>alert('x')</script>低保说明", placements=(placement(YUELU_TOWNSHIP),)),
                published("roads", title="道路养护计划", placements=(placement(FURONG_TOWNSHIP, "D09"),)),
                published("guide", title="低保申请办事指南", kind="service", days=30, placements=(placement(FURONG_TOWNSHIP, "D14", "02", "02"),)),
            ]
        )

    asyncio.run(fill())
    return index


@pytest.fixture
def client(index, tmp_path):
    (tmp_path / "layout.html").write_text(LAYOUT, encoding="utf-8")
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(TEMPLATES), jinja2.FileSystemLoader(tmp_path)])
    templates = Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True))
    return TestClient(mounted(router, search_index=index, templates=templates))


@pytest.fixture
def memory_client(tmp_path):
    """For what is refused before any index is asked."""
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True))
    return TestClient(mounted(router, search_index=InMemorySearchIndex(), templates=templates))


def html_hits(page: str) -> list[str]:
    return re.findall(r'<a href="/publications/([^"]+)">', page)


def api_hits(client, **params) -> list[str]:
    response = client.get("/v1/search", params=params)
    assert response.status_code == 200, response.text
    return [h["publication_id"] for h in response.json()["hits"]]


def test_json_lists_hits_and_facets(client):
    body = client.get("/v1/search", params={"q": "低保"}).json()
    assert (body["total"], body["page"], body["per_page"], body["pages"], body["sort"]) == (4, 1, 20, 1, "relevance")
    found = [h["publication_id"] for h in body["hits"]]
    # Three title matches, then the body-only match; how bm25 orders the titles is its business.
    assert sorted(found[:3]) == ["dibao-1", "guide", "xss"] and found[3] == "dibao-2"
    first = next(h for h in body["hits"] if h["publication_id"] == "dibao-1")
    assert first["published_at"] == "2024-03-03T09:00:00+00:00"
    assert first["title_html"] == "<mark>低保</mark>对象名单公示"
    assert first["snippet"] == "本月<mark>低保</mark>对象名单"
    assert first["placements"][0]["domain_code"] == "D14" and first["placements"][0]["level2_name"] == "二级事项"
    assert body["facets"]["domain"] == [{"code": "D14", "name": "社会救助", "count": 4, "selected": False}]
    assert body["facets"]["region"] == [
        {"code": "430102", "name": "芙蓉区", "count": 3, "selected": False},
        {"code": "430104", "name": "岳麓区", "count": 1, "selected": False},
    ]


def test_facets_can_be_left_out(client):
    assert client.get("/v1/search", params={"q": "低保", "facets": "false"}).json()["facets"] == {}


PARAMS = [
    {"q": "低保"},
    {"q": "低保", "region": "430102"},
    {"q": "", "domain": "D09"},
    {"q": "低保", "per_page": 1, "page": 2},
    {"q": "低保", "region": "", "domain": "", "level1": "", "level2": "", "kind": "", "published_from": "", "published_to": "", "sort": ""},
    {"q": "低保", "sort": "date"},
    {"q": "低保", "kind": "service"},
    {"q": "低保", "level1": "D14-02", "level2": "D14-02-02"},
    {"q": "低保", "published_from": "2024-03-02", "published_to": "2024-03-03"},
    {"q": "'; DROP TABLE x; --"},
]


@pytest.mark.parametrize("params", PARAMS)
def test_page_and_api_give_the_same_hits(client, params):
    api = api_hits(client, **params)
    page = client.get("/search", params=params)
    assert page.status_code == 200
    assert html_hits(page.text) == api


def test_filters(client):
    assert api_hits(client, q="低保", region="430104") == ["xss"]
    assert api_hits(client, domain="D09") == ["roads"]
    assert api_hits(client, q="低保", kind="service") == ["guide"]
    assert api_hits(client, q="低保", level2="D14-02-02") == ["guide"]
    assert api_hits(client, q="低保", published_from="2024-03-02", published_to="2024-03-03", sort="date") == ["dibao-1", "dibao-2"]
    assert api_hits(client, q="低保", sort="date")[0] == "guide"


def test_script_in_a_title_is_escaped_in_the_page(client):
    page = client.get("/search", params={"q": "低保"}).text
    assert "<script>" not in page
    # Re-serialised by the page's sanitiser: quotes in text need no escaping, angle brackets stay escaped.
    assert "&lt;script&gt;alert('x')&lt;/script&gt;<mark>低保</mark>说明" in page
    assert "<mark>低保</mark>" in page  # the snippet's own markup is kept


def test_page_extends_layout_and_keeps_the_form_values(client):
    params = {"q": "低保 <b>", "region": "430102", "domain": "D14", "kind": "service", "published_from": "2024-01-01", "sort": "date"}
    page = client.get("/search", params=params).text
    assert page.startswith("<!doctype html><title>低保 &lt;b&gt; · 站内搜索</title><main>")
    assert 'name="q" value="低保 &lt;b&gt;"' in page
    assert 'name="region" value="430102"' in page
    assert '<option value="D14" selected>社会救助</option>' in page
    assert '<option value="service" selected>办事服务</option>' in page
    assert '<option value="date" selected>按发布日期</option>' in page
    assert 'name="published_from" value="2024-01-01"' in page


def test_every_form_field_has_a_label(client):
    page = client.get("/search", params={"q": "低保"}).text
    for field_id in re.findall(r'<(?:input|select) id="([^"]+)"', page):
        assert f'<label for="{field_id}">' in page, field_id


def test_facet_links_pick_and_unpick_a_value(client):
    page = client.get("/search", params={"q": "低保"}).text
    assert '<a href="/search?q=%E4%BD%8E%E4%BF%9D&amp;region=430104">岳麓区<span class="count">（1）</span></a>' in page
    picked = client.get("/search", params={"q": "低保", "region": "430104"}).text
    assert html_hits(picked) == ["xss"]
    # The picked value is marked and its link removes it; the other counties stay listed.
    assert '<a href="/search?q=%E4%BD%8E%E4%BF%9D" aria-current="true" class="selected">岳麓区<span class="count">（1）</span>' in picked
    assert '芙蓉区<span class="count">（3）</span>' in picked
    assert 'aria-label="取消筛选：区划：岳麓区"' in picked


def test_sort_links_keep_the_filters(client):
    page = client.get("/search", params={"q": "低保", "region": "430102", "page": 1}).text
    assert 'href="/search?q=%E4%BD%8E%E4%BF%9D&amp;region=430102&amp;sort=date">按发布日期</a>' in page


def test_empty_page_shows_only_the_form(client):
    page = client.get("/search").text
    assert '<form class="search"' in page and "搜索结果" not in page


def test_a_filter_alone_is_a_search(client):
    assert html_hits(client.get("/search", params={"kind": "service"}).text) == ["guide"]


def test_paging_links_keep_the_query(client):
    page = client.get("/search", params={"q": "低保", "per_page": 1, "page": 2}).text
    assert 'href="/search?q=%E4%BD%8E%E4%BF%9D&amp;per_page=1" rel="prev"' in page
    assert 'href="/search?q=%E4%BD%8E%E4%BF%9D&amp;page=3&amp;per_page=1" rel="next"' in page
    assert "第 2 / 4 页" in page


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "低" * 501}, "q"),
        ({"region": "43-01"}, "region"),
        ({"region": "4"}, "region"),
        ({"domain": "D1"}, "domain"),
        ({"domain": "X14"}, "domain"),
        ({"level1": "D14"}, "level1"),
        ({"level2": "D14-02"}, "level2"),
        ({"domain": "D09", "level1": "D14-02"}, "level1"),
        ({"level1": "D14-03", "level2": "D14-02-01"}, "level2"),
        ({"kind": "news"}, "kind"),
        ({"sort": "popular"}, "sort"),
        ({"published_from": "2024-13-01"}, "published_from"),
        ({"published_to": "yesterday"}, "published_to"),
        ({"published_from": "2024-03-05", "published_to": "2024-03-01"}, "published_to"),
        ({"page": 0}, "page"),
        ({"page": 1001}, "page"),
        ({"page": 501, "per_page": 20}, "page"),
        ({"page": "x"}, "page"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 101}, "per_page"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/search", "/search"])
def test_bad_parameters_are_422_with_the_field(memory_client, path, params, field):
    response = memory_client.get(path, params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


def test_500_characters_is_allowed(client):
    assert client.get("/v1/search", params={"q": "低" * 500}).status_code == 200


def test_the_last_page_of_ten_thousand_results_is_allowed(client):
    assert client.get("/v1/search", params={"q": "低保", "page": 500, "per_page": 20}).json()["hits"] == []


@pytest.mark.parametrize("q", ["'; DROP TABLE x; --", '"', "title:* AND (", "😀😀", "\\", "低保 OR NOT"])
def test_hostile_query_is_just_a_search(client, q):
    response = client.get("/v1/search", params={"q": q})
    assert response.status_code == 200
    assert client.get("/search", params={"q": q}).status_code == 200


def test_dates_in_the_json_are_iso(client):
    hit = client.get("/v1/search", params={"q": "办事指南"}).json()["hits"][0]
    assert date.fromisoformat(hit["published_at"][:10]) == date(2024, 3, 31)


# --- wiring (services/indexer/app.py) -----------------------------------------------------------


def test_the_embedded_index_is_the_default(tmp_path):
    from services.common.heartbeat import beat
    from services.common.settings import Settings
    from services.indexer import app as indexer_app

    settings = Settings(var_dir=tmp_path)
    index = indexer_app.build_index(settings)
    assert isinstance(index, EmbeddedSearchIndex) and (tmp_path / "search.db").exists() and (tmp_path / "search-index").is_dir()
    assert indexer_app.health_probe(settings)() is True
    assert indexer_app.heartbeat_status(settings, within=60) == []
    engine, table = indexer_app._heartbeats(settings)
    beat(engine, table, group_id=indexer_app.GROUP, applied=3, dead_lettered=0)
    assert [w["applied"] for w in indexer_app.heartbeat_status(settings, within=60)] == [3]


def test_elasticsearch_is_created_in_a_loop_of_its_own_and_returned_fresh(tmp_path, monkeypatch):
    from services.common.settings import Settings
    from services.indexer import app as indexer_app
    from services.indexer import elasticsearch

    made = []

    class Fake(InMemorySearchIndex):
        def __init__(self):
            super().__init__()
            self.calls = []
            made.append(self)

        async def create(self):
            self.calls.append(("create", id(asyncio.get_running_loop())))

        async def healthy(self):
            return True

        async def close(self):
            self.calls.append(("close", id(asyncio.get_running_loop())))

    monkeypatch.setattr(elasticsearch, "elasticsearch_index", lambda settings: Fake())
    settings = Settings(var_dir=tmp_path, search_backend="elasticsearch", elasticsearch_url="http://search:9200")

    async def inside_a_running_loop():  # as under uvicorn
        return indexer_app.build_index(settings)

    index = asyncio.run(inside_a_running_loop())
    creator, returned = made
    assert index is returned and returned.calls == []
    assert [call for call, _ in creator.calls] == ["create", "close"] and creator.calls[0][1] == creator.calls[1][1]
    assert indexer_app.health_probe(settings)() is True
    assert indexer_app.heartbeat_status(settings, within=60) == []
    assert (tmp_path / "search-heartbeat.db").exists()


@pytest.mark.parametrize("day", ["2024-13-01", "2024-02-30", "20240301", "2024/03/01", "2024-3-1"])
def test_a_bad_date_is_refused_in_chinese_whatever_its_shape(memory_client, day):
    response = memory_client.get("/v1/search", params={"published_from": day})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["query", "published_from"], "msg": f"{day} 不是有效日期（格式 YYYY-MM-DD）", "type": "date_from_datetime_parsing"}
    ]


def test_the_document_gives_the_date_parameters_shape(memory_client):
    parameters = {p["name"]: p["schema"] for p in memory_client.get("/openapi.json").json()["paths"]["/v1/search"]["get"]["parameters"]}
    assert parameters["published_from"]["pattern"] == parameters["published_to"]["pattern"] == DAY
