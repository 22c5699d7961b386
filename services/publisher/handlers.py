"""The gate: every input (HTTP, the CMS topic, the bridge) ends in one of these handlers.

Each takes its dependencies as arguments and writes the publication and its event in one
transaction (the outbox); nothing here talks to Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from contracts.events import (
    TOPIC_PUBLICATIONS,
    FieldError,
    PublicationData,
    PublicationDraft,
    PublishedEvent,
    PublishRequestData,
    SourceRef,
    WithdrawalData,
    WithdrawalType,
    WithdrawnEvent,
    new_event_id,
)

from . import domain
from .domain import Directory, Rejected
from .store import Publisher, PublisherStore, StoredPublication

log = structlog.get_logger("tongyuan.publisher")
Clock = Callable[[], datetime]
PUBLISHER_SOURCE = "/publisher"


def utc_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Accepted:
    publication_id: str
    version: int
    status: str
    event_id: str | None  # None when nothing changed (a redelivery or identical content)


def _index_number(store: PublisherStore, draft: PublicationDraft, now: datetime) -> str:
    prefix = f"{draft.placements[0].region_code}/{now.year}"
    return f"{prefix}-{store.next_index_number(prefix):05d}"


def _emit(store: PublisherStore, event, topic: str = TOPIC_PUBLICATIONS) -> None:
    store.add_to_outbox(event_id=event.id, topic=topic, key=event.subject or "", payload=event.model_dump_json(exclude_none=True))


def _published_event(data: PublicationData, now: datetime, request_id: str | None) -> PublishedEvent:
    extra = {"tongyuanrequestid": request_id} if request_id else {}
    return PublishedEvent(id=new_event_id(), source=PUBLISHER_SOURCE, subject=data.publication_id, time=now, data=data, **extra)


def _withdrawn_event(data: WithdrawalData, now: datetime, request_id: str | None) -> WithdrawnEvent:
    extra = {"tongyuanrequestid": request_id} if request_id else {}
    return WithdrawnEvent(id=new_event_id(), source=PUBLISHER_SOURCE, subject=data.publication_id, time=now, data=data, **extra)


def publish(
    draft: PublicationDraft,
    *,
    publisher: Publisher,
    directory: Directory,
    source: SourceRef = SourceRef(source="/http"),
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Accepted:
    """A new publication, version 1."""
    now = clock()
    publication_id = uuid.uuid4().hex
    with publisher.transaction() as store:
        data = domain.build_publication(
            draft, publication_id=publication_id, version=1, index_number=_index_number(store, draft, now), source=source, directory=directory, now=now
        )
        store.save_published(data, content_hash=domain.content_hash(draft), created=True)
        event = _published_event(data, now, request_id)
        _emit(store, event)
    log.info("publication.accepted", publication_id=publication_id, version=1, event_id=event.id, source=source.source)
    return Accepted(publication_id, 1, "published", event.id)


class NotFound(Exception):
    pass


def revise(
    publication_id: str,
    draft: PublicationDraft,
    *,
    expected_version: int | None,
    publisher: Publisher,
    directory: Directory,
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Accepted:
    """A new version of an existing publication (it also republishes a withdrawn one)."""
    now = clock()
    with publisher.transaction() as store:
        current = _current(store, publication_id, expected_version)
        return _revise(store, current, draft, now=now, directory=directory, request_id=request_id)


def _current(store: PublisherStore, publication_id: str, expected_version: int | None) -> StoredPublication:
    current = store.get(publication_id, for_update=True)
    if current is None:
        raise NotFound(publication_id)
    domain.check_version(publication_id, expected_version, current.version)
    return current


def _revise(store: PublisherStore, current: StoredPublication, draft: PublicationDraft, *, now: datetime, directory: Directory, request_id: str | None) -> Accepted:
    version = current.version + 1
    index_number = current.document.index_number
    data = domain.build_publication(
        draft,
        publication_id=current.publication_id,
        version=version,
        index_number=index_number,
        source=current.document.source_ref,
        directory=directory,
        now=now,
        kind=current.document.kind,
    )
    if draft.published_at is None:
        # A correction keeps the original publication date; it is not a new item.
        data = data.model_copy(update={"published_at": current.document.published_at})
    store.save_published(data, content_hash=domain.content_hash(draft), created=False)
    event = _published_event(data, now, request_id)
    _emit(store, event)
    log.info("publication.revised", publication_id=current.publication_id, version=version, event_id=event.id)
    return Accepted(current.publication_id, version, "published", event.id)


def withdraw(
    publication_id: str,
    *,
    withdrawal_type: WithdrawalType,
    explanation: str,
    redirect_to: str | None,
    expected_version: int | None,
    publisher: Publisher,
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Accepted:
    now = clock()
    with publisher.transaction() as store:
        current = _current(store, publication_id, expected_version)
        return _withdraw(store, current, withdrawal_type, explanation, redirect_to, now=now, request_id=request_id)


def _withdraw(store: PublisherStore, current: StoredPublication, withdrawal_type, explanation, redirect_to, *, now: datetime, request_id: str | None) -> Accepted:
    data = domain.build_withdrawal(
        current.document, version=current.version + 1, withdrawal_type=withdrawal_type, explanation=explanation, redirect_to=redirect_to, now=now
    )
    store.save_withdrawn(data)
    event = _withdrawn_event(data, now, request_id)
    _emit(store, event)
    log.info("publication.withdrawn", publication_id=current.publication_id, version=data.version, event_id=event.id, withdrawal_type=withdrawal_type)
    return Accepted(current.publication_id, data.version, "withdrawn", event.id)


def accept_cms_request(
    event_id: str,
    source: str,
    request: PublishRequestData,
    *,
    publisher: Publisher,
    directory: Directory,
    clock: Clock = utc_clock,
) -> Accepted:
    """A CMS's publish request: the same source_ref always maps to the same publication.

    Redelivered events (same id and source) and unchanged content create no new version.
    """
    now = clock()
    with publisher.transaction() as store:
        current = store.by_source_ref(source, request.source_ref, for_update=True)
        if not store.remember_inbound(event_id, source, current.publication_id if current else None):
            log.info("cms.redelivered", event_id=event_id, source=source)
            if current is None:
                return Accepted("", 0, "duplicate", None)
            return Accepted(current.publication_id, current.version, current.status, None)
        if request.withdraw:
            if current is None:
                raise Rejected([FieldError(loc=("source_ref",), msg=f"nothing was published under {request.source_ref!r} to withdraw", type="value.unknown")])
            if current.status == "withdrawn":
                return Accepted(current.publication_id, current.version, current.status, None)
            return _withdraw(store, current, request.withdraw, request.explanation, None, now=now, request_id=event_id)
        if current is None:
            publication_id = uuid.uuid4().hex
            data = domain.build_publication(
                request,
                publication_id=publication_id,
                version=1,
                index_number=_index_number(store, request, now),
                source=SourceRef(source=source, ref=request.source_ref),
                directory=directory,
                now=now,
            )
            store.save_published(data, content_hash=domain.content_hash(request), created=True)
            event = _published_event(data, now, event_id)
            _emit(store, event)
            log.info("publication.accepted", publication_id=publication_id, version=1, event_id=event.id, inbound_event_id=event_id, source=source)
            return Accepted(publication_id, 1, "published", event.id)
        if current.status == "published" and current.content_hash == domain.content_hash(request):
            return Accepted(current.publication_id, current.version, current.status, None)
        return _revise(store, current, request, now=now, directory=directory, request_id=event_id)


def republish_all(publisher: Publisher, *, only: str | None = None, clock: Clock = utc_clock) -> int:
    """Re-emit each publication's current state, same version, to rebuild downstream stores."""
    count = 0
    now = clock()
    with publisher.transaction() as store:
        for stored in store.all_publications():
            if only and stored.publication_id != only:
                continue
            if stored.status == "withdrawn" and stored.withdrawal:
                _emit(store, _withdrawn_event(stored.withdrawal, now, None))
            else:
                _emit(store, _published_event(stored.document, now, None))
            count += 1
    return count
