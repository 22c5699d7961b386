"""Reading a legacy site's export into publish requests: `tongyuan migrate`'s pure side.

A legacy export (CSV, xlsx or JSON Lines, one row per item) and a per-site TOML config go in;
a stream of `Planned` requests, `Reject`s and `Skipped` rows comes out, one item per source
record, in file order. Nothing here writes anywhere but the reject file; the publisher's gate
does the rest.

    config = load_config(Path("changsha-county.toml"), directory)
    with read_legacy(config, Path("export.csv"), principal=actor, catalog_directory=directory) as stream:
        summary = summarise(stream)
    print(format_summary(summary))
"""

from .config import ConfigError, MigrationConfig, load_config
from .mapping import CatalogDirectory, Placer, Target, build_placer, normalise_path
from .outcomes import Item, Planned, Reject, Skipped
from .rejects import RejectWriter, read_rejects
from .sources import SourceError
from .stream import LegacyStream, read_legacy
from .summary import MigrationSummary, format_summary, summarise

__all__ = [
    "CatalogDirectory",
    "ConfigError",
    "Item",
    "LegacyStream",
    "MigrationConfig",
    "MigrationSummary",
    "Placer",
    "Planned",
    "Reject",
    "RejectWriter",
    "Skipped",
    "SourceError",
    "Target",
    "build_placer",
    "format_summary",
    "load_config",
    "normalise_path",
    "read_legacy",
    "read_rejects",
    "summarise",
]
