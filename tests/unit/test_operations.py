"""Replaying dead letters and comparing stores (pure parts of services/operations.py)."""

import asyncio

from services.operations import DeadLetter, compare, replay_dead_letters
from tests.factories import published


def letter(raw: bytes, offset: int = 0) -> DeadLetter:
    return DeadLetter("tongyuan-indexer", 0, offset, "tongyuan.publications.v1/0/0", "refused", raw)


def test_an_async_store_is_replayed_in_one_event_loop():
    loops, applied = set(), []

    async def store(events):
        loops.add(id(asyncio.get_running_loop()))
        applied.extend(events)
        return []

    result = replay_dead_letters([letter(published(f"p{n}").model_dump_json().encode(), n) for n in range(3)] + [letter(b"not json", 9)], store)
    assert result.applied == 3 and len(applied) == 3 and len(loops) == 1
    assert [f.offset for f, _ in result.still_failing] == [9]


def test_compare_reports_missing_stale_and_extra():
    differences = compare({"a": 2, "b": 1}, {"a": 1, "c": 4}, "column")
    assert {(d.publication_id, d.expected, d.found) for d in differences} == {("a", 2, 1), ("b", 1, None), ("c", None, 4)}
