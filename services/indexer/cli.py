"""`tongyuan reindex`: the search index's command."""

from __future__ import annotations

from typing import Annotated

import typer

from services.common.terminal import commands

indexer_cli = commands()


@indexer_cli.command()
def reindex(keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the previous index instead of deleting it")] = False) -> None:
    """Rebuild the search engine's index (OpenSearch or Elasticsearch) into a new one and swap the alias, without downtime."""
    from .reindex import reindex_command

    reindex_command(keep_old=keep_old)
