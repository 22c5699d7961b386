"""The catalog API: pickers for CMSes (region → domains → level-1 → level-2) with ETag/304,
and edition management (derive, Excel import/export, publish, diff).

What it works on comes from app.state: `publisher` (whose database holds the editions),
`directory` (the DirectoryProvider), `workbook_limits`, and `on_catalog_change` (called after
an edition changed, so the next request sees it)."""

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.catalog import Catalog, Domain, Level1Item, Level2Item, diff_catalogs, edition_key
from contracts.identity import Principal
from services.common.auth import declared, requires_role
from services.common.http_errors import NOT_MODIFIED, XLSX, answered_as, refusals
from services.common.wiring import provided
from services.common.workbooks import WorkbookLimits, WorkbookRefused, parse_workbook, read_body, refusal_response
from services.publisher.gate.domain import Directory
from services.publisher.gate.routes import RequestIdOfThisRequest
from services.publisher.store import Publisher

from . import editions as catalogs
from .store import Catalogs

RegionPath = Annotated[str, Path(pattern=r"^[0-9A-Z]{2,12}$")]
ScopePath = Annotated[str, Path(pattern=r"^(standard|[0-9A-Z]{2,12})$")]
EditionPath = Annotated[str, Path(pattern=r"^[0-9A-Za-z._-]{1,40}$")]


class DraftEdits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rename: dict[Annotated[str, Field(max_length=20)], Annotated[str, Field(min_length=1, max_length=100)]] = {}
    drop: Annotated[list[Annotated[str, Field(max_length=20)]], Field(max_length=1000)] = []
    specialise: dict[Annotated[str, Field(max_length=20)], dict[str, str | list[str]]] = {}


class ItemName(BaseModel):
    id: str
    name: str


class Level1Summary(ItemName):
    items: list[ItemName]


class DomainSummary(BaseModel):
    code: str
    name: str
    aliases: list[str]
    level1_count: int


class RegionDomains(BaseModel):
    """A region's catalog in force: its scope and edition, and its domains."""

    scope: str
    edition: str
    domains: list[DomainSummary]


class DomainLevel1(DomainSummary):
    level1: list[Level1Summary]


class Level1Level2(ItemName):
    items: list[Level2Item]


class EditionRow(BaseModel):
    scope: str
    edition: str
    status: str = Field(description="draft or published")
    version: int
    derived_from: str | None
    published_at: str | None


class EditionDocument(BaseModel):
    status: str = Field(description="draft or published")
    catalog: Catalog


class EditionState(BaseModel):
    """An edition after a change: its key and whether it is a draft or published."""

    key: str = Field(description="scope@edition")
    status: str


class Derived(EditionState):
    derived_from: str | None


class Published(EditionState):
    reissued_publications: int = Field(description="publications re-issued under the new edition")


class Changes(BaseModel):
    added: list[str]
    dropped: list[str]
    renamed: list[dict[str, str]]
    changed: list[dict[str, str | list[str]]]


class RenderedCache:
    """Serialised answers keyed by (catalog edition key, path): published editions never
    change, so an entry is valid for as long as that edition is the one in force."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.entries: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()

    def get(self, key: tuple, render: Callable[[], object]) -> tuple[bytes, str]:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        body = json.dumps(render(), ensure_ascii=False, separators=(",", ":")).encode()
        entry = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        self.entries[key] = entry
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return entry


def _domain_summary(domain: Domain) -> dict:
    return {"code": domain.code, "name": domain.name, "aliases": list(domain.aliases), "level1_count": len(domain.level1)}


def _level1_summary(level1: Level1Item) -> dict:
    return {"id": level1.id, "name": level1.name, "items": [{"id": j.id, "name": j.name} for j in level1.items]}


router = APIRouter(tags=["catalog"])
_rendered = RenderedCache()

PublisherDep = Annotated[Publisher, provided("publisher")]
DirectoryDep = Annotated[Callable[[], Directory], provided("directory")]
WorkbookLimitsDep = Annotated[WorkbookLimits, provided("workbook_limits")]
OnChangeDep = Annotated[Callable[[], None], provided("on_catalog_change")]
# Catalog editions are the administrators' (an admin acts for every region, so these writes are
# not regional).
Admin = Annotated[Principal, Depends(requires_role("admin"))]
ADMIN = declared("admin")

# An administrator's write: besides its own refusals, a missing or bad token, a role it lacks,
# an unreadable or oversized body, too many writes, the store being down.
WRITE = (400, 401, 403, 413, 422, 429, 503)
PICKER = {**NOT_MODIFIED, **refusals(404, 422, 503)}
EditionKey = Annotated[str, Query(pattern=r"^[0-9A-Za-z]+@[0-9A-Za-z._-]+$")]
Level1Path = Annotated[str, Path(max_length=20)]
DomainPath = Annotated[str, Path(max_length=20)]


def conditional(request: Request, key: tuple, render: Callable[[], object]) -> Response:
    """The rendered answer with its ETag, or 304 when the client holds it already."""
    body, etag = _rendered.get(key, render)
    headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


def catalog_of(region_code: str, directory: Callable[[], Directory]) -> Catalog:
    current = directory()
    if region_code not in current.regions:
        raise HTTPException(404, f"no region {region_code}")
    return current.catalog_for(region_code)


def edition_or_404(publisher: Publisher, scope: str, edition: str) -> tuple[Catalog, str]:
    found = Catalogs(publisher.engine).edition(scope, edition)
    if found is None:
        raise HTTPException(404, f"no edition {edition_key(scope, edition)}")
    return found[0], found[1]


@contextmanager
def refusals_as_conflicts() -> Iterator[None]:
    """An edition that cannot take the change answers 409 with the editions' reason."""
    try:
        yield
    except catalogs.CatalogRefused as exc:
        raise HTTPException(409, str(exc)) from exc


@router.get("/v1/regions/{region_code}/catalog", response_model=RegionDomains, responses=PICKER)
def region_domains(request: Request, region_code: RegionPath, directory: DirectoryDep) -> Response:
    catalog = catalog_of(region_code, directory)
    return conditional(
        request,
        (catalog.key,),
        lambda: {"scope": catalog.scope, "edition": catalog.edition, "domains": [_domain_summary(d) for d in catalog.domains]},
    )


@router.get("/v1/regions/{region_code}/catalog/{domain}", response_model=DomainLevel1, responses=PICKER)
def domain_items(request: Request, region_code: RegionPath, domain: DomainPath, directory: DirectoryDep) -> Response:
    catalog = catalog_of(region_code, directory)
    found = catalog.resolve_domain(domain)
    if found is None:
        raise HTTPException(404, {"msg": f"no domain {domain!r}", "choices": [{"id": d.code, "name": d.name} for d in catalog.domains]})
    return conditional(request, (catalog.key, found.code), lambda: {**_domain_summary(found), "level1": [_level1_summary(i) for i in found.level1]})


@router.get("/v1/regions/{region_code}/catalog/{domain}/{level1_id}", response_model=Level1Level2, responses=PICKER)
def level1_items(request: Request, region_code: RegionPath, domain: DomainPath, level1_id: Level1Path, directory: DirectoryDep) -> Response:
    catalog = catalog_of(region_code, directory)
    found = catalog.resolve_domain(domain)
    level1 = catalog.level1(level1_id)
    if found is None or level1 is None or not level1_id.startswith(found.code + "-"):
        raise HTTPException(404, "no such level-1 item in this region's catalog")
    return conditional(request, (catalog.key, level1.id), lambda: {"id": level1.id, "name": level1.name, "items": [j.model_dump() for j in level1.items]})


@router.get("/v1/catalogs", response_model=list[EditionRow], responses=refusals(503))
def editions(publisher: PublisherDep) -> list[dict]:
    rows = Catalogs(publisher.engine).editions()
    return [{**row, "published_at": row["published_at"].isoformat() if row["published_at"] else None} for row in rows]


@router.get("/v1/catalogs/{scope}/{edition}", response_model=EditionDocument, responses=refusals(404, 422, 503))
def edition_document(scope: ScopePath, edition: EditionPath, publisher: PublisherDep) -> dict:
    catalog, status = edition_or_404(publisher, scope, edition)
    return {"status": status, "catalog": json.loads(catalog.model_dump_json())}


@router.get(
    "/v1/catalogs/{scope}/{edition}/xlsx", response_class=Response, responses={**answered_as(XLSX, "the edition as a workbook"), **refusals(404, 422, 503)}
)
def export_edition(scope: ScopePath, edition: EditionPath, publisher: PublisherDep) -> Response:
    from .xlsx_write import export_catalog  # openpyxl loads only when a workbook is asked for

    catalog, _ = edition_or_404(publisher, scope, edition)
    filename = f"catalog-{scope}-{edition}.xlsx"
    return Response(export_catalog(catalog), media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.put(
    "/v1/catalogs/{scope}/{edition}/xlsx",
    response_model=EditionState,
    responses=refusals(
        *WRITE, 409, d413="past a workbook limit, named", d422="every problem with its sheet, row and column", d409="the edition cannot take this workbook"
    ),
    openapi_extra=ADMIN,
)
async def import_edition(
    request: Request,
    scope: ScopePath,
    edition: EditionPath,
    _: Admin,
    request_id: RequestIdOfThisRequest,
    publisher: PublisherDep,
    directory: DirectoryDep,
    limits: WorkbookLimitsDep,
    on_change: OnChangeDep,
    publish: Annotated[bool, Query()] = False,
) -> JSONResponse | dict:
    from .xlsx_read import CatalogImportError, import_catalog

    try:
        with refusals_as_conflicts():
            workbook = await read_body(request, limits)
            base = await run_in_threadpool(catalogs.import_base, publisher, scope=scope, edition=edition, regions=directory().regions)
            imported = await parse_workbook(import_catalog, workbook, limits, errors=(CatalogImportError,), base=base)
            catalog = await run_in_threadpool(
                catalogs.save_import, publisher, imported, base=base, regions=directory().regions, publish=publish, request_id=request_id
            )
    except WorkbookRefused as refusal:
        return refusal_response(refusal)
    except CatalogImportError as exc:
        return JSONResponse(
            status_code=422,
            content={"detail": [{"loc": ["body", p.sheet, p.row, p.column], "msg": p.message, "type": "catalog.import"} for p in exc.problems]},
        )
    on_change()
    return {"key": catalog.key, "status": "published" if publish else "draft"}


@router.post(
    "/v1/catalogs/{scope}/{edition}/derive",
    status_code=201,
    response_model=Derived,
    responses=refusals(*WRITE, 409, d409="already there, or nothing to derive from"),
    openapi_extra=ADMIN,
)
def derive(
    scope: ScopePath,
    edition: EditionPath,
    _: Admin,
    publisher: PublisherDep,
    directory: DirectoryDep,
    parent: Annotated[str | None, Body(embed=True, max_length=80)] = None,
) -> dict:
    with refusals_as_conflicts():
        catalog = catalogs.derive_edition(publisher, scope=scope, edition=edition, regions=directory().regions, parent_key=parent)
    return {"key": catalog.key, "derived_from": catalog.derived_from, "status": "draft"}


@router.patch(
    "/v1/catalogs/{scope}/{edition}",
    response_model=EditionState,
    responses=refusals(*WRITE, 409, d409="no such draft, or an edit it cannot take"),
    openapi_extra=ADMIN,
)
def edit(scope: ScopePath, edition: EditionPath, edits: Annotated[DraftEdits, Body()], _: Admin, publisher: PublisherDep) -> dict:
    with refusals_as_conflicts():
        catalog = catalogs.edit_draft(publisher, scope=scope, edition=edition, rename=edits.rename, drop=set(edits.drop), specialise=edits.specialise)
    return {"key": catalog.key, "status": "draft"}


@router.post(
    "/v1/catalogs/{scope}/{edition}/publish",
    response_model=Published,
    responses=refusals(*WRITE, 409, d409="no such draft, or it cannot be published"),
    openapi_extra=ADMIN,
)
def publish(
    scope: ScopePath,
    edition: EditionPath,
    _: Admin,
    request_id: RequestIdOfThisRequest,
    publisher: PublisherDep,
    directory: DirectoryDep,
    on_change: OnChangeDep,
) -> dict:
    with refusals_as_conflicts():
        reissued = catalogs.publish_edition(publisher, scope=scope, edition=edition, regions=directory().regions, request_id=request_id)
    on_change()
    return {"key": edition_key(scope, edition), "status": "published", "reissued_publications": reissued}


@router.get("/v1/catalogs/diff", response_model=Changes, responses=refusals(404, 422, 503))
def diff(a: EditionKey, b: EditionKey, publisher: PublisherDep) -> dict:
    old, _ = edition_or_404(publisher, *a.split("@", 1))
    new, _ = edition_or_404(publisher, *b.split("@", 1))
    changes = diff_catalogs(old, new)
    return {
        "added": list(changes.added),
        "dropped": list(changes.dropped),
        "renamed": [{"id": r.id, "old": r.old, "new": r.new} for r in changes.renamed],
        "changed": [{"id": i, "attributes": list(attrs)} for i, attrs in changes.changed],
    }
