"""Operations that span services (part of the CLI composition root): DLQ and verify.

- `dead_letters` / `replay_dead_letters`: what a consumer group could not apply, and applying
  it again after a fix — straight into that group's own store, idempotent by version, so the
  canonical topic is still written by the publisher's relay alone.
- `verify`: the publisher's tables are the truth; every store must hold exactly its versions
  (the column, search, embed and supervision), and every catalog copy the edition in force of
  each scope (the column's and supervision's).
- `force_republish`: the repair when a store holds a version the publisher never made (an
  event put on the topic around the gate): the truth again, as a version above every store's.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from contracts.events import dlq_topic
from services.common.consuming import parse_catalog_event, parse_publication_event
from services.common.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    group: str
    partition: int
    offset: int
    origin: str
    error: str
    raw: bytes


def dead_letters(settings: Settings, group: str, timeout: float = 5.0) -> list[DeadLetter]:
    """Every message in the group's DLQ, read by partition assignment (no consumer group)."""
    topic = dlq_topic(group)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        stop = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < stop:
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or []}
                    letters.append(
                        DeadLetter(
                            group, record.partition, record.offset, headers.get("tongyuan-origin", "?"), headers.get("tongyuan-error", ""), record.value or b""
                        )
                    )
        return sorted(letters, key=lambda letter: (letter.partition, letter.offset))
    finally:
        consumer.close()


@dataclass
class ReplayResult:
    applied: int = 0
    still_failing: list[tuple[DeadLetter, str]] = field(default_factory=list)


def replay_dead_letters(letters: list[DeadLetter], apply, apply_catalog=None) -> ReplayResult:
    """Apply each letter with the group's own store write (sync or async); a catalog edition
    with the group's catalog write, if it keeps a catalog copy. An async store is driven from
    one event loop for the whole replay: its client belongs to that loop."""
    result = ReplayResult()

    async def replay() -> None:
        for letter in letters:
            try:
                event: object = parse_publication_event(letter.raw)
                write = apply
                if event is None and apply_catalog is not None:
                    event, write = parse_catalog_event(letter.raw), apply_catalog
                if event is None:
                    continue
                outcome = write([event])
                refused = await outcome if inspect.isawaitable(outcome) else None
                if refused:
                    raise ValueError(refused[0][1])
                result.applied += 1
            except Exception as exc:  # reported, not raised: the rest still replay
                result.still_failing.append((letter, f"{type(exc).__name__}: {exc}"))

    asyncio.run(replay())
    return result


@dataclass
class Difference:
    store: str
    publication_id: str
    expected: int | None
    found: int | None


def compare(truth: dict[str, int], held: dict[str, int], store: str) -> list[Difference]:
    """Pure: a store's version of each publication against the publisher's. A version names
    one event (a publish or a withdrawal), so equal versions mean equal state."""
    differences = [Difference(store, pid, version, held.get(pid)) for pid, version in truth.items() if held.get(pid) != version]
    differences += [Difference(store, pid, None, held[pid]) for pid in held.keys() - truth.keys()]
    return differences


def versions_held(settings: Settings, publication_id: str) -> dict[str, int | None]:
    """The version of one publication each store holds (None: never seen), tombstones included."""
    from services.bootstrap import Composition

    parts = Composition(settings, load_reference=False)
    index = parts.search_index

    async def indexed() -> int | None:
        try:
            return await index.version_of(publication_id)
        finally:
            await index.close()

    return {
        "column": parts.column_store.version_of(publication_id),
        "embed": parts.embed_store.version_of(publication_id),
        "supervision": parts.supervision_store.version_of(publication_id),
        "search": asyncio.run(indexed()),
    }


def force_republish(settings: Settings, publication_id: str, *, at_least: int = 0) -> tuple[int | None, dict[str, int | None]]:
    """Re-emit the publisher's truth for one publication above every version a store holds
    (and above `at_least`, for a forged version still on its way), so each store takes it.
    Returns the new version (None: the publisher does not know the publication) and what the
    stores held."""
    from services.bootstrap import Composition
    from services.publisher.gate.handlers import republish_above

    held = versions_held(settings, publication_id)
    above = max([at_least, *(v for v in held.values() if v is not None)])
    return republish_above(Composition(settings, load_reference=False).publisher, publication_id, above=above), held


def editions_in_force(rows) -> dict[str, int]:
    """Pure: scope → the publish version of its newest published edition."""
    newest: dict[str, int] = {}
    for row in rows:
        if row["status"] == "published" and row["version"] is not None:
            newest[row["scope"]] = max(row["version"], newest.get(row["scope"], 0))
    return newest


def verify_stores(settings: Settings) -> tuple[int, list[Difference]]:
    """Every store and catalog copy against the publisher: (publications, differences)."""
    from services.bootstrap import Composition

    parts = Composition(settings, load_reference=False)
    truth = {pid: version for pid, (version, _) in parts.publisher.versions().items()}
    editions = editions_in_force(parts.catalogs.editions())
    column, supervision, index = parts.column_store, parts.supervision_store, parts.search_index

    async def indexed() -> dict[str, int]:
        found = {pid: await index.version_of(pid) for pid in truth}
        return {pid: version for pid, version in found.items() if version is not None}

    held = {
        "column": {pid: version for pid, (version, _) in column.versions().items()},
        "search": asyncio.run(indexed()),
        "embed": {pid: version for pid, (version, _) in parts.embed_store.versions().items()},
        "supervision": {pid: version for pid, (version, _) in supervision.versions().items()},
    }
    differences = [d for name, versions in held.items() for d in compare(truth, versions, name)]
    differences += compare(editions, column.catalog_versions(), "catalog:column")
    differences += compare(editions, supervision.catalog_versions(), "catalog:supervision")
    return len(truth), differences
