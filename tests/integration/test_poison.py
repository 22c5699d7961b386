"""Poison on the real broker, amid valid publications: on the publications topic, the bulk lane
and the CMS topic. Every store ends with every valid publication, every consumer group has
committed past the poison, the poison is in each group's DLQ (the CMS lane's in the rejections),
and every worker is still up."""

from __future__ import annotations

import json

from sqlalchemy import select

from contracts.events import TOPIC_CMS, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK, TOPIC_REJECTIONS, dlq_topic
from services.common.kafka import CONSUMER_GROUPS
from tests.integration.conftest import wait_for
from tests.integration.test_pipeline import body, canonical_events, cms_request, unique

DEEP = b"[" * 50_000
# What used to kill a consumer (RecursionError, a number Python will not convert, not UTF-8, a
# null value), and plain wrong types; each keyed so its letter can be found.
POISON = [
    DEEP,
    b'{"a":' * 50_000,
    b'{"specversion":"1.0","type":"cn.gov.tongyuan.publication.published.v1","id":"x","data":{"version":' + b"9" * 5_000 + b"}}",
    b'{"specversion":"1.0","type":"cn.gov.tongyuan.publication.published.v1","id":"x","data":{"title":"\xff\xfe"}}',
    b'{"specversion":"1.0","type":"cn.gov.tongyuan.publication.published.v1","id":["x"],"data":[]}',
]


def supervision_versions(stack) -> dict[str, int]:
    from services.supervision.app import build_store
    from services.supervision.store import publications

    with build_store(stack.settings).engine.connect() as connection:
        return dict(connection.execute(select(publications.c.publication_id, publications.c.version)).all())


def test_poison_amid_valid_publications_loses_nothing_and_lands_in_the_dlq(stack):
    tag = unique("poison")
    valid, poison_keys = [], []
    # The publications topic: poison produced between publications, so it shares their batches.
    for n, raw in enumerate(POISON):
        key = f"poison-{tag}-{n}".encode()
        stack.produce(TOPIC_PUBLICATIONS, raw, key=key)
        poison_keys.append(key)
        valid += [stack.publish(body(f"毒消息之间 {tag} 第{n}-{m}条"))["publication_id"] for m in range(4)]
    null_key = f"poison-{tag}-null".encode()
    stack.produce(TOPIC_PUBLICATIONS, None, key=null_key)  # a tombstone: no value at all
    poison_keys.append(null_key)

    # The CMS lane: valid requests and poison back to back in one batch of the publisher's agent.
    refs = []
    for n, raw in enumerate(POISON):
        ref = unique(f"cms-{n}-")
        refs.append(ref)
        request = cms_request(ref, body(f"CMS毒消息之间 {tag} 第{n}条"))
        stack.produce(TOPIC_CMS, json.dumps(request, ensure_ascii=False).encode(), key=ref.encode())
        stack.produce(TOPIC_CMS, raw, key=f"cms-poison-{tag}-{n}".encode())

    # The bulk lane: a valid event read back from the canonical topic (applying it again changes
    # nothing) with poison around it.
    wait_for(lambda: canonical_events(stack, valid[0]), what="the first valid event on the canonical topic")
    (first,) = canonical_events(stack, valid[0])
    bulk_key, batch_key = f"poison-{tag}-bulk".encode(), f"poison-{tag}-batch".encode()
    stack.produce(TOPIC_PUBLICATIONS_BULK, DEEP, key=bulk_key)
    stack.produce(TOPIC_PUBLICATIONS_BULK, json.dumps(first, ensure_ascii=False).encode(), key=valid[0].encode())
    # A batch record (as the relay packs the lane) with a bad element: that element alone is a letter.
    bad_element = {**first, "data": {**first["data"], "version": "第一版"}}
    stack.produce(TOPIC_PUBLICATIONS_BULK, json.dumps([first, bad_element], ensure_ascii=False).encode(), key=batch_key)

    # Every group commits past everything it was given: nothing is stuck behind the poison.
    stack.wait_caught_up(TOPIC_CMS, groups=("tongyuan-publisher",), timeout=90)
    from services.publisher.app import bootstrap
    from services.publisher.relay.outbox import wait_until_drained

    publisher = bootstrap(stack.settings, load_reference=False)
    cms_ids = wait_for(
        lambda: [pid for pid, _ in _by_refs(publisher, refs)] if len(_by_refs(publisher, refs)) == len(refs) else None,
        timeout=60,
        what="every valid CMS request through the gate",
    )
    assert wait_until_drained(publisher, timeout=60), "the relay sent every accepted request"
    for topic in (TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK):
        stack.wait_caught_up(topic, groups=CONSUMER_GROUPS, timeout=120)

    verified = stack.cli("verify")
    assert verified.exit_code == 0 and "0 difference(s)" in verified.output, verified.output
    truth = {pid: version for pid, (version, _) in publisher.versions().items()}
    supervised = supervision_versions(stack)
    for pid in [*valid, *cms_ids]:
        assert pid in truth and supervised.get(pid) == truth[pid], f"{pid} missing from supervision"

    for group in CONSUMER_GROUPS:
        letters = {r.key: r for r in stack.read_topic(dlq_topic(group)) if r.key and r.key.startswith(f"poison-{tag}".encode())}
        assert set(letters) == {*poison_keys, bulk_key, batch_key}, group
        assert json.loads(letters[batch_key].value)["data"]["version"] == "第一版", "the bad element alone"
        assert letters[poison_keys[0]].value == DEEP and b"not JSON" in dict(letters[poison_keys[0]].headers)["tongyuan-error"]
        listed = stack.cli("dlq", "list", "--group", group)
        assert listed.exit_code == 0 and "dead letter(s) in " + group in listed.output, listed.output

    rejected = {r.key for r in stack.read_topic(TOPIC_REJECTIONS) if r.key and r.key.startswith(f"cms-poison-{tag}".encode())}
    assert rejected == {f"cms-poison-{tag}-{n}".encode() for n in range(len(POISON))}

    # No worker died on the way: every consumer is up and ready.
    wait_for(lambda: stack.client.get("/readyz").status_code == 200, timeout=30, what="/readyz")
    assert stack.client.get("/healthz").status_code == 200
    for name, process in stack.processes.items():
        assert process.poll() is None, f"{name} exited"


def _by_refs(publisher, refs: list[str]) -> list[tuple[str, str]]:
    from services.publisher.tables import publications

    with publisher.engine.connect() as connection:
        rows = connection.execute(select(publications.c.publication_id, publications.c.source_ref).where(publications.c.source_ref.in_(refs))).all()
    return [(row[0], row[1]) for row in rows]
