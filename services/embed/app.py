"""The embed consumer's wiring (group tongyuan-embed): its store and its faust app."""

from __future__ import annotations

import faust

from services.common.db import create_store_engine
from services.common.faust_consumer import PublicationConsumer, build_consumer_app
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


def build_store(settings: Settings) -> EmbedStore:
    store = EmbedStore(create_store_engine(embed_store_url(settings)))
    store.create()
    return store


def create_consumer(settings: Settings) -> faust.App:
    store = build_store(settings)
    consumer = PublicationConsumer(
        group=GROUP,
        apply=store.apply,
        heartbeat=lambda stats: beat(store.engine, heartbeats, group_id=GROUP, applied=stats.applied, dead_lettered=stats.dead_lettered),
    )
    return build_consumer_app(consumer, settings)


def heartbeat_status(store: EmbedStore, within: float) -> list[dict]:
    return live_workers(store.engine, heartbeats, within=within)


def main() -> None:
    """Run one embed worker (`python -m services.embed.app`) until `tongyuan run embed` exists."""
    import sys

    from services.common.faust_consumer import run_worker
    from services.common.logging import configure_logging
    from services.common.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    sys.argv = [sys.argv[0]]  # faust's worker parses argv itself
    run_worker(create_consumer(settings), loglevel="warn")


if __name__ == "__main__":
    main()
