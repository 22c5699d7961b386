"""The gate refuses a bridge event, and the bridge hears of it: the real broker, the publisher
process's gate, the column, and the bridge's refusals listener.

The case is a real one: a township publishes its own catalog edition without a level-2 item
that the bridge's mapping (checked against the standard catalog) files one of its service items
under. That item ends up not live with the gate's reasons listed; its neighbour, filed under an
item the edition kept, stays live. Once the township's catalog has the item again, the next
reconciliation sends the refused item again and it goes through.
"""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from contracts.catalog import regions_of_city
from contracts.events import TOPIC_REJECTIONS
from contracts.service_items import ServiceItem
from devtools.platform_simulator import Platform, Served, seed_items
from devtools.platform_simulator import create_app as simulator_app
from services.bridge.app import create_app, create_runtime
from services.bridge.mapping import MappingTable, map_item
from services.bridge.rejections import group_for
from services.bridge.store import REFUSED
from services.column.store import documents
from services.common.kafka import idempotent_producer
from services.common.settings import BridgeSettings
from tests.integration.conftest import wait_for

PLATFORM = "refusals-it"  # a platform of its own: its publications are not test_bridge's
SOURCE = f"/bridge/{PLATFORM}"
REGIONS = {r.code: r for r in regions_of_city("4301")}
COUNTY, TOWNSHIP = "430121", "430121001"  # 长沙县 星沙街道: no other test localises it
DROPPED = "D14-02-02"  # 最低生活保障 / 办事指南, where the mapping files 最低生活保障对象认定


@pytest.fixture
def township_catalog(stack):
    """The township's own edition without DROPPED; `restore()` (also at teardown) publishes a
    newer one derived from what it inherited before, so other tests see the catalog unchanged."""
    client, tag = stack.client, uuid.uuid4().hex[:8]
    inherited = client.get(f"/v1/regions/{TOWNSHIP}/catalog").json()
    assert client.post(f"/v1/catalogs/{TOWNSHIP}/it-{tag}-a/derive", json={}).status_code == 201
    assert client.patch(f"/v1/catalogs/{TOWNSHIP}/it-{tag}-a", json={"drop": [DROPPED]}).status_code == 200
    assert client.post(f"/v1/catalogs/{TOWNSHIP}/it-{tag}-a/publish").status_code == 200
    restored = []

    def restore() -> None:
        if restored:
            return
        parent = f"{inherited['scope']}@{inherited['edition']}"
        assert client.post(f"/v1/catalogs/{TOWNSHIP}/it-{tag}-b/derive", json={"parent": parent}).status_code == 201
        assert client.post(f"/v1/catalogs/{TOWNSHIP}/it-{tag}-b/publish").status_code == 200
        restored.append(True)

    # No waiting: the publisher process checks the next event against the edition just published.
    try:
        yield restore
    finally:
        restore()


def township_items() -> tuple[dict, dict]:
    """Two of the township's items: one filed under DROPPED, one under an item the edition keeps."""
    table = MappingTable.defaults()
    docs = seed_items(100, seed=3, regions=(REGIONS[COUNTY], REGIONS[TOWNSHIP]))
    filed = {d["implementation_code"]: map_item(ServiceItem.model_validate(d), table, REGIONS).placements for d in docs if d["area_code"].startswith(TOWNSHIP)}
    refused = next(d for d in docs if [p.level2_id for p in filed.get(d["implementation_code"], ())] == [DROPPED])
    accepted = next(d for d in docs if filed.get(d["implementation_code"]) and DROPPED not in {p.level2_id for p in filed[d["implementation_code"]]})
    return refused, accepted


def column_status(stack, code: str) -> str | None:
    """The column's status of the item's publication from this platform (None: there is none)."""
    with stack.column.engine.connect() as connection:
        rows = connection.execute(select(documents.c.status, documents.c.document)).all()
    found = [status for status, document in rows if document and (document["source_ref"]["source"], document["source_ref"]["ref"]) == (SOURCE, code)]
    return found[0] if found else None


@pytest.fixture
def bridge(stack):
    refused, accepted = township_items()
    platform = Platform([refused, accepted], seed=3)
    producer = idempotent_producer(stack.bootstrap)
    with Served(simulator_app(platform)) as simulator:
        settings = BridgeSettings(platform=PLATFORM, platform_url=simulator.url, relay_interval=0.05)
        runtime = create_runtime(stack.settings.model_copy(update={"bridge": settings}), producer=producer, listen=True).start(poll=False)
        try:
            yield runtime, refused["implementation_code"], accepted["implementation_code"]
        finally:
            runtime.shutdown()
            producer.close()


def test_an_item_the_gate_refuses_is_taken_back_with_the_reasons_and_sent_again_once_fixed(stack, township_catalog, bridge):
    runtime, refused, accepted = bridge
    assert runtime.bridge.poll().events == 2

    wait_for(lambda: runtime.store.problems(REFUSED), timeout=60, what="the gate's refusal to reach the bridge")
    wait_for(lambda: column_status(stack, accepted) == "published", timeout=60, what="the accepted item in the column")
    known = runtime.store.all_known()
    assert not known[refused].live and known[refused].content_hash is None
    assert known[accepted].live and known[accepted].content_hash
    (problem,) = runtime.store.problems(REFUSED)
    assert problem["implementation_code"] == refused and DROPPED in problem["detail"] and "level2_id" in problem["detail"]
    assert column_status(stack, refused) is None
    status = runtime.store.status()
    assert status["refused"] == 1 and status["live"] == 1
    listed = TestClient(create_app(runtime)).get("/v1/bridge/unmapped").json()
    assert [(r["implementation_code"], r["region"]) for r in listed["refused"]] == [(refused, TOWNSHIP)] and DROPPED in listed["refused"][0]["detail"]

    # The listener's group committed past the refusal only after acting on it.
    (record,) = [r for r in stack.read_topic(TOPIC_REJECTIONS) if json.loads(r.value)["data"].get("original_id") == known[refused].last_event_id]
    stack.wait_consumed(TOPIC_REJECTIONS, record.partition, record.offset, groups=(group_for(PLATFORM),))

    # The township's catalog has the item again: reconciliation sends it, and it goes through.
    township_catalog()
    assert runtime.bridge.reconcile().events == 1
    wait_for(lambda: column_status(stack, refused) == "published", timeout=60, what="the item sent again in the column")
    assert runtime.store.problems() == [] and runtime.store.all_known()[refused].live
    assert column_status(stack, accepted) == "published" and runtime.store.status()["live"] == 2
