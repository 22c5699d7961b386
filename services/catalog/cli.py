"""`tongyuan catalog …`: catalog editions (import, export, derive, publish, diff, list)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.common.terminal import commands, fail, load_settings

catalog_cli = commands("Catalog editions: import, export, derive, publish, diff.")
Region = Annotated[str, typer.Option("--region", help='region code, or "standard" for the ministry guideline')]


def _publisher_and_regions() -> tuple[Any, dict[str, Any]]:
    from services.bootstrap import composed

    load_settings()
    parts = composed()
    return parts.publisher, parts.catalogs.regions()


def _catalogs() -> Any:
    from services.bootstrap import composed

    load_settings()
    return composed().catalogs


def _edition_key(text: str) -> tuple[str, str]:
    scope, _, edition = text.rpartition("@")
    return (scope or "standard"), edition


@catalog_cli.command("import")
def catalog_import(
    workbook: Annotated[Path, typer.Argument(help="an .xlsx in the standard table layout", exists=True, dir_okay=False)],
    region: Region,
    edition: Annotated[str, typer.Option(help="e.g. 2022")],
    draft: Annotated[bool, typer.Option("--draft", help="import without publishing")] = False,
) -> None:
    """Import a unit's catalog from Excel (all or nothing), then publish it."""
    from . import editions as catalogs
    from .xlsx_read import CatalogImportError

    publisher, regions = _publisher_and_regions()
    try:
        catalog = catalogs.import_edition(publisher, workbook.read_bytes(), scope=region, edition=edition, regions=regions, publish=not draft)
    except CatalogImportError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(exc.problems)} problem(s); nothing was imported", err=True)
        raise typer.Exit(1) from None
    except catalogs.CatalogRefused as exc:
        fail(str(exc))
    items = sum(len(i.items) for d in catalog.domains for i in d.level1)
    typer.echo(f"{catalog.key}: {items} level-2 items, {'draft' if draft else 'published'}")


@catalog_cli.command("export")
def catalog_export(
    region: Region,
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, metavar="FILE.xlsx", help="where to write the workbook")],
    edition: Annotated[str | None, typer.Option(help="default: the edition in force for the region")] = None,
) -> None:
    """Export a catalog edition to Excel in the standard table layout."""
    from contracts.catalog import effective_catalog

    from .xlsx_write import export_catalog

    catalogs = _catalogs()
    if edition:
        found = catalogs.edition(region, edition)
        catalog = found[0] if found else None
    else:
        in_force = catalogs.in_force()
        catalog = effective_catalog(region, catalogs.regions(), in_force) if region != "standard" else in_force.get("standard")
    if catalog is None:
        fail(f"no catalog for {region} {edition or ''}".rstrip())
    output.write_bytes(export_catalog(catalog))
    typer.echo(f"exported {catalog.key}")


@catalog_cli.command("derive")
def catalog_derive(region: Region, edition: Annotated[str, typer.Option()], parent: Annotated[str | None, typer.Option("--from")] = None) -> None:
    """Start a new draft edition as a copy of its parent (the nearest ancestor's current one)."""
    from . import editions as catalogs

    publisher, regions = _publisher_and_regions()
    try:
        catalog = catalogs.derive_edition(publisher, scope=region, edition=edition, regions=regions, parent_key=parent)
    except catalogs.CatalogRefused as exc:
        fail(str(exc))
    typer.echo(f"{catalog.key}: draft, derived from {catalog.derived_from}")


@catalog_cli.command("publish")
def catalog_publish(region: Region, edition: Annotated[str, typer.Option()]) -> None:
    """Publish a draft edition: it becomes immutable and the one in force for its unit."""
    from . import editions as catalogs

    publisher, regions = _publisher_and_regions()
    try:
        reissued = catalogs.publish_edition(publisher, scope=region, edition=edition, regions=regions)
    except catalogs.CatalogRefused as exc:
        fail(str(exc))
    typer.echo(f"published {region}@{edition}; {reissued} publication(s) re-issued under renamed items")


@catalog_cli.command("diff")
def catalog_diff(edition_a: str, edition_b: str) -> None:
    """What changed between two editions (scope@edition, or a bare edition of the standard)."""
    from contracts.catalog import diff_catalogs

    found = []
    with _catalogs().reading() as store:
        for text in (edition_a, edition_b):
            edition = store.edition(*_edition_key(text))
            if edition is None:
                fail(f"no edition {text}")
            found.append(edition[0])
    old, new = found
    changes = diff_catalogs(old, new)
    names = {**_names(old), **_names(new)}
    for item in changes.added:
        typer.echo(f"+ {item} {names[item]}")
    for item in changes.dropped:
        typer.echo(f"- {item} {names[item]}")
    for rename in changes.renamed:
        typer.echo(f"~ {rename.id} {rename.old} → {rename.new}")
    for item, attributes in changes.changed:
        typer.echo(f"* {item} {names[item]}: {', '.join(attributes)}")
    if changes.empty:
        typer.echo("no differences")


def _names(catalog) -> dict[str, str]:
    names = {}
    for domain in catalog.domains:
        names[domain.code] = domain.name
        for level1 in domain.level1:
            names[level1.id] = f"{domain.name} / {level1.name}"
            for level2 in level1.items:
                names[level2.id] = f"{domain.name} / {level1.name} / {level2.name}"
    return names


@catalog_cli.command("list")
def catalog_list() -> None:
    """Every edition with its status."""
    with _catalogs().reading() as store:
        for row in store.editions():
            typer.echo(f"{row['scope']}@{row['edition']}\t{row['status']}\tv{row['version'] or '-'}\tfrom {row['derived_from'] or '-'}")
