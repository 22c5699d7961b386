"""The shared consume loop: poison to the DLQ, store outages waited out, the rest applied."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from services.common.consuming import (
    ConsumerStats,
    PoisonEvent,
    parse_publication_event,
    process_batch,
)
from services.common.projection import InThread
from tests.factories import published


def record(value, offset=0, topic="tongyuan.publications.v1"):
    return SimpleNamespace(value=value, message=SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"p1"))


def bulk(*events_json: bytes, offset=0):
    """A CloudEvents batch on the bulk lane, as the relay packs it."""
    return record(b"[" + b",".join(events_json) + b"]", offset, topic="tongyuan.publications.bulk.v1")


def run(records, apply, max_backoff=0.01):
    letters, stats = [], ConsumerStats()

    async def dead_letter(letter):
        letters.append(letter)

    asyncio.run(process_batch(records, apply=apply, dead_letter=dead_letter, stats=stats, max_backoff=max_backoff, what="test"))
    return letters, stats


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        json.dumps({"type": "something.else"}).encode(),
        json.dumps({"type": "cn.gov.tongyuan.publication.published.v1", "data": {}}).encode(),
        b"\xff\xfe",
    ],
)
def test_poison_is_recognised(raw):
    with pytest.raises(PoisonEvent):
        parse_publication_event(raw)


def test_unknown_tongyuan_types_are_skipped_not_dead_lettered():
    assert parse_publication_event(json.dumps({"type": "cn.gov.tongyuan.publication.published.v9"}).encode()) is None


def test_poison_goes_to_the_dlq_and_the_next_good_event_is_applied():
    applied = []
    good = published()
    letters, stats = run([record(b"garbage", 0), record(good.model_dump_json().encode(), 1)], InThread(applied.extend).apply)
    assert [letter.origin for letter in letters] == ["tongyuan.publications.v1/0/0"]
    assert letters[0].raw == b"garbage" and "not JSON" in letters[0].error
    assert [e.id for e in applied] == [good.id]
    assert (stats.applied, stats.dead_lettered) == (1, 1)


def test_a_store_outage_is_retried_until_it_returns():
    calls = []

    def flaky(events):
        calls.append(len(events))
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, Exception("database is locked"))

    letters, stats = run([record(published().model_dump_json().encode())], InThread(flaky).apply)
    assert calls == [1, 1, 1] and letters == [] and stats.applied == 1


def test_an_event_the_store_refuses_is_isolated_and_dead_lettered():
    bad, good = published("bad"), published("good")
    applied = []

    def picky(events):
        if any(e.data.publication_id == "bad" for e in events):
            raise ValueError("refused")
        applied.extend(events)

    letters, stats = run([record(bad.model_dump_json().encode(), 0), record(good.model_dump_json().encode(), 1)], InThread(picky).apply)
    assert [e.data.publication_id for e in applied] == ["good"]
    assert (stats.applied, stats.dead_lettered) == (1, 1)
    assert len(letters) == 1 and "refused" in letters[0].error


def test_an_async_store_reports_refusals_which_go_to_the_dlq():
    good, bad = published("good"), published("bad")
    applied = []

    async def store(events):
        applied.extend(e for e in events if e.data.publication_id == "good")
        return [(e, "mapper_parsing_exception: failed to parse [title]") for e in events if e.data.publication_id == "bad"]

    letters, stats = run([record(good.model_dump_json().encode(), 0), record(bad.model_dump_json().encode(), 1)], store)
    assert [e.data.publication_id for e in applied] == ["good"]
    assert len(letters) == 1 and letters[0].origin.endswith("/1") and "mapper_parsing" in letters[0].error
    assert (stats.applied, stats.dead_lettered) == (1, 1)


def test_what_an_async_store_refuses_while_a_failed_batch_is_retried_one_by_one_goes_to_the_dlq():
    # One event breaks the batch's write; retried alone, the store refuses another for good. Both
    # must reach the DLQ: a refusal on the one-by-one path is not an event applied.
    events = [published("good"), published("breaks"), published("refused")]
    applied = []

    async def store(batch):
        if len(batch) > 1 and any(e.data.publication_id == "breaks" for e in batch):
            raise ValueError("the batch's write failed")
        if batch[0].data.publication_id == "breaks":
            raise ValueError("cannot be written")
        applied.extend(e for e in batch if e.data.publication_id == "good")
        return [(e, "refused for good") for e in batch if e.data.publication_id == "refused"]

    letters, stats = run([record(e.model_dump_json().encode(), n) for n, e in enumerate(events)], store)
    assert [e.data.publication_id for e in applied] == ["good"]
    assert sorted(letter.origin[-1] for letter in letters) == ["1", "2"]
    assert (stats.applied, stats.dead_lettered) == (1, 2)


def test_a_bulk_batch_is_applied_as_its_events():
    events = [published(f"p{n}") for n in range(3)]
    applied = []
    letters, stats = run(
        [bulk(*(e.model_dump_json().encode() for e in events)), bulk(published("p3").model_dump_json().encode(), offset=1)], InThread(applied.extend).apply
    )
    assert [e.data.publication_id for e in applied] == ["p0", "p1", "p2", "p3"] and letters == []
    assert stats.applied == 4


def test_decoding_a_bulk_batch_lets_the_other_lane_run_between_its_messages():
    records = [bulk(*(published(f"p{m}-{n}").model_dump_json().encode() for n in range(3)), offset=m) for m in range(5)]
    ticks, ticks_at_apply = [], []

    async def apply(events):  # async: called without a thread hop, so only decoding yields before it
        ticks_at_apply.append(len(ticks))
        return []

    async def main() -> int:
        running = True

        async def other_lane() -> None:
            while running:
                ticks.append(1)
                await asyncio.sleep(0)

        task = asyncio.create_task(other_lane())
        await asyncio.sleep(0)
        before = len(ticks)
        await process_batch(records, apply=apply, dead_letter=lambda letter: None, stats=ConsumerStats(), max_backoff=0.01, what="test")
        running = False
        await task
        return before

    before = asyncio.run(main())
    assert ticks_at_apply[0] - before >= len(records) - 1, "the other lane never ran while the batch was decoded"


def test_a_bad_event_in_a_batch_spoils_only_itself():
    good, other = published("good"), published("other")
    applied = []
    unknown = json.dumps({"type": "cn.gov.tongyuan.publication.published.v9", "id": "x"}).encode()
    letters, stats = run(
        [
            bulk(
                good.model_dump_json().encode(),
                b'{"type": "cn.gov.tongyuan.publication.published.v1", "id": "broken"}',
                unknown,
                other.model_dump_json().encode(),
            )
        ],
        InThread(applied.extend).apply,
    )
    assert [e.data.publication_id for e in applied] == ["good", "other"]
    assert [letter.origin for letter in letters] == ["tongyuan.publications.bulk.v1/0/0#1"]
    assert json.loads(letters[0].raw)["id"] == "broken", "the DLQ holds the bad event, not the whole batch"
    assert (stats.applied, stats.dead_lettered, stats.skipped) == (2, 1, 1)


def test_an_event_of_a_batch_the_store_refuses_goes_to_the_dlq_alone():
    good, bad = published("good"), published("bad")

    async def store(events):
        return [(e, "refused") for e in events if e.data.publication_id == "bad"]

    letters, _ = run([bulk(good.model_dump_json().encode(), bad.model_dump_json().encode())], store)
    assert len(letters) == 1 and letters[0].origin.endswith("#1")
    assert json.loads(letters[0].raw)["data"]["publication_id"] == "bad"


@pytest.mark.parametrize("raw", [b"[not json", b'["not an event"]'])
def test_a_broken_batch_is_poison(raw):
    letters, stats = run([record(raw, topic="tongyuan.publications.bulk.v1")], InThread(lambda events: None).apply)
    assert stats.dead_lettered == 1 and stats.applied == 0


def test_the_canonical_topic_takes_single_events_only():
    letters, stats = run([record(b"[" + published().model_dump_json().encode() + b"]")], InThread(lambda events: None).apply)
    assert stats.dead_lettered == 1 and letters[0].raw.startswith(b"[")
