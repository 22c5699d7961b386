"""`tongyuan bridge …`: the platform simulator, the poller, reconciliation, the unmapped report
and the mapping workbook."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

bridge_cli = typer.Typer(help="The government-service platform bridge (政务服务平台 ↔ 专栏).", no_args_is_help=True)
mapping_cli = typer.Typer(help="Service item → catalog mapping: rules, overrides, area codes (xlsx).", no_args_is_help=True)
bridge_cli.add_typer(mapping_cli, name="mapping")


def _settings():
    from services.common.logging import configure_logging
    from services.common.settings import get_settings

    from .app import BridgeSettings

    try:
        settings, bridge = get_settings(), BridgeSettings()
    except Exception as exc:  # pydantic names the bad variable
        typer.echo(f"bad configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_json)
    return settings, bridge


@bridge_cli.command()
def simulate(
    host: str = "127.0.0.1",
    port: int = 8700,
    items: Annotated[int, typer.Option(help="how many service items to seed")] = 600,
    seed: int = 20260302,
    faults: Annotated[str, typer.Option(help='e.g. "timeout=0.05,error=0.05" or "all=0.03"')] = "",
    hang: Annotated[float, typer.Option(help="seconds a timed-out request hangs")] = 5.0,
    webhook_url: Annotated[str | None, typer.Option(help="where to send signed change notices")] = None,
    webhook_secret: Annotated[str | None, typer.Option(envvar="TONGYUAN_BRIDGE_WEBHOOK_SECRET")] = None,
) -> None:
    """Run the platform simulator (its own HTTP app)."""
    import uvicorn

    from .simulator import Faults, Platform, WebhookSender, create_app, seed_items

    chosen = Faults.parse(faults) if faults else Faults()
    chosen.hang_seconds = hang
    platform = Platform(seed_items(items, seed=seed, base_url=f"http://{host}:{port}"), faults=chosen, seed=seed)
    if webhook_url:
        if not webhook_secret:
            typer.echo("--webhook-url needs --webhook-secret (or TONGYUAN_BRIDGE_WEBHOOK_SECRET)", err=True)
            raise typer.Exit(2)
        platform.webhooks = WebhookSender(webhook_url, webhook_secret)
    typer.echo(f"simulated platform with {len(platform.items)} items on http://{host}:{port}/api/v1/items (control: /_sim/docs)")
    uvicorn.run(create_app(platform), host=host, port=port, log_level="warning")


@bridge_cli.command()
def poll(
    once: Annotated[bool, typer.Option(help="one poll round, then exit")] = False,
    webhook_port: Annotated[int | None, typer.Option(help="also serve /bridge/webhooks/<platform> on this port")] = None,
    relay: Annotated[bool, typer.Option(help="relay the outbox to the broker from this process")] = True,
    rejections: Annotated[bool, typer.Option(help="act on the gate's refusals of this bridge's events (tongyuan.rejections.v1) from this process")] = True,
) -> None:
    """Poll the platform every TONGYUAN_BRIDGE_POLL_INTERVAL seconds (5 by default), reconcile
    every TONGYUAN_BRIDGE_RECONCILE_INTERVAL, relay events to tongyuan.service-items.v1, and
    take back items whose events the gate refused."""
    settings, bridge_settings = _settings()
    from .app import create_app, create_runtime

    producer = None
    if relay or (rejections and not once):
        from services.common.kafka import ensure_topics, idempotent_producer, wait_for_broker

        wait_for_broker(settings.bootstrap)
        ensure_topics(settings.bootstrap, settings.topic_partitions)
        if relay:
            producer = idempotent_producer(settings.bootstrap)
    runtime = create_runtime(settings, bridge_settings, producer=producer, listen=rejections and not once)
    if once:
        report = runtime.bridge.poll()
        if runtime.relay is not None:
            while runtime.relay.relay_once():
                pass
        runtime.bridge.client.close()
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    runtime.start()
    server = None
    if webhook_port:
        import uvicorn

        from services.common.auth import build_verifier
        from services.common.workbooks import WorkbookLimits

        app = create_app(runtime, verifier=build_verifier(settings)[0], workbook_limits=WorkbookLimits.from_settings(settings))
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=webhook_port, log_level="warning"))
        threading.Thread(target=server.run, name="bridge-webhooks", daemon=True).start()
        typer.echo(f"webhooks: http://{settings.host}:{webhook_port}/bridge/webhooks/{bridge_settings.platform}")
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    typer.echo(f"polling {bridge_settings.platform_url} every {bridge_settings.poll_interval:g}s (Ctrl-C stops)")
    stopped.wait()
    if server:
        server.should_exit = True
    runtime.shutdown()
    if producer:
        producer.close()


@bridge_cli.command()
def reconcile(deep: Annotated[bool, typer.Option(help="fetch every item's detail, not only those that differ")] = False) -> None:
    """One full reconciliation with the platform; the events wait in the outbox for the relay."""
    settings, bridge_settings = _settings()
    from .app import create_runtime

    runtime = create_runtime(settings, bridge_settings)
    try:
        report = runtime.bridge.reconcile(deep=deep)
    finally:
        runtime.bridge.client.close()
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    if report.unreadable:
        typer.echo(f"{len(report.unreadable)} records could not be read; see `tongyuan bridge unmapped`", err=True)


@bridge_cli.command()
def unmapped(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False) -> None:
    """Items no rule places in the catalog (not in the column), records that could not be read,
    and items whose latest event the publisher's gate refused (with its reasons)."""
    settings, bridge_settings = _settings()
    from .app import build_store
    from .store import UNREADABLE

    store = build_store(settings, bridge_settings)
    rows, problems, refused = store.unmapped(), store.problems(UNREADABLE), store.refused()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "unmapped": [
                        dict(implementation_code=k.implementation_code, name=k.title, region=k.region, mapping=k.mapping, reason=k.reason) for k in rows
                    ],
                    "unreadable": [dict(implementation_code=p["implementation_code"], detail=p["detail"]) for p in problems],
                    "refused": [dict(implementation_code=r["implementation_code"], name=r["title"], region=r["region"], detail=r["detail"]) for r in refused],
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        return
    typer.echo(f"{len(rows)} unmapped or excluded items")
    for k in rows:
        why = "指定不公开" if k.mapping == "excluded" else (k.reason or "")
        typer.echo(f"  {k.region or '-':<10} {k.implementation_code}  {k.title}  — {why}")
    typer.echo(f"{len(problems)} unreadable records")
    for p in problems:
        typer.echo(f"  {p['implementation_code']}  — {p['detail']}")
    typer.echo(f"{len(refused)} items refused by the gate (sent again by the next reconciliation)")
    for r in refused:
        typer.echo(f"  {r['region'] or '-':<10} {r['implementation_code']}  {r['title'] or ''}  — {r['detail']}")


@mapping_cli.command("export")
def mapping_export(output: Annotated[Path, typer.Option("-o", "--output")] = Path("bridge-mapping.xlsx")) -> None:
    """Write the mapping (rules, overrides, area codes) as an Excel workbook."""
    settings, bridge_settings = _settings()
    from contracts.catalog import standard_catalog

    from .app import build_store
    from .mapping import to_xlsx

    output.write_bytes(to_xlsx(build_store(settings, bridge_settings).mapping(), standard_catalog()))
    typer.echo(f"wrote {output}")


@mapping_cli.command("import")
def mapping_import(path: Path) -> None:
    """Replace the mapping with a workbook (all or nothing), then re-map every known item."""
    settings, bridge_settings = _settings()
    from contracts.catalog import standard_catalog

    from .app import build_store, create_runtime, load_regions
    from .mapping import MappingImportError, from_xlsx

    try:
        table = from_xlsx(path.read_bytes(), catalog=standard_catalog(), regions=load_regions(bridge_settings))
    except MappingImportError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    build_store(settings, bridge_settings).save_mapping(table)
    runtime = create_runtime(settings, bridge_settings)
    try:
        report = runtime.bridge.remap()
    finally:
        runtime.bridge.client.close()
    typer.echo(f"imported {len(table.rules)} rules, {len(table.overrides)} overrides, {len(table.areas)} area codes; {report.events} items re-filed")
