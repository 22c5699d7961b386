"""Conditional answers for what township portals poll: ETags from the scope's counters, the
Last-Modified rule, and the rendered bodies kept by ETag."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from fastapi import Request

from .domain import MajorRules
from .store import EmbedStore, ScopeState

# Bump when templates or feed rendering change, so pollers refetch after a deployment.
RENDER_REVISION = "2"


class RenderCache:
    """Rendered bodies by ETag: an ETag names one rendering, so entries never go stale."""

    def __init__(self, size: int):
        self.size = size
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._bodies[key] = body
            while len(self._bodies) > self.size:
                self._bodies.popitem(last=False)


def etag_of(state: ScopeState, variant: str) -> str:
    stamp = "|".join(
        str(part)
        for part in (
            RENDER_REVISION,
            variant,
            state.scope,
            state.version,
            state.changed_at and state.changed_at.isoformat(),
            state.rules_version,
            state.rules_changed_at and state.rules_changed_at.isoformat(),
        )
    )
    return '"' + hashlib.blake2b(stamp.encode(), digest_size=12).hexdigest() + '"'


def settled(last_modified: datetime, now: datetime) -> bool:
    """Whether the second of the last change is over. Last-Modified names a whole second, so
    one sent during that second would also name a change later in it (a withdrawal), and an
    If-Modified-Since with it would get a 304 for the withdrawn item: until then the ETag alone
    validates."""
    return last_modified.replace(microsecond=0) < now.replace(microsecond=0)


def not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) decides; If-Modified-Since only without it."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return last_modified.replace(microsecond=0) <= since
    return False


class Renders:
    """What one app keeps between polls: rendered bodies by ETag, and the major-items rules by
    their counter (a counter names one set of rules, so a render needs no read of them)."""

    def __init__(self, size: int = 1024):
        self.bodies = RenderCache(size)
        self._rules: dict[int, MajorRules] = {}

    def rules_at(self, store: EmbedStore, state: ScopeState) -> MajorRules:
        rules = self._rules.get(state.rules_version)
        if rules is None:
            rules = store.rules()
            self._rules = {state.rules_version: rules}
        return rules
