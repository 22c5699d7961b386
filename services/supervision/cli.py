"""`tongyuan report`: the 通报 for a region on a date, from the supervision store.

The regions are the publisher's directory, from the composition root. Heavy imports happen
when the command runs, so `tongyuan --help` stays fast.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from services.common.terminal import commands, fail, load_settings

DateOption = dict(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD")
supervision_cli = commands()


@supervision_cli.command()
def report(
    region: Annotated[str, typer.Option("--region", help="the region whose units are reported, e.g. 4301 (Changsha) or a county")] = "4301",
    as_of: Annotated[datetime | None, typer.Option("--as-of", help="the date the measures are taken on; default: today (Beijing)", **DateOption)] = None,
    date_from: Annotated[
        datetime | None, typer.Option("--from", help="first publication date counted for timeliness; default: 1 January", **DateOption)
    ] = None,
    date_to: Annotated[datetime | None, typer.Option("--to", help="last publication date counted for timeliness; default: --as-of", **DateOption)] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="one domain, e.g. D14")] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="write the 通报 table here (.xlsx)")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write the printable report here (.html; print to PDF from a browser)")] = None,
    sort: Annotated[str, typer.Option("--sort", help="coverage | on_time | completeness | stale | late")] = "coverage",
) -> None:
    """The supervision 通报 of every unit under a region: ranking, coverage, timeliness, staleness, milestones."""
    from services.bootstrap import composed

    from .board import Query, build_board
    from .domain import SORTS
    from .reports import html_report, pct, xlsx_report

    load_settings()
    parts = composed()
    known = parts.catalogs.regions()
    if region not in known:
        fail(f"no region {region}", 2)
    if sort not in SORTS:
        fail(f"--sort must be one of {', '.join(SORTS)}", 2)
    query = Query.of(region, as_of.date() if as_of else None, date_from.date() if date_from else None, date_to.date() if date_to else None, domain, sort)
    if query.start > query.end or query.end > query.as_of:
        fail("need --from ≤ --to ≤ --as-of", 2)
    store = parts.supervision_store
    if domain and (store.catalogs().get("standard") is not None and store.catalogs()["standard"].domain(domain) is None):
        fail(f"no domain {domain}", 2)
    board = build_board(store, known, query)
    for unit in board.units:
        typer.echo(
            f"{unit.region.code}\t{unit.region.name}\t目录{pct(unit.completeness.share)}\t覆盖{pct(unit.coverage)}\t按时{pct(unit.timeliness.share)}"
            f"\t逾期{unit.timeliness.late}\t未更新{unit.stale_count}"
        )
    if xlsx:
        xlsx.write_bytes(xlsx_report(board))
        typer.echo(f"wrote {xlsx}")
    if html:
        html.write_text(html_report(board), encoding="utf-8")
        typer.echo(f"wrote {html} (open it in a browser and print to PDF)")
    unassessed = sum(board.unassessed.values())
    if unassessed:
        typer.echo(f"warning: {unassessed} publications could not be assessed: {board.calendar} does not cover their year; upgrade chinese-calendar", err=True)
