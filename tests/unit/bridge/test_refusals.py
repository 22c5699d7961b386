"""The gate's refusals of the bridge's own events: only a refusal of an item's latest event
counts; it takes the item back (as it was before that event), shows the gate's reasons, and the
next reconciliation sends the item again. No broker: the store is real, the gate's rejection
comes from the gate's own code."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from contracts.catalog import STANDARD, localise, regions_of_city, standard_catalog
from contracts.events import SERVICE_ITEM_CHANGED, FieldError, RejectedEvent, RejectionData
from contracts.identity import Principal
from contracts.service_items import ServiceItem
from devtools.platform_simulator import Platform, Served, seed_items
from devtools.platform_simulator import create_app as simulator_app
from services.bridge import store as store_module
from services.bridge.app import create_app, create_runtime
from services.bridge.detect import Gone, Seen, decide
from services.bridge.mapping import MappingTable, map_item
from services.bridge.refusals import parse_rejection, reasons, refuse
from services.bridge.store import REFUSED, UNREADABLE
from services.common.db import create_store_engine
from services.common.settings import BridgeSettings, Settings
from services.publisher.gate import service_items
from services.publisher.gate.domain import Directory
from services.publisher.store import Publisher

SOURCE = "/bridge/hunan-zwfw"
REGIONS = {r.code: r for r in regions_of_city("4301")}
TABLE = MappingTable.defaults()
ACTOR = Principal(user="bridge:hunan-zwfw", roles=("editor",), regions=("4301",))
ITEMS = [ServiceItem.model_validate(d) for d in seed_items(60, seed=11)]
MAPPED = next(i for i in ITEMS if map_item(i, TABLE, REGIONS).mapped)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
NOT_IN_CATALOG = FieldError(
    loc=("data", "placements", 0, "level2_id"),
    msg="'D14-02-02' is not a level-2 item of 社会救助 / 最低生活保障",
    type="catalog.unknown_level2",
    choices=({"id": "D14-02-01", "name": "政策文件"}, {"id": "D14-02-03", "name": "审核结果公示"}),
)


# --- the decision (pure) ----------------------------------------------------------------------
def emitted(known, item=MAPPED, *, version=1, status="active", event_id="evt-1"):
    """What _apply stores: decide's record, stamped with the id of the event it emitted."""
    observed = Gone(item.implementation_code) if status == "gone" else Seen(item, status, version, T0)
    outcome = decide(known, observed, map_item(item, TABLE, REGIONS) if status == "active" else None, platform="hunan-zwfw", actor=ACTOR)
    assert outcome.event is not None, outcome.kind
    return replace(outcome.record, last_event_id=event_id)


def rejection(event_id="evt-1", *, source=SOURCE, code=MAPPED.implementation_code, errors=(NOT_IN_CATALOG,)) -> RejectionData:
    return RejectionData(original_id=event_id, original_type=SERVICE_ITEM_CHANGED, original_source=source, source_ref=code, errors=errors)


def test_a_refusal_of_the_latest_event_takes_a_new_item_out_and_it_is_sent_again():
    sent = emitted(None)
    assert sent.live and sent.content_hash
    outcome = refuse(sent, rejection(), source=SOURCE)
    assert outcome.kind == "refused" and not outcome.record.live and outcome.record.content_hash is None
    assert "data.placements.0.level2_id" in outcome.detail and "D14-02-01 政策文件" in outcome.detail
    # The same state observed again is no longer "unchanged": it goes to the gate once more.
    again = decide(outcome.record, Seen(MAPPED, "active", 1, T0), map_item(MAPPED, TABLE, REGIONS), platform="hunan-zwfw", actor=ACTOR)
    assert again.kind == "changed" and again.record.live


def test_a_late_refusal_of_an_older_event_changes_nothing():
    first = emitted(None, event_id="evt-1")
    newer = emitted(first, MAPPED.model_copy(update={"name": MAPPED.name + "（新）"}), version=2, event_id="evt-2")
    outcome = refuse(newer, rejection("evt-1"), source=SOURCE)
    assert outcome.kind == "stale" and outcome.record is None and outcome.detail is None
    # Items stored before the bridge remembered event ids: nothing to compare with, so nothing counts.
    assert refuse(replace(first, last_event_id=None), rejection("evt-1"), source=SOURCE).kind == "stale"


def test_refusals_of_other_sources_or_unknown_items_are_not_ours():
    sent = emitted(None)
    assert refuse(sent, rejection(source="/bridge/guangdong-zwfw"), source=SOURCE).kind == "not_ours"
    assert refuse(sent, rejection(source="/cms/furong"), source=SOURCE).kind == "not_ours"
    assert refuse(sent, rejection(code=None), source=SOURCE).kind == "not_ours"
    assert refuse(None, rejection(), source=SOURCE).kind == "unknown"


def test_the_same_refusal_twice_changes_nothing_more():
    first = refuse(emitted(None), rejection(), source=SOURCE)
    second = refuse(first.record, rejection(), source=SOURCE)
    assert second.kind == "repeated" and second.record is None


def test_a_refused_revision_leaves_the_earlier_publication_live_so_a_revocation_still_withdraws_it():
    accepted = emitted(None, event_id="evt-1")
    revised = emitted(accepted, MAPPED.model_copy(update={"name": MAPPED.name + "（新）"}), version=2, event_id="evt-2")
    outcome = refuse(revised, rejection("evt-2"), source=SOURCE)
    assert outcome.kind == "refused" and outcome.record.live and outcome.record.content_hash is None
    revoked = decide(outcome.record, Seen(MAPPED, "revoked", 3, T0), None, platform="hunan-zwfw", actor=ACTOR)
    assert revoked.kind == "revoked" and revoked.event.revoked


def test_a_refused_withdrawal_is_sent_again():
    revoked = emitted(emitted(None), version=2, status="revoked", event_id="evt-2")
    assert not revoked.live
    outcome = refuse(revoked, rejection("evt-2"), source=SOURCE)
    assert outcome.record.live  # as far as the bridge knows, the publication is still there
    assert decide(outcome.record, Seen(MAPPED, "revoked", 2, T0), None, platform="hunan-zwfw", actor=ACTOR).kind == "revoked"
    gone = emitted(emitted(None), status="gone", event_id="evt-3")
    assert (
        decide(refuse(gone, rejection("evt-3"), source=SOURCE).record, Gone(MAPPED.implementation_code), None, platform="hunan-zwfw", actor=ACTOR).kind
        == "revoked"
    )


def test_only_rejections_are_read_off_the_topic_and_reasons_stay_short():
    event = RejectedEvent(id="r1", source="/publisher", data=rejection())
    assert parse_rejection(event.model_dump_json(exclude_none=True).encode()) == rejection()
    assert parse_rejection(b"{nope") is None and parse_rejection(b"[]") is None
    published = {"specversion": "1.0", "id": "p1", "source": "/publisher", "type": "cn.gov.tongyuan.publication.published.v1", "data": {}}
    assert parse_rejection(json.dumps(published).encode()) is None
    many = [
        FieldError(loc=("data", "placements", i), msg="x" * 200, type="t", choices=tuple({"id": str(j), "name": "n"} for j in range(20))) for i in range(10)
    ]
    assert len(reasons(many)) == 1000 and reasons([]).startswith("发布网关拒绝")


# --- the handler, against the store and the gate's own rejection ---------------------------------
@pytest.fixture
def world(tmp_path):
    platform = Platform(seed_items(120, seed=5), seed=5)
    with Served(simulator_app(platform)) as served:
        runtime = create_runtime(Settings(var_dir=tmp_path, bridge=BridgeSettings(platform_url=served.url, timeout=0.5, page_size=40)))
        yield platform, runtime
        runtime.bridge.client.close()


def latest_events(runtime) -> dict[str, bytes]:
    with runtime.store.engine.connect() as connection:
        return {key: payload.encode() for key, payload in connection.exec_driver_sql("SELECT key, payload FROM bridge_outbox ORDER BY id")}


def snapshot(runtime) -> tuple:
    with runtime.store.engine.connect() as connection:
        return (
            connection.execute(select(store_module.items).order_by(store_module.items.c.implementation_code)).all(),
            connection.execute(select(store_module.problems)).all(),
            connection.execute(text("SELECT count(*) FROM bridge_outbox")).scalar(),
        )


def the_gate_refuses(runtime, tmp_path, codes: list[str]) -> dict[str, bytes]:
    """Put the items' latest events through the gate with a catalog lacking the first one's
    level-2 item (as a county's own edition might); the rejections as they go on the topic."""
    known = runtime.store.all_known()
    dropped = known[codes[0]].placements[0].level2_id
    catalog = localise(standard_catalog(), drop={dropped})
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    events = latest_events(runtime)
    outcomes = service_items.handle_service_item_batch([events[c] for c in codes], publisher=publisher, directory=Directory({STANDARD: catalog}, REGIONS))
    return {code: o.rejection.model_dump_json(exclude_none=True).encode() for code, o in zip(codes, outcomes, strict=True) if o.rejection is not None}


def test_a_refused_item_is_taken_back_shown_with_the_reasons_and_sent_again_by_reconciliation(world, tmp_path):
    platform, runtime = world
    runtime.bridge.poll()
    known = runtime.store.all_known()
    live = sorted(c for c, k in known.items() if k.live)
    refused_code = live[0]
    dropped = known[refused_code].placements[0].level2_id
    accepted_code = next(c for c in live if all(p.level2_id != dropped for p in known[c].placements))
    raws = the_gate_refuses(runtime, tmp_path, [refused_code, accepted_code])
    assert set(raws) == {refused_code}
    live_before = runtime.store.status()["live"]

    outcomes = runtime.bridge.on_rejections([parse_rejection(raws[refused_code]), rejection("evt-never-ours", source="/bridge/other", code=accepted_code)])
    assert outcomes["refused"] == 1 and outcomes["not_ours"] == 1
    after = runtime.store.all_known()
    assert not after[refused_code].live and after[refused_code].content_hash is None
    assert after[accepted_code] == known[accepted_code]
    status = runtime.store.status()
    assert status["live"] == live_before - 1 and status["refused"] == 1 and status["unreadable"] == 0
    (problem,) = runtime.store.problems(REFUSED)
    assert problem["implementation_code"] == refused_code and "level2_id" in problem["detail"]
    assert runtime.store.problems(UNREADABLE) == []
    client = TestClient(create_app(runtime))
    listed = client.get("/v1/bridge/unmapped").json()
    assert [r["implementation_code"] for r in listed["refused"]] == [refused_code] and listed["unreadable"] == []
    assert listed["refused"][0]["name"] == after[refused_code].title and listed["status"]["refused"] == 1
    page = client.get("/bridge/unmapped").text
    assert refused_code in page and "被发布网关拒绝的事项" in page

    # Delivered again (a redelivery after a crash before the commit): nothing changes.
    before = snapshot(runtime)
    assert runtime.bridge.on_rejections([parse_rejection(raws[refused_code])])["repeated"] == 1
    assert snapshot(runtime) == before

    # Polling has nothing new to fetch; reconciliation sends the item again, and the refusal,
    # which was about the previous event, is no longer shown.
    assert runtime.bridge.poll().events == 0
    assert runtime.bridge.reconcile().events == 1
    resent = runtime.store.all_known()[refused_code]
    assert resent.live and resent.content_hash and resent.last_event_id != after[refused_code].last_event_id
    assert json.loads(latest_events(runtime)[refused_code])["id"] == resent.last_event_id
    assert runtime.store.problems() == [] and runtime.store.status()["refused"] == 0
    # The old refusal arriving late does not undo the new event.
    assert runtime.bridge.on_rejections([parse_rejection(raws[refused_code])])["stale"] == 1
    assert runtime.store.all_known()[refused_code].live


def test_a_new_event_clears_the_refusal_of_the_one_before(world, tmp_path):
    platform, runtime = world
    runtime.bridge.poll()
    code = sorted(c for c, k in runtime.store.all_known().items() if k.live)[0]
    runtime.bridge.on_rejections([parse_rejection(the_gate_refuses(runtime, tmp_path, [code])[code])])
    assert [p["implementation_code"] for p in runtime.store.problems(REFUSED)] == [code]
    platform.edit(code, note="新的说明")
    assert runtime.bridge.poll().events == 1
    assert runtime.store.problems() == [] and runtime.store.all_known()[code].live


def test_a_refused_revision_keeps_the_item_live_and_a_mapping_import_sends_it_again(world):
    platform, runtime = world
    runtime.bridge.poll()
    code = sorted(c for c, k in runtime.store.all_known().items() if k.live)[0]
    platform.edit(code, note="修订")
    assert runtime.bridge.poll().events == 1
    revision = runtime.store.all_known()[code]
    assert runtime.bridge.on_rejections([rejection(revision.last_event_id, code=code)])["refused"] == 1
    refused = runtime.store.all_known()[code]
    assert refused.live and refused.content_hash is None  # the first version is still in the column
    assert runtime.store.refused()[0]["live"]
    assert runtime.bridge.remap().events == 1 and runtime.store.all_known()[code].content_hash == revision.content_hash


def test_a_refused_withdrawal_is_sent_again_by_reconciliation_whether_revoked_or_deleted(world):
    platform, runtime = world
    runtime.bridge.poll()
    revoked, deleted = sorted(c for c, k in runtime.store.all_known().items() if k.live)[:2]
    platform.revoke(revoked)
    platform.delete(deleted)
    assert runtime.bridge.reconcile().outcomes["revoked"] == 2
    withdrawn = runtime.store.all_known()
    assert not withdrawn[revoked].live and withdrawn[deleted].state == "gone"
    refused = [rejection(withdrawn[c].last_event_id, code=c) for c in (revoked, deleted)]
    assert runtime.bridge.on_rejections(refused)["refused"] == 2
    # As far as the bridge knows both publications are still in the column: it withdraws them again.
    assert all(runtime.store.all_known()[c].live for c in (revoked, deleted))
    again = runtime.bridge.reconcile()
    assert again.outcomes["revoked"] == 2 and runtime.store.problems() == []
    assert not any(runtime.store.all_known()[c].live for c in (revoked, deleted))
    assert runtime.bridge.reconcile().events == 0  # and stops there
