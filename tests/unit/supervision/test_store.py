"""The supervision store keeps its roll-ups exact as publications arrive, change and go."""

import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import case, func, select

from contracts.catalog import derive_catalog, localise, standard_catalog
from contracts.events import CatalogAttributes, PublishedEvent
from services.bootstrap import for_consumers
from services.common.consuming import ConsumerStats
from services.common.db import create_store_engine
from services.common.settings import Settings
from services.supervision.app import create_consumer, heartbeat_status, heartbeat_writer
from services.supervision.calendar import WorkCalendar, official_calendar
from services.supervision.domain import UnitCounts, catalog_profile, count_unit
from services.supervision.store import SupervisionStore, filings, items, months
from tests.agents import feed_agent
from tests.conftest import store_backends, store_engine
from tests.factories import catalog_changed, place, published, withdrawn

TOWN = "430102001"
BEIJING_NOON = timedelta(hours=4)  # 12:00 in Beijing is 04:00 UTC


@pytest.fixture(params=store_backends())
def store(request, tmp_path):
    """The store on SQLite, and on PostgreSQL (a fresh database) when TONGYUAN_TEST_PG_URL is set:
    the roll-ups use dialect-specific upserts and two-argument min/max."""
    with store_engine(request.param, tmp_path, "supervision") as engine:
        store = SupervisionStore(engine)
        store.create()
        yield store


def filed(pid, formed, published_on, *, version=1, level2="D14-02-02", region=TOWN, time_limit=None, placements=None) -> PublishedEvent:
    event = published(pid, version, placements=placements or [place(region, level2=level2)])
    data = event.data.model_copy(
        update={
            "formed_at": formed,
            "published_at": datetime.combine(published_on, datetime.min.time(), tzinfo=timezone.utc) + BEIJING_NOON,
            "catalog": CatalogAttributes(time_limit=time_limit),
        }
    )
    return event.model_copy(update={"data": data})


def item_row(store, unit=TOWN, level2="D14-02-02"):
    with store.engine.connect() as connection:
        return connection.execute(select(items).where(items.c.unit == unit, items.c.level2 == level2)).mappings().first()


def month_rows(store):
    with store.engine.connect() as connection:
        return {(r.unit, r.domain, r.month): (r.filings, r.on_time, r.late) for r in connection.execute(select(months))}


def test_a_publication_is_assessed_once_on_arrival(store):
    store.apply([filed("p1", date(2026, 9, 28), date(2026, 11, 2))])
    with store.engine.connect() as connection:
        row = connection.execute(select(filings)).mappings().one()
    assert (row["status"], row["deadline"], row["days_late"], row["working_days"]) == ("late", date(2026, 10, 30), 1, 21)
    assert month_rows(store) == {(TOWN, "D14", 202611): (1, 0, 1)}


def test_duplicates_and_older_versions_change_nothing(store):
    newer = filed("p1", date(2026, 9, 28), date(2026, 10, 28), version=2)
    store.apply([newer])
    before = (dict(item_row(store)), month_rows(store))
    store.apply([newer, filed("p1", date(2026, 9, 28), date(2026, 11, 20), version=1)])
    assert (dict(item_row(store)), month_rows(store)) == before
    assert item_row(store)["on_time"] == 1


def test_a_revision_moves_its_counts_and_keeps_first_and_last_exact(store):
    store.apply(
        [filed("a", date(2026, 3, 2), date(2026, 3, 5)), filed("b", date(2026, 5, 6), date(2026, 5, 8)), filed("c", date(2026, 6, 1), date(2026, 6, 3))]
    )
    row = item_row(store)
    assert (row["live"], row["first_on"], row["last_on"]) == (3, date(2026, 3, 5), date(2026, 6, 3))
    # "c" is revised into another item: the old item's newest date falls back to "b".
    store.apply([filed("c", date(2026, 6, 1), date(2026, 6, 3), version=2, level2="D14-02-01")])
    assert (item_row(store)["live"], item_row(store)["last_on"]) == (2, date(2026, 5, 8))
    assert item_row(store, level2="D14-02-01")["live"] == 1
    assert month_rows(store)[(TOWN, "D14", 202606)] == (1, 1, 0)


def test_a_withdrawal_removes_the_content_and_a_late_replay_cannot_bring_it_back(store):
    store.apply([filed("a", date(2026, 3, 2), date(2026, 3, 5)), filed("b", date(2026, 5, 6), date(2026, 5, 8))])
    store.apply([withdrawn("a", version=2)])
    assert (item_row(store)["live"], item_row(store)["first_on"]) == (1, date(2026, 5, 8))
    assert (TOWN, "D14", 202603) not in month_rows(store)
    store.apply([filed("a", date(2026, 3, 2), date(2026, 3, 5), version=1)])
    assert item_row(store)["live"] == 1
    store.apply([withdrawn("b", version=2)])
    assert item_row(store) is None and month_rows(store) == {}


def test_item_states_on_an_earlier_date(store):
    store.apply(
        [filed("a", date(2026, 3, 2), date(2026, 3, 5)), filed("b", date(2026, 4, 10), date(2026, 4, 14)), filed("c", date(2026, 5, 29), date(2026, 6, 1))]
    )
    now = store.item_states([TOWN], date(2026, 11, 1), count=True)[TOWN]["D14-02-02"]
    assert (now.live, now.first_on, now.latest_on) == (3, date(2026, 3, 5), date(2026, 6, 1))
    then = store.item_states([TOWN], date(2026, 5, 1), count=True)[TOWN]["D14-02-02"]
    assert (then.live, then.first_on, then.latest_on) == (2, date(2026, 3, 5), date(2026, 4, 14))
    assert store.item_states([TOWN], date(2026, 3, 4)) == {}
    uncounted = store.item_states([TOWN], date(2026, 5, 1))[TOWN]["D14-02-02"]  # what the ranking pages read
    assert (uncounted.live, uncounted.latest_on) == (None, date(2026, 4, 14))


def test_timeliness_of_any_window_equals_counting_the_filings(store):
    rng = random.Random(7)
    events, truth = [], []
    for n in range(400):
        published_on = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
        formed = published_on - timedelta(days=rng.randrange(60))
        unit = rng.choice([TOWN, "430102", "430102002"])
        events.append(filed(f"p{n}", formed, published_on, region=unit, level2=rng.choice(["D14-02-01", "D14-02-02", "D20-01-01"])))
    for start in range(0, len(events), 97):
        store.apply(events[start : start + 97])
    with store.engine.connect() as connection:
        truth = connection.execute(select(filings.c.unit, filings.c.published_on, filings.c.status)).all()
    for _ in range(30):
        a = date(2026, 1, 1) + timedelta(days=rng.randrange(320))
        b = a + timedelta(days=rng.randrange(120))
        got = store.timeliness([TOWN, "430102"], a, b)
        for unit in (TOWN, "430102"):
            expected = sum(1 for u, day, status in truth if u == unit and a <= day <= b and status == "late")
            assert sum(t.late for t in got.get(unit, {}).values()) == expected, (a, b)
            expected = sum(1 for u, day, _ in truth if u == unit and a <= day <= b)
            assert sum(t.total for t in got.get(unit, {}).values()) == expected, (a, b)


def test_a_second_item_takes_its_limit_from_the_catalog_in_force(store):
    county = derive_catalog(standard_catalog(), scope="430102", edition="2023")
    county = localise(county, specialise={"D14-02-01": {"time_limit": "实时公开"}})
    store.apply_catalogs([catalog_changed(), catalog_changed(county)])
    # Formed Friday 9/18, published Tuesday 9/22: in time for 20 working days, late for 实时.
    event = filed("p", date(2026, 9, 18), date(2026, 9, 22), placements=[place(TOWN, level2="D14-02-02"), place(TOWN, level2="D14-02-01")])
    store.apply([event])
    with store.engine.connect() as connection:
        statuses = dict(connection.execute(select(filings.c.level2, filings.c.status)).tuples().all())
    assert statuses == {"D14-02-02": "on_time", "D14-02-01": "late"}


def test_catalog_editions_are_kept_with_their_publication_date(store):
    county = derive_catalog(standard_catalog(), scope="430102", edition="2022")
    first, second = catalog_changed(county, version=1), catalog_changed(county.model_copy(update={"edition": "2023"}), version=2)
    first = first.model_copy(update={"time": datetime(2022, 7, 20, 2, tzinfo=timezone.utc)})
    second = second.model_copy(update={"time": datetime(2023, 3, 1, 2, tzinfo=timezone.utc)})
    store.apply_catalogs([second])
    store.apply_catalogs([first, first])
    assert store.catalogs()["430102"].edition == "2023"
    assert store.own_catalog_since(["430102", TOWN]) == {"430102": date(2022, 7, 20)}


def test_filings_a_former_calendar_could_not_assess_are_reassessed(tmp_path):
    url = f"sqlite:///{tmp_path / 'supervision.db'}"
    official = official_calendar()
    older = WorkCalendar(official.is_workday, official.years[0], 2025, source="chinese-calendar (older)")
    before = SupervisionStore(create_store_engine(url), calendar=older)
    before.create()
    before.apply([filed("p1", date(2026, 9, 28), date(2026, 11, 2))])
    assert before.unassessed([TOWN]) == {TOWN: 1}
    assert month_rows(before) == {(TOWN, "D14", 202611): (1, 0, 0)}
    after = SupervisionStore(create_store_engine(url), calendar=official)
    assert after.reassess() == 1
    assert after.unassessed([TOWN]) == {}
    assert month_rows(after) == {(TOWN, "D14", 202611): (1, 0, 1)}
    assert (item_row(after)["late"], item_row(after)["max_days_late"]) == (1, 1)
    assert after.reassess() == 0


def test_the_consumer_agent_applies_through_the_store(tmp_path):
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path, consumer_batch_within=0.01)
    app = create_consumer(for_consumers(settings))
    events = [filed("p1", date(2026, 9, 28), date(2026, 10, 28)).model_dump_json().encode(), catalog_changed().model_dump_json().encode()]
    feed_agent(app.agents["tongyuan-supervision.apply"], events, lambda: app.tongyuan_stats.applied >= 1)
    store = SupervisionStore(create_store_engine(settings.store_url("supervision")))
    assert store.item_states([TOWN], date(2026, 11, 1), count=True)[TOWN]["D14-02-02"].live == 1
    assert app.tongyuan_stats.skipped == 1  # a catalog event on the publications stream is not a publication
    assert "tongyuan-supervision.catalog" in app.agents
    assert "supervision.db" in settings.store_url("supervision")
    heartbeat_writer(store)(ConsumerStats(applied=1, lag=0))
    assert [(w["group_id"], w["applied"]) for w in heartbeat_status(store, within=60)] == [("tongyuan-supervision", 1)]


def test_roll_ups_equal_a_recount_after_a_random_stream(store):
    rng = random.Random(11)
    versions: dict[str, int] = {}
    batch = []
    for n in range(600):
        pid = f"p{rng.randrange(150)}"
        versions[pid] = versions.get(pid, 0) + 1
        if rng.random() < 0.15:
            batch.append(withdrawn(pid, version=versions[pid]))
        else:
            published_on = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
            batch.append(
                filed(
                    pid,
                    published_on - timedelta(days=rng.randrange(50)),
                    published_on,
                    version=versions[pid],
                    region=rng.choice([TOWN, "430102"]),
                    level2=rng.choice(["D14-02-01", "D14-02-02"]),
                )
            )
        if len(batch) == 37 or n == 599:
            rng.shuffle(batch)  # order is not assumed: versions decide
            store.apply(batch)
            batch = []
    with store.engine.connect() as connection:
        recount = {
            (r.unit, r.level2): (r.n, r.first, r.last, r.late)
            for r in connection.execute(
                select(
                    filings.c.unit,
                    filings.c.level2,
                    func.count().label("n"),
                    func.min(filings.c.published_on).label("first"),
                    func.max(filings.c.published_on).label("last"),
                    func.sum(case((filings.c.status == "late", 1), else_=0)).label("late"),
                ).group_by(filings.c.unit, filings.c.level2)
            )
        }
        rolled = {(r.unit, r.level2): (r.live, r.first_on, r.last_on, r.late) for r in connection.execute(select(items))}
        by_month = {(r.unit, r.domain, r.month): r.filings for r in connection.execute(select(months))}
        month_recount = Counter(
            (unit, domain, day.year * 100 + day.month)
            for unit, domain, day in connection.execute(select(filings.c.unit, filings.c.domain, filings.c.published_on))
        )
    assert rolled == recount and recount
    assert by_month == dict(month_recount)


def test_the_databases_counts_equal_counting_item_by_item(store):
    """store.unit_counts (SQL over the roll-up) against domain.count_unit (Python, per item),
    for catalogs that differ (a dropped item, a shorter update cycle), on several dates."""
    standard = standard_catalog()
    county = localise(derive_catalog(standard, scope="430102", edition="2022"), drop={"D14-02-01"}, specialise={"D14-02-02": {"time_limit": "实时公开"}})
    store.apply_catalogs([catalog_changed(), catalog_changed(county)])
    rng = random.Random(5)
    level2s = ["D14-02-01", "D14-02-02", "D20-01-01", "D27-01-01", "D01-01-01"]
    units = {"430102": "county", TOWN: "township", "430103": "county", "430103001": "township"}
    events = []
    for n in range(500):
        published_on = date(2022, 1, 1) + timedelta(days=rng.randrange(1400))
        events.append(
            filed(f"p{n}", published_on - timedelta(days=rng.randrange(45)), published_on, region=rng.choice(list(units)), level2=rng.choice(level2s))
        )
    store.apply(events)
    store.apply([withdrawn(f"p{n}", version=2) for n in range(0, 500, 9)])
    catalogs = {"430102": county, TOWN: county, "430103": standard, "430103001": standard}
    seen: set[str] = set()
    for as_of, start in ((date(2026, 11, 27), date(2026, 1, 1)), (date(2022, 9, 30), date(2022, 1, 1)), (date(2024, 5, 17), date(2023, 2, 10))):
        for domain in (None, "D14"):
            profiles = {unit: catalog_profile(catalogs[unit], level, domain) for unit, level in units.items()}
            groups: dict[int, tuple] = {}
            for unit, profile in profiles.items():
                groups.setdefault(id(profile), (profile, []))[1].append(unit)
            counted = store.unit_counts(list(groups.values()), as_of, start, as_of, domain)
            states = store.item_states(list(units), as_of, domain)
            late = store.late_items(list(units), start, as_of, domain)
            for unit in units:
                expected = count_unit(profiles[unit], states.get(unit, {}), late.get(unit, {}), as_of)
                assert counted[unit] == expected, (unit, as_of, domain)
                seen.update(name for name, value in vars(expected).items() if value)
    assert seen == set(vars(UnitCounts()))  # every count was non-zero somewhere: the comparison means something
