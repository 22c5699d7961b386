"""What township portals embed: the 重大民生信息 column as a server-side-include fragment, an
iframe-ready page, Atom and JSON Feed (per township, per township + domain, and a county's
aggregate), plus the page that shows a township's webmaster what to paste.

Every embeddable answer carries an ETag and Last-Modified made from the scope's counters in the
store (one primary-key read), so a portal polling without changes costs no rendering; rendered
bodies are kept by ETag (services.embed.caching), so a change renders once whoever asks first.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from contracts.catalog import Region
from services.common.http_errors import ATOM, HTML, JSON_FEED, NOT_MODIFIED, answered_as, refusals

from .caching import Renders, etag_of, not_modified, settled
from .domain import CANONICAL_DOMAIN_NAMES
from .feeds import ATOM_MEDIA_TYPE, BEIJING, JSON_FEED_MEDIA_TYPE, FeedInfo, atom, json_feed
from .store import EmbedStore, FeedItem, ScopeState

__all__ = ["router", "settled"]

REGION_CODE = r"^[0-9A-Z]{2,12}$"
DOMAIN_CODE = r"^D\d{2}$"
RegionPath = Annotated[str, Path(pattern=REGION_CODE)]
EMBEDDABLE = ("township", "county")
PER_DOMAIN = 5  # items per domain in the fragment and the page
FEED_ITEMS = 50
# Caches may keep an answer but must revalidate it before every use (a 304 is one indexed
# read): with a max-age they would go on serving a withdrawn item to every portal.
CACHE_CONTROL = "public, no-cache"
HTML_MEDIA_TYPE = "text/html; charset=utf-8"
# The iframe page needs no script, font or image of its own; any site may frame it.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
ANY_ORIGIN = {"Access-Control-Allow-Origin": "*"}


@dataclass(frozen=True)
class Listed:
    """An item as the column lists it, its dates already in Beijing time."""

    publication_id: str
    title: str
    datetime: str  # for <time datetime>
    day: str  # what readers see


@dataclass(frozen=True)
class DomainSection:
    code: str
    name: str
    items: list[Listed]


@dataclass(frozen=True)
class Embedding:
    """What the embed routes read, as the composition root put it on app.state: `embed_store`,
    `templates`, `directory`, `embed_renders` (a Renders) and `public_base_url` (the portal's
    address as township portals and readers reach it: links in fragments and feeds are
    absolute; None: the address the request came to)."""

    store: EmbedStore
    templates: Jinja2Templates
    regions: dict[str, Region]
    renders: Renders
    public_base_url: str | None

    def base(self, request: Request) -> str:
        return (self.public_base_url or str(request.base_url)).rstrip("/")

    def region_or_404(self, code: str) -> Region:
        region = self.regions.get(code)
        if region is None or region.level not in EMBEDDABLE:
            raise HTTPException(404, f"no township or county {code}")
        return region

    def full_name(self, region: Region) -> str:
        parent = self.regions.get(region.parent_code or "")
        return f"{parent.name}{region.name}" if region.level == "township" and parent else region.name


def embedding(request: Request) -> Embedding:
    """The polled endpoints read app.state themselves: FastAPI's dependency resolution would
    cost more than the conditional answer it feeds (see the note above the routes)."""
    state = request.app.state
    try:
        return Embedding(state.embed_store, state.templates, state.directory().regions, state.embed_renders, state.public_base_url)
    except AttributeError as missing:
        raise RuntimeError(f"the app was composed without {missing.name!r} on app.state") from None


def _listed(item: FeedItem) -> Listed:
    local = item.published_at.astimezone(BEIJING)
    return Listed(item.publication_id, item.title, local.isoformat(timespec="seconds"), local.strftime("%Y-%m-%d"))


def _unprocessable(where: str, name: str, message: str, kind: str) -> HTTPException:
    # The shape FastAPI gives its own validation errors, so clients see one format.
    return HTTPException(422, [{"loc": [where, name], "msg": message, "type": kind}])


def _path(request: Request, name: str, pattern: str) -> str:
    value = request.path_params[name]
    if not re.match(pattern, value):
        raise _unprocessable("path", name, f"String should match pattern '{pattern}'", "string_pattern_mismatch")
    return value


def _heading(request: Request) -> int:
    raw = request.query_params.get("h", "2")
    if not (raw.isdigit() and 1 <= int(raw) <= 5):
        raise _unprocessable("query", "h", "Input should be a whole number from 1 to 5", "heading_level")
    return int(raw)


_PARAMETERS = {
    "region": {
        "name": "region_code",
        "in": "path",
        "required": True,
        "description": "a township's or county's region code",
        "schema": {"type": "string", "pattern": REGION_CODE},
    },
    "domain": {
        "name": "domain_code",
        "in": "path",
        "required": True,
        "description": "a catalog domain, D01–D32",
        "schema": {"type": "string", "pattern": DOMAIN_CODE},
    },
    "heading": {
        "name": "h",
        "in": "query",
        "required": False,
        "description": "heading level of the fragment's title (its domains get the next level)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
    },
}


def _documented(*names: str) -> dict:
    return {"parameters": [_PARAMETERS[name] for name in names]}


router = APIRouter(tags=["embed"])


async def conditional(
    request: Request, wired: Embedding, region: Region, variant: str, media_type: str, render: Callable[[str, ScopeState], bytes], headers: dict[str, str]
) -> Response:
    # On the event loop: one indexed read is cheaper than a thread hop, and answering a poll
    # with 304 is most of the traffic. Rendering goes to a thread.
    base = wired.base(request)
    state = wired.store.state(region.code)
    etag = etag_of(state, f"{variant}|{base}|{region.name}")
    last_modified = state.last_modified
    validators = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **headers}
    if settled(last_modified, datetime.now(timezone.utc)):
        validators["Last-Modified"] = format_datetime(last_modified.astimezone(timezone.utc), usegmt=True)
    if not_modified(request, etag, last_modified):
        return Response(status_code=304, headers=validators)
    body = wired.renders.bodies.get(etag)
    if body is None:
        body = await run_in_threadpool(render, base, state)
        wired.renders.bodies.put(etag, body)
    return Response(body, media_type=media_type, headers=validators)


def sections(wired: Embedding, region: Region, state: ScopeState) -> list[DomainSection]:
    by_domain = wired.store.major_by_domain(region.code, per_domain=PER_DOMAIN)
    codes = sorted(set(wired.renders.rules_at(wired.store, state).major_domains()) | set(by_domain))
    # Canonical names: items may be filed under a locality's name for the same domain.
    return [DomainSection(code, CANONICAL_DOMAIN_NAMES.get(code, code), [_listed(item) for item in by_domain.get(code, [])]) for code in codes]


def column_html(wired: Embedding, region: Region, state: ScopeState, base: str, heading: int, link_target: str | None, template: str) -> bytes:
    context = {"region": region, "name": wired.full_name(region), "sections": sections(wired, region, state), "base": base}
    return wired.templates.get_template(template).render(**context, h=heading, target=link_target).encode()


def feed_info(wired: Embedding, region: Region, domain_code: str | None, base: str, updated: datetime, suffix: str) -> FeedInfo:
    name = wired.full_name(region)
    domain_name = CANONICAL_DOMAIN_NAMES.get(domain_code or "", "")
    path = f"/embed/{region.code}" + (f"/{domain_code}" if domain_code else "")
    what = f"{name}重大民生信息" + (f" · {domain_name}" if domain_code else "")
    scope = "本级及所辖乡镇（街道）" if region.level == "county" else "本乡镇（街道）"
    return FeedInfo(
        id=f"urn:tongyuan:embed:{region.code}" + (f":{domain_code}" if domain_code else ""),
        title=what,
        description=f"{name}{scope}的重大民生信息（{domain_name or '按领域'}），由同源基层政务公开专栏同源发布。",
        author=name,
        self_url=f"{base}{path}/{suffix}",
        home_url=f"{base}/embed/{region.code}",
        base_url=base,
        updated=updated,
    )


async def feed(request: Request, region_code: str, domain_code: str | None, kind: str) -> Response:
    wired = embedding(request)
    region = wired.region_or_404(region_code)
    if domain_code and domain_code not in CANONICAL_DOMAIN_NAMES:
        raise HTTPException(404, f"no domain {domain_code}")
    render_document, media_type, suffix = (atom, ATOM_MEDIA_TYPE, "atom.xml") if kind == "atom" else (json_feed, JSON_FEED_MEDIA_TYPE, "feed.json")

    def render(base: str, state: ScopeState) -> bytes:
        items = wired.store.major_items(region.code, domain_code=domain_code, limit=FEED_ITEMS)
        return render_document(feed_info(wired, region, domain_code, base, state.last_modified, suffix), items)

    return await conditional(request, wired, region, f"{kind}|{domain_code}", media_type, render, ANY_ORIGIN)


# The polled endpoints read their parameters themselves: FastAPI's parameter handling costs
# more than the whole conditional answer, so the checks below give the same 422 answers and
# openapi_extra documents the same parameters.
# Answers in their own media types; refusals are JSON (HTTPException), so Response is the
# class and FastAPI files the refusals' models under application/json.
REFUSED = refusals(404, 422, 503)
PAGE = {**answered_as(HTML, "the column as HTML"), **NOT_MODIFIED, **REFUSED}
ATOM_FEED = {**answered_as(ATOM, "an Atom feed"), **NOT_MODIFIED, **REFUSED}
FEED_JSON = {**answered_as(JSON_FEED, "a JSON Feed 1.1 document"), **NOT_MODIFIED, **REFUSED}


@router.get(
    "/embed/{region_code}/fragment",
    response_class=Response,
    responses=PAGE,
    summary="重大民生信息 as an HTML fragment for server-side include",
    openapi_extra=_documented("region", "heading"),
)
async def fragment(request: Request):
    code = _path(request, "region_code", REGION_CODE)
    wired = embedding(request)
    region = wired.region_or_404(code)
    h = _heading(request)

    def render(base: str, state: ScopeState) -> bytes:
        return column_html(wired, region, state, base, h, None, "embed/_column.html")

    return await conditional(request, wired, region, f"fragment|{h}", HTML_MEDIA_TYPE, render, ANY_ORIGIN)


@router.get(
    "/embed/{region_code}",
    response_class=Response,
    responses=PAGE,
    summary="重大民生信息 as a page to show in an iframe",
    openapi_extra=_documented("region"),
)
async def page(request: Request):
    code = _path(request, "region_code", REGION_CODE)
    wired = embedding(request)
    region = wired.region_or_404(code)

    def render(base: str, state: ScopeState) -> bytes:
        return column_html(wired, region, state, base, 1, "_top", "embed/page.html")

    return await conditional(request, wired, region, "page", HTML_MEDIA_TYPE, render, {"Content-Security-Policy": PAGE_CSP})


def _feed_endpoint(kind: str, per_domain: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        region_code = _path(request, "region_code", REGION_CODE)
        domain_code = _path(request, "domain_code", DOMAIN_CODE) if per_domain else None
        return await feed(request, region_code, domain_code, kind)

    return endpoint


# (operation, path, kind, summary): a township's (or a county's) feeds, then one domain's.
_FEEDS = (
    ("region_atom", "/embed/{region_code}/atom.xml", "atom", "Atom feed of a township's (or a county's) 重大民生信息"),
    ("region_json_feed", "/embed/{region_code}/feed.json", "json", "JSON Feed 1.1 of a township's (or a county's) 重大民生信息"),
    ("domain_atom", "/embed/{region_code}/{domain_code}/atom.xml", "atom", "Atom feed of one domain"),
    ("domain_json_feed", "/embed/{region_code}/{domain_code}/feed.json", "json", "JSON Feed 1.1 of one domain"),
)
for _name, _route, _kind, _summary in _FEEDS:
    _per_domain = "{domain_code}" in _route
    router.add_api_route(
        _route,
        _feed_endpoint(_kind, _per_domain),
        methods=["GET"],
        name=_name,
        response_class=Response,
        responses=ATOM_FEED if _kind == "atom" else FEED_JSON,
        summary=_summary,
        openapi_extra=_documented("region", "domain") if _per_domain else _documented("region"),
    )


@router.get(
    "/embed/{region_code}/code",
    response_class=Response,
    responses={**answered_as(HTML, "the snippets"), **REFUSED},
    summary="The snippets a township's webmaster pastes",
)
def embed_code(request: Request, region_code: RegionPath, wired: Annotated[Embedding, Depends(embedding)]):
    region = wired.region_or_404(region_code)
    rules = wired.store.rules()
    context: dict[str, Any] = {
        "region": region,
        "name": wired.full_name(region),
        "base": wired.base(request),
        "portal": wired.store.portals().get(region.code),
        "domains": [(code, CANONICAL_DOMAIN_NAMES[code]) for code in rules.major_domains() if code in CANONICAL_DOMAIN_NAMES],
    }
    return wired.templates.TemplateResponse(request, "embed/code.html", context)
