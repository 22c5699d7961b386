"""Nothing a consumer reads can stop its stream: whatever bytes come in, every valid event is
applied and every other one is dead-lettered (or, on the CMS lane, answered with a rejection),
and nothing raises. Fuzzed with hypothesis over message bytes built to hurt: nesting 50,000 deep,
numbers of thousands of digits, bytes that are not UTF-8, fields of the wrong type, null values,
valid events mixed in."""

from __future__ import annotations

import asyncio
import itertools
import json
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import from_json

from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
from services.column.store import ColumnStore
from services.common.consuming import ConsumerStats, PoisonEvent, parse_catalog_event, parse_publication_event, process_batch
from services.common.db import create_store_engine
from services.common.projection import InThread
from tests.factories import published, withdrawn

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
DEEP = b"[" * 50_000
_ids = itertools.count()


# --- message bytes ------------------------------------------------------------------------------
def nested(depth: int, kind: str) -> bytes:
    return {"array": b"[" * depth, "object": b'{"a":' * depth, "closed": b"[" * depth + b"]" * depth}[kind]


deep_nesting = st.builds(nested, st.integers(250, 60_000), st.sampled_from(["array", "object", "closed"]))
# Non-JSON, empty, truncated, or bytes that happen to be JSON but not an event.
arbitrary_bytes = st.binary(max_size=300)
# A wrong type where the contract needs another (each of these fails validation for sure).
WRONG = [None, {}, 3.5, [[]]]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
).filter(lambda v: not (isinstance(v, dict) and isinstance(v.get("type"), str) and v["type"].startswith("cn.gov.tongyuan.")))


def with_field(event: dict, path: tuple, value) -> dict:
    event = json.loads(json.dumps(event))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def huge_number(raw: bytes, digits: int) -> bytes:
    """The event with its version written with `digits` digits (past what a store can hold,
    past what Python converts to int by default from 4,300 digits on)."""
    return raw.replace(b'"version":', b'"version":' + b"9" * digits + b',"_was":', 1)


def not_utf8(raw: bytes) -> bytes:
    return raw.replace(b'"title":"', b'"title":"\xff\xfe', 1)


# --- the consumer lanes -------------------------------------------------------------------------
@st.composite
def publication_message(draw, *, in_batch: bool = False):
    """("valid", event id, publication id, version, bytes) | ("skip", …) | ("poison", …)."""
    n = next(_ids)
    pid, version = f"fz{n}", draw(st.integers(1, 5))
    event = withdrawn(pid, version=version) if draw(st.booleans()) and version > 1 else published(pid, version=version)
    raw = event.model_dump_json(exclude_none=True).encode()
    choice = draw(
        st.sampled_from(["valid", "valid", "unknown type", "wrong type", "json", *([] if in_batch else ["deep", "bytes", "huge", "not utf-8", "null"])])
    )
    if choice == "valid":
        return ("valid", pid, version, raw)
    if choice == "unknown type":
        return ("skip", pid, version, json.dumps(with_field(json.loads(raw), ("type",), "cn.gov.tongyuan.publication.renamed.v9")).encode())
    if choice == "wrong type":
        path = draw(
            st.sampled_from(
                [
                    ("id",),
                    ("type",),
                    ("data",),
                    ("data", "version"),
                    ("data", "publication_id"),
                    ("data", "placements" if event.type.endswith("published.v1") else "withdrawal_type"),
                ]
            )
        )
        return ("poison", pid, version, json.dumps(with_field(json.loads(raw), path, draw(st.sampled_from(WRONG)))).encode())
    if choice == "json":
        return ("poison", pid, version, json.dumps(draw(json_values)).encode())
    if choice == "deep":
        return ("poison", pid, version, draw(deep_nesting))
    if choice == "bytes":
        return ("poison", pid, version, draw(arbitrary_bytes))
    if choice == "huge":
        return ("poison", pid, version, huge_number(raw, draw(st.sampled_from([30, 4_301, 20_000]))))
    if choice == "not utf-8":
        return ("poison", pid, version, not_utf8(raw))
    return ("poison", pid, version, None)


def record(value, offset: int, topic: str = TOPIC_PUBLICATIONS):
    return SimpleNamespace(value=value, message=SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"k"))


def consume(records, apply, parse=parse_publication_event) -> tuple[list, ConsumerStats]:
    letters, stats = [], ConsumerStats()

    async def dead_letter(letter):
        letters.append(letter)

    asyncio.run(process_batch(records, apply=apply, dead_letter=dead_letter, stats=stats, max_backoff=0.01, what="fuzz", parse=parse))
    return letters, stats


@pytest.fixture(scope="module")
def column(tmp_path_factory) -> ColumnStore:
    store = ColumnStore(create_store_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'column.db'}"))
    store.create()
    return store


def letters_of(message) -> int:
    """A poison record on the bulk lane that happens to be a JSON array is read as a batch:
    one letter per element."""
    kind, *_, raw = message
    if kind != "poison" or not isinstance(raw, bytes) or not raw.lstrip()[:1] == b"[":
        return int(kind == "poison")
    try:
        elements = from_json(raw)
    except ValueError:
        return 1
    return len(elements) if isinstance(elements, list) and elements else 1


def assert_outcome(column: ColumnStore, messages, letters, stats, *, bulk: bool = False) -> None:
    for kind, pid, version, _ in messages:
        entry = column.entry(pid)
        if kind == "valid":
            assert entry is not None and entry.version == version, f"valid event for {pid} not applied"
        else:
            assert entry is None, f"{kind} event for {pid} was applied"
    if not bulk:  # (the bulk lane counts letters per record)
        assert len(letters) == stats.dead_lettered == sum(kind == "poison" for kind, *_ in messages)
    assert stats.applied == sum(kind == "valid" for kind, *_ in messages)
    assert stats.skipped == sum(kind == "skip" for kind, *_ in messages)


@FUZZ
@given(st.lists(publication_message(), min_size=1, max_size=12))
def test_the_publications_topic_applies_every_valid_event_and_dead_letters_the_rest(column, messages):
    records = [record(raw, offset) for offset, (*_, raw) in enumerate(messages)]
    letters, stats = consume(records, column.projection().apply)
    assert_outcome(column, messages, letters, stats)


@FUZZ
@given(st.lists(st.one_of(publication_message(), st.lists(publication_message(in_batch=True), min_size=1, max_size=8)), min_size=1, max_size=8))
def test_the_bulk_lane_applies_every_valid_event_of_either_record_format(column, records_of):
    """Single events a record, and CloudEvents batch records as the relay packs the lane."""
    records, messages, expected_letters = [], [], 0
    for offset, one in enumerate(records_of):
        if isinstance(one, tuple):
            records.append(record(one[3], offset, TOPIC_PUBLICATIONS_BULK))
            messages.append(one)
            expected_letters += letters_of(one)
        else:  # a JSON array of events: each element stands or falls alone
            records.append(record(b"[" + b",".join(raw for *_, raw in one) + b"]", offset, TOPIC_PUBLICATIONS_BULK))
            messages += one
            expected_letters += sum(kind == "poison" for kind, *_ in one)
    letters, stats = consume(records, column.projection().apply)
    assert_outcome(column, messages, letters, stats, bulk=True)
    assert len(letters) == stats.dead_lettered == expected_letters


@FUZZ
@given(st.lists(st.one_of(deep_nesting, arbitrary_bytes, st.none(), json_values.map(lambda v: json.dumps(v).encode())), min_size=1, max_size=8))
def test_the_catalog_topic_dead_letters_whatever_is_not_a_catalog_event(messages):
    applied = []
    letters, stats = consume([record(raw, n, TOPIC_CATALOG) for n, raw in enumerate(messages)], InThread(applied.extend).apply, parse=parse_catalog_event)
    assert applied == [] and len(letters) == len(messages)


@pytest.mark.parametrize("raw", [DEEP, b'{"a":' * 50_000, b"[" * 50_000 + b"]" * 50_000, None, b"\xff", b"9" * 5_000, b""])
def test_what_used_to_escape_the_parser_is_poison(raw):
    with pytest.raises(PoisonEvent):
        parse_publication_event(raw)
    with pytest.raises(PoisonEvent):
        parse_catalog_event(raw)


def test_nesting_50000_deep_on_the_bulk_lane_is_one_letter_and_the_batch_goes_on(column):
    good = published("deep-neighbour")
    letters, stats = consume(
        [record(DEEP, 0, TOPIC_PUBLICATIONS_BULK), record(good.model_dump_json().encode(), 1, TOPIC_PUBLICATIONS_BULK)], column.projection().apply
    )
    assert [letter.raw for letter in letters] == [DEEP] and "not JSON" in letters[0].error
    assert column.entry("deep-neighbour").version == 1


def test_an_event_the_store_raises_on_goes_to_the_dlq_and_the_others_are_applied(column):
    """Whatever the store's exception, not only the ones foreseen: a version no column can
    hold (SQLite: OverflowError) is refused alone."""
    events = [published("ovf-a"), published("ovf-b", version=10**30), published("ovf-c")]
    letters, stats = consume([record(e.model_dump_json().encode(), n) for n, e in enumerate(events)], column.projection().apply)
    assert len(letters) == 1 and b"ovf-b" in letters[0].raw
    assert column.entry("ovf-a") and column.entry("ovf-c") and column.entry("ovf-b") is None


def test_a_dlq_that_cannot_take_a_letter_yet_holds_the_batch_until_it_can():
    """The offset must not pass an event that is neither applied nor dead-lettered."""
    attempts, letters = [], []

    async def flaky_dead_letter(letter):
        attempts.append(letter)
        if len(attempts) < 3:
            raise ConnectionError("broker unavailable")
        letters.append(letter)

    async def main():
        await process_batch(
            [record(b"nope", 0)], apply=InThread(lambda events: None).apply, dead_letter=flaky_dead_letter, stats=ConsumerStats(), max_backoff=0.01, what="t"
        )

    asyncio.run(main())
    assert len(attempts) == 3 and len(letters) == 1


# --- the CMS lane (the publisher's inbound agent) -----------------------------------------------
CMS = "cn.gov.tongyuan.cms.publish-requested.v1"


def cms_event(ref: str) -> dict:
    from tests.conftest import COUNTY

    return {
        "specversion": "1.0",
        "id": f"ev-{ref}",
        "source": "/cms/furong",
        "type": CMS,
        "datacontenttype": "application/json",
        "data": {
            "source_ref": ref,
            "actor": {"user": "furong-cms", "roles": ["editor"], "regions": [COUNTY]},
            "placements": [{"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
            "title": f"关于低保标准调整的公告 {ref}",
            "body_html": "<p>城乡低保标准调整。</p>",
            "formed_at": "2026-03-02",
        },
    }


@st.composite
def cms_message(draw):
    ref = f"cms-fz{next(_ids)}"
    raw = json.dumps(cms_event(ref), ensure_ascii=False).encode()
    choice = draw(st.sampled_from(["valid", "valid", "wrong type", "json", "deep", "bytes", "huge", "not utf-8", "null"]))
    if choice == "valid":
        return ("valid", ref, raw)
    if choice == "wrong type":
        path = draw(
            st.sampled_from([("type",), ("specversion",), ("data",), ("data", "title"), ("data", "placements"), ("data", "source_ref"), ("data", "actor")])
        )
        return ("poison", ref, json.dumps(with_field(cms_event(ref), path, draw(st.sampled_from(WRONG)))).encode())
    if choice == "json":
        return ("poison", ref, json.dumps(draw(json_values)).encode())
    if choice == "deep":
        return ("poison", ref, draw(deep_nesting))
    if choice == "bytes":
        return ("poison", ref, draw(arbitrary_bytes))
    if choice == "huge":
        return ("poison", ref, raw.replace(b'"source_ref": ', b'"n": ' + b"9" * draw(st.sampled_from([4_301, 20_000])) + b', "source_ref": 1, "x": ', 1))
    if choice == "not utf-8":
        return ("poison", ref, raw.replace(b'"title": "', b'"title": "\xff', 1))
    return ("poison", ref, None)


@pytest.fixture(scope="module")
def publisher(tmp_path_factory, directory):
    from services.publisher.store import Publisher

    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'publisher.db'}"))
    publisher.create_tables()
    return publisher


@FUZZ
@given(st.lists(cms_message(), min_size=1, max_size=10))
def test_the_cms_lane_accepts_every_valid_request_and_rejects_the_rest(publisher, directory, messages):
    from services.publisher.gate.inbound import handle_cms_batch

    outcomes = handle_cms_batch([raw for *_, raw in messages], publisher=publisher, directory=directory)
    assert len(outcomes) == len(messages)
    for (kind, ref, _), outcome in zip(messages, outcomes, strict=True):
        if kind == "valid":
            assert outcome.accepted is not None, (ref, outcome.rejection)
        else:
            assert outcome.rejection is not None and outcome.accepted is None and outcome.rejection.data.errors


def test_a_request_the_gate_fails_on_is_rejected_alone(publisher, directory, monkeypatch):
    """An exception in the gate (not the store being down) costs the one request, not its batch."""
    from services.publisher.gate import batches, inbound

    real = batches.accept_cms_batch

    def failing(requests, **kwargs):
        if any(r.request.source_ref == "cms-breaks-the-gate" for r in requests):
            raise RecursionError("maximum recursion depth exceeded")
        return real(requests, **kwargs)

    monkeypatch.setattr(batches, "accept_cms_batch", failing)
    raws = [json.dumps(cms_event(ref)).encode() for ref in ("cms-before-it", "cms-breaks-the-gate", "cms-after-it")]
    before, broken, after = inbound.handle_cms_batch(raws, publisher=publisher, directory=directory)
    assert before.accepted and after.accepted
    assert broken.rejection.data.errors[0].type == "internal_error" and broken.rejection.data.original_id == "ev-cms-breaks-the-gate"


def test_a_store_outage_on_the_cms_lane_is_still_raised_for_the_lane_to_wait_out(publisher, directory, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from services.publisher.gate import batches, inbound

    def down(requests, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(batches, "accept_cms_batch", down)
    with pytest.raises(OperationalError):
        inbound.handle_cms_batch([json.dumps(cms_event("cms-waits")).encode()], publisher=publisher, directory=directory)


def test_the_service_items_lane_rejects_nesting_50000_deep(publisher, directory):
    from services.publisher.gate.service_items import handle_service_item_batch

    (outcome,) = handle_service_item_batch([DEEP], publisher=publisher, directory=directory)
    assert outcome.rejection is not None and outcome.rejection.data.errors[0].type == "json_invalid"


@pytest.mark.parametrize("raw", [DEEP, b'{"a":' * 50_000, None, b"\xff", b"9" * 5_000, b""])
def test_the_bridge_reads_past_what_is_not_a_rejection_on_its_topic(raw):
    from services.bridge.refusals import parse_rejection

    assert parse_rejection(raw) is None


def test_a_letter_too_large_for_a_dlq_record_goes_cut_instead_of_holding_the_stream():
    from aiokafka.errors import MessageSizeTooLargeError

    from services.common.consuming import DeadLetter
    from services.common.faust_consumer import DLQ_VALUE_CUT, dead_letter_sender

    sent = []

    class Topic:
        async def send(self, *, key, value, headers):
            if len(value) > DLQ_VALUE_CUT:
                raise MessageSizeTooLargeError("too large")
            sent.append((key, value, dict(headers)))
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    raw = b"[" * (DLQ_VALUE_CUT * 4)
    asyncio.run(dead_letter_sender(Topic(), "tongyuan-column")(DeadLetter(raw=raw, error="not JSON", key=b"k", origin="t/0/7")))
    ((key, value, headers),) = sent
    assert key == b"k" and value == raw[:DLQ_VALUE_CUT] and headers["tongyuan-truncated"] == str(len(raw)).encode() and headers["tongyuan-origin"] == b"t/0/7"


def test_every_consumer_group_has_its_dlq_topic_created_and_known_to_the_cli():
    from contracts.events import dlq_topic
    from services.column.app import GROUP as COLUMN
    from services.common.kafka import all_topics
    from services.embed.app import GROUP as EMBED
    from services.indexer.app import GROUP as INDEXER
    from services.operations_cli import GROUPS
    from services.supervision.app import GROUP as SUPERVISION

    for group in (COLUMN, INDEXER, EMBED, SUPERVISION):
        assert dlq_topic(group) in all_topics(), group
        assert group in GROUPS, group
