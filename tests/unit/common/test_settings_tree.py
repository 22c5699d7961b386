"""One Settings tree: the bridge's part read from TONGYUAN_BRIDGE_*, every store's place by one rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import STORES, BridgeSettings, Settings

ROOT = Path(__file__).resolve().parents[3]


def test_the_bridge_settings_are_part_of_the_tree_and_read_from_their_own_variables(monkeypatch):
    monkeypatch.setenv("TONGYUAN_BRIDGE_PLATFORM_URL", "http://platform.example:8700")
    monkeypatch.setenv("TONGYUAN_BRIDGE_POLL_INTERVAL", "7.5")
    settings = Settings()
    assert settings.bridge.platform_url == "http://platform.example:8700"
    assert settings.bridge.poll_interval == 7.5
    assert Settings(bridge=BridgeSettings(platform="other")).bridge.platform == "other"


@pytest.mark.parametrize(
    ("variable", "value"), [("TONGYUAN_BRIDGE_POLL_INTERVAL", "0"), ("TONGYUAN_BRIDGE_PLATFORM", "Not A Name"), ("TONGYUAN_BRIDGE_REGIONS", "43x")]
)
def test_a_bad_bridge_variable_fails_every_process_at_start(variable, value, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_every_store_is_placed_by_one_rule(tmp_path):
    on_files = Settings(var_dir=tmp_path)
    for store in STORES:
        assert on_files.store_url(store) == f"sqlite:///{(tmp_path / f'{store}.db').resolve()}"
    shared = Settings(var_dir=tmp_path, database_url="postgresql://u@h/db")
    for store in ("publisher", "column", "embed", "supervision", "bridge"):
        assert shared.store_url(store) == "postgresql+psycopg://u@h/db"
    # The embedded index's ledger stays beside its text index, whatever the database.
    assert shared.store_url("search") == f"sqlite:///{(tmp_path / 'search.db').resolve()}"
    with pytest.raises(ValueError):
        shared.store_url("elsewhere")


def test_bad_configuration_is_one_line_naming_the_variable_not_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TONGYUAN_VAR_DIR": str(tmp_path), "TONGYUAN_BRIDGE_POLL_INTERVAL": "-1"}
    result = subprocess.run([sys.executable, "-m", "services.cli", "bridge", "unmapped"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bad configuration: TONGYUAN_BRIDGE_POLL_INTERVAL: Input should be greater than 0"]
