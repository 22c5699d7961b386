"""The embed consumer's wiring (group tongyuan-embed): its store and its faust app."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from services.common.db import create_store_engine
from services.common.faust_consumer import create_consumer as consumer_app
from services.common.faust_consumer import heartbeat_into
from services.common.heartbeat import live_workers
from services.common.settings import Settings

from .store import EmbedStore, heartbeats

if TYPE_CHECKING:
    from services.bootstrap import Composition

STORE = "embed"
GROUP = "tongyuan-embed"


def build_store(settings: Settings, *, cache_mb: int | None = None) -> EmbedStore:
    store = EmbedStore(create_store_engine(settings.store_url(STORE), cache_mb=cache_mb))
    store.create()
    return store


def create_consumer(parts: Composition) -> faust.App:
    """The consumer over the store the composition root built (services.bootstrap.for_consumers)."""
    store = parts.embed_store
    return consumer_app(
        GROUP,
        store.projection(),
        parts.settings,
        heartbeat=heartbeat_into(store.engine, heartbeats, GROUP),
    )


def heartbeat_status(store: EmbedStore, within: float) -> list[dict]:
    return live_workers(store.engine, heartbeats, within=within)
