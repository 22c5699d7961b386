"""`tongyuan up` (the whole stack on one machine) and `tongyuan run` (one process of it).

`up` starts the embedded broker unless TONGYUAN_KAFKA_BOOTSTRAP names one (the production
profile, deploy/local/prod, names the Apache Kafka it started), then the publisher,
the consumers and the portal as child processes, restarts whichever exits, and writes the
stack's state file (var_dir/stack.json) so that commands in another shell find its broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import typer

from services.common.runtime import settle_garbage_collector
from services.common.settings import Settings
from services.common.terminal import commands, load_settings

stack_cli = commands()
Echo = Callable[..., None]


class Process(str, Enum):
    publisher = "publisher"
    column = "column"
    indexer = "indexer"
    embed = "embed"
    supervision = "supervision"
    portal = "portal"


# CPU weights (nice values) of the workers `up` starts on one machine. Under contention Linux
# gives each runnable process an equal share, but per event the indexer does 2–3× the work of
# each other consumer, and in a migration it ran on alone while a core idled. The others run at
# a lower weight so each consumer takes CPU about in proportion to its work; the embed
# consumer's work per event grows with its store, hence one level less for it. Only contention
# is affected: an idle machine runs every worker at once.
WORKER_NICENESS = {"column": 6, "embed": 5, "supervision": 6}


@stack_cli.command()
def run(process: Process) -> None:
    """Run one process of the stack in the foreground."""
    settings = load_settings()
    if process is Process.portal:
        _serve_portal(settings)
        return
    from services.common import metrics
    from services.common.faust_consumer import run_worker, use_fast_event_loop

    use_fast_event_loop()
    metrics.serve(settings.metrics_port)
    from services.bootstrap import Composition, for_consumers

    create = _faust_app_factory(process)
    sys.argv = [sys.argv[0]]  # faust's worker parses argv itself
    # The publisher answers clerks' requests: its store keeps the default page cache.
    app = create(Composition(settings) if process is Process.publisher else for_consumers(settings))
    settle_garbage_collector()
    run_worker(app, loglevel="warn")


def _serve_portal(settings: Settings) -> None:
    import uvicorn

    from services.portal.app import create_app
    from services.portal.limits import head_deadline_protocol

    # The collector is left as CPython sets it here (see services/common/runtime.py).
    protocol = head_deadline_protocol(settings.portal_header_timeout)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", http=protocol)


def _faust_app_factory(process: Process) -> Callable[[Any], Any]:
    if process is Process.publisher:
        from services.publisher.app import create_app

        return create_app
    if process is Process.column:
        from services.column.app import create_consumer as column

        return column
    if process is Process.embed:
        from services.embed.app import create_consumer as embed

        return embed
    if process is Process.supervision:
        from services.supervision.app import create_consumer as supervision

        return supervision
    from services.indexer.app import create_consumer as indexer

    return indexer


class Readiness:
    """Tells the person who ran `up` when every part answers /healthz — the portal is
    listening well before the consumers have joined their groups. After a minute it says once
    which parts are still down, and keeps watching: a loaded machine is slow, not broken."""

    PATIENCE = 60.0

    def __init__(self, url: str) -> None:
        self.url, self.started, self.last_check, self.done, self.warned = url, time.monotonic(), 0.0, False, False

    def report(self, echo: Echo) -> None:
        now = time.monotonic()
        if self.done or now - self.last_check < 1.0:
            return
        self.last_check = now
        status, body = self._healthz()
        if status == 200:
            echo(f"ready: every part is up ({now - self.started:.0f} s)")
            self.done = True
        elif now - self.started > self.PATIENCE and not self.warned:
            echo(f"not ready after {self.PATIENCE:.0f} s; down: {', '.join(self._down(body))} (see {self.url} and var/)", err=True)
            self.warned = True

    def _healthz(self) -> tuple[int | None, bytes]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return None, b""  # the portal is not listening yet

    @staticmethod
    def _down(body: bytes) -> list[str]:
        import json

        try:
            return sorted(name for name, check in json.loads(body)["checks"].items() if not check["up"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return ["portal"]


class BrokerKeeper:
    """Restarts the embedded broker, on the same port, when it exits. It kept its log in
    memory, so it comes back with no topics and no committed offsets: the topics are created
    again and the publisher is told to send its outbox again — what came after the last clean
    stop's watermark (the relay would notice on its own, by the topics' new ids; this says so at
    once, and /healthz shows it pending).
    The consumers notice the new log themselves and exit, to be started again here."""

    def __init__(self, broker: Any, settings: Settings, publisher: Any, *, max_backoff: float = 10.0) -> None:
        self.broker, self.settings, self.publisher = broker, settings, publisher
        self.restarts, self.next_try, self.backoff, self.max_backoff = 0, 0.0, 0.5, max_backoff

    def keep(self, echo: Echo) -> bool:
        """Restart the broker if it is down; True when it restarted it now."""
        from services.common.kafka import ensure_topics

        process = self.broker.process
        if process is None or process.poll() is None or time.monotonic() < self.next_try:
            return False
        echo(
            f"the embedded broker exited with {process.returncode}; restarting it on {self.broker.bootstrap} "
            "(its log is lost: the publisher sends again every event since the last clean stop)",
            err=True,
        )
        try:
            self.broker.start()
            ensure_topics(self.broker.bootstrap, self.settings.topic_partitions)
            self.publisher.request_reemission()
        except Exception as exc:  # the port is still taken, or the database is away: try again
            echo(f"the embedded broker did not come back: {exc}; trying again in {self.backoff:.0f} s", err=True)
            self.next_try, self.backoff = time.monotonic() + self.backoff, min(self.max_backoff, self.backoff * 2)
            return False
        self.restarts, self.backoff = self.restarts + 1, 0.5
        return True


class Children:
    """The stack's processes: each started with its metrics port and CPU weight, dying with
    `up`, started again (with a growing pause) when it exits."""

    def __init__(self, env: dict[str, str]) -> None:
        from services.common.broker import free_port

        self.env = env
        self.running: dict[Process, subprocess.Popen[bytes]] = {}
        self.metrics_ports = {process: free_port() for process in Process if process is not Process.portal}
        self.pauses: dict[Process, float] = {}

    def start(self, process: Process) -> None:
        from services.common.broker import die_with_parent

        env = {**self.env, "TONGYUAN_METRICS_PORT": str(self.metrics_ports[process])} if process in self.metrics_ports else self.env
        niceness = WORKER_NICENESS.get(process.value, 0)

        def prepare() -> None:
            die_with_parent()
            os.nice(niceness)

        self.running[process] = subprocess.Popen([sys.executable, "-m", "services.cli", "run", process.value], env=env, preexec_fn=prepare)

    def restart_exited(self, echo: Echo, stopping: Callable[[], bool]) -> None:
        for process, child in list(self.running.items()):
            if child.poll() is not None and not stopping():
                echo(f"{process.value} exited with {child.returncode}; restarting", err=True)
                time.sleep(min(10.0, self.pauses.get(process, 0.5)))
                self.pauses[process] = min(10.0, self.pauses.get(process, 0.5) * 2)
                self.start(process)

    def stop(self, grace: float = 20.0) -> None:
        for child in self.running.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for child in self.running.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def record_applied_watermark(publisher: Any, bootstrap: str) -> None:
    """The embedded broker's log is about to be lost: note how far every consumer group applied
    the outbox, so that the next start sends the new log only what comes after."""
    from services.common.kafka import CONSUMER_GROUPS
    from services.publisher.relay.broker_log import record_applied_watermark as record

    try:
        through, why = record(publisher, bootstrap, CONSUMER_GROUPS)
    except Exception as exc:  # the broker or the database is away: the next start sends more, nothing is lost
        typer.echo(f"could not tell how far the consumers got ({exc!r}); the next start sends them every event since the last clean stop", err=True)
        return
    if through is None:
        typer.echo(f"the next start sends the consumers every event since the last clean stop: {why}", err=True)
    else:
        typer.echo(f"every consumer applied the outbox through row {through}; the next start sends only what comes after")


@stack_cli.command()
def up() -> None:
    """Start the broker (unless TONGYUAN_KAFKA_BOOTSTRAP is set), publisher, consumers and portal."""
    from services.bootstrap import Composition
    from services.common.kafka import ensure_topics, wait_for_broker
    from services.common.schema import upgrade_all
    from services.common.stack_state import StackState, remove_state, write_state

    settings = load_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade_all(settings)  # every store's schema at head before any process opens it
    parts = Composition(settings)
    _ = parts.verifier  # the local signing key, before the portal and `tongyuan token` need it
    env = os.environ.copy()
    broker = _embedded_broker(settings, env)
    children, stopping = Children(env), _StopFlag()
    publisher = None
    try:
        bootstrap = env["TONGYUAN_KAFKA_BOOTSTRAP"]
        wait_for_broker(bootstrap)
        ensure_topics(bootstrap, settings.topic_partitions)
        publisher = parts.publisher  # tables, the standard catalog and the Changsha regions
        portal = f"http://{settings.host}:{settings.port}/"
        write_state(settings.var_dir, StackState(pid=os.getpid(), kafka_bootstrap=bootstrap, portal=portal))
        for process in Process:
            children.start(process)
        typer.echo(f"portal: {portal}  (Ctrl-C stops everything)")
        ports = ", ".join(f"{p.value} :{port}" for p, port in children.metrics_ports.items())
        typer.echo(f"metrics: {ports}, portal {settings.port}/metrics")
        keeper = BrokerKeeper(broker, settings, publisher) if broker else None
        _watch(children, keeper, Readiness(f"{portal}healthz"), stopping)
    finally:
        children.stop()
        if broker and stopping.set and publisher is not None:
            record_applied_watermark(publisher, broker.bootstrap)
        if broker:
            broker.stop()
        remove_state(settings.var_dir, os.getpid())
        typer.echo("stopped")


class _StopFlag:
    """Set by SIGINT or SIGTERM: `up` stops everything it started, cleanly."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)

    def _stop(self, *_: object) -> None:
        self.set = True


def _embedded_broker(settings: Settings, env: dict[str, str]) -> Any:
    """The embedded Tansu broker, started, when no broker is configured (its address goes into
    the children's environment); None when TONGYUAN_KAFKA_BOOTSTRAP names one."""
    if settings.kafka_bootstrap:
        typer.echo(f"broker: {settings.kafka_bootstrap} (TONGYUAN_KAFKA_BOOTSTRAP; its log is the broker's own)")
        return None
    from services.common.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=settings.embedded_broker_port, log_path=settings.var_dir / "broker.log").start()
    env["TONGYUAN_KAFKA_BOOTSTRAP"] = broker.bootstrap
    typer.echo(f"embedded broker (Tansu, memory storage) on {broker.bootstrap}")
    return broker


def _watch(children: Children, keeper: BrokerKeeper | None, readiness: Readiness, stopping: _StopFlag) -> None:
    while not stopping.set:
        time.sleep(0.5)
        readiness.report(typer.echo)
        if keeper and not stopping.set:
            keeper.keep(typer.echo)
        children.restart_exited(typer.echo, lambda: stopping.set)
