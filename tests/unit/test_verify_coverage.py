"""`tongyuan verify` compares every store (supervision included) and every catalog copy with
the publisher; `tongyuan dlq replay` applies a dead catalog edition with the group's catalog write."""

import asyncio

from sqlalchemy import select

from services.common.consuming import parse_catalog_event, parse_publication_event
from services.common.settings import Settings
from services.operations import DeadLetter, editions_in_force, replay_dead_letters, verify_stores
from services.publisher.app import bootstrap
from services.publisher.gate import handlers
from services.publisher.tables import outbox
from tests.conftest import ADMIN, draft
from tests.factories import catalog_changed, published


def test_the_edition_in_force_is_the_newest_published_one_of_each_scope():
    rows = [
        {"scope": "standard", "status": "published", "version": 1},
        {"scope": "standard", "status": "published", "version": 2},
        {"scope": "430121", "status": "draft", "version": None},
    ]
    assert editions_in_force(rows) == {"standard": 2}


def test_a_dead_catalog_edition_is_replayed_with_the_catalog_write():
    publications, editions = [], []
    letters = [
        DeadLetter("tongyuan-supervision", 0, n, "o", "e", raw)
        for n, raw in enumerate([published("p1").model_dump_json().encode(), catalog_changed().model_dump_json().encode()])
    ]
    result = replay_dead_letters(letters, publications.extend, editions.extend)
    assert result.applied == 2 and not result.still_failing
    assert len(publications) == 1 and len(editions) == 1


def test_verify_finds_a_store_and_a_catalog_copy_that_missed_events(tmp_path, directory):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    publisher = bootstrap(settings)
    handlers.publish(principal=ADMIN, draft=draft(title="公告"), publisher=publisher, directory=directory)
    with publisher.engine.connect() as connection:
        rows = connection.execute(select(outbox.c.topic, outbox.c.payload).order_by(outbox.c.id)).all()
    catalogs = [parse_catalog_event(payload) for topic, payload in rows if topic == "tongyuan.catalog.v1"]
    publications = [parse_publication_event(payload) for topic, payload in rows if topic == "tongyuan.publications.v1"]
    from services.column.app import build_store as column
    from services.embed.app import build_store as embed
    from services.indexer.app import build_index
    from services.supervision.app import build_store as supervision

    column_store = column(settings)
    column_store.apply_catalogs(catalogs)
    column_store.apply(publications)
    asyncio.run(build_index(settings).apply(publications))
    embed(settings).apply(publications)
    # Supervision lost everything (its events were on a broker that lost its log).
    count, differences = verify_stores(settings)
    assert count == 1
    assert {d.store for d in differences} == {"supervision", "catalog:supervision"}
    supervision(settings).apply_catalogs(catalogs)
    supervision(settings).apply(publications)
    assert verify_stores(settings) == (1, [])
