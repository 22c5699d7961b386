"""The catalog router mounted alone, on an app whose state holds only what it reads."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.catalog import routes
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.common.workbooks import WorkbookLimits
from services.publisher.app import bootstrap, directory_provider
from tests.conftest import ADMIN, EDITOR


@pytest.fixture
def app(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    publisher = bootstrap(settings)
    directory = directory_provider(publisher)
    verifier, local = build_verifier(settings)
    app = FastAPI()
    app.state.verifier, app.state.publisher, app.state.directory = verifier, publisher, directory
    app.state.workbook_limits = WorkbookLimits.from_settings(settings)
    changes: list[str] = []
    app.state.on_catalog_change = lambda: (directory.invalidate(), changes.append("changed"))
    app.state.changes = changes
    app.state.tokens = {p.user: local.mint(p, audience=settings.auth_audience) for p in (ADMIN, EDITOR)}
    app.include_router(routes.router)
    return app


def test_a_picker_answers_from_the_directory_on_app_state(app):
    client = TestClient(app)
    first = client.get("/v1/regions/430102/catalog/D14")
    assert first.status_code == 200 and first.json()["code"] == "D14"
    assert client.get("/v1/regions/430102/catalog/D14", headers={"If-None-Match": first.headers["etag"]}).status_code == 304


def test_an_edition_is_derived_and_published_by_an_administrator_alone(app):
    client = TestClient(app)
    admin = {"Authorization": f"Bearer {app.state.tokens[ADMIN.user]}"}
    editor = {"Authorization": f"Bearer {app.state.tokens[EDITOR.user]}"}
    assert client.post("/v1/catalogs/430102/2023/derive", json={}).status_code == 401
    assert client.post("/v1/catalogs/430102/2023/derive", json={}, headers=editor).status_code == 403
    assert client.post("/v1/catalogs/430102/2023/derive", json={}, headers=admin).status_code == 201
    published = client.post("/v1/catalogs/430102/2023/publish", headers=admin)
    assert published.status_code == 200 and published.json()["key"] == "430102@2023"
    assert app.state.changes == ["changed"], "the directory is told an edition changed"
    assert client.get("/v1/regions/430102001/catalog").json()["scope"] == "430102"
