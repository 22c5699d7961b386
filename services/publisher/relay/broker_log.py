"""What the relay knows of the broker's log: whether it is still the log the relay sent to,
and — at a clean stop — how far every consumer group applied it (the applied watermark), so a
new, empty log is sent only what comes after."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts.events import TOPIC_CATALOG
from services.common.settings import Settings
from services.publisher.store import Publisher

from .outbox import RELAY_TOPICS


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


def read_log_at_stop(bootstrap: str, groups: tuple[str, ...]) -> LogAtStop:
    """The broker's side of `applied_watermark`. The ends are the high watermarks of fetch
    answers: Tansu's ListOffsets is one short after a batch of several records, which a relay
    round cut short between NewestBatchAlone's two steps leaves behind."""
    from services.common.kafka import BrokerLog  # faust loads only in processes that run it

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


def relay_topic_ids(settings: Settings) -> Callable[[], dict[str, str | None]]:
    """The ids of the relay's topics, creating those a restarted broker no longer has (a
    topic created by the first send would get the broker's default partitioning)."""
    from services.common.kafka import BrokerLog, ensure_topics

    broker_log = BrokerLog(settings.bootstrap)

    def topic_ids() -> dict[str, str | None]:
        ids = broker_log.topic_ids(RELAY_TOPICS)
        missing = [topic for topic, topic_id in ids.items() if topic_id is None]
        if missing:
            ensure_topics(settings.bootstrap, settings.topic_partitions, missing)
            ids = broker_log.topic_ids(RELAY_TOPICS)
        return ids

    return topic_ids
