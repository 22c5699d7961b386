"""`tongyuan reindex`: rebuild the Elasticsearch index without downtime.

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
import warnings
from typing import Annotated, Any

import structlog
import typer
from elasticsearch.exceptions import GeneralAvailabilityWarning

from .elasticsearch import ElasticsearchIndex, elasticsearch_index

log = structlog.get_logger("tongyuan.indexer.reindex")


class ReindexFailed(RuntimeError):
    pass


async def reindex(index: ElasticsearchIndex, *, keep_old: bool = False, settle_seconds: float = 5.0, poll_seconds: float = 2.0) -> str:
    """Reindex behind the alias; returns the new concrete index's name.

    `settle_seconds`: how long after the swap to wait for bulk requests that resolved the
    alias just before it, before the catch-up copy."""
    client = index.client
    await index.create()  # the template as configured now; the alias if there was none
    old = await index.concrete_indices()
    new = await index.create_concrete_index(write_alias=False)
    log.info("reindex.started", alias=index.alias, old=old, new=new)
    try:
        copied = await _copy(client, old, new, poll_seconds)
    except Exception:
        await client.indices.delete(index=new)  # nothing points at it yet
        raise

    actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": index.alias}} for name in old]
    actions.append({"add": {"index": new, "alias": index.alias, "is_write_index": True}})
    await client.indices.update_aliases(actions=actions)
    log.info("reindex.swapped", alias=index.alias, new=new, copied=copied)

    if settle_seconds:
        await asyncio.sleep(settle_seconds)
    caught_up = await _copy(client, old, new, poll_seconds)
    if not keep_old:
        await client.indices.delete(index=",".join(old))
    log.info("reindex.done", alias=index.alias, new=new, copied=copied, caught_up=caught_up, deleted=[] if keep_old else old)
    return new


async def _copy(client, source: list[str], dest: str, poll_seconds: float) -> int:
    """`_reindex` as a task (no HTTP request waits for a copy of a million documents);
    returns how many documents were written (created or updated)."""
    await client.indices.refresh(index=",".join(source))  # the copy reads what a search would see
    started = await client.reindex(
        source={"index": source, "size": 1000},
        dest={"index": dest, "version_type": "external"},
        conflicts="proceed",  # 409 = the destination already has that version or newer
        slices="auto",
        refresh=True,  # searchable as soon as the alias points at it
        wait_for_completion=False,
    )
    task_id = started.body["task"]
    while not (task := await _task(client, task_id)).body.get("completed"):
        await asyncio.sleep(poll_seconds)
    response = task.body.get("response", {})
    if task.body.get("error") or response.get("failures"):
        raise ReindexFailed(f"reindex into {dest} failed: {task.body.get('error') or response['failures'][:3]}")
    return response.get("created", 0) + response.get("updated", 0)


async def _task(client, task_id: str):
    # The client flags GET _tasks as "technical preview"; the API has been stable since 5.x.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneralAvailabilityWarning)
        return await client.tasks.get(task_id=task_id)


def reindex_command(
    keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the previous index (e.g. to compare) instead of deleting it")] = False,
) -> None:
    """Rebuild the Elasticsearch index into a new one and swap the alias, without downtime."""
    from services.common.settings import get_settings

    settings = get_settings()
    if settings.search_backend != "elasticsearch":
        typer.echo("reindex is for TONGYUAN_SEARCH_BACKEND=elasticsearch; the embedded index is rebuilt by `tongyuan republish`", err=True)
        raise typer.Exit(2)

    async def run() -> tuple[str, str]:
        index = elasticsearch_index(settings)
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
