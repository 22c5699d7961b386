"""The column store: listings and tombstones (versions: the projection contract, tests/unit/common/)."""

import pytest

from services.column.store import ColumnStore
from services.common.db import create_store_engine
from tests.factories import place, published, withdrawn


@pytest.fixture
def store(tmp_path):
    store = ColumnStore(create_store_engine(f"sqlite:///{tmp_path / 'column.db'}"))
    store.create()
    return store


def titles(store, region="4301", **filters):
    return [item.title for item in store.listing(region, **filters)[1]]


def test_a_tombstone_keeps_the_withdrawal_notice_a_late_publish_cannot_undo(store):
    store.apply([published(version=1)])
    store.apply([withdrawn(version=2)])
    store.apply([published(version=1, title="迟到的旧版本")])
    entry = store.entry("p1")
    assert entry.status == "withdrawn" and entry.withdrawal.explanation == "内容已过期" and entry.document is None


def test_listing_by_region_prefix_and_item(store):
    store.apply(
        [
            published("a", title="街道的", day=1),
            published("b", title="区里的", placements=[place("430102", "芙蓉区", "D14-02-01", "政策法规文件")], day=2),
            published("c", title="别的区", placements=[place("430103", "天心区")], day=3),
        ]
    )
    assert titles(store, "430102") == ["区里的", "街道的"]
    assert titles(store, "430102001") == ["街道的"]
    assert titles(store, "4301") == ["别的区", "区里的", "街道的"]
    assert titles(store, "4301", level2_id="D14-02-01") == ["区里的"]
    counts = store.counts_by_domain("430102")
    assert counts["D14"][0] == 2
    assert store.counts_by_item("430102", "D14") == {"D14-02": 2, "D14-02-01": 1, "D14-02-02": 1}


def test_a_publication_in_two_placements_is_listed_once(store):
    store.apply([published(placements=[place(), place("430102", "芙蓉区")])])
    total, items = store.listing("430102")
    assert total == 1 and len(items) == 1


def test_paging_is_newest_first_and_stable(store):
    store.apply([published(f"p{n:02d}", title=f"t{n:02d}", day=n % 3) for n in range(25)])
    pages = [store.listing("4301", page=p, per_page=10)[1] for p in (1, 2, 3)]
    ids = [i.publication_id for page in pages for i in page]
    assert len(ids) == 25 and len(set(ids)) == 25
    dates = [i.published_at for page in pages for i in page]
    assert dates == sorted(dates, reverse=True)
