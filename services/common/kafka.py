"""Kafka plumbing: topic creation, the idempotent producer, and the faust app factory."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import faust
import faust.transport.consumer as faust_consumer
import structlog
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.utils import terminal as faust_terminal
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2
from mode import Service

from contracts.events import (
    TOPIC_CATALOG,
    TOPIC_CMS,
    TOPIC_PUBLICATIONS,
    TOPIC_PUBLICATIONS_BULK,
    TOPIC_REJECTIONS,
    TOPIC_SERVICE_ITEMS,
    dlq_topic,
)

from .broker import port_open
from .settings import Settings

faust_log = structlog.get_logger("tongyuan.consumer")


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


# Record batches go to the broker LZ4-compressed. A bulk-lane message (100 migrated events,
# ~280 KB) shrinks ~7× on the synthetic export, a single event ~1.6×. On Tansu, 20,000 migrated
# events produced and read by four consumers: the broker's CPU 44 → 12 µs an event, the
# consumers' 25 → 16, the producer's unchanged; and the broker, which keeps every message in
# memory, holds a fraction of the bytes. Every Kafka client reads LZ4 (aiokafka through cramjam).
RELAY_COMPRESSION = "lz4"


def idempotent_producer(bootstrap: str, *, newest_batch_alone: bool | None = None) -> KafkaProducer | NewestBatchAlone:
    """kafka-python's idempotent producer (aiokafka's fails InitProducerId against Tansu).

    Against Tansu it is wrapped in NewestBatchAlone (see TANSU_CLUSTER_PREFIX);
    `newest_batch_alone` says whether, instead of asking the broker (bench/relay_batches.py)."""
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
    would do too, at a high price: the pipeline benchmark fell from 1,316 to 479 events/s, the
    broker spending ten times the CPU per event (bench/relay_batches.py measures the relay).
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

    def _send(self, items) -> None:
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

    def metrics(self):
        return self._producer.metrics()


class _HeldSend:
    def __init__(self, producer: NewestBatchAlone) -> None:
        self.producer, self.future, self.error = producer, None, None

    def get(self, timeout: float | None = None):
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


class BrokerLog:
    """The ids the broker gave the topics when it created them. A broker that lost its log
    (Tansu with memory storage, restarted) creates the topics anew, with new ids: so an id
    that changed says every offset known from before — a consumer's position, a relay's last
    ack — points into a log that no longer exists."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin: KafkaAdminClient | None = None

    def topic_ids(self, topics: Iterable[str]) -> dict[str, str | None]:
        """topic → its id, None for a topic the broker does not have. Raises when the broker
        does not answer."""
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
            described = self._admin.describe_topics(sorted(set(topics)))
        except Exception:
            self.close()
            raise
        return {d["name"]: (d.get("topic_id") if d.get("error_code", 0) == 0 else None) for d in described}

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # being thrown away
                pass


class _OffsetTable:
    """The table faust's consumer logs at every commit, drawn only if the line is written."""

    def __init__(self, rows, kwargs) -> None:
        self.rows, self.kwargs = rows, kwargs

    def __str__(self) -> str:
        return faust_terminal.logtable(self.rows, **self.kwargs)


class _CommitTables:
    """faust's consumer draws a terminal table of the offsets at every commit (twice a second
    while events flow) for a line mode writes only with DEVLOG set: ~6% of the embed consumer's
    Python time at a clerk's pace (py-spy). Its module uses `terminal` for nothing else (faust-streaming is pinned)."""

    @staticmethod
    def logtable(rows, **kwargs) -> _OffsetTable:
        return _OffsetTable(rows, kwargs)


faust_consumer.terminal = _CommitTables  # type: ignore[assignment]


class _PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 100

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # faust hard-codes fetch_max_wait_ms=1500 and Tansu answers a waiting fetch only when
        # the wait is over, so every hop cost up to 1.5 s (measured: 615 ms → 16 ms per hop).
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


# A consumer whose broker lost its log exits with this code, for its supervisor to start it
# again (see _PromptConsumer._commit).
EXIT_BROKER_LOG_LOST = 75
BROKER_LOG_CHECK_SECONDS = 2.0


class LogGuard:
    """Pure: the topic ids a consumer's positions refer to, taken when it first saw each topic.
    Ids that changed since mean the broker lost its log and those positions point into a log
    that no longer exists."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    def remember(self, ids: dict[str, str | None]) -> None:
        for topic, topic_id in ids.items():
            self.seen.setdefault(topic, topic_id)

    def changed(self, ids: dict[str, str | None]) -> list[str]:
        self.remember(ids)
        return sorted(topic for topic, topic_id in ids.items() if topic_id != self.seen[topic])


class _PromptConsumer(faust_aiokafka.Consumer):
    """faust's consumer, which also refuses to commit positions of a log the broker lost.

    A restarted memory-storage broker has empty topics and no committed offsets, and Tansu
    accepts a commit from any member. A worker that read up to offset 500 of the old log
    fetches from 500 of the new one as soon as the relay's re-emission gets there, skipping
    0–499, and would commit past them. So before every commit it compares the topics' ids
    with those of its first assignment; if they changed it exits without committing, and its
    supervisor (`tongyuan up`) starts it again on the new log, from the beginning."""

    _log_guard: LogGuard | None = None
    _broker_log: BrokerLog | None = None

    def _new_consumer_thread(self):
        return _PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _topic_ids(self, topics: set[str]) -> dict[str, str | None]:
        if self._broker_log is None:
            url = self.app.conf.broker[0]
            self._broker_log = BrokerLog(f"{url.host}:{url.port}")
        return self._broker_log.topic_ids(topics)

    async def on_partitions_assigned(self, assigned, generation_id: int = 0) -> None:
        if self._log_guard is None:
            self._log_guard = LogGuard()
        try:
            self._log_guard.remember(await asyncio.to_thread(self._topic_ids, {tp.topic for tp in assigned}))
        except Exception as exc:  # the first commit takes the ids instead
            faust_log.warning("consumer.topic_ids_unknown", error=repr(exc))
        await super().on_partitions_assigned(assigned, generation_id)

    async def _commit(self, offsets) -> bool:
        if offsets and not await self._log_unchanged({tp.topic for tp in offsets}):
            return False
        return await super()._commit(offsets)

    @Service.task
    async def _watch_broker_log(self) -> None:
        """Also between commits: after a reset to the start of a new, shorter log, faust skips
        offsets below the last one it delivered, so a worker could sit there committing nothing."""
        while not self.should_stop:
            await self.sleep(BROKER_LOG_CHECK_SECONDS)
            if self._log_guard is not None and self._log_guard.seen:
                await self._log_unchanged(set(self._log_guard.seen))

    async def _log_unchanged(self, topics: set[str]) -> bool:
        """Exits the process if the broker lost the log of `topics`; False if it cannot tell."""
        if self._log_guard is None:
            return True
        try:
            changed = self._log_guard.changed(await asyncio.to_thread(self._topic_ids, topics))
        except Exception as exc:  # the broker does not answer: no commit now, the next one tries again
            faust_log.warning("consumer.broker_log_unknown", error=repr(exc))
            return False
        if changed:
            faust_log.error("consumer.broker_log_lost", app=self.app.conf.id, topics=changed, exit_code=EXIT_BROKER_LOG_LOST)
            # At once, without faust's shutdown, which commits. Whatever the process wrote is durable.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_BROKER_LOG_LOST)
        return True

    async def _drain_messages(self, fetcher) -> None:
        """faust's fetch loop, with the rebalance guard around each fetched batch.

        faust guards every message with `wait_first(delivery, suspend_flow.wait())` so that a
        rebalance can abandon a delivery stuck on a full stream buffer. That is four tasks and
        an asyncio.wait per message — measured at about a fifth of a consumer's CPU. Guarding
        the whole fetched batch keeps the behaviour (a rebalance abandons the rest of the
        batch, which the new owner fetches again from the committed offset) at one guard per
        fetch."""
        try:
            while not (self.should_stop or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = [pair async for pair in self.getmany(timeout=1.0)]
                await self.sleep(0)  # getmany may not have yielded to the loop at all
                if fetched and not self.should_stop:
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.wait_first(self._deliver(fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, fetched: list) -> None:
        callback = self.callback
        read_offset = self._read_offset
        for n, (tp, message) in enumerate(fetched, 1):
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # delivered before a seek moved the position back
            if last and offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
                # Offsets the broker skipped (compaction, transactions) count as acked.
                await self._add_gap(tp, last + 1, offset)
            await callback(message)
            read_offset[tp] = offset
            if n % 100 == 0:
                await asyncio.sleep(0)  # let the agents run during a long batch


class _PromptTransport(faust_aiokafka.Transport):
    Consumer = _PromptConsumer


class TongyuanApp(faust.App):
    """faust's App with a consumer that does not sit on fetches (see _PromptConsumerThread),
    and without faust's own per-event monitor."""

    def _new_transport(self):
        return _PromptTransport(self.conf.broker_consumer, self)

    def on_init_dependencies(self):
        dependencies = super().on_init_dependencies()
        # faust's Monitor times and counts every message and event for faust's own web views,
        # which we do not run (our metrics are Prometheus'); four sensor calls per event for
        # figures nobody reads.
        self.sensors.remove(self.monitor)
        return dependencies


def faust_app(app_id: str, settings: Settings) -> faust.App:
    """A faust app whose id is its consumer group; one per consumer service."""
    session_ms = settings.consumer_session_timeout
    datadir = Path(settings.var_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return TongyuanApp(
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
