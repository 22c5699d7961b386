"""The embedded search backend: a tantivy index (BM25 over Chinese bigrams, see tokenize.py)
beside a SQLite ledger of versions.

Chosen by measurement over SQLite FTS5 with the same bigrams (`make bench-search BENCH_ARGS=
--fts5`): on the same 100,000 documents FTS5 took 799 MB and a p95 of 638 ms over the query
mix (facets are GROUP BYs over every match), this index 151 MB and 17 ms; both index at the
same rate, which our Python side bounds.

Files (next to each other under var/):
- search.db — the ledger: every publication's version and status, tombstones included (what
  `version_of` answers), and the indexer's heartbeats. Always SQLite, even when the other
  stores are on PostgreSQL (production search is Elasticsearch).
- search-index/ — the text index: live documents only, each with what a hit renders.

A batch (or each turn of a long one, see write_in_turns) is written as: BEGIN IMMEDIATE on the
ledger → read the stored versions, keep only newer events → delete + add them in the text index
and write their ledger rows (executemany) → commit the text index (atomic, fsync'd by tantivy),
then the ledger. A crash before the text commit leaves
nothing of the batch anywhere. A crash between the two commits leaves the text index ahead of
the ledger; the consumer has not acked the batch, so it is applied again, the ledger still
shows the older versions, and the same documents are deleted and added again: idempotent.
Rebuilding from the topic or from `tongyuan republish` is the fallback for a lost or
incompatible index, not the plan.

tantivy has one writer per index; the indexer keeps it while it is busy (merges then run in
the background) and lets go when idle, so another process can write too (see _Writer).
Readers in other processes (the portal) see each commit at their next search.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from time import monotonic, sleep
from typing import Any

import structlog
import tantivy
from pydantic_core import to_json
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import Connection, make_url

from contracts.events import PublishedEvent
from services.common.db import create_store_engine, in_parts, insert_rows, others_waiting, writing
from services.common.heartbeat import heartbeat_table
from services.common.projection import newest_per_publication, publications_to_apply

from .index import (
    Event,
    SearchIndex,
    SearchQuery,
    SearchResults,
    as_utc,
    county_of,
    document_of,
    hit_of,
    placement_keys,
    searchable_text,
)
from .tokenize import index_terms, is_single_char, normalise, query_phrases

log = structlog.get_logger("tongyuan.search")

metadata = MetaData()

documents = Table(
    "search_documents",
    metadata,
    # A small stable number per publication: the text index's tie-breaker among equals.
    Column("id", Integer, primary_key=True),
    Column("publication_id", String(80), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # published | withdrawn (a tombstone)
)

heartbeats = heartbeat_table(metadata, "search")

# Bump when the text index's fields or terms change: an index of another layout is rebuilt.
LAYOUT = "tongyuan-search-6"
# A title match outweighs a body match (bm25 per field, title scores multiplied).
TITLE_BOOST = 5.0
# An exact 索引号 outranks any text match.
INDEX_NUMBER_BOOST = 1000.0
# Region code lengths: province, city, county (or 4301GX-style), township, village.
REGION_LEVELS = (2, 4, 6, 9, 12)
WRITER_HEAP = 64_000_000
IDLE_SECONDS = 2.0  # a writer unused this long is released (see _Writer)
WRITER_WAIT_SECONDS = 30.0
# Recency's weight in relevance: scores are multiplied by log2(2 + fresh), fresh growing
# linearly from 0 (2000-01-01) to FRESHNESS (2100-01-01), i.e. by 1 to ~1.007.
FRESHNESS = 0.01
_FRESH_FROM, _FRESH_SPAN = 946_684_800, 3_155_760_000
# Exact ties fetched beyond the page to order them (a pathological pile of identical documents
# beyond this keeps tantivy's order).
MAX_TIE_FETCH = 5_000
# Date order and ties: published second, then the ledger id (unique below 2**24 documents).
_ID_BITS = 24
_TERMS = "tongyuan_terms"
_UTC = timezone.utc
_FACET_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search-facets")


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    # `text` is title and body (what must match: one field, so the required parts intersect
    # as plain phrase scorers, which seek; a union of fields would be read through); `title`
    # again on its own, for the title's extra weight.
    for name in ("title", "text"):
        builder.add_text_field(name, tokenizer_name=_TERMS, index_option="position")
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


class EmbeddedSearchIndex(SearchIndex):
    def __init__(self, url: str, text_dir: str | Path | None = None, *, cache_mb: int | None = None) -> None:
        self.engine = create_store_engine(url, cache_mb=cache_mb)
        self.heartbeats = heartbeats
        database = make_url(url).database
        if text_dir is None and database and database != ":memory:":
            path = Path(database)
            text_dir = path.with_name(f"{path.stem}-index")
        self.text_dir = Path(text_dir) if text_dir is not None else None  # None: in memory (tests)
        self._text: tantivy.Index | None = None
        self._seen_commit: int | None = None
        self._reload_lock = threading.Lock()
        self._text_writer: _Writer | None = None
        self._stale = False  # this process committed since its searcher was last reloaded

    def _writer(self) -> _Writer:
        if self._text_writer is None:
            self._text_writer = _Writer(self._require_text())
        return self._text_writer

    # --- the port ---------------------------------------------------------------------------

    async def create(self) -> None:
        await asyncio.to_thread(self.create_now)

    async def apply(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        return await asyncio.to_thread(self.apply_now, events)

    async def search(self, query: SearchQuery) -> SearchResults:
        return await asyncio.to_thread(self.search_now, query)

    async def version_of(self, publication_id: str) -> int | None:
        return await asyncio.to_thread(self._version_of, publication_id)

    async def count(self) -> int:
        return await asyncio.to_thread(self._count)

    async def healthy(self) -> bool:
        return await asyncio.to_thread(self.healthy_now)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_now)

    def close_now(self) -> None:
        if self._text_writer is not None:
            self._text_writer.release()
        self.engine.dispose()

    # --- blocking work (in a thread) --------------------------------------------------------

    def create_now(self) -> None:
        """Ledger tables and the text index; safe to call again, from several processes."""
        with self._creating():
            _drop_legacy_tables(self.engine)
            metadata.create_all(self.engine)
            fresh = self._open_text(create=True)
            if fresh:
                with writing(self.engine) as connection:
                    # A new text index holds nothing, so neither may the ledger: otherwise the
                    # versions it keeps would make every replayed event look stale.
                    forgotten = connection.execute(documents.delete()).rowcount
                if forgotten:
                    log.warning("search.index_rebuilt", forgotten=forgotten, hint="replay the topic or run `tongyuan republish` to fill it")

    def apply_now(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        newest = newest_per_publication(events)
        if not newest:
            return []
        self._require_text()
        # Documents are built before the locks are taken: building is most of a batch's time,
        # and another batch (a clerk's, beside a migration's) waits only for the writing.
        built = {pid: _text_document(event) for pid, event in newest.items() if isinstance(event, PublishedEvent)}
        # Written in turns, as write_in_turns does for the SQL stores; here each turn ends with
        # the text index's commit, then the ledger's.
        parts, done = in_parts(list(newest.items())), 0
        while done < len(parts):
            with writing(self.engine) as connection, ExitStack() as held:
                writer = None  # taken once a part has something new: a replay commits nothing
                try:
                    while True:
                        if rows := _fresh_rows(connection, parts[done]):
                            writer = writer or held.enter_context(self._writer().borrowed())
                            _write_rows(connection, writer, rows, built)
                        done += 1
                        if done == len(parts) or others_waiting(self.engine):
                            break
                    if writer is not None:
                        writer.commit()
                except BaseException:
                    if writer is not None:
                        writer.rollback()
                    raise
        # This process reads its own commit only when it next searches (the portal, which
        # serves the searches, follows meta.json): a searcher reload per batch took ~9 ms of
        # each batch's wall time on the benchmark VM.
        self._stale = True
        return []

    def search_now(self, query: SearchQuery) -> SearchResults:
        text_index = self._require_text()
        self._reload()
        return _Search(text_index.searcher(), query).results()

    def _version_of(self, publication_id: str) -> int | None:
        with self.engine.connect() as connection:
            return connection.execute(select(documents.c.version).where(documents.c.publication_id == publication_id)).scalar_one_or_none()

    def _count(self) -> int:
        text_index = self._require_text()
        self._reload()
        return text_index.searcher().num_docs

    def healthy_now(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(documents.c.id).limit(1)).all()
            self._require_text().searcher()
            return True
        except Exception:
            return False

    # --- the text index ---------------------------------------------------------------------

    def _open_text(self, *, create: bool) -> bool:
        """Open (or, with `create`, make) the text index; True if it was made new."""
        if self._text is not None:
            return False
        made = False
        if self.text_dir is None:
            index, made = tantivy.Index(SCHEMA), True
        else:
            marker = self.text_dir / "LAYOUT"
            current = marker.read_text().strip() if marker.exists() else None
            if current != LAYOUT:
                if not create:
                    return False
                if self.text_dir.exists():
                    log.warning("search.layout_changed", path=str(self.text_dir), found=current, wanted=LAYOUT)
                    shutil.rmtree(self.text_dir)
                self.text_dir.mkdir(parents=True)
                made = True
            index = tantivy.Index(SCHEMA, path=str(self.text_dir), reuse=True)
            if made:
                marker.write_text(LAYOUT + "\n")
        index.register_tokenizer(_TERMS, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        self._text = index
        return made

    def _require_text(self) -> tantivy.Index:
        if self._text is None:
            self._open_text(create=False)
        if self._text is None:
            raise RuntimeError("the search index is not created yet (EmbeddedSearchIndex.create)")
        return self._text

    def _reload(self, *, force: bool = False) -> None:
        """See this process's and other processes' commits at once (tantivy would otherwise
        poll for them)."""
        if self._stale:
            force, self._stale = True, False
        if self.text_dir is None:
            if force:
                self._text.reload()
            return
        try:
            stamp = (self.text_dir / "meta.json").stat().st_mtime_ns
        except FileNotFoundError:
            return
        if force or stamp != self._seen_commit:
            with self._reload_lock:
                self._text.reload()
                self._seen_commit = stamp

    @contextmanager
    def _creating(self):
        # The portal and the indexer may start together: one of them creates at a time.
        if self.text_dir is None:
            yield
            return
        self.text_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.text_dir.parent / f".{self.text_dir.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# --- writing --------------------------------------------------------------------------------


def _ledger_rows(connection: Connection, fresh: list[tuple[Event, int | None]]) -> list[dict[str, Any]]:
    # New rows get ids here; the write lock taken at BEGIN IMMEDIATE makes max(id) safe.
    next_id = (connection.execute(text("SELECT coalesce(max(id), 0) FROM search_documents")).scalar_one() or 0) + 1
    rows = []
    for event, document_id in fresh:
        new = document_id is None
        if new:
            document_id, next_id = next_id, next_id + 1
        published = isinstance(event, PublishedEvent)
        rows.append(
            {
                "id": document_id,
                "new": new,
                "event": event,
                "publication_id": event.data.publication_id,
                "version": event.data.version,
                "status": "published" if published else "withdrawn",
            }
        )
    return rows


def _fresh_rows(connection: Connection, part: Sequence[tuple[str, Event]]) -> list[dict[str, Any]]:
    stored = {
        row.publication_id: row
        for row in connection.execute(
            select(documents.c.id, documents.c.publication_id, documents.c.version).where(documents.c.publication_id.in_([pid for pid, _ in part]))
        )
    }
    # Skipped: a duplicate, a replay, or older than what we hold.
    applied = publications_to_apply([event for _, event in part], {pid: row.version for pid, row in stored.items()})
    fresh = [(event, stored[event.data.publication_id].id if event.data.publication_id in stored else None) for event in applied]
    return _ledger_rows(connection, fresh) if fresh else []


def _write_rows(connection: Connection, writer: tantivy.IndexWriter, rows: list[dict[str, Any]], built: dict[str, tuple[tantivy.Document, int]]) -> None:
    for row in rows:
        # Also for publications the ledger has never seen: after a crash between the two
        # commits the text index may already hold them.
        writer.delete_documents_by_term("pid", row["publication_id"])
        if row["status"] == "published":
            document, published = built[row["publication_id"]]
            # The rank needs the ledger id, known only now.
            document.add_integer("rank", (published << _ID_BITS) | (row["id"] & ((1 << _ID_BITS) - 1)))
            writer.add_document(document)
    _write_ledger(connection, rows)


class _Writer:
    """The text index's single writer (tantivy allows one per index, across processes).

    Kept while batches keep coming, so segment merges run in the background instead of inside
    a batch; released once no batch came for IDLE_SECONDS (after its merges finish), so another
    process — a second indexer worker, `tongyuan dlq replay` — can take it. Whoever finds it
    taken waits, and after WRITER_WAIT_SECONDS gives up with a TimeoutError, which the consumer
    treats as a passing outage (it retries the batch with backoff)."""

    def __init__(self, index: tantivy.Index) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._writer: tantivy.IndexWriter | None = None
        self._idle: threading.Timer | None = None

    @contextmanager
    def borrowed(self):
        with self._lock:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            if self._writer is None:
                self._writer = self._acquire()
            try:
                yield self._writer
            finally:
                self._idle = threading.Timer(IDLE_SECONDS, self.release)
                self._idle.daemon = True
                self._idle.start()

    def release(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
        if writer is not None:
            writer.wait_merging_threads()  # then the writer and its lock are gone

    def _acquire(self) -> tantivy.IndexWriter:
        deadline = monotonic() + WRITER_WAIT_SECONDS
        delay = 0.02
        while True:
            try:
                return self.index.writer(heap_size=WRITER_HEAP, num_threads=1)
            except ValueError as exc:
                if "LockBusy" not in str(exc):
                    raise
                if monotonic() > deadline:
                    raise TimeoutError("another process is writing the search index") from exc
                sleep(delay)
                delay = min(0.5, delay * 2)


def _write_ledger(connection: Connection, rows: list[dict[str, Any]]) -> None:
    inserted = [{k: row[k] for k in ("id", "publication_id", "version", "status")} for row in rows if row["new"]]
    updated = [{k: row[k] for k in ("id", "version", "status")} for row in rows if not row["new"]]
    if inserted:
        insert_rows(connection, documents, inserted)
    if updated:
        connection.execute(text("UPDATE search_documents SET version = :version, status = :status WHERE id = :id"), updated)


def region_path(code: str) -> list[str]:
    """The code and every ancestor: 430102001 → 43, 4301, 430102, 430102001."""
    return [code[:size] for size in REGION_LEVELS if size < len(code)] + [code]


def _text_document(event: PublishedEvent) -> tuple[tantivy.Document, int]:
    """The document to index, but its rank (see _write_rows), and its publish time."""
    data = event.data
    document = {**document_of(data), "attachment_names": [attachment.name for attachment in data.attachments]}
    title, body = searchable_text(document)
    title_terms = index_terms(title)
    published = int(as_utc(data.published_at).timestamp())
    filters: set[str] = set()
    domains, counties, domains_by_region, counties_by_item = set(), set(), set(), set()
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


def _drop_legacy_tables(engine) -> None:
    """The FTS5 index this replaced: its tables go, and the new index is filled by a replay."""
    names = set(inspect(engine).get_table_names())
    legacy = "search_fts" in names or "search_placements" in names
    if "search_documents" in names and not legacy:
        legacy = "document" in {column["name"] for column in inspect(engine).get_columns("search_documents")}
    if legacy:
        log.warning("search.legacy_fts5_dropped", hint="replay the topic or run `tongyuan republish` to fill the new index")
        with writing(engine) as connection:
            for name in ("search_fts", "search_placements", "search_documents"):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


# --- searching ------------------------------------------------------------------------------


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


class _Search:
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
            total, addresses = found.count, [address for _, address in found.hits]
        else:
            total, addresses = self.by_relevance(compiled)
        hits = []
        for address in addresses:
            stored = json.loads(self.searcher.doc(address).get_first("doc"))
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
        ordered = sorted(zip(hits, ranks, strict=True), key=lambda pair: (-pair[0][0], -pair[1]))
        return found.count, [address for (_, address), _ in ordered[self.query.offset : need]]

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
                compiled = _Search(self.searcher, replace(query, domain=domain)).compile()
            except _Nothing:
                continue
            total = self.searcher.search(compiled, limit=1, count=True).count
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
