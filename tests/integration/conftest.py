"""The real stack for integration tests: a broker on free ports, the publisher and the
consumers as separate processes (`tongyuan run …`), the portal in-process. On SQLite with Tansu
(the embedded default) and, when TONGYUAN_TEST_PG_URL is set, on PostgreSQL with Apache Kafka too
(the production profile; see tests/integration/brokers.py) — PostgreSQL reached through a TCP
proxy (`Stack.store_proxy`) so a test can take "PostgreSQL" down without stopping the shared server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy.engine import make_url

from contracts.events import TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
from contracts.identity import Principal
from services.common.auth import build_verifier
from services.common.kafka import ensure_topics
from services.common.schema import upgrade_all
from services.common.settings import Settings
from services.portal.app import create_app
from services.publisher.app import bootstrap
from services.stack import WORKER_NICENESS
from tests.conftest import fresh_postgres_database
from tests.integration.brokers import Broker, BrokerKind, broker_kind, start_broker
from tests.integration.tcp_proxy import TcpProxy
from tests.processes import interrupt

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("publisher", "column", "indexer", "embed", "supervision")
CONSUMER_GROUPS = ("tongyuan-column", "tongyuan-indexer", "tongyuan-embed", "tongyuan-supervision")


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get("TONGYUAN_TEST_PG_URL") else ["sqlite"]


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    backend: str
    settings: Settings
    env: dict
    client: TestClient
    processes: dict = field(default_factory=dict)
    producer: KafkaProducer | None = None
    broker: Broker | None = None
    # "tansu" (the embedded default's broker, its log in memory) or "kafka" (Apache Kafka, on disk).
    broker_kind: BrokerKind = "tansu"
    # PostgreSQL only: every process (and the in-process portal) reaches the database through it.
    store_proxy: TcpProxy | None = None

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    def kill(self, name: str) -> None:
        """kill -9: no clean shutdown, no final commit."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self, name: str) -> None:
        """Ctrl-C: the worker commits and leaves its group, so a restart rejoins at once
        (after a kill -9 the group waits out the dead member's session first)."""
        process = self.processes[name]
        process.send_signal(signal.SIGINT)
        process.wait(30)

    def start(self, name: str) -> None:
        log = open(Path(self.env["TONGYUAN_VAR_DIR"]) / f"{name}.log", "ab")
        # At the CPU weights `tongyuan up` gives them, so latency under load is measured as run.
        niceness = WORKER_NICENESS.get(name, 0)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", name],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.nice(niceness),
        )

    def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()

    def wait_caught_up(self, topic: str | None = None, groups=CONSUMER_GROUPS, timeout: float = 180.0) -> None:
        """Until every group has committed up to the current end of the topic — of every topic
        the consumers read when none is named (the canonical topic and the bulk lane)."""
        for each in (topic,) if topic else (TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK):
            for partition, end in self.end_offsets(each).items():
                if end:
                    self.wait_consumed(each, partition, end - 1, groups, timeout)

    def cli(self, *args: str):
        """Run a `tongyuan` command against this stack, in-process."""
        from typer.testing import CliRunner

        from services.cli import cli
        from services.common.settings import get_settings

        keys = (
            "TONGYUAN_KAFKA_BOOTSTRAP",
            "TONGYUAN_VAR_DIR",
            "TONGYUAN_DATABASE_URL",
            "TONGYUAN_SEARCH_BACKEND",
            "TONGYUAN_OPENSEARCH_URL",
            "TONGYUAN_ELASTICSEARCH_INDEX_PREFIX",
        )
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: self.env[k] for k in keys if k in self.env})
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli, list(args), catch_exceptions=False)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            get_settings.cache_clear()

    def produce(self, topic: str, value: bytes, key: bytes | None = None):
        """Send one raw message; returns (partition, offset) once the broker acked it."""
        if self.producer is None:
            self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        metadata = self.producer.send(topic, key=key, value=value).get(timeout=10)
        return metadata.partition, metadata.offset

    def read_topic(self, topic: str, timeout: float = 5.0) -> list:
        """Every message on a topic, read without a consumer group (no join wait)."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
        try:
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            records, deadline = [], time.monotonic() + timeout
            while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)
            return records
        finally:
            consumer.close()

    def wait_consumed(self, topic: str, partition: int, offset: int, groups=("tongyuan-column", "tongyuan-indexer"), timeout: float = 30.0) -> None:
        """Until every group has committed past `offset`: the event was applied (or skipped) durably."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            for group in groups:

                def committed(group=group):
                    tp = TopicPartition(topic, partition)
                    meta = admin.list_group_offsets({group: [tp]}).get(group, {}).get(tp)
                    return meta is not None and meta.offset > offset

                wait_for(committed, timeout, 0.2, f"{group} to commit past {topic}/{partition}/{offset}")
        finally:
            admin.close()

    def publish(self, body: dict) -> dict:
        response = self.client.post("/v1/publications", json=body)
        assert response.status_code == 202, response.text
        return response.json()

    def search(self, **params) -> dict:
        response = self.client.get("/v1/search", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def search_ids(self, q: str, **params) -> list[str]:
        return [hit["publication_id"] for hit in self.search(q=q, **params)["hits"]]

    def visible(self, publication_id: str, version: int | None = None, query: str | None = None) -> bool:
        """On its detail page and (if a query is given) found by search, at `version` or later."""

        page = self.client.get(f"/publications/{publication_id}")
        if page.status_code != 200:
            return False
        if version is not None:
            entry = self.column.entry(publication_id)
            if entry is None or entry.version < version:
                return False
        if query is not None and publication_id not in self.search_ids(query):
            return False
        return True

    @property
    def column(self):
        from services.column.app import build_store

        if not hasattr(self, "_column"):
            self._column = build_store(self.settings)
        return self._column


def _through(proxy: TcpProxy, database_url: str) -> str:
    host, port = proxy.address
    return make_url(database_url).set(host=host, port=port).render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=backends())
def stack(request, tmp_path_factory):
    yield from running_stack(request.param, tmp_path_factory)


def running_stack(backend: str, tmp_path_factory):
    """A whole stack of its own, yielded once warm (a fixture's body: `yield from` it)."""
    var = tmp_path_factory.mktemp(f"var-{backend}")
    kind = broker_kind(backend)
    broker = start_broker(kind, var)
    try:  # Apache Kafka is a JVM of its own: it does not die with the test run
        yield from _stack_on(backend, var, kind, broker)
    finally:
        broker.stop()


def _stack_on(backend: str, var: Path, kind: BrokerKind, broker: Broker):
    drop = None
    proxy = None
    env = {
        **os.environ,
        "TONGYUAN_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TONGYUAN_VAR_DIR": str(var),
        "TONGYUAN_HEARTBEAT_INTERVAL": "1",
        "TONGYUAN_LOG_LEVEL": "info",
        "TONGYUAN_STORE_RETRY_MAX_SECONDS": "2",
    }
    env.pop("TONGYUAN_DATABASE_URL", None)
    if backend == "postgresql":
        direct, drop = fresh_postgres_database(os.environ["TONGYUAN_TEST_PG_URL"], prefix="tongyuan_it")
        server = make_url(direct)
        proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
        env["TONGYUAN_DATABASE_URL"] = _through(proxy, direct)
    # The tests poll search while the stack converges, one client for the whole session: the
    # portal's rate limits are off here (tests/unit/test_portal_limits.py covers them).
    settings = Settings(
        kafka_bootstrap=env["TONGYUAN_KAFKA_BOOTSTRAP"],
        var_dir=var,
        heartbeat_interval=1,
        database_url=env.get("TONGYUAN_DATABASE_URL"),
        search_backend=env.get("TONGYUAN_SEARCH_BACKEND", "embedded"),
        opensearch_url=env.get("TONGYUAN_OPENSEARCH_URL"),
        elasticsearch_index_prefix=env.get("TONGYUAN_ELASTICSEARCH_INDEX_PREFIX", "tongyuan"),
        portal_writes_per_minute=0,
        portal_searches_per_minute=0,
    )
    ensure_topics(broker.bootstrap, settings.topic_partitions)
    upgrade_all(settings)  # as `tongyuan up` and `tongyuan db upgrade` do: on PostgreSQL a process only checks
    bootstrap(settings)
    _, local_key = build_verifier(settings)
    assert local_key is not None, "a stack without an external issuer signs its own tokens"
    # The tests act as the disclosure office (admin); tests/unit covers who may publish where.
    token = local_key.mint(Principal(user="office", roles=("admin",)), audience=settings.auth_audience)
    client = TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"})
    stack = Stack(backend=backend, settings=settings, env=env, client=client, broker=broker, broker_kind=kind, store_proxy=proxy)
    for name in PROCESSES:
        stack.start(name)
    processes = stack.processes
    try:
        # Warm-up: the first publication through every process proves the groups have joined.
        receipt = stack.publish(_warmup_body())
        wait_for(lambda: stack.visible(receipt["publication_id"], query="预热"), timeout=90, what="the warm-up publication to reach every store")
        from services.embed.app import build_store as build_embed_store

        embed = build_embed_store(settings)
        wait_for(lambda: receipt["publication_id"] in embed.versions(), timeout=90, what="the warm-up publication in the embed store")
        yield stack
    finally:
        interrupt(processes.values())
        if stack.producer:
            stack.producer.close()
        if proxy:
            proxy.close()
        if drop:
            drop()


def _warmup_body() -> dict:
    return {
        "placements": [{"region_code": "430102", "domain_code": "D14", "level1_id": "D14-01", "level2_id": "D14-01-01"}],
        "title": "预热公告",
        "body_html": "<p>系统预热。</p>",
        "formed_at": "2026-01-05",
    }
