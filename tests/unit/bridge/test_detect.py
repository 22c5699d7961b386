"""Change detection: only real changes emit, stale observations never win, revocations withdraw."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from contracts.catalog import regions_of_city
from contracts.identity import Principal
from contracts.service_items import ServiceItem
from devtools.platform_simulator import seed_items
from services.bridge.detect import Gone, Seen, content_hash, decide
from services.bridge.mapping import MappingTable, Override, map_item

REGIONS = {r.code: r for r in regions_of_city("4301")}
TABLE = MappingTable.defaults()
ACTOR = Principal(user="bridge:hunan-zwfw", roles=("editor",), regions=("4301",))
ITEMS = [ServiceItem.model_validate(d) for d in seed_items(60, seed=11)]
MAPPED = next(i for i in ITEMS if map_item(i, TABLE, REGIONS).mapped)
UNMAPPED = next(i for i in ITEMS if not map_item(i, TABLE, REGIONS).mapped)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def seen(item, version=1, status="active", at=T0, table=TABLE):
    observed = Seen(item, status, version, at)
    mapping = map_item(item, table, REGIONS) if status == "active" else None
    return observed, mapping


def step(known, item, table=TABLE, **kwargs):
    observed, mapping = seen(item, table=table, **kwargs)
    return decide(known, observed, mapping, platform="hunan-zwfw", actor=ACTOR)


def edited(item: ServiceItem, **guide) -> ServiceItem:
    return item.model_copy(update={"guide": item.guide.model_copy(update=guide)})


def test_a_new_mapped_item_emits_and_the_same_state_again_emits_nothing():
    first = step(None, MAPPED)
    assert first.kind == "changed" and first.event.item == MAPPED and first.event.actor == ACTOR
    assert first.record.live and first.record.content_hash == first.event.content_hash
    again = step(first.record, MAPPED, version=2)  # a new platform version with the same content
    assert again.kind == "unchanged" and again.event is None and again.record.version == 2


def test_an_edited_guide_emits_with_a_new_hash():
    first = step(None, MAPPED).record
    changed = step(first, edited(MAPPED, promised_time_limit="1个工作日"), version=2)
    assert changed.kind == "changed" and changed.event.content_hash != first.content_hash
    assert changed.event.content_hash == content_hash(changed.event.item, changed.event.placements)


def test_an_older_version_is_stale_whatever_it_says():
    newer = step(None, edited(MAPPED, consult_phone="0731-80000000"), version=5).record
    older = step(newer, MAPPED, version=4)
    assert older.kind == "stale" and older.record is None and older.event is None
    # Without versions, the platform's time decides.
    timeless = replace(newer, version=None)
    assert (
        decide(timeless, Seen(MAPPED, "active", None, T0 - timedelta(minutes=1)), map_item(MAPPED, TABLE, REGIONS), platform="p", actor=ACTOR).kind == "stale"
    )


def test_revoked_or_deleted_items_are_withdrawn_once_and_only_if_published():
    live = step(None, MAPPED).record
    revoked = step(live, MAPPED, version=2, status="revoked")
    assert revoked.kind == "revoked" and revoked.event.revoked and revoked.event.placements == live.placements
    assert not revoked.record.live and revoked.record.state == "revoked"
    assert step(revoked.record, MAPPED, version=3, status="revoked").kind == "recorded"  # nothing more to withdraw
    gone = decide(live, Gone(MAPPED.implementation_code), None, platform="hunan-zwfw", actor=ACTOR)
    assert gone.kind == "revoked" and gone.record.state == "gone"
    never_published = decide(None, Gone("X"), None, platform="hunan-zwfw", actor=ACTOR)
    assert never_published.kind == "recorded" and never_published.event is None
    # Reinstated on the platform: published again.
    assert step(revoked.record, MAPPED, version=4).kind == "changed"
    # A deleted item that comes back restarts its versions and is not taken for stale.
    assert step(gone.record, MAPPED, version=1).kind == "changed"


def test_unmapped_items_are_recorded_not_dropped_and_emit_once_a_rule_places_them():
    outcome = step(None, UNMAPPED)
    assert outcome.kind == "unmapped" and outcome.event is None
    assert outcome.record.mapping == "unmapped" and outcome.record.reason and outcome.record.document["implementation_code"] == UNMAPPED.implementation_code
    from services.bridge.mapping import Rule, Target

    ruled = MappingTable(rules=(*TABLE.rules, Rule(Target("D18-01-03"), basic_code=UNMAPPED.basic_code)), areas=TABLE.areas)
    assert step(outcome.record, UNMAPPED, table=ruled).kind == "changed"


def test_excluding_a_published_item_withdraws_it():
    live = step(None, MAPPED).record
    excluded = MappingTable(rules=TABLE.rules, overrides=(Override(MAPPED.implementation_code, exclude=True),), areas=TABLE.areas)
    outcome = step(live, MAPPED, table=excluded)
    assert outcome.kind == "revoked" and outcome.record.mapping == "excluded" and not outcome.record.live
