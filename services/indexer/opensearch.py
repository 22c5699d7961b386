"""The production search backend: OpenSearch 2, through opensearch-py's async client.

The same index as the Elasticsearch adapter, built by the same pure functions (es_mapping.py:
template and documents; es_query.py: queries and results; bulk_items.py: what a bulk item's
answer means), since OpenSearch 2 keeps the Elasticsearch 7 APIs they use:

- One alias, `<prefix>-publications`, in front of one concrete index made from the index
  template; reindex.py builds a new concrete index and swaps the alias.
- Writes: `_id` = publication id, `version_type=external` with our version, so the engine
  itself refuses a stale write with 409, whatever order events arrive in.
- Withdrawals are tombstone documents, not deletes (a deleted document's version is forgotten
  after index.gc_deletes, and a late older publish would then come back).
- Items refused with 429/5xx are sent again with exponential backoff (tenacity); after
  `bulk_retries` the batch is held (SearchBackendUnavailable) and the consumer retries it.

Why OpenSearch and not Elasticsearch for production: see docs/design.md (search).
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import structlog
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from contracts.events import PublishedEvent
from services.common.projection import newest_per_publication

from .bulk_items import RETRY_STATUSES, outcome_of, reason_of
from .elasticsearch import SearchBackendUnavailable
from .es_mapping import check_analyzer, copy_request, index_template, published_document, tombstone_document
from .es_query import results_of, search_body, words_of
from .index import Event, SearchIndex, SearchQuery, SearchResults

log = structlog.get_logger("tongyuan.indexer.opensearch")

CHUNK_SIZE = 500
CHUNK_BYTES = 10 * 1024 * 1024  # well under http.max_content_length (100 MB)
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,100}$")
ENGINE = "OpenSearch"

Action = tuple[dict[str, Any], dict[str, Any]]  # (bulk metadata line, document)


class _StillBusy(Exception):
    """Some items were answered 429/5xx: send them again after a backoff."""


class OpenSearchIndex(SearchIndex):
    def __init__(
        self,
        url: str,
        index_prefix: str = "tongyuan",
        analyzer: str = "smartcn",
        client: AsyncOpenSearch | None = None,
        *,
        refresh: bool = False,
        shards: int = 1,
        replicas: int = 1,
        bulk_retries: int = 3,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`refresh=True` makes every write searchable before apply returns (tests; costly in
        production, where the 1 s refresh interval applies). `bulk_retries` bounds the resends
        of items refused with 429/5xx within one apply (backoff doubling from
        `initial_backoff` up to `max_backoff` seconds); after that apply raises."""
        if not _PREFIX.match(index_prefix):
            raise ValueError(f"index prefix {index_prefix!r}: lower-case letters, digits, '-' and '_' only")
        self.url = url
        self.analyzer = check_analyzer(analyzer)
        self.alias = f"{index_prefix}-publications"
        self.template_name = self.alias
        self._given_client = client
        # One client per event loop: its HTTP session belongs to the loop it first ran in, and
        # one index object may serve several (the portal's requests under a test client, each
        # in a loop of its own; a health probe's thread).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenSearch] = weakref.WeakKeyDictionary()
        self._refresh = refresh
        self._shards = shards
        self._replicas = replicas
        self._bulk_retries = bulk_retries
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    @property
    def client(self) -> AsyncOpenSearch:
        """The client for the running event loop (the one given, in tests)."""
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Connection errors and timeouts are retried by the transport; bulk item statuses by apply.
            client = self._clients[loop] = AsyncOpenSearch(hosts=[self.url], timeout=30, max_retries=3, retry_on_timeout=True)
        return client

    # --- schema ---------------------------------------------------------------------------

    def template(self) -> dict[str, Any]:
        return index_template([f"{self.alias}-*"], self.analyzer, shards=self._shards, replicas=self._replicas)

    async def create(self) -> None:
        """Put the index template (always: it is how a new analyzer reaches the next index)
        and, if the alias does not exist yet, a first concrete index behind it."""
        await self.client.indices.put_index_template(name=self.template_name, body=self.template())
        if await self.client.indices.exists_alias(name=self.alias):
            return
        try:
            await self.create_concrete_index(write_alias=True)
        except TransportError:
            # Another worker created it between our check and our create; two write indices
            # for one alias are refused, so at most one of us wins.
            if not await self.client.indices.exists_alias(name=self.alias):
                raise

    async def create_concrete_index(self, *, write_alias: bool) -> str:
        """A new concrete index, its settings and mapping from the template."""
        name = f"{self.alias}-{self._clock().strftime('%Y%m%d%H%M%S%f')}"
        body = {"aliases": {self.alias: {"is_write_index": True}}} if write_alias else {}
        await self.client.indices.create(index=name, body=body)
        return name

    async def concrete_indices(self) -> list[str]:
        """The concrete indices behind the alias (one, except mid-swap)."""
        return sorted(await self.client.indices.get_alias(name=self.alias))

    # --- what reindex.py drives -----------------------------------------------------------

    async def refresh_indices(self, names: list[str]) -> None:
        await self.client.indices.refresh(index=",".join(names))

    async def start_copy(self, source: list[str], dest: str) -> str:
        """Start `_reindex` as a task; its id."""
        body, params = copy_request(source, dest)
        started = await self.client.reindex(body=body, params={k: json.dumps(v) if isinstance(v, bool) else v for k, v in params.items()})
        return started["task"]

    async def copy_status(self, task_id: str) -> dict[str, Any]:
        return await self.client.tasks.get(task_id=task_id)

    async def swap_alias(self, old: list[str], new: str) -> None:
        """In one `_aliases` call: no request ever sees the alias on no index."""
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": self.alias}} for name in old]
        actions.append({"add": {"index": new, "alias": self.alias, "is_write_index": True}})
        await self.client.indices.update_aliases(body={"actions": actions})

    async def delete_indices(self, names: list[str]) -> None:
        await self.client.indices.delete(index=",".join(names))

    # --- writes ---------------------------------------------------------------------------

    def _action(self, event: Event) -> Action:
        data = event.data
        # A withdrawal is a small tombstone carrying its version (see the module docstring).
        source = published_document(event.data) if isinstance(event, PublishedEvent) else tombstone_document(event.data)
        meta = {"_index": self.alias, "_id": data.publication_id, "version": data.version, "version_type": "external"}
        return {"index": meta}, source

    async def apply(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        newest = newest_per_publication(events)  # within a batch the highest version wins
        if not newest:
            return []
        pending = {publication_id: self._action(event) for publication_id, event in newest.items()}
        refused: list[tuple[Event, str]] = []
        failed: list[str] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._bulk_retries + 1),
            wait=wait_exponential(multiplier=self._initial_backoff, max=self._max_backoff),
            retry=retry_if_exception_type(_StillBusy),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    pending, failed = await self._send(pending, newest, refused)
                    if pending:
                        raise _StillBusy(next(iter(pending.values()))[0]["index"]["_id"])
        except _StillBusy:
            failed = [f"{publication_id}: still refused with 429/5xx" for publication_id in pending]
        except OpenSearchConnectionError as exc:  # no answer at all (connection refused, timeout)
            raise SearchBackendUnavailable(f"OpenSearch at {self.url} is unreachable: {exc}") from exc
        if failed:
            log.warning("bulk.unavailable", failed=len(failed), first=failed[0][:300])
            raise SearchBackendUnavailable(f"{len(failed)} of {len(newest)} documents not indexed after {self._bulk_retries} retries; first: {failed[0]}")
        return refused

    async def _send(self, pending: dict[str, Action], newest: dict[str, Event], refused: list[tuple[Event, str]]) -> tuple[dict[str, Action], list[str]]:
        """One bulk pass over `pending`: the items to send again (429/5xx), and the items that
        failed for a reason a resend cannot cure now (held: the consumer retries the batch)."""
        again: dict[str, Action] = {}
        failed: list[str] = []
        params = {"require_alias": "true"}  # never auto-create an index named like the alias
        if self._refresh:
            params["refresh"] = "true"
        for chunk in _chunks(list(pending.values())):
            try:
                response = await self.client.bulk(body=[line for action in chunk for line in action], params=params)
            except TransportError as exc:
                if isinstance(exc, OpenSearchConnectionError) or exc.status_code not in RETRY_STATUSES:
                    raise SearchBackendUnavailable(f"OpenSearch at {self.url} refused a bulk request: {exc}") from exc
                again.update((action[0]["index"]["_id"], action) for action in chunk)  # the whole request was 429/5xx
                continue
            for item in response["items"]:
                [(_, info)] = item.items()
                publication_id = info["_id"]
                outcome = outcome_of(info)
                if outcome == "refused":
                    refused.append((newest[publication_id], reason_of(info, ENGINE)))
                elif outcome == "unavailable" and info.get("status") in RETRY_STATUSES:
                    again[publication_id] = pending[publication_id]
                elif outcome == "unavailable":
                    failed.append(f"{publication_id}: {reason_of(info, ENGINE)}")
        return again, failed

    # --- reads ----------------------------------------------------------------------------

    async def search(self, query: SearchQuery) -> SearchResults:
        if query.q.strip() and not words_of(query.q):  # only punctuation, emoji, control characters
            return SearchResults(total=0, page=query.page, per_page=query.per_page, facets={"domain": {}, "region": {}} if query.facets else {})
        try:
            response = await self.client.search(index=self.alias, body=search_body(query))
        except OpenSearchConnectionError as exc:
            raise SearchBackendUnavailable(f"OpenSearch at {self.url} is unreachable: {exc}") from exc
        except TransportError as exc:
            # No index yet (404) or a cluster in trouble (5xx) is the backend's state; a 400
            # would be a query we built wrongly, and stays loud.
            if exc.status_code == 404 or (isinstance(exc.status_code, int) and exc.status_code >= 500):
                raise SearchBackendUnavailable(f"OpenSearch cannot search {self.alias}: {exc}") from exc
            raise
        return results_of(query, response)

    async def version_of(self, publication_id: str) -> int | None:
        # A realtime get: sees a write at once, without waiting for a refresh.
        response = await self.client.get(index=self.alias, id=publication_id, params={"_source": "false", "ignore": 404})
        return response["_version"] if response.get("found") else None

    async def count(self) -> int:
        response = await self.client.count(index=self.alias, body={"query": {"term": {"status": "published"}}})
        return int(response["count"])

    async def healthy(self) -> bool:
        try:
            if not await self.client.indices.exists_alias(name=self.alias, params={"request_timeout": 5}):
                return False
            health = await self.client.cluster.health(index=self.alias, params={"request_timeout": 5})
            return health["status"] in ("green", "yellow")  # yellow: replicas not (yet) assigned, every shard searchable
        except Exception:  # noqa: BLE001 - any failure to answer is "not healthy"
            return False

    async def close(self) -> None:
        """Close this loop's client (a client of a loop that has ended went with it)."""
        if self._given_client is None:
            client = self._clients.pop(asyncio.get_running_loop(), None)
            if client is not None:
                await client.close()


def _chunks(actions: list[Action]) -> Iterator[list[Action]]:
    """At most CHUNK_SIZE actions and about CHUNK_BYTES of JSON per bulk request."""
    chunk: list[Action] = []
    size = 0
    for action in actions:
        length = len(json.dumps(action[1], ensure_ascii=False).encode()) + 200
        if chunk and (len(chunk) == CHUNK_SIZE or size + length > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += length
    if chunk:
        yield chunk


def opensearch_index(settings: Any, **options: Any) -> OpenSearchIndex:
    """The OpenSearchIndex that TONGYUAN_OPENSEARCH_URL (and the index prefix and analyzer
    settings it shares with Elasticsearch) describe."""
    if not settings.opensearch_url:
        raise ValueError("TONGYUAN_SEARCH_BACKEND=opensearch needs TONGYUAN_OPENSEARCH_URL")
    return OpenSearchIndex(
        settings.opensearch_url,
        index_prefix=getattr(settings, "elasticsearch_index_prefix", "tongyuan"),
        analyzer=getattr(settings, "elasticsearch_analyzer", "smartcn"),
        **options,
    )
