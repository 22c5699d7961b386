"""`tongyuan bridge …` against a temporary var dir (no broker, no platform needed for these)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from services.bridge import routes
from services.bridge.app import build_store, create_runtime, templates
from services.bridge.cli import bridge_cli
from services.bridge.detect import Known
from services.common.settings import Settings, get_settings
from tests.conftest import settings_under
from tests.wired import mounted


@pytest.fixture
def var(tmp_path, monkeypatch):
    with settings_under(monkeypatch, tmp_path) as var_dir:
        yield var_dir


def test_mapping_export_then_import_round_trips_and_unmapped_lists_nothing_yet(var):
    runner = CliRunner()
    exported = runner.invoke(bridge_cli, ["mapping", "export", "-o", str(var / "m.xlsx")])
    assert exported.exit_code == 0 and (var / "m.xlsx").stat().st_size > 0
    imported = runner.invoke(bridge_cli, ["mapping", "import", str(var / "m.xlsx")])
    assert imported.exit_code == 0, imported.output
    assert "imported 20 rules, 0 overrides, 1 area codes; 0 items re-filed" in imported.output
    (var / "bad.xlsx").write_bytes(b"not excel")
    refused = runner.invoke(bridge_cli, ["mapping", "import", str(var / "bad.xlsx")])
    assert refused.exit_code == 1
    listed = runner.invoke(bridge_cli, ["unmapped", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output) == {"unmapped": [], "unreadable": [], "refused": []}


def test_the_portal_router_serves_the_pages_and_refuses_unsigned_webhooks(var):
    # As the portal mounts them: over a runtime it does not start.
    runtime = create_runtime(Settings(var_dir=var))
    client = TestClient(mounted(routes.router, routes.mapping_router, bridge_runtime=runtime, templates=templates()))
    assert client.get("/bridge/unmapped").status_code == 200
    assert client.get("/v1/bridge/mapping.xlsx").headers["content-type"].startswith("application/vnd.openxmlformats")
    assert client.post("/bridge/webhooks/hunan-zwfw", content=b"{}").status_code == 503  # no secret configured: refused


def test_unmapped_lists_the_items_the_gate_refused_with_its_reasons(var):
    store = build_store(get_settings())
    item = Known("43070001000000-430102001000-000-X-1-00", "active", "mapped", False, None, 1, None, title="最低生活保障对象认定", region="430102001")
    with store.transaction() as tx:
        tx.save([item], set())
        tx.record_refusals({item.implementation_code: "发布网关拒绝：data.placements.0.level2_id: 'D14-02-02' is not a level-2 item"})
    listed = CliRunner().invoke(bridge_cli, ["unmapped", "--json"])
    (refused,) = json.loads(listed.output)["refused"]
    assert refused["implementation_code"] == item.implementation_code and refused["name"] == item.title and "D14-02-02" in refused["detail"]
    text = CliRunner().invoke(bridge_cli, ["unmapped"]).output
    assert "1 items refused by the gate" in text and "430102001" in text and "D14-02-02" in text
