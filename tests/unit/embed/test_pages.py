"""What township portals embed: feeds that validate, fragments that are well-formed, script-free
and accessible, conditional GETs answered 304 without rendering, withdrawals gone everywhere."""

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import feedparser
import html5lib
import pytest
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select, update

from contracts.catalog import regions_of_city
from services.common.db import create_store_engine
from services.embed import routes
from services.embed.caching import Renders, settled
from services.embed.store import EmbedStore, scopes
from tests.factories import place, published, withdrawn
from tests.wired import directory_of, mounted

TOWNSHIP, COUNTY = "430102001", "430102"
ROOT = Path(__file__).resolve().parents[3]
ATOM = "{http://www.w3.org/2005/Atom}"
GENERIC_LINK_TEXT = {"更多", "更多>>", "详情", "点击这里", "这里", "链接", "more", "click here", "here", "read more"}
REGIONS = {r.code: r for r in regions_of_city("4301")}


def templates() -> Jinja2Templates:
    loader = ChoiceLoader([FileSystemLoader(str(ROOT / "services/portal/templates")), FileSystemLoader(str(ROOT / "services/embed/templates"))])
    return Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True)))


def embed_app(store: EmbedStore, public_base_url: str | None = None) -> FastAPI:
    return mounted(
        routes.router,
        embed_store=store,
        templates=templates(),
        directory=directory_of(REGIONS),
        embed_renders=Renders(),
        public_base_url=public_base_url,
    )


@pytest.fixture
def store(tmp_path):
    store = EmbedStore(create_store_engine(f"sqlite:///{tmp_path / 'embed.db'}"))
    store.create()
    return store


@pytest.fixture
def client(store):
    return TestClient(embed_app(store))


def seed(store):
    store.apply(
        [
            published("low", title="2026年城乡低保标准调整公告", body="<p>城乡低保标准<b>调整</b>如下。</p>", day=1),
            published("old", title="养老服务补贴发放公示 & <名单>", placements=[place(level2="D15-01-01", level2_name="政策文件")], day=2),
            published("county", title="区级临时救助政策", placements=[place(COUNTY, "芙蓉区", "D14-02-01")], day=3),
            published("plan", title="控制性详细规划", placements=[place(level2="D01-01-01")], day=4),
        ]
    )


EMBEDDED = [
    f"/embed/{TOWNSHIP}/fragment",
    f"/embed/{TOWNSHIP}",
    f"/embed/{TOWNSHIP}/atom.xml",
    f"/embed/{TOWNSHIP}/feed.json",
    f"/embed/{TOWNSHIP}/D14/atom.xml",
    f"/embed/{TOWNSHIP}/D14/feed.json",
    f"/embed/{COUNTY}/fragment",
    f"/embed/{COUNTY}/atom.xml",
    f"/embed/{COUNTY}/feed.json",
]


# --- feeds ------------------------------------------------------------------------------------
def test_atom_parses_and_has_every_required_element(client, store):
    seed(store)
    response = client.get(f"/embed/{TOWNSHIP}/atom.xml")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "芙蓉区文艺路街道重大民生信息" and parsed.feed.id and parsed.feed.updated_parsed
    assert parsed.feed.author and parsed.feed.language == "zh-CN"
    assert any(link.rel == "self" and link.href.endswith(f"/embed/{TOWNSHIP}/atom.xml") for link in parsed.feed.links)
    assert [e.title for e in parsed.entries] == ["养老服务补贴发放公示 & <名单>", "2026年城乡低保标准调整公告"]
    for entry in parsed.entries:
        assert entry.id.startswith("urn:tongyuan:publication:") and entry.updated_parsed and entry.link.startswith("http://testserver/publications/")
        assert entry.summary and entry.tags
    # RFC 4287 §4.1: feed has one id, title and updated; every entry id, title, updated, and a link (no content).
    root = ET.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"{ATOM}{name}")) == 1
    for entry in root.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1
        assert entry.find(f"{ATOM}link[@rel='alternate']") is not None
        datetime.fromisoformat(entry.find(f"{ATOM}updated").text)
    assert parsed.entries[1].summary == "城乡低保标准调整如下。"


def test_json_feed_has_the_fields_version_1_1_requires(client, store):
    seed(store)
    response = client.get(f"/embed/{TOWNSHIP}/feed.json")
    assert response.headers["content-type"].startswith("application/feed+json")
    feed = json.loads(response.content)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] and feed["feed_url"] == f"http://testserver/embed/{TOWNSHIP}/feed.json" and feed["home_page_url"].startswith("http")
    assert feed["language"] == "zh-CN" and feed["authors"][0]["name"]
    assert isinstance(feed["items"], list) and [i["id"] for i in feed["items"]] == ["urn:tongyuan:publication:old", "urn:tongyuan:publication:low"]
    for item in feed["items"]:
        assert isinstance(item["id"], str) and (item.get("content_text") or item.get("content_html"))
        assert item["url"].startswith("http") and item["title"]
        for key in ("date_published", "date_modified"):
            assert datetime.fromisoformat(item[key]).utcoffset() is not None
        assert all(
            key in {"id", "url", "title", "content_text", "summary", "date_published", "date_modified", "tags", "authors"} or key.startswith("_")
            for key in item
        )


def test_domain_feeds_hold_only_their_domain_and_county_feeds_aggregate(client, store):
    seed(store)
    domain = json.loads(client.get(f"/embed/{TOWNSHIP}/D14/feed.json").content)
    assert [i["title"] for i in domain["items"]] == ["2026年城乡低保标准调整公告"]
    assert "社会救助" in domain["title"]
    county = feedparser.parse(client.get(f"/embed/{COUNTY}/atom.xml").content)
    assert [e.id.rsplit(":", 1)[1] for e in county.entries] == ["county", "old", "low"]
    assert client.get(f"/embed/{COUNTY}/D15/atom.xml").status_code == 200


def test_not_embeddable_regions_and_bad_domains_are_not_found(client):
    assert client.get("/embed/4301/fragment").status_code == 404  # the city: no embedding
    assert client.get("/embed/999999999/atom.xml").status_code == 404
    assert client.get(f"/embed/{TOWNSHIP}/D99/atom.xml").status_code == 404
    assert client.get(f"/embed/{TOWNSHIP}/x14/atom.xml").status_code == 422
    assert client.get(f"/embed/{TOWNSHIP}/fragment", params={"h": 9}).status_code == 422


# --- fragments and the iframe page ------------------------------------------------------------
def strict_parse(text: str, fragment: bool):
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parseFragment(text) if fragment else parser.parse(text)


def accessibility_problems(root, top: int) -> list[str]:
    """A basic check in the spirit of WCAG 2.1 / GB/T 37668: headings in order from `top`,
    meaningful link text, list semantics, unique ids that labels point at, machine-readable dates."""
    problems = []
    elements = list(root.iter())
    levels = [int(e.tag[1]) for e in elements if isinstance(e.tag, str) and len(e.tag) == 2 and e.tag[0] == "h" and e.tag[1].isdigit()]
    if not levels or levels[0] != top:
        problems.append(f"first heading is h{levels[0] if levels else '-'}, expected h{top}")
    problems += [f"heading jumps from h{a} to h{b}" for a, b in zip(levels, levels[1:], strict=False) if b > a + 1]
    ids = [e.get("id") for e in elements if e.get("id")]
    problems += [f"duplicate id {i}" for i in set(ids) if ids.count(i) > 1]
    for e in elements:
        if e.tag == "a":
            text = "".join(e.itertext()).strip()
            if not text or text.lower() in GENERIC_LINK_TEXT:
                problems.append(f"link text {text!r} says nothing about {e.get('href')}")
            if not e.get("href"):
                problems.append("link without href")
        if e.tag in ("ul", "ol") and any(child.tag != "li" for child in e):
            problems.append(f"{e.tag} holds something other than li")
        if e.tag == "li" and e not in [c for p in elements if p.tag in ("ul", "ol") for c in p]:
            problems.append("li outside a list")
        if e.get("aria-labelledby") and e.get("aria-labelledby") not in ids:
            problems.append(f"aria-labelledby points at no id {e.get('aria-labelledby')}")
        if e.tag == "time" and not e.get("datetime"):
            problems.append("time without datetime")
        if e.tag == "img" and e.get("alt") is None:
            problems.append("img without alt")
    return problems


def unsafe(root) -> list[str]:
    found = []
    for e in root.iter():
        if not isinstance(e.tag, str):
            continue
        if e.tag in ("script", "iframe", "object", "embed", "form", "base"):
            found.append(f"<{e.tag}>")
        if e.tag == "link" and "stylesheet" in (e.get("rel") or ""):
            found.append("external stylesheet")
        for name, value in e.attrib.items():
            if name.lower().startswith("on"):
                found.append(f"{name} attribute")
            if name in ("href", "src", "action") and value.strip().lower().startswith(("javascript:", "data:", "vbscript:")):
                found.append(f"{name}={value}")
    return found


@pytest.mark.parametrize("heading", [2, 3])
def test_the_fragment_is_well_formed_script_free_and_accessible(client, store, heading):
    seed(store)
    store.apply([published("evil", title='<script>alert(1)</script><a href="javascript:x" onclick="y">链接</a>', day=5)])
    response = client.get(f"/embed/{TOWNSHIP}/fragment", params={"h": heading})
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    assert not response.text.lstrip().lower().startswith(("<!doctype", "<html"))
    fragment = strict_parse(response.text, fragment=True)
    [root] = list(fragment)
    assert root.tag == "section" and root.get("lang") == "zh-CN"
    assert unsafe(fragment) == []
    assert accessibility_problems(fragment, top=heading) == []
    headings = ["".join(h.itertext()) for h in fragment.iter(f"h{heading + 1}")]
    assert headings == ["救灾", "社会救助", "养老服务", "涉农补贴", "就业", "社会保险", "义务教育", "卫生健康", "保障性住房"]
    text = "".join(fragment.itertext())
    assert "2026年城乡低保标准调整公告" in text and "养老服务补贴发放公示 & <名单>" in text and "控制性详细规划" not in text
    assert "<script>alert(1)</script>" in text  # the title shows as text, never as markup
    assert all(a.get("href").startswith("http://testserver/") for a in fragment.iter("a"))


def test_the_checks_catch_what_they_are_for():
    bad = strict_parse(
        '<section><h3>x</h3><h5>y</h5><ul><p>z</p></ul><a href="/a">更多</a><a href="javascript:v" onclick="w">v</a><script>1</script></section>', fragment=True
    )
    problems = accessibility_problems(bad, top=2)
    assert any("first heading" in p for p in problems) and any("jumps" in p for p in problems)
    assert any("other than li" in p for p in problems) and any("更多" in p for p in problems)
    assert set(unsafe(bad)) == {"<script>", "onclick attribute", "href=javascript:v"}
    with pytest.raises(html5lib.html5parser.ParseError):
        strict_parse("<section><p>unclosed <b>bold</section>", fragment=True)


def test_the_iframe_page_is_a_whole_accessible_document_with_the_townships_title(client, store):
    seed(store)
    response = client.get(f"/embed/{TOWNSHIP}")
    assert response.status_code == 200
    document = strict_parse(response.text, fragment=False)
    assert document.get("lang") == "zh-CN"
    assert document.find("head/title").text == "芙蓉区文艺路街道重大民生信息"
    assert unsafe(document) == []
    assert accessibility_problems(document.find("body"), top=1) == []
    links = [a for a in document.iter("a")]
    assert links and all(a.get("target") == "_top" for a in links)
    assert "script-src" not in response.headers["content-security-policy"] and "default-src 'none'" in response.headers["content-security-policy"]
    assert "x-frame-options" not in response.headers


# --- conditional GETs ---------------------------------------------------------------------------
def settle(store) -> None:
    """As if the last change were a minute ago: Last-Modified is sent once its second is over."""
    with store.engine.begin() as connection:
        for scope, changed_at in connection.execute(select(scopes.c.scope, scopes.c.changed_at)).all():
            connection.execute(update(scopes).where(scopes.c.scope == scope).values(changed_at=changed_at - timedelta(minutes=1)))


def test_last_modified_waits_for_the_second_of_the_change_to_end(client, store):
    """Otherwise a withdrawal later in that second would hide behind If-Modified-Since."""
    assert not settled(datetime(2026, 3, 5, 9, 0, 0, 100_000, tzinfo=timezone.utc), datetime(2026, 3, 5, 9, 0, 0, 900_000, tzinfo=timezone.utc))
    assert settled(datetime(2026, 3, 5, 9, 0, 0, 900_000, tzinfo=timezone.utc), datetime(2026, 3, 5, 9, 0, 1, tzinfo=timezone.utc))
    seed(store)
    settle(store)
    assert "last-modified" in client.get(f"/embed/{TOWNSHIP}/fragment").headers


@pytest.mark.parametrize("path", EMBEDDED)
def test_conditional_gets_answer_304_until_the_feed_changes(client, store, path):
    seed(store)
    settle(store)
    first = client.get(path)
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert first.status_code == 200 and etag.startswith('"')
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"other", W/{etag}'}, {"If-None-Match": "*"}, {"If-Modified-Since": last_modified}):
        again = client.get(path, headers=headers)
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag, headers
    later = format_datetime(parsedate_to_datetime(last_modified) + timedelta(hours=1), usegmt=True)
    assert client.get(path, headers={"If-Modified-Since": later}).status_code == 304
    earlier = format_datetime(parsedate_to_datetime(last_modified) - timedelta(seconds=1), usegmt=True)
    assert client.get(path, headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get(path, headers={"If-None-Match": '"stale"', "If-Modified-Since": later}).status_code == 200  # If-None-Match decides

    store.apply([published("new", title="新的低保公示", day=9)])
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag and "新的低保公示" in changed.text


def test_a_304_costs_one_counter_read_and_no_rendering(client, store, monkeypatch):
    seed(store)
    etag = client.get(f"/embed/{TOWNSHIP}/fragment").headers["etag"]
    calls = []
    for name in ("major_items", "major_by_domain", "rules", "portals"):
        monkeypatch.setattr(store, name, lambda *a, _n=name, **k: calls.append(_n))
    assert client.get(f"/embed/{TOWNSHIP}/fragment", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/embed/{TOWNSHIP}/fragment").status_code == 200  # rendered once, kept by ETag
    assert calls == []


def test_publications_outside_the_feed_leave_its_etag_alone(client, store):
    seed(store)
    etag = client.get(f"/embed/{TOWNSHIP}/atom.xml").headers["etag"]
    store.apply([published("plan2", title="另一项规划", placements=[place(level2="D01-01-02")], day=9)])
    store.apply([published("elsewhere", placements=[place("430103001", "天心区街道")], day=9)])
    assert client.get(f"/embed/{TOWNSHIP}/atom.xml", headers={"If-None-Match": etag}).status_code == 304


def test_a_rules_change_changes_every_etag(client, store):
    seed(store)
    etags = {path: client.get(path).headers["etag"] for path in EMBEDDED}
    store.change_rules({"D01": True})
    for path, etag in etags.items():
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 200, path
    assert "控制性详细规划" in client.get(f"/embed/{TOWNSHIP}/fragment").text


# --- withdrawals --------------------------------------------------------------------------------
def test_a_withdrawal_disappears_from_every_feed_fragment_and_page(client, store):
    seed(store)
    title = "2026年城乡低保标准调整公告"
    paths = [*EMBEDDED, f"/embed/{TOWNSHIP}/fragment?h=3"]
    assert all(title in client.get(path).text for path in paths)
    etags = {path: client.get(path).headers["etag"] for path in paths}
    store.apply([withdrawn("low", 2)])
    for path in paths:
        response = client.get(path, headers={"If-None-Match": etags[path]})
        assert response.status_code == 200 and title not in response.text and "/publications/low" not in response.text, path
    store.apply([published("low", 1, title=title)])  # a late older version changes nothing
    assert all(title not in client.get(path).text for path in paths)


# --- the embed code page ------------------------------------------------------------------------
def test_the_code_page_shows_the_snippets_and_the_registered_portal(client, store):
    from services.embed.domain import Portal

    page = client.get(f"/embed/{TOWNSHIP}/code")
    assert page.status_code == 200
    for snippet in (
        f'&lt;!--#include virtual="/tongyuan/embed/{TOWNSHIP}/fragment" --&gt;',
        f'&lt;iframe src="http://testserver/embed/{TOWNSHIP}" title="芙蓉区文艺路街道重大民生信息"',
        f"http://testserver/embed/{TOWNSHIP}/atom.xml",
        f"http://testserver/embed/{TOWNSHIP}/feed.json",
        f"http://testserver/embed/{TOWNSHIP}/D14/feed.json",
    ):
        assert snippet in page.text, snippet
    assert "尚未登记门户网站" in page.text
    store.save_portals([Portal(TOWNSHIP, "https://www.example.gov.cn/wyl/", "https://www.example.gov.cn/wyl/zwgk/")])
    page = client.get(f"/embed/{TOWNSHIP}/code").text
    assert "https://www.example.gov.cn/wyl/zwgk/" in page and "尚未登记门户网站" not in page
    assert accessibility_problems(strict_parse(page, fragment=False).find("body"), top=1) == []


def test_links_use_the_configured_public_address(store):
    seed(store)
    client = TestClient(embed_app(store, public_base_url="https://gk.example.gov.cn/"))
    assert 'href="https://gk.example.gov.cn/publications/low"' in client.get(f"/embed/{TOWNSHIP}/fragment").text
    assert json.loads(client.get(f"/embed/{TOWNSHIP}/feed.json").content)["feed_url"] == f"https://gk.example.gov.cn/embed/{TOWNSHIP}/feed.json"
