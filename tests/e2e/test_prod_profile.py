"""`make run-prod` as a user meets it: deploy/local/prod starts Apache Kafka (its log on disk under
the var dir) and runs `tongyuan up` against it and PostgreSQL; a publication reaches the column and
every store verifies; Ctrl-C stops the stack, Kafka runs on as a service of its own, and a second
start finds the publication still there (the broker's log and the stores are durable)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS
from services.common.broker import free_port, port_open
from tests.conftest import fresh_postgres_database
from tests.e2e.test_tongyuan_up import PLACEMENT, ROOT, STARTUP_S, _eventually
from tests.integration.brokers import KAFKA, _free_port_pair

pytestmark = pytest.mark.skipif(
    not os.environ.get("TONGYUAN_TEST_PG_URL") or os.environ.get("TONGYUAN_TEST_KAFKA") == "tansu" or shutil.which("java") is None,
    reason="the production profile needs PostgreSQL (TONGYUAN_TEST_PG_URL) and Java for Apache Kafka",
)


class Prod:
    """deploy/local/prod on ports and a var dir of the test's, its stores in a fresh database."""

    def __init__(self, var_dir: Path, database_url: str) -> None:
        self.var_dir, self.kafka_port, self.port = var_dir, _free_port_pair(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}
        self.env.update(
            TONGYUAN_VAR_DIR=str(var_dir),
            TONGYUAN_KAFKA_PORT=str(self.kafka_port),
            TONGYUAN_PORT=str(self.port),
            TONGYUAN_DATABASE_URL=database_url,
            TONGYUAN_BIN=str(Path(sys.executable).parent / "tongyuan"),
            TONGYUAN_LOG_LEVEL="warning",
            KAFKA_HEAP="512m",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return (self.var_dir / "prod.log").read_text(errors="replace")

    def start(self) -> None:
        with open(self.var_dir / "prod.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "deploy" / "local" / "prod")], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _eventually(self._healthy, "the production profile to answer /healthz", timeout=STARTUP_S)

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"deploy/local/prod exited:\n{self.output()[-3000:]}"
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def interrupt(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "TONGYUAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}"}
        return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        subprocess.run([str(KAFKA), "stop"], env=self.env, check=False, timeout=120)


@pytest.fixture
def prod(tmp_path) -> Iterator[Prod]:
    database_url, drop = fresh_postgres_database(prefix="tongyuan_prod")
    running = Prod(tmp_path, database_url)
    try:
        yield running
    finally:
        running.close()
        drop()


def _listed(prod: Prod, title: str) -> bool:
    column = f"{prod.url}/columns/{PLACEMENT['region_code']}/{PLACEMENT['domain_code']}/{PLACEMENT['level2_id']}"
    return title in httpx.get(column, timeout=10).text


def _ends(prod: Prod) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{prod.kafka_port}", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(t, p) for t in (TOPIC_PUBLICATIONS, TOPIC_CATALOG) for p in sorted(consumer.partitions_for_topic(t) or [])]
        return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


@pytest.mark.timeout(600)
def test_the_production_profile_runs_on_kafka_and_postgresql_and_keeps_its_data(prod):
    prod.start()
    said = prod.output()
    assert f"Apache Kafka on 127.0.0.1:{prod.kafka_port}" in said and "embedded broker" not in said, said[-2000:]
    assert (prod.var_dir / "kafka" / "data" / "meta.properties").exists(), "Kafka's log is on disk under the var dir"
    token = prod.cli("token", "--region", PLACEMENT["region_code"][:6], "--user", "prod-clerk").stdout.strip().splitlines()[-1]
    title = f"生产配置公告（{uuid.uuid4().hex[:6]}）"
    with httpx.Client(base_url=prod.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as clerk:
        response = clerk.post("/v1/publications", json={"placements": [PLACEMENT], "title": title, "body_html": "<p>内容。</p>", "formed_at": "2026-11-20"})
    assert response.status_code == 202, response.text
    _eventually(lambda: _listed(prod, title), "the publication on the column")
    _eventually(lambda: prod.cli("verify").returncode == 0, "every store to verify", timeout=90)

    assert prod.interrupt() == 0, prod.output()[-3000:]
    assert port_open("127.0.0.1", prod.kafka_port), "Kafka is a service of its own: it outlives `up`"
    sent = _ends(prod)
    prod.start()  # the same broker and database
    assert _listed(prod, title), "the publication survived the restart"
    assert prod.cli("verify").returncode == 0
    assert _ends(prod) == sent, "Kafka kept its log: the relay sent nothing again"
    assert prod.interrupt() == 0, prod.output()[-3000:]
