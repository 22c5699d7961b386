"""An embed store on SQLite and a client of the embed routes alone, for page-level unit tests."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from contracts.catalog import regions_of_city
from services.common.db import create_store_engine
from services.embed import routes
from services.embed.caching import Renders
from services.embed.store import EmbedStore
from services.portal.app import templates
from tests.wired import directory_of, mounted


def embed_store_and_client(directory: Path) -> tuple[EmbedStore, TestClient]:
    store = EmbedStore(create_store_engine(f"sqlite:///{directory / 'embed.db'}"))
    store.create()
    regions = {r.code: r for r in regions_of_city("4301")}
    app = mounted(routes.router, embed_store=store, templates=templates(), directory=directory_of(regions), embed_renders=Renders(), public_base_url=None)
    return store, TestClient(app)
