"""The broker goes away while clerks publish, revise and withdraw. Nothing is lost, nothing
duplicated, and every store verifies. Last in the suite: it empties the shared broker.

The lost log is Tansu's (the embedded broker, memory storage: it comes back with no topics, no
offsets, none of the events it had acknowledged), so the stack on Apache Kafka (the PostgreSQL
run) checks only that the outbox holds the events while the broker is down and that Kafka, whose
log is on disk, sends no worker back to the start. `tongyuan up`'s kill -9 test starts the
embedded broker itself: it is Tansu's alone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from contracts.identity import Principal
from services.common.auth import build_verifier
from services.common.broker import free_port
from services.common.settings import Settings
from services.publisher.app import bootstrap
from tests.integration.conftest import ROOT, wait_for
from tests.integration.test_faults import listed_once, publish_burst
from tests.integration.test_pipeline import body, unique
from tests.processes import interrupt


class Supervisor:
    """What `tongyuan up` does for the stack's workers: start again one that exited (a worker
    exits when its broker lost its log)."""

    def __init__(self, stack) -> None:
        self.stack, self.restarted, self._stop = stack, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, process in list(self.stack.processes.items()):
                if process.poll() is not None:
                    self.restarted.append((name, process.returncode))
                    self.stack.start(name)


def test_the_outbox_holds_events_while_the_broker_is_down(stack):
    tag = unique("broker")
    before = publish_burst(stack, tag, 20)
    wait_for(lambda: stack.search(q=tag)["total"] == len(before), timeout=60)
    with Supervisor(stack) as supervisor:
        stack.broker.stop()
        during = publish_burst(stack, tag, 30)  # the gate keeps accepting: the outbox holds them
        publisher = bootstrap(stack.settings, load_reference=False)
        time.sleep(1)
        assert publisher.outbox_backlog() >= len(during)
        stack.broker.start()  # the same port; Tansu (memory storage) with no topics, no offsets
        everything = before + during
        wait_for(lambda: stack.search(q=tag, per_page=100)["total"] == len(everything), timeout=180, what="the events held in the outbox to reach search")
        wait_for(lambda: not publisher.reemission_pending(), timeout=120, what="the re-emission to be acknowledged")
        wait_for(lambda: len([i for i in stack.column.listing("430102001", per_page=1000)[1] if tag in i.title]) == len(everything), timeout=120)
        wait_for(lambda: stack.cli("verify").exit_code == 0, timeout=180, interval=2, what="every store to verify")
    listed_once(stack, tag, everything)
    if stack.broker_kind == "kafka":
        # Kafka kept its log and the topics their ids: no worker had cause to start over.
        assert supervisor.restarted == [], supervisor.restarted
        return
    # Every worker that had read the old log started again on the new one.
    assert {name for name, code in supervisor.restarted} >= {"column", "indexer", "embed", "supervision"}, supervisor.restarted
    assert all(code == 75 for _, code in supervisor.restarted), supervisor.restarted


@dataclass
class Load:
    """Clerks at work: publications, revisions of some, withdrawals of others, one at a time."""

    client: httpx.Client
    tag: str
    published: list[str] = field(default_factory=list)
    revised: int = 0
    withdrawn: int = 0
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                receipt = self.client.post("/v1/publications", json=body(f"断电演练 {self.tag} 第{n}条"))
                if receipt.status_code != 202:
                    self.refused += 1
                    continue
                pid = receipt.json()["publication_id"]
                self.published.append(pid)
                if n % 3 == 0:
                    revision = {**body(f"断电演练 {self.tag} 第{n}条（修订）"), "version": 1}
                    self.revised += self.client.post(f"/v1/publications/{pid}", json=revision).status_code == 202
                if n % 5 == 0:
                    self.withdrawn += (
                        self.client.post(f"/v1/publications/{pid}/withdraw", json={"type": "withdrawn", "explanation": "演练撤回"}).status_code == 202
                    )
            except httpx.HTTPError:
                self.refused += 1
            time.sleep(0.05)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.timeout(900)
def test_up_restarts_a_broker_killed_under_load_and_nothing_is_lost(tmp_path):
    """`tongyuan up` as a person runs it; the broker is killed with -9 while clerks work."""
    var = tmp_path / "var"
    portal_port, broker_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")},
        "TONGYUAN_VAR_DIR": str(var),
        "TONGYUAN_PORT": str(portal_port),
        "TONGYUAN_EMBEDDED_BROKER_PORT": str(broker_port),
        "TONGYUAN_HEARTBEAT_INTERVAL": "1",
        "TONGYUAN_LOG_LEVEL": "info",
        "TONGYUAN_STORE_RETRY_MAX_SECONDS": "2",
    }
    output = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    settings = Settings(var_dir=var, kafka_bootstrap=f"127.0.0.1:{broker_port}", heartbeat_interval=1)
    base = f"http://127.0.0.1:{portal_port}"
    try:
        wait_for(lambda: _answers(f"{base}/healthz") == 200, timeout=180, interval=1, what="tongyuan up to be ready")
        _, local = build_verifier(settings)
        token = local.mint(Principal(user="office", roles=("admin",)), audience=settings.auth_audience)
        load = Load(httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30), unique("kill9"))
        clerk = threading.Thread(target=load.run, daemon=True)
        clerk.start()
        wait_for(lambda: len(load.published) >= 40, timeout=120, what="the load to get going")
        # Two consumers fall behind (paused), so the broker holds events only it has: acked
        # to the relay, not yet read by them. Then it dies.
        behind = [pid for pid in _children(up.pid) if _cmdline(pid).rstrip().endswith(("run embed", "run supervision"))]
        assert len(behind) == 2
        for pid in behind:
            os.kill(pid, signal.SIGSTOP)
        paused_at = len(load.published)
        wait_for(lambda: len(load.published) >= paused_at + 20, timeout=120, what="publications while two consumers are behind")
        time.sleep(1)  # the relay has them acked
        (broker,) = [pid for pid in _children(up.pid) if " broker " in _cmdline(pid)]
        os.kill(broker, signal.SIGKILL)
        killed_at = len(load.published)
        for pid in behind:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: len(load.published) >= killed_at + 40, timeout=180, what="the load to go on after the kill")
        load.stop.set()
        clerk.join(30)

        publisher = bootstrap(settings, load_reference=False)
        wait_for(
            lambda: publisher.outbox_backlog() == 0 and not publisher.reemission_pending(), timeout=300, interval=1, what="the re-emission to be acknowledged"
        )
        wait_for(lambda: _answers(f"{base}/healthz") == 200, timeout=300, interval=1, what="every part healthy again")
        verified = _verify(env)
        deadline = time.monotonic() + 120
        while verified.returncode != 0 and time.monotonic() < deadline:  # the consumers are still catching up
            time.sleep(3)
            verified = _verify(env)
    finally:
        interrupt([up], grace=60)
        output.close()
    # The workers' lines reach the log when they stop (their stdout is a file, buffered).
    said = (tmp_path / "up.log").read_text(errors="replace")
    reemitted = [int(as_json or as_text) for as_json, as_text in re.findall(r"\"reemitting\": (\d+)|reemitting=(\d+)", said)]
    print(
        f"\n[broker kill -9 under load] published {len(load.published)} ({killed_at} before the kill), revised {load.revised}, "
        f"withdrawn {load.withdrawn}, refused {load.refused}; re-emitted {sum(reemitted)} rows in {len(reemitted)} re-emission(s); "
        f"workers restarted on the new log: {said.count('exited with 75')}; verify: {verified.stdout.strip().splitlines()[-1]} "
        f"({', '.join(f'{store} {n}' for store, n in Counter(line.split(chr(9))[0] for line in verified.stdout.splitlines() if chr(9) in line).items()) or 'every store equal'})"
    )
    assert "the embedded broker exited with -9; restarting it" in said, said[-3000:]
    assert verified.returncode == 0 and "0 difference(s)" in verified.stdout, verified.stdout[-3000:]
    assert reemitted and sum(reemitted) >= killed_at, said[-5000:]
    assert said.count("exited with 75") >= 4, "every consumer started again on the new log"
    assert load.refused == 0, "the gate does not need the broker"


def _answers(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _verify(env: dict) -> subprocess.CompletedProcess:
    broker_port = env["TONGYUAN_EMBEDDED_BROKER_PORT"]
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "verify"],
        env={**env, "TONGYUAN_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
