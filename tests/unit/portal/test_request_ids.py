"""The request id a response carries is the one its event carries (tongyuanrequestid), whether
the client sent it or the portal made it."""

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.common.auth import build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from services.portal.tracing import request_id_of
from services.publisher.tables import outbox
from tests.conftest import EDITOR


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    _, local = build_verifier(settings)
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {local.mint(EDITOR, audience=settings.auth_audience)}"})


def body(title: str = "低保标准调整公告") -> dict:
    return {
        "placements": [{"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": title,
        "body_html": "<p>内容</p>",
        "formed_at": "2026-03-02",
    }


def last_event(client) -> dict:
    from services.publisher.app import bootstrap

    publisher = bootstrap(client.app.state.settings, load_reference=False)
    with publisher.engine.connect() as connection:
        return json.loads(connection.execute(select(outbox.c.payload).order_by(outbox.c.id.desc()).limit(1)).scalar_one())


def test_an_id_the_portal_made_is_the_one_the_event_carries(client):
    published = client.post("/v1/publications", json=body())
    made = published.headers["x-request-id"]
    assert published.status_code == 202 and re.fullmatch("[0-9a-f]{32}", made)
    assert last_event(client)["tongyuanrequestid"] == made

    pid = published.json()["publication_id"]
    revised = client.post(f"/v1/publications/{pid}", json={**body("更正后的公告"), "version": 1})
    assert revised.status_code == 202 and last_event(client)["tongyuanrequestid"] == revised.headers["x-request-id"] != made

    withdrawn = client.post(f"/v1/publications/{pid}/withdraw", json={"type": "withdrawn", "explanation": "政策已废止"})
    assert withdrawn.status_code == 202 and last_event(client)["tongyuanrequestid"] == withdrawn.headers["x-request-id"]


def test_a_client_id_is_carried_as_sent(client):
    published = client.post("/v1/publications", json=body(), headers={"x-request-id": "cms-7f3a:42"})
    assert published.headers["x-request-id"] == "cms-7f3a:42" and last_event(client)["tongyuanrequestid"] == "cms-7f3a:42"


@pytest.mark.parametrize("sent", [b"", b"a b", b"x" * 101, "申请".encode(), b"id\r\nforged: line"])
def test_an_unfit_client_id_is_replaced_by_a_fresh_one(sent):
    assert re.fullmatch("[0-9a-f]{32}", request_id_of([(b"x-request-id", sent)]))


def test_a_fresh_id_replaces_an_unfit_one_on_the_answer_and_the_event(client):
    published = client.post("/v1/publications", json=body(), headers={"x-request-id": "two words"})
    made = published.headers["x-request-id"]
    assert published.status_code == 202 and re.fullmatch("[0-9a-f]{32}", made) and last_event(client)["tongyuanrequestid"] == made


def test_a_catalog_edition_published_over_http_and_what_it_reissues_carry_the_request_id(tmp_path):
    from tests.conftest import ADMIN

    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    _, local = build_verifier(settings)
    admin = TestClient(create_app(settings), headers={"Authorization": f"Bearer {local.mint(ADMIN, audience=settings.auth_audience)}"})
    filed = admin.post("/v1/publications", json=body())
    assert filed.status_code == 202
    assert admin.post("/v1/catalogs/430102/2027/derive", json={}).status_code == 201
    assert admin.patch("/v1/catalogs/430102/2027", json={"rename": {"D14-02-02": "低保办事指南"}}).status_code == 200
    published = admin.post("/v1/catalogs/430102/2027/publish")
    assert published.status_code == 200 and published.json()["reissued_publications"] == 1

    from services.publisher.app import bootstrap

    publisher = bootstrap(settings, load_reference=False)
    with publisher.engine.connect() as connection:
        events = [json.loads(p) for (p,) in connection.execute(select(outbox.c.payload).order_by(outbox.c.id))]
    changed = [e for e in events if e["type"] == "cn.gov.tongyuan.catalog.changed.v1" and e["subject"] == "430102"]
    reissued = [e for e in events if e.get("subject") == filed.json()["publication_id"] and e["data"]["version"] == 2]
    assert [e.get("tongyuanrequestid") for e in changed + reissued] == [published.headers["x-request-id"]] * 2
