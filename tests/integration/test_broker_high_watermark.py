"""A client that reads each partition to its high watermark sees every event the relay sent.

Against a real embedded broker, read with librdkafka (confluent-kafka), a client of another
family than the relay's: Tansu 0.6 reported the end of a partition as the base offset of its
newest record batch plus one, so after the relay sent two records in one batch the edition in
force was past the end for everyone who asked (see services.common.kafka.TANSU_CLUSTER_PREFIX).
On both brokers: Tansu's answer needs the relay's NewestBatchAlone; Apache Kafka's does not, and
gets the plain producer — this shows it reads whole all the same."""

from __future__ import annotations

import json
from collections import Counter

import confluent_kafka
import pytest
from kafka import KafkaConsumer, TopicPartition

from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
from services.common.broker import EmbeddedBroker
from services.common.db import create_store_engine
from services.common.kafka import NewestBatchAlone, ensure_topics, idempotent_producer
from services.publisher.relay.outbox import RELAY_TOPICS, OutboxRelay, messages_of
from services.publisher.store import Publisher
from tests.integration.brokers import broker_kinds, start_broker

PARTITIONS = 4


@pytest.fixture(scope="module", params=broker_kinds())
def broker(request, tmp_path_factory):
    running = start_broker(request.param, tmp_path_factory.mktemp("broker"))
    try:
        ensure_topics(running.bootstrap, PARTITIONS, list(RELAY_TOPICS))
        yield running
    finally:
        running.stop()


def _outbox_rows(publisher: Publisher) -> None:
    """What one relay round finds after a busy moment: clerks' publications (two keys land in
    one partition), two catalog editions of one scope, and a migration's bulk lane."""
    with publisher.transaction() as store:
        for n in range(12):
            store.add_to_outbox(event_id=f"pub-{n}", topic=TOPIC_PUBLICATIONS, key=f"p{n % 5}", payload=json.dumps({"id": f"pub-{n}"}))
        for n in range(2):
            store.add_to_outbox(event_id=f"cat-{n}", topic=TOPIC_CATALOG, key="standard", payload=json.dumps({"id": f"cat-{n}", "edition": 2021 + n}))
        for n in range(250):
            store.add_to_outbox(event_id=f"bulk-{n}", topic=TOPIC_PUBLICATIONS_BULK, key=f"m{n}", payload=json.dumps({"id": f"bulk-{n}"}))


def _read_to_high_watermark(bootstrap: str, topic: str) -> tuple[int, list[bytes]]:
    """librdkafka: each partition's high watermark, then everything below it."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-reader", "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        values, read = [], Counter()
        while any(read[p] < end for p, end in ends.items()):
            message = consumer.poll(10)
            assert message is not None, f"nothing more to read below the high watermarks {ends} of {topic} (read {dict(read)})"
            assert message.error() is None, message.error()
            if message.offset() < ends[message.partition()]:
                values.append(message.value())
                read[message.partition()] += 1
        return sum(ends.values()), values
    finally:
        consumer.close()


def test_every_topic_the_relay_writes_is_read_whole_up_to_its_high_watermark(broker, tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    _outbox_rows(publisher)
    expected = Counter()
    for message in messages_of(publisher.unsent(1000)):
        expected[message.topic] += 1
    relay = OutboxRelay(publisher, lambda: idempotent_producer(broker.bootstrap), batch_size=1000)
    producer = idempotent_producer(broker.bootstrap)
    try:  # the workaround goes to Tansu alone
        assert isinstance(producer, NewestBatchAlone) == isinstance(broker, EmbeddedBroker)
    finally:
        producer.close()
    try:
        assert relay.relay_once() == 264  # one round: the producer has every message in hand at once
    finally:
        relay._discard_producer()
    for topic in RELAY_TOPICS:
        high_watermarks, values = _read_to_high_watermark(broker.bootstrap, topic)
        assert high_watermarks == expected[topic] == len(values), topic
    catalog = [json.loads(value) for value in _read_to_high_watermark(broker.bootstrap, TOPIC_CATALOG)[1]]
    assert [c["edition"] for c in catalog] == [2021, 2022], "the edition in force is the last one read"
    # kafka-python asks the same question (ListOffsets) and gets the same answer.
    reader = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        for topic in RELAY_TOPICS:
            ends = reader.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
            assert sum(ends.values()) == expected[topic], topic
    finally:
        reader.close()
