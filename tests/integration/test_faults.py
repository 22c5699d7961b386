"""Faults injected into the running pipeline; every test ends with the stores converged on
the publisher's truth (`tongyuan verify`), with nothing lost and nothing duplicated."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from contracts.events import TOPIC_PUBLICATIONS
from tests.integration.conftest import wait_for
from tests.integration.test_pipeline import body, unique

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
    before = stack.column.versions()
    # Every canonical event so far, delivered again, in reverse order.
    for record in reversed(stack.read_topic(TOPIC_PUBLICATIONS)):
        stack.produce(TOPIC_PUBLICATIONS, record.value, key=record.key)
    assert_converged(stack)
    assert stack.column.versions() == before
    listed_once(stack, tag, ids)


def test_a_locked_store_is_waited_out_without_spinning(stack):
    if stack.backend != "sqlite":
        pytest.skip("locks the SQLite column store; PostgreSQL outages are a separate deployment concern")
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
    stack.produce(TOPIC_PUBLICATIONS, json.dumps({"specversion": "1.0", "type": "cn.gov.tongyuan.publication.published.v1", "id": "x", "source": "/publisher", "data": {"version": "one"}}).encode(), key=b"poison-2")
    stack.wait_caught_up(TOPIC_PUBLICATIONS)
    listed = stack.cli("dlq", "list", "--group", "tongyuan-indexer")
    assert "invalid cn.gov.tongyuan.publication.published.v1" in listed.output
    replay = stack.cli("dlq", "replay", "--group", "tongyuan-indexer")
    assert replay.exit_code == 1 and "still failing" in replay.output
    assert_converged(stack)
