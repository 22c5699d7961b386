"""The publisher process: the CMS inbound agent and the outbox relay (group tongyuan-publisher).

`bootstrap` is the one place that builds the publisher's dependencies; the portal's publish
API and this faust app both call it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import faust
import structlog

from contracts.catalog import STANDARD, regions_of_city, standard_catalog, standard_catalog_2021
from contracts.events import TOPIC_CMS, TOPIC_REJECTIONS
from services.common.consuming import is_transient
from services.common.db import create_store_engine
from services.common.heartbeat import beat
from services.common.kafka import faust_app, idempotent_producer
from services.common.settings import Settings

from . import catalogs
from .domain import Directory
from .inbound import handle_cms_message
from .relay import OutboxRelay, start_relay_thread
from .store import Publisher, heartbeats

GROUP = "tongyuan-publisher"
log = structlog.get_logger("tongyuan.publisher")


def bootstrap(settings: Settings, *, load_reference: bool = True) -> Publisher:
    publisher = Publisher(create_store_engine(settings.store_url("publisher")))
    publisher.create_tables()
    if load_reference and STANDARD not in publisher.catalogs():
        catalogs.load_reference(publisher, standard_editions=[standard_catalog_2021(), standard_catalog()], regions=regions_of_city("4301"))
    return publisher


def directory_provider(publisher: Publisher, ttl: float = 30.0) -> Callable[[], Directory]:
    """The catalog and regions, re-read from the database at most every `ttl` seconds."""
    cached: dict[str, object] = {}
    lock = threading.Lock()

    def current() -> Directory:
        with lock:
            if not cached or time.monotonic() - cached["at"] > ttl:  # type: ignore[operator]
                current = publisher.catalogs()
                if STANDARD not in current:
                    raise RuntimeError("no catalog loaded; run `tongyuan db init`")
                cached.update(directory=Directory(catalogs=current, regions=publisher.regions()), at=time.monotonic())
            return cached["directory"]  # type: ignore[return-value]

    return current


def create_app(settings: Settings) -> faust.App:
    publisher = bootstrap(settings)
    directory = directory_provider(publisher)
    app = faust_app(GROUP, settings)
    cms = app.topic(TOPIC_CMS, value_type=bytes, value_serializer="raw", key_serializer="raw")
    rejections = app.topic(TOPIC_REJECTIONS, value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def accept(raw: bytes):
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(handle_cms_message, raw, publisher=publisher, directory=directory())
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("store.unavailable", consumer=GROUP, error=str(exc).splitlines()[0], retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(settings.store_retry_max_seconds, delay * 2)

    @app.agent(cms, concurrency=1, name="tongyuan-publisher.cms")
    async def accept_cms_requests(stream):
        async for records in stream.noack_take(settings.consumer_batch_size, within=settings.consumer_batch_within):
            for record in records:
                outcome = await accept(record.value)
                if outcome.rejection is not None:
                    rejection = outcome.rejection
                    log.info("cms.rejected", original_id=rejection.data.original_id, errors=len(rejection.data.errors))
                    pending = await rejections.send(key=record.message.key, value=rejection.model_dump_json(exclude_none=True).encode())
                    await pending
                await stream.ack(record)

    @app.timer(settings.heartbeat_interval)
    async def heartbeat():
        try:
            await asyncio.to_thread(beat, publisher.engine, heartbeats, group_id=GROUP, applied=0, dead_lettered=0)
        except Exception:  # shows up as a stale heartbeat in /healthz
            pass

    @app.task
    async def relay_outbox():
        relay = OutboxRelay(publisher, idempotent_producer(settings.bootstrap), batch_size=settings.relay_batch_size)
        start_relay_thread(relay, interval=settings.relay_interval)
        log.info("relay.started")

    return app
