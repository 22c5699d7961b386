"""Prometheus metrics, the same names in every process (labels say which group/topic).

Consumers serve them on their own port (TONGYUAN_METRICS_PORT; `tongyuan up` gives each
child its own); the portal serves its registry at /metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_CONSUMED = Counter("tongyuan_events_consumed_total", "Events applied to a store", ["group", "topic"])
EVENTS_FAILED = Counter("tongyuan_events_dead_lettered_total", "Events sent to the group's DLQ", ["group", "topic"])
EVENTS_SKIPPED = Counter("tongyuan_events_skipped_total", "Events of types this consumer does not handle", ["group", "topic"])
STORE_RETRIES = Counter("tongyuan_store_retries_total", "Store writes retried after a transient error", ["group"])
CONSUMER_LAG = Gauge("tongyuan_consumer_lag", "Messages between the group's position and the partition's end", ["group", "topic", "partition"])
VISIBLE_LATENCY = Histogram(
    "tongyuan_publish_to_visible_seconds",
    "From the event's time (when the publisher accepted it) to the consumer's durable write",
    ["group"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
OUTBOX_BACKLOG = Gauge("tongyuan_outbox_backlog", "Outbox rows not yet acknowledged by the broker")
DLQ_SIZE = Gauge("tongyuan_dlq_size", "Messages in a group's dead-letter topic", ["group"])


def serve(port: int | None) -> None:
    """Expose this process's metrics on its own port (consumers have no web server)."""
    if port:
        start_http_server(port, addr="127.0.0.1")
