"""The public disclosure column (基层政务公开专栏): region → domain → level-1 → level-2 → detail."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from contracts.catalog import Catalog, Domain, Level1Item, Level2Item, Region, effective_catalog
from contracts.events import PublicationData
from contracts.regions import trail
from services.common.http_errors import HTML, NOT_MODIFIED, answered_as, refusals
from services.common.sanitise import install_filters, is_safe_link, safe_links
from services.common.wiring import Regions, provided

from .store import ColumnEntry, ColumnStore

RegionPath = Annotated[str, Path(pattern=r"^[0-9A-Z]{2,12}$")]
DomainPath = Annotated[str, Path(pattern=r"^D\d{2}$")]
ItemPath = Annotated[str, Path(pattern=r"^D\d{2}-\d{2}(-\d{2})?$")]
PageQuery = Annotated[int, Query(ge=1, le=10_000)]
PER_PAGE = 20
# Shared caches may keep a page but must ask again before every use: a withdrawal takes it
# down at once (a 304 costs them little), where a max-age would keep serving it.
CACHE_CONTROL = "public, no-cache"
# Bump when the detail template changes, so revalidating caches get the new rendering.
RENDER_REVISION = "2"


ColumnStoreDep = Annotated[ColumnStore, provided("column_store")]
# The township portals' addresses by region code (the embed registry's), for the sub-columns.
PortalLinks = Annotated[Callable[[], Mapping[str, str]], provided("portal_links")]

# Pages answer HTML; their refusals are JSON (FastAPI's HTTPException), hence Response as the
# class: FastAPI files the refusals' models under application/json.
PAGE = answered_as(HTML, "the page")
CATALOG_PAGE = {**PAGE, **refusals(404, 422, 503, d503="the catalog has not reached the column yet")}
DETAIL_PAGE = {
    **PAGE,
    301: {"description": "withdrawn with a redirect: where to", "headers": {"Location": {"schema": {"type": "string"}}}},
    **NOT_MODIFIED,
    **refusals(404, 410, 422, 503, html=(410,), d404="unknown, or withdrawn as vanish", d410="withdrawn as gone: the notice page"),
}

router = APIRouter(tags=["column"])


def page_templates(templates: Annotated[Jinja2Templates, provided("templates")]) -> Jinja2Templates:
    """The portal's templates with the filters the column's pages use instead of `|safe`."""
    install_filters(templates.env)
    return templates


Templates = Annotated[Jinja2Templates, Depends(page_templates)]


def catalog_for(store: ColumnStore, regions: dict[str, Region], region: Region) -> Catalog:
    """The catalog in force for a region, from the column store's copy of the catalogs."""
    catalog = effective_catalog(region.code, regions, store.catalogs())
    if catalog is None:
        raise HTTPException(503, "the catalog has not reached the column yet; try again shortly")
    return catalog


def region_or_404(regions: dict[str, Region], code: str) -> Region:
    region = regions.get(code)
    if region is None:
        raise HTTPException(404, f"no region {code}")
    return region


def page_of(templates: Jinja2Templates, request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, headers={"Cache-Control": CACHE_CONTROL})


@router.get("/columns", response_class=Response, responses=PAGE)
def column_index(request: Request, regions: Regions, templates: Templates):
    tops = [r for r in regions.values() if r.level == "city" or (r.parent_code not in regions and r.level != "township")]
    return page_of(templates, request, "column/index.html", tops=tops, children=_children(regions))


@router.get("/columns/{region_code}", response_class=Response, responses=CATALOG_PAGE)
def region_column(request: Request, region_code: RegionPath, store: ColumnStoreDep, regions: Regions, templates: Templates, portal_links: PortalLinks):
    region = region_or_404(regions, region_code)
    counts = store.counts_by_domain(region.code)
    total, latest = store.listing(region.code, per_page=10)
    return page_of(
        templates,
        request,
        "column/region.html",
        region=region,
        trail=trail(region, regions),
        domains=catalog_for(store, regions, region).domains,
        counts=counts,
        latest=latest,
        total=total,
        subregions=_children(regions).get(region.code, []),
        # A township's sub-column is a reference to its own portal, not a copy.
        links=portal_links(),
    )


@router.get("/columns/{region_code}/{domain_code}", response_class=Response, responses=CATALOG_PAGE)
def domain_column(
    request: Request, region_code: RegionPath, domain_code: DomainPath, store: ColumnStoreDep, regions: Regions, templates: Templates, page: PageQuery = 1
):
    listed = Listed(region_code, domain_code, None, None, page)
    return list_page(request, store, regions, templates, listed)


@router.get("/columns/{region_code}/{domain_code}/{item_id}", response_class=Response, responses=CATALOG_PAGE)
def item_column(
    request: Request,
    region_code: RegionPath,
    domain_code: DomainPath,
    item_id: ItemPath,
    store: ColumnStoreDep,
    regions: Regions,
    templates: Templates,
    page: PageQuery = 1,
):
    if not item_id.startswith(domain_code + "-"):
        raise HTTPException(404, "that item is not in this domain")
    listed = Listed(region_code, domain_code, item_id[:6], item_id if len(item_id) > 6 else None, page)
    return list_page(request, store, regions, templates, listed)


@dataclass(frozen=True)
class Listed:
    """Which list page: a domain, or one of its level-1 or level-2 items, and the page number."""

    region_code: str
    domain_code: str
    level1_id: str | None
    level2_id: str | None
    page: int


def listed_items(store: ColumnStore, catalog: Catalog, region: Region, listed: Listed) -> tuple[Domain, Level1Item | None, Level2Item | None, bool]:
    """The domain and items a list page shows; an item dropped by a later edition stays
    reachable under the name it was filed with (archived)."""
    domain = catalog.domain(listed.domain_code)
    if domain is None:
        raise HTTPException(404, f"no domain {listed.domain_code}")
    level1 = catalog.level1(listed.level1_id) if listed.level1_id else None
    level2 = catalog.level2(listed.level2_id) if listed.level2_id else None
    archived = False
    if listed.level2_id and level2 is None:
        filed = store.filed_name(listed.level2_id)
        if filed is None:
            raise HTTPException(404, "no such catalog item")
        level2, archived = Level2Item(id=listed.level2_id, name=filed), True
    if listed.level1_id and level1 is None:
        if not archived and not store.archived_items(region.code, domain.code, set()):
            raise HTTPException(404, "no such catalog item")
        level1 = Level1Item(id=listed.level1_id, name="归档事项")
    return domain, level1, level2, archived


def list_page(request: Request, store: ColumnStore, regions: dict[str, Region], templates: Jinja2Templates, listed: Listed) -> HTMLResponse:
    region = region_or_404(regions, listed.region_code)
    domain, level1, level2, archived = listed_items(store, catalog_for(store, regions, region), region, listed)
    in_force = {j.id for i in domain.level1 for j in i.items}
    total, items = store.listing(
        region.code, domain_code=domain.code, level1_id=listed.level1_id, level2_id=listed.level2_id, page=listed.page, per_page=PER_PAGE
    )
    return page_of(
        templates,
        request,
        "column/list.html",
        region=region,
        trail=trail(region, regions),
        domain=domain,
        level1=level1,
        level2=level2,
        counts=store.counts_by_item(region.code, domain.code),
        archive=store.archived_items(region.code, domain.code, in_force),
        archived=archived,
        items=items,
        total=total,
        page=listed.page,
        pages=max(1, -(-total // PER_PAGE)),
    )


@router.get("/publications/{publication_id}", response_class=Response, responses=DETAIL_PAGE)
def publication_detail(
    request: Request,
    publication_id: Annotated[str, Path(pattern=r"^[0-9a-zA-Z._:-]{1,80}$")],
    store: ColumnStoreDep,
    regions: Regions,
    templates: Templates,
):
    entry = store.entry(publication_id)
    if entry is None or (entry.withdrawal and entry.withdrawal.withdrawal_type == "vanish"):
        raise HTTPException(404, "no such publication", headers={"Cache-Control": CACHE_CONTROL})
    if entry.withdrawal and entry.withdrawal.withdrawal_type == "redirect":
        # The event says where to; only a web address or a page of this site is followed.
        target = entry.withdrawal.redirect_to
        return RedirectResponse(target if target and is_safe_link(target) else "/", status_code=301, headers={"Cache-Control": CACHE_CONTROL})
    etag = detail_etag(entry)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in _if_none_match(request):
        return Response(status_code=304, headers=headers)
    status_code = 410 if entry.withdrawal and entry.withdrawal.withdrawal_type == "gone" else 200
    doc = None if entry.withdrawal else displayable(entry.document)
    return templates.TemplateResponse(
        request,
        "column/detail.html",
        {"entry": entry, "doc": doc, "withdrawal": entry.withdrawal, "archived": archived_placements(store, regions, doc)},
        status_code=status_code,
        headers=headers,
    )


def archived_placements(store: ColumnStore, regions: dict[str, Region], doc: PublicationData | None) -> set[str]:
    """The level-2 items a publication is filed under that its region's catalog no longer has."""
    placements = doc.placements if doc else ()
    return {p.level2_id for p in placements if p.region_code in regions and catalog_for(store, regions, regions[p.region_code]).level2(p.level2_id) is None}


@router.get("/catalog/{region_code}", response_class=Response, responses=CATALOG_PAGE)
def catalog_page(request: Request, region_code: RegionPath, store: ColumnStoreDep, regions: Regions, templates: Templates):
    region = region_or_404(regions, region_code)
    return page_of(
        templates,
        request,
        "column/catalog.html",
        region=region,
        trail=trail(region, regions),
        catalog=catalog_for(store, regions, region),
        domain=None,
        level1=None,
        level2=None,
    )


def _children(known: Mapping[str, Region]) -> dict[str, list[Region]]:
    children: dict[str, list[Region]] = {}
    for region in sorted(known.values(), key=lambda r: r.code):
        if region.parent_code:
            children.setdefault(region.parent_code, []).append(region)
    return children


def detail_etag(entry: ColumnEntry) -> str:
    """A version names one event, so it names what the page shows; a withdrawal's higher
    version changes the tag, and a conditional request with the old one gets the notice."""
    stamp = f"{RENDER_REVISION}|{entry.publication_id}|{entry.version}|{entry.status}"
    return '"' + hashlib.blake2b(stamp.encode(), digest_size=12).hexdigest() + '"'


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def displayable(doc: PublicationData | None) -> PublicationData | None:
    """The document with its service guide's links limited to web addresses (the body is
    cleaned by the template's `sanitised` filter)."""
    if doc is None or not doc.service_guide:
        return doc
    return doc.model_copy(update={"service_guide": safe_links(doc.service_guide)})
