"""The bridge lane of the gate: service-item.changed events through the same gate as CMS requests."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from contracts.catalog import regions_of_city
from contracts.events import PUBLISHED, WITHDRAWN
from contracts.identity import Principal
from contracts.service_items import ServiceItem, ServiceItemChangedData, ServiceItemChangedEvent
from devtools.platform_simulator import seed_items
from services.bridge.detect import Known, Seen, content_hash, decide
from services.bridge.mapping import MappingTable, map_item
from services.common.db import create_store_engine
from services.publisher.gate import service_items
from services.publisher.gate.domain import sanitise_html
from services.publisher.store import Publisher
from services.publisher.tables import outbox, publications

REGIONS = {r.code: r for r in regions_of_city("4301")}
ACTOR = Principal(user="bridge:hunan-zwfw", roles=("editor",), regions=("4301",))
ITEMS = [ServiceItem.model_validate(d) for d in seed_items(40, seed=7)]


@pytest.fixture
def publisher(tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    return publisher


def mapped_item(index: int = 0) -> ServiceItem:
    table = MappingTable.defaults()
    return [i for i in ITEMS if map_item(i, table, REGIONS).mapped][index]


def event(item: ServiceItem, *, revoked: bool = False, actor: Principal = ACTOR, source: str = "/bridge/hunan-zwfw", event_id: str | None = None) -> bytes:
    placements = map_item(item, MappingTable.defaults(), REGIONS).placements
    outcome = decide(
        Known(item.implementation_code, "active", "mapped", True, "0" * 64, 1, None, title=item.name, placements=placements) if revoked else None,
        Seen(item, "revoked" if revoked else "active", 2, datetime(2026, 3, 2, tzinfo=timezone.utc)),
        map_item(item, MappingTable.defaults(), REGIONS),
        platform="hunan-zwfw",
        actor=actor,
    )
    envelope = ServiceItemChangedEvent(
        id=event_id or f"evt-{json.dumps(outcome.event.content_hash)[1:17]}-{revoked}", source=source, subject=item.implementation_code, data=outcome.event
    )
    return envelope.model_dump_json(exclude_none=True).encode()


def canonical(publisher) -> list[dict]:
    with publisher.engine.connect() as connection:
        return [json.loads(p) for (p,) in connection.execute(select(outbox.c.payload).order_by(outbox.c.id))]


def count(publisher) -> int:
    with publisher.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(publications)).scalar_one()


def test_a_service_item_becomes_one_service_publication_keyed_by_its_implementation_code(publisher, directory):
    item = mapped_item()
    (outcome,) = service_items.handle_service_item_batch([event(item)], publisher=publisher, directory=directory)
    assert outcome.accepted is not None and outcome.accepted.version == 1
    (published,) = canonical(publisher)
    data = published["data"]
    assert published["type"] == PUBLISHED
    assert data["source_ref"] == {"source": "/bridge/hunan-zwfw", "ref": item.implementation_code}
    assert data["title"] == item.name and data["publishing_body"] == item.department
    # The whole guide, in order, is in the body (search and guide-unaware consumers use it) …
    body = data["body_html"]
    positions = [
        body.index(title)
        for title in ("基本信息", "受理条件", "申请材料", "办理流程", "办理时限", "办理地点和时间", "收费标准", "设定依据", "咨询监督", "常见问题")
    ]
    assert positions == sorted(positions)
    assert item.guide.conditions[0] in body and item.guide.place in body and str(item.guide.online_url) in body
    assert body == sanitise_html(service_items.guide_html(item))
    # … blank forms are attachments, and the placements are the mapping's.
    assert {a["url"] for a in data["attachments"]} == {str(m.blank_form_url) for m in item.guide.materials if m.blank_form_url}
    assert {(p["region_code"], p["level2_id"]) for p in data["placements"]} == {
        (p.region_code, p.level2_id) for p in map_item(item, MappingTable.defaults(), REGIONS).placements
    }
    assert data["kind"] == "service"
    assert data["service_guide"]["implementation_code"] == item.implementation_code
    assert data["service_guide"]["materials"][0]["name"] == item.guide.materials[0].name


def test_the_same_item_again_is_the_same_publication_and_unchanged_content_adds_no_version(publisher, directory):
    item = mapped_item()
    service_items.handle_service_item_batch([event(item, event_id="a")], publisher=publisher, directory=directory)
    # A new event id with the same content (e.g. the bridge's store was rebuilt): no new version.
    (again,) = service_items.handle_service_item_batch([event(item, event_id="b")], publisher=publisher, directory=directory)
    assert again.accepted.version == 1 and again.accepted.event_id is None
    # A redelivery of the first event changes nothing either.
    (redelivered,) = service_items.handle_service_item_batch([event(item, event_id="a")], publisher=publisher, directory=directory)
    assert redelivered.accepted.event_id is None
    edited = item.model_copy(update={"guide": item.guide.model_copy(update={"promised_time_limit": "3个工作日"})})
    (revised,) = service_items.handle_service_item_batch([event(edited, event_id="c")], publisher=publisher, directory=directory)
    assert revised.accepted.version == 2 and revised.accepted.publication_id == again.accepted.publication_id
    assert count(publisher) == 1
    assert "3个工作日" in canonical(publisher)[-1]["data"]["body_html"]


def test_a_revoked_item_is_withdrawn_and_a_reinstated_one_comes_back(publisher, directory):
    item = mapped_item(1)
    service_items.handle_service_item_batch([event(item, event_id="one")], publisher=publisher, directory=directory)
    (withdrawn,) = service_items.handle_service_item_batch([event(item, revoked=True, event_id="two")], publisher=publisher, directory=directory)
    assert withdrawn.accepted.status == "withdrawn" and withdrawn.accepted.version == 2
    last = canonical(publisher)[-1]
    assert last["type"] == WITHDRAWN and last["data"]["withdrawal_type"] == "withdrawn" and item.implementation_code in last["data"]["explanation"]
    (back,) = service_items.handle_service_item_batch([event(item, event_id="three")], publisher=publisher, directory=directory)
    assert back.accepted.status == "published" and back.accepted.version == 3
    assert count(publisher) == 1


def test_bad_events_are_rejected_with_reasons_and_write_nothing(publisher, directory):
    item = mapped_item()
    not_json = b"{nope"
    wrong_source = event(item, source="/cms/furong", event_id="x1")
    outsider = event(item, actor=Principal(user="someone", roles=("editor",), regions=("430103",)), event_id="x2")
    envelope = json.loads(event(item, event_id="x3"))
    envelope["data"]["placements"][0]["level2_id"] = "D14-02-99"
    envelope["data"]["placements"][0]["level1_id"] = "D14-02"
    envelope["data"]["placements"][0]["domain_code"] = "D14"
    bad_item = json.loads(event(item, event_id="x4"))
    bad_item["data"]["item"]["department_credit_code"] = "11430102000000000X"
    outcomes = service_items.handle_service_item_batch(
        [not_json, wrong_source, outsider, json.dumps(envelope).encode(), json.dumps(bad_item).encode()], publisher=publisher, directory=directory
    )
    assert all(o.rejection is not None for o in outcomes), outcomes
    assert outcomes[1].rejection.data.errors[0].loc == ("source",)
    if item.area_code != "430103000000":
        assert outcomes[2].rejection.data.errors[0].type == "auth.region"
    wrong_item = outcomes[3].rejection.data
    assert wrong_item.source_ref == item.implementation_code and wrong_item.errors[0].loc[-1] == "level2_id"
    assert {"id": "D14-02-02", "name": "办事指南"} in wrong_item.errors[0].choices
    assert any("credit" in str(e.loc) or "credit" in e.msg for e in outcomes[4].rejection.data.errors)
    assert count(publisher) == 0 and canonical(publisher) == []


def test_a_change_without_placements_or_item_does_not_validate():
    item = mapped_item()
    with pytest.raises(ValueError):
        ServiceItemChangedData(platform="hunan-zwfw", implementation_code=item.implementation_code, content_hash="0" * 64, actor=ACTOR)
    with pytest.raises(ValueError):
        ServiceItemChangedData(platform="hunan-zwfw", implementation_code=item.implementation_code, content_hash="0" * 64, item=item, actor=ACTOR)
    ok = ServiceItemChangedData(
        platform="hunan-zwfw", implementation_code=item.implementation_code, content_hash=content_hash(item, ()), revoked=True, title=item.name, actor=ACTOR
    )
    assert ok.item is None
