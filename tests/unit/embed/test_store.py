"""The embed store applies versions in order, idempotently; withdrawals leave every feed;
the rules decide what counts as 重大民生信息 and a change of them reclassifies what is stored."""

import itertools

import pytest

from contracts.events import PublicationData, PublishedEvent
from services.bootstrap import for_consumers
from services.common.db import create_store_engine
from services.common.faust_consumer import create_consumer as consumer_app
from services.common.settings import Settings
from services.embed.app import GROUP, create_consumer
from services.embed.store import EmbedStore
from tests.agents import feed_agent
from tests.factories import place, published, withdrawn

TOWNSHIP, COUNTY, CITY = "430102001", "430102", "4301"
SCOPES = (TOWNSHIP, COUNTY, CITY)


@pytest.fixture
def store(tmp_path):
    store = EmbedStore(create_store_engine(f"sqlite:///{tmp_path / 'embed.db'}"))
    store.create()
    return store


def ids(store, scope=TOWNSHIP, **filters):
    return [item.publication_id for item in store.major_items(scope, **filters)]


def feeds(store) -> dict:
    """Everything a feed could show, for every scope and per domain."""
    return {
        scope: (
            [(i.publication_id, i.title) for i in store.major_items(scope)],
            {d: [i.publication_id for i in items] for d, items in store.major_by_domain(scope).items()},
        )
        for scope in SCOPES
    }


def versions(store) -> tuple:
    return tuple(store.state(scope).version for scope in SCOPES)


def flagged(publication_id="f1", flag=True, level2="D01-01-01", version=1):
    """A publication carrying the proposed `major_livelihood` field, before contracts have it."""

    class Flagged(PublicationData):
        major_livelihood: bool | None = None

    event = published(publication_id, version, placements=[place(level2=level2)])
    return PublishedEvent(id=event.id, source=event.source, subject=publication_id, data=Flagged(**event.data.model_dump(), major_livelihood=flag))


def test_a_livelihood_publication_reaches_the_township_county_and_city_feeds(store):
    store.apply([published("a")])
    assert ids(store, TOWNSHIP) == ids(store, COUNTY) == ids(store, CITY) == ["a"]
    assert ids(store, "430103") == []
    assert versions(store) == (1, 1, 1)


def test_a_county_feed_aggregates_its_townships_and_its_own_items_each_once(store):
    store.apply(
        [
            published("t", day=1),
            published("c", placements=[place(COUNTY, "芙蓉区", "D14-02-01")], day=2),
            published("both", placements=[place(), place(COUNTY, "芙蓉区"), place(level2="D14-02-03")], day=3),
            published("elsewhere", placements=[place("430103001", "天心区街道")], day=4),
        ]
    )
    assert ids(store, COUNTY) == ["both", "c", "t"]
    assert ids(store, TOWNSHIP) == ["both", "t"]
    assert [i.publication_id for i in store.major_by_domain(COUNTY)["D14"]] == ["both", "c", "t"]


def test_duplicates_change_nothing_not_even_the_etag_counters(store):
    event = published(title="第一版")
    store.apply([event])
    before, counters = feeds(store), versions(store)
    store.apply([event, event])
    store.apply([published(title="同版本重投")])  # a replay: same version, new event id
    assert feeds(store) == before and versions(store) == counters


def test_every_order_and_batching_of_the_same_events_ends_in_the_same_feeds(tmp_path):
    events = [
        published("p1", 1, title="v1"),
        published("p1", 2, title="v2", placements=[place(level2="D15-01-01")]),
        withdrawn("p1", 3),
        published("p1", 4, title="v4"),
        published("p2", 1, title="other"),
        withdrawn("p2", 2),
        published("p3", 1, title="stays"),
    ]
    outcomes = []
    for n, order in enumerate(itertools.permutations(range(len(events)))):
        if n % 211:  # a spread of the 5,040 orders keeps the test fast
            continue
        store = EmbedStore(create_store_engine(f"sqlite:///{tmp_path / f'{n}.db'}"))
        store.create()
        ordered = [events[i] for i in order]
        store.apply(ordered[:3])
        store.apply(ordered[3:])
        store.apply(ordered)  # and everything again
        outcomes.append(feeds(store))
        store.engine.dispose()
    assert len(outcomes) > 20 and all(outcome == outcomes[0] for outcome in outcomes)
    assert outcomes[0][TOWNSHIP][0] == [("p1", "v4"), ("p3", "stays")]


def test_a_withdrawal_leaves_every_feed_and_a_late_older_publish_cannot_bring_it_back(store):
    store.apply([published("a", placements=[place(), place(level2="D14-02-03"), place(COUNTY, "芙蓉区")]), published("b", day=1)])
    before = versions(store)
    store.apply([withdrawn("a", 2)])
    for scope in SCOPES:
        assert ids(store, scope) == ["b"]
        assert ids(store, scope, domain_code="D14") == ["b"]
        assert "a" not in [i.publication_id for items in store.major_by_domain(scope).values() for i in items]
    assert all(after > was for after, was in zip(versions(store), before, strict=True))
    store.apply([published("a", 1, title="迟到的旧版本")])
    assert ids(store, COUNTY) == ["b"] and store.versions()["a"] == (2, "withdrawn")


def test_moving_a_publication_takes_it_out_of_the_old_townships_feed(store):
    store.apply([published("a")])
    before = store.state(TOWNSHIP).version
    store.apply([published("a", 2, placements=[place("430103001", "天心区某街道")])])
    assert ids(store, TOWNSHIP) == [] and ids(store, "430103001") == ["a"] and ids(store, CITY) == ["a"]
    assert store.state(TOWNSHIP).version > before


def test_other_domains_stay_out_and_do_not_touch_the_counters(store):
    store.apply([published("plan", placements=[place(level2="D01-01-01")])])
    assert ids(store, CITY) == [] and versions(store) == (0, 0, 0)


def test_a_publication_flagged_explicitly_counts_whatever_its_domain(store):
    store.apply([flagged("f1", True, "D01-01-01"), flagged("f2", False, "D14-02-02")])
    assert ids(store) == ["f1"]
    assert list(store.major_by_domain(TOWNSHIP)) == ["D01"]


def test_changing_the_rules_reclassifies_stored_items_and_changes_every_etag(store):
    store.apply(
        [published("a"), published("b", placements=[place(level2="D14-02-03")], day=1), published("plan", placements=[place(level2="D01-01-01")], day=2)]
    )
    rules_before = store.state(TOWNSHIP).rules_version
    assert store.change_rules({"D14-02-03": False, "D01": True}) == 2
    assert ids(store) == ["plan", "a"]
    assert store.state(CITY).rules_version > rules_before
    assert store.change_rules({"D14-02-03": None}) == 1 and ids(store) == ["plan", "b", "a"]
    assert store.change_rules({}, reset=True) == 1 and ids(store) == ["b", "a"]
    assert store.rules().targets == {code: True for code in ("D13", "D14", "D15", "D17", "D18", "D19", "D20", "D21", "D24")}


def test_rules_are_seeded_once_and_then_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'embed.db'}"
    first = EmbedStore(create_store_engine(url))
    first.create()
    first.change_rules({"D14": False})
    again = EmbedStore(create_store_engine(url))
    again.create()
    assert again.rules().targets["D14"] is False


def test_items_per_domain_are_the_newest_few(store):
    store.apply([published(f"p{n:02d}", day=n) for n in range(8)])
    newest = store.major_by_domain(TOWNSHIP, per_domain=5)["D14"]
    assert [i.publication_id for i in newest] == ["p07", "p06", "p05", "p04", "p03"]
    assert [i.publication_id for i in store.major_items(TOWNSHIP, limit=3)] == ["p07", "p06", "p05"]


def test_the_consumer_agent_applies_through_the_same_loop_as_every_consumer(tmp_path, store):
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path, consumer_batch_within=0.01)
    app = consumer_app(GROUP, store.projection(), settings, heartbeat=lambda stats: None)
    raw = [
        published(version=2, title="第二版").model_dump_json().encode(),
        published(version=1).model_dump_json().encode(),
        withdrawn(version=3).model_dump_json().encode(),
    ]
    feed_agent(app.agents[f"{GROUP}.apply"], raw, lambda: app.tongyuan_stats.applied + app.tongyuan_stats.skipped >= len(raw))
    assert store.versions()["p1"] == (3, "withdrawn") and ids(store, CITY) == []


def test_wiring_uses_its_own_group_and_store(tmp_path):
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path)
    assert settings.store_url("embed") == f"sqlite:///{(tmp_path / 'embed.db').resolve()}"
    assert Settings(database_url="postgresql://u@h/db").store_url("embed") == "postgresql+psycopg://u@h/db"
    app = create_consumer(for_consumers(settings))
    assert app.conf.id == GROUP and f"{GROUP}.apply" in app.agents
    assert (tmp_path / "embed.db").exists()
