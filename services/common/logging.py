"""structlog configuration: key/value lines on a terminal, JSON lines otherwise
(TONGYUAN_LOG_JSON=1/0 forces either).

Handlers bind `event_id` and `publication_id` so one publication can be followed through
every process.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor = structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]  # write and flush are all it uses
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(logging.getLevelName(level.upper()), logging.WARNING), stream=sys.stderr)
    drop_benign_faust_noise()


# What faust logs during normal operation that is not news here, each with why. Both follow
# from taking faust's Monitor out of the sensors (services.common.faust_patches.TongyuanApp):
# - "Stream has not started processing …": faust's consumer thread reads when a stream last took
#   an event from the Monitor, which no longer hears of any, so it reports every partition with
#   a backlog, a multi-line ERROR, however well its stream is doing. A stream that truly stops is
#   seen by Tongyuan's own means: the agent's death ends the worker, the heartbeat and the lag
#   (/healthz, Prometheus) show a consumer that does not keep up.
# - "Missing sensor state for rebalance …": the app keeps what its sensors return at the start
#   of a rebalance, an empty dict without the Monitor, and warns at its end that it is empty.
# Every other record of these loggers, faust's real errors included, passes.
BENIGN_FAUST_MESSAGES = (
    "Stream has not started processing",
    "Missing sensor state for rebalance",
)

# The loggers they come from: faust's, and those mode gives faust's subclasses (named after
# the module that defines them).
FAUST_LOGGERS = (
    "faust.transport.drivers.aiokafka",
    "faust.transport.consumer",
    "faust.app.base",
    "services.common.faust_patches",
)


class BenignFaustNoise(logging.Filter):
    """Drops the records of BENIGN_FAUST_MESSAGES, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        return not any(benign in message for benign in BENIGN_FAUST_MESSAGES)


_BENIGN_FAUST_NOISE = BenignFaustNoise()


def drop_benign_faust_noise() -> None:
    """On the loggers themselves, not on handlers: faust's worker replaces the root handlers
    when it starts. Idempotent."""
    for name in FAUST_LOGGERS:
        logger = logging.getLogger(name)
        if _BENIGN_FAUST_NOISE not in logger.filters:
            logger.addFilter(_BENIGN_FAUST_NOISE)


class _CurrentStderr:
    """Whatever sys.stderr is at the time of writing (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
