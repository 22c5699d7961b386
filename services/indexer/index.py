"""The search port: what the search page and the indexer consumer need from a search backend.

Every adapter (embedded SQLite FTS5, in-memory fake, later Elasticsearch) passes the same
contract tests (tests/unit/test_search_index_contract.py). The helpers below are shared by
the adapters so they keep, rank and render documents the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from contracts.events import PublicationData, PublishedEvent, WithdrawnEvent

from .tokenize import plain_text, snippet

Event = PublishedEvent | WithdrawnEvent


@dataclass(frozen=True)
class SearchQuery:
    q: str
    region: str | None = None  # a region code; matches it and every region below it
    domain: str | None = None  # a domain code such as D14
    page: int = 1
    per_page: int = 20

    def __post_init__(self) -> None:
        if self.page < 1 or self.per_page < 1:
            raise ValueError("page and per_page start at 1")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class SearchHit:
    publication_id: str
    version: int
    title: str
    summary: str | None
    snippet: str  # safe HTML: text escaped, query words in <mark>
    published_at: datetime
    placements: list[dict[str, str]]
    index_number: str
    kind: str


@dataclass(frozen=True)
class SearchResults:
    total: int
    hits: list[SearchHit] = field(default_factory=list)
    page: int = 1
    per_page: int = 20


class SearchIndex(ABC):
    """Idempotent by version: an event applies only if its version is greater than the stored
    one; a withdrawal leaves a tombstone version, so a late older publish cannot revive it."""

    @abstractmethod
    def create(self) -> None:
        """Set up the schema; safe to call again."""

    @abstractmethod
    def apply(self, events: Sequence[Event]) -> None:
        """Apply a batch durably (all or nothing); within it the highest version wins."""

    @abstractmethod
    def search(self, query: SearchQuery) -> SearchResults:
        """Best match first (title above body), newest first among equals; an empty `q` lists
        the newest documents."""

    @abstractmethod
    def version_of(self, publication_id: str) -> int | None:
        """The stored version, tombstones included; None if never seen."""

    @abstractmethod
    def count(self) -> int:
        """Live (searchable) documents."""

    @abstractmethod
    def healthy(self) -> bool: ...


def newest_per_publication(events: Sequence[Event]) -> dict[str, Event]:
    newest: dict[str, Event] = {}
    for event in events:
        current = newest.get(event.data.publication_id)
        if current is None or event.data.version > current.data.version:
            newest[event.data.publication_id] = event
    return newest


def document_of(data: PublicationData) -> dict[str, Any]:
    """What an index keeps of a publication (JSON-ready): enough to match it and render a hit."""
    return {
        "title": data.title,
        "summary": data.summary,
        "body_text": plain_text(data.body_html),
        "publishing_body": data.publishing_body,
        "index_number": data.index_number,
        "kind": data.kind,
        "published_at": as_utc(data.published_at).isoformat(),
        "placements": [
            {
                "region_code": p.region_code,
                "region_name": p.region_name,
                "domain_code": p.domain_code,
                "domain_name": p.domain_name,
                "level1_name": p.level1_name,
                "level2_name": p.level2_name,
            }
            for p in data.placements
        ],
    }


def searchable_text(document: dict[str, Any]) -> tuple[str, str]:
    """(title, body) as indexed: the body column also carries summary, body and 索引号."""
    body = " ".join(filter(None, [document["summary"], document["body_text"], document["publishing_body"], document["index_number"]]))
    return document["title"], body


def hit_of(publication_id: str, version: int, document: dict[str, Any], user_query: str) -> SearchHit:
    return SearchHit(
        publication_id=publication_id,
        version=version,
        title=document["title"],
        summary=document["summary"],
        snippet=snippet([document["body_text"], document["summary"] or "", document["title"]], user_query),
        published_at=datetime.fromisoformat(document["published_at"]),
        placements=document["placements"],
        index_number=document["index_number"],
        kind=document["kind"],
    )


def as_utc(moment: datetime) -> datetime:
    # Events should carry aware times; a naive one is taken as UTC rather than local time.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def placement_matches(placement: dict[str, str], region: str | None, domain: str | None) -> bool:
    """A county code covers its townships (their codes start with it), a city its counties."""
    return (region is None or placement["region_code"].startswith(region)) and (domain is None or placement["domain_code"] == domain)
