"""The portal without a broker: the publish API's validation and the column pages."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from contracts.events import TOPIC_PUBLICATIONS
from services.column.app import build_store
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from services.publisher.tables import outbox, publications
from tests.conftest import EDITOR
from tests.factories import catalog_changed, place, published, withdrawn
from tests.wired import mounted


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path, kafka_bootstrap=None, max_request_bytes=100_000)


@pytest.fixture
def client(settings):
    return TestClient(create_app(settings), headers=token_headers(settings, EDITOR))


def token_headers(settings, principal):
    _, local = build_verifier(settings)
    return {"Authorization": f"Bearer {local.mint(principal, audience=settings.auth_audience)}"}


def body(**overrides):
    value = {
        "placements": [{"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": "低保标准调整公告",
        "body_html": "<p>内容</p>",
        "formed_at": "2026-03-02",
    }
    value.update(overrides)
    return value


def written(client):
    from services.publisher.app import bootstrap

    publisher = bootstrap(client.app.state.settings, load_reference=False)
    with publisher.engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(publications)).scalar_one(),
            connection.execute(select(func.count()).select_from(outbox).where(outbox.c.topic == TOPIC_PUBLICATIONS)).scalar_one(),
        )


def test_publish_then_read_back(client):
    receipt = client.post("/v1/publications", json=body(), headers={"x-request-id": "req-1"})
    assert receipt.status_code == 202
    assert receipt.headers["x-request-id"] == "req-1"
    pid = receipt.json()["publication_id"]
    stored = client.get(f"/v1/publications/{pid}").json()
    assert stored["version"] == 1 and stored["publication"]["placements"][0]["level2_name"] == "办事指南"
    assert written(client) == (1, 1)


def test_every_answer_carries_a_request_id_fresh_when_the_client_sent_none(client):
    fresh = client.post("/v1/publications", json=body())
    assert re.fullmatch("[0-9a-f]{32}", fresh.headers["x-request-id"])
    refused = client.post("/v1/publications", json={**body(), "title": ""}, headers={"x-request-id": "req-2"})
    assert refused.status_code == 422 and refused.headers.get_list("x-request-id") == ["req-2"]
    assert client.get("/healthz").headers["x-request-id"] != fresh.headers["x-request-id"]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"title": ""}, ["body", "title"]),
        ({"title": "标题\x00"}, ["body", "title"]),
        ({"title": "长" * 201}, ["body", "title"]),
        ({"formed_at": "2026-02-30"}, ["body", "formed_at"]),
        ({"placements": []}, ["body", "placements"]),
        ({"attachments": [{"name": "x", "url": "javascript:alert(1)"}]}, ["body", "attachments", 0, "url"]),
        ({"unexpected": 1}, ["body", "unexpected"]),
        (
            {"placements": [{"region_code": "999999", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}]},
            ["body", "placements", 0, "region_code"],
        ),
        (
            {"placements": [{"region_code": "430102", "domain_code": "D28", "level1_id": "D28-01", "level2_id": "D28-01-99"}]},
            ["body", "placements", 0, "level2_id"],
        ),
    ],
)
def test_bad_drafts_get_field_level_422_and_write_nothing(client, overrides, loc):
    response = client.post("/v1/publications", json=body(**overrides))
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]]
    assert written(client) == (0, 0)


def test_oversized_requests_are_refused_before_parsing(client):
    response = client.post("/v1/publications", json=body(body_html="<p>" + "长" * 60_000 + "</p>"))
    assert response.status_code == 413
    assert written(client) == (0, 0)


def test_revision_and_withdrawal_rules(client):
    pid = client.post("/v1/publications", json=body()).json()["publication_id"]
    assert client.post(f"/v1/publications/{pid}", json=body(version=1, title="更正")).json()["version"] == 2
    stale = client.post(f"/v1/publications/{pid}", json=body(version=1))
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    assert client.post("/v1/publications/nope", json=body(version=1)).status_code == 404
    no_target = client.post(f"/v1/publications/{pid}/withdraw", json={"type": "redirect"})
    assert no_target.status_code == 422 and no_target.json()["detail"][0]["loc"] == ["body", "redirect_to"]
    off_site = client.post(f"/v1/publications/{pid}/withdraw", json={"type": "redirect", "redirect_to": "//evil.example"})
    assert off_site.status_code == 422
    assert client.post(f"/v1/publications/{pid}/withdraw", json={"type": "withdrawn", "explanation": "废止"}).json() == {
        "publication_id": pid,
        "version": 3,
        "status": "withdrawn",
    }


def test_column_pages_render_what_the_column_store_holds(client, settings):
    store = build_store(settings)
    assert client.get("/columns/430102").status_code == 503  # no catalog has reached the column yet
    store.apply_catalogs([catalog_changed()])
    store.apply(
        [
            published("a", title="街道低保公告", body="<p>正文</p>"),
            published("b", title="区级政策文件", placements=[place("430102", "芙蓉区", "D14-02-01", "政策法规文件")]),
            published("c", title="已撤销的公告"),
        ]
    )
    store.apply([withdrawn("c", version=2, explanation="政策废止")])
    region = client.get("/columns/430102")
    assert region.status_code == 200 and "社会救助" in region.text and "街道低保公告" in region.text and "文艺路街道" in region.text
    assert "已撤销的公告" not in region.text
    listing = client.get("/columns/430102/D14/D14-02-01")
    assert "区级政策文件" in listing.text and "街道低保公告" not in listing.text
    detail = client.get("/publications/a")
    assert detail.status_code == 200 and "430102001/2026-00001" in detail.text
    notice = client.get("/publications/c")
    assert notice.status_code == 200 and "政策废止" in notice.text
    assert client.get("/columns/999999").status_code == 404
    assert client.get("/columns/430102/D14/D15-01").status_code == 404
    assert client.get("/publications/unknown").status_code == 404


def test_gone_is_410_vanish_is_404_redirect_redirects(client, settings):
    store = build_store(settings)
    store.apply_catalogs([catalog_changed()])
    store.apply([published("g"), published("v"), published("r")])
    store.apply([withdrawn("g", kind="gone"), withdrawn("v", kind="vanish"), withdrawn("r", kind="redirect")])
    assert client.get("/publications/g").status_code == 410
    assert client.get("/publications/v").status_code == 404
    moved = client.get("/publications/r", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/columns/430102"


def test_healthz_is_503_without_a_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["up"] is False


def test_readyz_and_metrics(client):
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert client.post("/v1/publications", json=body()).status_code == 202
    exposition = client.get("/metrics/").text
    assert "tongyuan_events_consumed_total" in exposition and "tongyuan_outbox_backlog" in exposition


def test_readyz_reports_a_consumer_too_far_behind():

    from services.portal.health import Check, HealthChecks, router

    app = mounted(
        router, health_checks=HealthChecks([Check("consumer:x", lambda: {"up": True, "lag": 50}), Check("store:y", lambda: {"up": True})], max_lag=10)
    )
    with TestClient(app) as test:
        assert test.get("/healthz").status_code == 200
        behind = test.get("/readyz")
        assert behind.status_code == 503 and behind.json()["behind"] == {"consumer:x": 50}


def test_healthz_waits_for_the_slowest_check_not_their_sum_and_not_for_a_hung_one():
    import time

    from services.portal.health import Check, HealthChecks, router

    def slow() -> dict:
        time.sleep(0.5)
        return {"up": True}

    def hung() -> dict:
        time.sleep(2.5)
        return {"up": True}

    checks = HealthChecks([Check(f"store:{n}", slow) for n in range(4)] + [Check("store:silent", hung)], max_lag=10, timeout=1.0)
    app = mounted(router, health_checks=checks)
    with TestClient(app) as test:
        started = time.monotonic()
        answer = test.get("/healthz")
        took = time.monotonic() - started
    assert answer.status_code == 503 and took < 1.8, took  # 4 × 0.5 s one after another would be 2 s, plus the hung 2.5 s
    checks = answer.json()["checks"]
    assert all(checks[f"store:{n}"]["up"] for n in range(4))
    assert checks["store:silent"] == {"up": False, "error": "no answer within 1 s"}


def test_writes_need_a_valid_token_for_the_region(client, settings):
    anonymous = TestClient(client.app)
    assert anonymous.post("/v1/publications", json=body()).status_code == 401
    forged = {"Authorization": "Bearer " + token_headers(settings, EDITOR)["Authorization"].split()[1][:-4] + "AAAA"}
    assert anonymous.post("/v1/publications", json=body(), headers=forged).status_code == 401
    _, local = build_verifier(settings)
    expired = local.mint(EDITOR, audience=settings.auth_audience, ttl=60, now=0)
    assert anonymous.post("/v1/publications", json=body(), headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    wrong_audience = local.mint(EDITOR, audience="another-system")
    assert anonymous.post("/v1/publications", json=body(), headers={"Authorization": f"Bearer {wrong_audience}"}).status_code == 401
    elsewhere = body(placements=[{"region_code": "430103", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}])
    refused = client.post("/v1/publications", json=elsewhere)
    assert refused.status_code == 403 and refused.json()["detail"][0]["loc"] == ["body", "placements", 0, "region_code"]
    assert written(client) == (0, 0)
    # Reads need no token.
    assert anonymous.get("/v1/regions/430102/catalog").status_code == 200


def test_an_async_store_probe_is_awaited():
    from services.portal.health import store_probe

    async def down():
        return False

    assert store_probe(down)() == {"up": False}


def test_a_chunked_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(30):
            yield b"x" * 10_000

    response = client.post("/v1/publications", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert written(client) == (0, 0)
