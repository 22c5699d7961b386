"""`tongyuan reindex`: rebuild the search engine's index without downtime (Elasticsearch or
OpenSearch: both adapters give the steps below, which their `_reindex` and `_aliases` agree on).

1. Put the current template (new analyzer, new mapping) and make a new concrete index from it.
2. `_reindex` the old index into it, keeping our versions (`version_type: external`).
3. Swap the alias in one `_aliases` call (remove old + add new): searches and the indexer's
   writes move together, and no request ever sees no index.
4. Copy again from the old index: writes that reached it after step 2's snapshot and before
   the swap. External versions make this safe — only newer versions land, stale ones are
   409s, and withdrawals are tombstone documents, so they are copied like any other.
5. Delete the old index.

The indexer keeps running throughout. Rebuilding from nothing instead (the topic from the
beginning, or `tongyuan republish`) needs only `create()` on an empty prefix.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Protocol

import structlog
import typer

from .elasticsearch import elasticsearch_index

log = structlog.get_logger("tongyuan.indexer.reindex")

ENGINES = ("elasticsearch", "opensearch")


class ReindexFailed(RuntimeError):
    pass


class Rebuildable(Protocol):
    """What an engine adapter gives the reindex (ElasticsearchIndex, OpenSearchIndex)."""

    alias: str

    async def create(self) -> None: ...
    async def concrete_indices(self) -> list[str]: ...
    async def create_concrete_index(self, *, write_alias: bool) -> str: ...
    async def refresh_indices(self, names: list[str]) -> None: ...
    async def start_copy(self, source: list[str], dest: str) -> str: ...
    async def copy_status(self, task_id: str) -> dict[str, Any]: ...
    async def swap_alias(self, old: list[str], new: str) -> None: ...
    async def delete_indices(self, names: list[str]) -> None: ...
    async def close(self) -> None: ...


async def reindex(index: Rebuildable, *, keep_old: bool = False, settle_seconds: float = 5.0, poll_seconds: float = 2.0) -> str:
    """Reindex behind the alias; returns the new concrete index's name.

    `settle_seconds`: how long after the swap to wait for bulk requests that resolved the
    alias just before it, before the catch-up copy."""
    await index.create()  # the template as configured now; the alias if there was none
    old = await index.concrete_indices()
    new = await index.create_concrete_index(write_alias=False)
    log.info("reindex.started", alias=index.alias, old=old, new=new)
    try:
        copied = await _copy(index, old, new, poll_seconds)
    except Exception:
        await index.delete_indices([new])  # nothing points at it yet
        raise

    await index.swap_alias(old, new)
    log.info("reindex.swapped", alias=index.alias, new=new, copied=copied)

    if settle_seconds:
        await asyncio.sleep(settle_seconds)
    caught_up = await _copy(index, old, new, poll_seconds)
    if not keep_old:
        await index.delete_indices(old)
    log.info("reindex.done", alias=index.alias, new=new, copied=copied, caught_up=caught_up, deleted=[] if keep_old else old)
    return new


async def _copy(index: Rebuildable, source: list[str], dest: str, poll_seconds: float) -> int:
    """`_reindex` as a task (no HTTP request waits for a copy of a million documents);
    returns how many documents were written (created or updated)."""
    await index.refresh_indices(source)  # the copy reads what a search would see
    task_id = await index.start_copy(source, dest)
    while not (task := await index.copy_status(task_id)).get("completed"):
        await asyncio.sleep(poll_seconds)
    response = task.get("response", {})
    if task.get("error") or response.get("failures"):
        raise ReindexFailed(f"reindex into {dest} failed: {task.get('error') or response['failures'][:3]}")
    return response.get("created", 0) + response.get("updated", 0)


def engine_index(settings: Any) -> Rebuildable:
    """The adapter of the configured engine (imported only when chosen)."""
    if settings.search_backend == "opensearch":
        from .opensearch import opensearch_index

        return opensearch_index(settings)
    return elasticsearch_index(settings)


def reindex_command(
    keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the previous index (e.g. to compare) instead of deleting it")] = False,
) -> None:
    """Rebuild the search engine's index into a new one and swap the alias, without downtime."""
    from services.common.settings import get_settings

    settings = get_settings()
    if settings.search_backend not in ENGINES:
        typer.echo("reindex is for TONGYUAN_SEARCH_BACKEND=elasticsearch or opensearch; the embedded index is rebuilt by `tongyuan republish`", err=True)
        raise typer.Exit(2)

    async def run() -> tuple[str, str]:
        index = engine_index(settings)
        try:
            return index.alias, await reindex(index, keep_old=keep_old)
        finally:
            await index.close()

    try:
        alias, new = asyncio.run(run())
    except ReindexFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{alias} → {new}")
