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

from services.bridge.app import portal_router as bridge_router
from services.catalog import routes as catalog_routes
from services.column import app as column_app
from services.column.pages import build_router as column_router
from services.common.auth import InvalidToken, bearer_principal, build_verifier
from services.common.consuming import is_transient
from services.common.settings import Settings
from services.common.workbooks import WorkbookLimits
from services.embed import app as embed_app
from services.embed.pages import build_router as embed_router
from services.embed.registry import portal_links
from services.indexer import app as indexer_app
from services.indexer.api import build_router as search_router
from services.publisher import app as publisher_app
from services.publisher.gate import routes as publish_routes
from services.publisher.tables import heartbeats as publisher_heartbeats
from services.supervision import app as supervision_app
from services.supervision.pages import build_router as supervision_router

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


def create_app(settings: Settings) -> FastAPI:
    publisher = publisher_app.bootstrap(settings)
    directory = publisher_app.directory_provider(publisher)
    column_store = column_app.build_store(settings)
    index = indexer_app.build_index(settings)
    embed_store = embed_app.build_store(settings)
    supervision_store = supervision_app.build_store(settings)
    pages = templates()

    app = FastAPI(title="Tongyuan 同源", version="0.1.0", description="Publish once, appear everywhere: grassroots government-affairs disclosure.")
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    verifier, local_key = build_verifier(settings)
    app.state.verifier = verifier
    app.state.templates = pages
    authenticate = bearer_principal(verifier)
    app.state.publisher = publisher
    app.state.directory = directory
    app.state.workbook_limits = WorkbookLimits.from_settings(settings)
    app.state.on_catalog_change = directory.invalidate
    app.include_router(publish_routes.router)
    app.include_router(catalog_routes.router)
    if local_key is not None:

        @app.get("/.well-known/jwks.json", include_in_schema=False)
        def jwks():
            return local_key.jwks()

    app.include_router(column_router(column_store, pages, regions=lambda: directory().regions, portal_links=lambda: portal_links(embed_store)))
    app.include_router(search_router(index, pages))
    app.include_router(bridge_router(settings, pages, authenticate=authenticate))
    app.include_router(supervision_router(supervision_store, pages, regions=lambda: directory().regions))
    app.include_router(embed_router(embed_store, pages, regions=lambda: directory().regions, public_base_url=settings.public_base_url))
    within = settings.heartbeat_interval * 3 + 5
    app.include_router(
        health.build_router(
            [
                health.Check("broker", health.broker_probe(settings.kafka_bootstrap)),
                health.Check("broker:log", health.reemission_probe(publisher.reemission_pending)),
                health.Check("store:publisher", health.store_probe(publisher.healthy)),
                health.Check("store:column", health.store_probe(column_store.healthy)),
                health.Check("store:search", health.store_probe(index.healthy)),
                health.Check("store:embed", health.store_probe(embed_store.healthy)),
                health.Check("store:supervision", health.store_probe(supervision_store.healthy)),
                health.Check("consumer:tongyuan-publisher", health.consumer_probe(lambda: _live(publisher.engine, publisher_heartbeats, within))),
                health.Check("consumer:tongyuan-column", health.consumer_probe(lambda: column_app.heartbeat_status(column_store, within))),
                health.Check("consumer:tongyuan-indexer", health.consumer_probe(lambda: indexer_app.heartbeat_status(settings, within))),
                health.Check("consumer:tongyuan-embed", health.consumer_probe(lambda: embed_app.heartbeat_status(embed_store, within))),
                health.Check("consumer:tongyuan-supervision", health.consumer_probe(lambda: supervision_app.heartbeat_status(supervision_store, within))),
            ],
            max_lag=settings.ready_max_lag,
        )
    )

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
        subject_of=lambda token: _subject(verifier, token),
    )

    # Added last, so it runs first: even a refused body's 413 carries the request id.
    app.add_middleware(RequestIds)

    return app


def _subject(verifier, token: str) -> str | None:
    try:
        return verifier.verify(token).user
    except InvalidToken:
        return None


def _live(engine, table, within):
    from services.common.heartbeat import live_workers

    return live_workers(engine, table, within=within)
