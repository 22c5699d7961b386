"""An embed store on SQLite and a client of the embed routes alone, for page-level unit tests."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from contracts.catalog import regions_of_city
from services.common.db import create_store_engine
from services.embed.routes import build_router
from services.embed.store import EmbedStore
from services.portal.app import templates


def embed_store_and_client(directory: Path) -> tuple[EmbedStore, TestClient]:
    store = EmbedStore(create_store_engine(f"sqlite:///{directory / 'embed.db'}"))
    store.create()
    regions = {r.code: r for r in regions_of_city("4301")}
    app = FastAPI()
    app.include_router(build_router(store, templates(), lambda: regions))
    return store, TestClient(app)
