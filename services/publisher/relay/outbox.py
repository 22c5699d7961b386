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
from services.publisher.store import Publisher

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
        self._highest_acked: dict[tuple[object, object], int] = {}  # (topic, partition) → offset
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
        assert self.topic_ids is not None  # looked at only when given
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

    def _note_ack(self, metadata: object) -> None:
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
