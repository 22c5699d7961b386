"""Kafka plumbing: topic creation, the idempotent producer, and the faust app factory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faust
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from contracts.events import (
    TOPIC_CATALOG,
    TOPIC_CMS,
    TOPIC_PUBLICATIONS,
    TOPIC_PUBLICATIONS_BULK,
    TOPIC_REJECTIONS,
    TOPIC_SERVICE_ITEMS,
    dlq_topic,
)

from . import faust_patches
from .broker import EXIT_BROKER_LOG_LOST, BrokerLog, LogGuard, port_open
from .settings import Settings

# Re-exported: the relay, the publisher's app and the tests know them from here.
__all__ = [
    "CONSUMER_GROUPS",
    "EXIT_BROKER_LOG_LOST",
    "RELAY_COMPRESSION",
    "BrokerLog",
    "LogGuard",
    "NewestBatchAlone",
    "all_topics",
    "broker_is_tansu",
    "broker_reachable",
    "ensure_topics",
    "faust_app",
    "idempotent_producer",
    "wait_for_broker",
]


# Every group that consumes the publication topics; each dead-letters into a topic of its own.
CONSUMER_GROUPS = ("tongyuan-column", "tongyuan-indexer", "tongyuan-embed", "tongyuan-supervision")


def all_topics() -> list[str]:
    return [
        TOPIC_PUBLICATIONS,
        TOPIC_PUBLICATIONS_BULK,
        TOPIC_CATALOG,
        TOPIC_CMS,
        TOPIC_SERVICE_ITEMS,
        TOPIC_REJECTIONS,
        *(dlq_topic(g) for g in CONSUMER_GROUPS),
    ]


def broker_reachable(bootstrap: str) -> bool:
    """A cheap TCP check first: kafka-python takes 30 s to give up on a closed port."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port_open(host, int(port)):
            return True
    return False


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not broker_reachable(bootstrap):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Kafka broker answers at {bootstrap}")
        time.sleep(0.2)


def ensure_topics(bootstrap: str, partitions: int, topics: list[str] | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in (topics or all_topics()) if t not in existing]
        for topic in wanted:
            try:
                admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


# Record batches go to the broker LZ4-compressed: a bulk-lane message (a hundred migrated
# events) shrinks several times, which saves the broker (which keeps every message in memory)
# and the consumers CPU and bytes. Every Kafka client reads LZ4 (aiokafka through cramjam).
RELAY_COMPRESSION = "lz4"


def idempotent_producer(bootstrap: str, *, newest_batch_alone: bool | None = None) -> KafkaProducer | NewestBatchAlone:
    """kafka-python's idempotent producer: the relay and the bridge send from synchronous code
    (a database transaction per round), which kafka-python's blocking futures fit, on either
    broker; aiokafka's idempotent producer, moreover, fails InitProducerId against Tansu.

    Against Tansu it is wrapped in NewestBatchAlone (see TANSU_CLUSTER_PREFIX); Apache Kafka gets
    the plain producer. `newest_batch_alone` says whether, instead of asking the broker
    (bench/relay_batches.py)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        compression_type=RELAY_COMPRESSION,
    )
    if newest_batch_alone is None:
        newest_batch_alone = broker_is_tansu(bootstrap)
    return NewestBatchAlone(producer) if newest_batch_alone else producer


# Tansu 0.6 (memory storage) answers ListOffsets(latest) with the base offset of the newest
# record batch of a partition plus one, ignoring the batch's other records (its fetch answers
# carry the right high watermark): after one batch of offsets 0 and 1 every client that asks
# for the end (kafka-python's end_offsets, librdkafka's get_watermark_offsets) is told 1 and
# stops before the last record. Only the newest batch counts, so it is enough that the newest
# batch of every partition holds one record. Kafka is unaffected and gets plain batches.
TANSU_CLUSTER_PREFIX = "tansu"


class NewestBatchAlone:
    """A producer whose sends go out at `flush` in two steps: every record but the last of each
    partition, batched as usual; then, once those are acknowledged, the last of each partition,
    each in a batch of its own. Order within a partition is kept. Sending every record alone
    would do too, at a high price in throughput and broker CPU (bench/relay_batches.py).
    While a flush is between its two steps a reader may still be told an end one short; once it
    returns, the end is exact. A future's `get` flushes what has not been sent yet."""

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        self._held: list[tuple[_HeldSend, str, bytes | None, bytes, list]] = []
        self._keyless = 0

    def send(self, topic: str, *, key: bytes | None = None, value: bytes, headers: list | None = None) -> _HeldSend:
        held = _HeldSend(self)
        self._held.append((held, topic, key, value, headers or []))
        return held

    def flush(self, timeout: float | None = None) -> None:
        held, self._held = self._held, []
        placed = [(send, topic, self._partition_of(topic, key), key, value, headers) for send, topic, key, value, headers in held]
        last = {(topic, partition): n for n, (_, topic, partition, *_) in enumerate(placed)}
        alone = set(last.values())
        self._send([item for n, item in enumerate(placed) if n not in alone])
        self._producer.flush(timeout=timeout)
        self._send([placed[n] for n in sorted(alone)])
        self._producer.flush(timeout=timeout)

    def _send(self, items: list[tuple[_HeldSend, str, int, bytes | None, bytes, list]]) -> None:
        for send, topic, partition, key, value, headers in items:
            try:
                send.future = self._producer.send(topic, key=key, value=value, headers=headers, partition=partition)
            except Exception as exc:  # raised by its get(), as KafkaProducer's own future would
                send.error = exc

    def _partition_of(self, topic: str, key: bytes | None) -> int:
        """As kafka-python's (and Java's) default partitioner places a keyed record; keyless
        records (the bulk lane's batches) go round the partitions."""
        partitions = sorted(self._producer.partitions_for(topic))
        if key is None:
            self._keyless += 1
            return partitions[self._keyless % len(partitions)]
        return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)

    def metrics(self) -> Any:
        return self._producer.metrics()


class _HeldSend:
    """What NewestBatchAlone.send returns: kafka-python's future once the record is sent."""

    def __init__(self, producer: NewestBatchAlone) -> None:
        self.producer = producer
        self.future: Any = None  # kafka-python's FutureRecordMetadata
        self.error: Exception | None = None

    def get(self, timeout: float | None = None) -> Any:
        if self.future is None and self.error is None:
            self.producer.flush(timeout)
        if self.error is not None:
            raise self.error
        return self.future.get(timeout=timeout)


def broker_is_tansu(bootstrap: str) -> bool:
    """True for a Tansu broker (its cluster id, `tansu_cluster` unless configured otherwise)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        return str(admin.describe_cluster().get("cluster_id") or "").startswith(TANSU_CLUSTER_PREFIX)
    finally:
        admin.close()


def faust_app(app_id: str, settings: Settings) -> faust.App:
    """A faust app whose id is its consumer group; one per consumer service. Every faust app
    of the project is built here, with Tongyuan's corrections to faust (faust_patches)."""
    faust_patches.apply()
    session_ms = settings.consumer_session_timeout
    datadir = Path(settings.var_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return faust_patches.TongyuanApp(
        app_id,
        broker=f"kafka://{settings.bootstrap.split(',')[0]}",
        store="memory://",
        web_enabled=False,
        datadir=str(datadir / app_id),
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_ms,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=session_ms,
        broker_commit_every=1000,
        broker_commit_interval=0.5,
        stream_buffer_maxsize=settings.consumer_batch_size * 4,
        producer_acks=-1,
    )
