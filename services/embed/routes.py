"""What township portals embed: the 重大民生信息 column as a server-side-include fragment, an
iframe-ready page, Atom and JSON Feed (per township, per township + domain, and a county's
aggregate), plus the page that shows a township's webmaster what to paste.

Every embeddable answer carries an ETag and Last-Modified made from the scope's counters in the
store (one primary-key read), so a portal polling without changes costs no rendering; rendered
bodies are kept by ETag, so a change renders once whoever asks first.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from contracts.catalog import Region
from services.common.http_errors import ATOM, HTML, JSON_FEED, NOT_MODIFIED, answered_as, refusals

from .domain import CANONICAL_DOMAIN_NAMES, MajorRules
from .feeds import ATOM_MEDIA_TYPE, BEIJING, JSON_FEED_MEDIA_TYPE, FeedInfo, atom, json_feed
from .store import EmbedStore, FeedItem, ScopeState

REGION_CODE = r"^[0-9A-Z]{2,12}$"
DOMAIN_CODE = r"^D\d{2}$"
RegionPath = Annotated[str, Path(pattern=REGION_CODE)]
EMBEDDABLE = ("township", "county")
PER_DOMAIN = 5  # items per domain in the fragment and the page
FEED_ITEMS = 50
# Bump when templates or feed rendering change, so pollers refetch after a deployment.
RENDER_REVISION = "2"
# Caches may keep an answer but must revalidate it before every use (a 304 is one indexed
# read): with a max-age they would go on serving a withdrawn item to every portal.
CACHE_CONTROL = "public, no-cache"
HTML_MEDIA_TYPE = "text/html; charset=utf-8"
# The iframe page needs no script, font or image of its own; any site may frame it.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


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


class RenderCache:
    """Rendered bodies by ETag: an ETag names one rendering, so entries never go stale."""

    def __init__(self, size: int):
        self.size = size
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._bodies[key] = body
            while len(self._bodies) > self.size:
                self._bodies.popitem(last=False)


def etag_of(state: ScopeState, variant: str) -> str:
    stamp = "|".join(
        str(part)
        for part in (
            RENDER_REVISION,
            variant,
            state.scope,
            state.version,
            state.changed_at and state.changed_at.isoformat(),
            state.rules_version,
            state.rules_changed_at and state.rules_changed_at.isoformat(),
        )
    )
    return '"' + hashlib.blake2b(stamp.encode(), digest_size=12).hexdigest() + '"'


def settled(last_modified: datetime, now: datetime) -> bool:
    """Whether the second of the last change is over. Last-Modified names a whole second, so
    one sent during that second would also name a change later in it (a withdrawal), and an
    If-Modified-Since with it would get a 304 for the withdrawn item: until then the ETag alone
    validates."""
    return last_modified.replace(microsecond=0) < now.replace(microsecond=0)


def not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) decides; If-Modified-Since only without it."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return last_modified.replace(microsecond=0) <= since
    return False


def build_router(
    store: EmbedStore,
    templates: Jinja2Templates,
    regions: Callable[[], dict[str, Region]],
    *,
    public_base_url: str | None = None,
    cache_size: int = 1024,
) -> APIRouter:
    """`public_base_url`: the portal's address as township portals and readers reach it (links in
    fragments and feeds are absolute); by default the address the request came to."""
    router = APIRouter(tags=["embed"])
    cache = RenderCache(cache_size)
    rules_cache: dict[int, MajorRules] = {}

    def rules_at(state: ScopeState) -> MajorRules:
        # The rules' counter names one set of rules, so a render needs no read of them.
        rules = rules_cache.get(state.rules_version)
        if rules is None:
            rules = store.rules()
            rules_cache.clear()
            rules_cache[state.rules_version] = rules
        return rules

    def region_or_404(code: str) -> Region:
        region = regions().get(code)
        if region is None or region.level not in EMBEDDABLE:
            raise HTTPException(404, f"no township or county {code}")
        return region

    def base_of(request: Request) -> str:
        return (public_base_url or str(request.base_url)).rstrip("/")

    def full_name(region: Region) -> str:
        parent = regions().get(region.parent_code or "")
        return f"{parent.name}{region.name}" if region.level == "township" and parent else region.name

    async def conditional(
        request: Request, region: Region, variant: str, media_type: str, render: Callable[[str, ScopeState], bytes], headers: dict[str, str] | None = None
    ) -> Response:
        # On the event loop: one indexed read (~20 µs on SQLite) is cheaper than a thread hop,
        # and answering a poll with 304 is most of the traffic. Rendering goes to a thread.
        base = base_of(request)
        state = store.state(region.code)
        etag = etag_of(state, f"{variant}|{base}|{region.name}")
        last_modified = state.last_modified
        validators = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **(headers or {})}
        if settled(last_modified, datetime.now(timezone.utc)):
            validators["Last-Modified"] = format_datetime(last_modified.astimezone(timezone.utc), usegmt=True)
        if not_modified(request, etag, last_modified):
            return Response(status_code=304, headers=validators)
        body = cache.get(etag)
        if body is None:
            body = await run_in_threadpool(render, base, state)
            cache.put(etag, body)
        return Response(body, media_type=media_type, headers=validators)

    def sections(region: Region, state: ScopeState) -> list[DomainSection]:
        by_domain = store.major_by_domain(region.code, per_domain=PER_DOMAIN)
        codes = sorted(set(rules_at(state).major_domains()) | set(by_domain))
        # Canonical names: items may be filed under a locality's name for the same domain.
        return [DomainSection(code, CANONICAL_DOMAIN_NAMES.get(code, code), [_listed(item) for item in by_domain.get(code, [])]) for code in codes]

    def column_html(region: Region, state: ScopeState, base: str, heading: int, link_target: str | None) -> str:
        return templates.get_template("embed/_column.html").render(
            region=region, name=full_name(region), sections=sections(region, state), base=base, h=heading, target=link_target
        )

    def feed_info(region: Region, domain_code: str | None, base: str, state_updated: datetime, suffix: str) -> FeedInfo:
        name = full_name(region)
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
            updated=state_updated,
        )

    async def feed(request: Request, region_code: str, domain_code: str | None, kind: str) -> Response:
        region = region_or_404(region_code)
        if domain_code and domain_code not in CANONICAL_DOMAIN_NAMES:
            raise HTTPException(404, f"no domain {domain_code}")
        render_document, media_type, suffix = (atom, ATOM_MEDIA_TYPE, "atom.xml") if kind == "atom" else (json_feed, JSON_FEED_MEDIA_TYPE, "feed.json")

        def render(base: str, state: ScopeState) -> bytes:
            return render_document(
                feed_info(region, domain_code, base, state.last_modified, suffix), store.major_items(region.code, domain_code=domain_code, limit=FEED_ITEMS)
            )

        return await conditional(request, region, f"{kind}|{domain_code}", media_type, render, {"Access-Control-Allow-Origin": "*"})

    # The polled endpoints read their parameters themselves: FastAPI's parameter handling
    # costs more than the whole conditional answer (~200 µs of ~350 µs per 304), so the checks
    # below give the same 422 answers and openapi_extra documents the same parameters.
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
        region = region_or_404(_path(request, "region_code", REGION_CODE))
        h = _heading(request)
        return await conditional(
            request,
            region,
            f"fragment|{h}",
            HTML_MEDIA_TYPE,
            lambda base, state: column_html(region, state, base, h, None).encode(),
            {"Access-Control-Allow-Origin": "*"},
        )

    @router.get(
        "/embed/{region_code}",
        response_class=Response,
        responses=PAGE,
        summary="重大民生信息 as a page to show in an iframe",
        openapi_extra=_documented("region"),
    )
    async def page(request: Request):
        region = region_or_404(_path(request, "region_code", REGION_CODE))

        def render(base: str, state: ScopeState) -> bytes:
            return (
                templates.get_template("embed/page.html")
                .render(region=region, name=full_name(region), sections=sections(region, state), base=base, h=1, target="_top")
                .encode()
            )

        return await conditional(request, region, "page", HTML_MEDIA_TYPE, render, {"Content-Security-Policy": PAGE_CSP})

    @router.get(
        "/embed/{region_code}/atom.xml",
        response_class=Response,
        responses=ATOM_FEED,
        summary="Atom feed of a township's (or a county's) 重大民生信息",
        openapi_extra=_documented("region"),
    )
    async def region_atom(request: Request):
        return await feed(request, _path(request, "region_code", REGION_CODE), None, "atom")

    @router.get(
        "/embed/{region_code}/feed.json",
        response_class=Response,
        responses=FEED_JSON,
        summary="JSON Feed 1.1 of a township's (or a county's) 重大民生信息",
        openapi_extra=_documented("region"),
    )
    async def region_json_feed(request: Request):
        return await feed(request, _path(request, "region_code", REGION_CODE), None, "json")

    @router.get(
        "/embed/{region_code}/{domain_code}/atom.xml",
        response_class=Response,
        responses=ATOM_FEED,
        summary="Atom feed of one domain",
        openapi_extra=_documented("region", "domain"),
    )
    async def domain_atom(request: Request):
        return await feed(request, _path(request, "region_code", REGION_CODE), _path(request, "domain_code", DOMAIN_CODE), "atom")

    @router.get(
        "/embed/{region_code}/{domain_code}/feed.json",
        response_class=Response,
        responses=FEED_JSON,
        summary="JSON Feed 1.1 of one domain",
        openapi_extra=_documented("region", "domain"),
    )
    async def domain_json_feed(request: Request):
        return await feed(request, _path(request, "region_code", REGION_CODE), _path(request, "domain_code", DOMAIN_CODE), "json")

    @router.get(
        "/embed/{region_code}/code",
        response_class=Response,
        responses={**answered_as(HTML, "the snippets"), **REFUSED},
        summary="The snippets a township's webmaster pastes",
    )
    def embed_code(request: Request, region_code: RegionPath):
        region = region_or_404(region_code)
        base = base_of(request)
        return templates.TemplateResponse(
            request,
            "embed/code.html",
            {
                "region": region,
                "name": full_name(region),
                "base": base,
                "portal": store.portals().get(region.code),
                "domains": [(code, CANONICAL_DOMAIN_NAMES[code]) for code in store.rules().major_domains() if code in CANONICAL_DOMAIN_NAMES],
            },
        )

    return router


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
