"""The gate's single-publication handlers (publish, revise, withdraw over HTTP) and the
republishing repairs; batches of inbound requests go through `batches.accept_inbound`.

Each takes its dependencies as arguments and writes the publication and its event in one
transaction (the outbox); nothing here talks to Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from contracts.events import (
    PublicationDraft,
    SourceRef,
    WithdrawalType,
    uuid7,
)
from contracts.identity import Principal
from services.publisher.store import Publisher, PublisherStore, StoredPublication

from . import domain
from .domain import Directory
from .events import emit, published_event, withdrawn_event

log = structlog.get_logger("tongyuan.publisher")
Clock = Callable[[], datetime]


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


def publish(
    draft: PublicationDraft,
    *,
    principal: Principal,
    publisher: Publisher,
    directory: Directory,
    source: SourceRef = SourceRef(source="/http"),
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Accepted:
    """A new publication, version 1."""
    domain.authorize_draft(principal, draft, directory)
    now = clock()
    # Time-ordered, like event ids: every store keys its rows by publication id, and a new id
    # sorting after the others adds to the end of each of those indexes.
    publication_id = uuid7().hex
    with publisher.transaction() as store:
        data = domain.build_publication(
            draft, publication_id=publication_id, version=1, index_number=_index_number(store, draft, now), source=source, directory=directory, now=now
        )
        store.save_published(data, content_hash=domain.content_hash(draft), created=True)
        event = published_event(data, now, request_id)
        emit(store, event)
    log.info("publication.accepted", publication_id=publication_id, version=1, event_id=event.id, source=source.source, user=principal.user)
    return Accepted(publication_id, 1, "published", event.id)


class NotFound(Exception):
    pass


def revise(
    publication_id: str,
    draft: PublicationDraft,
    *,
    principal: Principal,
    expected_version: int | None,
    publisher: Publisher,
    directory: Directory,
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Accepted:
    """A new version of an existing publication (it also republishes a withdrawn one)."""
    now = clock()
    with _current(publisher, publication_id, expected_version, principal, draft, directory) as (store, current):
        return _revise(store, current, draft, now=now, directory=directory, request_id=request_id)


@contextmanager
def _current(
    publisher: Publisher, publication_id: str, expected_version: int | None, principal: Principal, draft: PublicationDraft | None, directory: Directory
) -> Iterator[tuple[PublisherStore, StoredPublication]]:
    """A transaction holding the publication's current version, locked, once it is the version
    the writer expects and the principal may change it (into `draft`, or withdraw it: None)."""
    with publisher.transaction() as store:
        current = store.get(publication_id, for_update=True)
        if current is None:
            raise NotFound(publication_id)
        domain.check_version(publication_id, expected_version, current.version)
        domain.authorize_draft(principal, draft, directory, current.document)
        yield store, current


def _revise(
    store: PublisherStore, current: StoredPublication, draft: PublicationDraft, *, now: datetime, directory: Directory, request_id: str | None
) -> Accepted:
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
    event = published_event(data, now, request_id)
    emit(store, event)
    log.info("publication.revised", publication_id=current.publication_id, version=version, event_id=event.id)
    return Accepted(current.publication_id, version, "published", event.id)


def withdraw(
    publication_id: str,
    *,
    withdrawal_type: WithdrawalType,
    explanation: str,
    redirect_to: str | None,
    expected_version: int | None,
    principal: Principal,
    publisher: Publisher,
    directory: Directory,
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Accepted:
    now = clock()
    with _current(publisher, publication_id, expected_version, principal, None, directory) as (store, current):
        return _withdraw(store, current, withdrawal_type, explanation, redirect_to, now=now, request_id=request_id)


def _withdraw(
    store: PublisherStore, current: StoredPublication, withdrawal_type, explanation, redirect_to, *, now: datetime, request_id: str | None
) -> Accepted:
    data = domain.build_withdrawal(
        current.document, version=current.version + 1, withdrawal_type=withdrawal_type, explanation=explanation, redirect_to=redirect_to, now=now
    )
    store.save_withdrawn(data)
    event = withdrawn_event(data, now, request_id)
    emit(store, event)
    log.info("publication.withdrawn", publication_id=current.publication_id, version=data.version, event_id=event.id, withdrawal_type=withdrawal_type)
    return Accepted(current.publication_id, data.version, "withdrawn", event.id)


def republish_all(publisher: Publisher, *, only: str | None = None, clock: Clock = utc_clock) -> int:
    """Re-emit each publication's current state, same version, to rebuild downstream stores."""
    count = 0
    now = clock()
    with publisher.transaction() as store:
        for stored in store.all_publications():
            if only and stored.publication_id != only:
                continue
            if stored.status == "withdrawn" and stored.withdrawal:
                emit(store, withdrawn_event(stored.withdrawal, now, None))
            else:
                emit(store, published_event(stored.document, now, None))
            count += 1
    return count


def republish_above(publisher: Publisher, publication_id: str, *, above: int, clock: Clock = utc_clock) -> int | None:
    """Re-emit one publication's current state as a new version, higher than `above` (the
    highest any store holds): the repair for a forged event on the topic, whose version every
    store would otherwise keep, since none applies a lower one. The publisher's record takes
    the new version too, so it stays the truth that `tongyuan verify` compares against.
    Returns the new version, or None for an unknown publication."""
    now = clock()
    with publisher.transaction() as store:
        stored = store.get(publication_id, for_update=True)
        if stored is None:
            return None
        version = max(stored.version, above) + 1
        if stored.status == "withdrawn" and stored.withdrawal:
            withdrawal = stored.withdrawal.model_copy(update={"version": version})
            store.save_withdrawn(withdrawal)
            emit(store, withdrawn_event(withdrawal, now, None))
        else:
            data = stored.document.model_copy(update={"version": version})
            store.save_published(data, content_hash=stored.content_hash, created=False)
            emit(store, published_event(data, now, None))
    log.warning("publication.republished_above", publication_id=publication_id, version=version, above=above)
    return version
