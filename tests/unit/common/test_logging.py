"""faust's known-benign records are dropped (services/common/logging.py); its real errors show.
The records are made by faust's own code paths, as a running worker makes them."""

from __future__ import annotations

import logging

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.common import faust_patches
from services.common.kafka import faust_app
from services.common.logging import FAUST_LOGGERS, drop_benign_faust_noise
from services.common.settings import Settings


@pytest.fixture
def app(tmp_path):
    drop_benign_faust_noise()
    drop_benign_faust_noise()  # idempotent
    app = faust_app("tongyuan-noise", Settings(kafka_bootstrap="127.0.0.1:9", var_dir=tmp_path))
    app.on_init_dependencies()  # takes faust's Monitor out, as a worker does
    return app


def _messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_the_loggers_of_fausts_classes_and_of_ours_are_all_filtered(app):
    for logger in (faust_aiokafka.AIOKafkaConsumerThread.logger, faust_patches.PromptConsumerThread.logger, faust_patches.TongyuanApp.logger):
        assert logger.name in FAUST_LOGGERS
        assert len(logger.filters) == 1


def test_a_rebalance_without_the_monitor_warns_nothing(app, caplog):
    caplog.set_level(logging.WARNING)
    app.on_rebalance_start()
    app.on_rebalance_return()
    app.on_rebalance_end()
    assert _messages(caplog) == []


def test_a_stream_with_a_backlog_is_not_reported_as_idle_but_a_stalled_commit_is(app, caplog):
    caplog.set_level(logging.WARNING)
    thread = app.consumer._new_consumer_thread()
    thread._log_slow_processing_stream(faust_aiokafka.SLOW_PROCESSING_STREAM_IDLE_SINCE_START, "tongyuan.publications.v1-0", "5 minutes ago")
    assert _messages(caplog) == []

    thread._log_slow_processing_commit(faust_aiokafka.SLOW_PROCESSING_NO_RECENT_COMMIT, "tongyuan.publications.v1-0", "5 minutes ago")
    thread.log.error("No active partitions for %s", "tongyuan.publications.v1-0")
    messages = _messages(caplog)
    assert len(messages) == 2
    assert "Has not committed 'tongyuan.publications.v1-0'" in messages[0] and [r.levelno for r in caplog.records] == [logging.ERROR] * 2
    assert "No active partitions" in messages[1]


def test_fausts_own_loggers_drop_the_benign_messages_and_pass_the_rest(app, caplog):
    caplog.set_level(logging.WARNING)
    logging.getLogger("faust.app.base").warning("[^Worker]: Missing sensor state for rebalance #%s", 3)
    logging.getLogger("faust.transport.drivers.aiokafka").error("Stream has not started processing %r (started %s).", "tp", "now")
    logging.getLogger("faust.transport.drivers.aiokafka").error("Got exception: %r", RuntimeError("real"))
    assert _messages(caplog) == ["Got exception: RuntimeError('real')"]
