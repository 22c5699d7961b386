"""Change detection (pure): what the bridge knows about an item, what it just observed on the
platform, and what follows — an event, a record update, or nothing.

The content hash covers the item as the platform serves it *and* the placements the mapping
chose, so a changed guide and a changed mapping both emit; the same state twice emits nothing.
A platform version older than the one already seen is stale and ignored (duplicated pages,
a detail fetched before a newer webhook's, a clock that went backwards).

Every event also records whether the item was live before it: that is what a refusal of the
event by the gate leaves behind (refusals.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime

from contracts.events import PlacementRef
from contracts.identity import Principal
from contracts.service_items import ServiceItem, ServiceItemChangedData

from .mapping import MappingResult


@dataclass(frozen=True)
class Known:
    """The bridge's record of one item (one row of bridge_items)."""

    implementation_code: str
    state: str  # active | revoked | gone | unreadable
    mapping: str  # mapped | unmapped | excluded | unknown
    live: bool  # a live publication exists because of us (emitted, not revoked since)
    content_hash: str | None  # of the last state emitted
    version: int | None
    updated_at: datetime | None
    title: str | None = None
    region: str | None = None
    placements: tuple[PlacementRef, ...] = ()
    reason: str | None = None
    rule: str = ""
    document: dict | None = None  # the item as last read, to re-map without asking the platform
    last_event_id: str | None = None  # of the latest event emitted: only its refusal counts
    live_before_event: bool = False  # what a refusal of that event puts back


@dataclass(frozen=True)
class Seen:
    """The platform serves the item (active or revoked)."""

    item: ServiceItem
    status: str  # active | revoked
    version: int | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Gone:
    """The platform no longer has the item at all (404 confirmed, or absent from a full listing)."""

    implementation_code: str


@dataclass(frozen=True)
class Outcome:
    kind: str  # changed | revoked | unchanged | stale | unmapped | excluded | recorded
    record: Known | None  # None: leave the stored record as it is
    event: ServiceItemChangedData | None = None


def content_hash(item: ServiceItem, placements: tuple[PlacementRef, ...]) -> str:
    canonical = {
        "item": item.model_dump(mode="json"),
        "placements": sorted((p.region_code, p.level2_id) for p in placements),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def revocation_hash(implementation_code: str) -> str:
    return hashlib.sha256(json.dumps({"revoked": implementation_code}).encode()).hexdigest()


def is_stale(known: Known | None, version: int | None, updated_at: datetime | None) -> bool:
    if known is None or known.state == "gone":  # a deleted item may come back with its versions restarted
        return False
    if version is not None and known.version is not None:
        return version < known.version
    return updated_at is not None and known.updated_at is not None and updated_at < known.updated_at


def decide(known: Known | None, observed: Seen | Gone, mapping: MappingResult | None, *, platform: str, actor: Principal) -> Outcome:
    if isinstance(observed, Gone):
        return _ended(known, observed.implementation_code, "gone", None, None, platform, actor)
    item = observed.item
    if is_stale(known, observed.version, observed.updated_at):
        return Outcome("stale", None)
    if observed.status == "revoked":
        return _ended(known, item.implementation_code, "revoked", observed.version, observed.updated_at, platform, actor, item=item)
    assert mapping is not None, "an active item needs its mapping"
    record = Known(
        implementation_code=item.implementation_code,
        state="active",
        mapping="mapped" if mapping.mapped else ("excluded" if mapping.excluded else "unmapped"),
        live=known.live if known else False,
        content_hash=known.content_hash if known else None,
        version=observed.version,
        updated_at=observed.updated_at,
        title=item.name,
        region=mapping.region,
        placements=mapping.placements if mapping.mapped else (known.placements if known else ()),
        reason=mapping.reason,
        rule=mapping.rule,
        document=item.model_dump(mode="json"),
        last_event_id=known.last_event_id if known else None,
        live_before_event=known.live_before_event if known else False,
    )
    if mapping.excluded:
        if record.live:  # an office decided it is not to be published: withdraw what we published
            return Outcome("revoked", _withdrawing(record, item.implementation_code), _revocation(record, platform, actor))
        return Outcome("excluded", record)
    if not mapping.mapped:
        # Whatever we published stays as it was; the item is reported until a rule places it.
        return Outcome("unmapped", record)
    digest = content_hash(item, mapping.placements)
    if record.live and digest == record.content_hash:
        return Outcome("unchanged", record)
    event = ServiceItemChangedData(
        platform=platform,
        implementation_code=item.implementation_code,
        content_hash=digest,
        item=item,
        title=item.name,
        placements=mapping.placements,
        platform_updated_at=observed.updated_at,
        actor=actor,
    )
    return Outcome("changed", replace(record, live=True, content_hash=digest, live_before_event=record.live), event)


def _ended(
    known: Known | None,
    code: str,
    state: str,
    version: int | None,
    updated_at: datetime | None,
    platform: str,
    actor: Principal,
    item: ServiceItem | None = None,
) -> Outcome:
    base = known or Known(implementation_code=code, state=state, mapping="unknown", live=False, content_hash=None, version=None, updated_at=None)
    record = replace(
        base,
        state=state,
        version=version if version is not None else base.version,
        updated_at=updated_at or base.updated_at,
        title=item.name if item else base.title,
        document=item.model_dump(mode="json") if item else base.document,
    )
    if not base.live:
        return Outcome("recorded", record)
    return Outcome("revoked", _withdrawing(record, code), _revocation(record, platform, actor))


def _withdrawing(record: Known, code: str) -> Known:
    # Refused, the withdrawal leaves the publication live: the next reconciliation withdraws again.
    return replace(record, live=False, content_hash=revocation_hash(code), live_before_event=True)


def _revocation(record: Known, platform: str, actor: Principal) -> ServiceItemChangedData:
    return ServiceItemChangedData(
        platform=platform,
        implementation_code=record.implementation_code,
        content_hash=revocation_hash(record.implementation_code),
        revoked=True,
        title=record.title,
        placements=record.placements,
        platform_updated_at=record.updated_at,
        actor=actor,
    )
