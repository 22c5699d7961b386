"""The search port: what the search page and the indexer consumer need from a search backend.

Every adapter (embedded tantivy, in-memory fake, Elasticsearch) passes the same contract
tests (tests/unit/test_search_index_contract.py, and the projection contract in
tests/unit/common/). The helpers below are shared by
the adapters so they keep, rank and render documents the same way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from contracts.events import PublicationData
from services.common.projection import Projection, PublicationEvent

from .tokenize import highlight, plain_text, snippet

Event = PublicationEvent


SORTS = ("relevance", "date")


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    region: str | None = None  # a region code; matches it and every region below it
    domain: str | None = None  # a domain code such as D14
    level1: str | None = None  # a level-1 item id such as D14-02
    level2: str | None = None  # a level-2 item id such as D14-02-03
    kind: str | None = None  # "info" | "service"
    published_from: date | None = None  # inclusive, by published_at (UTC date)
    published_to: date | None = None  # inclusive
    sort: str = "relevance"  # "relevance" (title above body, newest first among equals) | "date"
    page: int = 1
    per_page: int = 20
    facets: bool = True  # counts per domain and per region for the query without those filters' own facet

    def __post_init__(self) -> None:
        if self.page < 1 or self.per_page < 1:
            raise ValueError("page and per_page start at 1")
        if self.sort not in SORTS:
            raise ValueError(f"sort is one of {SORTS}")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class SearchHit:
    publication_id: str
    version: int
    title: str  # plain text
    title_html: str  # safe HTML: escaped, query words in <mark>
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
    # facet name ("domain" | "region") → value → count, for the current query and filters.
    # "region" counts county-level units (6-digit codes, or 4301GX-style ones); a township
    # counts towards its county.
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


class SearchIndex(Projection[Event]):
    """A Projection (services/common/projection.py): idempotent by version, a withdrawal
    leaves a tombstone version, so a late older publish cannot revive it.

    Async, because the production adapter (Elasticsearch) is; blocking adapters run their
    work in a thread."""

    @abstractmethod
    async def create(self) -> None:
        """Set up the schema (or index template and alias); safe to call again."""

    @abstractmethod
    async def apply(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        """Apply a batch durably; within it the highest version wins. Returns the events the
        backend refused for good (e.g. a mapping error) with the reason, for the DLQ;
        transient trouble raises (the consumer retries with backoff)."""

    @abstractmethod
    async def search(self, query: SearchQuery) -> SearchResults: ...

    @abstractmethod
    async def version_of(self, publication_id: str) -> int | None:
        """The stored version, tombstones included; None if never seen."""

    @abstractmethod
    async def count(self) -> int:
        """Live (searchable) documents."""

    @abstractmethod
    async def healthy(self) -> bool: ...

    async def close(self) -> None:  # noqa: B027 — optional: most adapters hold nothing to release
        """Release connections."""


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
    """(title, body) as indexed: the body also carries summary, publishing body, 索引号 and the
    attachments' names (`attachment_names`, when the adapter keeps them)."""
    extra = " ".join(document.get("attachment_names") or ())
    body = " ".join(filter(None, [document["summary"], document["body_text"], document["publishing_body"], document["index_number"], extra]))
    return document["title"], body


def hit_of(publication_id: str, version: int, document: dict[str, Any], user_query: str) -> SearchHit:
    return SearchHit(
        publication_id=publication_id,
        version=version,
        title=document["title"],
        title_html=highlight(document["title"], user_query),
        summary=document["summary"],
        snippet=snippet([document["body_text"], document["summary"] or "", " ".join(document.get("attachment_names") or ()), document["title"]], user_query),
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


# --- filters and facets, the same on every backend ----------------------------------------------
#
# Region, domain, level-1 and level-2 filters must all hold for one and the same placement
# (a document filed twice is found by either filing, never by half of each). A facet counts
# the documents that match the query and every filter except the facet's own, once per value,
# counting only the placements that satisfy the other placement filters: picking a value
# gives exactly the count shown. "region" counts county-level units (county_of).

COUNTY_LENGTH = 6
FACETS = ("domain", "region")


@dataclass(frozen=True)
class PlacementKey:
    """The codes of one placement that filters and facets look at."""

    region_code: str
    domain: str
    level1: str
    level2: str


def placement_keys(data: PublicationData) -> list[PlacementKey]:
    return [PlacementKey(p.region_code, p.domain_code, p.level1_id, p.level2_id) for p in data.placements]


def county_of(region_code: str) -> str | None:
    """The county-level unit a region counts towards in the region facet (a township towards
    its county; 4301GX-style codes are county-level); None above county level."""
    return region_code[:COUNTY_LENGTH] if len(region_code) >= COUNTY_LENGTH else None


def key_matches(key: PlacementKey, query: SearchQuery, *, ignoring: str | None = None) -> bool:
    """Whether one placement satisfies the query's placement filters, leaving out one facet's own."""
    return (
        (query.region is None or ignoring == "region" or key.region_code.startswith(query.region))
        and (query.domain is None or ignoring == "domain" or key.domain == query.domain)
        and (query.level1 is None or key.level1 == query.level1)
        and (query.level2 is None or key.level2 == query.level2)
    )


def facet_value(key: PlacementKey, facet: str) -> str | None:
    return key.domain if facet == "domain" else county_of(key.region_code)


def published_within(published_at: datetime, query: SearchQuery) -> bool:
    day = as_utc(published_at).date()
    return (query.published_from is None or day >= query.published_from) and (query.published_to is None or day <= query.published_to)
