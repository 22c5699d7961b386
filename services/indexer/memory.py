"""An in-memory SearchIndex: a fake for unit tests of code that depends on the port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.events import PublishedEvent

from .index import (
    Event,
    SearchIndex,
    SearchQuery,
    SearchResults,
    document_of,
    hit_of,
    newest_per_publication,
    placement_matches,
    searchable_text,
)
from .tokenize import matches, query_phrases


@dataclass
class _Entry:
    version: int
    document: dict[str, Any] | None  # None: a withdrawal tombstone


class InMemorySearchIndex(SearchIndex):
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def create(self) -> None:
        pass

    def apply(self, events: Sequence[Event]) -> None:
        for publication_id, event in newest_per_publication(events).items():
            stored = self._entries.get(publication_id)
            if stored is not None and stored.version >= event.data.version:
                continue
            document = document_of(event.data) if isinstance(event, PublishedEvent) else None
            self._entries[publication_id] = _Entry(event.data.version, document)

    def search(self, query: SearchQuery) -> SearchResults:
        phrases = query_phrases(query.q)
        if query.q.strip() and not phrases:
            return SearchResults(total=0, hits=[], page=query.page, per_page=query.per_page)
        found = []
        for publication_id, entry in self._entries.items():
            document = entry.document
            if document is None or not any(placement_matches(p, query.region, query.domain) for p in document["placements"]):
                continue
            title, body = searchable_text(document)
            if phrases and not matches(phrases, title, body):
                continue
            # Title matches first (as bm25 with a heavy title weight does), then newest.
            in_title = bool(phrases) and matches(phrases, title)
            newest_first = -datetime.fromisoformat(document["published_at"]).timestamp()
            found.append((not in_title, newest_first, publication_id, entry))
        found.sort(key=lambda row: row[:3])
        page = found[query.offset : query.offset + query.per_page]
        hits = [hit_of(pid, entry.version, entry.document, query.q) for _, _, pid, entry in page]
        return SearchResults(total=len(found), hits=hits, page=query.page, per_page=query.per_page)

    def version_of(self, publication_id: str) -> int | None:
        entry = self._entries.get(publication_id)
        return entry.version if entry else None

    def count(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.document is not None)

    def healthy(self) -> bool:
        return True

