"""The publisher process: the CMS inbound agent and the outbox relay (group tongyuan-publisher).

`bootstrap` is the one place that builds the publisher's dependencies; the portal's publish
API and this faust app both call it.
"""

from __future__ import annotations

import asyncio
import threading

import faust
import structlog

from contracts.catalog import STANDARD, regions_of_city, standard_catalog, standard_catalog_2021
from contracts.events import TOPIC_CMS, TOPIC_REJECTIONS, TOPIC_SERVICE_ITEMS
from services.common import metrics
from services.common.consuming import ConsumerStats, is_transient
from services.common.db import SQLITE_REQUEST_PATH_CHECKPOINT_PAGES, create_store_engine
from services.common.faust_consumer import until_it_dies
from services.common.heartbeat import beat
from services.common.kafka import CONSUMER_GROUPS, BrokerLog, ensure_topics, faust_app, idempotent_producer
from services.common.settings import Settings

from . import catalogs
from .domain import Directory
from .inbound import handle_cms_batch, rejection_message
from .relay import RELAY_TOPICS, OutboxRelay, record_applied_watermark, start_relay_thread
from .service_items import handle_service_item_batch
from .store import Publisher, heartbeats

GROUP = "tongyuan-publisher"
log = structlog.get_logger("tongyuan.publisher")


def bootstrap(settings: Settings, *, load_reference: bool = True, cache_mb: int | None = None) -> Publisher:
    # A clerk's publish commits here, in its HTTP request: checkpoints kept small.
    engine = create_store_engine(settings.store_url("publisher"), checkpoint_pages=SQLITE_REQUEST_PATH_CHECKPOINT_PAGES, cache_mb=cache_mb)
    publisher = Publisher(engine)
    publisher.create_tables()
    if load_reference and STANDARD not in publisher.catalogs():
        catalogs.load_reference(publisher, standard_editions=[standard_catalog_2021(), standard_catalog()], regions=regions_of_city("4301"))
    return publisher


class DirectoryProvider:
    """The catalogs in force and the regions, re-read whenever their stamp moved: an edition
    published by any process (the catalog API in the portal, `tongyuan catalog`, another
    publisher) is what the next request or batch is checked against. A clerk who adds an item
    and files under it at once must not be told it does not exist. The stamp costs one small
    query a call; the catalogs are parsed again only when it changed."""

    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self._lock = threading.Lock()
        self._cached: tuple[tuple, Directory] | None = None

    def __call__(self) -> Directory:
        with self._lock:
            stamp = self.publisher.directory_stamp()
            if self._cached is None or self._cached[0] != stamp:
                current = self.publisher.catalogs()
                if STANDARD not in current:
                    raise RuntimeError("no catalog loaded; run `tongyuan db init`")
                # Read after the stamp: a change in between is read now and read again next call.
                self._cached = (stamp, Directory(catalogs=current, regions=self.publisher.regions()))
            return self._cached[1]

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None


def directory_provider(publisher: Publisher) -> DirectoryProvider:
    return DirectoryProvider(publisher)


def relay_topic_ids(settings: Settings):
    """The ids of the relay's topics, creating those a restarted broker no longer has (a
    topic created by the first send would get the broker's default partitioning)."""
    broker_log = BrokerLog(settings.bootstrap)

    def topic_ids() -> dict[str, str | None]:
        ids = broker_log.topic_ids(RELAY_TOPICS)
        missing = [topic for topic, topic_id in ids.items() if topic_id is None]
        if missing:
            ensure_topics(settings.bootstrap, settings.topic_partitions, missing)
            ids = broker_log.topic_ids(RELAY_TOPICS)
        return ids

    return topic_ids


def create_app(settings: Settings) -> faust.App:
    publisher = bootstrap(settings)
    directory = directory_provider(publisher)
    app = faust_app(GROUP, settings)
    cms = app.topic(TOPIC_CMS, value_type=bytes, value_serializer="raw", key_serializer="raw")
    rejections = app.topic(TOPIC_REJECTIONS, value_type=bytes, value_serializer="raw", key_serializer="raw")

    service_items = app.topic(TOPIC_SERVICE_ITEMS, value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def accept(raws: list[bytes], handler):
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(handler, raws, publisher=publisher, directory=directory())
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("store.unavailable", consumer=GROUP, error=str(exc).splitlines()[0], retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(settings.store_retry_max_seconds, delay * 2)

    async def gate_lane(stream, handler) -> None:
        """One inbound lane through the gate: a batch per transaction, rejections to
        tongyuan.rejections.v1, acks only after both are durable."""
        async for records in stream.noack_take(settings.consumer_batch_size, within=settings.consumer_batch_within):
            outcomes = await accept([record.value for record in records], handler)
            for record, outcome in zip(records, outcomes, strict=True):
                if outcome.rejection is not None:
                    rejection = outcome.rejection
                    log.info("inbound.rejected", topic=record.message.topic, original_id=rejection.data.original_id, errors=len(rejection.data.errors))
                    value, headers = rejection_message(rejection)
                    pending = await rejections.send(key=record.message.key, value=value, headers=headers)
                    await pending
            for record in records:
                await stream.ack(record)

    stats = ConsumerStats()  # its failure stops the heartbeat, as in every consumer

    @app.agent(cms, concurrency=1, name="tongyuan-publisher.cms")
    async def accept_cms_requests(stream):
        await until_it_dies(app, stats, "tongyuan-publisher.cms", gate_lane(stream, handle_cms_batch))

    @app.agent(service_items, concurrency=1, name="tongyuan-publisher.service-items")
    async def accept_service_items(stream):
        await until_it_dies(app, stats, "tongyuan-publisher.service-items", gate_lane(stream, handle_service_item_batch))

    @app.timer(settings.heartbeat_interval)
    async def heartbeat():
        if stats.failure is not None:
            return
        try:
            await asyncio.to_thread(beat, publisher.engine, heartbeats, group_id=GROUP, applied=0, dead_lettered=0)
            metrics.OUTBOX_BACKLOG.set(await asyncio.to_thread(publisher.outbox_backlog))
        except Exception:  # shows up as a stale heartbeat in /healthz
            pass

    @app.task
    async def relay_outbox():
        relay = OutboxRelay(
            publisher,
            lambda: idempotent_producer(settings.bootstrap),
            batch_size=settings.relay_batch_size,
            topic_ids=relay_topic_ids(settings),
            applied_watermark=lambda: record_applied_watermark(publisher, settings.bootstrap, CONSUMER_GROUPS),
        )
        start_relay_thread(relay, interval=settings.relay_interval)
        log.info("relay.started")

    app.tongyuan_stats = stats  # type: ignore[attr-defined]
    return app
