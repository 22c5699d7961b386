"""The embed consumer's wiring (group tongyuan-embed): its store and its faust app."""

from __future__ import annotations

import faust

from services.common.db import BULK_WRITER_CACHE_MB, create_store_engine
from services.common.faust_consumer import create_consumer as consumer_app
from services.common.heartbeat import beat, live_workers
from services.common.settings import Settings

from .store import EmbedStore, heartbeats

STORE = "embed"
GROUP = "tongyuan-embed"


def build_store(settings: Settings, *, cache_mb: int | None = None) -> EmbedStore:
    store = EmbedStore(create_store_engine(settings.store_url(STORE), cache_mb=cache_mb))
    store.create()
    return store


def create_consumer(settings: Settings) -> faust.App:
    store = build_store(settings, cache_mb=BULK_WRITER_CACHE_MB)
    return consumer_app(
        GROUP,
        store.projection(),
        settings,
        heartbeat=lambda stats: beat(store.engine, heartbeats, group_id=GROUP, applied=stats.applied, dead_lettered=stats.dead_lettered),
    )


def heartbeat_status(store: EmbedStore, within: float) -> list[dict]:
    return live_workers(store.engine, heartbeats, within=within)
