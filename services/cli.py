"""The `tongyuan` command: each service's commands (its own `cli.py`), assembled.

`up`/`run` start the stack (services/stack.py); `token` and `schemas` are the stack's own; every
other command belongs to the service it operates on. Their heavy imports happen when a command
runs, so `tongyuan --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.bridge.cli import bridge_cli
from services.catalog.cli import catalog_cli
from services.common.terminal import commands, fail, load_settings
from services.embed.cli import embed_cli
from services.indexer.cli import indexer_cli
from services.operations_cli import operations_cli
from services.publisher.cli import publisher_cli
from services.stack import stack_cli
from services.supervision.cli import supervision_cli

cli = commands("同源 Tongyuan — publish once, appear everywhere.")
for part in (stack_cli, publisher_cli, operations_cli, indexer_cli, supervision_cli):
    cli.add_typer(part)
cli.add_typer(catalog_cli, name="catalog")
cli.add_typer(bridge_cli, name="bridge")
cli.add_typer(embed_cli, name="embed")


@cli.command()
def token(
    region: Annotated[list[str], typer.Option("--region", help="a region the user publishes for; repeatable")] = [],  # noqa: B006
    role: Annotated[list[str], typer.Option("--role", help="editor, approver or admin; repeatable")] = ["editor"],  # noqa: B006
    user: Annotated[str, typer.Option(help="who the token is for")] = "clerk",
    hours: Annotated[float, typer.Option(help="how long it is valid")] = 8.0,
    create_key: Annotated[bool, typer.Option("--create-key", help="make a signing key if this var dir has none (`tongyuan up` makes one)")] = False,
) -> None:
    """Mint a bearer token with the embedded identity provider's local key (the portal's, under the var dir)."""
    from pydantic import ValidationError

    from contracts.identity import Principal
    from services.common.auth import build_verifier

    settings = load_settings()
    if settings.auth_jwks_url:
        fail("tokens come from the identity provider (TONGYUAN_AUTH_JWKS_URL is set)", 2)
    try:
        principal = Principal(user=user, roles=tuple(role), regions=tuple(region))
    except ValidationError as exc:
        fail(f"bad claims: {exc.errors(include_url=False)}", 2)
    # Where services.common.auth.LocalKey keeps the key the portal verifies with.
    key_file = (settings.var_dir / "auth" / "signing-key.pem").resolve()
    if not key_file.exists() and not create_key:
        fail(
            f"no signing key at {key_file}: a token signed with a new one would get 401 from a portal using another; "
            "run this where `tongyuan up` runs (or with its TONGYUAN_VAR_DIR), or pass --create-key",
            2,
        )
    _, local = build_verifier(settings)
    assert local is not None  # no JWKS URL: the embedded identity provider
    typer.echo(local.mint(principal, audience=settings.auth_audience, ttl=hours * 3600))


@cli.command()
def schemas(check: Annotated[bool, typer.Option("--check", help="fail if contracts/schemas is out of date")] = False) -> None:
    """Generate the JSON Schemas of the event types into contracts/schemas/."""
    from contracts import schemas as generator

    if check:
        out_of_date = generator.stale()
        if out_of_date:
            fail(f"out of date: {', '.join(out_of_date)} (run `make schemas`)")
        typer.echo("schemas are current")
        return
    for path in generator.write():
        typer.echo(f"wrote {path}")


def main() -> None:
    from services.common.schema import SchemaNotCurrent

    try:
        cli()
    except SchemaNotCurrent as exc:  # production: the operator upgrades; one line, no traceback
        typer.echo(str(exc), err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
