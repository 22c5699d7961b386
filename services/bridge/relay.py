"""The bridge's outbox relay: ship committed outbox rows to tongyuan.service-items.v1 with the
idempotent producer; mark them sent only after the broker acknowledged them.

A crash between the ack and the mark sends those rows again; the gate remembers inbound event
ids (and compares content), so a repeat creates no new version.
"""

from __future__ import annotations

import threading

import structlog

from contracts.events import CLOUDEVENTS_CONTENT_TYPE

from .store import BridgeStore

log = structlog.get_logger("tongyuan.bridge.relay")
HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]


class BridgeRelay:
    def __init__(self, store: BridgeStore, producer, *, batch_size: int = 500, ack_timeout: float = 30.0):
        self.store, self.producer = store, producer
        self.batch_size, self.ack_timeout = batch_size, ack_timeout
        self.wake = threading.Event()
        self.sent = 0

    def nudge(self) -> None:
        """New rows are committed: relay now instead of at the next tick."""
        self.wake.set()

    def relay_once(self) -> int:
        rows = self.store.unsent(self.batch_size)
        if not rows:
            return 0
        pending = [(row_id, self.producer.send(topic, key=key.encode(), value=payload.encode(), headers=HEADERS)) for row_id, topic, key, payload in rows]
        self.producer.flush(timeout=self.ack_timeout)
        acked: list[int] = []
        for row_id, future in pending:
            try:
                future.get(timeout=self.ack_timeout)
            except Exception as exc:  # stays unsent; nothing after it is marked, to keep order
                log.warning("bridge.relay_failed", outbox_id=row_id, error=repr(exc))
                break
            acked.append(row_id)
        if acked:
            self.store.mark_sent(acked)
            self.sent += len(acked)
        return len(acked)

    def run(self, stop: threading.Event, *, interval: float = 0.5, max_backoff: float = 5.0) -> None:
        backoff = 0.0
        while not stop.is_set():
            self.wake.clear()  # before reading: a nudge while we send is not lost
            try:
                sent = self.relay_once()
                backoff = 0.0
            except Exception as exc:  # broker or database away: wait, then try again
                sent = 0
                backoff = min(max_backoff, backoff * 2 or 0.25)
                log.warning("bridge.relay_error", error=repr(exc), retry_in=backoff)
            if sent >= self.batch_size:
                continue
            self.wake.wait(backoff or interval)


def start_relay(relay: BridgeRelay, *, interval: float = 0.5) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"interval": interval}, name="bridge-relay", daemon=True)
    thread.start()
    return thread, stop
