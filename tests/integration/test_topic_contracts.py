"""What a third party reads is what AsyncAPI promises: a stack of its own is driven through every
kind of input (HTTP publishes, a revision, a withdrawal, CMS requests — one accepted, one
refused, one older than what was applied —, a catalog edition, service items from the bridge, a
migration on the bulk lane, and a poison event), then every topic AsyncAPI names is read from its
beginning with confluent-kafka (librdkafka: not the client the project writes with), and every
message is checked against the document: its content-type header, any headers and key schema it
declares, and its payload against the JSON Schema it references."""

from __future__ import annotations

import json
import re
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from contracts.events import TOPIC_CATALOG, TOPIC_CMS, TOPIC_PUBLICATIONS, TOPIC_REJECTIONS, TOPIC_SERVICE_ITEMS, dlq_topic
from devtools.platform_simulator import Platform, Served, seed_items
from devtools.platform_simulator import create_app as simulator_app
from services.bridge.app import create_runtime
from services.common.kafka import idempotent_producer
from services.common.settings import BridgeSettings
from services.publisher.app import bootstrap
from services.publisher.relay.outbox import wait_until_drained

from .conftest import ROOT, backends, running_stack, wait_for
from .test_pipeline import body, cms_request, unique

ASYNCAPI = ROOT / "contracts" / "asyncapi.yaml"
SAMPLES = ROOT / "tests" / "data" / "migration"
# Every group that reads the canonical topic, so each has dead-lettered the poison before the read.
READERS = ("tongyuan-column", "tongyuan-indexer", "tongyuan-embed", "tongyuan-supervision")
# After the high watermark, the reader goes on until the topics have been quiet this long, so a
# broker whose watermark lags its last record cannot hide that record from the check.
IDLE_AFTER_WATERMARK = 1.5


# --- the contract, as the document states it --------------------------------------------------


@dataclass(frozen=True)
class Message:
    name: str
    content_type: str
    payload: Draft202012Validator | None
    headers: Draft202012Validator | None
    key: Draft202012Validator | None


@dataclass(frozen=True)
class Channel:
    name: str
    address: re.Pattern
    messages: tuple[Message, ...]
    parameterised: bool  # one topic per parameter value (the DLQ per group)


def _registry() -> Registry:
    """Every generated schema, by its path next to asyncapi.yaml and by its own $id."""
    resources = []
    for path in sorted((ASYNCAPI.parent / "schemas").glob("*.json")):
        resource = Resource.from_contents(json.loads(path.read_text("utf-8")))
        resources += [(path.as_uri(), resource), (resource.id(), resource)]
    return Registry().with_resources(resources)


def _validator(schema: dict | None, registry: Registry) -> Draft202012Validator | None:
    if schema is None:
        return None
    # Relative $refs ('schemas/….json') resolve against the document itself.
    return Draft202012Validator({"$id": ASYNCAPI.as_uri(), **schema}, registry=registry)


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node and node["$ref"].startswith("#/"):
        target = document
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _address_pattern(address: str) -> re.Pattern:
    """A channel address as a pattern over topic names: a {parameter} is one name segment."""
    parts = re.split(r"(\{[^}]+\})", address)
    return re.compile("".join("[A-Za-z0-9_-]+" if p.startswith("{") else re.escape(p) for p in parts))


def channels_of(document: dict) -> list[Channel]:
    registry = _registry()
    default = document.get("defaultContentType")
    out = []
    for name, channel in document["channels"].items():
        messages = []
        for ref in (channel.get("messages") or {}).values():
            message = _resolve(document, ref)
            kafka = (message.get("bindings") or {}).get("kafka") or {}
            messages.append(
                Message(
                    name=message.get("name", ""),
                    content_type=message.get("contentType", default),
                    payload=_validator(message.get("payload"), registry),
                    headers=_validator(message.get("headers"), registry),
                    key=_validator(kafka.get("key"), registry),
                )
            )
        address = channel.get("address") or name
        out.append(Channel(name, _address_pattern(address), tuple(messages), "{" in address))
    return out


# --- reading every topic with librdkafka ------------------------------------------------------


@dataclass
class Read:
    records: dict[str, list] = field(default_factory=dict)  # topic → confluent Messages
    past_watermark: list[str] = field(default_factory=list)  # "topic/partition/offset"


def broker_topics(bootstrap: str) -> dict[str, list[int]]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: sorted(topic.partitions) for name, topic in metadata.topics.items()}


def read_everything(bootstrap: str, topics: dict[str, list[int]]) -> Read:
    """Every record of `topics`, from the beginning to the high watermark, then until quiet."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"contract-reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for topic, ps in topics.items() for p in ps]
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions])
        read, next_offset = Read({topic: [] for topic in topics}), {key: 0 for key in ends}
        deadline, quiet_since = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            record = consumer.poll(0.2)
            assert record is None or record.error() is None, record.error()
            if record is None:
                reached = all(next_offset[key] >= end for key, end in ends.items())
                quiet_since = quiet_since or time.monotonic()
                if reached and time.monotonic() - quiet_since >= IDLE_AFTER_WATERMARK:
                    break
                continue
            quiet_since = None
            key = (record.topic(), record.partition())
            if record.offset() >= ends[key]:
                read.past_watermark.append(f"{key[0]}/{key[1]}/{record.offset()}")
            next_offset[key] = record.offset() + 1
            read.records[record.topic()].append(record)
        missing = {f"{t}/{p}": (next_offset[(t, p)], end) for (t, p), end in ends.items() if next_offset[(t, p)] < end}
        assert not missing, f"records below the high watermark never arrived: {missing}"
        return read
    finally:
        consumer.close()


# --- checking one record --------------------------------------------------------------------


def _errors(validator: Draft202012Validator | None, instance) -> list[str]:
    if validator is None:
        return []
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in validator.iter_errors(instance)]


def violations(channel: Channel, record) -> list[str]:
    """Why the record fits none of the channel's messages (empty: it fits one)."""
    headers = {name: (value or b"").decode("utf-8", "replace") for name, value in record.headers() or []}
    sent_type = headers.get("content-type")
    if sent_type is None:
        return ["no content-type header"]
    candidates = [m for m in channel.messages if m.content_type == sent_type]
    if not candidates:
        return [f"content-type {sent_type!r} is none of {sorted({m.content_type for m in channel.messages})}"]
    value = record.value() or b""
    try:
        payload = json.loads(value) if "json" in sent_type else value.decode("utf-8")
    except ValueError as exc:
        return [f"the payload is not {sent_type}: {exc}"]
    reasons = []
    for message in candidates:
        key = record.key().decode("utf-8", "replace") if record.key() is not None else None
        found = _errors(message.headers, headers) + _errors(message.payload, payload) + (_errors(message.key, key) if key is not None else [])
        if not found:
            return []
        reasons.append(f"as {message.name}: {'; '.join(found[:3])}")
    return reasons


# --- the scenario -----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=backends())
def own_stack(request, tmp_path_factory):
    """A stack of this module's own: on the session's stack other tests write to the topics
    directly (replays, stale versions, poison) and those messages are theirs, not the project's."""
    yield from running_stack(request.param, tmp_path_factory)


@dataclass
class Driven:
    request_ids: dict[tuple[str, int], str]  # (publication_id or catalog scope, version) → the X-Request-Id answered
    refused_cms_ids: dict[str, str]  # original event id → the error type expected
    poison_key: bytes


def http_writes(stack) -> dict[tuple[str, int], str]:
    tag = unique("contract")
    client = stack.client
    sent = client.post("/v1/publications", json=body(f"合同检查公告 {tag}"), headers={"x-request-id": f"third-party-{tag}"})
    made = client.post("/v1/publications", json=body(f"门户生成请求号的公告 {tag}"))
    assert sent.status_code == made.status_code == 202, (sent.text, made.text)
    pid, other = sent.json()["publication_id"], made.json()["publication_id"]
    revised = client.post(f"/v1/publications/{pid}", json={**body(f"合同检查公告（更正） {tag}"), "version": 1})
    withdrawn = client.post(f"/v1/publications/{other}/withdraw", json={"type": "withdrawn", "explanation": "内容已合并发布"})
    assert revised.status_code == withdrawn.status_code == 202, (revised.text, withdrawn.text)
    assert sent.headers["x-request-id"] == f"third-party-{tag}"
    return {
        (pid, 1): sent.headers["x-request-id"],
        (other, 1): made.headers["x-request-id"],
        (pid, 2): revised.headers["x-request-id"],
        (other, 2): withdrawn.headers["x-request-id"],
    }


def cms_requests(producer: Producer) -> dict[str, str]:
    """A CMS's requests, sent as a third party sends them: an accepted one, one with an unknown
    catalog item, and one older than the accepted one (a new id, an earlier time)."""
    now = datetime.now(timezone.utc)
    ref = unique("article-")
    accepted = {**cms_request(ref, body(f"CMS 发布 {unique('cms')}", level2="D14-02-03")), "time": (now - timedelta(minutes=1)).isoformat()}
    unknown_item = {
        **cms_request(unique("article-"), body("目录项不存在", level2="D14-02-99")),
        "time": now.isoformat(),
    }
    older = {**accepted, "id": str(uuid.uuid4()), "time": (now - timedelta(hours=2)).isoformat(), "data": {**accepted["data"], "title": "较早的旧稿"}}
    for event in (accepted, unknown_item, older):
        producer.produce(
            TOPIC_CMS,
            key=event["data"]["source_ref"].encode(),
            value=json.dumps(event, ensure_ascii=False).encode(),
            headers=[("content-type", b"application/cloudevents+json")],
        )
        producer.flush(10)  # one at a time: the older request must arrive after the accepted one
    return {unknown_item["id"]: "catalog.unknown_level2", older["id"]: "time.superseded"}


def catalog_edition(stack) -> dict[tuple[str, int], str]:
    county, client = "430111", stack.client  # 雨花区
    assert client.post(f"/v1/catalogs/{county}/contract-1/derive", json={}).status_code == 201
    assert client.patch(f"/v1/catalogs/{county}/contract-1", json={"rename": {"D14-02-03": "低保审核结果公示"}}).status_code == 200
    published = client.post(f"/v1/catalogs/{county}/contract-1/publish")
    assert published.status_code == 200
    return {(county, 1): published.headers["x-request-id"]}  # the county's first edition of its own


def service_items(stack) -> None:
    """The bridge polls a platform of a few items and relays their events."""
    platform = Platform(seed_items(12, seed=7), seed=7)
    producer = idempotent_producer(stack.bootstrap)
    with Served(simulator_app(platform)) as simulator:
        settings = BridgeSettings(platform="contract-it", platform_url=simulator.url, relay_interval=0.05)
        runtime = create_runtime(stack.settings.model_copy(update={"bridge": settings}), producer=producer).start(poll=False)
        try:
            assert runtime.bridge.poll().events >= 1
            wait_for(lambda: runtime.store.outbox_backlog() == 0, timeout=60, what="the bridge's relay to send its events")
        finally:
            runtime.shutdown()
            producer.close()


def migration(stack, tmp_path: Path) -> None:
    result = stack.cli("migrate", str(SAMPLES / "wangcheng.jsonl"), "--config", str(SAMPLES / "wangcheng.toml"), "--rejects", str(tmp_path / "rejects.csv"))
    assert result.exit_code == 0, result.output


def poison(producer: Producer) -> bytes:
    """A malformed event on the canonical topic, as a broken producer would write it."""
    key = f"poison-{uuid.uuid4().hex[:8]}".encode()
    producer.produce(TOPIC_PUBLICATIONS, key=key, value=b'{"specversion": "1.0", "type": "cn.gov.tongyuan.publication.published.v1", "data": {"title": 1}}')
    producer.flush(10)
    return key


@pytest.fixture(scope="module")
def driven(own_stack, tmp_path_factory) -> Driven:
    stack = own_stack
    producer = Producer({"bootstrap.servers": stack.bootstrap, "acks": "all"})
    try:
        request_ids = http_writes(stack)
        refused = cms_requests(producer)
        request_ids |= catalog_edition(stack)
        service_items(stack)
        migration(stack, tmp_path_factory.mktemp("migration"))
        poison_key = poison(producer)
    finally:
        producer.close()

    # Converged: the gate took both inbound lanes, the relay sent everything, every reader of
    # the canonical topic has committed past the poison (it is acked only once dead-lettered).
    stack.wait_caught_up(TOPIC_CMS, groups=("tongyuan-publisher",))
    stack.wait_caught_up(TOPIC_SERVICE_ITEMS, groups=("tongyuan-publisher",))
    assert wait_until_drained(bootstrap(stack.settings, load_reference=False), timeout=60), "the relay did not drain the outbox"
    stack.wait_caught_up(TOPIC_PUBLICATIONS, groups=READERS)
    return Driven(request_ids, refused, poison_key)


@pytest.fixture(scope="module")
def contract() -> list[Channel]:
    return channels_of(yaml.safe_load(ASYNCAPI.read_text("utf-8")))


@pytest.fixture(scope="module")
def everything(own_stack, driven, contract) -> tuple[dict[str, Channel], Read]:
    """Every topic the broker has that AsyncAPI names, by channel, read to its end."""
    found = broker_topics(own_stack.bootstrap)
    ours = {topic for topic in found if topic.startswith("tongyuan.")}
    by_topic = {topic: channel for topic in ours for channel in contract if channel.address.fullmatch(topic)}
    assert ours - set(by_topic) == set(), "topics the project writes that AsyncAPI does not name"
    read = read_everything(own_stack.bootstrap, {topic: found[topic] for topic in by_topic})
    if read.past_watermark:
        # The embedded broker's watermark lagged its last record (a known Tansu bug, fixed in
        # the broker, not here): those records were read all the same, and checked.
        warnings.warn(f"records past the reported high watermark: {read.past_watermark}", stacklevel=1)
    return by_topic, read


def test_every_channel_asyncapi_names_is_on_the_broker_and_got_messages(contract, everything):
    by_topic, read = everything
    for channel in contract:
        topics = [t for t, c in by_topic.items() if c is channel]
        assert topics, f"no topic on the broker for {channel.name}"
        for topic in topics:
            assert read.records[topic], f"the scenario wrote nothing to {topic}"


def test_every_message_on_every_topic_is_what_asyncapi_says(everything, driven):
    by_topic, read = everything
    checked, unfit = 0, []
    for topic, records in read.records.items():
        channel = by_topic[topic]
        if not channel.messages:
            continue  # a channel that declares no message says nothing to check against
        for record in records:
            if topic == TOPIC_PUBLICATIONS and record.key() == driven.poison_key:
                continue  # the test's own malformed write, there to reach the DLQ
            checked += 1
            if reasons := violations(channel, record):
                unfit.append(f"{topic}/{record.partition()}/{record.offset()}: {reasons}")
    assert checked > 20 and unfit == []


def test_every_http_write_s_event_carries_the_request_id_its_answer_returned(everything, driven):
    _, read = everything
    carried = {}
    for topic in (TOPIC_PUBLICATIONS, TOPIC_CATALOG):
        for record in read.records[topic]:
            if record.key() == driven.poison_key:
                continue
            event = json.loads(record.value())
            carried[(event["subject"], event["data"]["version"])] = event.get("tongyuanrequestid")
    assert {written: carried.get(written) for written in driven.request_ids} == driven.request_ids


def test_the_cms_s_refused_requests_are_answered_on_the_rejections_topic(everything, driven):
    _, read = everything
    answered = {}
    for record in read.records[TOPIC_REJECTIONS]:
        event = json.loads(record.value())
        answered[event["data"]["original_id"]] = [e["type"] for e in event["data"]["errors"]]
    assert {original: answered.get(original, [None])[0] for original in driven.refused_cms_ids} == driven.refused_cms_ids


def test_the_poison_reached_a_dead_letter_queue_of_every_reader(everything, driven):
    by_topic, read = everything
    dead_letters = {topic for topic, c in by_topic.items() if c.parameterised and any(r.key() == driven.poison_key for r in read.records[topic])}
    assert {dlq_topic(group) for group in READERS} <= dead_letters
