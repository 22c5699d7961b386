"""The production search backend: Elasticsearch 8, through the official async client.

- One alias, `<prefix>-publications`, in front of one concrete index
  `<prefix>-publications-<timestamp>` made from the index template (es_mapping.py);
  reindex.py builds a new concrete index and swaps the alias.
- Writes: `_id` = publication id, `version_type=external` with our version (never a Kafka
  offset), so Elasticsearch itself refuses a stale write with 409, whatever order events
  arrive in and however often they are replayed.
- Withdrawals are tombstone documents, not deletes: see `_action`.
- Searches and counts see `status: published` only (es_query.py).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.exceptions import GeneralAvailabilityWarning
from elasticsearch.helpers import async_streaming_bulk

from contracts.events import PublishedEvent
from services.common.projection import newest_per_publication

from .bulk_items import RETRY_STATUSES, outcome_of, reason_of
from .es_mapping import check_analyzer, copy_request, index_template, published_document, tombstone_document
from .es_query import results_of, search_body, words_of
from .index import Event, SearchIndex, SearchQuery, SearchResults

log = structlog.get_logger("tongyuan.indexer.elasticsearch")

CHUNK_SIZE = 500
CHUNK_BYTES = 10 * 1024 * 1024  # well under http.max_content_length (100 MB)
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,100}$")


class SearchBackendUnavailable(ConnectionError):
    """Elasticsearch cannot take the batch now (down, overloaded, misconfigured).

    A ConnectionError, so the consumer treats it as transient: it holds the batch, backs off
    and retries, and commits no offset until the whole batch is in."""


class ElasticsearchIndex(SearchIndex):
    def __init__(
        self,
        url: str,
        index_prefix: str = "tongyuan",
        analyzer: str = "smartcn",
        client: AsyncElasticsearch | None = None,
        *,
        refresh: bool = False,
        shards: int = 1,
        replicas: int = 1,
        bulk_retries: int = 3,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`refresh=True` makes every write searchable before apply returns (tests; costly
        in production, where the 1 s refresh interval applies). `bulk_retries` bounds the
        retries of items refused with 429/5xx within one apply (backoff doubling from
        `initial_backoff` up to `max_backoff` seconds); after that apply raises."""
        if not _PREFIX.match(index_prefix):
            raise ValueError(f"index prefix {index_prefix!r}: lower-case letters, digits, '-' and '_' only")
        self.url = url
        self.analyzer = check_analyzer(analyzer)
        self.alias = f"{index_prefix}-publications"
        self.template_name = self.alias
        self._owns_client = client is None
        # Connection errors and timeouts are retried by the transport (another node, if any);
        # statuses are left to the bulk helper, which backs off between tries.
        self.client = client if client is not None else AsyncElasticsearch(url, request_timeout=30, max_retries=3, retry_on_timeout=True)
        self._refresh = refresh
        self._shards = shards
        self._replicas = replicas
        self._bulk_retries = bulk_retries
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    # --- schema ---------------------------------------------------------------------------

    def template(self) -> dict[str, Any]:
        return index_template([f"{self.alias}-*"], self.analyzer, shards=self._shards, replicas=self._replicas)

    async def create(self) -> None:
        """Put the index template (always: it is how a new analyzer reaches the next index)
        and, if the alias does not exist yet, a first concrete index behind it."""
        await self.put_template()
        if await self.client.indices.exists_alias(name=self.alias):
            return
        try:
            await self.create_concrete_index(write_alias=True)
        except ApiError:
            # Another worker created it between our check and our create; two write indices
            # for one alias are refused by Elasticsearch, so at most one of us wins.
            if not await self.client.indices.exists_alias(name=self.alias):
                raise

    async def put_template(self) -> None:
        body = self.template()
        await self.client.indices.put_index_template(
            name=self.template_name, index_patterns=body["index_patterns"], priority=body["priority"], meta=body["_meta"], template=body["template"]
        )

    async def create_concrete_index(self, *, write_alias: bool) -> str:
        """A new concrete index, its settings and mapping from the template."""
        name = f"{self.alias}-{self._clock().strftime('%Y%m%d%H%M%S%f')}"
        if write_alias:
            await self.client.indices.create(index=name, aliases={self.alias: {"is_write_index": True}})
        else:
            await self.client.indices.create(index=name)
        return name

    async def concrete_indices(self) -> list[str]:
        """The concrete indices behind the alias (one, except mid-swap)."""
        response = await self.client.indices.get_alias(name=self.alias)
        return sorted(response.body)

    # --- what reindex.py drives -----------------------------------------------------------

    async def refresh_indices(self, names: list[str]) -> None:
        await self.client.indices.refresh(index=",".join(names))

    async def start_copy(self, source: list[str], dest: str) -> str:
        """Start `_reindex` as a task; its id."""
        body, params = copy_request(source, dest)
        started = await self.client.reindex(**body, **params)
        return started.body["task"]

    async def copy_status(self, task_id: str) -> dict[str, Any]:
        # The client flags GET _tasks as "technical preview"; the API has been stable since 5.x.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GeneralAvailabilityWarning)
            return (await self.client.tasks.get(task_id=task_id)).body

    async def swap_alias(self, old: list[str], new: str) -> None:
        """In one `_aliases` call: no request ever sees the alias on no index."""
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": self.alias}} for name in old]
        actions.append({"add": {"index": new, "alias": self.alias, "is_write_index": True}})
        await self.client.indices.update_aliases(actions=actions)

    async def delete_indices(self, names: list[str]) -> None:
        await self.client.indices.delete(index=",".join(names))

    # --- writes ---------------------------------------------------------------------------

    def _action(self, event: Event) -> dict[str, Any]:
        data = event.data
        if isinstance(event, PublishedEvent):
            source = published_document(event.data)
        else:
            # A withdrawal is indexed as a small tombstone carrying its version, not sent as
            # a delete: Elasticsearch forgets a deleted document's version after
            # index.gc_deletes (60 s by default), and a late older publish would then be
            # accepted and bring the withdrawn document back. Queries filter status=published.
            source = tombstone_document(event.data)
        return {
            "_op_type": "index",
            "_index": self.alias,
            "_id": data.publication_id,
            "version": data.version,
            "version_type": "external",
            "_source": source,
        }

    async def apply(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        newest = newest_per_publication(events)  # within a batch the highest version wins
        if not newest:
            return []
        refused: list[tuple[Event, str]] = []
        unavailable: list[str] = []
        params: dict[str, Any] = {"require_alias": True}  # never auto-create an index named like the alias
        if self._refresh:
            params["refresh"] = True
        try:
            async for _, item in async_streaming_bulk(
                self.client.options(retry_on_status=()),
                (self._action(event) for event in newest.values()),
                chunk_size=CHUNK_SIZE,
                max_chunk_bytes=CHUNK_BYTES,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=self._bulk_retries,
                initial_backoff=self._initial_backoff,
                max_backoff=self._max_backoff,
                retry_on_status=RETRY_STATUSES,
                yield_ok=False,
                **params,
            ):
                [(_, info)] = item.items()
                outcome = outcome_of(info)
                if outcome == "refused":
                    refused.append((newest[info["_id"]], reason_of(info)))
                elif outcome == "unavailable":
                    unavailable.append(f"{info['_id']}: {reason_of(info)}")
        except TransportError as exc:  # no answer at all (connection refused, timeout)
            raise SearchBackendUnavailable(f"Elasticsearch at {self.url} is unreachable: {exc}") from exc
        if unavailable:
            log.warning("bulk.unavailable", failed=len(unavailable), first=unavailable[0][:300])
            raise SearchBackendUnavailable(
                f"{len(unavailable)} of {len(newest)} documents not indexed after {self._bulk_retries} retries; first: {unavailable[0]}"
            )
        return refused

    # --- reads ----------------------------------------------------------------------------

    async def search(self, query: SearchQuery) -> SearchResults:
        if query.q.strip() and not words_of(query.q):  # only punctuation, emoji, control characters
            return SearchResults(total=0, page=query.page, per_page=query.per_page, facets={"domain": {}, "region": {}} if query.facets else {})
        try:
            response = await self.client.search(index=self.alias, **search_body(query))
        except TransportError as exc:
            raise SearchBackendUnavailable(f"Elasticsearch at {self.url} is unreachable: {exc}") from exc
        except ApiError as exc:
            # No index yet (404) or a cluster in trouble (5xx) is the backend's state; a 400
            # would be a query we built wrongly, and stays loud.
            if exc.status_code == 404 or exc.status_code >= 500:
                raise SearchBackendUnavailable(f"Elasticsearch cannot search {self.alias}: {exc}") from exc
            raise
        return results_of(query, response.body)

    async def version_of(self, publication_id: str) -> int | None:
        # A realtime get: sees a write at once, without waiting for a refresh.
        response = await self.client.options(ignore_status=404).get(index=self.alias, id=publication_id, source=False)
        return response.body["_version"] if response.body.get("found") else None

    async def count(self) -> int:
        response = await self.client.count(index=self.alias, query={"term": {"status": "published"}})
        return response.body["count"]

    async def healthy(self) -> bool:
        try:
            client = self.client.options(request_timeout=5)
            if not await client.indices.exists_alias(name=self.alias):
                return False
            health = await client.cluster.health(index=self.alias)
            return health.body["status"] in ("green", "yellow")  # yellow: replicas not (yet) assigned, every shard searchable
        except Exception:  # noqa: BLE001 - any failure to answer is "not healthy"
            return False

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()


def elasticsearch_index(settings: Any, **options: Any) -> ElasticsearchIndex:
    """The ElasticsearchIndex that TONGYUAN_ELASTICSEARCH_* settings describe."""
    if not settings.elasticsearch_url:
        raise ValueError("TONGYUAN_SEARCH_BACKEND=elasticsearch needs TONGYUAN_ELASTICSEARCH_URL")
    return ElasticsearchIndex(
        settings.elasticsearch_url,
        index_prefix=getattr(settings, "elasticsearch_index_prefix", "tongyuan"),
        analyzer=getattr(settings, "elasticsearch_analyzer", "smartcn"),
        **options,
    )
