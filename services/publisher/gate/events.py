"""The events the gate writes to the outbox with each change it stores."""

from __future__ import annotations

from datetime import datetime

from contracts.events import TOPIC_PUBLICATIONS, CloudEvent, PublicationData, PublishedEvent, WithdrawalData, WithdrawnEvent, new_event_id
from services.publisher.store import PublisherStore

PUBLISHER_SOURCE = "/publisher"


def emit(store: PublisherStore, event: CloudEvent, topic: str = TOPIC_PUBLICATIONS) -> None:
    store.add_to_outbox(event_id=event.id, topic=topic, key=event.subject or "", payload=event.model_dump_json(exclude_none=True))


def with_data(event: PublishedEvent, data_json: str) -> str:
    """The event as structured-mode JSON around data serialised already. `data` is the
    envelope's last field; an extension attribute (the request id) moves before it, which JSON
    readers do not see."""
    envelope = event.model_dump_json(exclude={"data"}, exclude_none=True)
    return f'{envelope[:-1]},"data":{data_json}}}'


def published_event(data: PublicationData, now: datetime, request_id: str | None) -> PublishedEvent:
    extra = {"tongyuanrequestid": request_id} if request_id else {}
    return PublishedEvent(id=new_event_id(), source=PUBLISHER_SOURCE, subject=data.publication_id, time=now, data=data, **extra)


def withdrawn_event(data: WithdrawalData, now: datetime, request_id: str | None) -> WithdrawnEvent:
    extra = {"tongyuanrequestid": request_id} if request_id else {}
    return WithdrawnEvent(id=new_event_id(), source=PUBLISHER_SOURCE, subject=data.publication_id, time=now, data=data, **extra)
