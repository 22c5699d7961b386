"""The relay's producer compresses record batches, and the consumers' client reads them back as sent.

Against a real Tansu: the compression codec is negotiated nowhere, so a producer that compresses
with a codec the consumers' client cannot decode fails only when the first batch is fetched.
Tansu stores the batches as sent; Apache Kafka (the PostgreSQL runs' broker) decodes and checks
them on produce and reads LZ4 itself, so the embedded broker is the one to prove this on."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.broker import EmbeddedBroker, free_port
from services.common.kafka import RELAY_COMPRESSION, ensure_topics, idempotent_producer

TOPIC = "tongyuan.test.compression"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    running = EmbeddedBroker(port=free_port(), log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
    try:
        yield running
    finally:
        running.stop()


def _bulk_message(events: int) -> bytes:
    """A CloudEvents batch like the bulk lane's: Chinese text that repeats across events."""
    body = "<p>申请人应当如实提供家庭人口、收入和财产状况等证明材料，并签署授权核查家庭经济状况声明。</p>" * 6
    batch = [
        {
            "specversion": "1.0",
            "id": f"e-{n}",
            "type": "cn.gov.tongyuan.publication.published.v1",
            "data": {"title": f"关于第{n}批最低生活保障对象的公示", "body_html": body},
        }
        for n in range(events)
    ]
    return json.dumps(batch, ensure_ascii=False).encode()


async def _read_back(bootstrap: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOPIC, 0)])
        values: list[bytes] = []
        async with asyncio.timeout(20):
            while len(values) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    values.extend(record.value for record in records)
        return values
    finally:
        await consumer.stop()


def test_the_relays_batches_are_compressed_and_read_back_unchanged(broker):
    assert RELAY_COMPRESSION == "lz4"
    ensure_topics(broker.bootstrap, 1, [TOPIC])
    messages = [_bulk_message(100), _bulk_message(1), b'{"not": "a batch"}']
    producer = idempotent_producer(broker.bootstrap)
    try:
        for message in messages:
            producer.send(TOPIC, key=b"k", value=message).get(timeout=10)
        # What the producer put on the wire against what it was given, per record batch.
        rate = producer.metrics()[f"producer-topic-metrics.{TOPIC}"]["compression-rate"]
    finally:
        producer.close()
    assert rate < 0.5, f"record batches were not compressed (compressed/uncompressed = {rate:.2f})"
    assert asyncio.run(_read_back(broker.bootstrap, len(messages))) == messages
