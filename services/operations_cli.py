"""`tongyuan dlq …` and `tongyuan verify`: the operations that span the consumers' stores
(services/operations.py), on the parts the composition root builds."""

from __future__ import annotations

from typing import Annotated

import typer

from services.common.terminal import broker, commands, fail, load_settings

operations_cli = commands()
dlq_cli = commands("Dead-letter queues: what a consumer group could not apply.")
operations_cli.add_typer(dlq_cli, name="dlq")

# Every consumer group has a dead-letter topic (common/kafka.CONSUMER_GROUPS, written out here:
# importing faust would slow every command's help; tests/unit/test_cli_newcomer.py keeps them
# equal). The publisher's gate answers a refused inbound event on tongyuan.rejections.v1 to its
# sender instead: a reply, not a dead letter.
GROUPS = ("tongyuan-column", "tongyuan-indexer", "tongyuan-embed", "tongyuan-supervision")
Group = Annotated[str | None, typer.Option("--group", metavar="GROUP", help=f"one of {', '.join(GROUPS)}; every group when left out")]


def _groups(group: str | None) -> list[str]:
    if group is not None and group not in GROUPS:
        fail(f"unknown group {group!r}; one of {', '.join(GROUPS)}", 2)
    return [group] if group else list(GROUPS)


@dlq_cli.command("list")
def dlq_list(group: Group = None) -> None:
    """Each dead letter: where it came from and why it was refused."""
    from services.operations import dead_letters

    settings = load_settings()
    names = _groups(group)
    broker(settings)
    for name in names:
        letters = dead_letters(settings, name)
        for letter in letters:
            typer.echo(f"{letter.partition}/{letter.offset}\t{letter.origin}\t{letter.error[:200]}")
        typer.echo(f"{len(letters)} dead letter(s) in {name}")


@dlq_cli.command("replay")
def dlq_replay(group: Group = None) -> None:
    """Apply every dead letter again with its group's store (after a fix); idempotent by version."""
    from services.bootstrap import composed
    from services.operations import dead_letters, replay_dead_letters

    settings = load_settings()
    names = _groups(group)
    broker(settings)
    parts, failing = composed(), 0
    for name in names:
        apply, apply_catalog = parts.group_writes(name)
        result = replay_dead_letters(dead_letters(settings, name), apply, apply_catalog)
        for letter, error in result.still_failing:
            typer.echo(f"still failing {name} {letter.partition}/{letter.offset}: {error[:200]}", err=True)
        typer.echo(f"{name}: applied {result.applied}; {len(result.still_failing)} still failing")
        failing += len(result.still_failing)
    if failing:
        raise typer.Exit(1)


@operations_cli.command()
def verify() -> None:
    """Compare every store and catalog copy with the publisher's truth; print what differs (exit 1 if anything does)."""
    from services.operations import verify_stores

    publications, differences = verify_stores(load_settings())
    for difference in differences:
        typer.echo(f"{difference.store}\t{difference.publication_id}\texpected v{difference.expected}\tfound v{difference.found}")
    typer.echo(f"{publications} publications; {len(differences)} difference(s)")
    if differences:
        raise typer.Exit(1)
