"""`tongyuan bridge …`: the poller, reconciliation, the unmapped report, the mapping workbook,
and the platform simulator (devtools/, for trying the bridge without a platform)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from services.common.settings import Settings
from services.common.terminal import broker, commands, fail, load_settings

bridge_cli = commands("The government-service platform bridge (政务服务平台 ↔ 专栏).")
mapping_cli = commands("Service item → catalog mapping: rules, overrides, area codes (xlsx).")
bridge_cli.add_typer(mapping_cli, name="mapping")


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
    """Run the platform simulator (its own HTTP app; a development double from devtools/)."""
    import uvicorn

    from devtools.platform_simulator import Faults, Platform, WebhookSender, create_app, seed_items

    chosen = Faults.parse(faults) if faults else Faults()
    chosen.hang_seconds = hang
    base_url = f"http://{host}:{port}"
    platform = Platform(seed_items(items, seed=seed, base_url=base_url), faults=chosen, seed=seed)
    if webhook_url:
        if not webhook_secret:
            fail("--webhook-url needs --webhook-secret (or TONGYUAN_BRIDGE_WEBHOOK_SECRET)", 2)
        platform.webhooks = WebhookSender(webhook_url, webhook_secret)
    # The base address: the bridge's client appends /api/v1/items itself.
    typer.echo(f"simulated platform with {len(platform.items)} items: TONGYUAN_BRIDGE_PLATFORM_URL={base_url} (control: {base_url}/_sim/docs)")
    uvicorn.run(create_app(platform), host=host, port=port, log_level="warning")


@bridge_cli.command()
def poll(
    once: Annotated[bool, typer.Option("--once", help="one poll round, then exit")] = False,
    webhook_port: Annotated[int | None, typer.Option(metavar="PORT", help="also serve /bridge/webhooks/<platform> on this port")] = None,
    relay: Annotated[bool, typer.Option(help="relay the outbox to the broker from this process")] = True,
    rejections: Annotated[bool, typer.Option(help="act on the gate's refusals of this bridge's events (tongyuan.rejections.v1) from this process")] = True,
) -> None:
    """Poll the platform every TONGYUAN_BRIDGE_POLL_INTERVAL seconds (5 by default), reconcile
    every TONGYUAN_BRIDGE_RECONCILE_INTERVAL, relay events to tongyuan.service-items.v1, and
    take back items whose events the gate refused."""
    settings = load_settings()
    from .app import create_runtime

    listen = rejections and not once
    producer = _broker_ready(settings, relay=relay) if relay or listen else None
    runtime = create_runtime(settings, producer=producer, listen=listen)
    if once:
        _poll_once(runtime)
        return
    runtime.start()
    server = _serve_webhooks(settings, runtime, webhook_port) if webhook_port else None
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    typer.echo(f"polling {settings.bridge.platform_url} every {settings.bridge.poll_interval:g}s (Ctrl-C stops)")
    stopped.wait()
    if server:
        server.should_exit = True
    runtime.shutdown()
    if producer:
        producer.close()


def _broker_ready(settings: Settings, *, relay: bool) -> Any:
    """The broker made ready (its topics created); with `relay`, a producer to relay with."""
    from services.common.kafka import ensure_topics, idempotent_producer, wait_for_broker

    bootstrap = broker(settings)
    wait_for_broker(bootstrap)
    ensure_topics(bootstrap, settings.topic_partitions)
    return idempotent_producer(bootstrap) if relay else None


def _poll_once(runtime: Any) -> None:
    report = runtime.bridge.poll()
    if runtime.relay is not None:
        while runtime.relay.relay_once():
            pass
    runtime.bridge.client.close()
    typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))


def _serve_webhooks(settings: Settings, runtime: Any, port: int) -> Any:
    import uvicorn

    from services.common.auth import build_verifier
    from services.common.workbooks import WorkbookLimits

    from .app import create_app

    app = create_app(runtime, verifier=build_verifier(settings)[0], workbook_limits=WorkbookLimits.from_settings(settings))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="bridge-webhooks", daemon=True).start()
    typer.echo(f"webhooks: http://{settings.host}:{port}/bridge/webhooks/{settings.bridge.platform}")
    return server


@bridge_cli.command()
def reconcile(deep: Annotated[bool, typer.Option(help="fetch every item's detail, not only those that differ")] = False) -> None:
    """One full reconciliation with the platform; the events wait in the outbox for the relay."""
    settings = load_settings()
    from .app import create_runtime

    runtime = create_runtime(settings)
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
    from services.bootstrap import composed

    from .store import UNREADABLE

    load_settings()
    store = composed().bridge_store
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
    from contracts.catalog import standard_catalog
    from services.bootstrap import composed

    from .mapping import to_xlsx

    load_settings()
    output.write_bytes(to_xlsx(composed().bridge_store.mapping(), standard_catalog()))
    typer.echo(f"wrote {output}")


@mapping_cli.command("import")
def mapping_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a workbook as `mapping export` writes it")]) -> None:
    """Replace the mapping with a workbook (all or nothing), then re-map every known item."""
    from contracts.catalog import standard_catalog
    from services.bootstrap import composed

    from .app import load_regions
    from .mapping import MappingImportError, from_xlsx

    settings = load_settings()
    try:
        table = from_xlsx(path.read_bytes(), catalog=standard_catalog(), regions=load_regions(settings.bridge))
    except MappingImportError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    runtime = composed().bridge_runtime
    runtime.store.save_mapping(table)
    try:
        report = runtime.bridge.remap()
    finally:
        runtime.bridge.client.close()
    typer.echo(f"imported {len(table.rules)} rules, {len(table.overrides)} overrides, {len(table.areas)} area codes; {report.events} items re-filed")
