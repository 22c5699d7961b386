"""The relay marks outbox rows sent only after the broker acknowledged them."""

import pytest

from services.common.db import create_store_engine
from services.publisher import handlers
from services.publisher.relay import OutboxRelay
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
