"""Wiring shared by the publication consumers (column, indexer, …): one faust app each,
its own consumer group, one agent with concurrency=1, a DLQ topic and a heartbeat timer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import faust

from contracts.events import TOPIC_PUBLICATIONS, dlq_topic

from .consuming import Apply, ConsumerStats, DeadLetter, process_batch
from .kafka import faust_app
from .settings import Settings


@dataclass
class PublicationConsumer:
    group: str  # also the faust app id
    apply: Apply
    heartbeat: Callable[[ConsumerStats], None]


def build_consumer_app(consumer: PublicationConsumer, settings: Settings) -> faust.App:
    app = faust_app(consumer.group, settings)
    # Raw bytes: decoding is ours, so a malformed event is dead-lettered instead of crashing faust.
    publications = app.topic(TOPIC_PUBLICATIONS, value_type=bytes, value_serializer="raw", key_serializer="raw")
    dead_letters = app.topic(dlq_topic(consumer.group), value_type=bytes, value_serializer="raw", key_serializer="raw")
    stats = ConsumerStats()

    async def send_to_dlq(letter: DeadLetter) -> None:
        headers = {"tongyuan-error": letter.error[:4000].encode(), "tongyuan-origin": letter.origin.encode(), "tongyuan-group": consumer.group.encode()}
        pending = await dead_letters.send(key=letter.key, value=letter.raw, headers=headers)
        await pending  # the poison event is acked only once the DLQ holds it

    @app.agent(publications, concurrency=1, name=f"{consumer.group}.apply")
    async def apply_publications(stream):
        async for records in stream.noack_take(settings.consumer_batch_size, within=settings.consumer_batch_within):
            await process_batch(
                records, apply=consumer.apply, dead_letter=send_to_dlq, stats=stats, max_backoff=settings.store_retry_max_seconds, what=consumer.group
            )
            for record in records:
                await stream.ack(record)

    @app.timer(settings.heartbeat_interval)
    async def heartbeat():
        try:
            await asyncio.to_thread(consumer.heartbeat, stats)
        except Exception:  # a store outage shows up as a stale heartbeat in /healthz
            pass

    app.tongyuan_stats = stats  # type: ignore[attr-defined]
    return app


def run_worker(app: faust.App, loglevel: str = "warn") -> None:
    from faust.worker import Worker

    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
