"""The embedded search backend: a tantivy index (BM25 over Chinese bigrams, see tokenize.py)
beside a SQLite ledger of versions. This module holds the adapter, the ledger and the writer;
text_index.py the schema and the documents, text_search.py the searching.

Chosen over SQLite FTS5 with the same bigrams by measurement (`make bench-search BENCH_ARGS=
--fts5`, figures in bench/README.md): facets are GROUP BYs over every match in FTS5, and the
FTS5 index was several times larger; both index at the rate our Python side allows.

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
import shutil
import threading
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from time import monotonic, sleep
from typing import Any

import structlog
import tantivy
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text
from sqlalchemy.engine import Connection, make_url

from contracts.events import PublishedEvent
from services.common.db import create_store_engine, in_parts, insert_rows, others_waiting, writing
from services.common.heartbeat import heartbeat_table
from services.common.projection import newest_per_publication, publications_to_apply
from services.common.schema import ensure as ensure_schema

from .index import (
    Event,
    SearchIndex,
    SearchQuery,
    SearchResults,
)
from .text_index import LAYOUT, SCHEMA, TERMS, ranked, text_document
from .text_search import TextSearch

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
WRITER_HEAP = 64_000_000
IDLE_SECONDS = 2.0  # a writer unused this long is released (see _Writer)
WRITER_WAIT_SECONDS = 30.0


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
            ensure_schema(self.engine, "search")
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
        built = {pid: text_document(event) for pid, event in newest.items() if isinstance(event, PublishedEvent)}
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
        # serves the searches, follows meta.json): a searcher reload per batch would be a
        # large share of each batch's wall time.
        self._stale = True
        return []

    def search_now(self, query: SearchQuery) -> SearchResults:
        text_index = self._require_text()
        self._reload()
        return TextSearch(text_index.searcher(), query).results()

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
        index.register_tokenizer(TERMS, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
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
        text_index = self._require_text()
        if self._stale:
            force, self._stale = True, False
        if self.text_dir is None:
            if force:
                text_index.reload()
            return
        try:
            stamp = (self.text_dir / "meta.json").stat().st_mtime_ns
        except FileNotFoundError:
            return
        if force or stamp != self._seen_commit:
            with self._reload_lock:
                text_index.reload()
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
            writer.add_document(ranked(document, published, row["id"]))
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
