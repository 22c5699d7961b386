"""Searching the embedded backend's text index: a SearchQuery as one tantivy query, ranked,
paged, and counted per facet."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from typing import Any

import tantivy

from .index import SearchQuery, SearchResults, hit_of
from .text_index import REGION_LEVELS, SCHEMA
from .tokenize import is_single_char, normalise, query_phrases

# A title match outweighs a body match (bm25 per field, title scores multiplied).
TITLE_BOOST = 5.0
# An exact 索引号 outranks any text match.
INDEX_NUMBER_BOOST = 1000.0
# Exact ties fetched beyond the page to order them (a pathological pile of identical documents
# beyond this keeps tantivy's order).
MAX_TIE_FETCH = 5_000
_UTC = timezone.utc
_FACET_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search-facets")


class _Nothing(Exception):
    """The filters contradict each other (e.g. a level-1 item outside the domain): no hit."""


def _item_filter(domain: str | None, level1: str | None, level2: str | None) -> str | None:
    """The most specific catalog filter, if the others agree with it."""
    item = None
    for code in (domain, level1, level2):
        if code is None:
            continue
        if item is not None and not code.startswith(item + "-"):
            raise _Nothing
        item = code
    return item


class TextSearch:
    def __init__(self, searcher: tantivy.Searcher, query: SearchQuery) -> None:
        self.searcher = searcher
        self.query = query
        self.phrases = query_phrases(query.q)

    def results(self) -> SearchResults:
        query = self.query
        facets: dict[str, dict[str, int]] = {"domain": {}, "region": {}} if query.facets else {}
        empty = SearchResults(total=0, page=query.page, per_page=query.per_page, facets=facets)
        if query.q.strip() and not self.phrases:
            return empty  # only punctuation, emoji …: nothing can match
        try:
            compiled = self.compile()
        except _Nothing:
            return empty
        # The facets' passes run beside the hits' (tantivy searches without holding the GIL):
        # a facet ignores its own filter, so its pass can cost as much as the search itself.
        pending = {name: _FACET_POOL.submit(job) for name, job in self.facet_jobs().items()} if query.facets else {}
        if not self.phrases or query.sort == "date":
            found = self.searcher.search(compiled, limit=query.per_page, count=True, order_by_field="rank", offset=query.offset, order=tantivy.Order.Desc)
            total, addresses = count_of(found), [address for _, address in found.hits]
        else:
            total, addresses = self.by_relevance(compiled)
        hits = []
        for address in addresses:
            stored = stored_document(self.searcher, address)
            hits.append(hit_of(stored["publication_id"], stored["version"], stored, query.q))
        for future in pending.values():
            facets.update(future.result())
        return SearchResults(total=total, hits=hits, page=query.page, per_page=query.per_page, facets=facets)

    def by_relevance(self, compiled: tantivy.Query) -> tuple[int, list]:
        """Best score first, the newer of nearly equal scores first, then the ledger id.

        BM25 gives many documents the very same score (same term frequency, same length
        bucket), so recency is folded into the score (`weight_by_field`, at most FRESHNESS
        apart over a century: about a day's difference still separates two scores) and the
        top documents come from tantivy in that order. Exact ties that remain at the page's
        end are fetched whole and ordered by `rank`, since tantivy orders them by address,
        which merges change."""
        need = self.query.offset + self.query.per_page
        limit = need + 1
        while True:
            found = self.searcher.search(compiled, limit=limit, count=True, weight_by_field="fresh")
            hits = found.hits
            if len(hits) < limit or hits[-1][0] < hits[need - 1][0] or limit > need + MAX_TIE_FETCH:
                break
            limit = need + 4 * (limit - need)
        ranks = self.searcher.fast_field_values("rank", [address for _, address in hits])
        ordered = sorted(zip(hits, ranks, strict=True), key=lambda pair: (-pair[0][0], -(pair[1] or 0)))
        return count_of(found), [address for (_, address), _ in ordered[self.query.offset : need]]

    def compile(self, *, ignoring: str | None = None) -> tantivy.Query:
        """The query's text and filters as one tantivy query, leaving out one facet's filter."""
        query = self.query
        must: list[tuple[tantivy.Occur, tantivy.Query]] = []
        should: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for phrase in self.phrases:
            must.append((tantivy.Occur.Must, _phrase_query(phrase, "text")))
            # A title match adds its own score: title above body.
            should.append((tantivy.Occur.Should, tantivy.Query.boost_query(_phrase_query(phrase, "title"), TITLE_BOOST)))
        if self.phrases:
            should.append((tantivy.Occur.Should, tantivy.Query.boost_query(_term("ixn", normalise(query.q.strip())), INDEX_NUMBER_BOOST)))
        filters = []
        if query.kind is not None:
            filters.append(_term("kind", query.kind))
        if query.published_from is not None or query.published_to is not None:
            lower = int(datetime.combine(query.published_from, time.min, _UTC).timestamp()) if query.published_from else None
            upper = int(datetime.combine(query.published_to + timedelta(days=1), time.min, _UTC).timestamp()) if query.published_to else None
            filters.append(tantivy.Query.range_query(SCHEMA, "published", tantivy.FieldType.Integer, lower, upper, True, upper is None))
        placement = self.placement_filter(ignoring)
        if placement is not None:
            filters.append(placement)
        must += [(tantivy.Occur.Must, tantivy.Query.const_score_query(f, 0.0)) for f in filters]
        if not must:
            return tantivy.Query.all_query()
        return tantivy.Query.boolean_query(must + should)

    def placement_filter(self, ignoring: str | None) -> tantivy.Query | None:
        query = self.query
        region = None if ignoring == "region" else query.region
        item = _item_filter(None if ignoring == "domain" else query.domain, query.level1, query.level2)
        if region is None and item is None:
            return None
        if region is None or len(region) in REGION_LEVELS:
            return _term("pl", f"{region or ''}|{item or ''}")
        # Not a code length we keep ancestors for: any region code that starts with it.
        return tantivy.Query.regex_query(SCHEMA, "pl", f"{re.escape(region)}[0-9A-Z]*\\|{re.escape(item or '')}")

    def facet_jobs(self) -> dict[str, Callable[[], dict[str, dict[str, int]]]]:
        """How to count per domain and per county-level region, each without its own filter.

        A terms aggregation per facet, over the field that fits the other filter: `fd` and
        `fcounty` hold each document's domains and counties; when the other facet's filter is
        set, `fdr` ("<region or ancestor>|<domain>") and `fci` ("<county>|<item>") hold the
        same per placement, so only placements that satisfy that filter are counted. Each
        extra key per document costs aggregation time, hence four fields, not one."""
        query = self.query
        item = _item_filter(query.domain, query.level1, query.level2)
        if query.level1 or query.level2 or (query.region is not None and len(query.region) not in REGION_LEVELS):
            domain_spec = None
        elif query.region is None:
            domain_spec = _terms("fd", 200)
        else:
            domain_spec = _terms("fdr", 200, f"{re.escape(query.region)}\\|.*")
        region_spec = _terms("fcounty", 10_000) if item is None else _terms("fci", 10_000, f"[0-9A-Z]+\\|{re.escape(item)}")

        def regions(answer: dict) -> dict[str, dict[str, int]]:
            return {"region": {bucket["key"].split("|", 1)[0]: bucket["doc_count"] for bucket in answer["region"]["buckets"]}}

        def domains(answer: dict) -> dict[str, dict[str, int]]:
            return {"domain": {bucket["key"].rsplit("|", 1)[-1]: bucket["doc_count"] for bucket in answer["domain"]["buckets"]}}

        if domain_spec is not None and query.domain is None and query.region is None:
            # Neither facet has a filter of its own: one pass counts both.
            def both() -> dict[str, dict[str, int]]:
                answer = self.searcher.aggregate(self.compile(), {"domain": domain_spec, "region": region_spec})
                return regions(answer) | domains(answer)

            return {"both": both}
        jobs = {"region": lambda: regions(self.searcher.aggregate(self.compile(ignoring="region"), {"region": region_spec}))}
        if domain_spec is None:
            jobs["domain"] = lambda: {"domain": self.domain_facet_by_counting()}
        else:
            jobs["domain"] = lambda: domains(self.searcher.aggregate(self.compile(ignoring="domain"), {"domain": domain_spec}))
        return jobs

    def domain_facet_by_counting(self) -> dict[str, int]:
        """The shapes the facet keys do not cover (a level-1/2 filter, which leaves one domain
        possible; an odd-length region code): count each domain that can still occur."""
        query = self.query
        item = query.level2 or query.level1
        candidates = [item[:3]] if item else [f"D{n:02d}" for n in range(1, 100)]
        counts = {}
        for domain in candidates:
            try:
                compiled = TextSearch(self.searcher, replace(query, domain=domain)).compile()
            except _Nothing:
                continue
            total = count_of(self.searcher.search(compiled, limit=1, count=True))
            if total:
                counts[domain] = total
        return counts


def _terms(field: str, size: int, include: str | None = None) -> dict:
    spec: dict[str, Any] = {"field": field, "size": size, "segment_size": size}
    if include is not None:
        spec["include"] = include
    return {"terms": spec}


def _term(field: str, value: str) -> tantivy.Query:
    return tantivy.Query.term_query(SCHEMA, field, value)


def _phrase_query(phrase: tuple[str, ...], field: str) -> tantivy.Query:
    """One part of the query, as the field must contain it."""
    if is_single_char(phrase):
        # The character alone, or inside any bigram (a constant score).
        char = phrase[0]
        alone = tantivy.Query.term_query(SCHEMA, field, char, index_option="freq")
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, alone), (tantivy.Occur.Should, tantivy.Query.regex_query(SCHEMA, field, f"{char}.|.{char}"))]
        )
    if len(phrase) == 1:
        return tantivy.Query.term_query(SCHEMA, field, phrase[0], index_option="freq")
    return tantivy.Query.phrase_query(SCHEMA, field, list(phrase))


def count_of(found: tantivy.SearchResult) -> int:
    """The number of matches a search with count=True returns."""
    count: int = found.count  # type: ignore[attr-defined]  # tantivy's stub leaves out the count it has
    return count


def stored_document(searcher: tantivy.Searcher, address: tantivy.DocAddress) -> dict[str, Any]:
    """What a hit renders, as text_index.text_document stored it."""
    raw = searcher.doc(address).get_first("doc")
    if raw is None:
        raise LookupError(f"a document without its stored fields at {address}")
    document: dict[str, Any] = json.loads(raw)
    return document
