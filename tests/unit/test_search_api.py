import re
from pathlib import Path

import jinja2
import pytest
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient

import services.indexer
from services.indexer.api import build_router
from services.indexer.embedded import EmbeddedSearchIndex
from services.indexer.memory import InMemorySearchIndex
from tests.unit.test_search_index_contract import (
    FURONG_TOWNSHIP,
    YUELU_TOWNSHIP,
    placement,
    published,
)

TEMPLATES = Path(services.indexer.__file__).parent / "templates"
# Stands in for services/portal/templates/layout.html, which provides the same two blocks.
LAYOUT = "<!doctype html><title>{% block title %}{% endblock %}</title><main>{% block content %}{% endblock %}</main>"


@pytest.fixture(params=["memory", "embedded"])
def index(request, tmp_path):
    index = InMemorySearchIndex() if request.param == "memory" else EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}")
    index.create()
    index.apply(
        [
            published("dibao-1", title="低保对象名单公示", body="<p>本月低保对象名单</p>", days=2),
            published("dibao-2", title="临时救助", body="<p>最低生活保障（低保）与临时救助</p>", days=1),
            published("xss", title="<script>alert('x')</script>低保说明", placements=(placement(YUELU_TOWNSHIP),)),
            published("roads", title="道路养护计划", placements=(placement(FURONG_TOWNSHIP, "D09"),)),
        ]
    )
    return index


@pytest.fixture
def client(index, tmp_path):
    (tmp_path / "layout.html").write_text(LAYOUT, encoding="utf-8")
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(TEMPLATES), jinja2.FileSystemLoader(tmp_path)])
    templates = Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True))
    app = FastAPI()
    app.include_router(build_router(index, templates))
    return TestClient(app)


def html_hits(page: str) -> list[str]:
    return re.findall(r'<a href="/publications/([^"]+)">', page)


def test_json_lists_hits(client):
    body = client.get("/v1/search", params={"q": "低保"}).json()
    assert body["total"] == 3 and body["page"] == 1 and body["per_page"] == 20
    found = [h["publication_id"] for h in body["hits"]]
    # Two title matches, then the body-only match; how bm25 orders the two titles is its business.
    assert sorted(found[:2]) == ["dibao-1", "xss"] and found[2] == "dibao-2"
    first = next(h for h in body["hits"] if h["publication_id"] == "dibao-1")
    assert first["published_at"] == "2024-03-03T09:00:00+00:00"
    assert first["snippet"] == "本月<mark>低保</mark>对象名单"
    assert first["placements"][0]["domain_code"] == "D14"


@pytest.mark.parametrize(
    "params",
    [{"q": "低保"}, {"q": "低保", "region": "430102"}, {"q": "", "domain": "D09"}, {"q": "低保", "per_page": 1, "page": 2}, {"q": "低保", "region": "", "domain": ""}],
)
def test_page_and_api_give_the_same_hits(client, params):
    api = [h["publication_id"] for h in client.get("/v1/search", params=params).json()["hits"]]
    page = client.get("/search", params=params)
    assert page.status_code == 200
    assert html_hits(page.text) == api


def test_filters(client):
    assert [h["publication_id"] for h in client.get("/v1/search", params={"q": "低保", "region": "430104"}).json()["hits"]] == ["xss"]
    assert [h["publication_id"] for h in client.get("/v1/search", params={"domain": "D09"}).json()["hits"]] == ["roads"]


def test_script_in_a_title_is_escaped_in_the_page(client):
    page = client.get("/search", params={"q": "低保"}).text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;低保说明" in page
    assert "<mark>低保</mark>" in page  # the snippet's own markup is kept


def test_page_extends_layout_and_keeps_the_form_values(client):
    page = client.get("/search", params={"q": "低保 <b>", "region": "430102"}).text
    assert page.startswith("<!doctype html><title>低保 &lt;b&gt; · 站内搜索</title><main>")
    assert 'name="q" value="低保 &lt;b&gt;"' in page
    assert 'name="region" value="430102"' in page


def test_empty_page_shows_only_the_form(client):
    page = client.get("/search").text
    assert '<form class="search"' in page and "搜索结果" not in page


def test_paging_links_keep_the_query(client):
    page = client.get("/search", params={"q": "低保", "per_page": 1, "page": 2}).text
    assert 'href="/search?q=%E4%BD%8E%E4%BF%9D&amp;page=1&amp;per_page=1" rel="prev"' in page
    assert 'href="/search?q=%E4%BD%8E%E4%BF%9D&amp;page=3&amp;per_page=1" rel="next"' in page
    assert "第 2 / 3 页" in page


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "低" * 501}, "q"),
        ({"region": "43-01"}, "region"),
        ({"region": "4"}, "region"),
        ({"domain": "D1"}, "domain"),
        ({"domain": "X14"}, "domain"),
        ({"page": 0}, "page"),
        ({"page": 1001}, "page"),
        ({"page": "x"}, "page"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 101}, "per_page"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/search", "/search"])
def test_bad_parameters_are_422_with_the_field(client, path, params, field):
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


def test_500_characters_is_allowed(client):
    assert client.get("/v1/search", params={"q": "低" * 500}).status_code == 200


def test_hostile_query_is_just_no_results(client):
    assert client.get("/v1/search", params={"q": "'; DROP TABLE x; --"}).json() == {"total": 0, "page": 1, "per_page": 20, "hits": []}
