"""A store that writes a long batch in turns applies it exactly as it would in one go.

A part after a turn was given up sees the other writer's commit, and a publication's events
may fall in different parts (a newer version, then a replayed older one): each store must
still end at the newest version of each publication, whichever way the batch was cut. (The
supervision store writes each batch in one transaction: see bench/turns.py.)"""

from __future__ import annotations

import pytest

from services.column.store import ColumnStore
from services.common import db
from services.embed.store import EmbedStore
from services.indexer import embedded
from services.indexer.embedded import EmbeddedSearchIndex
from services.indexer.index import SearchQuery
from tests.factories import published, withdrawn


def _column(tmp_path):
    store = ColumnStore(db.create_store_engine(f"sqlite:///{tmp_path / 'column.db'}"))
    store.create()
    return store.apply, lambda: {pid: version for pid, (version, _status) in store.versions().items()}


def _embed(tmp_path):
    store = EmbedStore(db.create_store_engine(f"sqlite:///{tmp_path / 'embed.db'}"))
    store.create()
    return store.apply, lambda: {pid: version for pid, (version, _status) in store.versions().items()}


def _search(tmp_path):
    index = EmbeddedSearchIndex(f"sqlite:///{tmp_path / 'search.db'}")
    index.create_now()

    def versions():
        return {pid: index._version_of(pid) for pid in ("p1", "p2", "p3", "p4")} | {
            "titles": [hit.title for hit in index.search_now(SearchQuery(q="公告")).hits]
        }

    return index.apply_now, versions


STORES = {"column": _column, "embed": _embed, "search": _search}


@pytest.fixture(params=[False, True], ids=["nobody-waits", "a-writer-waits-at-every-part"])
def turns(request, monkeypatch):
    monkeypatch.setattr(db, "TURN_EVENTS", 2)
    if request.param:
        # Another writer is always queued: every part gets a transaction of its own.
        monkeypatch.setattr(db, "others_waiting", lambda engine: True)
        monkeypatch.setattr(embedded, "others_waiting", lambda engine: True)
    return request.param


@pytest.mark.parametrize("store", STORES)
def test_a_batch_written_in_parts_ends_at_each_publications_newest_version(store, turns, tmp_path):
    apply, versions = STORES[store](tmp_path)
    batch = [
        published("p1", 1, title="公告一 第1版"),
        published("p2", 1, title="公告二"),
        published("p1", 3, title="公告一 第3版"),  # part 2
        published("p3", 1, title="公告三"),
        published("p1", 2, title="公告一 第2版"),  # part 3: older than what part 2 wrote
        withdrawn("p2", 2),
        published("p4", 1, title="公告四"),  # part 4
    ]
    apply(batch)
    apply(batch)  # a redelivery of the whole batch changes nothing
    found = versions()
    assert {pid: found[pid] for pid in ("p1", "p2", "p3", "p4")} == {"p1": 3, "p2": 2, "p3": 1, "p4": 1}
    if store == "search":
        assert sorted(found["titles"]) == sorted(["公告一 第3版", "公告三", "公告四"])
