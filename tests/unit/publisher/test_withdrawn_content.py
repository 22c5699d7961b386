"""After a withdrawal nothing public serves the content (低保 and 特困 lists are withdrawn for
the personal data they hold): not the API, the column, search, feeds or embeds, and no cache
revalidating with an ETag from before."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import jinja2
import pytest
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient

from contracts.identity import Principal
from services.column.app import build_store
from services.common.auth import build_verifier
from services.indexer import routes as search_routes
from services.indexer.memory import InMemorySearchIndex
from tests.conftest import ADMIN, EDITOR, OTHER_COUNTY
from tests.factories import catalog_changed, published, withdrawn
from tests.unit.embed.client import embed_store_and_client
from tests.wired import mounted

TITLE = "2026年3月城乡低保对象名单"
PERSONAL = "张某某 身份证号430102199001011234"
BODY = f"<p>{PERSONAL}</p>"
EXPLANATION = "名单含个人信息，公示期满撤下"
APPROVER = Principal(user="furong-approver", roles=("approver",), regions=("430102",))
STRANGER = Principal(user="kaifu-clerk", roles=("editor",), regions=(OTHER_COUNTY,))


def bearer(settings, principal: Principal) -> dict[str, str]:
    _, local = build_verifier(settings)
    return {"Authorization": f"Bearer {local.mint(principal, audience=settings.auth_audience)}"}


def publish_and_withdraw(portal, settings, kind: str) -> tuple[str, str]:
    """Publish as the county's editor, read it anonymously (keeping its ETag), withdraw it."""
    editor = bearer(settings, EDITOR)
    draft = {
        "placements": [{"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": TITLE,
        "body_html": BODY,
        "formed_at": "2026-03-02",
    }
    pid = portal.post("/v1/publications", json=draft, headers=editor).json()["publication_id"]
    before = portal.get(f"/v1/publications/{pid}")
    assert before.status_code == 200 and before.json()["publication"]["title"] == TITLE  # live: public
    request = {"type": kind, "explanation": EXPLANATION if kind != "redirect" else "", **({"redirect_to": "/columns/430102"} if kind == "redirect" else {})}
    assert portal.post(f"/v1/publications/{pid}/withdraw", json=request, headers=editor).status_code == 202
    return pid, before.headers["etag"]


@pytest.mark.parametrize(("kind", "status"), [("withdrawn", 200), ("gone", 410), ("redirect", 200), ("vanish", 404)])
def test_the_public_api_gives_only_the_tombstone(portal, settings, kind, status):
    pid, etag = publish_and_withdraw(portal, settings, kind)
    for headers in ({}, {"If-None-Match": etag}, bearer(settings, STRANGER)):
        answer = portal.get(f"/v1/publications/{pid}", headers=headers)
        assert answer.status_code == status, headers
        assert TITLE not in answer.text and PERSONAL not in answer.text
        assert answer.headers["cache-control"] in ("no-cache", "private, no-store") and answer.headers.get("etag") != etag
    tombstone = portal.get(f"/v1/publications/{pid}").json()
    if kind == "vanish":
        assert tombstone == {"detail": "no such publication"}
        return
    assert set(tombstone) == {"publication_id", "version", "status", "withdrawal"} and tombstone["status"] == "withdrawn"
    assert tombstone["withdrawal"]["withdrawal_type"] == kind and tombstone["withdrawal"]["withdrawn_at"]
    assert (tombstone["withdrawal"].get("explanation") == EXPLANATION) is (kind in ("withdrawn", "gone"))
    assert (tombstone["withdrawal"].get("redirect_to") == "/columns/430102") is (kind == "redirect")


@pytest.mark.parametrize("reader", [EDITOR, APPROVER, ADMIN])
def test_readers_whose_rights_cover_it_get_the_whole_record_privately(portal, settings, reader):
    pid, _ = publish_and_withdraw(portal, settings, "gone")
    answer = portal.get(f"/v1/publications/{pid}", headers=bearer(settings, reader))
    assert answer.status_code == 200
    record = answer.json()
    assert record["publication"]["title"] == TITLE and PERSONAL in record["publication"]["body_html"]
    assert record["withdrawal"]["withdrawal_type"] == "gone"
    assert answer.headers["cache-control"] == "private, no-store" and "Authorization" in answer.headers["vary"]


def test_a_bad_token_is_refused_not_read_as_the_public(portal, settings):
    pid, _ = publish_and_withdraw(portal, settings, "withdrawn")
    assert portal.get(f"/v1/publications/{pid}", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_an_unchanged_live_record_revalidates_with_304(portal, settings):
    pid = portal.post(
        "/v1/publications",
        json={
            "placements": [{"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
            "title": TITLE,
            "body_html": BODY,
            "formed_at": "2026-03-02",
        },
        headers=bearer(settings, EDITOR),
    ).json()["publication_id"]
    first = portal.get(f"/v1/publications/{pid}")
    assert portal.get(f"/v1/publications/{pid}", headers={"If-None-Match": first.headers["etag"]}).status_code == 304


# --- the column ----------------------------------------------------------------------------
@pytest.fixture
def column(settings):
    store = build_store(settings)
    store.apply_catalogs([catalog_changed()])
    return store


@pytest.mark.parametrize(("kind", "status", "title_shown"), [("withdrawn", 200, True), ("gone", 410, False)])
def test_the_detail_page_shows_the_notice_never_the_body_and_old_etags_do_not_revalidate(portal, column, kind, status, title_shown):
    column.apply([published("list", title=TITLE, body=BODY)])
    live = portal.get("/publications/list")
    assert live.status_code == 200 and PERSONAL in live.text and live.headers["cache-control"] == "public, no-cache"
    assert portal.get("/publications/list", headers={"If-None-Match": live.headers["etag"]}).status_code == 304
    withdrawal = withdrawn("list", version=2, kind=kind, explanation=EXPLANATION)
    column.apply([withdrawal.model_copy(update={"data": withdrawal.data.model_copy(update={"title": TITLE})})])
    for headers in ({}, {"If-None-Match": live.headers["etag"]}):
        page = portal.get("/publications/list", headers=headers)
        assert page.status_code == status and EXPLANATION in page.text and PERSONAL not in page.text
        assert (TITLE in page.text) is title_shown
        assert page.headers["etag"] != live.headers["etag"] and page.headers["cache-control"] == "public, no-cache"
    assert column.entry("list").document is None  # the column keeps no copy of withdrawn content
    assert TITLE not in portal.get("/columns/430102").text and TITLE not in portal.get("/columns/430102/D14/D14-02-02").text


# --- embeds and feeds --------------------------------------------------------------------
@pytest.fixture
def embed(tmp_path):
    return embed_store_and_client(tmp_path)


@pytest.mark.parametrize(
    "path",
    [
        "/embed/430102001/fragment",
        "/embed/430102001",
        "/embed/430102/fragment",
        "/embed/430102001/atom.xml",
        "/embed/430102001/feed.json",
        "/embed/430102/D14/feed.json",
    ],
)
def test_embeds_and_feeds_drop_a_withdrawn_item_and_its_old_etag(embed, path):
    store, client = embed
    store.apply([published("list", title=TITLE, body=BODY)])
    live = client.get(path)
    assert live.status_code == 200 and TITLE in live.text and live.headers["cache-control"] == "public, no-cache"
    store.apply([withdrawn("list", version=2, kind="gone", explanation=EXPLANATION)])
    # Last-Modified names a whole second: sent only once the change's second is over, so a
    # withdrawal in the same second cannot hide behind it.
    validators = [{"If-None-Match": live.headers["etag"]}] + ([{"If-Modified-Since": live.headers["last-modified"]}] if "last-modified" in live.headers else [])
    for headers in ({}, *validators):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200 and TITLE not in answer.text and PERSONAL not in answer.text, headers


# --- search --------------------------------------------------------------------------------
def test_search_no_longer_finds_a_withdrawn_item_nor_shows_its_snippet():
    index = InMemorySearchIndex()
    asyncio.run(index.apply([published("list", title=TITLE, body=BODY)]))
    loader = jinja2.ChoiceLoader(
        [jinja2.PackageLoader("services.indexer", "templates"), jinja2.DictLoader({"layout.html": "{% block content %}{% endblock %}"})]
    )
    app = mounted(search_routes.router, search_index=index, templates=Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True)))
    client = TestClient(app)
    assert client.get("/v1/search", params={"q": "张某某"}).json()["total"] == 1
    asyncio.run(index.apply([withdrawn("list", version=2, kind="withdrawn")]))
    for q in ("张某某", "低保对象名单"):
        answer = client.get("/v1/search", params={"q": q})
        assert answer.json()["total"] == 0 and answer.headers["cache-control"] == "no-cache"
        page = client.get("/search", params={"q": q}).text
        assert PERSONAL not in page and TITLE not in page


def test_who_may_read_a_withdrawn_record(directory):
    """Pure: roles and regions that cover one of its placements (a county covers its townships,
    a township not its county), or an admin; nobody without a token."""
    from datetime import date

    from contracts.events import PublicationData, SourceRef, WithdrawalData
    from services.publisher.gate.reading import may_read_withdrawn, view_for
    from services.publisher.store import StoredPublication
    from tests.factories import place

    document = PublicationData(
        publication_id="p",
        version=1,
        placements=(place("430102", "芙蓉区"),),
        title=TITLE,
        body_html=BODY,
        index_number="x",
        formed_at=date(2026, 3, 1),
        published_at=datetime(2026, 3, 2, tzinfo=timezone.utc),
        source_ref=SourceRef(source="/http"),
    )
    withdrawal = WithdrawalData(
        publication_id="p", version=2, withdrawal_type="withdrawn", explanation=EXPLANATION, withdrawn_at=datetime(2026, 3, 3, tzinfo=timezone.utc), title=TITLE
    )
    stored = StoredPublication("p", 2, "withdrawn", "/http", None, None, document, withdrawal)
    regions = directory.regions
    township_editor = Principal(user="t", roles=("editor",), regions=("430102001",))
    readers = {None: False, EDITOR: True, APPROVER: True, ADMIN: True, STRANGER: False, township_editor: False, Principal(user="n", regions=("430102",)): False}
    assert {who: may_read_withdrawn(who, stored, regions) for who in readers} == readers
    public = view_for(stored, None, regions)
    assert public.status_code == 200 and not public.full and TITLE not in str(public.body) and public.body["withdrawal"]["explanation"] == EXPLANATION
