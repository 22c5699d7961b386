"""The relay notices a broker that lost its log (new topic ids, an offset that went back, or
`tongyuan up` saying so) and, with no clean stop's watermark recorded, sends the whole outbox
again, in order."""

import json
from dataclasses import dataclass

import pytest

from services.common.db import create_store_engine
from services.publisher.gate import handlers
from services.publisher.relay.outbox import OutboxRelay, log_lost
from services.publisher.store import Publisher
from tests.conftest import ADMIN, draft

OLD = {"tongyuan.publications.v1": "id-1", "tongyuan.publications.bulk.v1": "id-2", "tongyuan.catalog.v1": "id-3"}
NEW = {"tongyuan.publications.v1": "id-4", "tongyuan.publications.bulk.v1": "id-5", "tongyuan.catalog.v1": "id-6"}


@dataclass
class Ack:
    topic: str
    partition: int
    offset: int

    def get(self, timeout=None):
        return self


class Log:
    """A one-partition broker log per topic: each send is acked with its offset there."""

    def __init__(self):
        self.records: dict[str, list[bytes]] = {}
        self.ids = dict(OLD)

    def lose_everything(self, ids=NEW):
        self.records, self.ids = {}, dict(ids)

    def producer(self):
        log = self

        class Producer:
            def send(self, topic, *, key, value, headers):
                records = log.records.setdefault(topic, [])
                records.append(value)
                return Ack(topic, 0, len(records) - 1)

            def flush(self, timeout=None):
                pass

            def close(self, timeout=None):
                pass

        return Producer()

    def event_ids(self, topic="tongyuan.publications.v1"):
        return [json.loads(value)["id"] for value in self.records.get(topic, [])]


@pytest.fixture
def publisher(tmp_path, directory):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    publisher.directory = directory
    return publisher


def publish(publisher, count, start=0):
    for n in range(start, start + count):
        handlers.publish(principal=ADMIN, draft=draft(title=f"公告{n}"), publisher=publisher, directory=publisher.directory)


def outbox_event_ids(publisher):
    from sqlalchemy import select

    from services.publisher.tables import outbox

    with publisher.engine.connect() as connection:
        return list(connection.execute(select(outbox.c.event_id).order_by(outbox.c.id)).scalars())


def test_a_log_is_lost_when_a_known_topic_has_another_id_or_none():
    assert not log_lost({}, NEW)
    assert not log_lost(OLD, {**OLD, "tongyuan.rejections.v1": "x"})
    assert log_lost(OLD, NEW)
    assert log_lost(OLD, {**OLD, "tongyuan.catalog.v1": None})


def test_new_topic_ids_make_the_relay_send_everything_again_in_order(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, check_every=3600)
    publish(publisher, 5)
    assert relay.relay_once() == 5 and publisher.known_topic_ids() == OLD
    sent_before = log.event_ids()
    assert not publisher.reemission_pending()

    log.lose_everything()
    publish(publisher, 2, start=5)
    relay.producer = None
    relay._discard_producer()  # a send failed against the restarted broker
    assert relay.relay_once() == 7
    assert log.event_ids() == outbox_event_ids(publisher) and log.event_ids()[:5] == sent_before, "every row, in outbox order"
    assert publisher.known_topic_ids() == NEW
    assert publisher.outbox_backlog() == 0 and not publisher.reemission_pending()


def test_an_offset_lower_than_one_acked_before_makes_the_relay_look_again(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, check_every=3600)
    publish(publisher, 3)
    assert relay.relay_once() == 3
    # The broker lost its log between two rounds without failing a send (the producer
    # reconnected): the next ack lands at offset 0, below the 2 acked before.
    log.lose_everything()
    publish(publisher, 1, start=3)
    assert relay.relay_once() == 1
    assert relay.relay_once() == 4, "everything again, from the first row"
    assert log.event_ids() == outbox_event_ids(publisher)[3:] + outbox_event_ids(publisher) and publisher.known_topic_ids() == NEW


def test_a_reemission_asked_for_is_pending_until_every_row_is_acked_again(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, batch_size=2, check_every=0)
    publish(publisher, 5)
    while relay.relay_once():
        pass
    publisher.request_reemission()  # `tongyuan up` restarted the broker
    assert publisher.reemission_pending()
    assert relay.relay_once() == 2 and publisher.reemission_pending()
    while relay.relay_once():
        pass
    assert not publisher.reemission_pending() and not publisher.reemission_requested()
    assert log.event_ids() == log.event_ids()[:5] * 2


def test_a_relay_without_a_look_at_the_broker_never_re_emits(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer)
    publish(publisher, 2)
    assert relay.relay_once() == 2
    log.lose_everything()
    assert relay.relay_once() == 0 and publisher.known_topic_ids() == {}


def test_a_consumer_guard_names_the_topics_whose_log_is_not_the_one_it_read():
    from services.common.kafka import LogGuard

    guard = LogGuard()
    guard.remember({"tongyuan.publications.v1": "id-1"})
    assert guard.changed({"tongyuan.publications.v1": "id-1", "tongyuan.catalog.v1": "id-3"}) == []
    assert guard.changed({"tongyuan.publications.v1": "id-4", "tongyuan.catalog.v1": "id-3"}) == ["tongyuan.publications.v1"]
    assert guard.changed({"tongyuan.catalog.v1": None}) == ["tongyuan.catalog.v1"], "a topic the broker no longer has"
    assert guard.changed({"tongyuan.publications.v1": "id-1"}) == [], "the first ids stay the reference"


def test_a_reemission_before_the_topics_exist_again_happens_once(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, check_every=0)
    publish(publisher, 2)
    assert relay.relay_once() == 2
    log.lose_everything(ids={topic: None for topic in OLD})  # the broker has no topics yet
    assert relay.relay_once() == 2
    assert relay.check_log() == 0 and relay.check_log() == 0, "nothing known is lost any more"
