"""The search API (GET /v1/search, JSON) and search page (GET /search, HTML).

Both take the same parameters through one dependency and get their answer from one function
(`answer`), so the page and the API can never disagree. The page works without JavaScript:
filters, facets, sorting and paging are plain links and a GET form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from contracts.catalog import Region, regions_of_city, standard_catalog
from services.common.http_errors import HTML, answered_as, refusals
from services.common.sanitise import install_filters, safe_marked
from services.common.wiring import provided

from .index import SearchHit, SearchIndex, SearchQuery, SearchResults

MAX_QUERY_CHARS = 500
MAX_PAGE = 1000
# No backend pages past this many results (Elasticsearch's max_result_window).
MAX_RESULTS = 10_000
DEFAULT_PER_PAGE = 20
KINDS = {"info": "公开信息", "service": "办事服务"}
SORTS = {"relevance": "按相关度", "date": "按发布日期"}
# Results change whenever something is withdrawn: caches must ask again before reusing one.
CACHE_CONTROL = "no-cache"
# A calendar date's shape, or empty (the form's "any"). Documented as the pattern, enforced by
# `_day` so every bad date gets the same Chinese message (the 31st of a short month too).
DAY = r"^(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))?$"


def _invalid(field: str, message: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "msg": message, "type": kind}])


def _day(field: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        if not re.fullmatch(DAY, value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(field, f"{value} 不是有效日期（格式 YYYY-MM-DD）", "date_from_datetime_parsing") from None


def search_query(
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="搜索词；空格分隔的词须全部出现，标点和运算符只作分隔")] = "",
    # An empty value means "any": the search form submits its empty inputs.
    region: Annotated[str | None, Query(pattern=r"^([0-9A-Z]{2,12})?$", description="区划代码，含其下级区划（县级含乡镇、街道）")] = None,
    domain: Annotated[str | None, Query(pattern=r"^(D\d{2})?$", description="领域代码，如 D14")] = None,
    level1: Annotated[str | None, Query(pattern=r"^(D\d{2}-\d{2})?$", description="一级事项，如 D14-02")] = None,
    level2: Annotated[str | None, Query(pattern=r"^(D\d{2}-\d{2}-\d{2})?$", description="二级事项，如 D14-02-03")] = None,
    kind: Annotated[Literal["info", "service", ""] | None, Query(description="info 公开信息 | service 办事服务")] = None,
    published_from: Annotated[str | None, Query(json_schema_extra={"pattern": DAY}, max_length=10, description="发布日期起（含），YYYY-MM-DD")] = None,
    published_to: Annotated[str | None, Query(json_schema_extra={"pattern": DAY}, max_length=10, description="发布日期止（含），YYYY-MM-DD")] = None,
    sort: Annotated[Literal["relevance", "date", ""] | None, Query(description="relevance 相关度（默认）| date 发布日期")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = DEFAULT_PER_PAGE,
    facets: Annotated[bool, Query(description="是否返回按领域、按区划的分面计数")] = True,
) -> SearchQuery:
    start, end = _day("published_from", published_from), _day("published_to", published_to)
    if start and end and start > end:
        raise _invalid("published_to", f"截止日期 {end} 早于起始日期 {start}")
    domain, level1, level2 = domain or None, level1 or None, level2 or None
    if level1 and domain and not level1.startswith(domain + "-"):
        raise _invalid("level1", f"一级事项 {level1} 不属于领域 {domain}")
    parent = level1 or domain
    if level2 and parent and not level2.startswith(parent + "-"):
        raise _invalid("level2", f"二级事项 {level2} 不属于 {parent}")
    if page * per_page > MAX_RESULTS:
        raise _invalid(
            "page", f"最多翻到第 {MAX_RESULTS} 条结果（每页 {per_page} 条时为第 {MAX_RESULTS // per_page} 页），请加筛选条件缩小范围", "less_than_equal"
        )
    return SearchQuery(
        q=q.strip(),
        region=region or None,
        domain=domain,
        level1=level1,
        level2=level2,
        kind=kind or None,
        published_from=start,
        published_to=end,
        sort=sort or "relevance",
        page=page,
        per_page=per_page,
        facets=facets,
    )


Params = Annotated[SearchQuery, Depends(search_query)]


@dataclass(frozen=True)
class FacetValue:
    code: str
    name: str
    count: int
    selected: bool
    url: str


@dataclass(frozen=True)
class Answer:
    """One search as both the API and the page show it."""

    query: SearchQuery
    results: SearchResults
    pages: int
    facets: dict[str, list[FacetValue]]

    def json(self) -> dict[str, Any]:
        return {
            "total": self.results.total,
            "page": self.results.page,
            "per_page": self.results.per_page,
            "pages": self.pages,
            "sort": self.query.sort,
            "hits": [hit_json(hit) for hit in self.results.hits],
            "facets": {
                name: [{"code": v.code, "name": v.name, "count": v.count, "selected": v.selected} for v in values] for name, values in self.facets.items()
            },
        }


class Names:
    """Display names for the codes a search shows (domains, items, regions)."""

    def __init__(self, regions: Callable[[], Mapping[str, Region]] | None = None) -> None:
        self._regions = regions or _changsha

    def domain(self, code: str) -> str:
        domain = standard_catalog().domain(code)
        return domain.name if domain else code

    def item(self, item_id: str) -> str:
        catalog = standard_catalog()
        item = catalog.level2(item_id) or catalog.level1(item_id)
        return item.name if item else item_id

    def region(self, code: str) -> str:
        region = self._regions().get(code)
        return region.name if region else code


@lru_cache(maxsize=1)
def _changsha() -> dict[str, Region]:
    return {region.code: region for region in regions_of_city("4301")}


async def answer(index: SearchIndex, query: SearchQuery, names: Names) -> Answer:
    results = await index.search(query)
    pages = min(-(-results.total // query.per_page), MAX_RESULTS // query.per_page)
    facets: dict[str, list[FacetValue]] = {}
    for name, counts in results.facets.items():
        selected = query.domain if name == "domain" else query.region
        label = names.domain if name == "domain" else names.region
        values = [
            FacetValue(code=code, name=label(code), count=n, selected=code == selected, url=search_url(query, **{name: None if code == selected else code}))
            for code, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        ]
        facets[name] = values
    return Answer(query=query, results=results, pages=pages, facets=facets)


SearchIndexDep = Annotated[SearchIndex, provided("search_index")]
# The region facet's names come from the reference division table (Changsha's), as before.
NAMES = Names()

router = APIRouter(tags=["search"])


def page_templates(templates: Annotated[Jinja2Templates, provided("templates")]) -> Jinja2Templates:
    """The portal's templates with the filters the search page uses instead of `|safe`."""
    install_filters(templates.env)
    return templates


Templates = Annotated[Jinja2Templates, Depends(page_templates)]


# Searches are limited per address: past the limit, 429 (JSON under /v1, a page elsewhere).
@router.get("/v1/search", responses=refusals(422, 429, 503))
async def search_json(query: Params, response: Response, index: SearchIndexDep) -> dict[str, Any]:
    response.headers["Cache-Control"] = CACHE_CONTROL
    return (await answer(index, query, NAMES)).json()


@router.get("/search", response_class=Response, responses={**answered_as(HTML, "the search page"), **refusals(422, 429, 503, html=(429,))})
async def search_page(request: Request, query: Params, index: SearchIndexDep, templates: Templates):
    found = await answer(index, query, NAMES) if searched(query) else None
    return templates.TemplateResponse(request, "search/search.html", page_context(query, found), headers={"Cache-Control": CACHE_CONTROL})


def searched(query: SearchQuery) -> bool:
    """Whether the page was asked anything: the bare page shows the form alone."""
    return bool(query.q or query.region or query.domain or query.level1 or query.level2 or query.kind or query.published_from or query.published_to)


def page_context(query: SearchQuery, found: Answer | None) -> dict[str, Any]:
    return {
        "query": query,
        "searched": found is not None,
        "answer": found,
        "results": found.results if found else SearchResults(total=0, page=query.page, per_page=query.per_page),
        "pages": found.pages if found else 0,
        "prev_url": search_url(query, page=query.page - 1) if found and query.page > 1 else None,
        "next_url": search_url(query, page=query.page + 1) if found and query.page < found.pages else None,
        "sort_urls": {sort: search_url(query, sort=sort) for sort in SORTS},
        "sorts": SORTS,
        "kinds": KINDS,
        "domains": [(domain.code, domain.name) for domain in standard_catalog().domains],
        "chips": _chips(query, NAMES),
    }


def hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        "publication_id": hit.publication_id,
        "version": hit.version,
        "title": hit.title,
        # HTML for clients to show as is: only <mark> survives, whatever the backend made.
        "title_html": str(safe_marked(hit.title_html)),
        "summary": hit.summary,
        "snippet": str(safe_marked(hit.snippet)),
        "published_at": hit.published_at.isoformat(),
        "placements": hit.placements,
        "index_number": hit.index_number,
        "kind": hit.kind,
    }


def search_url(query: SearchQuery, **changes: Any) -> str:
    """The page's URL for the query with some parameters changed; a changed filter starts
    again at page 1."""
    if any(name != "page" for name in changes):
        changes.setdefault("page", 1)
    changed = replace(query, **changes)
    params = {
        "q": changed.q,
        "region": changed.region,
        "domain": changed.domain,
        "level1": changed.level1,
        "level2": changed.level2,
        "kind": changed.kind,
        "published_from": changed.published_from.isoformat() if changed.published_from else None,
        "published_to": changed.published_to.isoformat() if changed.published_to else None,
        "sort": changed.sort if changed.sort != "relevance" else None,
        "page": changed.page if changed.page != 1 else None,
        "per_page": changed.per_page if changed.per_page != DEFAULT_PER_PAGE else None,
    }
    return "/search?" + urlencode({k: v for k, v in params.items() if v})


def page_url(query: SearchQuery, page: int) -> str:
    return search_url(query, page=page)


def _chips(query: SearchQuery, names: Names) -> list[tuple[str, str]]:
    """(label, URL without it) for each filter in force, so each can be removed by a link."""
    chips = []
    if query.region:
        chips.append((f"区划：{names.region(query.region)}", search_url(query, region=None)))
    if query.domain:
        chips.append((f"领域：{names.domain(query.domain)}", search_url(query, domain=None, level1=None, level2=None)))
    if query.level1:
        chips.append((f"一级事项：{names.item(query.level1)}", search_url(query, level1=None, level2=None)))
    if query.level2:
        chips.append((f"二级事项：{names.item(query.level2)}", search_url(query, level2=None)))
    if query.kind:
        chips.append((f"类别：{KINDS[query.kind]}", search_url(query, kind=None)))
    if query.published_from or query.published_to:
        span = f"{query.published_from or '…'} 至 {query.published_to or '…'}"
        chips.append((f"发布日期：{span}", search_url(query, published_from=None, published_to=None)))
    return chips
