"""The consumers' own copy of the catalog editions in force (services/common/catalog_copy.py)."""

from __future__ import annotations

from sqlalchemy import MetaData

from contracts.catalog import standard_catalog
from services.common.catalog_copy import CatalogCopy, catalog_copy_table, keep_newest, newest_by_scope
from services.common.db import create_store_engine, writing
from tests.factories import catalog_changed


def _copy():
    engine = create_store_engine("sqlite://")
    metadata = MetaData()
    table = catalog_copy_table(metadata, "test")
    metadata.create_all(engine)
    return engine, table, CatalogCopy(engine, table, ttl=60.0)


def _county(edition: str):
    return standard_catalog().model_copy(update={"scope": "430102", "edition": edition})


def test_the_newest_of_a_batch_wins_per_scope():
    events = [
        catalog_changed(_county("a"), version=1),
        catalog_changed(_county("c"), version=3),
        catalog_changed(_county("b"), version=2),
        catalog_changed(version=1),
    ]
    newest = newest_by_scope(events)
    assert {scope: event.data.edition for scope, event in newest.items()} == {"430102": "c", "standard": standard_catalog().edition}


def test_a_late_older_edition_never_moves_a_scope_back():
    engine, table, copy = _copy()
    with writing(engine) as connection:
        keep_newest(connection, table, [catalog_changed(_county("2023"), version=2)])
    with writing(engine) as connection:
        keep_newest(connection, table, [catalog_changed(_county("2022"), version=1)])  # a replay, delivered late
    assert copy.current()["430102"].edition == "2023"


def test_unchanged_scopes_stay_the_same_objects_and_expire_shows_a_change_at_once():
    engine, table, copy = _copy()
    with writing(engine) as connection:
        keep_newest(connection, table, [catalog_changed(version=1), catalog_changed(_county("2022"), version=1)])
    first = copy.current()
    with writing(engine) as connection:
        keep_newest(connection, table, [catalog_changed(_county("2023"), version=2)])
    assert copy.current()["430102"].edition == "2022"  # within the ttl: not looked up again
    copy.expire()
    second = copy.current()
    assert second["430102"].edition == "2023"
    assert second["standard"] is first["standard"]  # not parsed again: its version did not move


def test_an_empty_copy_is_looked_up_again_at_once():
    engine, table, copy = _copy()
    assert copy.current() == {}
    with writing(engine) as connection:  # written by another process's store: no expire() here
        keep_newest(connection, table, [catalog_changed(version=1)])
    assert set(copy.current()) == {"standard"}
