from __future__ import annotations

from pathlib import Path

import pytest

from contracts.identity import Principal
from services.migration import Item, load_config, read_legacy

SAMPLES = Path(__file__).parents[2] / "data" / "migration"
# The migration's own account: the gate authorises it like any other principal.
MIGRATOR = Principal(user="migration", roles=("admin",))


@pytest.fixture
def read_sample(directory):
    """Read a sample export end to end with its config: every item, in order."""

    def read(config_name: str, export_name: str, **options) -> list[Item]:
        config = load_config(SAMPLES / config_name, directory)
        with read_legacy(config, SAMPLES / export_name, principal=MIGRATOR, catalog_directory=directory, **options) as stream:
            return list(stream)

    return read
