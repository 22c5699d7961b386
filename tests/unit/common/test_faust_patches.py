"""services/common/faust_patches.py overrides private parts of faust and aiokafka. These tests
fail when an upgrade changes what a correction relies on: the signature it overrides, the
library behaviour it works around, or whether it still takes effect."""

from __future__ import annotations

import asyncio
import inspect
import re

import aiokafka
import faust
import faust.transport.consumer as faust_consumer
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.common import faust_patches
from services.common.broker import LogGuard
from services.common.kafka import faust_app
from services.common.settings import Settings


def _parameters(function) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: what an override must match (annotations may be strings)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _source(function) -> str:
    return re.sub(r"\s+", " ", inspect.getsource(function))


OVERRIDES = [
    (faust_aiokafka.AIOKafkaConsumerThread, faust_patches.PromptConsumerThread, "_create_worker_consumer", ["self", "transport"]),
    (faust_aiokafka.Consumer, faust_patches.PromptConsumer, "_new_consumer_thread", ["self"]),
    (faust_aiokafka.Consumer, faust_patches.PromptConsumer, "on_partitions_assigned", ["self", "assigned", "generation_id"]),
    (faust_aiokafka.Consumer, faust_patches.PromptConsumer, "_commit", ["self", "offsets"]),
    (faust_aiokafka.Consumer, faust_patches.PromptConsumer, "_drain_messages", ["self", "fetcher"]),
    (faust.App, faust_patches.TongyuanApp, "_new_transport", ["self"]),
    (faust.App, faust_patches.TongyuanApp, "on_init_dependencies", ["self"]),
]


@pytest.mark.parametrize(("library", "ours", "method", "names"), OVERRIDES, ids=[f"{o.__name__}.{m}" for _, o, m, _ in OVERRIDES])
def test_every_overridden_method_still_exists_with_the_signature_we_override(library, ours, method, names):
    original = getattr(library, method)
    assert [name for name, _, _ in _parameters(original)] == names
    assert _parameters(getattr(ours, method)) == _parameters(original)
    assert inspect.iscoroutinefunction(getattr(ours, method)) == inspect.iscoroutinefunction(original)


def test_on_partitions_assigned_still_defaults_the_generation_to_zero():
    assert inspect.signature(faust_aiokafka.Consumer.on_partitions_assigned).parameters["generation_id"].default == 0


@pytest.fixture
def app(tmp_path):
    return faust_app("tongyuan-patches", Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path))


# --- the fetch wait -------------------------------------------------------------------------


def test_faust_still_hard_codes_a_fetch_wait_of_one_and_a_half_seconds():
    assert "fetch_max_wait_ms=1500" in _source(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)


def test_aiokafka_still_starts_its_fetcher_with_the_consumers_private_fetch_wait():
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in _source(aiokafka.AIOKafkaConsumer.__init__)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in _source(aiokafka.AIOKafkaConsumer.start)


def test_the_consumer_thread_builds_an_aiokafka_consumer_that_waits_a_tenth_of_a_second(app):
    async def build():
        thread = app.consumer._new_consumer_thread()
        assert isinstance(thread, faust_patches.PromptConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == faust_patches.FETCH_MAX_WAIT_MS == 100


def test_against_apache_kafka_the_consumer_keeps_fausts_fetch_wait(app, monkeypatch):
    """Kafka answers a fetch as soon as a record arrives: the short wait is Tansu's alone."""
    monkeypatch.setattr(faust_patches, "answers_fetches_late", lambda bootstrap: False)

    async def build():
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == 1500


def test_a_broker_that_cannot_be_asked_gets_the_short_wait():
    assert faust_patches.answers_fetches_late("127.0.0.1:9")


# --- the transport, the consumer and the fetch loop ------------------------------------------


def test_apps_built_by_faust_app_have_the_corrected_transport_and_consumer(app):
    assert isinstance(app, faust_patches.TongyuanApp)
    assert isinstance(app.transport, faust_patches.PromptTransport)
    assert isinstance(app.consumer, faust_patches.PromptConsumer)


def test_the_consumer_still_has_the_private_state_our_fetch_loop_and_lag_read(app):
    consumer = app.consumer
    for name in ("_read_offset", "_committed_offset", "_commit_every", "_n_acked", "_add_gap", "callback", "suspend_flow", "diag", "getmany", "wait_first"):
        assert hasattr(consumer, name), name
    assert consumer._commit_every == app.conf.broker_commit_every
    assert consumer._read_offset["never-read"] is None  # a defaultdict of None: our _deliver relies on it
    assert hasattr(faust_consumer.Fetcher(app), "_stopped")  # _drain_messages stops on fetcher._stopped


def test_fausts_own_fetch_loop_still_guards_every_message_which_ours_guards_per_batch():
    source = _source(faust_consumer.Consumer._drain_messages)
    assert "await self.wait_first( callback(message), self.suspend_flow.wait() )" in source
    assert "if r_offset is None or offset >= r_offset:" in source  # the delivery rule _deliver keeps
    assert "if gap > 1 and r_offset:" in source


def test_a_commit_is_refused_while_the_broker_cannot_say_whether_it_kept_its_log(app, monkeypatch):
    committed = []

    async def fausts_commit(self, offsets):
        committed.append(offsets)
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", fausts_commit)
    consumer = app.consumer
    consumer._log_guard = LogGuard()
    consumer._log_guard.remember({"t": "id-1"})

    def unreachable(topics):
        raise ConnectionError("no broker")

    monkeypatch.setattr(consumer, "_topic_ids", unreachable)
    offsets = {faust.types.TP("t", 0): 5}
    assert asyncio.run(consumer._commit(offsets)) is False and committed == []

    monkeypatch.setattr(consumer, "_topic_ids", lambda topics: {"t": "id-1"})
    assert asyncio.run(consumer._commit(offsets)) is True and committed == [offsets]


# --- the commit tables ------------------------------------------------------------------------


def test_fausts_consumer_module_still_uses_its_terminal_only_for_logtable():
    source = inspect.getsource(faust_consumer)
    assert re.findall(r"\bterminal\.(\w+)", source) == ["logtable"]
    assert "from faust.utils import terminal" in source


def test_apply_installs_the_lazy_commit_table_and_may_be_called_again(app):
    faust_patches.apply()
    faust_patches.apply()
    assert faust_consumer.terminal is faust_patches.CommitTables
    table = faust_consumer.terminal.logtable([("t-0", "42")], title="Commit Offsets", headers=["TP", "Offset"])
    assert isinstance(table, faust_patches.OffsetTable)
    assert "t-0" in str(table) and "42" in str(table)


# --- the monitor ------------------------------------------------------------------------------


def test_faust_still_adds_its_monitor_to_the_sensors_and_our_app_takes_it_out(tmp_path, app):
    plain = faust.App("tongyuan-plain", broker="kafka://127.0.0.1:9", datadir=str(tmp_path / "plain"), web_enabled=False)
    plain.on_init_dependencies()
    assert plain.monitor in list(plain.sensors)

    app.on_init_dependencies()
    assert app.monitor not in list(app.sensors)
