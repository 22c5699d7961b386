"""The publisher process (group tongyuan-publisher): the gate's inbound lanes (the CMS topic and
the service-item topic) and the outbox relay.

`bootstrap` builds the publisher's database (its tables and the catalog's, with the reference
catalog on first start); the portal, the CLI and this faust app call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faust
import structlog

from contracts.catalog import STANDARD, regions_of_city, standard_catalog, standard_catalog_2021
from contracts.events import TOPIC_CMS, TOPIC_REJECTIONS, TOPIC_SERVICE_ITEMS
from services.catalog import editions
from services.catalog.directory import DirectoryProvider
from services.catalog.store import Catalogs
from services.common import metrics
from services.common.consuming import ConsumerStats, is_transient
from services.common.db import SQLITE_REQUEST_PATH_CHECKPOINT_PAGES, create_store_engine
from services.common.faust_consumer import until_it_dies
from services.common.heartbeat import beat
from services.common.kafka import CONSUMER_GROUPS, faust_app, idempotent_producer
from services.common.settings import Settings

from .gate.inbound import Outcome, handle_cms_batch, rejection_message
from .gate.service_items import handle_service_item_batch
from .relay.broker_log import record_applied_watermark, relay_topic_ids
from .relay.outbox import OutboxRelay, start_relay_thread
from .store import Publisher
from .tables import heartbeats

if TYPE_CHECKING:
    from services.bootstrap import Composition

GROUP = "tongyuan-publisher"
log = structlog.get_logger("tongyuan.publisher")

Lane = Callable[..., list[Outcome]]


def bootstrap(settings: Settings, *, load_reference: bool = True, cache_mb: int | None = None) -> Publisher:
    # A clerk's publish commits here, in its HTTP request: checkpoints kept small.
    engine = create_store_engine(settings.store_url("publisher"), checkpoint_pages=SQLITE_REQUEST_PATH_CHECKPOINT_PAGES, cache_mb=cache_mb)
    publisher = Publisher(engine)
    publisher.create_tables()
    catalogs = Catalogs(engine)
    catalogs.create_tables()
    if load_reference and STANDARD not in catalogs.in_force():
        editions.load_reference(publisher, standard_editions=[standard_catalog_2021(), standard_catalog()], regions=regions_of_city("4301"))
    return publisher


def directory_provider(publisher: Publisher) -> DirectoryProvider:
    return DirectoryProvider(Catalogs(publisher.engine))


class _Gate:
    """The gate's inbound lanes as faust agents: a batch per transaction, rejections to
    tongyuan.rejections.v1, acks only after both are durable."""

    def __init__(self, app: faust.App, settings: Settings, publisher: Publisher) -> None:
        self.settings, self.publisher = settings, publisher
        self.directory = directory_provider(publisher)
        self.rejections = app.topic(TOPIC_REJECTIONS, value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def accept(self, raws: list[bytes], handler: Lane) -> list[Outcome]:
        """The lane's batch through the gate, waiting out a store that is down."""
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(handler, raws, publisher=self.publisher, directory=self.directory())
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("store.unavailable", consumer=GROUP, error=str(exc).splitlines()[0], retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(self.settings.store_retry_max_seconds, delay * 2)

    async def lane(self, stream: Any, handler: Lane) -> None:
        async for records in stream.noack_take(self.settings.consumer_batch_size, within=self.settings.consumer_batch_within):
            outcomes = await self.accept([record.value for record in records], handler)
            for record, outcome in zip(records, outcomes, strict=True):
                if outcome.rejection is not None:
                    await self._reject(record, outcome)
            for record in records:
                await stream.ack(record)

    async def _reject(self, record: Any, outcome: Outcome) -> None:
        rejection = outcome.rejection
        assert rejection is not None
        log.info("inbound.rejected", topic=record.message.topic, original_id=rejection.data.original_id, errors=len(rejection.data.errors))
        value, headers = rejection_message(rejection)
        pending = await self.rejections.send(key=record.message.key, value=value, headers=headers)
        await pending


def create_app(parts: Composition) -> faust.App:
    """The publisher process over the store the composition root built."""
    settings, publisher = parts.settings, parts.publisher
    app = faust_app(GROUP, settings)
    gate = _Gate(app, settings, publisher)
    stats = ConsumerStats()  # its failure stops the heartbeat, as in every consumer
    _add_lane(app, stats, gate, TOPIC_CMS, "tongyuan-publisher.cms", handle_cms_batch)
    _add_lane(app, stats, gate, TOPIC_SERVICE_ITEMS, "tongyuan-publisher.service-items", handle_service_item_batch)

    @app.timer(settings.heartbeat_interval)
    async def heartbeat() -> None:
        if stats.failure is not None:
            return
        try:
            await asyncio.to_thread(beat, publisher.engine, heartbeats, group_id=GROUP, applied=0, dead_lettered=0)
            metrics.OUTBOX_BACKLOG.set(await asyncio.to_thread(publisher.outbox_backlog))
        except Exception:  # shows up as a stale heartbeat in /healthz
            pass

    @app.task
    async def relay_outbox() -> None:
        relay = OutboxRelay(
            publisher,
            lambda: idempotent_producer(settings.bootstrap),
            batch_size=settings.relay_batch_size,
            topic_ids=relay_topic_ids(settings),
            applied_watermark=lambda: record_applied_watermark(publisher, settings.bootstrap, CONSUMER_GROUPS),
        )
        start_relay_thread(relay, interval=settings.relay_interval)
        log.info("relay.started")

    app.tongyuan_stats = stats  # type: ignore[attr-defined]  # as every consumer app carries it
    return app


def _add_lane(app: faust.App, stats: ConsumerStats, gate: _Gate, topic_name: str, name: str, handler: Lane) -> None:
    topic = app.topic(topic_name, value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def lane(stream: Any) -> None:
        await until_it_dies(app, stats, name, gate.lane(stream, handler))

    lane.__name__ = lane.__qualname__ = name.replace("-", "_").replace(".", "_")
    app.agent(topic, concurrency=1, name=name)(lane)
