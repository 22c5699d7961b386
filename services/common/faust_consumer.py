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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from aiokafka.errors import MessageSizeTooLargeError
from sqlalchemy import Engine, Table

from contracts.events import BULK_EVENTS_PER_MESSAGE, TOPIC_CATALOG, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK, CatalogChangedEvent, dlq_topic

from . import metrics
from .consuming import ConsumerStats, DeadLetter, parse_catalog_event, parse_publication_event, process_batch
from .heartbeat import beat
from .kafka import faust_app
from .projection import Projection, PublicationEvent
from .settings import Settings

log = structlog.get_logger("tongyuan.consumer")

# ≤ 200 bulk messages buffered: ≤ 20,000 events, tens of MB of typical migrated rows.
BULK_BUFFER_MESSAGES = 200


@dataclass(frozen=True)
class _Lanes:
    """What the agents of one consumer share."""

    app: faust.App
    group: str
    stats: ConsumerStats
    dead_letter: Callable[[DeadLetter], Awaitable[None]]
    max_backoff: float


def create_consumer(
    group: str,
    projection: Projection[PublicationEvent],
    settings: Settings,
    *,
    heartbeat: Callable[[ConsumerStats], None],
    catalogs: Projection[CatalogChangedEvent] | None = None,
    batch_within: float | None = None,
    bulk_batch_size: int | None = None,
) -> faust.App:
    """The faust app of one consumer group (`group` is also the app id): an agent per lane
    applying to `projection`, the catalog lane when `catalogs` keeps the editions in force
    (consumers that render catalogs), the lag and the heartbeat. `batch_within`: how long a
    batch may wait to fill, `bulk_batch_size`: events per bulk-lane batch (the settings' when None)."""
    app = faust_app(group, settings)
    # Raw bytes: decoding is ours, so a malformed event is dead-lettered instead of crashing faust.
    dead_letters = app.topic(dlq_topic(group), value_type=bytes, value_serializer="raw", key_serializer="raw")
    stats = ConsumerStats()
    lanes = _Lanes(app, group, stats, dead_letter_sender(dead_letters, group), settings.store_retry_max_seconds)
    within = batch_within or settings.consumer_batch_within
    _publication_lane(lanes, projection, within, settings.consumer_batch_size)
    # Nobody waits on a migrated row, so bulk batches may take longer to fill, and hold more.
    bulk_within = max(settings.indexer_batch_within, within)
    _bulk_lane(lanes, projection, bulk_within, bulk_batch_size or settings.consumer_bulk_batch_size)
    if catalogs is not None:
        _catalog_lane(lanes, catalogs, settings.consumer_batch_within)

    @app.timer(settings.heartbeat_interval)
    async def measure_lag() -> None:
        stats.lag = await consumer_lag(app, group)

    @app.timer(settings.heartbeat_interval)
    async def beat() -> None:
        await beat_unless_dead(heartbeat, stats)

    app.tongyuan_stats = stats  # type: ignore[attr-defined]  # read by tests and the bench
    return app


async def _apply_stream(
    lanes: _Lanes,
    stream: Any,
    projection: Projection[Any],
    *,
    size: int,
    within: float,
    stats: ConsumerStats,
    what: str,
    parse: Callable[[bytes], object] = parse_publication_event,
) -> None:
    """Batches of records, each applied durably (or dead-lettered) before it is acked."""
    async for records in stream.noack_take(size, within=within):
        await process_batch(records, apply=projection.apply, dead_letter=lanes.dead_letter, stats=stats, max_backoff=lanes.max_backoff, what=what, parse=parse)
        for record in records:
            await stream.ack(record)


def _publication_lane(lanes: _Lanes, projection: Projection[PublicationEvent], within: float, size: int) -> None:
    publications = lanes.app.topic(TOPIC_PUBLICATIONS, value_type=bytes, value_serializer="raw", key_serializer="raw")
    name = f"{lanes.group}.apply"

    @lanes.app.agent(publications, concurrency=1, name=name)
    async def apply_publications(stream: Any) -> None:
        work = _apply_stream(lanes, stream, projection, size=size, within=within, stats=lanes.stats, what=lanes.group)
        await until_it_dies(lanes.app, lanes.stats, name, work)


def _bulk_lane(lanes: _Lanes, projection: Projection[PublicationEvent], within: float, events: int) -> None:
    """The bulk lane has an agent of its own, so a migration's backlog is worked through beside
    the canonical topic instead of ahead of it; the store's versions order the two.

    Its messages are batches (BULK_EVENTS_PER_MESSAGE events each), so its buffer is counted in
    batches: the canonical topic's buffer size in batches would hold hundreds of MB in a lagging consumer.
    Not too few either: a full buffer stalls faust's one fetch loop, canonical topic included.
    Built as a Topic directly: app.topic() accepts maxsize but drops it (faust-streaming 0.15)."""
    app = lanes.app
    bulk = app.conf.Topic(  # type: ignore[operator]  # faust types conf.Topic as a typing form; it is the Topic class
        app, topics=(TOPIC_PUBLICATIONS_BULK,), value_type=bytes, value_serializer="raw", key_serializer="raw", maxsize=BULK_BUFFER_MESSAGES
    )
    messages = max(1, events // BULK_EVENTS_PER_MESSAGE)
    name = f"{lanes.group}.apply-bulk"

    @app.agent(bulk, concurrency=1, name=name)
    async def apply_bulk_publications(stream: Any) -> None:
        work = _apply_stream(lanes, stream, projection, size=messages, within=within, stats=lanes.stats, what=lanes.group)
        await until_it_dies(app, lanes.stats, name, work)


def _catalog_lane(lanes: _Lanes, catalogs: Projection[CatalogChangedEvent], within: float) -> None:
    """Catalog editions in force, for consumers that render catalogs (the column, supervision)."""
    changes = lanes.app.topic(TOPIC_CATALOG, value_type=bytes, value_serializer="raw", key_serializer="raw")
    catalog_stats = ConsumerStats()
    name = f"{lanes.group}.catalog"

    @lanes.app.agent(changes, concurrency=1, name=name)
    async def apply_catalog_changes(stream: Any) -> None:
        work = _apply_stream(lanes, stream, catalogs, size=50, within=within, stats=catalog_stats, what=name, parse=parse_catalog_event)
        await until_it_dies(lanes.app, lanes.stats, name, work)


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


def heartbeat_into(engine: Engine, table: Table, group: str) -> Callable[[ConsumerStats], None]:
    """A consumer's heartbeat as a row of its store's heartbeat table (services.common.heartbeat),
    with how far behind the group is: what /readyz holds against TONGYUAN_READY_MAX_LAG."""

    def write(stats: ConsumerStats) -> None:
        beat(engine, table, group_id=group, applied=stats.applied, dead_lettered=stats.dead_lettered, lag=stats.lag)

    return write


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
            # faust keeps it on every commit and seek (on its Consumer, not on the ConsumerT protocol)
            committed = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
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
    # through colorlog, at a line per publication in the gate.
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # faust's progress spinner sets the root logger to DEBUG so that every record can turn
    # it: kafka-python, aiokafka and faust then build a LogRecord for each debug line (one
    # per message sent, per fetch, …) only for the handlers to drop it. Our logs are lines,
    # not a spinner.
    worker.spinner = None
    return worker


def run_worker(app: faust.App, loglevel: str = "warn") -> None:
    worker_for(app, loglevel).execute_from_commandline()
