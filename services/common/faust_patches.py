"""Every correction Tongyuan makes to faust-streaming and aiokafka, in one place.

Both libraries are pinned exactly in pyproject.toml because each correction here overrides a
private method or attribute. tests/unit/common/test_faust_patches.py pins, for each one, the
signature it overrides, the library behaviour it works around, and that it takes effect: an
upgrade that moves any of them fails there, not in production.

Two kinds of correction:
- subclasses (`PromptConsumerThread`, `PromptConsumer`, `PromptTransport`, `TongyuanApp`):
  they act only in apps built as `TongyuanApp`, which `services.common.kafka.faust_app` does;
- one module-level replacement (`CommitTables`), installed by `apply()`, which `faust_app`
  calls before it builds an app. `apply()` may be called any number of times.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from typing import Any

import faust
import faust.transport.consumer as faust_consumer
import structlog
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.utils import terminal as faust_terminal
from mode import Service

from .broker import EXIT_BROKER_LOG_LOST, BrokerLog, LogGuard

log = structlog.get_logger("tongyuan.consumer")

# How often a consumer asks the broker whether it still has the log its positions point into.
BROKER_LOG_CHECK_SECONDS = 2.0

# faust's fetch wait, lowered: see PromptConsumerThread.
FETCH_MAX_WAIT_MS = 100


def apply() -> None:
    """Install the module-level corrections (idempotent). Called by `faust_app` before it
    builds an app; the subclass corrections need no installing."""
    faust_consumer.terminal = CommitTables  # type: ignore[assignment]  # a stand-in for the module


class OffsetTable:
    """The table faust's consumer logs at every commit, drawn only if the line is written."""

    def __init__(self, rows: Any, kwargs: dict[str, Any]) -> None:
        self.rows, self.kwargs = rows, kwargs

    def __str__(self) -> str:
        return str(faust_terminal.logtable(self.rows, **self.kwargs))


class CommitTables:
    """Corrects: faust's consumer draws a terminal table of the offsets at every commit (twice
    a second while events flow) for a debug line that mode writes only with DEVLOG set — a
    noticeable share of a consumer's CPU at a clerk's pace. `faust.transport.consumer` uses its
    `terminal` module only for `logtable`, so this stand-in returns a table drawn lazily, when
    (if ever) the line is formatted."""

    @staticmethod
    def logtable(rows: Any, **kwargs: Any) -> OffsetTable:
        return OffsetTable(rows, kwargs)


class PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Corrects, on Tansu only: faust builds its aiokafka consumer with `fetch_max_wait_ms=1500`
    hard-coded, and Tansu answers a waiting fetch only when the wait is over, so every hop
    through a topic cost up to 1.5 s. Apache Kafka answers as soon as a record arrives, so there
    faust's wait stays (a shorter one would only add empty fetches while idle). aiokafka reads the
    wait from the consumer's `_fetch_max_wait_ms` when it starts its fetcher, so setting it after
    construction and before start is enough."""

    fetch_max_wait_ms = FETCH_MAX_WAIT_MS

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        url = self.app.conf.broker[0]
        if answers_fetches_late(f"{url.host}:{url.port}"):
            consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def answers_fetches_late(bootstrap: str) -> bool:
    """True for Tansu, and when the broker cannot be asked yet: the short wait is right for
    Tansu and costs Kafka only empty fetches while idle."""
    from .kafka import broker_is_tansu, broker_reachable  # kafka imports this module

    try:
        return not broker_reachable(bootstrap) or broker_is_tansu(bootstrap)
    except Exception:  # the broker went away between the two questions
        return True


class PromptConsumer(faust_aiokafka.Consumer):
    """faust's consumer with three corrections.

    1. It refuses to commit positions of a log the broker lost (`_commit`, and
       `_watch_broker_log` between commits). A restarted memory-storage broker has empty topics
       and no committed offsets, and Tansu accepts a commit from any member: a worker that read
       up to offset 500 of the old log would fetch from 500 of the new one as soon as the relay's
       re-emission got there, skipping 0–499, and commit past them. So before every commit it
       compares the topics' ids with those of its first assignment; if they changed it exits
       without committing (EXIT_BROKER_LOG_LOST), and its supervisor starts it again on the new
       log, from the beginning.
    2. Its fetch loop guards each fetched batch, not each message, against a rebalance
       (`_drain_messages`, `_deliver`): see `_drain_messages`.
    3. Its consumer thread is `PromptConsumerThread` (`_new_consumer_thread`).
    """

    _log_guard: LogGuard | None = None
    _broker_log: BrokerLog | None = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _topic_ids(self, topics: set[str]) -> dict[str, str | None]:
        if self._broker_log is None:
            url = self.app.conf.broker[0]
            self._broker_log = BrokerLog(f"{url.host}:{url.port}")
        return self._broker_log.topic_ids(topics)

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        if self._log_guard is None:
            self._log_guard = LogGuard()
        try:
            self._log_guard.remember(await asyncio.to_thread(self._topic_ids, {tp.topic for tp in assigned}))
        except Exception as exc:  # the first commit takes the ids instead
            log.warning("consumer.topic_ids_unknown", error=repr(exc))
        await super().on_partitions_assigned(assigned, generation_id)

    async def _commit(self, offsets: Any) -> bool:
        if offsets and not await self._log_unchanged({tp.topic for tp in offsets}):
            return False
        return bool(await super()._commit(offsets))

    @Service.task
    async def _watch_broker_log(self) -> None:
        """Also between commits: after a reset to the start of a new, shorter log, faust skips
        offsets below the last one it delivered, so a worker could sit there committing nothing."""
        while not self.should_stop:
            await self.sleep(BROKER_LOG_CHECK_SECONDS)
            if self._log_guard is not None and self._log_guard.seen:
                await self._log_unchanged(set(self._log_guard.seen))

    async def _log_unchanged(self, topics: set[str]) -> bool:
        """Exits the process if the broker lost the log of `topics`; False if it cannot tell."""
        if self._log_guard is None:
            return True
        try:
            changed = self._log_guard.changed(await asyncio.to_thread(self._topic_ids, topics))
        except Exception as exc:  # the broker does not answer: no commit now, the next one tries again
            log.warning("consumer.broker_log_unknown", error=repr(exc))
            return False
        if changed:
            log.error("consumer.broker_log_lost", app=self.app.conf.id, topics=changed, exit_code=EXIT_BROKER_LOG_LOST)
            # At once, without faust's shutdown, which commits. Whatever the process wrote is durable.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_BROKER_LOG_LOST)
        return True

    async def _drain_messages(self, fetcher: Any) -> None:
        """Corrects: faust's fetch loop guards every message with
        `wait_first(callback(message), suspend_flow.wait())` so that a rebalance can abandon a
        delivery stuck on a full stream buffer: four tasks and an asyncio.wait per message, a
        large share of a consumer's CPU. Guarding the whole fetched batch keeps the behaviour (a
        rebalance abandons the rest of the batch, which the new owner fetches again from the
        committed offset) at one guard per fetch."""
        try:
            while not (self.should_stop or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = [pair async for pair in self.getmany(timeout=1.0)]
                await self.sleep(0)  # getmany may not have yielded to the loop at all
                if fetched and not self.should_stop:
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.wait_first(self._deliver(fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, fetched: list[Any]) -> None:
        """faust's per-message rule, unchanged: never an offset below the read offset, offsets
        the broker skipped (compaction, transactions) recorded as acked."""
        callback = self.callback
        read_offset = self._read_offset
        for n, (tp, message) in enumerate(fetched, 1):
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # delivered before a seek moved the position back
            if last and offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)
            await callback(message)
            read_offset[tp] = offset
            if n % 100 == 0:
                await asyncio.sleep(0)  # let the agents run during a long batch


class PromptTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport whose consumer is `PromptConsumer`."""

    Consumer = PromptConsumer


class TongyuanApp(faust.App):
    """faust's App with two corrections.

    1. `_new_transport`: its transport is `PromptTransport`.
    2. `on_init_dependencies`: faust's Monitor is taken out of the sensors. It times and counts
       every message and event for faust's own web views, which we do not run (our metrics are
       Prometheus'): four sensor calls per event for figures nobody reads. Two of faust's
       warnings assume the Monitor is there; services.common.logging drops them.
    """

    def _new_transport(self) -> Any:
        return PromptTransport(self.conf.broker_consumer, self)

    def on_init_dependencies(self) -> Iterable[Any]:
        dependencies = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return dependencies
