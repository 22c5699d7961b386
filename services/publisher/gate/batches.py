"""The gate for batches of inbound requests — the CMS topic, the service-item lane, a migration:
a whole batch in one transaction, each request accepted or refused on its own.

The same source + source_ref always maps to the same publication; redelivered events (same id
and source) and unchanged content create no new version; a source's requests for one item are
applied in the order of their own times.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import structlog

from contracts.events import (
    TOPIC_PUBLICATIONS,
    FieldError,
    PublicationData,
    PublishedEvent,
    PublishRequestData,
    SourceRef,
    WithdrawalData,
    WithdrawnEvent,
    uuid7,
)
from services.common.db import JSONText, as_json
from services.publisher.store import Publisher, PublisherStore, StoredPublication

from . import domain
from .domain import Directory, Rejected
from .events import published_event, with_data, withdrawn_event
from .handlers import Accepted, Clock, utc_clock

log = structlog.get_logger("tongyuan.publisher")


@dataclass(frozen=True)
class InboundRequest:
    event_id: str
    source: str
    request: PublishRequestData
    kind: str = "info"  # the bridge lane sends "service"
    service_guide: dict | None = None  # becomes PublicationData.service_guide
    # A new publication's id when the source dictates it (a migrated row's stable id);
    # otherwise a fresh one.
    publication_id: str | None = None
    # domain.content_hash(request), when the sender computed it already (the migration does).
    content_hash: str | None = None
    # The sender's own time of this request (a CMS's CloudEvent `time`): a source's requests for
    # one item are applied in that order, whatever order they arrive in. None: arrival order.
    upstream_time: datetime | None = None


class OutOfOrder(Rejected):
    """Refused for its time, not its data: the source already sent something newer for the
    item, or a time this gate cannot order by. Its reasons name the envelope's `time`."""


# How far ahead of this gate's clock a source's time may be. One request dated far ahead would
# otherwise refuse every later one for the item until that time came.
UPSTREAM_CLOCK_SKEW = timedelta(minutes=10)
UpstreamClock = tuple[datetime, str]  # the newest applied time of an item, and the request that had it


def _check_order(message: InboundRequest, newest: UpstreamClock | None, now: datetime) -> None:
    """Raises OutOfOrder when `message` is older than what was applied for its item, or dated
    too far ahead to be ordered against the requests to come."""
    sent = message.upstream_time
    if sent is None:
        return
    if sent > now + UPSTREAM_CLOCK_SKEW:
        raise OutOfOrder(
            [
                FieldError(
                    loc=("time",),
                    msg=f"请求时间 {_shown(sent)} 比本系统当前时间 {_shown(now)} 晚了 {int(UPSTREAM_CLOCK_SKEW.total_seconds() // 60)} 分钟以上，无法据此排序；请校准发送方的时钟后重新发送",
                    type="time.in_future",
                )
            ]
        )
    if newest is not None and sent < newest[0]:
        raise OutOfOrder(
            [
                FieldError(
                    loc=("time",),
                    msg=f"该稿件已按时间更晚的请求（{newest[1]}，时间 {_shown(newest[0])}）处理，本条请求时间 {_shown(sent)} 较早，未予采用，以免旧内容覆盖新内容；如确需发布本条内容，请以当前时间重新发送",
                    type="time.superseded",
                )
            ]
        )


def _shown(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _request_hash(message: InboundRequest) -> str:
    """The draft's content hash, covering the service guide when there is one."""
    digest = message.content_hash or domain.content_hash(message.request)
    if message.service_guide is None:
        return digest
    guide = json.dumps(message.service_guide, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{digest}:{message.kind}:{guide}".encode()).hexdigest()


@dataclass
class _Held:
    """A publication as the batch sees it: stored state plus what this batch did to it."""

    stored: StoredPublication | None
    publication_id: str
    version: int
    status: str
    content_hash: str | None
    document: PublicationData | None
    created_here: bool = False


def accept_cms_batch(
    batch: list[InboundRequest],
    *,
    publisher: Publisher,
    directory: Directory,
    clock: Clock = utc_clock,
) -> list[Accepted | Rejected]:
    """CMS publish requests, in order, in one transaction.

    The same source + source_ref always maps to the same publication; redelivered events
    (same id and source) and unchanged content create no new version. A refused request
    writes nothing and does not stop the others.
    """
    with publisher.transaction() as store:
        return accept_inbound(store, batch, directory=directory, now=clock())


def accept_inbound(
    store: PublisherStore, batch: list[InboundRequest], *, directory: Directory, now: datetime, topic: str = TOPIC_PUBLICATIONS, log_each: bool = True
) -> list[Accepted | Rejected]:
    """accept_cms_batch inside the caller's transaction; events go to `topic` (the bulk lane
    for a migration, which logs its batches rather than each row)."""
    acceptance = _Acceptance(store, batch, directory=directory, now=now, topic=topic, log_each=log_each)
    outcomes = [acceptance.accept(message) for message in batch]
    acceptance.save(store)
    return outcomes


@dataclass
class _Written:
    """What a batch writes, gathered as its requests are applied and saved with one statement
    per kind (executemany) at the end."""

    topic: str
    created: dict[str, tuple[PublicationData, str | None]] = field(default_factory=dict)
    revised: dict[str, tuple[PublicationData, str | None]] = field(default_factory=dict)
    withdrawn: dict[str, WithdrawalData] = field(default_factory=dict)
    outbox_rows: list[dict] = field(default_factory=list)
    inbound_rows: list[dict] = field(default_factory=list)
    documents: dict[str, JSONText] = field(default_factory=dict)

    def emit(self, event: PublishedEvent | WithdrawnEvent) -> None:
        if isinstance(event, PublishedEvent):
            # The stored document and the event's data are the same JSON: serialised once.
            document = self.documents[event.data.publication_id] = as_json(event.data)
            payload = with_data(event, document)
        else:
            payload = event.model_dump_json(exclude_none=True)
        self.outbox_rows.append(dict(event_id=event.id, topic=self.topic, key=event.subject, payload=payload))

    def save(self, store: PublisherStore) -> None:
        store.save_batch(
            created=list(self.created.values()),
            revised=list(self.revised.values()),
            withdrawn=list(self.withdrawn.values()),
            outbox_rows=self.outbox_rows,
            inbound_rows=self.inbound_rows,
            documents=self.documents,
        )


class _Acceptance:
    """One batch through the gate: what the store holds for its items, read once up front, and
    what the batch did to them, request by request."""

    def __init__(self, store: PublisherStore, batch: list[InboundRequest], *, directory: Directory, now: datetime, topic: str, log_each: bool) -> None:
        self.directory, self.now, self.log_each = directory, now, log_each
        self.seen = store.seen_inbound([(m.event_id, m.source) for m in batch])
        timed = [(m.source, m.request.source_ref) for m in batch if m.upstream_time is not None]
        self.clocks: dict[tuple[str, str], UpstreamClock] = store.upstream_times(timed) if timed else {}
        self.known_clocks = set(self.clocks)
        self.moved_clocks: dict[tuple[str, str], UpstreamClock] = {}
        self.held = {
            key: _Held(stored, stored.publication_id, stored.version, stored.status, stored.content_hash, stored.document)
            for key, stored in store.by_source_refs([(m.source, m.request.source_ref) for m in batch]).items()
        }
        self.index_numbers = _reserve_index_numbers(store, batch, self.held, now)
        self.written = _Written(topic)

    def accept(self, message: InboundRequest) -> Accepted | Rejected:
        key = (message.source, message.request.source_ref)
        current = self.held.get(key)
        if (message.event_id, message.source) in self.seen:
            if self.log_each:
                log.info("cms.redelivered", event_id=message.event_id, source=message.source)
            return Accepted(current.publication_id if current else "", current.version if current else 0, current.status if current else "duplicate", None)
        try:
            _check_order(message, self.clocks.get(key), self.now)
            outcome, event = _apply_request(message, current, now=self.now, directory=self.directory, index_numbers=self.index_numbers)
        except Rejected as rejected:
            if self.log_each and isinstance(rejected, OutOfOrder):
                log.info(
                    "inbound.out_of_order",
                    event_id=message.event_id,
                    source=message.source,
                    source_ref=message.request.source_ref,
                    reason=rejected.errors[0].type,
                )
            return rejected
        self.seen.add((message.event_id, message.source))
        if message.upstream_time is not None:
            # Not older than the item's clock (checked above), so it is the newest now, even
            # when it changed nothing.
            self.clocks[key] = self.moved_clocks[key] = (message.upstream_time, message.event_id)
        self.written.inbound_rows.append(dict(event_id=message.event_id, source=message.source, publication_id=outcome.publication_id or None))
        if event is not None:
            self._record(key, message, outcome, event)
        return outcome

    def _record(self, key: tuple[str, str], message: InboundRequest, outcome: Accepted, event: PublishedEvent | WithdrawnEvent) -> None:
        written = self.written
        written.emit(event)
        if isinstance(event, WithdrawnEvent):
            self.held[key].status, self.held[key].version = "withdrawn", event.data.version
            written.withdrawn[outcome.publication_id] = event.data
            written.revised.pop(outcome.publication_id, None)  # a row created here is still inserted, then withdrawn
        else:
            record = self.held.setdefault(key, _Held(None, outcome.publication_id, 0, "published", None, None, created_here=True))
            record.version, record.status, record.document = event.data.version, "published", event.data
            record.content_hash = _request_hash(message)
            target = written.created if record.created_here else written.revised
            target[outcome.publication_id] = (event.data, record.content_hash)
            written.withdrawn.pop(outcome.publication_id, None)
        if self.log_each:
            log.info(
                "publication.accepted",
                publication_id=outcome.publication_id,
                version=outcome.version,
                event_id=event.id,
                inbound_event_id=message.event_id,
                source=message.source,
            )

    def save(self, store: PublisherStore) -> None:
        self.written.save(store)
        if self.moved_clocks:
            store.save_upstream_times(self.moved_clocks, known=self.known_clocks)


def _reserve_index_numbers(store: PublisherStore, batch: list[InboundRequest], held: dict, now: datetime) -> dict[str, Iterator[str]]:
    """索引号 for the new publications of a batch, reserved in one step per region and year.
    A request refused later leaves a gap in the sequence, which is harmless."""
    wanted: dict[str, set[str]] = {}
    for message in batch:
        request = message.request
        if not request.withdraw and not request.index_number and (message.source, request.source_ref) not in held:
            wanted.setdefault(f"{request.placements[0].region_code}/{now.year}", set()).add(request.source_ref)
    firsts = store.reserve_index_numbers({prefix: len(refs) for prefix, refs in wanted.items()})
    return {prefix: iter([f"{prefix}-{n:05d}" for n in range(first, first + len(wanted[prefix]))]) for prefix, first in firsts.items()}


Applied = tuple[Accepted, PublishedEvent | WithdrawnEvent | None]


def _apply_request(message: InboundRequest, current: _Held | None, *, now: datetime, directory: Directory, index_numbers: dict[str, Iterator[str]]) -> Applied:
    """One request against what the batch holds for its item: the outcome and the event to
    write (None when nothing changes); raises Rejected."""
    request = message.request
    try:
        domain.authorize_draft(request.actor, None if request.withdraw else request, directory, current.document if current else None)
    except domain.Forbidden as forbidden:
        raise Rejected([e.model_copy(update={"loc": ("actor", *e.loc)}) for e in forbidden.errors]) from None
    if request.withdraw:
        return _withdrawal(message, current, now=now)
    if current is None:
        return _new_publication(message, now=now, directory=directory, index_numbers=index_numbers)
    if current.status == "published" and current.content_hash == _request_hash(message):
        return Accepted(current.publication_id, current.version, current.status, None), None
    return _revision(message, current, now=now, directory=directory)


def _withdrawal(message: InboundRequest, current: _Held | None, *, now: datetime) -> Applied:
    request = message.request
    if current is None or current.document is None or request.withdraw is None:
        raise Rejected([FieldError(loc=("source_ref",), msg=f"nothing was published under {request.source_ref!r} to withdraw", type="value.unknown")])
    if current.status == "withdrawn":
        return Accepted(current.publication_id, current.version, current.status, None), None
    data = domain.build_withdrawal(
        current.document, version=current.version + 1, withdrawal_type=request.withdraw, explanation=request.explanation, redirect_to=None, now=now
    )
    event = withdrawn_event(data, now, message.event_id)
    return Accepted(current.publication_id, data.version, "withdrawn", event.id), event


def _new_publication(message: InboundRequest, *, now: datetime, directory: Directory, index_numbers: dict[str, Iterator[str]]) -> Applied:
    request = message.request
    publication_id = message.publication_id or uuid7().hex
    prefix = f"{request.placements[0].region_code}/{now.year}"
    data = domain.build_publication(
        request,
        publication_id=publication_id,
        version=1,
        index_number=request.index_number or next(index_numbers[prefix]),
        source=SourceRef(source=message.source, ref=request.source_ref),
        directory=directory,
        now=now,
        kind=message.kind,
        service_guide=message.service_guide,
    )
    event = published_event(data, now, message.event_id)
    return Accepted(publication_id, 1, "published", event.id), event


def _revision(message: InboundRequest, current: _Held, *, now: datetime, directory: Directory) -> Applied:
    request, document = message.request, current.document
    assert document is not None  # a publication the batch holds has its document
    data = domain.build_publication(
        request,
        publication_id=current.publication_id,
        version=current.version + 1,
        index_number=document.index_number,
        source=document.source_ref,
        directory=directory,
        now=now,
        kind=message.kind if message.service_guide is not None else document.kind,
        service_guide=message.service_guide,
    )
    if request.published_at is None:
        data = data.model_copy(update={"published_at": document.published_at})
    event = published_event(data, now, message.event_id)
    return Accepted(current.publication_id, data.version, "published", event.id), event


def accept_cms_request(
    event_id: str, source: str, request: PublishRequestData, *, publisher: Publisher, directory: Directory, clock: Clock = utc_clock
) -> Accepted:
    """One CMS request (see accept_cms_batch); raises Rejected."""
    (outcome,) = accept_cms_batch([InboundRequest(event_id, source, request)], publisher=publisher, directory=directory, clock=clock)
    if isinstance(outcome, Rejected):
        raise outcome
    return outcome
