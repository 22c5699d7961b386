"""`tongyuan up` stopped with Ctrl-C and started again: the embedded broker comes back empty,
and the publisher sends it none of the publications every consumer had applied before the stop
— only each catalog in force — while every store still verifies and new work flows."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
from kafka import KafkaConsumer, TopicPartition

from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
from tests.e2e.test_tongyuan_up import PLACEMENT, ROOT, Up, _eventually

ITEMS = 4


def _ends(up: Up, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{up.broker_port}", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def _publish(up: Up, client: httpx.Client, title: str) -> str:
    response = client.post(
        "/v1/publications", json={"placements": [PLACEMENT], "title": title, "body_html": "<p>重启后的公开内容。</p>", "formed_at": "2026-11-20"}
    )
    assert response.status_code == 202, response.text
    return response.json()["publication_id"]


def _listed(up: Up, title: str) -> bool:
    return title in httpx.get(f"{up.url}/columns/{PLACEMENT['region_code']}/{PLACEMENT['domain_code']}/{PLACEMENT['level2_id']}", timeout=10).text


def _verify(var_dir) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}, "TONGYUAN_VAR_DIR": str(var_dir)}
    return subprocess.run([sys.executable, "-m", "services.cli", "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_clean_restart_sends_the_new_broker_no_publication_again(tmp_path):
    tag = uuid.uuid4().hex[:6]
    first = Up(tmp_path)
    try:
        first.wait_healthy()
        with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {first.token()}"}, timeout=30) as clerk:
            titles = [f"社区公告{n}（重启 {tag}）" for n in range(ITEMS)]
            for title in titles:
                _publish(first, clerk, title)
        _eventually(lambda: all(_listed(first, title) for title in titles), "the items on the column")
        _eventually(lambda: _verify(tmp_path).returncode == 0, "every store to verify", timeout=60)
        assert first.interrupt() == 0, first.output()[-3000:]
        assert "every consumer applied the outbox through row" in first.output(), first.output()[-3000:]
    finally:
        first.stop()

    second = Up(tmp_path)
    try:
        second.wait_healthy()
        # The relay looked at the new, empty log and sent it each scope's catalog in force ...
        _eventually(lambda: sum(_ends(second, TOPIC_CATALOG).values()) > 0, "the catalogs in force on the new broker")
        # ... and none of the publications every consumer had applied.
        assert sum(_ends(second, TOPIC_PUBLICATIONS).values()) == 0 and sum(_ends(second, TOPIC_PUBLICATIONS_BULK).values()) == 0
        assert all(_listed(second, title) for title in titles), "the stores kept what they applied"
        verified = _verify(tmp_path)
        assert verified.returncode == 0, verified.stdout[-2000:]

        with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {second.token()}"}, timeout=30) as clerk:
            after = f"社区公告（重启之后 {tag}）"
            _publish(second, clerk, after)
        _eventually(lambda: _listed(second, after), "a publication after the restart on the column")
        assert sum(_ends(second, TOPIC_PUBLICATIONS).values()) == 1
        assert second.interrupt() == 0, second.output()[-3000:]
    finally:
        second.stop()
