"""`tongyuan migrate EXPORT --config SITE.toml`: bring a legacy column's content in.

One of the publisher's commands (services/publisher/cli.py). A progress bar with rows/s and ETA on a
terminal; a `migration.progress` log line every few seconds otherwise (cron, CI, a pipe).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer

from services.common.terminal import fail, load_settings

if TYPE_CHECKING:
    from rich.progress import Progress

log = structlog.get_logger("tongyuan.migration")
LOG_EVERY_SECONDS = 5.0


def migrate(
    export: Annotated[Path, typer.Argument(help="the old site's export: .csv, .xlsx or .jsonl", exists=True, dir_okay=False)],
    config: Annotated[Path, typer.Option("--config", "-c", help="the site's migration config (.toml)", exists=True, dir_okay=False)],
    rejects: Annotated[Path | None, typer.Option("--rejects", help="reject file (.csv); default var/migrations/<site>.rejects.csv")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print rows per placement and rejects by reason; write nothing")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue after the last batch an interrupted run committed")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, max=5000, help="rows per transaction (a clerk's publish may wait for one)")] = 250,
) -> None:
    """Migrate a legacy disclosure column through the publisher's gate (source /migration/<site>)."""
    from services.bootstrap import Composition
    from services.common.db import BULK_WRITER_CACHE_MB
    from services.common.runtime import settle_garbage_collector
    from services.migration import ConfigError, SourceError, load_config

    from .gate.migration import CannotResume

    settings = load_settings()
    parts = Composition(settings, cache_mb=BULK_WRITER_CACHE_MB)
    directory = parts.directory
    try:
        site = load_config(config, directory())
        settle_garbage_collector()
        if dry_run:
            _dry_run(site, export, directory)
            return
        reject_file = rejects or settings.var_dir / "migrations" / f"{site.site}.rejects.csv"
        done = _migrate(site, export, parts, reject_file, resume=resume, batch=batch)
    except (ConfigError, SourceError, CannotResume) as exc:
        fail(f"tongyuan migrate: {exc}", 2)
    except KeyboardInterrupt:
        # The batch in hand rolled back; every committed one is kept with its checkpoint.
        fail("tongyuan migrate: interrupted; run it again with --resume to continue after the last committed batch", 130)
    typer.echo(
        f"{site.source}: {done.accepted} published, {done.unchanged} already there, {done.rejected} rejected ({reject_file}), "
        f"{done.skipped} blank or repeated rows skipped; the relay sends them on the bulk lane"
    )


def _dry_run(site: Any, export: Path, directory: Any) -> None:
    from services.migration import format_summary, read_legacy, summarise

    from .gate.migration import migration_principal

    with read_legacy(site, export, principal=migration_principal(site), catalog_directory=directory()) as stream:
        typer.echo(format_summary(summarise(stream, source=stream.source)))


def _migrate(site: Any, export: Path, parts: Any, reject_file: Path, *, resume: bool, batch: int) -> Any:
    from .gate.migration import migrate as run_migration

    with _Progress(export) as progress:
        return run_migration(
            site,
            export,
            publisher=parts.publisher,
            directory=parts.directory,
            rejects_path=reject_file,
            resume=resume,
            batch_size=batch,
            on_batch=progress.update,
        )


class _Progress:
    """rich's bar on a terminal, log lines elsewhere; total = the file's lines (a row's `line` is
    where it starts, so lines are the honest unit for CSV and JSON Lines)."""

    def __init__(self, export: Path, clock: Callable[[], float] = time.monotonic, report: Callable[..., None] | None = None):
        self.total = _count_lines(export)
        self.interactive = sys.stderr.isatty()
        self._clock = clock
        self._report = report or log.info
        self._bar: Progress | None = None
        self._first_line: int | None = None
        self._started = clock()
        self._last_log = self._started

    def __enter__(self) -> _Progress:
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("migrating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("migrate", total=self.total, rate="–")
        return self

    def update(self, progress) -> None:
        if self._first_line is None:
            self._first_line = progress.resumed_from
        now = self._clock()
        rate = (progress.line - self._first_line) / max(1e-6, now - self._started)
        if self._bar is not None:
            self._bar.update(self._task, completed=progress.line, rate=f"{rate:,.0f}")
            return
        if progress.line == self.total or now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            remaining = (self.total - progress.line) / rate if self.total and rate > 0 else None
            self._report(
                "migration.progress",
                line=progress.line,
                total_lines=self.total,
                rows_per_s=round(rate),
                eta_s=round(remaining) if remaining is not None else None,
                accepted=progress.accepted,
                unchanged=progress.unchanged,
                rejected=progress.rejected,
            )

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()


def _count_lines(path: Path) -> int | None:
    if path.suffix.lower() == ".xlsx":
        return None  # rows, not lines; the bar shows progress without a total
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count
