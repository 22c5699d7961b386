"""The disclosure office's dashboard: ranking → unit → domain → item, charts, exports.

Server-rendered HTML (charts are inline SVG with a text alternative, and every figure is also
in a table), GET forms for the filters: it works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from contracts.catalog import Catalog, Region, standard_catalog
from contracts.regions import trail
from services.common.http_errors import HTML, XLSX, answered_as, refusals
from services.common.wiring import Regions, provided

from . import reports
from .board import Board, build_board
from .board import Query as BoardQuery
from .board import today as beijing_today
from .domain import SORTS, STATE_NAMES, STATUS_NAMES, DomainMeasure, domain_measures
from .reports import pct
from .store import SupervisionStore

RegionPath = Annotated[str, Path(pattern=r"^[0-9A-Z]{2,12}$")]
DomainPath = Annotated[str, Path(pattern=r"^D\d{2}$")]
RegionQuery = Annotated[str | None, Query(pattern=r"^[0-9A-Z]{2,12}$", description="the region whose units are supervised; default: the city")]
# Supervision measures days of the disclosure regime, not of the calendar's whole range: a date
# far outside it is refused (422) before working-day arithmetic overflows on it.
FIRST_DAY, LAST_DAY = date(1990, 1, 1), date(2099, 12, 31)
_IN_RANGE = {"pattern": r"^(199\d|20\d{2})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"}
AsOf = Annotated[date | None, Query(json_schema_extra=_IN_RANGE, description="the date the measures are taken on (Beijing); default: today")]
From = Annotated[
    date | None,
    Query(alias="from", json_schema_extra=_IN_RANGE, description="first publication date counted for timeliness; default: 1 January of as_of's year"),
]
To = Annotated[date | None, Query(alias="to", json_schema_extra=_IN_RANGE, description="last publication date counted for timeliness; default: as_of")]
DomainQuery = Annotated[str | None, Query(pattern=r"^(D\d{2})?$", description="one domain, e.g. D14")]
Sort = Annotated[str, Query(pattern="^(" + "|".join(SORTS) + ")$")]
Templates = Annotated[Jinja2Templates, provided("templates")]


SupervisionStoreDep = Annotated[SupervisionStore, provided("supervision_store")]


def today_in_beijing(request: Request) -> date:
    """Today's date in Beijing, by `app.state.today` where an app set a clock of its own (a
    test fixes the day), else by the wall clock."""
    clock: Callable[[], date] = getattr(request.app.state, "today", beijing_today)
    return clock()


Today = Annotated[date, Depends(today_in_beijing)]

# Pages and workbooks in their own media types; refusals are JSON (HTTPException), so Response
# is the class and FastAPI files the refusals' models under application/json.
REFUSED = refusals(404, 422, 503, d503="no regions are loaded yet")
PAGE = {**answered_as(HTML, "the page"), **REFUSED}

router = APIRouter(tags=["supervision"])


@dataclass(frozen=True)
class Asked:
    """The filters a page was asked with, as they came (checked by `query_of`)."""

    region: str | None
    as_of: date | None
    start: date | None
    end: date | None
    domain: str | None
    sort: str


def asked(
    region: RegionQuery = None, as_of: AsOf = None, date_from: From = None, date_to: To = None, domain: DomainQuery = None, sort: Sort = "coverage"
) -> Asked:
    return Asked(region, as_of, date_from, date_to, domain, sort)


def asked_of_unit(as_of: AsOf = None, date_from: From = None, date_to: To = None, domain: DomainQuery = None, sort: Sort = "coverage") -> Asked:
    return Asked(None, as_of, date_from, date_to, domain, sort)


def asked_of_domain(as_of: AsOf = None, date_from: From = None, date_to: To = None) -> Asked:
    return Asked(None, as_of, date_from, date_to, None, "coverage")


def out_of_range(asked: Asked) -> list[dict]:
    """A problem for each date outside the disclosure regime's days."""
    days = (("as_of", asked.as_of), ("from", asked.start), ("to", asked.end))
    return [
        {"loc": ["query", name], "msg": f"日期须在 {FIRST_DAY} 至 {LAST_DAY} 之间", "type": "value_error"}
        for name, day in days
        if day is not None and not FIRST_DAY <= day <= LAST_DAY
    ]


def inconsistent(query: BoardQuery, standard: Catalog) -> list[dict]:
    """A problem for each filter that contradicts another or names no domain."""
    problems: list[dict] = []
    if query.start > query.end:
        problems.append({"loc": ["query", "from"], "msg": f"from ({query.start}) must not be after to ({query.end})", "type": "value_error"})
    if query.end > query.as_of:
        problems.append(
            {"loc": ["query", "to"], "msg": f"to ({query.end}) must not be after as_of ({query.as_of}): measures are taken on as_of", "type": "value_error"}
        )
    if query.domain and standard.domain(query.domain) is None:
        choices = [{"code": d.code, "name": d.name} for d in standard.domains]
        problems.append({"loc": ["query", "domain"], "msg": f"no domain {query.domain}", "type": "value_error", "choices": choices})
    return problems


def query_of(store: SupervisionStore, regions: dict[str, Region], asked: Asked, today: date) -> BoardQuery:
    """The board's query, or 404 for an unknown region and 422 naming every bad filter."""
    code = asked.region or _default_region(regions)
    if code not in regions:
        raise HTTPException(404, f"no region {code}")
    outside = out_of_range(asked)
    if outside:
        raise HTTPException(422, outside)
    query = BoardQuery.of(code, asked.as_of or today, asked.start, asked.end, asked.domain or None, asked.sort)
    problems = inconsistent(query, store.catalogs().get("standard") or standard_catalog())
    if problems:
        raise HTTPException(422, problems)
    return query


def render(templates: Jinja2Templates, request: Request, name: str, board: Board, **context: Any) -> HTMLResponse:
    standard = board.standard
    domain = standard.domain(board.query.domain) if board.query.domain else None
    return templates.TemplateResponse(
        request,
        name,
        {
            "board": board,
            "q": board.query,
            "domains": standard.domains,
            "sorts": SORTS,
            "pct": pct,
            "domain_measures": domain_measures,
            "domain_name": domain.name if domain else "",
            "chart": lambda rows, kind: chart_rows(board, rows, kind),
            "status_names": STATUS_NAMES,
            "state_names": STATE_NAMES,
            "link": lambda path, **overrides: f"{path}?{urlencode(board.query.params(**overrides))}",
            **context,
        },
    )


@router.get("/supervision", response_class=Response, responses=PAGE)
def dashboard(request: Request, filters: Annotated[Asked, Depends(asked)], store: SupervisionStoreDep, regions: Regions, templates: Templates, today: Today):
    board = build_board(store, regions, query_of(store, regions, filters, today))
    return render(templates, request, "supervision/dashboard.html", board)


@router.get("/supervision/units/{unit_code}", response_class=Response, responses=PAGE)
def unit_page(
    request: Request,
    unit_code: RegionPath,
    filters: Annotated[Asked, Depends(asked_of_unit)],
    store: SupervisionStoreDep,
    regions: Regions,
    templates: Templates,
    today: Today,
):
    unit = _unit_or_404(regions, unit_code)
    query = query_of(store, regions, replace(filters, region=unit.code), today)
    board = build_board(store, regions, query, by_domain_for=unit.code)
    measures = next(m for m in board.units if m.region.code == unit.code)
    late = store.late_filings(unit.code, board.query.start, board.query.end, domain=board.query.domain, limit=50)
    return render(templates, request, "supervision/unit.html", board, unit=measures, late_filings=late, trail=trail(unit, regions))


@router.get("/supervision/units/{unit_code}/{domain_code}", response_class=Response, responses=PAGE)
def domain_page(
    request: Request,
    unit_code: RegionPath,
    domain_code: DomainPath,
    filters: Annotated[Asked, Depends(asked_of_domain)],
    store: SupervisionStoreDep,
    regions: Regions,
    templates: Templates,
    today: Today,
):
    unit = _unit_or_404(regions, unit_code)
    query = query_of(store, regions, replace(filters, region=unit.code, domain=domain_code), today)
    board = build_board(store, regions, query, item_detail_for=unit.code, by_domain_for=unit.code, include_below=False)
    late = store.late_filings(unit.code, query.start, query.end, domain=domain_code, limit=500)
    domain = board.standard.domain(domain_code)
    return render(templates, request, "supervision/items.html", board, unit=board.units[0], domain=domain, late_filings=late, trail=trail(unit, regions))


@router.get("/supervision/report.xlsx", response_class=Response, responses={**answered_as(XLSX, "the report as a workbook"), **REFUSED})
def report_xlsx(filters: Annotated[Asked, Depends(asked)], store: SupervisionStoreDep, regions: Regions, today: Today):
    board = build_board(store, regions, query_of(store, regions, filters, today))
    filename = f"supervision-{board.region.code}-{board.query.as_of.isoformat()}.xlsx"
    return Response(reports.xlsx_report(board), media_type=XLSX, headers={"content-disposition": f'attachment; filename="{filename}"'})


@router.get("/supervision/report", response_class=Response, responses=PAGE)
def report_html(filters: Annotated[Asked, Depends(asked)], store: SupervisionStoreDep, regions: Regions, today: Today):
    board = build_board(store, regions, query_of(store, regions, filters, today))
    return HTMLResponse(reports.html_report(board))


def chart_rows(board: Board, rows: list, kind: str) -> list[dict]:
    """Bars for the SVG charts: units or domains, by coverage, on-time share or townships."""
    out = []
    for row in rows:
        if isinstance(row, DomainMeasure):
            label, value = row.name, row.coverage if kind == "coverage" else row.timeliness.share
        elif kind == "townships":
            rollup = board.rollups.get(row.region.code)
            label, value = row.region.name, rollup.coverage if rollup else None
        else:
            label, value = row.region.name, row.coverage if kind == "coverage" else row.timeliness.share
        out.append({"label": label, "value": value})
    return out


def _default_region(known: dict[str, Region]) -> str:
    cities = sorted(r.code for r in known.values() if r.level == "city")
    if "4301" in cities:
        return "4301"
    if cities:
        return cities[0]
    raise HTTPException(503, "no regions are loaded yet")


def _unit_or_404(known: dict[str, Region], code: str) -> Region:
    unit = known.get(code)
    if unit is None or unit.level not in ("county", "township"):
        raise HTTPException(404, f"no supervised unit {code} (a county-level unit or a township)")
    return unit
