"""An agent that dies anyway must not leave a worker that beats "alive, lag 0" over offsets
frozen on its unacked batch: it stops beating, it takes the worker down (so it is restarted
from the last committed offset), and lag counts from what the group committed."""

import asyncio
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from faust.types import TP

from services.common import faust_consumer
from services.common.consuming import ConsumerStats
from services.common.faust_consumer import beat_unless_dead, consumer_lag, create_consumer
from services.common.projection import InThread
from services.common.settings import Settings
from services.portal import health
from tests.factories import published
from tests.wired import mounted


def test_an_agent_that_dies_stops_the_heartbeat_and_takes_its_worker_down(tmp_path, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(faust_consumer, "process_batch", broken)
    beats: list = []
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path, consumer_batch_within=0.01)
    app = create_consumer("tongyuan-column", InThread(lambda events: None), settings, heartbeat=beats.append)
    crashed: list = []

    async def crash(exc):
        crashed.append(exc)

    monkeypatch.setattr(app, "crash", crash)
    stats = app.tongyuan_stats

    async def feed():
        async with app.agents["tongyuan-column.apply"].test_context() as running:
            await running.put(published().model_dump_json().encode())
            for _ in range(200):
                if stats.failure:
                    break
                await asyncio.sleep(0.01)

    try:
        asyncio.run(feed())
    except RuntimeError:
        pass  # faust's test context re-raises the agent's crash
    assert stats.failure and "a bug nobody foresaw" in stats.failure
    assert [str(exc) for exc in crashed] == ["a bug nobody foresaw"], "the worker exits, to be started again"
    asyncio.run(beat_unless_dead(beats.append, stats))
    assert beats == [], "a worker whose agent died does not say it is alive"


def test_a_live_worker_beats():
    beats: list = []
    asyncio.run(beat_unless_dead(beats.append, ConsumerStats()))
    assert len(beats) == 1


class FakeConsumer:
    def __init__(self, highwater: int, position: int, committed: int | None):
        self.tp = TP("tongyuan.publications.v1", 0)
        self._highwater, self._position = highwater, position
        self._committed_offset = {self.tp: committed} if committed is not None else {}

    def assignment(self):
        return {self.tp}

    async def position(self, tp):
        return self._position

    def highwater(self, tp):
        return self._highwater


@pytest.mark.parametrize(("committed", "lag"), [(40, 60), (100, 0), (None, 100)])
def test_lag_counts_from_the_committed_offset_not_the_read_position(committed, lag):
    """A batch fetched and never acked (an agent died on it) is read, not applied: it is lag."""
    app = SimpleNamespace(consumer=FakeConsumer(highwater=100, position=100, committed=committed))
    assert asyncio.run(consumer_lag(app, "tongyuan-column")) == lag


def test_a_consumer_without_a_live_worker_makes_healthz_and_readyz_say_so():
    checks = health.HealthChecks([health.Check("consumer:tongyuan-column", health.consumer_probe(lambda: []))], max_lag=10)
    app = mounted(health.router, health_checks=checks)
    client = TestClient(app)
    assert client.get("/healthz").status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["consumer:tongyuan-column"]["up"] is False
