"""The catalog API as a CMS picker uses it, and edition management over HTTP."""

import pytest
from fastapi.testclient import TestClient

from services.column.app import build_store
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from tests.conftest import ADMIN, EDITOR
from tests.factories import catalog_changed, place, published


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path, kafka_bootstrap=None)


@pytest.fixture
def client(settings):
    _, local = build_verifier(settings)
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {local.mint(ADMIN, audience=settings.auth_audience)}"})


def test_catalog_changes_need_an_administrator(client, settings):
    _, local = build_verifier(settings)
    editor = {"Authorization": f"Bearer {local.mint(EDITOR, audience=settings.auth_audience)}"}
    anonymous = TestClient(client.app)
    assert anonymous.post("/v1/catalogs/430102/2023/derive", json={}).status_code == 401
    assert anonymous.post("/v1/catalogs/430102/2023/derive", json={}, headers=editor).status_code == 403
    assert anonymous.get("/v1/catalogs/430102/2023").status_code == 404  # nothing was derived


def test_picker_walks_region_domain_level1_level2(client):
    domains = client.get("/v1/regions/430102001/catalog")
    assert domains.status_code == 200
    body = domains.json()
    assert (body["scope"], body["edition"]) == ("standard", "2022") and len(body["domains"]) == 32
    social = client.get("/v1/regions/430102001/catalog/社会救助").json()  # a name works as well as D14
    assert social["code"] == "D14" and {"id": "D14-02-02", "name": "办事指南"} in social["level1"][1]["items"]
    items = client.get("/v1/regions/430102001/catalog/D14/D14-02").json()["items"]
    assert items[1]["time_limit"] == "制定或获取信息之日起10个工作日内" and "政务服务中心" in items[1]["channels"]


def test_unchanged_answers_are_304(client):
    first = client.get("/v1/regions/430102/catalog/D14")
    etag = first.headers["etag"]
    again = client.get("/v1/regions/430102/catalog/D14", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/v1/regions/430102/catalog/D14", headers={"If-None-Match": '"other"'}).status_code == 200


def test_unknown_things_are_404_with_choices(client):
    assert client.get("/v1/regions/999999/catalog").status_code == 404
    missing = client.get("/v1/regions/430102/catalog/没有")
    assert missing.status_code == 404 and len(missing.json()["detail"]["choices"]) == 32
    assert client.get("/v1/regions/430102/catalog/D14/D15-01").status_code == 404


def test_localising_a_county_changes_what_its_pickers_offer(client):
    etag = client.get("/v1/regions/430102001/catalog/D14").headers["etag"]
    assert client.post("/v1/catalogs/430102/2023/derive", json={}).status_code == 201
    edited = client.patch("/v1/catalogs/430102/2023", json={"rename": {"D14-02-02": "低保办事指南"}, "drop": ["D14-02-01"]})
    assert edited.status_code == 200
    published_ = client.post("/v1/catalogs/430102/2023/publish")
    assert published_.json() == {"key": "430102@2023", "status": "published", "reissued_publications": 0}
    after = client.get("/v1/regions/430102001/catalog/D14", headers={"If-None-Match": etag})
    assert after.status_code == 200
    names = [i["name"] for i in after.json()["level1"][1]["items"]]
    assert "低保办事指南" in names and "政策法规文件" not in names
    # Other counties still see the standard catalog; the edition is now immutable.
    assert client.get("/v1/regions/430103/catalog").json()["edition"] == "2022"
    assert client.patch("/v1/catalogs/430102/2023", json={"drop": ["D14-02-02"]}).status_code == 409
    diff = client.get("/v1/catalogs/diff", params={"a": "standard@2022", "b": "430102@2023"}).json()
    assert diff["dropped"] == ["D14-02-01"] and diff["renamed"] == [{"id": "D14-02-02", "old": "办事指南", "new": "低保办事指南"}]


def test_bad_edits_change_nothing(client):
    client.post("/v1/catalogs/430102/2023/derive", json={})
    assert client.patch("/v1/catalogs/430102/2023", json={"rename": {"D99-01": "x"}}).status_code == 409
    assert client.patch("/v1/catalogs/430102/2023", json={"colour": "red"}).status_code == 422
    assert client.get("/v1/catalogs/430102/2023").json()["catalog"]["domains"][13]["level1"][1]["items"][0]["name"] == "政策法规文件"


def test_the_column_archives_items_a_new_edition_dropped(client, settings):
    store = build_store(settings)
    standard = catalog_changed()
    store.apply_catalogs([standard])
    store.apply([published("kept", title="按原事项公开的信息", placements=[place("430102001", "文艺路街道", "D14-02-01", "政策法规文件")])])
    from contracts.catalog import localise

    county = localise(standard.data.catalog, drop={"D14-02-01"}).model_copy(update={"scope": "430102", "edition": "2023"})
    store.apply_catalogs([catalog_changed(county, version=1)])
    listing = client.get("/columns/430102/D14")
    assert "归档事项" in listing.text and "政策法规文件" in listing.text
    archived = client.get("/columns/430102/D14/D14-02-01")
    assert archived.status_code == 200 and "按原事项公开的信息" in archived.text and "归档" in archived.text
    assert "已调整出现行目录" in client.get("/publications/kept").text
    page = client.get("/catalog/430102")
    assert page.status_code == 200 and "办事指南" in page.text
    assert "D14-02-02" in page.text and "D14-02-01" not in page.text
