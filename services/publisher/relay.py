"""The outbox relay: publish committed outbox rows, mark them sent only after the broker acks.

A crash between the ack and the mark re-sends those rows; consumers are idempotent by
version, so at-least-once is safe. Rows go out in id order with an idempotent producer,
which keeps each publication's events in order within its partition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from contracts.events import (
    BULK_BYTES_PER_MESSAGE,
    BULK_EVENTS_PER_MESSAGE,
    CLOUDEVENTS_BATCH_CONTENT_TYPE,
    CLOUDEVENTS_CONTENT_TYPE,
    TOPIC_CATALOG,
    TOPIC_PUBLICATIONS,
    TOPIC_PUBLICATIONS_BULK,
)

from .store import Publisher

log = structlog.get_logger("tongyuan.relay")


class Producer(Protocol):
    def send(self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]): ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


# The topics the relay writes, whose log a broker restart can lose.
RELAY_TOPICS = (TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK, TOPIC_CATALOG)


def log_lost(known: Mapping[str, str], current: Mapping[str, str | None]) -> bool:
    """Pure: a topic the relay wrote to has another id now, or none — the broker's log is not
    the one the relay sent to (see services.common.kafka.BrokerLog)."""
    return any(current.get(topic) != topic_id for topic, topic_id in known.items())


class OutboxRelay:
    """`producer` is a factory: after a failed round the relay starts a fresh producer, since an
    idempotent producer's sequence state does not survive a broker that lost its own (a
    restarted memory-storage broker answers it with OutOfOrderSequence for ever).

    `topic_ids` (topic → the broker's id for it) lets the relay notice a broker that lost its log:
    it looks before its first send and after every failed round, every `check_every` seconds, and at
    once when an ack's offset is lower than one acked before on that partition (the log went
    backwards). Then the outbox goes out again, in order: the rows after the one every consumer
    group is known to have applied (see `applied_watermark`), or all of it if none is known.

    `applied_watermark`, if given, records that watermark; the relay calls it when the outbox is
    idle, every `watermark_every` seconds, so that after a crash less goes out again."""

    def __init__(
        self,
        publisher: Publisher,
        producer: Callable[[], Producer],
        *,
        batch_size: int = 1000,
        ack_timeout: float = 30.0,
        topic_ids: Callable[[], Mapping[str, str | None]] | None = None,
        check_every: float = 1.0,
        applied_watermark: Callable[[], object] | None = None,
        watermark_every: float = 60.0,
    ):
        self.publisher = publisher
        self.new_producer = producer
        self.producer: Producer | None = None
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.topic_ids = topic_ids
        self.check_every = check_every
        self._checked_at: float | None = None
        self._highest_acked: dict[tuple[str, int], int] = {}
        self.applied_watermark = applied_watermark
        self.watermark_every = watermark_every
        self._watermark_due = time.monotonic() + watermark_every

    def relay_once(self) -> int:
        """Send one batch; returns how many rows were acknowledged and marked sent."""
        if self.topic_ids is not None and (self._checked_at is None or time.monotonic() - self._checked_at >= self.check_every):
            self.check_log()
        rows = self.publisher.unsent(self.batch_size)
        if not rows:
            return 0
        if self.producer is None:
            self.producer = self.new_producer()
        futures = [
            (message.row_ids, self.producer.send(message.topic, key=message.key, value=message.value, headers=message.headers)) for message in messages_of(rows)
        ]
        self.producer.flush(timeout=self.ack_timeout)
        acked: list[int] = []
        for row_ids, future in futures:
            try:
                metadata = future.get(timeout=self.ack_timeout)
            except Exception as exc:  # the rows stay unsent and are retried next round
                log.warning("relay.send_failed", outbox_ids=row_ids[:5], error=repr(exc))
                self._discard_producer()
                break  # keep order: nothing after a failed message is marked sent
            self._note_ack(metadata)
            acked += row_ids
        if acked:
            self.publisher.mark_sent(acked)
        return len(acked)

    def check_log(self) -> int:
        """Compare the broker's topic ids with those of the log the relay sent to; if the log is
        lost (or `tongyuan up` says it restarted such a broker), re-emit what the consumers may
        not have applied. Returns how many rows go out again."""
        current = self.topic_ids()
        known = self.publisher.known_topic_ids()
        again = 0
        if self.publisher.reemission_requested() or (known and log_lost(known, current)):
            again = self.publisher.reemit_unapplied({t: i for t, i in current.items() if i})
            self._highest_acked.clear()
            log.warning("relay.broker_log_lost", reemitting=again, applied_through=self.publisher.applied_through(), known=known, current=current)
        elif any(current.get(topic) and current[topic] != known.get(topic) for topic in current):
            self.publisher.adopt_topic_ids({t: i for t, i in current.items() if i})  # first sight of these topics
        self._checked_at = time.monotonic()
        return again

    def _note_ack(self, metadata) -> None:
        topic, partition, offset = (getattr(metadata, name, None) for name in ("topic", "partition", "offset"))
        if not isinstance(offset, int) or offset < 0:
            return
        key = (topic, partition)
        if offset < self._highest_acked.get(key, -1):
            self._checked_at = None  # the log went backwards: look before the next send
            log.warning("relay.offset_went_back", topic=topic, partition=partition, offset=offset, before=self._highest_acked[key])
        self._highest_acked[key] = offset

    def run(self, stop: threading.Event, *, interval: float = 0.02, max_backoff: float = 5.0) -> None:
        backoff = interval
        while not stop.is_set():
            try:
                sent = self.relay_once()
                backoff = interval
            except Exception as exc:  # broker or database down: wait and try again
                log.warning("relay.error", error=repr(exc), retry_in=backoff)
                self._discard_producer()
                sent = 0
                backoff = min(max_backoff, backoff * 2 if backoff > interval else 0.5)
            if sent == 0:
                self._record_watermark_if_due()
            if sent < self.batch_size:
                stop.wait(backoff)

    def _record_watermark_if_due(self) -> None:
        if self.applied_watermark is None or time.monotonic() < self._watermark_due:
            return
        self._watermark_due = time.monotonic() + self.watermark_every
        try:
            self.applied_watermark()
        except Exception as exc:  # the broker is away: the watermark stays where it was, which is safe
            log.info("relay.watermark_unknown", error=repr(exc))

    def _discard_producer(self) -> None:
        self._checked_at = None  # the broker misbehaved: look at its log before sending again
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception:  # it is being thrown away because it misbehaved
                pass


@dataclass(frozen=True)
class LogAtStop:
    """What the broker holds once every worker has stopped: its topic ids, the end of each
    partition of the relay's topics, each consumer group's committed offsets there, and how
    many records the groups' dead-letter topics hold."""

    topic_ids: Mapping[str, str | None]
    ends: Mapping[tuple[str, int], int]
    committed: Mapping[str, Mapping[tuple[str, int], int]]
    dead_letters: int


def applied_watermark(
    log_at_stop: LogAtStop, *, known_topic_ids: Mapping[str, str], reemission_requested: bool, sent_through: int, catalog_topic: str = TOPIC_CATALOG
) -> tuple[int | None, str]:
    """Pure: the outbox id through which every consumer group has applied every row, or None
    and why it cannot be told.

    Rows up to `sent_through` were acknowledged by the broker, in this log if its topic ids are
    the relay's; a group whose committed offset reaches a partition's end has durably applied
    all of it (offsets are committed only after durable writes). Every group reads both
    publication lanes; only some read the catalog, whose copies a new log gets again anyway, so
    it is checked for the groups that committed there. A dead letter is in the lost log alone:
    then the rows go out again, for it to be dead-lettered again."""
    if reemission_requested:
        return None, "a re-emission is pending"
    if not known_topic_ids or any(log_at_stop.topic_ids.get(topic) != topic_id for topic, topic_id in known_topic_ids.items()):
        return None, "the broker's log is not the one the relay sent to"
    if log_at_stop.dead_letters:
        return None, f"{log_at_stop.dead_letters} dead letter(s) would be lost with the log"
    for group, committed in log_at_stop.committed.items():
        reads_catalog = any(topic == catalog_topic for topic, _ in committed)
        for partition, end in log_at_stop.ends.items():
            if partition[0] == catalog_topic and not reads_catalog:
                continue
            if end > 0 and committed.get(partition, -1) < end:
                return None, f"{group} has not applied {partition[0]}[{partition[1]}] to its end"
    return sent_through, "every group applied every row"


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    row_ids: list[int]


_SINGLE = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
_BATCH = [("content-type", CLOUDEVENTS_BATCH_CONTENT_TYPE.encode())]


def messages_of(rows: list[tuple[int, str, str, str]]) -> list[Message]:
    """Outbox rows as broker messages, in order: one event per message (key = publication_id),
    except on the bulk lane, where consecutive rows go out as CloudEvents batches. A batch has
    no key: its events are ordered by their versions, as the two lanes are."""
    messages: list[Message] = []
    pending: list[tuple[int, bytes]] = []
    size = 0

    def flush_bulk() -> None:
        nonlocal size
        if pending:
            value = b"[" + b",".join(payload for _, payload in pending) + b"]"
            messages.append(Message(TOPIC_PUBLICATIONS_BULK, None, value, _BATCH, [row_id for row_id, _ in pending]))
            pending.clear()
            size = 0

    for row_id, topic, key, payload in rows:
        if topic != TOPIC_PUBLICATIONS_BULK:
            flush_bulk()
            messages.append(Message(topic, key.encode(), payload.encode(), _SINGLE, [row_id]))
            continue
        encoded = payload.encode()
        if pending and (len(pending) == BULK_EVENTS_PER_MESSAGE or size + len(encoded) > BULK_BYTES_PER_MESSAGE):
            flush_bulk()
        pending.append((row_id, encoded))
        size += len(encoded) + 1
    flush_bulk()
    return messages


def start_relay_thread(relay: OutboxRelay, *, interval: float) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"interval": interval}, name="outbox-relay", daemon=True)
    thread.start()
    return thread, stop


def wait_until_drained(publisher: Publisher, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publisher.outbox_backlog() == 0:
            return True
        time.sleep(0.05)
    return False


def read_log_at_stop(bootstrap: str, groups: tuple[str, ...]) -> LogAtStop:
    """The broker's side of `applied_watermark`. The ends are the high watermarks of fetch
    answers: Tansu's ListOffsets is one short after a batch of several records, which a relay
    round cut short between NewestBatchAlone's two steps leaves behind."""
    from services.common.kafka import BrokerLog

    broker_log = BrokerLog(bootstrap)
    try:
        topic_ids = broker_log.topic_ids(RELAY_TOPICS)
        return _read_offsets(bootstrap, groups, topic_ids, broker_log)
    finally:
        broker_log.close()


def _read_offsets(bootstrap: str, groups: tuple[str, ...], topic_ids: Mapping[str, str | None], broker_log) -> LogAtStop:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    from contracts.events import dlq_topic

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        relayed = [TopicPartition(t, p) for t in RELAY_TOPICS for p in sorted(consumer.partitions_for_topic(t) or [])]
        letters = [TopicPartition(t, p) for t in map(dlq_topic, groups) for p in sorted(consumer.partitions_for_topic(t) or [])]
        ends = _fetched_ends(consumer, relayed)
        # Any batch at all makes a partition's listed end at least 1, so "empty" is exact.
        dead_letters = sum(consumer.end_offsets(letters).values()) if letters else 0
        committed = {
            group: {
                (tp.topic, tp.partition): meta.offset
                for tp, meta in admin.list_group_offsets({group: None}).get(group, {}).items()
                if tp.topic in RELAY_TOPICS and meta is not None and meta.offset >= 0
            }
            for group in groups
        }
    finally:
        consumer.close()
        admin.close()
    # A broker restarted while the offsets were read (`up` restarts one that exits) gave some of
    # them from an empty log: then the ids differ, and nothing is recorded.
    if broker_log.topic_ids(RELAY_TOPICS) != topic_ids:
        topic_ids = {}
    return LogAtStop(topic_ids=topic_ids, ends=ends, committed=committed, dead_letters=dead_letters)


def _fetched_ends(consumer, partitions, timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """partition → its end, from fetches started at the listed end (which is at most the true one)."""
    consumer.assign(partitions)
    for tp, listed in consumer.end_offsets(partitions).items():
        consumer.seek(tp, listed)
    deadline = time.monotonic() + timeout
    while any(consumer.highwater(tp) is None for tp in partitions):
        if time.monotonic() > deadline:
            raise TimeoutError("the broker did not answer a fetch of every partition")
        consumer.poll(timeout_ms=200)
    return {(tp.topic, tp.partition): consumer.highwater(tp) for tp in partitions}


def record_applied_watermark(publisher: Publisher, bootstrap: str, groups: tuple[str, ...]) -> tuple[int | None, str]:
    """At a clean stop, with every worker stopped and the broker still up: record how far
    every group applied the outbox, so the next, empty log is sent only what comes after."""
    # Read before the broker: a row sent after this is counted in the ends the groups must reach.
    sent_through = publisher.sent_through()
    known, requested = publisher.known_topic_ids(), publisher.reemission_requested()
    through, why = applied_watermark(read_log_at_stop(bootstrap, groups), known_topic_ids=known, reemission_requested=requested, sent_through=sent_through)
    if through is not None:
        publisher.record_applied_through(through)
    return through, why
