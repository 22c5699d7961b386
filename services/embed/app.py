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


def embed_store_url(settings: Settings) -> str:
    """The embed store's URL: the shared database when one is configured, else var/embed.db.

    Uses Settings.store_url once it knows the "embed" store; until then builds the same URL."""
    try:
        return settings.store_url(STORE)
    except ValueError:
        if settings.database_url:
            return settings.database_url
        return f"sqlite:///{(settings.var_dir / f'{STORE}.db').resolve()}"


def build_store(settings: Settings, *, cache_mb: int | None = None) -> EmbedStore:
    store = EmbedStore(create_store_engine(embed_store_url(settings), cache_mb=cache_mb))
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
