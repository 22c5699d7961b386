"""The embedded search backend's text index: its tantivy schema, and the document it keeps of a
publication (terms, filter and facet keys, what a hit renders)."""

from __future__ import annotations

import tantivy
from pydantic_core import to_json

from contracts.events import PublishedEvent

from .index import as_utc, county_of, document_of, placement_keys, searchable_text
from .tokenize import index_terms, normalise

# Bump when the text index's fields or terms change: an index of another layout is rebuilt.
LAYOUT = "tongyuan-search-6"
# Region code lengths: province, city, county (or 4301GX-style), township, village.
REGION_LEVELS = (2, 4, 6, 9, 12)
# Recency's weight in relevance: scores are multiplied by log2(2 + fresh), fresh growing
# linearly from 0 (2000-01-01) to FRESHNESS (2100-01-01), i.e. by 1 to ~1.007.
FRESHNESS = 0.01
_FRESH_FROM, _FRESH_SPAN = 946_684_800, 3_155_760_000
# Date order and ties: published second, then the ledger id (unique below 2**24 documents).
ID_BITS = 24
TERMS = "tongyuan_terms"


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    # `text` is title and body (what must match: one field, so the required parts intersect
    # as plain phrase scorers, which seek; a union of fields would be read through); `title`
    # again on its own, for the title's extra weight.
    for name in ("title", "text"):
        builder.add_text_field(name, tokenizer_name=TERMS, index_option="position")
    builder.add_text_field("pid", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("ixn", tokenizer_name="raw", index_option="basic")  # the folded 索引号
    builder.add_text_field("kind", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("pl", tokenizer_name="raw", index_option="basic")  # placement filter keys
    # Facet keys (see _Search.facets): domains, counties, and both scoped by the other filter.
    for name in ("fd", "fcounty", "fdr", "fci"):
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic", fast=True)
    builder.add_integer_field("published", indexed=True, fast=True)  # epoch seconds
    builder.add_integer_field("rank", fast=True)  # published << 24 | ledger id
    builder.add_float_field("fresh", fast=True)  # recency's weight in relevance
    builder.add_bytes_field("doc", stored=True)  # JSON: what a hit renders
    return builder.build()


SCHEMA = _schema()


def ranked(document: tantivy.Document, published: int, ledger_id: int) -> tantivy.Document:
    """The document with its rank (the date order and tie-breaker), known once it has a ledger id."""
    document.add_integer("rank", (published << ID_BITS) | (ledger_id & ((1 << ID_BITS) - 1)))
    return document


def region_path(code: str) -> list[str]:
    """The code and every ancestor: 430102001 → 43, 4301, 430102, 430102001."""
    return [code[:size] for size in REGION_LEVELS if size < len(code)] + [code]


def text_document(event: PublishedEvent) -> tuple[tantivy.Document, int]:
    """The document to index, but its rank (see _write_rows), and its publish time."""
    data = event.data
    document = {**document_of(data), "attachment_names": [attachment.name for attachment in data.attachments]}
    title, body = searchable_text(document)
    title_terms = index_terms(title)
    published = int(as_utc(data.published_at).timestamp())
    filters: set[str] = set()
    domains: set[str] = set()
    counties: set[str] = set()
    domains_by_region: set[str] = set()
    counties_by_item: set[str] = set()
    for key in placement_keys(data):
        items = ("", key.domain, key.level1, key.level2)
        path = region_path(key.region_code)
        for region in ("", *path):
            filters.update(f"{region}|{item}" for item in items)
        domains.add(key.domain)
        domains_by_region.update(f"{region}|{key.domain}" for region in path)
        county = county_of(key.region_code)
        if county is not None:
            counties.add(county)
            counties_by_item.update(f"{county}|{item}" for item in items[1:])
    filters.discard("|")
    indexed = tantivy.Document(
        title=title_terms,
        # "|" is never a query term, so no phrase runs from the title into the body.
        text=f"{title_terms} | {index_terms(body)}",
        pid=data.publication_id,
        ixn=normalise(data.index_number),
        kind=data.kind,
        pl=sorted(filters),
        fd=sorted(domains),
        fcounty=sorted(counties),
        fdr=sorted(domains_by_region),
        fci=sorted(counties_by_item),
        published=published,
        fresh=min(max(published - _FRESH_FROM, 0), _FRESH_SPAN) / _FRESH_SPAN * FRESHNESS,
        # pydantic_core's encoder: the same JSON as json.dumps, in a third less time.
        doc=to_json({"publication_id": data.publication_id, "version": data.version, **document}),
    )
    return indexed, published
