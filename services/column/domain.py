"""Which events a store applies: only a version newer than what it holds (pure logic).

Shared reasoning with every consumer: duplicates and replays carry a version the store
already has, so they change nothing; an older version arriving late is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from contracts.events import PublishedEvent, WithdrawnEvent

Event = TypeVar("Event", PublishedEvent, WithdrawnEvent)


def newest_per_publication(events: Sequence[Event]) -> dict[str, Event]:
    """Within one batch, only the highest version of each publication matters."""
    newest: dict[str, Event] = {}
    for event in events:
        data = event.data
        held = newest.get(data.publication_id)
        if held is None or data.version > held.data.version:
            newest[data.publication_id] = event
    return newest


def to_apply(events: Sequence[Event], stored_versions: Mapping[str, int]) -> list[Event]:
    return [event for publication_id, event in newest_per_publication(events).items() if event.data.version > stored_versions.get(publication_id, 0)]
