"""The relay marks outbox rows sent only after the broker acknowledged them, and packs the bulk
lane into CloudEvents batches."""

import json
from pathlib import Path

import pytest

from contracts.events import BULK_BYTES_PER_MESSAGE, BULK_EVENTS_PER_MESSAGE
from services.common.db import create_store_engine
from services.publisher.gate import handlers
from services.publisher.relay.outbox import OutboxRelay, messages_of
from services.publisher.store import Publisher
from tests.conftest import ADMIN, draft


class Future:
    def __init__(self, error=None):
        self.error = error

    def get(self, timeout=None):
        if self.error:
            raise self.error
        return object()


class FakeProducer:
    """Acks every send except those listed in `fail_at` (by send order)."""

    def __init__(self, fail_at=()):
        self.sent = []
        self.fail_at = set(fail_at)

    def send(self, topic, *, key, value, headers):
        self.sent.append((topic, key, value, dict(headers)))
        return Future(TimeoutError("no ack") if len(self.sent) - 1 in self.fail_at else None)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        self.closed = True


@pytest.fixture
def publisher(tmp_path, directory):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    for n in range(5):
        handlers.publish(principal=ADMIN, draft=draft(title=f"公告{n}"), publisher=publisher, directory=directory)
    return publisher


def test_acknowledged_rows_are_marked_sent_in_order(publisher):
    producer = FakeProducer()
    assert OutboxRelay(publisher, lambda: producer).relay_once() == 5
    assert publisher.outbox_backlog() == 0
    topics = {topic for topic, *_ in producer.sent}
    assert topics == {"tongyuan.publications.v1"}
    assert all(headers["content-type"] == b"application/cloudevents+json" for *_, headers in producer.sent)
    assert OutboxRelay(publisher, lambda: producer).relay_once() == 0


def test_an_unacknowledged_row_and_those_after_it_stay_unsent(publisher):
    producer = FakeProducer(fail_at={2})
    assert OutboxRelay(publisher, lambda: producer).relay_once() == 2
    assert publisher.outbox_backlog() == 3
    retry = FakeProducer()
    assert OutboxRelay(publisher, lambda: retry).relay_once() == 3
    assert publisher.outbox_backlog() == 0


def test_a_broker_that_fails_outright_leaves_everything_unsent(publisher):
    class Down(FakeProducer):
        def send(self, *args, **kwargs):
            raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        OutboxRelay(publisher, Down).relay_once()
    assert publisher.outbox_backlog() == 5


def test_a_failed_round_starts_a_fresh_producer(publisher):
    made = []

    def factory():
        made.append(FakeProducer(fail_at={0}) if not made else FakeProducer())
        return made[-1]

    relay = OutboxRelay(publisher, factory)
    assert relay.relay_once() == 0 and getattr(made[0], "closed", False)
    assert relay.relay_once() == 5 and len(made) == 2


def _bulk_rows(count: int, start: int = 100, size: int = 300) -> list[tuple[int, str, str, str]]:
    return [(start + n, "tongyuan.publications.bulk.v1", f"m{n}", json.dumps({"id": f"e{n}", "pad": "x" * size})) for n in range(count)]


def test_the_bulk_lane_goes_out_as_cloudevents_batches_and_the_canonical_topic_one_by_one():
    canonical = [(1, "tongyuan.publications.v1", "p1", '{"id": "c1"}'), (2, "tongyuan.catalog.v1", "standard", '{"id": "c2"}')]
    messages = messages_of(canonical + _bulk_rows(BULK_EVENTS_PER_MESSAGE + 30))
    assert [(m.topic, len(m.row_ids)) for m in messages] == [
        ("tongyuan.publications.v1", 1),
        ("tongyuan.catalog.v1", 1),
        ("tongyuan.publications.bulk.v1", BULK_EVENTS_PER_MESSAGE),
        ("tongyuan.publications.bulk.v1", 30),
    ]
    assert messages[0].key == b"p1" and dict(messages[0].headers)["content-type"] == b"application/cloudevents+json"
    batch = messages[2]
    assert batch.key is None and dict(batch.headers)["content-type"] == b"application/cloudevents-batch+json"
    assert [event["id"] for event in json.loads(batch.value)] == [f"e{n}" for n in range(BULK_EVENTS_PER_MESSAGE)]
    assert [row for m in messages for row in m.row_ids] == [1, 2, *range(100, 100 + BULK_EVENTS_PER_MESSAGE + 30)], "every row once, in order"


def test_a_bulk_batch_stays_under_the_byte_cap_and_a_huge_event_goes_alone():
    rows = _bulk_rows(10, size=BULK_BYTES_PER_MESSAGE // 4) + _bulk_rows(1, start=200, size=BULK_BYTES_PER_MESSAGE * 2)
    messages = messages_of(rows)
    assert all(len(m.value) <= BULK_BYTES_PER_MESSAGE or len(m.row_ids) == 1 for m in messages)
    assert [len(m.row_ids) for m in messages] == [3, 3, 3, 1, 1]


def migrate_changsha_county(publisher, directory) -> None:
    """The 长沙县 sample export through the migration lane: its rows go to the bulk topic."""
    from services.migration import load_config
    from services.publisher.gate.migration import migrate

    samples = Path(__file__).resolve().parents[2] / "data" / "migration"
    migrate(
        load_config(samples / "changsha-county.toml", directory),
        samples / "changsha-county.csv",
        publisher=publisher,
        directory=lambda: directory,
        rejects_path=Path(publisher.engine.url.database).with_name("rejects.csv"),
    )


def test_a_batch_the_broker_does_not_ack_leaves_all_its_rows_unsent(publisher, directory):
    before = publisher.outbox_backlog()
    migrate_changsha_county(publisher, directory)
    bulk = publisher.outbox_backlog() - before
    producer = FakeProducer(fail_at={5})  # the five clerk publications go first, then the bulk batch
    assert OutboxRelay(publisher, lambda: producer).relay_once() == 5
    assert publisher.outbox_backlog() == bulk and json.loads(producer.sent[5][2])[0]["type"] == "cn.gov.tongyuan.publication.published.v1"
    retry = FakeProducer()
    assert OutboxRelay(publisher, lambda: retry).relay_once() == bulk and publisher.outbox_backlog() == 0


def test_the_official_cloudevents_sdk_reads_every_event_of_a_bulk_lane_record_and_so_do_the_consumers(publisher, directory):
    """A bulk-lane record is a CloudEvents JSON batch, which the Kafka binding does not define:
    contracts.bulk turns it into structured-mode records, which the SDK's Kafka binding reads."""
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.v1 import kafka as ce_kafka_v1

    from contracts.bulk import structured_records
    from services.common.consuming import parse_publication_batch

    migrate_changsha_county(publisher, directory)
    batches = [m for m in messages_of(publisher.unsent(10_000)) if m.topic == "tongyuan.publications.bulk.v1"]
    assert batches and all(len(m.row_ids) > 1 for m in batches)
    for batch in batches:
        ours = [event for _, event in parse_publication_batch(batch.value)]
        records = structured_records(batch.value, dict(batch.headers))
        assert len(records) == len(ours) == len(batch.row_ids)
        for (headers, value), event in zip(records, ours, strict=True):
            read = ce_kafka_v1.from_structured(ce_kafka_v1.KafkaMessage(headers=headers, key=event.subject, value=value))
            assert (read["type"], read["id"], read["source"], read["subject"]) == (event.type, event.id, event.source, event.subject)
            assert read.data["publication_id"] == event.data.publication_id and read.data["version"] == event.data.version
            modern = ce_kafka.from_kafka_event(ce_kafka.KafkaMessage(headers=headers, key=None, value=value))
            assert modern.get_id() == event.id and modern.get_data()["title"] == event.data.title


def test_the_bulk_reader_passes_a_single_event_through_and_refuses_what_is_not_a_batch():
    from contracts.bulk import structured_records

    single = b'{"specversion": "1.0", "id": "e1", "source": "/publisher", "type": "t"}'
    assert structured_records(single) == [({"content-type": b"application/cloudevents+json"}, single)]
    with pytest.raises(ValueError):
        structured_records(b"[1, 2]", {"content-type": b"application/cloudevents-batch+json"})
