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
from services.common.runtime import settle_garbage_collector
from services.common.settings import Settings, get_settings

cli = typer.Typer(help="同源 Tongyuan — publish once, appear everywhere.", no_args_is_help=True)
db_cli = typer.Typer(help="The publisher's database.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
regions_cli = typer.Typer(help="Administrative regions (2023 statistical division codes).", no_args_is_help=True)
cli.add_typer(regions_cli, name="regions")
catalog_cli = typer.Typer(help="Catalog editions: import, export, derive, publish, diff.", no_args_is_help=True)
cli.add_typer(catalog_cli, name="catalog")
Region = Annotated[str, typer.Option("--region", help='region code, or "standard" for the ministry guideline')]


class Process(str, Enum):
    publisher = "publisher"
    column = "column"
    indexer = "indexer"
    embed = "embed"
    supervision = "supervision"
    portal = "portal"


# CPU weights of the workers `tongyuan up` starts on one machine (nice values). When the CPU is
# scarce Linux gives each runnable process an equal share, but per event the indexer does 2–3×
# the work of each other consumer: in a migration it fell behind and ran on alone for the last
# fifth of the run while a core idled. The others run at a lower weight (nice 5: ~0.33, 6: ~0.26),
# so each consumer takes CPU about in proportion to its work. bench-migration, 100,000 rows, on
# one VM: 759 and 843 rows/s at equal weights (the last store done 25–30 s after the gate),
# 870–933 with all three at nice 4 (14–16 s), 965 and 1,009 at nice 7 (7–12 s). A million rows
# at nice 7 starved the embed consumer (its CPU per event grows with its store, 0.32 ms there
# against 0.25–0.26 for the others), which finished 125 s after the gate: hence one level less
# for it. A million rows with these, on a faster VM: 1,238 rows/s, embed last 118 s after the
# gate, with both cores 95% busy throughout (weights share the CPU; they cannot add any).
# Only contention is affected: an idle machine runs every worker at once, and the
# publisher, the portal and the indexer keep the default.
WORKER_NICENESS = {"column": 6, "embed": 5, "supervision": 6}


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
        from services.portal.limits import head_deadline_protocol

        # The collector is left as CPython sets it here (see services/common/runtime.py).
        protocol = head_deadline_protocol(settings.portal_header_timeout)
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", http=protocol)
        return
    from services.common import metrics
    from services.common.faust_consumer import run_worker, use_fast_event_loop

    use_fast_event_loop()
    metrics.serve(settings.metrics_port)
    if process is Process.publisher:
        from services.publisher.app import create_app as create_faust_app
    elif process is Process.column:
        from services.column.app import create_consumer as create_faust_app
    elif process is Process.embed:
        from services.embed.app import create_consumer as create_faust_app
    elif process is Process.supervision:
        from services.supervision.app import create_consumer as create_faust_app
    else:
        from services.indexer.app import create_consumer as create_faust_app
    sys.argv = [sys.argv[0]]  # faust's worker parses argv itself
    app = create_faust_app(settings)
    settle_garbage_collector()
    run_worker(app, loglevel="warn")


class _Readiness:
    """Tells the person who ran `up` when every part answers /healthz — the portal is
    listening well before the consumers have joined their groups. After a minute it says once
    which parts are still down, and keeps watching: a loaded machine is slow, not broken."""

    PATIENCE = 60.0

    def __init__(self, url: str) -> None:
        self.url, self.started, self.last_check, self.done, self.warned = url, time.monotonic(), 0.0, False, False

    def report(self, echo) -> None:
        now = time.monotonic()
        if self.done or now - self.last_check < 1.0:
            return
        self.last_check = now
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except OSError:
            status, body = None, b""  # the portal is not listening yet
        if status == 200:
            echo(f"ready: every part is up ({now - self.started:.0f} s)")
            self.done = True
        elif now - self.started > self.PATIENCE and not self.warned:
            try:
                down = sorted(name for name, check in json.loads(body)["checks"].items() if not check["up"])
            except (ValueError, KeyError, TypeError, AttributeError):
                down = ["portal"]
            echo(f"not ready after {self.PATIENCE:.0f} s; down: {', '.join(down)} (see {self.url} and var/)", err=True)
            self.warned = True


class _BrokerKeeper:
    """Restarts the embedded broker, on the same port, when it exits. It kept its log in
    memory, so it comes back with no topics and no committed offsets: the topics are created
    again and the publisher is told to send its outbox again — what came after the last clean
    stop's watermark (the relay would notice on its own, by the topics' new ids; this says so at
    once, and /healthz shows it pending).
    The consumers notice the new log themselves and exit, to be started again here."""

    def __init__(self, broker, settings: Settings, publisher, *, max_backoff: float = 10.0) -> None:
        self.broker, self.settings, self.publisher = broker, settings, publisher
        self.restarts, self.next_try, self.backoff, self.max_backoff = 0, 0.0, 0.5, max_backoff

    def keep(self, echo) -> bool:
        """Restart the broker if it is down; True when it restarted it now."""
        from services.common.kafka import ensure_topics

        process = self.broker.process
        if process is None or process.poll() is None or time.monotonic() < self.next_try:
            return False
        echo(
            f"the embedded broker exited with {process.returncode}; restarting it on {self.broker.bootstrap} (its log is lost: the publisher sends again every event since the last clean stop)",
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


def _record_applied_watermark(publisher, bootstrap: str) -> None:
    """The embedded broker's log is about to be lost: note how far every consumer group applied
    the outbox, so that the next start sends the new log only what comes after."""
    from services.common.kafka import CONSUMER_GROUPS
    from services.publisher.relay.broker_log import record_applied_watermark

    try:
        through, why = record_applied_watermark(publisher, bootstrap, CONSUMER_GROUPS)
    except Exception as exc:  # the broker or the database is away: the next start sends more, nothing is lost
        typer.echo(f"could not tell how far the consumers got ({exc!r}); the next start sends them every event since the last clean stop", err=True)
        return
    if through is None:
        typer.echo(f"the next start sends the consumers every event since the last clean stop: {why}", err=True)
    else:
        typer.echo(f"every consumer applied the outbox through row {through}; the next start sends only what comes after")


@cli.command()
def up() -> None:
    """Start the broker (unless TONGYUAN_KAFKA_BOOTSTRAP is set), publisher, consumers and portal."""
    settings = _settings()
    from services.common.broker import EmbeddedBroker, die_with_parent, free_port
    from services.common.kafka import ensure_topics, wait_for_broker
    from services.publisher.app import bootstrap

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    broker = None
    if not settings.kafka_bootstrap:
        broker = EmbeddedBroker(port=settings.embedded_broker_port, log_path=settings.var_dir / "broker.log").start()
        env["TONGYUAN_KAFKA_BOOTSTRAP"] = broker.bootstrap
        typer.echo(f"embedded broker (Tansu, memory storage) on {broker.bootstrap}")
    children: dict[Process, subprocess.Popen] = {}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    metrics_ports = {process: free_port() for process in Process if process is not Process.portal}

    def start(process: Process) -> None:
        child_env = {**env, "TONGYUAN_METRICS_PORT": str(metrics_ports[process])} if process in metrics_ports else env
        niceness = WORKER_NICENESS.get(process.value, 0)

        def prepare() -> None:
            die_with_parent()
            os.nice(niceness)

        children[process] = subprocess.Popen([sys.executable, "-m", "services.cli", "run", process.value], env=child_env, preexec_fn=prepare)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    publisher = None
    try:
        bootstrap_servers = env["TONGYUAN_KAFKA_BOOTSTRAP"]
        wait_for_broker(bootstrap_servers)
        ensure_topics(bootstrap_servers, settings.topic_partitions)
        publisher = bootstrap(settings)  # tables, the standard catalog and the Changsha regions
        keeper = _BrokerKeeper(broker, settings, publisher) if broker else None
        for process in Process:
            start(process)
        typer.echo(f"portal: http://{settings.host}:{settings.port}/  (Ctrl-C stops everything)")
        typer.echo("metrics: " + ", ".join(f"{p.value} :{port}" for p, port in metrics_ports.items()) + f", portal {settings.port}/metrics")
        restarts: dict[Process, float] = {}
        readiness = _Readiness(f"http://{settings.host}:{settings.port}/healthz")
        while not stopping:
            time.sleep(0.5)
            readiness.report(typer.echo)
            if keeper and not stopping:
                keeper.keep(typer.echo)
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
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if broker and stopping and publisher is not None:
            _record_applied_watermark(publisher, broker.bootstrap)
        if broker:
            broker.stop()
        typer.echo("stopped")


@db_cli.command("init")
def db_init() -> None:
    """Create the publisher's tables and load the standard catalog and the Changsha regions."""
    from services.catalog.store import Catalogs
    from services.publisher.app import bootstrap

    catalogs = Catalogs(bootstrap(_settings()).engine)
    current = catalogs.in_force()
    typer.echo(f"catalogs in force: {', '.join(c.key for c in current.values())}; {len(catalogs.regions())} regions")


@cli.command()
def republish(
    publication_id: Annotated[str | None, typer.Argument(help="with --force: the publication to repair")] = None,
    only: Annotated[str | None, typer.Option(help="one publication id")] = None,
    force: Annotated[bool, typer.Option("--force", help="re-emit one publication as a new version above every store's, replacing a forged one")] = False,
    above: Annotated[int, typer.Option(help="with --force: also above this version (one known to be on the topic still)", min=0)] = 0,
) -> None:
    """Put every publication's current state in the outbox again, to rebuild downstream stores.

    Versions are unchanged, so stores that already hold a publication ignore it. With --force,
    one publication is re-emitted as a new version that every store applies.
    """
    if force or publication_id:
        if not (force and publication_id) or only:
            typer.echo("give --force and one publication id: tongyuan republish --force <publication_id>", err=True)
            raise typer.Exit(2)
        _force_republish(publication_id, above)
        return
    from services.catalog.editions import republish_catalogs
    from services.publisher.app import bootstrap
    from services.publisher.gate.handlers import republish_all

    publisher = bootstrap(_settings())
    # The catalogs first: a consumer rebuilding its store files publications under them.
    editions = 0 if only else republish_catalogs(publisher)
    count = republish_all(publisher, only=only)
    typer.echo(f"queued {editions} catalog editions and {count} publication events; the relay publishes them")


def _force_republish(publication_id: str, above: int) -> None:
    from services.operations import force_republish

    version, held = force_republish(_settings(), publication_id, at_least=above)
    typer.echo("stores hold: " + ", ".join(f"{store} v{v}" if v is not None else f"{store} none" for store, v in held.items()))
    if version is None:
        typer.echo(f"the publisher has no publication {publication_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"queued {publication_id} as v{version}; the relay publishes it and every store takes it")


@cli.command()
def reindex(keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the previous index instead of deleting it")] = False) -> None:
    """Rebuild the Elasticsearch index into a new one and swap the alias, without downtime."""
    from services.indexer.reindex import reindex_command

    reindex_command(keep_old=keep_old)


@cli.command()
def token(
    region: Annotated[list[str], typer.Option("--region", help="a region the user publishes for; repeatable")] = [],  # noqa: B006
    role: Annotated[list[str], typer.Option("--role", help="editor, approver or admin; repeatable")] = ["editor"],  # noqa: B006
    user: Annotated[str, typer.Option(help="who the token is for")] = "clerk",
    hours: Annotated[float, typer.Option(help="how long it is valid")] = 8.0,
) -> None:
    """Mint a bearer token with the embedded identity provider's local key."""
    from pydantic import ValidationError

    from contracts.identity import Principal
    from services.common.auth import build_verifier

    settings = _settings()
    if settings.auth_jwks_url:
        typer.echo("tokens come from the identity provider (TONGYUAN_AUTH_JWKS_URL is set)", err=True)
        raise typer.Exit(2)
    try:
        principal = Principal(user=user, roles=tuple(role), regions=tuple(region))
    except ValidationError as exc:
        typer.echo(f"bad claims: {exc.errors(include_url=False)}", err=True)
        raise typer.Exit(2) from None
    _, local = build_verifier(settings)
    typer.echo(local.mint(principal, audience=settings.auth_audience, ttl=hours * 3600))


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


def _edition_key(text: str) -> tuple[str, str]:
    scope, _, edition = text.rpartition("@")
    return (scope or "standard"), edition


def _publisher_and_regions():
    from services.catalog.store import Catalogs
    from services.publisher.app import bootstrap

    publisher = bootstrap(_settings())
    return publisher, Catalogs(publisher.engine).regions()


@regions_cli.command("load")
def regions_load(
    city: Annotated[list[str], typer.Option(help="a city code, e.g. 4301; repeatable")] = [],  # noqa: B006
    province: Annotated[list[str], typer.Option(help="a province code, e.g. 43; repeatable")] = [],  # noqa: B006
    everything: Annotated[bool, typer.Option("--all", help="the whole country")] = False,
) -> None:
    """Add regions to the publisher's directory (Changsha is loaded by default)."""
    from contracts.catalog import all_regions, regions_of_city, regions_of_province

    if not (city or province or everything):
        typer.echo("name --city, --province or --all", err=True)
        raise typer.Exit(2)
    try:
        found = list(all_regions()) if everything else [r for c in city for r in regions_of_city(c)] + [r for p in province for r in regions_of_province(p)]
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    from services.catalog.store import Catalogs

    publisher, before = _publisher_and_regions()
    catalogs = Catalogs(publisher.engine)
    with catalogs.writing() as store:
        store.save_regions(tuple(found))
    typer.echo(f"{len(catalogs.regions()) - len(before)} regions added ({len(found)} named)")


@catalog_cli.command("import")
def catalog_import(
    workbook: Annotated[typer.FileBinaryRead, typer.Argument(help="an .xlsx in the standard table layout")],
    region: Region,
    edition: Annotated[str, typer.Option(help="e.g. 2022")],
    draft: Annotated[bool, typer.Option("--draft", help="import without publishing")] = False,
) -> None:
    """Import a unit's catalog from Excel (all or nothing), then publish it."""
    from services.catalog import editions as catalogs
    from services.catalog.xlsx_read import CatalogImportError

    publisher, regions = _publisher_and_regions()
    try:
        catalog = catalogs.import_edition(publisher, workbook.read(), scope=region, edition=edition, regions=regions, publish=not draft)
    except CatalogImportError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(exc.problems)} problem(s); nothing was imported", err=True)
        raise typer.Exit(1) from None
    except catalogs.CatalogRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    items = sum(len(i.items) for d in catalog.domains for i in d.level1)
    typer.echo(f"{catalog.key}: {items} level-2 items, {'draft' if draft else 'published'}")


@catalog_cli.command("export")
def catalog_export(
    region: Region,
    output: Annotated[typer.FileBinaryWrite, typer.Option("--output", "-o")],
    edition: Annotated[str | None, typer.Option(help="default: the edition in force for the region")] = None,
) -> None:
    """Export a catalog edition to Excel in the standard table layout."""
    from contracts.catalog import effective_catalog
    from services.catalog.store import Catalogs
    from services.catalog.xlsx_write import export_catalog

    publisher, regions = _publisher_and_regions()
    catalogs = Catalogs(publisher.engine)
    if edition:
        found = catalogs.edition(region, edition)
        catalog = found[0] if found else None
    else:
        catalog = effective_catalog(region, regions, catalogs.in_force()) if region != "standard" else catalogs.in_force().get("standard")
    if catalog is None:
        typer.echo(f"no catalog for {region} {edition or ''}".rstrip(), err=True)
        raise typer.Exit(1)
    output.write(export_catalog(catalog))
    typer.echo(f"exported {catalog.key}")


@catalog_cli.command("derive")
def catalog_derive(region: Region, edition: Annotated[str, typer.Option()], parent: Annotated[str | None, typer.Option("--from")] = None) -> None:
    """Start a new draft edition as a copy of its parent (the nearest ancestor's current one)."""
    from services.catalog import editions as catalogs

    publisher, regions = _publisher_and_regions()
    try:
        catalog = catalogs.derive_edition(publisher, scope=region, edition=edition, regions=regions, parent_key=parent)
    except catalogs.CatalogRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{catalog.key}: draft, derived from {catalog.derived_from}")


@catalog_cli.command("publish")
def catalog_publish(region: Region, edition: Annotated[str, typer.Option()]) -> None:
    """Publish a draft edition: it becomes immutable and the one in force for its unit."""
    from services.catalog import editions as catalogs

    publisher, regions = _publisher_and_regions()
    try:
        reissued = catalogs.publish_edition(publisher, scope=region, edition=edition, regions=regions)
    except catalogs.CatalogRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"published {region}@{edition}; {reissued} publication(s) re-issued under renamed items")


@catalog_cli.command("diff")
def catalog_diff(edition_a: str, edition_b: str) -> None:
    """What changed between two editions (scope@edition, or a bare edition of the standard)."""
    from contracts.catalog import diff_catalogs
    from services.catalog.store import Catalogs

    publisher, _ = _publisher_and_regions()
    found = []
    with Catalogs(publisher.engine).reading() as store:
        for text in (edition_a, edition_b):
            edition = store.edition(*_edition_key(text))
            if edition is None:
                typer.echo(f"no edition {text}", err=True)
                raise typer.Exit(1)
            found.append(edition[0])
    old, new = found
    changes = diff_catalogs(old, new)
    names = {**_names(old), **_names(new)}
    for item in changes.added:
        typer.echo(f"+ {item} {names[item]}")
    for item in changes.dropped:
        typer.echo(f"- {item} {names[item]}")
    for rename in changes.renamed:
        typer.echo(f"~ {rename.id} {rename.old} → {rename.new}")
    for item, attributes in changes.changed:
        typer.echo(f"* {item} {names[item]}: {', '.join(attributes)}")
    if changes.empty:
        typer.echo("no differences")


def _names(catalog) -> dict[str, str]:
    names = {}
    for domain in catalog.domains:
        names[domain.code] = domain.name
        for level1 in domain.level1:
            names[level1.id] = f"{domain.name} / {level1.name}"
            for level2 in level1.items:
                names[level2.id] = f"{domain.name} / {level1.name} / {level2.name}"
    return names


@catalog_cli.command("list")
def catalog_list() -> None:
    """Every edition with its status."""
    from services.catalog.store import Catalogs

    publisher, _ = _publisher_and_regions()
    with Catalogs(publisher.engine).reading() as store:
        for row in store.editions():
            typer.echo(f"{row['scope']}@{row['edition']}\t{row['status']}\tv{row['version'] or '-'}\tfrom {row['derived_from'] or '-'}")


from services.bridge.cli import bridge_cli  # noqa: E402  (their heavy imports are lazy)
from services.embed.cli import embed_cli  # noqa: E402

cli.add_typer(bridge_cli, name="bridge")
cli.add_typer(embed_cli, name="embed")

dlq_cli = typer.Typer(help="Dead-letter queues: what a consumer group could not apply.", no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")
GROUPS = {"tongyuan-column": "column", "tongyuan-indexer": "indexer", "tongyuan-embed": "embed", "tongyuan-supervision": "supervision"}
Group = Annotated[str | None, typer.Option("--group", help=f"one of {', '.join(GROUPS)}; every group when left out")]


def _groups(group: str | None) -> list[str]:
    if group is not None and group not in GROUPS:
        typer.echo(f"unknown group {group!r}; one of {', '.join(GROUPS)}", err=True)
        raise typer.Exit(2)
    return [group] if group else list(GROUPS)


def _group_apply(group: str, settings: Settings):
    """The store writes of a consumer group, for replaying its dead letters into its own store:
    (publications, catalog editions or None)."""
    if group == "tongyuan-column":
        from services.column.app import build_store

        store = build_store(settings)
        return store.apply, store.apply_catalogs
    if group == "tongyuan-indexer":
        from services.indexer.app import build_index

        return build_index(settings).apply, None
    if group == "tongyuan-embed":
        from services.embed.app import build_store as build_embed_store

        return build_embed_store(settings).apply, None
    if group == "tongyuan-supervision":
        from services.supervision.app import build_store as build_supervision_store

        store = build_supervision_store(settings)
        return store.apply, store.apply_catalogs
    typer.echo(f"unknown group {group!r}; one of {', '.join(GROUPS)}", err=True)
    raise typer.Exit(2)


@dlq_cli.command("list")
def dlq_list(group: Group = None) -> None:
    """Each dead letter: where it came from and why it was refused."""
    from services.operations import dead_letters

    settings = _settings()
    for name in _groups(group):
        letters = dead_letters(settings, name)
        for letter in letters:
            typer.echo(f"{letter.partition}/{letter.offset}\t{letter.origin}\t{letter.error[:200]}")
        typer.echo(f"{len(letters)} dead letter(s) in {name}")


@dlq_cli.command("replay")
def dlq_replay(group: Group = None) -> None:
    """Apply every dead letter again with its group's store (after a fix); idempotent by version."""
    from services.operations import dead_letters, replay_dead_letters

    settings = _settings()
    failing = 0
    for name in _groups(group):
        apply, apply_catalog = _group_apply(name, settings)
        result = replay_dead_letters(dead_letters(settings, name), apply, apply_catalog)
        for letter, error in result.still_failing:
            typer.echo(f"still failing {name} {letter.partition}/{letter.offset}: {error[:200]}", err=True)
        typer.echo(f"{name}: applied {result.applied}; {len(result.still_failing)} still failing")
        failing += len(result.still_failing)
    if failing:
        raise typer.Exit(1)


@cli.command()
def verify() -> None:
    """Compare every store and catalog copy with the publisher's truth; print what differs (exit 1 if anything does)."""
    from services.operations import verify_stores

    publications, differences = verify_stores(_settings())
    for difference in differences:
        typer.echo(f"{difference.store}\t{difference.publication_id}\texpected v{difference.expected}\tfound v{difference.found}")
    typer.echo(f"{publications} publications; {len(differences)} difference(s)")
    if differences:
        raise typer.Exit(1)


from services.supervision.cli import report_command  # noqa: E402

cli.command("report")(report_command(_settings, lambda: _publisher_and_regions()[1]))

from services.publisher.migration_cli import migrate_command  # noqa: E402

cli.command("migrate")(migrate_command(_settings))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
