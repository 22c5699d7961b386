"""Wiring shared by the publication consumers (column, indexer, …): one faust app each,
its own consumer group, one agent with concurrency=1, a DLQ topic and a heartbeat timer.

An agent that dies anyway (a bug: poison never gets this far) takes its worker down with it:
faust would restart the agent on the next messages while the dead batch stays unacked, so the
group's offsets would freeze there for good while the worker went on beating "alive, lag 0".
Instead the worker stops beating and exits non-zero; `tongyuan up` (or the orchestrator)
starts it again from the last committed offset, and /healthz says the consumer is down until
a worker beats again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import faust
import structlog
from aiokafka.errors import MessageSizeTooLargeError

from contracts.events import BULK_EVENTS_PER_MESSAGE, TOPIC_CATALOG, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK, dlq_topic

from . import metrics
from .consuming import Apply, ConsumerStats, DeadLetter, parse_catalog_event, process_batch
from .kafka import faust_app
from .settings import Settings

log = structlog.get_logger("tongyuan.consumer")

# ≤ 200 bulk messages buffered: ≤ 20,000 events, ~66 MB of typical migrated rows.
BULK_BUFFER_MESSAGES = 200


@dataclass
class PublicationConsumer:
    group: str  # also the faust app id
    apply: Apply
    heartbeat: Callable[[ConsumerStats], None]
    # Consumers that render catalogs (the column) also keep the catalog editions in force.
    apply_catalog: Callable[[Sequence], None] | None = None
    # How long a batch may wait to fill (settings.consumer_batch_within when None).
    batch_within: float | None = None
    # Events per bulk-lane batch (settings.consumer_bulk_batch_size when None).
    bulk_batch_size: int | None = None


def build_consumer_app(consumer: PublicationConsumer, settings: Settings) -> faust.App:
    app = faust_app(consumer.group, settings)
    # Raw bytes: decoding is ours, so a malformed event is dead-lettered instead of crashing faust.
    publications = app.topic(TOPIC_PUBLICATIONS, value_type=bytes, value_serializer="raw", key_serializer="raw")
    dead_letters = app.topic(dlq_topic(consumer.group), value_type=bytes, value_serializer="raw", key_serializer="raw")
    stats = ConsumerStats()

    send_to_dlq = dead_letter_sender(dead_letters, consumer.group)

    async def apply_stream(stream, within: float, size: int) -> None:
        async for records in stream.noack_take(size, within=within):
            await process_batch(
                records, apply=consumer.apply, dead_letter=send_to_dlq, stats=stats, max_backoff=settings.store_retry_max_seconds, what=consumer.group
            )
            for record in records:
                await stream.ack(record)

    @app.agent(publications, concurrency=1, name=f"{consumer.group}.apply")
    async def apply_publications(stream):
        await until_it_dies(
            app, stats, f"{consumer.group}.apply", apply_stream(stream, consumer.batch_within or settings.consumer_batch_within, settings.consumer_batch_size)
        )

    # The bulk lane has an agent of its own, so a migration's backlog is worked through beside
    # the canonical topic instead of ahead of it; the store's versions order the two.
    # Its messages are batches, so its buffer is counted in batches: 2,000 of them (the canonical
    # topic's size) held ~600 MB in a lagging consumer. Not too few either: a full buffer stalls
    # faust's one fetch loop, canonical topic included (20 batches held a clerk's event 2 s).
    # Built as a Topic directly: app.topic() accepts maxsize but drops it (faust-streaming 0.15).
    bulk = app.conf.Topic(
        app,
        topics=(TOPIC_PUBLICATIONS_BULK,),
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        maxsize=BULK_BUFFER_MESSAGES,
    )

    @app.agent(bulk, concurrency=1, name=f"{consumer.group}.apply-bulk")
    async def apply_bulk_publications(stream):
        # Nobody waits on a migrated row, so its batches may take longer to fill, and hold more
        # (settings.consumer_bulk_batch_size). The relay packs the bulk lane
        # BULK_EVENTS_PER_MESSAGE to a message.
        messages = max(1, (consumer.bulk_batch_size or settings.consumer_bulk_batch_size) // BULK_EVENTS_PER_MESSAGE)
        within = max(settings.indexer_batch_within, consumer.batch_within or settings.consumer_batch_within)
        await until_it_dies(app, stats, f"{consumer.group}.apply-bulk", apply_stream(stream, within, messages))

    if consumer.apply_catalog is not None:
        catalog_changes = app.topic(TOPIC_CATALOG, value_type=bytes, value_serializer="raw", key_serializer="raw")
        catalog_stats = ConsumerStats()

        async def apply_catalog_stream(stream) -> None:
            async for records in stream.noack_take(50, within=settings.consumer_batch_within):
                await process_batch(
                    records,
                    apply=consumer.apply_catalog,
                    dead_letter=send_to_dlq,
                    stats=catalog_stats,
                    max_backoff=settings.store_retry_max_seconds,
                    what=f"{consumer.group}.catalog",
                    parse=parse_catalog_event,
                )
                for record in records:
                    await stream.ack(record)

        @app.agent(catalog_changes, concurrency=1, name=f"{consumer.group}.catalog")
        async def apply_catalog_changes(stream):
            await until_it_dies(app, stats, f"{consumer.group}.catalog", apply_catalog_stream(stream))

    @app.timer(settings.heartbeat_interval)
    async def measure_lag():
        stats.lag = await consumer_lag(app, consumer.group)

    @app.timer(settings.heartbeat_interval)
    async def heartbeat():
        await beat_unless_dead(consumer.heartbeat, stats)

    app.tongyuan_stats = stats  # type: ignore[attr-defined]
    return app


# What of a letter's value is kept when the whole does not fit in a DLQ record.
DLQ_VALUE_CUT = 256 * 1024


def dead_letter_sender(topic, group: str) -> Callable[[DeadLetter], Awaitable[None]]:
    async def send(letter: DeadLetter) -> None:
        # The original bytes as they came, so AsyncAPI's deadLetter message says octet-stream.
        headers = {
            "content-type": b"application/octet-stream",
            "tongyuan-error": letter.error[:4000].encode(),
            "tongyuan-origin": letter.origin.encode(),
            "tongyuan-group": group.encode(),
        }
        try:
            await (await topic.send(key=letter.key, value=letter.raw, headers=headers))  # acked only once the DLQ holds it
        except MessageSizeTooLargeError:
            # The original plus its headers does not fit in a record: a letter retried for ever
            # would hold the stream. It goes cut, saying so; its origin says where the whole is.
            headers["tongyuan-truncated"] = str(len(letter.raw)).encode()
            await (await topic.send(key=letter.key, value=letter.raw[:DLQ_VALUE_CUT], headers=headers))

    return send


async def beat_unless_dead(heartbeat: Callable[[ConsumerStats], None], stats: ConsumerStats) -> None:
    if stats.failure is not None:
        return  # a worker whose agent died is not alive, whatever its timers still do
    try:
        await asyncio.to_thread(heartbeat, stats)
    except Exception:  # a store outage shows up as a stale heartbeat in /healthz
        pass


async def until_it_dies(app: faust.App, stats: ConsumerStats, agent: str, work: Awaitable[None]) -> None:
    """Run an agent's loop; if it dies, the worker stops beating and exits (see the module)."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        stats.failure = f"{agent}: {type(exc).__name__}: {exc}"[:1000]
        log.critical("agent.died", agent=agent, error=repr(exc)[:1000])
        await app.crash(exc)
        raise


async def consumer_lag(app: faust.App, group: str) -> int | None:
    """Messages between the group's committed offsets and the ends of this worker's
    partitions: what is not durably applied yet. (Its read positions would say 0 while a
    fetched batch sits unacked, or an agent is dead.)"""
    try:
        assigned = app.consumer.assignment()
        total = 0
        for tp in assigned:
            highwater = app.consumer.highwater(tp)
            if highwater is None:
                continue
            committed = app.consumer._committed_offset.get(tp)  # faust keeps it on every commit and seek
            behind = max(0, highwater - (committed or 0))
            metrics.CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(behind)
            total += behind
        return total
    except Exception:  # not assigned yet, or rebalancing
        return None


def use_fast_event_loop() -> None:
    """uvloop for every loop this process creates (faust's consumer thread has one of its own).
    Much of faust's cost per message is event-loop work — tasks, futures, callbacks — which
    uvloop does in C. Call it before the app exists."""
    import mode.loop

    mode.loop.use("uvloop")


def worker_for(app: faust.App, loglevel: str = "warn"):
    from faust.worker import Worker

    # mode would otherwise swap sys.stderr for a proxy that re-logs every structlog line
    # through colorlog: ~40 µs a line, and a line per publication in the gate.
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # faust's progress spinner sets the root logger to DEBUG so that every record can turn
    # it: kafka-python, aiokafka and faust then build a LogRecord for each debug line (one
    # per message sent, per fetch, …) only for the handlers to drop it (~20 µs a message
    # in a consumer). Our logs are lines, not a spinner.
    worker.spinner = None
    return worker


def run_worker(app: faust.App, loglevel: str = "warn") -> None:
    worker_for(app, loglevel).execute_from_commandline()
