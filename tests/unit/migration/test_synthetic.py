"""The benchmark's generator writes what it says it wrote, and the reader agrees."""

from __future__ import annotations

import pytest

from devtools.synthetic_export import write_synthetic_export
from services.migration import Planned, load_config, read_legacy, summarise

from .conftest import MIGRATOR


def test_synthetic_export_reads_back_as_counted(tmp_path, directory):
    export = write_synthetic_export(tmp_path, 3000)
    assert (export.rows, export.planned + export.unmapped + export.duplicates) == (3000, 3000)
    assert export.unmapped >= 20 and export.duplicates >= 10

    config = load_config(export.config_path, directory)
    with read_legacy(config, export.csv_path, principal=MIGRATOR, catalog_directory=directory) as stream:
        summary = summarise(stream)
    assert summary.rows_read == 3000
    assert summary.planned == export.planned
    assert summary.duplicates == export.duplicates
    assert summary.rejects == {"unmapped_path": export.unmapped}
    assert len(summary.placements) > 150, "rows spread over the catalog's level-2 items"
    size = export.csv_path.stat().st_size / 3000
    assert 1000 < size < 2600, f"about 1–2 KB of body a row, got {size:.0f} bytes a row"


def test_synthetic_export_is_deterministic(tmp_path):
    first = write_synthetic_export(tmp_path / "a", 500)
    second = write_synthetic_export(tmp_path / "b", 500)
    assert first.csv_path.read_bytes() == second.csv_path.read_bytes()
    assert first.config_path.read_text() == second.config_path.read_text()


def test_synthetic_export_runs_in_publication_order_with_a_few_rows_filed_late(tmp_path, directory):
    """As an old CMS's export does: the order its articles were written in. The stores' indexes
    on dates (and the migrated ids, which carry the date) see what a real migration shows them."""
    export = write_synthetic_export(tmp_path, 3000)
    config = load_config(export.config_path, directory)
    with read_legacy(config, export.csv_path, principal=MIGRATOR, catalog_directory=directory) as stream:
        days = [item.request.published_at.date() for item in stream if isinstance(item, Planned)]
    earlier = sum(1 for before, after in zip(days, days[1:], strict=False) if after < before)
    assert (days[-1] - days[0]).days > 3000, "ten years of items"
    assert 0.02 * len(days) < earlier < 0.12 * len(days), f"{earlier} of {len(days)} rows dated before the row above them"
    assert max(before - after for before, after in zip(days, days[1:], strict=False)).days <= 91


def test_synthetic_export_dated_at_random_on_request(tmp_path, directory):
    export = write_synthetic_export(tmp_path, 600, dates="random")
    config = load_config(export.config_path, directory)
    with read_legacy(config, export.csv_path, principal=MIGRATOR, catalog_directory=directory) as stream:
        days = [item.request.published_at.date() for item in stream if isinstance(item, Planned)]
    earlier = sum(1 for before, after in zip(days, days[1:], strict=False) if after < before)
    assert 0.35 * len(days) < earlier < 0.65 * len(days)
    with pytest.raises(ValueError, match="dates must be one of"):
        write_synthetic_export(tmp_path / "other", 10, dates="alphabetical")
