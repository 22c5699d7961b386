"""services/bootstrap.py: every part built from Settings, on first use, once per process."""

from __future__ import annotations

import pytest

from services import bootstrap
from services.bootstrap import Composition
from services.common import db
from services.common.settings import Settings, get_settings

PROVIDED = (
    "publisher",
    "directory",
    "column_store",
    "search_index",
    "embed_store",
    "supervision_store",
    "bridge_runtime",
    "workbook_limits",
    "on_catalog_change",
    "verifier",
    "templates",
    "settings",
)


def test_a_part_is_built_on_first_use_and_kept(tmp_path):
    parts = Composition(Settings(var_dir=tmp_path))
    assert parts.bridge_store is parts.bridge_store
    assert (tmp_path / "bridge.db").exists() and not (tmp_path / "column.db").exists()
    assert parts.column_store is parts.column_store and (tmp_path / "column.db").exists()


def test_a_bulk_writers_composition_opens_its_stores_with_the_larger_cache(tmp_path):
    parts = Composition(Settings(var_dir=tmp_path), cache_mb=db.BULK_WRITER_CACHE_MB)
    for engine in (parts.publisher.engine, parts.column_store.engine, parts.supervision_store.engine):
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -1024 * db.BULK_WRITER_CACHE_MB


def test_the_process_composition_follows_the_settings_it_was_made_from(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGYUAN_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        first = bootstrap.composed()
        assert bootstrap.composed() is first
        get_settings.cache_clear()
        assert bootstrap.composed() is not first
    finally:
        get_settings.cache_clear()


def test_a_group_without_a_dead_letter_store_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Composition(Settings(var_dir=tmp_path)).group_writes("tongyuan-publisher")


def test_the_portal_provides_every_part_by_name(tmp_path):
    from services.portal.app import create_app

    parts = Composition(Settings(var_dir=tmp_path, kafka_bootstrap=None))
    app = create_app(parts.settings, parts)
    for name in PROVIDED:
        assert getattr(app.state, name) is not None, name
    assert app.state.publisher is parts.publisher and app.state.column_store is parts.column_store
