"""What `tongyuan up` records at a clean stop, read from a real broker: the watermark is taken
only when every consumer group committed to the true end of every partition — the end a fetch
reports, not Tansu's ListOffsets, which is one short after a batch of several records.
On Tansu alone: the short end it guards against is Tansu's, and the watermark is recorded only
when `tongyuan up` stops the embedded broker (Apache Kafka keeps its log)."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from contracts.events import TOPIC_PUBLICATIONS
from services.common.broker import EmbeddedBroker, free_port
from services.common.db import create_store_engine
from services.common.kafka import CONSUMER_GROUPS, BrokerLog, ensure_topics
from services.publisher.relay.broker_log import record_applied_watermark
from services.publisher.relay.outbox import RELAY_TOPICS
from services.publisher.store import Publisher


@pytest.fixture
def broker(tmp_path):
    running = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log").start()
    try:
        ensure_topics(running.bootstrap, 2, list(RELAY_TOPICS))
        yield running
    finally:
        running.stop()


@pytest.fixture
def publisher(tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    return publisher


def _commit(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
    finally:
        consumer.close()


def test_a_group_at_the_listed_end_of_a_several_record_batch_has_not_applied_it(broker, publisher):
    # Three rows of one publication, acked in one batch: a relay round cut short before it sent
    # each partition's last record alone.
    with publisher.transaction() as store:
        for n in range(3):
            store.add_to_outbox(event_id=f"e{n}", topic=TOPIC_PUBLICATIONS, key="p1", payload=json.dumps({"id": f"e{n}"}))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    tp = TopicPartition(TOPIC_PUBLICATIONS, 0)
    for _, _, key, payload in publisher.unsent(10):
        producer.send(TOPIC_PUBLICATIONS, key=key.encode(), value=payload.encode(), partition=0)
    producer.flush()
    producer.close()
    publisher.mark_sent([row[0] for row in publisher.unsent(10)])
    broker_log = BrokerLog(broker.bootstrap)
    publisher.adopt_topic_ids({t: i for t, i in broker_log.topic_ids(RELAY_TOPICS).items() if i})
    broker_log.close()

    listed = KafkaConsumer(bootstrap_servers=broker.bootstrap).end_offsets([tp])[tp]
    assert listed == 1, "Tansu's ListOffsets after one batch of three (if this changes, the test needs another way to a short end)"
    for group in CONSUMER_GROUPS:
        _commit(broker.bootstrap, group, tp, listed)
    through, why = record_applied_watermark(publisher, broker.bootstrap, CONSUMER_GROUPS)
    assert through is None and "has not applied" in why and publisher.applied_through() == 0

    for group in CONSUMER_GROUPS:
        _commit(broker.bootstrap, group, tp, 3)
    assert record_applied_watermark(publisher, broker.bootstrap, CONSUMER_GROUPS)[0] == 3 and publisher.applied_through() == 3
