"""The relay marks outbox rows sent only after the broker acknowledged them, and sends every
event — the bulk lane's too — as one structured-mode CloudEvent per record."""

import json
from pathlib import Path

import pytest

from services.common.db import create_store_engine
from services.publisher import handlers
from services.publisher.relay import OutboxRelay, messages_of
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


def test_every_row_goes_out_as_one_structured_cloudevent_the_bulk_lane_included():
    canonical = [(1, "tongyuan.publications.v1", "p1", '{"id": "c1"}'), (2, "tongyuan.catalog.v1", "standard", '{"id": "c2"}')]
    messages = messages_of(canonical + _bulk_rows(130))
    assert [(m.topic, m.row_ids) for m in messages[:3]] == [
        ("tongyuan.publications.v1", [1]),
        ("tongyuan.catalog.v1", [2]),
        ("tongyuan.publications.bulk.v1", [100]),
    ]
    assert len(messages) == 132 and [row for m in messages for row in m.row_ids] == [1, 2, *range(100, 230)], "every row once, in order"
    assert all(dict(m.headers)["content-type"] == b"application/cloudevents+json" for m in messages)
    bulk = messages[2]
    assert bulk.key == b"m0" and json.loads(bulk.value)["id"] == "e0", "keyed by publication, one event, as on the canonical topic"


def test_a_bulk_event_the_broker_does_not_ack_leaves_it_and_the_rest_unsent(publisher, directory):
    from services.migration import load_config
    from services.publisher.migration import migrate

    samples = Path(__file__).resolve().parents[1] / "data" / "migration"
    before = publisher.outbox_backlog()
    migrate(load_config(samples / "changsha-county.toml", directory), samples / "changsha-county.csv", publisher=publisher, directory=lambda: directory, rejects_path=Path(publisher.engine.url.database).with_name("rejects.csv"))
    bulk = publisher.outbox_backlog() - before
    producer = FakeProducer(fail_at={5})  # the five clerk publications go first, then the bulk lane
    assert OutboxRelay(publisher, lambda: producer).relay_once() == 5
    assert publisher.outbox_backlog() == bulk and json.loads(producer.sent[5][2])["type"] == "cn.gov.tongyuan.publication.published.v1"
    retry = FakeProducer()
    assert OutboxRelay(publisher, lambda: retry).relay_once() == bulk and publisher.outbox_backlog() == 0


def test_the_official_cloudevents_sdk_reads_a_bulk_lane_record_and_so_do_the_consumers(publisher, directory):
    """A third party reads the bulk lane with the CloudEvents SDK's Kafka binding (structured
    mode), as it reads the canonical topic."""
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.v1 import kafka as ce_kafka_v1

    from services.common.consuming import parse_publication_event
    from services.migration import load_config
    from services.publisher.migration import migrate

    samples = Path(__file__).resolve().parents[1] / "data" / "migration"
    migrate(load_config(samples / "changsha-county.toml", directory), samples / "changsha-county.csv", publisher=publisher, directory=lambda: directory, rejects_path=Path(publisher.engine.url.database).with_name("rejects.csv"))
    bulk = [m for m in messages_of(publisher.unsent(10_000)) if m.topic == "tongyuan.publications.bulk.v1"]
    assert bulk
    for message in bulk:
        record = ce_kafka_v1.KafkaMessage(headers=dict(message.headers), key=message.key, value=message.value)
        event = ce_kafka_v1.from_structured(record)
        ours = parse_publication_event(message.value)
        assert event["type"] == ours.type == "cn.gov.tongyuan.publication.published.v1"
        assert event["id"] == ours.id and event["source"] == ours.source and event["partitionkey"] == ours.subject.encode()
        assert event.data["publication_id"] == ours.data.publication_id and event.data["version"] == ours.data.version
        modern = ce_kafka.from_kafka_event(ce_kafka.KafkaMessage(headers=dict(message.headers), key=message.key, value=message.value))
        assert modern.get_id() == ours.id and modern.get_data()["title"] == ours.data.title
