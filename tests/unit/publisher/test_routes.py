"""The publish router mounted alone, on an app whose state holds only what it reads."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.auth import build_verifier
from services.common.settings import Settings
from services.publisher.app import bootstrap, directory_provider
from services.publisher.gate import routes
from tests.conftest import EDITOR, OTHER_COUNTY, draft, placement


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    publisher = bootstrap(settings)
    verifier, local = build_verifier(settings)
    app = FastAPI()
    app.state.verifier, app.state.publisher, app.state.directory = verifier, publisher, directory_provider(publisher)
    app.include_router(routes.router)
    return TestClient(app, headers={"Authorization": f"Bearer {local.mint(EDITOR, audience=settings.auth_audience)}"})


def test_a_publication_is_accepted_and_read_back(client):
    accepted = client.post("/v1/publications", json=draft().model_dump(mode="json"))
    assert accepted.status_code == 202 and accepted.json()["version"] == 1
    record = TestClient(client.app).get(f"/v1/publications/{accepted.json()['publication_id']}")
    assert record.status_code == 200 and record.json()["version"] == 1


def test_the_gate_refuses_another_region_and_nothing_is_read_without_a_record(client):
    refused = client.post("/v1/publications", json=draft(placements=[placement(region=OTHER_COUNTY, level2="D14-02-02")]).model_dump(mode="json"))
    assert refused.status_code == 403
    assert TestClient(client.app).post("/v1/publications", json=draft().model_dump(mode="json")).status_code == 401
    assert TestClient(client.app).get("/v1/publications/unknown").status_code == 404
