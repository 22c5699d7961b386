"""Delivery of a fetched batch (services/common/faust_patches.py), the part of faust's fetch loop we
replaced: in order, never an offset below what was delivered, gaps recorded as acked."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from services.common.faust_patches import PromptConsumer


def _consumer(read_offsets: dict | None = None, acks: bool = True):
    delivered, gaps = [], []

    async def callback(message):
        delivered.append((message.tp, message.offset))

    async def add_gap(tp, start, end):
        gaps.append((tp, start, end))

    consumer = SimpleNamespace(
        callback=callback,
        _read_offset=defaultdict(lambda: None, read_offsets or {}),
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: acks)),
        _add_gap=add_gap,
    )
    return consumer, delivered, gaps


def _fetched(*pairs):
    return [(tp, SimpleNamespace(tp=tp, offset=offset, topic="t")) for tp, offset in pairs]


def _deliver(consumer, fetched):
    asyncio.run(PromptConsumer._deliver(consumer, fetched))


def test_a_batch_is_delivered_in_order_and_each_read_offset_follows():
    consumer, delivered, gaps = _consumer()

    _deliver(consumer, _fetched(("p0", 0), ("p0", 1), ("p1", 0), ("p0", 2)))

    assert delivered == [("p0", 0), ("p0", 1), ("p1", 0), ("p0", 2)]
    assert consumer._read_offset["p0"] == 2 and consumer._read_offset["p1"] == 0
    assert gaps == []


def test_offsets_below_the_read_offset_are_not_delivered_again():
    consumer, delivered, _ = _consumer({"p0": 5})

    _deliver(consumer, _fetched(("p0", 3), ("p0", 4), ("p0", 5), ("p0", 6)))

    assert delivered == [("p0", 5), ("p0", 6)]  # 5 again: faust's own rule (offset >= read offset)


def test_offsets_the_broker_skipped_are_recorded_as_a_gap_when_acks_are_tracked():
    consumer, delivered, gaps = _consumer({"p0": 2})
    _deliver(consumer, _fetched(("p0", 7)))
    assert delivered == [("p0", 7)] and gaps == [("p0", 3, 7)]

    untracked, _, no_gaps = _consumer({"p0": 2}, acks=False)
    _deliver(untracked, _fetched(("p0", 7)))
    assert no_gaps == []


def test_a_long_batch_lets_other_tasks_run():
    consumer, delivered, _ = _consumer()
    ticks = []

    async def scenario():
        async def other():
            while len(delivered) < 250:
                ticks.append(len(delivered))
                await asyncio.sleep(0)

        await asyncio.gather(PromptConsumer._deliver(consumer, _fetched(*(("p0", n) for n in range(250)))), other())

    asyncio.run(scenario())
    assert len(delivered) == 250
    assert any(0 < tick < 250 for tick in ticks)  # the other task ran in the middle of the batch


def test_the_worker_leaves_library_debug_logging_off():
    """faust's spinner would set the root logger to DEBUG, so kafka-python and aiokafka built
    a record for every debug line (one per message) only to drop it."""
    import logging

    import faust

    from services.common.faust_consumer import worker_for

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        worker = worker_for(faust.App("test-logging", broker="kafka://127.0.0.1:1", web_enabled=False))
        worker._setup_logging()
        assert not logging.getLogger("kafka.producer.kafka").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("faust").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
