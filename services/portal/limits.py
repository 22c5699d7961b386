"""What one client may take of the portal: bounded request bodies (with or without
Content-Length), rate limits on writes and searches, and a deadline for the request head."""

from __future__ import annotations

import html
import json
import math
import time

import anyio


class BoundedBodies:
    """Pure ASGI middleware: 413 when a body exceeds `limit` bytes. A declared Content-Length is
    refused up front; a chunked body is counted as it arrives, so no handler sees more."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        received = 0
        started = refused = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit and not started:
                    # Answer 413 ourselves and tell the app the client left: frameworks turn
                    # exceptions raised while reading into 400s of their own.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 is already on its way; whatever the app says is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": [{"loc": ["body"], "msg": f"request body larger than {self.limit} bytes", "type": "too_large"}]}).encode()
        await send(
            {"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        )
        await send({"type": "http.response.body", "body": body})


# --- rate limits ---------------------------------------------------------------------------

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
SEARCH_PATHS = frozenset({"/search", "/v1/search"})


class RateLimits:
    """Pure ASGI middleware: writes limited per token subject, searches per client address;
    past a limit, 429 with Retry-After and a Chinese message (JSON under /v1, a page elsewhere).

    The counting is the `limits` library's sliding-window counter over its in-memory storage:
    constant memory per key, and its window stats give Retry-After. Per process, which is what
    one portal process needs; several processes would share a Redis storage of the same library.

    A write is keyed by the subject of a token that verifies, so a token's holder cannot start
    fresh counts by making up subjects; a write without a valid token (refused with 401 further
    in, or a webhook) is keyed by its address. The address is the one uvicorn reports, i.e.
    X-Forwarded-For only from the proxies uvicorn trusts (FORWARDED_ALLOW_IPS)."""

    def __init__(self, app, *, writes_per_minute: int, searches_per_minute: int, subject_of, clock=None):
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import SlidingWindowCounterRateLimiter

        self.app = app
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.writes = RateLimitItemPerMinute(writes_per_minute) if writes_per_minute else None
        self.searches = RateLimitItemPerMinute(searches_per_minute) if searches_per_minute else None
        self.subject_of = subject_of  # token → its verified subject, or None
        self.clock = clock or time.time

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limited = await self._limit_for(scope)
        if limited is not None:
            item, kind, key = limited
            if not self.limiter.hit(item, kind, key):
                reset_at = self.limiter.get_window_stats(item, kind, key).reset_time
                return await _too_many(send, scope, kind, max(1, math.ceil(reset_at - self.clock())))
        await self.app(scope, receive, send)

    async def _limit_for(self, scope):
        if scope["method"] not in _READS:
            if self.writes is None:
                return None
            subject = await self._subject(scope)
            return self.writes, "write", f"sub:{subject}" if subject else f"ip:{_client(scope)}"
        if self.searches is not None and scope["path"] in SEARCH_PATHS:
            return self.searches, "search", f"ip:{_client(scope)}"
        return None

    async def _subject(self, scope) -> str | None:
        authorization = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        # Verifying may fetch the identity provider's keys: off the event loop.
        return await anyio.to_thread.run_sync(self.subject_of, token.strip())


def _client(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


_WHAT = {"write": "提交过于频繁", "search": "搜索过于频繁"}


async def _too_many(send, scope, kind: str, retry_after: int) -> None:
    message = f"{_WHAT[kind]}，请{retry_after}秒后再试。"
    if scope["path"].startswith("/v1/"):
        body = json.dumps({"detail": message, "retry_after": retry_after}, ensure_ascii=False).encode()
        media = b"application/json"
    else:
        body = f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>请稍后再试</title><p>{html.escape(message)}</p></html>'.encode()
        media = b"text/html; charset=utf-8"
    headers = [(b"content-type", media), (b"content-length", str(len(body)).encode()), (b"retry-after", str(retry_after).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- the request head's deadline -----------------------------------------------------------


def head_deadline_protocol(seconds: float, base: type | None = None) -> type:
    """uvicorn's HTTP protocol (httptools or h11, as uvicorn would pick) with a deadline for
    the request head: a connection whose head is not complete `seconds` after it opened, or
    after its previous response, is closed. uvicorn itself only times out idle keep-alive
    connections, so a client that trickles header bytes (slowloris) would hold a connection,
    and with enough of them every connection, for as long as it likes."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol

    class HeadDeadline(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_deadline()

        def connection_lost(self, exc) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._waiting_after:  # a head completed: a new request cycle
                self._disarm_head_deadline()

        def _arm_head_deadline(self) -> None:
            self._disarm_head_deadline()
            self._waiting_after = self.cycle
            self._head_deadline = self.loop.call_later(seconds, self._head_too_slow)

        def _disarm_head_deadline(self) -> None:
            deadline = getattr(self, "_head_deadline", None)
            if deadline is not None:
                deadline.cancel()
            self._head_deadline = None
            self._waiting_after = getattr(self, "_waiting_after", None)

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            busy = self.cycle is not self._waiting_after or (self.cycle is not None and not self.cycle.response_complete)
            if not busy and not self.transport.is_closing():
                self.transport.close()

    HeadDeadline.__name__ = f"HeadDeadline{base.__name__}"
    return HeadDeadline
