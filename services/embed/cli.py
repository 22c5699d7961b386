"""`tongyuan embed …`: the township portal registry and the 重大民生信息 rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contracts.catalog import regions_of_city
from services.common.terminal import commands, load_settings

from .domain import CANONICAL_DOMAIN_NAMES, RegistryError, check_rule_target

if TYPE_CHECKING:
    from .store import EmbedStore

embed_cli = commands("Township portal embedding: the portal registry and what counts as 重大民生信息.")
portals_cli = commands("Township portals (乡镇/街道门户网站) the county column links to.")
rules_cli = commands("Which catalog domains and items count as 重大民生信息.")
embed_cli.add_typer(portals_cli, name="portals")
embed_cli.add_typer(rules_cli, name="rules")

Cities = Annotated[list[str], typer.Option("--city", help="regions of this city are known (default 4301 长沙市); repeatable")]
ExtraCodes = Annotated[list[str], typer.Option("--region-code", help="also accept this region code as a township; repeatable")]


def _store() -> EmbedStore:
    from services.bootstrap import composed

    load_settings()
    return composed().embed_store


def _known(cities: list[str], extra: list[str]):
    from .registry import known_regions

    try:
        return known_regions(extra, cities or ["4301"])
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _refused(exc: RegistryError) -> typer.Exit:
    for problem in exc.problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"{len(exc.problems)} problem(s); nothing was changed", err=True)
    return typer.Exit(1)


@portals_cli.command("add")
def portals_add(
    region: Annotated[str, typer.Argument(help="the township's region code, e.g. 430102001")],
    portal: Annotated[str, typer.Option("--portal", help="the township portal's https:// address")],
    column: Annotated[str, typer.Option("--column", help="the https:// address of its 政务公开专栏")],
    replace: Annotated[bool, typer.Option("--replace", help="overwrite the township's current entry")] = False,
    city: Cities = [],  # noqa: B006
    region_code: ExtraCodes = [],  # noqa: B006
) -> None:
    """Register a township's portal (https only; the region must exist; no duplicates)."""
    from .registry import add_portal

    try:
        entry = add_portal(_store(), region, portal, column, known=_known(city, region_code), replace=replace)
    except RegistryError as exc:
        raise _refused(exc) from None
    typer.echo(f"{entry.region_code}\t{entry.portal_url}\t{entry.column_url}")


@portals_cli.command("remove")
def portals_remove(region: Annotated[str, typer.Argument(help="the township's region code")]) -> None:
    """Remove a township's portal; its sub-column links to its column page again."""
    if not _store().remove_portal(region.strip().upper()):
        typer.echo(f"no portal registered for {region}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {region}")


@portals_cli.command("list")
def portals_list(
    under: Annotated[str | None, typer.Option(help="only townships under this county or city code")] = None,
    missing: Annotated[bool, typer.Option("--missing", help="list the townships that have no portal yet instead")] = False,
    city: Cities = [],  # noqa: B006
) -> None:
    """The registered portals, or (--missing) the townships still without one."""
    from .registry import townships_lacking_portal

    store = _store()
    if missing:
        regions = {r.code: r for c in (city or ["4301"]) for r in regions_of_city(c)}
        lacking = townships_lacking_portal(store, regions, under=under)
        for region in lacking:
            typer.echo(f"{region.code}\t{region.name}")
        typer.echo(f"{len(lacking)} township(s) without a portal", err=True)
        return
    for code, portal in store.portals().items():
        if under is None or code.startswith(under):
            typer.echo(f"{code}\t{portal.portal_url}\t{portal.column_url}")


@portals_cli.command("import")
def portals_import(
    workbook: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an .xlsx with 区划代码, 门户网站地址 and 政务公开专栏地址 columns")],
    replace: Annotated[bool, typer.Option("--replace", help="the registry becomes exactly the file")] = False,
    city: Cities = [],  # noqa: B006
    region_code: ExtraCodes = [],  # noqa: B006
) -> None:
    """Import portals from Excel: all rows or none; every problem is reported by cell."""
    from .registry import import_portals

    try:
        portals = import_portals(_store(), workbook.read_bytes(), known=_known(city, region_code), replace_all=replace)
    except RegistryError as exc:
        raise _refused(exc) from None
    typer.echo(f"imported {len(portals)} portal(s){' (registry replaced)' if replace else ''}")


@portals_cli.command("export")
def portals_export(
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, metavar="FILE.xlsx", help="where to write the workbook")],
    with_missing_under: Annotated[str | None, typer.Option(help="also list this county's (or city's) townships without a portal, to fill in")] = None,
    city: Cities = [],  # noqa: B006
) -> None:
    """Export the registry to Excel in the layout `import` reads."""
    from .registry import export_portals

    store = _store()
    output.write_bytes(export_portals(store, _known(city, []), with_missing_under=with_missing_under))
    typer.echo(f"exported {len(store.portals())} portal(s)")


@rules_cli.command("list")
def rules_list() -> None:
    """The rules in force (the most specific target wins; a publication's own flag beats them all)."""
    for target, major in sorted(_store().rules().targets.items()):
        typer.echo(f"{'include' if major else 'exclude'}\t{target}\t{CANONICAL_DOMAIN_NAMES.get(target[:3], '')}")


def _change(target: str, major: bool | None) -> None:
    try:
        target = check_rule_target(target)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    flipped = _store().change_rules({target: major})
    typer.echo(f"{target}: {'include' if major else 'exclude' if major is False else 'cleared'}; {flipped} placement(s) reclassified")


@rules_cli.command("include")
def rules_include(target: Annotated[str, typer.Argument(help="a domain (D14) or item (D14-02, D14-02-03)")]) -> None:
    """Count a domain or item as 重大民生信息."""
    _change(target, True)


@rules_cli.command("exclude")
def rules_exclude(target: Annotated[str, typer.Argument(help="a domain (D14) or item (D14-02, D14-02-03)")]) -> None:
    """Do not count a domain or item (e.g. one item of an included domain)."""
    _change(target, False)


@rules_cli.command("clear")
def rules_clear(target: Annotated[str, typer.Argument(help="a domain or item with a rule")]) -> None:
    """Drop the rule for a target; the next less specific rule applies."""
    _change(target, None)


@rules_cli.command("reset")
def rules_reset() -> None:
    """Back to the default: the livelihood domains 救灾, 社会救助, 养老服务, 涉农补贴, 就业, 社会保险, 义务教育, 卫生健康, 保障性住房."""
    flipped = _store().change_rules({}, reset=True)
    typer.echo(f"rules reset to the defaults; {flipped} placement(s) reclassified")
