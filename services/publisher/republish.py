"""Re-emit each publication's current state (same version) through the outbox."""

from __future__ import annotations

from .handlers import _emit, _published_event, _withdrawn_event, utc_clock
from .store import Publisher


def republish_all(publisher: Publisher, *, only: str | None = None) -> int:
    count = 0
    now = utc_clock()
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
