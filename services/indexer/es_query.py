"""SearchQuery → Elasticsearch request body, and the response → SearchResults. Pure functions.

User text never reaches a query parser: it is cut into words (runs of letters/digits;
punctuation, quotes, operators and emoji only separate words) and each word becomes a
phrase query (`multi_match` of type phrase) on the `.chars` subfields, so `"`, `AND`,
`title:*` or `(` are searched as text or ignored, and nothing the user types can make
Elasticsearch answer 400.
"""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import datetime, time, timedelta, timezone
from typing import Any

from .es_mapping import REGION_LEVELS
from .index import SearchHit, SearchQuery, SearchResults
from .tokenize import snippet

# Every word must occur (as a phrase of characters) in one of these; a title match counts most.
PHRASE_FIELDS = ["title.chars^4", "summary.chars^2", "attachment_names.chars^1.5", "body_text.chars", "publishing_body.chars", "index_number.text^4"]
# Ranking by words of the configured Chinese analyzer.
WORD_FIELDS = ["title^3", "summary^1.5", "attachment_names^1.5", "body_text", "publishing_body"]
# An exact 索引号 outranks any text match.
INDEX_NUMBER_BOOST = 20

# Bounds that keep a long query cheap and under Elasticsearch's clause limit; a query
# longer than this still requires its first MAX_WORDS words.
MAX_WORDS = 32
MAX_RANKING_CHARS = 100
# Elasticsearch's index.max_result_window: from + size beyond it is a 400.
MAX_WINDOW = 10_000

DOMAIN_FACET_SIZE = 100  # 32 domains today
REGION_FACET_SIZE = 5_000  # ~2,978 county-level units in the country

SOURCE_EXCLUDES = ["body_text", "attachment_names", "placement_keys"]
SNIPPET_CHARS = 120

_WORD = re.compile(r"[^\W_]+")
_UTC = timezone.utc  # published_from/to are UTC dates (see SearchQuery)


def words_of(user_query: str) -> list[str]:
    """The distinct words of a query, folded as the index folds them (NFKC, lower case)."""
    folded = unicodedata.normalize("NFKC", user_query).lower()
    words: list[str] = []
    for word in _WORD.findall(folded):
        if word not in words:
            words.append(word)
    return words[:MAX_WORDS]


def search_body(query: SearchQuery) -> dict[str, Any]:
    words = words_of(query.q)
    must: list[dict[str, Any]] = [{"multi_match": {"query": word, "type": "phrase", "fields": PHRASE_FIELDS}} for word in words]
    should: list[dict[str, Any]] = []
    if words:
        should = [
            {"multi_match": {"query": " ".join(words)[:MAX_RANKING_CHARS], "type": "best_fields", "fields": WORD_FIELDS}},
            {"term": {"index_number": {"value": query.q.strip(), "boost": INDEX_NUMBER_BOOST}}},
        ]
    filters: list[dict[str, Any]] = [{"term": {"status": "published"}}]
    if query.kind:
        filters.append({"term": {"kind": query.kind}})
    published = _published_range(query)
    if published:
        filters.append({"range": {"published_at": published}})

    placement = placement_clauses(query)
    if placement and not query.facets:
        filters.append(_nested(list(placement.values())))
    boolean: dict[str, Any] = {"filter": filters}
    if must:
        boolean["must"] = must
    if should:
        boolean["should"] = should

    offset = query.offset
    size = query.per_page if offset + query.per_page <= MAX_WINDOW else 0
    body: dict[str, Any] = {
        "query": {"bool": boolean},
        "from": offset if size else 0,
        "size": size,
        "track_total_hits": True,
        "sort": _sort(query),
        "_source": {"excludes": SOURCE_EXCLUDES},
    }
    if query.facets:
        # Facets count the query without the facet's own filter (pick a domain, still see
        # the others' counts); the hits get every filter through post_filter.
        if placement:
            body["post_filter"] = _nested(list(placement.values()))
        body["aggs"] = {
            "domain": _facet("domain", {k: v for k, v in placement.items() if k != "domain"}, DOMAIN_FACET_SIZE),
            "region": _facet("county", {k: v for k, v in placement.items() if k != "region"}, REGION_FACET_SIZE),
        }
    if words and size:
        body["highlight"] = {
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
            "encoder": "html",
            "fields": {
                "title.chars": {"number_of_fragments": 0},
                "body_text.chars": {"fragment_size": SNIPPET_CHARS, "number_of_fragments": 1},
                "summary.chars": {"fragment_size": SNIPPET_CHARS, "number_of_fragments": 1},
            },
        }
    return body


def placement_clauses(query: SearchQuery) -> dict[str, dict[str, Any]]:
    """Filters that must hold for one and the same placement, by facet name."""
    clauses: dict[str, dict[str, Any]] = {}
    if query.region:
        if len(query.region) in REGION_LEVELS:
            clauses["region"] = {"term": {"placement_keys.region_path": query.region}}
        else:  # not a code length we keep ancestors for: a prefix still finds what is below it
            clauses["region"] = {"prefix": {"placement_keys.region_code": query.region}}
    if query.domain:
        clauses["domain"] = {"term": {"placement_keys.domain": query.domain}}
    if query.level1:
        clauses["level1"] = {"term": {"placement_keys.level1": query.level1}}
    if query.level2:
        clauses["level2"] = {"term": {"placement_keys.level2": query.level2}}
    return clauses


def _nested(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nested": {"path": "placement_keys", "query": {"bool": {"filter": clauses}}}}


def _facet(key: str, clauses: dict[str, dict[str, Any]], size: int) -> dict[str, Any]:
    """Documents per value of placement_keys.<key>, counting only placements that match the
    other placement filters, each document once per value (reverse_nested)."""
    values = {"terms": {"field": f"placement_keys.{key}", "size": size}, "aggs": {"documents": {"reverse_nested": {}}}}
    matching = {"bool": {"filter": list(clauses.values())}} if clauses else {"match_all": {}}
    return {"nested": {"path": "placement_keys"}, "aggs": {"matching": {"filter": matching, "aggs": {"values": values}}}}


def _published_range(query: SearchQuery) -> dict[str, str]:
    bounds: dict[str, str] = {}
    if query.published_from:
        bounds["gte"] = datetime.combine(query.published_from, time.min, _UTC).isoformat()
    if query.published_to:
        # Inclusive date: everything before the next day's midnight.
        bounds["lt"] = datetime.combine(query.published_to + timedelta(days=1), time.min, _UTC).isoformat()
    return bounds


def _sort(query: SearchQuery) -> list[dict[str, Any]]:
    # publication_id last: equal documents keep one order from page to page.
    newest = [{"published_at": {"order": "desc"}}, {"publication_id": {"order": "asc"}}]
    if query.sort == "date" or not words_of(query.q):
        return newest
    return [{"_score": {"order": "desc"}}, *newest]


# --- the response ---------------------------------------------------------------------------


def results_of(query: SearchQuery, response: dict[str, Any]) -> SearchResults:
    hits = [hit_of_response(raw, query.q) for raw in response["hits"]["hits"]]
    facets: dict[str, dict[str, int]] = {}
    aggregations = response.get("aggregations")
    if query.facets and aggregations:
        facets = {name: _buckets(aggregations[name]) for name in ("domain", "region")}
    return SearchResults(total=response["hits"]["total"]["value"], hits=hits, page=query.page, per_page=query.per_page, facets=facets)


def _buckets(aggregation: dict[str, Any]) -> dict[str, int]:
    return {bucket["key"]: bucket["documents"]["doc_count"] for bucket in aggregation["matching"]["values"]["buckets"]}


def hit_of_response(raw: dict[str, Any], user_query: str) -> SearchHit:
    source = raw["_source"]
    highlight = raw.get("highlight", {})
    title = source["title"]
    summary = source.get("summary")
    return SearchHit(
        publication_id=source["publication_id"],
        version=source["version"],
        title=title,
        title_html=_highlighted(highlight, "title.chars") or html.escape(title),
        summary=summary,
        snippet=_snippet(highlight, source, user_query),
        published_at=datetime.fromisoformat(source["published_at"]),
        placements=source["placements"],
        index_number=source["index_number"],
        kind=source["kind"],
    )


def _highlighted(highlight: dict[str, list[str]], field: str) -> str | None:
    """The fragment Elasticsearch marked (HTML-escaped by encoder=html), with the marks of
    neighbouring characters joined: <mark>低</mark><mark>保</mark> → <mark>低保</mark>."""
    fragments = highlight.get(field)
    if not fragments or "<mark>" not in fragments[0]:
        return None
    # Only marks that touch are joined; marks separated by text or spaces stay apart.
    return fragments[0].replace("</mark><mark>", "")


def _snippet(highlight: dict[str, list[str]], source: dict[str, Any], user_query: str) -> str:
    for field in ("body_text.chars", "summary.chars"):
        fragment = _highlighted(highlight, field)
        if fragment:
            return fragment
    # No marked fragment (no query, or only the title matched): the same snippet every
    # backend makes, from the start of the body kept in _source.
    return snippet([source.get("lead") or "", source.get("summary") or "", source["title"]], user_query, SNIPPET_CHARS)
