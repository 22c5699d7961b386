"""The bridge's reader of tongyuan.rejections.v1, where the gate answers events it refused.

The bridge is a process of threads (poller, relay), so this is one more thread with an
aiokafka consumer of its own rather than a faust worker; it keeps the consumers' rules:
its own consumer group, one batch at a time, offsets committed only after the store write that
acted on the batch is durable (a crash repeats the batch, and repeats change nothing), a store
that is down waited out with backoff, holding the batch.

The group is per platform: every bridge must see every refusal, and keeps only its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer

from contracts.events import TOPIC_REJECTIONS, RejectionData
from services.common.consuming import apply_with_retry
from services.common.projection import InThread

from .refusals import parse_rejection

log = structlog.get_logger("tongyuan.bridge.rejections")


def group_for(platform: str) -> str:
    return f"tongyuan-bridge-{platform}"


class RejectionListener:
    """`apply` is the store write (Bridge.on_rejections); it returns outcome counts."""

    def __init__(
        self,
        apply: Callable[[Sequence[RejectionData]], Counter],
        *,
        bootstrap: str,
        group: str,
        session_timeout: float = 10.0,
        max_backoff: float = 5.0,
        batch_size: int = 500,
    ):
        self.apply, self.bootstrap, self.group = apply, bootstrap, group
        self.session_timeout, self.max_backoff, self.batch_size = session_timeout, max_backoff, batch_size
        self.outcomes: Counter = Counter()

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        backoff = 0.0
        while not stop.is_set():
            try:
                await self._consume(stop)
            except Exception as exc:  # broker away, or a rebalance failed a commit: the batch comes again
                backoff = min(self.max_backoff, backoff * 2 or 0.25)
                log.warning("bridge.rejections_error", error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)

    async def _consume(self, stop: threading.Event) -> None:
        session_ms = int(self.session_timeout * 1000)
        consumer = AIOKafkaConsumer(
            TOPIC_REJECTIONS,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            # A new group reads the refusals from before it joined: stale ones are told apart anyway.
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=session_ms,
            heartbeat_interval_ms=1000,
            # Tansu answers a waiting fetch only when the wait is over (see services/common/kafka.py).
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                records = [record for batch in fetched.values() for record in batch]
                if not records:
                    continue
                rejections = [r for r in (parse_rejection(record.value) for record in records) if r is not None]
                if rejections:
                    await self._apply(rejections)
                await consumer.commit()
        finally:
            await consumer.stop()

    async def _apply(self, rejections: list[RejectionData]) -> None:
        try:
            await apply_with_retry(InThread(self._counted).apply, rejections, max_backoff=self.max_backoff, what=self.group)
        except Exception:
            # Refused for good (not a store outage): one at a time, so one bad record does not
            # hold the others; what still fails is logged and passed, never retried in a loop.
            for rejection in rejections:
                try:
                    await apply_with_retry(InThread(self._counted).apply, [rejection], max_backoff=self.max_backoff, what=self.group)
                except Exception as exc:
                    log.error("bridge.rejection_unapplied", event_id=rejection.original_id, implementation_code=rejection.source_ref, error=repr(exc)[:300])

    def _counted(self, rejections: Sequence[RejectionData]) -> None:
        self.outcomes.update(self.apply(rejections))


def start_listener(listener: RejectionListener, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=listener.run, args=(stop,), name="bridge-rejections", daemon=True)
    thread.start()
    return thread
