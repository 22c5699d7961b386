"""The HTTP composition root: one FastAPI app mounting every service's router.

The only module allowed to import several services; each service's router gets its
dependencies from here.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from prometheus_client import make_asgi_app
from sqlalchemy.exc import DBAPIError

from services.bootstrap import Composition
from services.bridge import routes as bridge_routes
from services.catalog import routes as catalog_routes
from services.column import app as column_app
from services.column import routes as column_routes
from services.common.auth import InvalidToken, TokenVerifier
from services.common.consuming import is_transient
from services.common.heartbeat import live_workers, store_heartbeats
from services.common.settings import Settings
from services.embed import app as embed_app
from services.embed import routes as embed_routes
from services.embed.caching import Renders
from services.embed.registry import portal_links
from services.indexer import app as indexer_app
from services.indexer import routes as search_routes
from services.publisher.gate import routes as publish_routes
from services.supervision import app as supervision_app
from services.supervision import routes as supervision_routes

from . import health
from .limits import BoundedBodies, RateLimits
from .tracing import RequestIds

log = structlog.get_logger("tongyuan.portal")

HERE = Path(__file__).parent
SERVICES = HERE.parent


def templates() -> Jinja2Templates:
    loader = ChoiceLoader(
        [
            FileSystemLoader(str(HERE / "templates")),
            *(FileSystemLoader(str(SERVICES / s / "templates")) for s in ("column", "indexer", "bridge", "embed", "supervision")),
        ]
    )
    return Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True)))


def create_app(settings: Settings, parts: Composition | None = None) -> FastAPI:
    """`parts`: what the composition root built (a fresh one from `settings` by default)."""
    built = parts or Composition(settings)
    app = FastAPI(title="Tongyuan 同源", version="0.1.0", description="Publish once, appear everywhere: grassroots government-affairs disclosure.")
    provide(app, built, templates())
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if built.local_key is not None:
        app.get("/.well-known/jwks.json", include_in_schema=False)(built.local_key.jwks)
    mount_routers(app)
    app.state.health_checks = health.HealthChecks(health_checks(built), max_lag=settings.ready_max_lag)
    app.include_router(health.router)

    app.mount("/metrics", make_asgi_app())

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/columns/4301")

    @app.exception_handler(DBAPIError)
    async def store_unavailable(request: Request, exc: DBAPIError):
        # A database that is down or unreachable is a passing state, not a bug: say so, and
        # that nothing was saved (the transaction never committed), so clients retry.
        if not is_transient(exc):
            raise exc
        log.warning("store.unavailable", path=request.url.path, error=str(exc).splitlines()[0])
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "5"},
            content={"detail": "the store is unavailable; nothing was saved, try again shortly"},
        )

    app.add_middleware(BoundedBodies, limit=settings.max_request_bytes)
    # Outside the body bound: a client past its limit is answered before its body is read.
    app.add_middleware(
        RateLimits,
        writes_per_minute=settings.portal_writes_per_minute,
        searches_per_minute=settings.portal_searches_per_minute,
        subject_of=lambda token: _subject(built.verifier, token),
    )

    # Added last, so it runs first: even a refused body's 413 carries the request id.
    app.add_middleware(RequestIds)

    return app


def provide(app: FastAPI, parts: Composition, pages: Jinja2Templates) -> None:
    """What module-level routers reach with `services.common.wiring.provided(name)`."""
    state = app.state
    state.settings, state.verifier, state.templates = parts.settings, parts.verifier, pages
    state.publisher, state.directory, state.on_catalog_change = parts.publisher, parts.directory, parts.on_catalog_change
    state.column_store, state.search_index = parts.column_store, parts.search_index
    state.embed_store, state.supervision_store = parts.embed_store, parts.supervision_store
    state.bridge_runtime, state.workbook_limits = parts.bridge_runtime, parts.workbook_limits
    state.portal_links = lambda: portal_links(parts.embed_store)
    state.embed_renders = Renders()
    state.public_base_url = parts.settings.public_base_url


def mount_routers(app: FastAPI) -> None:
    """Every service's module-level router; each reads what it needs from app.state (`provide`)."""
    for router in (
        publish_routes.router,
        catalog_routes.router,
        column_routes.router,
        search_routes.router,
        bridge_routes.router,
        bridge_routes.mapping_router,
        supervision_routes.router,
        embed_routes.router,
    ):
        app.include_router(router)


def health_checks(parts: Composition) -> list[health.Check]:
    """What /healthz reports: the broker, every store, and every consumer by its heartbeats."""
    settings, publisher = parts.settings, parts.publisher
    column_store, embed_store, supervision_store = parts.column_store, parts.embed_store, parts.supervision_store
    within = settings.heartbeat_interval * 3 + 5
    return [
        health.Check("broker", health.broker_probe(settings.kafka_bootstrap)),
        health.Check("broker:log", health.reemission_probe(publisher.reemission_pending)),
        health.Check("store:publisher", health.store_probe(publisher.healthy)),
        health.Check("store:column", health.store_probe(column_store.healthy)),
        health.Check("store:search", health.store_probe(parts.search_index.healthy)),
        health.Check("store:embed", health.store_probe(embed_store.healthy)),
        health.Check("store:supervision", health.store_probe(supervision_store.healthy)),
        health.Check(
            "consumer:tongyuan-publisher", health.consumer_probe(lambda: live_workers(publisher.engine, store_heartbeats("publisher"), within=within))
        ),
        health.Check("consumer:tongyuan-column", health.consumer_probe(lambda: column_app.heartbeat_status(column_store, within))),
        health.Check("consumer:tongyuan-indexer", health.consumer_probe(lambda: indexer_app.heartbeat_status(settings, within))),
        health.Check("consumer:tongyuan-embed", health.consumer_probe(lambda: embed_app.heartbeat_status(embed_store, within))),
        health.Check("consumer:tongyuan-supervision", health.consumer_probe(lambda: supervision_app.heartbeat_status(supervision_store, within))),
    ]


def _subject(verifier: TokenVerifier, token: str) -> str | None:
    try:
        return verifier.verify(token).user
    except InvalidToken:
        return None
