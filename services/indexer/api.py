"""The search API (GET /v1/search, JSON) and search page (GET /search, HTML).

Both take the same parameters through one dependency and ask the index the same way, so
the page and the API can never disagree.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from .index import SearchHit, SearchIndex, SearchQuery, SearchResults

MAX_QUERY_CHARS = 500
MAX_PAGE = 1000
DEFAULT_PER_PAGE = 20


def search_query(
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="搜索词；空格分隔的词须全部出现")] = "",
    # An empty value means "any": the search form submits its empty inputs.
    region: Annotated[str | None, Query(pattern=r"^([0-9A-Z]{2,12})?$", description="区划代码，含其下级区划")] = None,
    domain: Annotated[str | None, Query(pattern=r"^(D\d{2})?$", description="领域代码，如 D14")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = DEFAULT_PER_PAGE,
) -> SearchQuery:
    return SearchQuery(q=q.strip(), region=region or None, domain=domain or None, page=page, per_page=per_page)


Params = Annotated[SearchQuery, Depends(search_query)]


def build_router(index: SearchIndex, templates: Jinja2Templates) -> APIRouter:
    router = APIRouter(tags=["search"])

    def run(query: SearchQuery) -> SearchResults:
        return index.search(query)

    # Plain `def`: the index is blocking (SQLite), so FastAPI runs these in its thread pool.
    @router.get("/v1/search")
    def search_json(query: Params) -> dict[str, Any]:
        results = run(query)
        return {"total": results.total, "page": results.page, "per_page": results.per_page, "hits": [hit_json(hit) for hit in results.hits]}

    @router.get("/search", response_class=HTMLResponse)
    def search_page(request: Request, query: Params):
        searched = bool(query.q or query.region or query.domain)
        results = run(query) if searched else SearchResults(total=0, hits=[], page=query.page, per_page=query.per_page)
        pages = min(MAX_PAGE, -(-results.total // query.per_page))
        return templates.TemplateResponse(
            request,
            "search/search.html",
            {
                "query": query,
                "searched": searched,
                "results": results,
                "pages": pages,
                "prev_url": page_url(query, query.page - 1) if query.page > 1 else None,
                "next_url": page_url(query, query.page + 1) if query.page < pages else None,
            },
        )

    return router


def hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        "publication_id": hit.publication_id,
        "version": hit.version,
        "title": hit.title,
        "summary": hit.summary,
        "snippet": hit.snippet,
        "published_at": hit.published_at.isoformat(),
        "placements": hit.placements,
        "index_number": hit.index_number,
        "kind": hit.kind,
    }


def page_url(query: SearchQuery, page: int) -> str:
    params = {"q": query.q, "region": query.region, "domain": query.domain, "page": page}
    if query.per_page != DEFAULT_PER_PAGE:
        params["per_page"] = query.per_page
    return "/search?" + urlencode({k: v for k, v in params.items() if v})
