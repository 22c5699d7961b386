"""Faults injected into the running pipeline; every test ends with the stores converged on
the publisher's truth (`tongyuan verify`), with nothing lost and nothing duplicated."""

from __future__ import annotations

import json
import socket
import socketserver
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient
from sqlalchemy import func, select

from contracts.events import TOPIC_CMS, TOPIC_PUBLICATIONS
from services.common.db import PG_CONNECT_TIMEOUT
from services.publisher.app import bootstrap
from services.publisher.tables import outbox
from tests.integration.conftest import wait_for
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_pipeline import body, cms_request, unique

BURST = 60


def publish_burst(stack, tag: str, count: int = BURST) -> list[str]:
    return [stack.publish(body(f"故障演练 {tag} 第{n}条"))["publication_id"] for n in range(count)]


def assert_converged(stack) -> None:
    stack.wait_caught_up(TOPIC_PUBLICATIONS)
    verified = stack.cli("verify")
    assert verified.exit_code == 0 and "0 difference(s)" in verified.output, verified.output


def listed_once(stack, tag: str, expected: list[str]) -> None:
    """Each publication exactly once in search and in the column's lists."""
    found = stack.search(q=tag, per_page=100)
    ids = [hit["publication_id"] for hit in found["hits"]]
    assert found["total"] == len(expected) and sorted(ids) == sorted(expected)
    total, items = stack.column.listing("430102001", per_page=1000)
    mine = [item.publication_id for item in items if tag in item.title]
    assert sorted(mine) == sorted(expected)


@pytest.mark.parametrize("consumer", ["column", "indexer"])
def test_kill_9_mid_batch_then_restart_converges(stack, consumer):
    tag = unique("kill")
    ids = publish_burst(stack, tag)
    time.sleep(0.3)  # let the consumer get into the burst
    stack.kill(consumer)
    more = publish_burst(stack, tag, 20)
    stack.start(consumer)
    wait_for(lambda: stack.search(q=tag, per_page=1)["total"] == len(ids) + len(more) and stack.column.listing("430102001", per_page=1)[0] > 0, timeout=90)
    assert_converged(stack)
    listed_once(stack, tag, ids + more)


def test_a_whole_topic_replayed_changes_nothing(stack):
    tag = unique("replay")
    ids = publish_burst(stack, tag, 20)
    wait_for(lambda: stack.search(q=tag)["total"] == len(ids), timeout=60)
    # Search being complete says nothing about the column, which consumes at its own pace:
    # the snapshot is only meaningful once every consumer has caught up.
    assert_converged(stack)
    before = stack.column.versions()
    # Every canonical event so far, delivered again, in reverse order.
    for record in reversed(stack.read_topic(TOPIC_PUBLICATIONS)):
        stack.produce(TOPIC_PUBLICATIONS, record.value, key=record.key)
    assert_converged(stack)
    assert stack.column.versions() == before
    listed_once(stack, tag, ids)


def test_a_locked_store_is_waited_out_without_spinning(stack):
    if stack.backend != "sqlite":
        pytest.skip("locks the SQLite column store; the PostgreSQL twin is test_postgresql_down_is_waited_out_and_caught_up")
    tag = unique("lock")
    database = Path(stack.env["TONGYUAN_VAR_DIR"]) / "column.db"
    holder = sqlite3.connect(database, timeout=1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # nobody else writes (or, in WAL, checkpoints) meanwhile
    cpu_before = _cpu_seconds(stack.processes["column"].pid)
    try:
        ids = publish_burst(stack, tag, 20)
        wait_for(lambda: stack.search(q=tag)["total"] == len(ids), timeout=60)  # the indexer is unaffected
        time.sleep(8)  # the consumer waits in SQLite's busy handler (retries past 30 s are unit-tested)
        assert stack.processes["column"].poll() is None, "the column consumer died instead of waiting"
        assert not [i for i in stack.column.listing("430102001", per_page=1000)[1] if tag in i.title]
        cpu_spent = _cpu_seconds(stack.processes["column"].pid) - cpu_before
        assert cpu_spent < 3, f"the column consumer spun: {cpu_spent:.1f} s of CPU while waiting"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: len([i for i in stack.column.listing("430102001", per_page=1000)[1] if tag in i.title]) == len(ids), timeout=90)
    assert_converged(stack)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def test_poison_is_listed_and_the_replay_reports_it_still_failing(stack):
    stack.produce(
        TOPIC_PUBLICATIONS,
        json.dumps(
            {"specversion": "1.0", "type": "cn.gov.tongyuan.publication.published.v1", "id": "x", "source": "/publisher", "data": {"version": "one"}}
        ).encode(),
        key=b"poison-2",
    )
    stack.wait_caught_up(TOPIC_PUBLICATIONS)
    listed = stack.cli("dlq", "list", "--group", "tongyuan-indexer")
    assert "invalid cn.gov.tongyuan.publication.published.v1" in listed.output
    replay = stack.cli("dlq", "replay", "--group", "tongyuan-indexer")
    assert replay.exit_code == 1 and "still failing" in replay.output
    assert_converged(stack)


def test_the_store_proxy_cuts_refuses_swallows_and_comes_back():
    """The outage double the PostgreSQL test relies on, against a plain echo server."""
    with _EchoServer(("127.0.0.1", 0), _Echo) as echo:
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        with TcpProxy(*echo.server_address) as proxy:
            talking = socket.create_connection(proxy.address, timeout=2)
            talking.sendall(b"ping")
            assert talking.recv(4) == b"ping"
            assert proxy.down() == 1
            assert _closed(talking)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(proxy.address, timeout=2)
            proxy.up()
            with socket.create_connection(proxy.address, timeout=2) as again:
                again.sendall(b"pong")
                assert again.recv(4) == b"pong"
                proxy.down(silent=True)
                with socket.create_connection(proxy.address, timeout=2) as swallowed:
                    swallowed.sendall(b"hello")
                    with pytest.raises(TimeoutError):
                        swallowed.recv(5)
            proxy.up()
            with socket.create_connection(proxy.address, timeout=2) as last:
                last.sendall(b"back")
                assert last.recv(4) == b"back"
            echo.shutdown()
    assert (proxy.accepted, proxy.cut, proxy.held) == (3, 2, 1)


def _closed(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


# Processes whose stores are on PostgreSQL (the indexer keeps its index in SQLite beside the
# text index), and the consumer groups among them that read the canonical topic.
ON_POSTGRESQL = ("publisher", "column", "embed", "supervision")
HOLDING = ("tongyuan-column", "tongyuan-embed", "tongyuan-supervision")
OUTAGE = 8.0


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
def test_postgresql_down_is_waited_out_and_caught_up(stack, silent):
    """PostgreSQL goes away while HTTP and the CMS publish — every connection cut, new ones
    refused (the server died) or never answered (its host vanished): the API fails cleanly, CMS
    requests and canonical events wait on their topics with their offsets uncommitted, nobody
    spins, and when the database returns everything lands exactly once."""
    if stack.backend != "postgresql":
        pytest.skip("takes PostgreSQL down through the stack's proxy; the SQLite twin is test_a_locked_store_is_waited_out_without_spinning")
    proxy = stack.store_proxy
    tag = unique("pgdown")
    var = Path(stack.env["TONGYUAN_VAR_DIR"])
    before = publish_burst(stack, tag, 10)  # some before the cut…
    refs = [unique("pgdown-cms-") for _ in range(40)]
    draft = body(f"故障演练 {tag} 停库时的HTTP发布")
    logs_at = {name: (var / f"{name}.log").stat().st_size for name in ON_POSTGRESQL}
    cpu_at = {name: _cpu_seconds(stack.processes[name].pid) for name in ON_POSTGRESQL}
    cut_at = time.monotonic()
    connections_cut = proxy.down(silent=silent)
    cut_ms = time.time() * 1000  # whatever the broker stamps later cannot have been applied before the cut
    try:
        # A clerk publishes over HTTP meanwhile (in a thread: a silent database holds the request
        # for the connect timeout), and a load balancer asks /healthz.
        clerk = ThreadPoolExecutor(1)
        during = clerk.submit(_http_during_outage, stack, draft)
        # …most during it: the CMS's requests wait on their topic for the gate…
        requested = [stack.produce(TOPIC_CMS, _cms_request(ref, f"故障演练 {tag} 停库 {ref}"), key=ref.encode()) for ref in refs]
        # …and the canonical events of the first ones arrive again (the relay is at-least-once):
        # a consumer cannot tell a duplicate without its store, so it must hold them too.
        redelivered = [r for r in stack.read_topic(TOPIC_PUBLICATIONS) if r.key and r.key.decode() in before]
        held = [stack.produce(TOPIC_PUBLICATIONS, r.value, key=r.key) for r in redelivered]
        # A consumer on another store is unaffected, so the held offsets are the store's doing.
        stack.wait_caught_up(TOPIC_PUBLICATIONS, groups=("tongyuan-indexer",), timeout=OUTAGE)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut_at)))
        for name in ON_POSTGRESQL:
            assert stack.processes[name].poll() is None, f"{name} died instead of waiting for PostgreSQL"
        cpu = {name: _cpu_seconds(stack.processes[name].pid) - cpu_at[name] for name in ON_POSTGRESQL}
        retries_during = {name: _log_lines(var / f"{name}.log", logs_at[name], "store.unavailable") for name in ON_POSTGRESQL}
        committed = _committed({group: TOPIC_PUBLICATIONS for group in HOLDING} | {"tongyuan-publisher": TOPIC_CMS}, stack.bootstrap)
        outage = time.monotonic() - cut_at
    finally:
        proxy.up()
    refused, refused_in, health = during.result(timeout=30)
    clerk.shutdown()

    # The API answered a 5xx within the connect timeout, /healthz a 503 naming the store.
    assert refused.status_code == 503 and refused.headers.get("retry-after") and refused_in < PG_CONNECT_TIMEOUT + 3, (
        refused.status_code,
        refused_in,
        refused.text,
    )
    assert health.status_code == 503, health.text
    assert not health.json()["checks"]["store:publisher"]["up"] and health.json()["checks"]["store:search"]["up"], health.text
    # Every consumer kept retrying, alive, idle in between (a spin burns CPU seconds and logs thousands).
    for name in ON_POSTGRESQL:
        assert retries_during[name] >= 1, f"{name} never noticed PostgreSQL was down"
        assert cpu[name] < 2.0, f"{name} spun: {cpu[name]:.2f} s of CPU in {outage:.1f} s without its database"
    # No offset committed past what was durable: nothing that reached the broker after the cut
    # (our requests and redeliveries, and any outbox row the relay had in hand) was committed,
    # and each group still has those to consume.
    after_cut = {topic: _first_offsets_after(stack, topic, cut_ms) for topic in (TOPIC_PUBLICATIONS, TOPIC_CMS)}
    assert {p for p, _ in held} <= set(after_cut[TOPIC_PUBLICATIONS]) and {p for p, _ in requested} <= set(after_cut[TOPIC_CMS])
    for group, topic in [*((g, TOPIC_PUBLICATIONS) for g in HOLDING), ("tongyuan-publisher", TOPIC_CMS)]:
        ends = stack.end_offsets(topic)
        for partition, first in after_cut[topic].items():
            assert committed[group].get(partition, 0) <= first < ends[partition], (
                f"{group} committed {topic}/{partition} past the outage: {committed[group]}, first produced during it at {first}"
            )

    # After: the clerk sends the refused publication again; everything catches up.
    back_at = time.monotonic()
    retried = stack.publish(draft)["publication_id"]
    stack.wait_caught_up(TOPIC_CMS, groups=("tongyuan-publisher",))
    publisher = bootstrap(stack.settings, load_reference=False)
    wait_for(lambda: publisher.outbox_backlog() == 0, timeout=30, what="the relay to deliver the outbox")
    stack.wait_caught_up(TOPIC_PUBLICATIONS, groups=(*HOLDING, "tongyuan-indexer"))
    caught_up = time.monotonic() - back_at
    assert_converged(stack)
    wait_for(lambda: stack.client.get("/healthz").status_code == 200, timeout=15, what="every heartbeat back in /healthz")
    retries = {name: _log_lines(var / f"{name}.log", logs_at[name], "store.unavailable") for name in ON_POSTGRESQL}
    relay_retries = _log_lines(var / "publisher.log", logs_at["publisher"], "relay.error")
    # Backoff from 0.2 s doubling to 2 s: about 7 tries in 8 s.
    assert all(n <= 20 for n in retries.values()) and 1 <= relay_retries <= 20, (retries, relay_retries)

    with publisher.transaction() as store:
        from_cms = store.by_source_refs([("/cms/furong", ref) for ref in refs])
        written = [(p.publication_id, p.version) for p in store.all_publications() if tag in p.document.title]
    expected = before + [from_cms[("/cms/furong", ref)].publication_id for ref in refs if ("/cms/furong", ref) in from_cms] + [retried]
    with publisher.engine.connect() as connection:
        events = connection.execute(select(func.count()).select_from(outbox).where(outbox.c.key.in_(expected))).scalar_one()
    found = stack.search(q=tag, per_page=100)
    searched = [hit["publication_id"] for hit in found["hits"]]
    listed = [item.publication_id for item in stack.column.listing("430102001", per_page=1000)[1] if tag in item.title]
    published = len(before) + len(refs) + 1
    lost = (published - len(expected)) + sum(len(set(expected) - set(ids)) for ids in (searched, listed, [pid for pid, _ in written]))
    duplicates = (len(written) - len(expected)) + (found["total"] - len(set(searched))) + (len(listed) - len(set(listed)))
    print(
        f"\n[postgresql {'silent' if silent else 'refusing'}] published {published}: HTTP {len(before)} before the cut, "
        f"CMS {len(refs)} during it, HTTP 1 answered {refused.status_code} in {refused_in:.1f} s and sent again after; "
        f"{len(redelivered)} canonical events redelivered during it; outage {outage:.1f} s, {connections_cut} connections cut, "
        f"{proxy.held} held unanswered; caught up {caught_up:.1f} s after; lost {lost}, duplicates {duplicates}; "
        f"CPU s during the outage: {', '.join(f'{n} {c:.2f}' for n, c in cpu.items())}; "
        f"store retries during/total: {', '.join(f'{n} {retries_during[n]}/{retries[n]}' for n in ON_POSTGRESQL)}; relay retries {relay_retries}"
    )
    assert lost == 0 and duplicates == 0
    # One version and one outbox event per publication: the refused request left nothing behind.
    assert sorted(pid for pid, _ in written) == sorted(expected) and {version for _, version in written} == {1}
    assert events == len(expected)
    listed_once(stack, tag, expected)


def _http_during_outage(stack, draft: dict):
    api = TestClient(stack.client.app, raise_server_exceptions=False, headers=dict(stack.client.headers))
    started = time.monotonic()
    refused = api.post("/v1/publications", json=draft)
    return refused, time.monotonic() - started, api.get("/healthz")


def _cms_request(ref: str, title: str) -> bytes:
    return json.dumps(cms_request(ref, body(title)), ensure_ascii=False).encode()


def _committed(topics: dict[str, str], bootstrap_servers: str) -> dict[str, dict[int, int]]:
    """group → partition → committed offset, for the topic given for each group."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return {
            group: {
                tp.partition: meta.offset
                for tp, meta in admin.list_group_offsets({group: None}).get(group, {}).items()
                if tp.topic == topic and meta is not None
            }
            for group, topic in topics.items()
        }
    finally:
        admin.close()


def _first_offsets_after(stack, topic: str, since_ms: float) -> dict[int, int]:
    """partition → the first offset the broker stamped after `since_ms`."""
    first: dict[int, int] = {}
    for record in stack.read_topic(topic):
        if record.timestamp > since_ms:
            first[record.partition] = min(record.offset, first.get(record.partition, record.offset))
    return first


def _log_lines(path: Path, since: int, word: str) -> int:
    with path.open("rb") as log:
        log.seek(since)
        return sum(1 for line in log if word.encode() in line)
