"""The bridge's handlers: poll the change list, reconcile everything, act on a webhook notice,
re-map after the mapping changed, act on the gate's refusals. Each takes its dependencies as
arguments (store, client, regions) and ends in one transaction that writes item records, outbox
events and the cursor (or, for refusals, the records and their problems).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import structlog

from contracts.catalog import Region
from contracts.events import TOPIC_SERVICE_ITEMS, RejectionData, new_event_id
from contracts.identity import Principal
from contracts.service_items import ServiceItem, ServiceItemChangedEvent

from .client import Detail, PlatformClient, Summary, Unreadable
from .detect import Gone, Known, Seen, decide
from .mapping import MappingTable, map_item
from .refusals import concerns, refuse
from .store import BridgeStore
from .webhooks import Notice

log = structlog.get_logger("tongyuan.bridge")


@dataclass
class SyncReport:
    mode: str
    listed: int = 0
    fetched: int = 0
    outcomes: Counter = field(default_factory=Counter)
    unreadable: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # transport failures: tried again next round
    complete: bool = True
    cursor: datetime | None = None
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return self.outcomes["changed"] + self.outcomes["revoked"]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "listed": self.listed,
            "fetched": self.fetched,
            "events": self.events,
            "outcomes": dict(self.outcomes),
            "unreadable": len(self.unreadable),
            "failed": len(self.failed),
            "complete": self.complete,
            "cursor": self.cursor.isoformat() if self.cursor else None,
            "seconds": round(self.seconds, 3),
        }


def needs_fetch(known: Known | None, summary: Summary) -> bool:
    """Whether the listed state may differ from what we hold (the detail then decides)."""
    if known is None or known.state in ("gone", "unreadable"):
        return True
    if summary.status != known.state:
        return True
    if summary.version is not None and known.version is not None:
        return summary.version > known.version
    return known.updated_at is None or summary.updated_at > known.updated_at


class Bridge:
    def __init__(
        self,
        store: BridgeStore,
        client: PlatformClient,
        regions: dict[str, Region],
        *,
        platform: str,
        actor: Principal | None = None,
        overlap: timedelta = timedelta(seconds=2),
        on_events: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.store, self.client, self.regions = store, client, regions
        self.platform, self.overlap = platform, overlap
        self.on_events, self.clock = on_events, clock
        self.source = f"/bridge/{platform}"
        # What the gate authorises the bridge's events as: an editor for every region it maps to.
        self.actor = actor or Principal(
            user=f"bridge:{platform}", roles=("editor",), regions=tuple(sorted({r.code for r in regions.values() if r.parent_code is None}))
        )

    # --- entry points --------------------------------------------------------------------------
    def poll(self) -> SyncReport:
        """Changes since the cursor (with a small overlap: the hash makes repeats harmless)."""
        started = self.clock()
        report = SyncReport("poll")
        since = self.store.cursor()
        listing = self.client.list_changes(since - self.overlap if since else None)
        report.listed, report.complete = len(listing.summaries), listing.complete
        if listing.server_cursor and since and listing.server_cursor < since:
            log.warning("bridge.cursor_backwards", ours=since.isoformat(), theirs=listing.server_cursor.isoformat())
        known = self._known(listing.summaries)
        wanted = [s for code, s in listing.summaries.items() if needs_fetch(known.get(code), s)]
        observations = self._fetch(wanted, report)
        report.unreadable.update(listing.bad)
        cursor = self._next_cursor(listing.summaries.values(), report) if listing.complete else None
        self._apply(observations, report, cursor=cursor, cleared=[s.implementation_code for s in wanted if s.implementation_code not in report.unreadable])
        report.seconds = (self.clock() - started).total_seconds()
        log.info("bridge.polled", **report.as_dict())
        return report

    def reconcile(self, *, deep: bool = False) -> SyncReport:
        """Repair whatever polling missed: list everything, fetch what differs (everything when
        `deep`), confirm what the platform no longer lists, retry unreadable records and apply
        the current mapping to every item."""
        started = self.clock()
        report = SyncReport("reconcile")
        listing = self.client.list_changes(None)
        report.listed, report.complete = len(listing.summaries), listing.complete
        known = self.store.all_known()
        retry = {p["implementation_code"] for p in self.store.problems()}  # codes, or labels of unreadable list entries
        wanted = [s for code, s in listing.summaries.items() if deep or code in retry or needs_fetch(known.get(code), s)]
        observations = self._fetch(wanted, report)
        report.unreadable.update(listing.bad)
        if listing.complete:
            # Not listed at all: deleted on the platform, or a listing glitch — the detail decides.
            # A gone item still live is one whose withdrawal the gate refused: withdraw again.
            absent = [code for code, k in known.items() if (k.state != "gone" or k.live) and code not in listing.summaries]
            for code, found in self.client.details(absent).items():
                if found is None:
                    observations.append(Gone(code))
                elif isinstance(found, Detail):
                    observations.append(Seen(found.item, found.status, found.version, found.updated_at))
                else:
                    report.failed[code] = repr(found)
            report.fetched += len(absent)
        fetched = {o.implementation_code if isinstance(o, Gone) else o.item.implementation_code for o in observations}
        observations += self._remapped(known, skip=fetched)
        cursor = self._next_cursor(listing.summaries.values(), report) if listing.complete else None
        # Every earlier problem not seen again is cleared: it read this time, or is no longer listed.
        cleared = [code for code in retry | {s.implementation_code for s in wanted} if code not in report.unreadable and code not in report.failed]
        self._apply(observations, report, cursor=cursor, reconciled=listing.complete, cleared=cleared)
        report.seconds = (self.clock() - started).total_seconds()
        log.info("bridge.reconciled", **report.as_dict())
        return report

    def on_notice(self, notice: Notice) -> SyncReport:
        """A verified webhook: ask the platform for the item (the notice itself is not content)."""
        report = SyncReport("webhook")
        found = self.client.details([notice.implementation_code])[notice.implementation_code]
        report.fetched = 1
        observations: list[Seen | Gone]
        if found is None:
            observations = [Gone(notice.implementation_code)]
        elif isinstance(found, Detail):
            observations = [Seen(found.item, found.status, found.version, found.updated_at)]
        else:
            # Polling and reconciliation will pick it up; the platform is told to try later.
            key = "unreadable" if isinstance(found, Unreadable) else "failed"
            getattr(report, key)[notice.implementation_code] = str(found)
            observations = []
        self._apply(observations, report, cursor=None, cleared=[] if report.unreadable else [notice.implementation_code])
        return report

    def remap(self) -> SyncReport:
        """Apply the current mapping to every item we hold (after a mapping import)."""
        report = SyncReport("remap")
        self._apply(self._remapped(self.store.all_known(), skip=set()), report, cursor=None, cleared=[])
        log.info("bridge.remapped", **report.as_dict())
        return report

    def on_rejections(self, rejections: Sequence[RejectionData]) -> Counter:
        """The gate refused events: each item whose latest event it refused is put back as it was
        before that event, with its hash forgotten and the reasons recorded, in one transaction."""
        outcomes: Counter = Counter()
        # concerns() holds only for a rejection that names the item (its source_ref).
        mine = [(r.source_ref, r) for r in rejections if concerns(r, self.source) and r.source_ref]
        outcomes["not_ours"] += len(rejections) - len(mine)
        if not mine:
            return outcomes
        with self.store.transaction() as tx:
            known = tx.known([code for code, _ in mine])
            changed: dict[str, Known] = {}
            reasons: dict[str, str] = {}
            for code, rejection in mine:
                refusal = refuse(known.get(code), rejection, source=self.source)
                outcomes[refusal.kind] += 1
                if refusal.record is not None:
                    detail = refusal.detail or ""  # a refusal that changes the record carries the gate's reasons
                    known[code] = changed[code] = refusal.record
                    reasons[code] = detail
                    log.warning("bridge.refused", implementation_code=code, event_id=rejection.original_id, reasons=detail[:300])
            tx.save(list(changed.values()), set(changed))
            tx.record_refusals(reasons)
        return outcomes

    # --- the parts ---------------------------------------------------------------------------
    def _known(self, summaries: dict[str, Summary]) -> dict[str, Known]:
        return self.store.known(list(summaries)) if summaries else {}

    def _fetch(self, wanted: list[Summary], report: SyncReport) -> list[Seen | Gone]:
        observations: list[Seen | Gone] = []
        for code, found in self.client.details(s.implementation_code for s in wanted).items():
            if found is None:
                observations.append(Gone(code))
            elif isinstance(found, Detail):
                observations.append(Seen(found.item, found.status, found.version, found.updated_at))
            elif isinstance(found, Unreadable):
                report.unreadable[code] = str(found)
            else:
                report.failed[code] = repr(found)
        report.fetched += len(wanted)
        return observations

    def _next_cursor(self, summaries: Iterable[Summary], report: SyncReport) -> datetime | None:
        """The newest change listed — but not past a change we failed to fetch."""
        listed = list(summaries)
        if not listed:
            return None
        failed = [s.updated_at for s in listed if s.implementation_code in report.failed]
        if failed:
            return min(failed) - timedelta(microseconds=1)
        return max(s.updated_at for s in listed)

    def _remapped(self, known: dict[str, Known], skip: set[str]) -> list[Seen]:
        """Items whose stored state would now be mapped differently, as observations of that state."""
        table: MappingTable = self.store.mapping()
        out = []
        for code, record in known.items():
            if code in skip or record.state != "active" or not record.document:
                continue
            item = ServiceItem.model_validate(record.document)
            result = map_item(item, table, self.regions)
            state = "mapped" if result.mapped else ("excluded" if result.excluded else "unmapped")
            # Not live, or live with its hash forgotten (the gate refused a revision): send it again.
            unsent = result.mapped and (not record.live or record.content_hash is None)
            if state != record.mapping or (result.mapped and set(result.placements) != set(record.placements)) or unsent:
                out.append(Seen(item, "active", record.version, record.updated_at))
        return out

    def _apply(self, observations: Sequence[Seen | Gone], report: SyncReport, *, cursor: datetime | None, cleared: list[str], reconciled: bool = False) -> None:
        table = self.store.mapping()
        now = self.clock()
        # Oldest first, so a batch holding two states of one item ends on the newer.
        observations = sorted(observations, key=lambda o: (o.version or 0) if isinstance(o, Seen) else 1 << 62)
        codes = [o.implementation_code if isinstance(o, Gone) else o.item.implementation_code for o in observations]
        rows: list[dict] = []
        with self.store.transaction() as tx:
            known = tx.known(codes)
            existing = set(known)
            changed: dict[str, Known] = {}
            for code, observed in zip(codes, observations, strict=True):
                mapping = map_item(observed.item, table, self.regions) if isinstance(observed, Seen) and observed.status == "active" else None
                outcome = decide(known.get(code), observed, mapping, platform=self.platform, actor=self.actor)
                report.outcomes[outcome.kind] += 1
                record = outcome.record
                if outcome.event is not None:
                    assert record is not None, "an event always comes with the record it changes"
                    event = ServiceItemChangedEvent(id=new_event_id(), source=self.source, subject=code, time=now, data=outcome.event)
                    rows.append(dict(event_id=event.id, topic=TOPIC_SERVICE_ITEMS, key=code, payload=event.model_dump_json(exclude_none=True)))
                    record = replace(record, last_event_id=event.id)  # so a refusal of an older event is told apart
                if record is not None:
                    known[code] = changed[code] = record
            tx.save(list(changed.values()), existing)
            tx.add_events(rows)
            tx.record_problems(report.unreadable, cleared)
            tx.clear_refusals([row["key"] for row in rows])
            if cursor is not None or reconciled or report.mode == "poll":
                tx.advance_cursor(cursor, reconciled=reconciled)
        report.cursor = cursor
        if rows:
            self.on_events()
