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
from tests.factories import published


def record(value, offset=0):
    return SimpleNamespace(value=value, message=SimpleNamespace(topic="tongyuan.publications.v1", partition=0, offset=offset, key=b"p1"))


def run(records, apply, max_backoff=0.01):
    letters, stats = [], ConsumerStats()

    async def dead_letter(letter):
        letters.append(letter)

    asyncio.run(process_batch(records, apply=apply, dead_letter=dead_letter, stats=stats, max_backoff=max_backoff, what="test"))
    return letters, stats


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", json.dumps({"type": "something.else"}).encode(), json.dumps({"type": "cn.gov.tongyuan.publication.published.v1", "data": {}}).encode(), b"\xff\xfe"],
)
def test_poison_is_recognised(raw):
    with pytest.raises(PoisonEvent):
        parse_publication_event(raw)


def test_unknown_tongyuan_types_are_skipped_not_dead_lettered():
    assert parse_publication_event(json.dumps({"type": "cn.gov.tongyuan.publication.published.v9"}).encode()) is None


def test_poison_goes_to_the_dlq_and_the_next_good_event_is_applied():
    applied = []
    good = published()
    letters, stats = run([record(b"garbage", 0), record(good.model_dump_json().encode(), 1)], applied.extend)
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

    letters, stats = run([record(published().model_dump_json().encode())], flaky)
    assert calls == [1, 1, 1] and letters == [] and stats.applied == 1


def test_an_event_the_store_refuses_is_isolated_and_dead_lettered():
    bad, good = published("bad"), published("good")
    applied = []

    def picky(events):
        if any(e.data.publication_id == "bad" for e in events):
            raise ValueError("refused")
        applied.extend(events)

    letters, stats = run([record(bad.model_dump_json().encode(), 0), record(good.model_dump_json().encode(), 1)], picky)
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
