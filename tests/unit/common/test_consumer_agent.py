"""The consumer agent in faust's test context (no broker): events reach the store through
the same agent code the workers run, and versions decide what is applied."""

from services.column.store import ColumnStore
from services.common.db import create_store_engine
from services.common.faust_consumer import create_consumer
from services.common.projection import InThread
from services.common.settings import Settings
from tests.agents import feed_agent
from tests.factories import published, withdrawn


def run_agent(tmp_path, events: list[bytes]) -> ColumnStore:
    store = ColumnStore(create_store_engine(f"sqlite:///{tmp_path / 'column.db'}"))
    store.create()
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path, consumer_batch_within=0.01)
    app = create_consumer("tongyuan-column", store.projection(), settings, heartbeat=lambda stats: None)
    feed_agent(app.agents["tongyuan-column.apply"], events, lambda: app.tongyuan_stats.applied + app.tongyuan_stats.skipped >= len(events))
    return store


def test_versions_decide_what_the_agent_applies(tmp_path):
    events = [
        published(version=2, title="第二版").model_dump_json().encode(),
        published(version=1, title="第一版").model_dump_json().encode(),
        published(version=2, title="重复投递").model_dump_json().encode(),
    ]
    store = run_agent(tmp_path, events)
    entry = store.entry("p1")
    assert entry.version == 2 and entry.document.title == "第二版"


def test_a_withdrawal_through_the_agent_leaves_a_tombstone(tmp_path):
    store = run_agent(tmp_path, [published().model_dump_json().encode(), withdrawn(version=2).model_dump_json().encode()])
    assert store.entry("p1").status == "withdrawn"
    assert store.listing("4301") == (0, [])


def test_the_bulk_lanes_buffer_is_counted_in_batches(tmp_path):
    from contracts.events import BULK_BYTES_PER_MESSAGE, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK

    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path)
    app = create_consumer("tongyuan-column", InThread(lambda events: None), settings, heartbeat=lambda stats: None)
    buffers = {agent.channel.get_topic_name(): agent.channel.queue.maxsize for agent in app.agents.values()}
    assert buffers[TOPIC_PUBLICATIONS] == settings.consumer_batch_size * 4
    assert buffers[TOPIC_PUBLICATIONS_BULK] < buffers[TOPIC_PUBLICATIONS] // 4, "not as many batches as single events"
    assert buffers[TOPIC_PUBLICATIONS_BULK] * BULK_BYTES_PER_MESSAGE <= 128 * 2**20, "a lagging consumer's buffer stays well under its memory target"


def test_consumers_run_without_fausts_per_event_monitor(tmp_path):
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path)
    app = create_consumer("tongyuan-column", InThread(lambda events: None), settings, heartbeat=lambda stats: None)
    app.on_init_dependencies()  # where faust adds its Monitor to the sensors
    assert app.monitor not in list(app.sensors)


def test_the_offsets_table_of_each_commit_is_drawn_only_when_logged(monkeypatch):
    import faust.transport.consumer as faust_consumer
    from faust.utils import terminal

    from services.common import faust_patches

    faust_patches.apply()  # installs the lazy table

    drawn = []
    real = terminal.logtable
    monkeypatch.setattr(terminal, "logtable", lambda rows, **kwargs: drawn.append(rows) or real(rows, **kwargs))
    table = faust_consumer.terminal.logtable([("tongyuan.publications.v1-0", "42")], title="Commit Offsets", headers=["TP", "Offset"])
    assert drawn == []  # what faust's consumer does at every commit costs nothing …
    assert "tongyuan.publications.v1-0" in str(table) and "42" in str(table)  # … until the line is written
    assert len(drawn) == 2


def _bulk_batches_applied(tmp_path, group="tongyuan-supervision", bulk_batch_size=None, **settings_overrides) -> list[int]:
    """Six bulk-lane messages of 100 events each, put at once: the sizes of the batches the store got."""
    from contracts.events import BULK_EVENTS_PER_MESSAGE

    sizes: list[int] = []
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path, consumer_batch_size=100, indexer_batch_within=0.5, **settings_overrides)
    app = create_consumer(group, InThread(lambda events: sizes.append(len(events))), settings, heartbeat=lambda stats: None, bulk_batch_size=bulk_batch_size)
    messages = [("[" + ",".join(published(f"p{m}-{n}").model_dump_json() for n in range(BULK_EVENTS_PER_MESSAGE)) + "]").encode() for m in range(6)]
    feed_agent(app.agents[f"{group}.apply-bulk"], messages, lambda: sum(sizes) >= 6 * BULK_EVENTS_PER_MESSAGE, polls=200)
    assert sum(sizes) == 6 * BULK_EVENTS_PER_MESSAGE
    return sizes


def test_the_bulk_lane_is_taken_in_batches_of_its_own_size(tmp_path):
    defaults = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path)
    assert (defaults.consumer_bulk_batch_size, defaults.indexer_bulk_batch_size) == (2000, 2000)
    assert max(_bulk_batches_applied(tmp_path, consumer_bulk_batch_size=300)) == 300
    assert max(_bulk_batches_applied(tmp_path, consumer_bulk_batch_size=100)) == 100  # the canonical batch size here
    # A consumer may take its own size (the indexer: indexer_bulk_batch_size, for its memory).
    assert max(_bulk_batches_applied(tmp_path, group="tongyuan-indexer", bulk_batch_size=200, consumer_bulk_batch_size=500)) == 200
