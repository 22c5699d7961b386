"""Every consumer's heartbeat says how far behind it is, so /readyz can hold a lagging one back."""

import importlib

import pytest

from services.bootstrap import for_consumers
from services.common.consuming import ConsumerStats
from services.common.settings import Settings


@pytest.mark.parametrize("service", ["column", "indexer", "embed", "supervision"])
def test_a_consumers_heartbeat_carries_its_lag(service, tmp_path, monkeypatch):
    module = importlib.import_module(f"services.{service}.app")
    captured = {}

    def capture(group, projection, settings, **options):
        captured.update(options)
        return None

    monkeypatch.setattr(module, "consumer_app", capture)
    settings = Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path)
    parts = for_consumers(settings)
    module.create_consumer(parts)
    captured["heartbeat"](ConsumerStats(applied=3, lag=12_345))
    if service == "indexer":
        workers = module.heartbeat_status(settings, within=60)
    else:
        workers = module.heartbeat_status(getattr(parts, f"{service}_store"), within=60)
    assert [w["lag"] for w in workers] == [12_345]
