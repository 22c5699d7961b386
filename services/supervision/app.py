"""The supervision consumer's wiring (group tongyuan-supervision): its store and its faust app.

Supervision is a consumer like the column: it reads the canonical publications topic and
the catalog topic, and is the only writer of its store (see store.py for why it does not
read the column store instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import faust
import structlog

from services.common.consuming import ConsumerStats
from services.common.db import create_store_engine
from services.common.faust_consumer import create_consumer as consumer_app
from services.common.faust_consumer import heartbeat_into
from services.common.heartbeat import live_workers
from services.common.settings import Settings

from .store import SupervisionStore, heartbeats

if TYPE_CHECKING:
    from services.bootstrap import Composition

GROUP = "tongyuan-supervision"
log = structlog.get_logger("tongyuan.supervision")


def build_store(settings: Settings, *, cache_mb: int | None = None) -> SupervisionStore:
    store = SupervisionStore(create_store_engine(settings.store_url("supervision"), cache_mb=cache_mb))
    store.create()
    return store


def create_consumer(parts: Composition) -> faust.App:
    """The consumer over the store the composition root built (services.bootstrap.for_consumers)."""
    store = parts.supervision_store
    # Filings a former chinese-calendar release could not assess (a year it did not cover)
    # are assessed again with the release installed now.
    reassessed = store.reassess()
    if reassessed:
        log.info("supervision.reassessed", filings=reassessed, calendar=store.calendar.source)
    return consumer_app(GROUP, store.projection(), parts.settings, catalogs=store.catalog_projection(), heartbeat=heartbeat_writer(store))


def heartbeat_writer(store: SupervisionStore) -> Callable[[ConsumerStats], None]:
    return heartbeat_into(store.engine, heartbeats, GROUP)


def heartbeat_status(store: SupervisionStore, within: float) -> list[dict]:
    return live_workers(store.engine, heartbeats, within=within)
