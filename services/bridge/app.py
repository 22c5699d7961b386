"""The bridge's wiring: its store, client, relay, the listener for the gate's refusals, and the
loop that polls every `poll_interval` seconds and reconciles every `reconcile_interval` seconds.
Its settings are `Settings.bridge` (TONGYUAN_BRIDGE_*).

The bridge runs as `tongyuan bridge poll` (poller + reconciler + relay + refusals listener,
optionally serving the webhook endpoint itself); the portal mounts the same routers (webhooks,
the unmapped page, the mapping workbook) over a Runtime it does not start.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import structlog
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from contracts.catalog import Region, regions_of_city, regions_of_province
from services.common.auth import TokenVerifier
from services.common.db import create_store_engine
from services.common.settings import BridgeSettings, Settings
from services.common.workbooks import WorkbookLimits

from . import routes
from .client import PlatformClient
from .rejections import RejectionListener, group_for, start_listener
from .relay import BridgeRelay, start_relay
from .store import BridgeStore
from .sync import Bridge

log = structlog.get_logger("tongyuan.bridge")
HERE = Path(__file__).parent


def load_regions(bridge: BridgeSettings) -> dict[str, Region]:
    found = regions_of_city(bridge.regions) if len(bridge.regions) == 4 else regions_of_province(bridge.regions)
    return {r.code: r for r in found}


def build_store(settings: Settings) -> BridgeStore:
    store = BridgeStore(create_store_engine(settings.store_url("bridge")), settings.bridge.platform)
    store.create()
    return store


def build_client(bridge: BridgeSettings, **overrides) -> PlatformClient:
    return PlatformClient(
        bridge.platform_url,
        timeout=bridge.timeout,
        attempts=bridge.attempts,
        page_size=bridge.page_size,
        concurrency=bridge.concurrency,
        **overrides,
    )


def build_bridge(store: BridgeStore, bridge: BridgeSettings, *, client: PlatformClient | None = None, on_events=lambda: None) -> Bridge:
    return Bridge(
        store,
        client or build_client(bridge),
        load_regions(bridge),
        platform=bridge.platform,
        overlap=timedelta(seconds=bridge.overlap_seconds),
        on_events=on_events,
    )


def templates() -> Jinja2Templates:
    """The bridge's own pages when it serves them itself (`bridge poll --webhook-port`)."""
    portal = HERE.parent / "portal" / "templates"  # the shared layout, read as a file: no import
    loader = ChoiceLoader([FileSystemLoader(str(HERE / "templates")), FileSystemLoader(str(portal))])
    return Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True)))


@dataclass
class Runtime:
    """A running bridge: the poll/reconcile loop, the relay and the refusals listener, each in its own thread."""

    bridge: Bridge
    store: BridgeStore
    settings: BridgeSettings
    relay: BridgeRelay | None = None
    listener: RejectionListener | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    last_poll: dict | None = None
    last_reconcile: dict | None = None

    def start(self, *, poll: bool = True) -> "Runtime":
        if self.relay is not None:
            relay = self.relay
            thread, relay_stop = start_relay(relay, interval=self.settings.relay_interval)
            self.threads.append(thread)

            def stop_relay() -> None:
                self.stop.wait()
                relay_stop.set()
                relay.nudge()

            threading.Thread(target=stop_relay, daemon=True).start()
        if self.listener is not None:
            self.threads.append(start_listener(self.listener, self.stop))
        if poll:
            loop = threading.Thread(target=self._loop, name="bridge-poll", daemon=True)
            loop.start()
            self.threads.append(loop)
        return self

    def _loop(self) -> None:
        status = self.store.status()
        reconciled = status["reconciled_at"]
        next_reconcile = time.monotonic() if reconciled is None else time.monotonic() + self.settings.reconcile_interval
        while not self.stop.is_set():
            try:
                if time.monotonic() >= next_reconcile:
                    self.last_reconcile = self.bridge.reconcile().as_dict()
                    next_reconcile = time.monotonic() + self.settings.reconcile_interval
                else:
                    self.last_poll = self.bridge.poll().as_dict()
            except Exception as exc:  # the platform is away: the cursor stays, try again next round
                log.warning("bridge.round_failed", error=repr(exc))
            self.stop.wait(self.settings.poll_interval)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if self.relay is not None:
            self.relay.nudge()
        for thread in self.threads:
            thread.join(timeout)
        self.bridge.client.close()


def create_runtime(settings: Settings, *, producer=None, client: PlatformClient | None = None, listen: bool = False) -> Runtime:
    """`producer`: a kafka-python producer (services.common.kafka.idempotent_producer) to relay
    with; None leaves the outbox to another process's relay. `listen`: act on the gate's
    refusals (tongyuan.rejections.v1) from this process."""
    bridge_settings = settings.bridge
    store = build_store(settings)
    relay = BridgeRelay(store, producer) if producer is not None else None
    bridge = build_bridge(store, bridge_settings, client=client, on_events=relay.nudge if relay else (lambda: None))
    listener = None
    if listen:
        listener = RejectionListener(
            bridge.on_rejections,
            bootstrap=settings.bootstrap,
            group=group_for(bridge_settings.platform),
            session_timeout=settings.consumer_session_timeout,
            max_backoff=settings.store_retry_max_seconds,
            batch_size=settings.consumer_batch_size,
        )
    return Runtime(bridge=bridge, store=store, settings=bridge_settings, relay=relay, listener=listener)


def create_app(runtime: Runtime, *, verifier: TokenVerifier | None = None, workbook_limits: WorkbookLimits = WorkbookLimits()) -> FastAPI:
    """The bridge's own small HTTP app: the webhook endpoint and its status/unmapped pages (and
    the mapping upload, given the `verifier` of bearer tokens)."""
    app = FastAPI(title="Tongyuan bridge", docs_url=None, redoc_url=None)
    app.state.bridge_runtime = runtime
    app.state.templates = templates()
    app.state.workbook_limits = workbook_limits
    app.include_router(routes.router)
    if verifier is not None:
        app.state.verifier = verifier
        app.include_router(routes.mapping_router)
    return app
