"""The publisher's commands: `tongyuan db upgrade|current|init`, `regions load`, `republish` and `migrate`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from services.common.terminal import commands, fail, load_settings

from .migration_cli import migrate

publisher_cli = commands()
db_cli = commands("The stores' schemas, and the publisher's reference data.")
regions_cli = commands("Administrative regions (2023 statistical division codes).")
publisher_cli.add_typer(db_cli, name="db")
publisher_cli.add_typer(regions_cli, name="regions")
publisher_cli.command()(migrate)


def _parts():
    from services.bootstrap import composed

    load_settings()
    return composed()


@db_cli.command("upgrade")
def db_upgrade(sql: Annotated[bool, typer.Option("--sql", help="print the SQL that upgrades empty databases instead of running it")] = False) -> None:
    """Bring every store's schema to the newest revision: the SQLite files under the var dir,
    or every store's tables in TONGYUAN_DATABASE_URL. Safe to run again, and beside running
    processes (each store's upgrade holds its write lock)."""
    from services.common import schema

    settings = load_settings()
    if sql:
        schema.upgrade_sql(settings, sys.stdout)
        return
    for store, (before, after) in schema.upgrade_all(settings).items():
        typer.echo(f"{store}: {before or 'empty'} -> {after}" if before != after else f"{store}: at {after}")


def _missing_sqlite_file(url: str) -> bool:
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and bool(parsed.database) and not Path(parsed.database or "").exists()


@db_cli.command("current")
def db_current() -> None:
    """Each store's schema revision, and the one this code needs (exit 1 if any is behind)."""
    from services.common import schema
    from services.common.db import create_store_engine

    settings = load_settings()
    behind = []
    for store in schema.stores_of(settings):
        url = settings.store_url(store)
        if _missing_sqlite_file(url):
            at = None  # asking must not create the file
        else:
            engine = create_store_engine(url)
            try:
                at = schema.current(engine, store)
            finally:
                engine.dispose()
        typer.echo(f"{store}: {at or 'empty'}")
        if at != schema.head():
            behind.append(store)
    typer.echo(f"head: {schema.head()}")
    if behind:
        fail(f"behind: {', '.join(behind)}: {schema.UPGRADE_HINT}")


@db_cli.command("init")
def db_init() -> None:
    """Upgrade every store's schema (`db upgrade`), then load the standard catalog and the
    Changsha regions into the publisher's store if it has none."""
    from services.common import schema

    schema.upgrade_all(load_settings())
    catalogs = _parts().catalogs
    current = catalogs.in_force()
    typer.echo(f"catalogs in force: {', '.join(c.key for c in current.values())}; {len(catalogs.regions())} regions")


@publisher_cli.command()
def republish(
    publication_id: Annotated[str | None, typer.Argument(help="with --force: the publication to repair")] = None,
    only: Annotated[str | None, typer.Option(help="one publication id")] = None,
    force: Annotated[bool, typer.Option("--force", help="re-emit one publication as a new version above every store's, replacing a forged one")] = False,
    above: Annotated[int, typer.Option(help="with --force: also above this version (one known to be on the topic still)", min=0)] = 0,
) -> None:
    """Put every publication's current state in the outbox again, to rebuild downstream stores.

    Versions are unchanged, so stores that already hold a publication ignore it. With --force,
    one publication is re-emitted as a new version that every store applies.
    """
    if force or publication_id:
        if not (force and publication_id) or only:
            fail("give --force and one publication id: tongyuan republish --force <publication_id>", 2)
        _force_republish(publication_id, above)
        return
    from services.catalog.editions import republish_catalogs

    from .gate.handlers import republish_all

    publisher = _parts().publisher
    # The catalogs first: a consumer rebuilding its store files publications under them.
    editions = 0 if only else republish_catalogs(publisher)
    count = republish_all(publisher, only=only)
    typer.echo(f"queued {editions} catalog editions and {count} publication events; the relay publishes them")


def _force_republish(publication_id: str, above: int) -> None:
    from services.operations import force_republish

    version, held = force_republish(load_settings(), publication_id, at_least=above)
    typer.echo("stores hold: " + ", ".join(f"{store} v{v}" if v is not None else f"{store} none" for store, v in held.items()))
    if version is None:
        fail(f"the publisher has no publication {publication_id}")
    typer.echo(f"queued {publication_id} as v{version}; the relay publishes it and every store takes it")


@regions_cli.command("load")
def regions_load(
    city: Annotated[list[str], typer.Option(help="a city code, e.g. 4301; repeatable")] = [],  # noqa: B006
    province: Annotated[list[str], typer.Option(help="a province code, e.g. 43; repeatable")] = [],  # noqa: B006
    everything: Annotated[bool, typer.Option("--all", help="the whole country")] = False,
) -> None:
    """Add regions to the publisher's directory (Changsha is loaded by default)."""
    from contracts.catalog import all_regions, regions_of_city, regions_of_province

    if not (city or province or everything):
        fail("name --city, --province or --all", 2)
    try:
        found = list(all_regions()) if everything else [r for c in city for r in regions_of_city(c)] + [r for p in province for r in regions_of_province(p)]
    except ValueError as exc:
        fail(str(exc))
    catalogs = _parts().catalogs
    before = catalogs.regions()
    with catalogs.writing() as store:
        store.save_regions(tuple(found))
    typer.echo(f"{len(catalogs.regions()) - len(before)} regions added ({len(found)} named)")
