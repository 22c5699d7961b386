"""The bridge against the simulator over real HTTP (no broker): bad weather, cursors, reconciliation,
unreadable records, re-mapping, the relay, and the pages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from jinja2 import Environment, FileSystemLoader, select_autoescape

from contracts.catalog import regions_of_city
from contracts.service_items import GUIDE_SECTIONS, ServiceItem
from devtools.platform_simulator import Faults, Platform, Served, seed_items
from devtools.platform_simulator import create_app as simulator_app
from services.bridge.app import create_app, create_runtime
from services.bridge.detect import content_hash
from services.bridge.mapping import MappingTable, Rule, Target, map_item, to_xlsx
from services.bridge.relay import BridgeRelay
from services.common.auth import build_verifier
from services.common.settings import BridgeSettings, Settings
from tests.conftest import ADMIN

REGIONS = {r.code: r for r in regions_of_city("4301")}


@pytest.fixture
def world(tmp_path):
    platform = Platform(seed_items(240, seed=5), seed=5)
    with Served(simulator_app(platform)) as served:
        runtime = create_runtime(
            Settings(
                var_dir=tmp_path, bridge=BridgeSettings(platform_url=served.url, timeout=0.25, page_size=40, attempts=8, concurrency=6, overlap_seconds=0.5)
            )
        )
        yield platform, runtime
        runtime.bridge.client.close()


def outbox(runtime) -> dict[str, dict]:
    """The last event per item, as the gate would end up applying them."""
    last = {}
    with runtime.store.engine.connect() as connection:
        for key, payload in connection.exec_driver_sql("SELECT key, payload FROM bridge_outbox ORDER BY id"):
            last[key] = json.loads(payload)["data"]
    return last


def mirror_problems(platform: Platform, runtime) -> list[str]:
    """Every active mapped item live at its current content; everything else not live."""
    table, problems = runtime.store.mapping(), []
    events, known = outbox(runtime), runtime.store.all_known()
    for code, truth in platform.state().items():
        item = ServiceItem.model_validate(truth["document"])
        mapping = map_item(item, table, REGIONS)
        record = known.get(code)
        if truth["status"] == "active" and mapping.mapped:
            digest = content_hash(item, mapping.placements)
            if record is None or not record.live or record.content_hash != digest:
                problems.append(f"stale or missing in store: {code}")
            elif events.get(code, {}).get("content_hash") != digest:
                problems.append(f"stale or missing in outbox: {code}")
        elif record is not None and record.live:
            problems.append(f"still live: {code} ({truth['status']}, mapped={mapping.mapped})")
    for code, record in known.items():
        if code not in platform.items and record.live:
            problems.append(f"deleted on the platform but live: {code}")
    return problems


def test_every_kind_of_bad_weather_ends_exactly_mirrored(world):
    platform, runtime = world
    # Per response: a few percent for request-level faults, more for those rolled once per page.
    platform.faults = Faults(
        timeout=0.04, error=0.04, truncated=0.04, malformed=0.04, duplicate_page=0.3, reorder=0.3, delete_between=0.3, cursor_backwards=0.1, hang_seconds=0.4
    )
    runtime.bridge.poll()
    platform.churn(60)
    runtime.bridge.poll()
    platform.churn(30)
    runtime.bridge.reconcile()
    platform.faults = Faults()  # the weather clears; one more round repairs what the storm hid
    runtime.bridge.reconcile()
    assert set(platform.fault_log) == {"timeout", "error", "truncated", "malformed", "duplicate_page", "reorder", "delete_between", "cursor_backwards"}
    assert runtime.bridge.client.retries > 0
    assert mirror_problems(platform, runtime) == []
    assert runtime.store.problems() == []
    # Nothing happened since: another reconciliation emits nothing.
    assert runtime.bridge.reconcile().events == 0


def test_the_cursor_advances_only_with_the_events_and_never_backwards(world, monkeypatch):
    platform, runtime = world
    from services.bridge import store as store_module

    def refuse(self, rows):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_module.BridgeTransaction, "add_events", refuse)
    with pytest.raises(RuntimeError):
        runtime.bridge.poll()
    assert runtime.store.cursor() is None and runtime.store.all_known() == {}  # nothing half-written
    monkeypatch.undo()
    first = runtime.bridge.poll()
    cursor = runtime.store.cursor()
    assert first.events > 0 and cursor == max(h.updated_at for h in platform.items.values())
    platform.faults = Faults(cursor_backwards=1.0)  # the platform hands out a cursor two days back
    runtime.bridge.poll()
    assert runtime.store.cursor() == cursor


def test_a_change_hidden_behind_the_cursor_is_repaired_by_reconciliation(world):
    platform, runtime = world
    runtime.bridge.poll()
    code = next(c for c, k in runtime.store.all_known().items() if k.live)
    platform.skew = timedelta(hours=1)  # the platform's clock went back
    platform.items[code].version += 1
    platform.items[code].document = {**platform.items[code].document, "name": platform.items[code].document["name"] + "（变更）"}
    platform.items[code].updated_at = platform._now()
    platform.skew = timedelta(0)
    assert runtime.bridge.poll().events == 0  # polling cannot see it: it is older than the cursor
    repaired = runtime.bridge.reconcile()
    assert repaired.outcomes["changed"] == 1 and outbox(runtime)[code]["item"]["name"].endswith("（变更）")


def test_an_item_deleted_between_list_and_detail_is_withdrawn(world, monkeypatch):
    platform, runtime = world
    runtime.bridge.poll()
    live = [c for c, k in runtime.store.all_known().items() if k.live]
    platform.edit(live[0])
    real = platform.list_page

    def then_delete(*args):  # the delete_between fault, aimed at the item that just changed
        body, _ = real(*args)
        return body, [live[0]] if any(i.get("implementation_code") == live[0] for i in body["items"]) else []

    monkeypatch.setattr(platform, "list_page", then_delete)
    report = runtime.bridge.poll()
    assert live[0] not in platform.items
    assert report.outcomes["revoked"] == 1 and outbox(runtime)[live[0]]["revoked"] is True
    assert not runtime.store.all_known()[live[0]].live and runtime.store.all_known()[live[0]].state == "gone"
    assert mirror_problems(platform, runtime) == []


def test_a_record_that_stays_unreadable_is_reported_until_it_reads(world, monkeypatch):
    platform, runtime = world
    code = next(c for c, h in platform.items.items() if map_item(ServiceItem.model_validate(h.document), MappingTable.defaults(), REGIONS).mapped)
    real = platform.detail

    def broken(asked):
        body = real(asked)
        return {**body, "guide": "（数据缺失）"} if asked == code else body

    monkeypatch.setattr(platform, "detail", broken)
    report = runtime.bridge.poll()
    assert code in report.unreadable and code not in outbox(runtime)
    assert [p["implementation_code"] for p in runtime.store.problems()] == [code]
    page = TestClient(create_app(runtime)).get("/bridge/unmapped")
    assert page.status_code == 200 and code in page.text
    monkeypatch.setattr(platform, "detail", real)
    runtime.bridge.reconcile()
    assert runtime.store.problems() == [] and code in outbox(runtime)


def test_unmapped_items_are_reported_and_a_new_rule_publishes_them(world, tmp_path):
    platform, runtime = world
    runtime.bridge.poll()
    unmapped = runtime.store.unmapped()
    assert unmapped and all(k.reason and not k.live for k in unmapped)
    verifier, local = build_verifier(Settings(var_dir=tmp_path))
    client = TestClient(create_app(runtime, verifier=verifier))
    client.headers["Authorization"] = f"Bearer {local.mint(ADMIN, audience=Settings().auth_audience)}"
    listed = client.get("/v1/bridge/unmapped").json()["unmapped"]
    assert {u["implementation_code"] for u in listed} == {k.implementation_code for k in unmapped}
    page = client.get("/bridge/unmapped").text
    assert unmapped[0].implementation_code in page and "映射规则" in page
    basic = unmapped[0].document["basic_code"]
    table = runtime.store.mapping()
    ruled = MappingTable(rules=(*table.rules, Rule(Target("D18-01-03"), basic_code=basic)), overrides=table.overrides, areas=table.areas)
    response = client.put("/v1/bridge/mapping.xlsx", content=to_xlsx(ruled))
    assert response.status_code == 200, response.text
    newly = {k.implementation_code for k in unmapped if k.document["basic_code"] == basic}
    assert response.json()["remap"]["events"] == len(newly)
    assert newly <= set(outbox(runtime)) and not newly & {k.implementation_code for k in runtime.store.unmapped()}
    bad = client.put("/v1/bridge/mapping.xlsx", content=b"garbage")
    assert bad.status_code == 422 and runtime.store.mapping() == ruled


class FakeProducer:
    def __init__(self, fail_at: int | None = None):
        self.sent, self.fail_at = [], fail_at

    def send(self, topic, *, key, value, headers):
        producer = self

        class Future:
            def get(self, timeout=None):
                if producer.fail_at is not None and len(producer.sent) >= producer.fail_at:
                    raise TimeoutError("no ack")
                producer.sent.append((topic, key, value))

        return Future()

    def flush(self, timeout=None):
        pass


def test_the_relay_marks_rows_sent_only_after_the_ack_and_keeps_order(world):
    platform, runtime = world
    runtime.bridge.poll()
    backlog = runtime.store.outbox_backlog()
    assert backlog > 10
    failing = BridgeRelay(runtime.store, FakeProducer(fail_at=5), batch_size=1000)
    assert failing.relay_once() == 5 and runtime.store.outbox_backlog() == backlog - 5
    producer = FakeProducer()
    relay = BridgeRelay(runtime.store, producer, batch_size=1000)
    assert relay.relay_once() == backlog - 5 and runtime.store.outbox_backlog() == 0
    topic, key, value = producer.sent[0]
    event = json.loads(value)
    assert topic == "tongyuan.service-items.v1" and key.decode() == event["subject"] == event["data"]["implementation_code"]
    assert event["type"] == "cn.gov.tongyuan.service-item.changed.v1" and event["source"] == "/bridge/hunan-zwfw"


def test_the_service_guide_partial_shows_every_section_in_order_and_links_to_online_application():
    from services.publisher.gate.service_items import service_guide

    item = ServiceItem.model_validate(seed_items(5, seed=2)[0])
    env = Environment(loader=FileSystemLoader("services/bridge/templates"), autoescape=select_autoescape(default=True))
    doc = type("Doc", (), {"service_guide": service_guide(item)})
    page = env.get_template("bridge/service_guide.html").render(doc=doc)
    positions = [page.index(f"<h3>{title}</h3>") for _, title in GUIDE_SECTIONS]
    assert positions == sorted(positions)
    assert f'href="{item.guide.online_url}"' in page
    for material in item.guide.materials:
        assert material.name in page
        if material.blank_form_url:
            assert f'href="{material.blank_form_url}"' in page
    assert item.guide.legal_time_limit in page and item.guide.promised_time_limit in page and item.guide.consult_phone in page
    hostile = service_guide(item.model_copy(update={"name": "<script>alert(1)</script>"}))
    assert "<script>alert(1)" not in env.get_template("bridge/service_guide.html").render(doc=type("Doc", (), {"service_guide": hostile}))
