"""The `tongyuan` command: run the whole stack (`up`), one process (`run`), and operations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from enum import Enum
from typing import Annotated

import typer

from services.common.logging import configure_logging
from services.common.settings import Settings, get_settings

cli = typer.Typer(help="同源 Tongyuan — publish once, appear everywhere.", no_args_is_help=True)
db_cli = typer.Typer(help="The publisher's database.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


class Process(str, Enum):
    publisher = "publisher"
    column = "column"
    indexer = "indexer"
    portal = "portal"


def _settings() -> Settings:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names the bad variable
        typer.echo(f"bad configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_json)
    return settings


@cli.command()
def run(process: Process) -> None:
    """Run one process of the stack in the foreground."""
    settings = _settings()
    if process is Process.portal:
        import uvicorn

        from services.portal.app import create_app

        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
        return
    from services.common.faust_consumer import run_worker

    if process is Process.publisher:
        from services.publisher.app import create_app as create_faust_app
    elif process is Process.column:
        from services.column.app import create_consumer as create_faust_app
    else:
        from services.indexer.app import create_consumer as create_faust_app
    sys.argv = [sys.argv[0]]  # faust's worker parses argv itself
    run_worker(create_faust_app(settings), loglevel="warn")


@cli.command()
def up() -> None:
    """Start the broker (unless TONGYUAN_KAFKA_BOOTSTRAP is set), publisher, consumers and portal."""
    settings = _settings()
    from services.common.broker import EmbeddedBroker, die_with_parent
    from services.common.kafka import ensure_topics, wait_for_broker
    from services.publisher.app import bootstrap

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    broker = None
    if not settings.kafka_bootstrap:
        broker = EmbeddedBroker(port=settings.embedded_broker_port, log_path=settings.var_dir / "broker.log").start()
        env["TONGYUAN_KAFKA_BOOTSTRAP"] = broker.bootstrap
        typer.echo(f"embedded broker (Tansu, memory storage) on {broker.bootstrap}")
    bootstrap_servers = env["TONGYUAN_KAFKA_BOOTSTRAP"]
    wait_for_broker(bootstrap_servers)
    ensure_topics(bootstrap_servers, settings.topic_partitions)
    bootstrap(settings)  # tables, the standard catalog and the Changsha regions
    children: dict[Process, subprocess.Popen] = {}

    def start(process: Process) -> None:
        children[process] = subprocess.Popen([sys.executable, "-m", "services.cli", "run", process.value], env=env, preexec_fn=die_with_parent)

    for process in Process:
        start(process)
    typer.echo(f"portal: http://{settings.host}:{settings.port}/  (Ctrl-C stops everything)")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    restarts: dict[Process, float] = {}
    try:
        while not stopping:
            time.sleep(0.5)
            for process, child in list(children.items()):
                if child.poll() is not None and not stopping:
                    typer.echo(f"{process.value} exited with {child.returncode}; restarting", err=True)
                    time.sleep(min(10.0, restarts.get(process, 0.5)))
                    restarts[process] = min(10.0, restarts.get(process, 0.5) * 2)
                    start(process)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if broker:
            broker.stop()
        typer.echo("stopped")


@db_cli.command("init")
def db_init() -> None:
    """Create the publisher's tables and load the standard catalog and the Changsha regions."""
    from services.publisher.app import bootstrap

    publisher = bootstrap(_settings())
    current = publisher.catalogs()
    typer.echo(f"catalogs in force: {', '.join(c.key for c in current.values())}; {len(publisher.regions())} regions")


@cli.command()
def republish(
    only: Annotated[str | None, typer.Option(help="one publication id")] = None,
) -> None:
    """Put every publication's current state in the outbox again, to rebuild downstream stores.

    Versions are unchanged, so stores that already hold a publication ignore it.
    """
    from services.publisher.app import bootstrap
    from services.publisher.handlers import republish_all

    count = republish_all(bootstrap(_settings()), only=only)
    typer.echo(f"queued {count} events; the relay publishes them")


@cli.command()
def schemas(check: Annotated[bool, typer.Option(help="fail if contracts/schemas is out of date")] = False) -> None:
    """Generate the JSON Schemas of the event types into contracts/schemas/."""
    from contracts import schemas as generator

    if check:
        out_of_date = generator.stale()
        if out_of_date:
            typer.echo(f"out of date: {', '.join(out_of_date)} (run `make schemas`)", err=True)
            raise typer.Exit(1)
        typer.echo("schemas are current")
        return
    for path in generator.write():
        typer.echo(f"wrote {path}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
