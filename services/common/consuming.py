"""The one consuming loop every publication consumer uses (faust, concurrency=1).

- `noack_take` + explicit ack: an event is acked only after its store write committed,
  so offsets never pass an event that is not durable (faust #606).
- A store that is down is retried with exponential backoff, holding the batch (no commit,
  no CPU spin); an event that cannot be parsed, or that its handler refuses, goes to the
  group's DLQ topic with the error and does not stop the stream.
- Whatever one message does while it is decoded (nesting 50,000 deep, a 5,000-digit number,
  bytes that are not UTF-8, a null value) is that message's poison, never the stream's: an
  exception escaping here would kill the agent with its batch unacked and freeze the group's
  offsets on that message for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json
from sqlalchemy.exc import DBAPIError, OperationalError

from contracts.events import (
    CATALOG_CHANGED,
    PUBLISHED,
    TOPIC_PUBLICATIONS_BULK,
    WITHDRAWN,
    CatalogChangedEvent,
    PublicationEvent,
    PublishedEvent,
    WithdrawnEvent,
)

from . import metrics

log = structlog.get_logger("tongyuan.consumer")
_EVENT = TypeAdapter(PublicationEvent)
_BATCH = TypeAdapter(list[PublicationEvent])
_CATALOG_EVENT = TypeAdapter(CatalogChangedEvent)
KNOWN_TYPES = {PUBLISHED, WITHDRAWN}


class PoisonEvent(Exception):
    """The event can never be applied as it is; retrying will not help."""


def parse_publication_event(raw: bytes | str) -> PublishedEvent | WithdrawnEvent | None:
    """The event, None for a type this consumer does not know (skipped), or PoisonEvent."""
    return _parse(raw, KNOWN_TYPES, _EVENT)


def parse_catalog_event(raw: bytes | str) -> CatalogChangedEvent | None:
    return _parse(raw, {CATALOG_CHANGED}, _CATALOG_EVENT)


def decode_json(raw: bytes | str) -> object:
    """JSON as Python values, or PoisonEvent. pydantic's parser, not the json module: it stops
    at a bounded depth with a ValueError, where json.loads recurses until RecursionError on
    `[`×50,000."""
    try:
        return from_json(raw)
    except Exception as exc:
        raise PoisonEvent(f"not JSON: {exc}") from exc


def _parse(raw: bytes | str, known: set[str], adapter: TypeAdapter):
    try:
        # The common case in one pass of pydantic's own JSON parser; anything it refuses is
        # classified below (a type this consumer skips, or poison with the reasons).
        return adapter.validate_json(raw)
    except ValidationError:
        pass
    except Exception as exc:  # not bytes at all (a null value), or something pydantic chokes on
        raise PoisonEvent(f"not a JSON message: {type(exc).__name__}: {exc}") from exc
    return _classify(decode_json(raw), known, adapter)


def _classify(envelope: object, known: set[str], adapter: TypeAdapter):
    if not isinstance(envelope, dict):
        raise PoisonEvent("a CloudEvent must be a JSON object")
    if envelope.get("type") not in known:
        if isinstance(envelope.get("type"), str) and envelope["type"].startswith("cn.gov.tongyuan."):
            return None
        raise PoisonEvent(f"unknown event type {envelope.get('type')!r}")
    try:
        return adapter.validate_python(envelope)
    except ValidationError as exc:
        raise PoisonEvent(f"invalid {envelope['type']}: {_reasons(exc)}") from exc


def _reasons(exc: ValidationError) -> str:
    try:
        return str(exc.errors(include_url=False))
    except Exception:  # an input pydantic cannot show (a number too long for str())
        return f"{exc.error_count()} invalid field(s)"


def is_batch(raw: bytes | str) -> bool:
    """A CloudEvents batch (a JSON array of events), as the relay packs the bulk lane."""
    if not isinstance(raw, (bytes, str)):
        return False
    head = raw[:64].lstrip()
    return head[:1] in (b"[", "[")


def parse_publication_batch(raw: bytes | str) -> list[tuple[bytes | None, PublishedEvent | WithdrawnEvent | None | PoisonEvent]]:
    """Each element of a batch as (its own JSON when it had to be looked at alone, its event,
    None for a type this consumer skips, or PoisonEvent). A batch that is not a JSON array of
    objects is one PoisonEvent; a bad element spoils only itself."""
    try:
        events = _BATCH.validate_json(raw)  # every element good: one pass
        if events:
            return [(None, event) for event in events]
    except ValidationError:
        pass
    except Exception as exc:
        return [(None, PoisonEvent(f"not a JSON message: {type(exc).__name__}: {exc}"))]
    try:
        elements = decode_json(raw)
    except PoisonEvent as exc:
        return [(None, exc)]
    if not isinstance(elements, list) or not elements:
        return [(None, PoisonEvent("a CloudEvents batch must be a non-empty JSON array"))]
    decoded: list = []
    for element in elements:
        try:
            raw_element = json.dumps(element, ensure_ascii=False).encode()
        except Exception:  # NaN and the like: the letter carries what can be shown of it
            raw_element = repr(element)[:100_000].encode()
        try:
            decoded.append((raw_element, _classify(element, KNOWN_TYPES, _EVENT)))
        except PoisonEvent as exc:
            decoded.append((raw_element, exc))
        except Exception as exc:
            decoded.append((raw_element, PoisonEvent(f"{type(exc).__name__}: {exc}")))
    return decoded


def is_transient(exc: BaseException) -> bool:
    """Store trouble worth waiting for (locked, down, connection lost), not bad data."""
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))


@dataclass
class DeadLetter:
    raw: bytes
    error: str
    key: bytes | None
    origin: str


@dataclass
class ConsumerStats:
    applied: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    last_event_at: float | None = None
    lag: int | None = None
    started_at: float = field(default_factory=time.time)
    failure: str | None = None  # set when one of the worker's agents died


# A projection's apply (Projection.apply): writes a batch durably, returns what it refused
# for good as (event, reason) pairs. A blocking store is wrapped in InThread first.
Apply = Callable[[Sequence[Any]], Awaitable[Sequence[tuple[Any, str]]]]


async def apply_with_retry(apply: Apply, events: Sequence[Any], *, max_backoff: float, what: str) -> list[tuple[Any, str]]:
    """Await the projection's write; wait out store outages with backoff.

    Returns what the projection refused for good, as (event, reason) pairs."""
    delay = 0.2
    while True:
        try:
            return list(await apply(events))
        except Exception as exc:
            if not is_transient(exc):
                raise
            metrics.STORE_RETRIES.labels(what).inc()
            log.warning("store.unavailable", consumer=what, error=str(exc).splitlines()[0], retry_in=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(max_backoff, delay * 2)


@dataclass
class _Decoded:
    record: Any  # the faust event it came in
    raw: bytes | None  # the event's own JSON, when it came in a batch
    origin: str  # topic/partition/offset, and #index within a batch
    event: Any  # a parsed event, None for a type this consumer skips, or PoisonEvent


def _decode(record, parse: Callable[[bytes], object]) -> list[tuple[bytes | None, str, object]]:
    """A record's events as (raw, origin, event | None | PoisonEvent): one, or a batch's."""
    message = record.message
    origin = f"{message.topic}/{message.partition}/{message.offset}"
    if message.topic == TOPIC_PUBLICATIONS_BULK and parse is parse_publication_event and is_batch(record.value):
        return [(raw, f"{origin}#{index}", outcome) for index, (raw, outcome) in enumerate(parse_publication_batch(record.value))]
    try:
        return [(None, origin, parse(record.value))]
    except PoisonEvent as exc:
        return [(None, origin, exc)]
    except Exception as exc:  # whatever the parser did not foresee is still this message's alone
        return [(None, origin, PoisonEvent(f"{type(exc).__name__}: {exc}"))]


@dataclass
class _Lane:
    """Where one batch's refused events go, and what it counts."""

    dead_letter: Callable[[DeadLetter], Awaitable[object]]
    stats: ConsumerStats
    max_backoff: float
    what: str

    async def refuse(self, item: _Decoded, error: str) -> None:
        message = item.record.message
        raw = item.raw
        if raw is None:
            # An event of a batch read in one pass goes to the DLQ on its own, re-serialised.
            in_batch = isinstance(item.event, BaseModel) and "#" in item.origin
            raw = item.event.model_dump_json(exclude_none=True).encode() if in_batch else _raw(item.record.value)
        letter = DeadLetter(raw=raw, error=error, key=message.key, origin=item.origin)
        await _until_sent(self.dead_letter, letter, max_backoff=self.max_backoff, what=self.what)
        self.stats.dead_lettered += 1
        metrics.EVENTS_FAILED.labels(self.what, message.topic).inc()


async def process_batch(
    records: Sequence[Any],
    *,
    apply: Apply,
    dead_letter: Callable[[DeadLetter], Awaitable[object]],
    stats: ConsumerStats,
    max_backoff: float,
    what: str,
    parse: Callable[[bytes], object] = parse_publication_event,
) -> None:
    """Decode, dead-letter the poison, apply the rest durably. Records: faust events, each one
    event or (on the bulk lane) a CloudEvents batch of them; acked by the caller afterwards."""
    lane = _Lane(dead_letter, stats, max_backoff, what)
    good = await _decoded(records, parse, lane)
    if not good:
        return
    applied = await _applied(good, apply, lane)
    stats.applied += applied
    stats.last_event_at = time.time()
    topic = records[0].message.topic if records else "?"
    metrics.EVENTS_CONSUMED.labels(what, topic).inc(applied)
    _observe([item.event for item in good], stats.last_event_at, what)


async def _decoded(records: Sequence[Any], parse: Callable[[bytes], object], lane: _Lane) -> list[_Decoded]:
    """The records' events that parsed; the poison dead-lettered, unknown types skipped."""
    good: list[_Decoded] = []
    for record in records:
        for raw, origin, outcome in _decode(record, parse):
            item = _Decoded(record, raw, origin, outcome)
            if isinstance(outcome, PoisonEvent):
                await lane.refuse(item, str(outcome))
                log.warning("event.dead_lettered", consumer=lane.what, origin=origin, error=str(outcome)[:300])
            elif outcome is None:
                lane.stats.skipped += 1
                metrics.EVENTS_SKIPPED.labels(lane.what, record.message.topic).inc()
            else:
                good.append(item)
        if record.message.topic == TOPIC_PUBLICATIONS_BULK:
            # A bulk batch's messages hold 100 events each, decoded on the event loop: between
            # two of them the loop runs the other lane's agent (a clerk's event), which would
            # otherwise wait for the whole batch's decoding.
            await asyncio.sleep(0)
    return good


async def _applied_together(good: list[_Decoded], apply: Apply, lane: _Lane) -> int:
    """One write of these events; what the projection refuses for good is dead-lettered."""
    refused = await apply_with_retry(apply, [item.event for item in good], max_backoff=lane.max_backoff, what=lane.what)
    item_of = {id(item.event): item for item in good}
    for event, reason in refused:
        await lane.refuse(item_of[id(event)], reason)
        log.error("event.refused", consumer=lane.what, event_id=event.id, publication_id=event.subject, error=reason[:300])
    return len(good) - len(refused)


async def _applied(good: list[_Decoded], apply: Apply, lane: _Lane) -> int:
    """Apply the batch durably; returns how many events were applied, the rest dead-lettered."""
    try:
        return await _applied_together(good, apply, lane)
    except Exception:
        # Something in the batch is refused for good: find it by applying one at a time.
        applied = 0
        for item in good:
            try:
                applied += await _applied_together([item], apply, lane)
            except Exception as exc:
                await lane.refuse(item, f"{type(exc).__name__}: {exc}")
                failed: Any = item.event
                log.error("event.refused", consumer=lane.what, event_id=failed.id, publication_id=failed.subject, error=repr(exc)[:300])
    return applied


def _observe(events: list[Any], applied_at: float, what: str) -> None:
    latency = metrics.VISIBLE_LATENCY.labels(what)  # one label lookup a batch
    debugging = log.is_enabled_for(logging.DEBUG)
    for event in events:
        if event.time is not None:
            latency.observe(max(0.0, applied_at - event.time.timestamp()))
        if debugging:
            # The request id travels from the HTTP request that caused the event (CloudEvents extension).
            extra = event.model_extra or {}
            log.debug(
                "event.applied", consumer=what, event_id=event.id, subject=event.subject, version=event.data.version, request_id=extra.get("tongyuanrequestid")
            )


async def _until_sent(dead_letter, letter: DeadLetter, *, max_backoff: float, what: str) -> None:
    """A letter the DLQ cannot take yet holds the batch (its offset is not committed) until it
    can: the event is neither lost nor applied, and the lag says so."""
    delay = 0.2
    while True:
        try:
            await dead_letter(letter)
            return
        except Exception as exc:
            log.warning("dlq.unavailable", consumer=what, origin=letter.origin, error=repr(exc)[:300], retry_in=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(max_backoff, delay * 2)


def _raw(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, ensure_ascii=False).encode()
