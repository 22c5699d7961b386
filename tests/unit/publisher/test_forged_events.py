"""Events on the topics are not trusted: a forged event (one that never went through the gate)
must not put script, event handlers or javascript: links on any page, fragment, feed or search
answer, and `republish --force` must replace it with the publisher's truth."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient
from sqlalchemy import update

from contracts.events import PublishedEvent
from services.column.app import build_store
from services.column.store import documents
from services.common.db import create_store_engine
from services.common.sanitise import is_safe_link, safe_body, safe_link, safe_links, safe_marked, sanitise_html
from services.indexer import routes as search_routes
from services.indexer.index import SearchHit, SearchIndex, SearchQuery, SearchResults
from services.indexer.memory import InMemorySearchIndex
from services.publisher.gate import handlers
from services.publisher.store import Publisher
from tests.conftest import ADMIN, draft
from tests.factories import catalog_changed, place, published
from tests.unit.embed.client import embed_store_and_client
from tests.unit.publisher.writes import withdraw
from tests.wired import mounted

SERVICES = Path(__file__).resolve().parents[3] / "services"
TOWNSHIP = "430102001"
HOSTILE_BODY = (
    '<p>低保名单公示</p><script>alert("body")</script><img src="x" onerror="alert(1)">'
    '<a href="javascript:alert(2)">点此</a><iframe src="https://evil.example"></iframe><p onclick="alert(3)">正文</p>'
)
# What must never appear in an answer, even as text: markup of the hostile body.
HOSTILE = re.compile(r"<script|onerror=|onclick=|javascript:|<iframe", re.IGNORECASE)


class _Markup(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{name} on <{tag}>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(("javascript:", "data:", "vbscript:")):
                self.found.append(f"{name}={value}")


def unsafe(markup: str) -> list[str]:
    """Script, frames, event handlers and script links as the browser would parse them (text
    that only reads like markup, escaped, is fine)."""
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    return parser.found


def forged(publication_id: str = "forged", version: int = 99, **changes) -> PublishedEvent:
    """A v99 event as anyone who can produce to the topic could write it: no gate, no nh3."""
    event = published(publication_id, version=version, body=HOSTILE_BODY, placements=[place(TOWNSHIP, "文艺路街道", "D14-02-02", "办事指南")])
    data = event.data.model_copy(update=changes)
    return event.model_copy(update={"data": data})


# --- the shared policy --------------------------------------------------------------------
def test_the_gate_and_the_pages_share_one_policy():
    from services.publisher.gate import domain

    assert domain.sanitise_html is sanitise_html
    cleaned = sanitise_html(HOSTILE_BODY)
    assert not HOSTILE.search(cleaned) and "低保名单公示" in cleaned and "正文" in cleaned
    assert str(safe_body(HOSTILE_BODY)) == cleaned


def test_search_text_keeps_only_marks():
    marked = str(safe_marked('<mark>低保</mark>&lt;b&gt;<img src=x onerror=alert(1)><a href="javascript:x">名单</a>'))
    assert marked == "<mark>低保</mark>&lt;b&gt;名单"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.gov.cn/a.xlsx", True),
        ("http://example.gov.cn/a", True),
        ("/columns/430102", True),
        ("files/a.pdf", True),
        ("javascript:alert(1)", False),
        (" JavaScript:alert(1)", False),
        ("data:text/html,<script>1</script>", False),
        ("vbscript:x", False),
        ("//evil.example/x", False),
        ("/\\evil.example/x", False),
        ("https:///nohost", False),
        ("", False),
    ],
)
def test_links_are_web_addresses_or_site_paths(url, safe):
    assert is_safe_link(url) is safe
    assert safe_link(url) == (url if safe else "#")


def test_a_service_guides_links_are_kept_only_when_safe():
    guide = {"online_url": "javascript:alert(1)", "name": "低保申请", "materials": [{"blank_form_url": "https://a.gov.cn/f.doc", "sample_url": "data:x"}]}
    assert safe_links(guide) == {"online_url": None, "name": "低保申请", "materials": [{"blank_form_url": "https://a.gov.cn/f.doc", "sample_url": None}]}


def test_no_template_marks_anything_safe():
    """HTML reaches a page only through the sanitising filters, never `|safe`."""
    offenders = [
        f"{path.relative_to(SERVICES)}:{number}"
        for path in SERVICES.glob("*/templates/**/*.html")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"\|\s*safe\b(?!_)|autoescape\s+false", line)
    ]
    assert offenders == []


# --- the column ----------------------------------------------------------------------------
@pytest.fixture
def column(settings):
    store = build_store(settings)
    store.apply_catalogs([catalog_changed()])
    return store


def test_a_forged_body_is_cleaned_before_the_column_stores_it(portal, column):
    column.apply([forged()])
    stored = column.entry("forged").document.body_html
    assert not HOSTILE.search(stored) and "低保名单公示" in stored
    page = portal.get("/publications/forged")
    assert page.status_code == 200 and "低保名单公示" in page.text
    assert unsafe(page.text) == []


def test_the_detail_page_cleans_what_the_store_holds(portal, column):
    """The renderer trusts no store: a row written around the consumer is cleaned as it renders."""
    column.apply([published("raw", title="低保名单")])
    document = column.entry("raw").document.model_dump(mode="json")
    with column.engine.begin() as connection:
        connection.execute(update(documents).where(documents.c.publication_id == "raw").values(document={**document, "body_html": HOSTILE_BODY}))
    page = portal.get("/publications/raw")
    assert page.status_code == 200 and "低保名单公示" in page.text and "正文" in page.text
    assert unsafe(page.text) == []


def test_a_forged_service_guide_gets_no_script_links(portal, column):
    guide = {"name": "低保申请", "online_url": "javascript:alert(1)", "materials": [{"name": "申请表", "blank_form_url": "javascript:alert(2)"}]}
    column.apply([forged("guide", kind="service", service_guide=guide)])
    page = portal.get("/publications/guide")
    assert page.status_code == 200 and "低保申请" in page.text
    assert unsafe(page.text) == []


def test_a_forged_redirect_goes_nowhere_but_this_site_or_the_web(portal, column):
    from tests.factories import withdrawn

    column.apply([published("moved")])
    event = withdrawn("moved", version=2, kind="redirect")
    column.apply([event.model_copy(update={"data": event.data.model_copy(update={"redirect_to": "javascript:alert(1)"})})])
    moved = portal.get("/publications/moved", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/"


# --- embeds and feeds --------------------------------------------------------------------
@pytest.fixture
def embed(tmp_path):
    return embed_store_and_client(tmp_path)


def test_a_forged_event_puts_no_markup_in_fragments_pages_or_feeds(embed):
    store, client = embed
    store.apply([forged(title='低保名单<script>alert("t")</script><img src=x onerror=alert(1)>', summary=None)])
    for path in (f"/embed/{TOWNSHIP}/fragment", f"/embed/{TOWNSHIP}", "/embed/430102/fragment"):
        answer = client.get(path)
        assert answer.status_code == 200 and "低保名单" in answer.text, path
        assert unsafe(answer.text) == [], path
    atom = client.get(f"/embed/{TOWNSHIP}/atom.xml")
    assert atom.status_code == 200 and "低保名单" in atom.text and unsafe(atom.text) == []
    feed = client.get(f"/embed/{TOWNSHIP}/feed.json").json()
    [item] = [i for i in feed["items"] if i["id"].endswith(":forged")]
    # Feeds carry text only: no content_html, and the summary made from the body has no markup.
    assert "content_html" not in item and not HOSTILE.search(item["content_text"]) and not HOSTILE.search(item["summary"])
    assert "低保名单公示" in item["content_text"]


# --- search --------------------------------------------------------------------------------
class RawBackend(SearchIndex):
    """A backend whose highlighter does not escape (Elasticsearch without encoder=html)."""

    async def create(self): ...
    async def apply(self, events):
        return []

    async def version_of(self, publication_id):
        return None

    async def count(self):
        return 1

    async def healthy(self):
        return True

    async def search(self, query: SearchQuery) -> SearchResults:
        hit = SearchHit(
            publication_id="forged",
            version=99,
            title="低保",
            title_html='<mark>低保</mark><img src=x onerror="alert(1)">',
            summary=None,
            snippet='<script>alert(1)</script><mark>低保</mark>名单<a href="javascript:x">链接</a>',
            published_at=datetime(2026, 3, 5, tzinfo=timezone.utc),
            placements=[],
            index_number="430102001/2026-00099",
            kind="info",
        )
        return SearchResults(total=1, hits=[hit], page=1, per_page=query.per_page)


def search_client(index: SearchIndex) -> TestClient:
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(SERVICES / "indexer" / "templates")), jinja2.DictLoader({"layout.html": "{% block content %}{% endblock %}"})]
    )
    app = mounted(search_routes.router, search_index=index, templates=Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True)))
    return TestClient(app)


def test_search_pages_and_answers_keep_only_marks_whatever_the_backend_returns():
    client = search_client(RawBackend())
    page = client.get("/search", params={"q": "低保"})
    assert page.status_code == 200 and "<mark>低保</mark>名单" in page.text
    assert unsafe(page.text) == []
    [hit] = client.get("/v1/search", params={"q": "低保"}).json()["hits"]
    assert unsafe(hit["snippet"]) == unsafe(hit["title_html"]) == [] and "<mark>低保</mark>" in hit["snippet"]


def test_a_forged_event_indexed_shows_as_text_in_search():
    import asyncio

    index = InMemorySearchIndex()
    asyncio.run(index.apply([forged(title="低保名单<script>alert(1)</script>")]))
    client = search_client(index)
    page = client.get("/search", params={"q": "低保"})
    assert "forged" in page.text and unsafe(page.text) == []
    for hit in client.get("/v1/search", params={"q": "低保"}).json()["hits"]:
        assert unsafe(hit["title_html"]) == unsafe(hit["snippet"]) == []


# --- the repair ----------------------------------------------------------------------------
@pytest.fixture
def publisher(tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    return publisher


def outbox_events(publisher):
    from sqlalchemy import select

    from services.publisher.tables import outbox

    with publisher.engine.connect() as connection:
        return [json.loads(p) for (p,) in connection.execute(select(outbox.c.payload).order_by(outbox.c.id))]


def test_republish_above_re_emits_the_truth_as_a_version_no_store_has(publisher, directory):
    accepted = handlers.publish(principal=ADMIN, draft=draft(body_html="<p>真实正文</p>"), publisher=publisher, directory=directory)
    version = handlers.republish_above(publisher, accepted.publication_id, above=99)
    assert version == 100
    last = outbox_events(publisher)[-1]
    assert last["data"]["version"] == 100 and last["data"]["body_html"] == "<p>真实正文</p>"
    assert publisher.versions()[accepted.publication_id] == (100, "published")  # verify compares against it
    assert handlers.republish_above(publisher, "unknown", above=1) is None


def test_republish_above_keeps_a_withdrawal_withdrawn(publisher, directory):
    accepted = handlers.publish(principal=ADMIN, draft=draft(), publisher=publisher, directory=directory)
    withdraw(publisher, directory, accepted.publication_id, "gone", "含个人信息")
    assert handlers.republish_above(publisher, accepted.publication_id, above=99) == 100
    last = outbox_events(publisher)[-1]
    assert last["type"].endswith("withdrawn.v1") and last["data"]["version"] == 100 and last["data"]["withdrawal_type"] == "gone"


def test_force_needs_exactly_one_publication_id():
    from typer.testing import CliRunner

    from services.cli import cli

    for args in (["republish", "--force"], ["republish", "p1"], ["republish", "--force", "p1", "--only", "p2"]):
        assert CliRunner().invoke(cli, args).exit_code == 2, args
