"""An in-memory SearchIndex: a fake for unit tests of code that depends on the port, and the
plain-Python statement of the search rules every backend follows (see index.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.events import PublishedEvent
from services.common.projection import publications_to_apply

from .index import (
    FACETS,
    Event,
    PlacementKey,
    SearchIndex,
    SearchQuery,
    SearchResults,
    document_of,
    facet_value,
    hit_of,
    key_matches,
    placement_keys,
    published_within,
    searchable_text,
)
from .tokenize import matches, normalise, query_phrases


@dataclass
class _Entry:
    version: int
    document: dict[str, Any] | None = None  # None: a withdrawal tombstone
    keys: tuple[PlacementKey, ...] = ()


class InMemorySearchIndex(SearchIndex):
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    async def create(self) -> None:
        pass

    async def apply(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        held = {e.data.publication_id: self._entries[e.data.publication_id].version for e in events if e.data.publication_id in self._entries}
        for event in publications_to_apply(events, held):
            publication_id = event.data.publication_id
            if isinstance(event, PublishedEvent):
                document = {**document_of(event.data), "attachment_names": [a.name for a in event.data.attachments]}
                self._entries[publication_id] = _Entry(event.data.version, document, tuple(placement_keys(event.data)))
            else:
                self._entries[publication_id] = _Entry(event.data.version)
        return []

    async def search(self, query: SearchQuery) -> SearchResults:
        phrases = query_phrases(query.q)
        if query.q.strip() and not phrases:
            return SearchResults(total=0, page=query.page, per_page=query.per_page, facets=_no_facets(query))
        exact = normalise(query.q.strip())
        candidates = []  # every live document matching the text and the non-placement filters
        for publication_id, entry in self._entries.items():
            document = entry.document
            if document is None or (query.kind is not None and document["kind"] != query.kind):
                continue
            published_at = datetime.fromisoformat(document["published_at"])
            if not published_within(published_at, query):
                continue
            title, body = searchable_text(document)
            if phrases and not matches(phrases, title, body):
                continue
            candidates.append((publication_id, entry, title, published_at, document))
        found = []
        for publication_id, entry, title, published_at, document in candidates:
            if not any(key_matches(key, query) for key in entry.keys):
                continue
            if not phrases or query.sort == "date":
                rank: tuple = ()
            else:
                # An exact 索引号 first, then title matches (as bm25 with a heavy title weight does).
                rank = (normalise(document["index_number"]) != exact, not matches(phrases, title))
            found.append((*rank, -published_at.timestamp(), publication_id, entry))
        found.sort(key=lambda row: row[:-1])
        page = found[query.offset : query.offset + query.per_page]
        hits = [hit_of(row[-2], row[-1].version, row[-1].document, query.q) for row in page]
        facets = {}
        if query.facets:
            facets = {facet: _counts(candidates, query, facet) for facet in FACETS}
        return SearchResults(total=len(found), hits=hits, page=query.page, per_page=query.per_page, facets=facets)

    async def version_of(self, publication_id: str) -> int | None:
        entry = self._entries.get(publication_id)
        return entry.version if entry else None

    async def count(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.document is not None)

    async def healthy(self) -> bool:
        return True


def _counts(candidates: list, query: SearchQuery, facet: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for _, entry, _, _, _ in candidates:
        values = {facet_value(key, facet) for key in entry.keys if key_matches(key, query, ignoring=facet)}
        counts.update(value for value in values if value is not None)
    return dict(counts.most_common())


def _no_facets(query: SearchQuery) -> dict[str, dict[str, int]]:
    return {facet: {} for facet in FACETS} if query.facets else {}
