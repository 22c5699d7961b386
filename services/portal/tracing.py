"""Every request carries an id: the client's X-Request-Id or a fresh one, bound into the
structlog context for the request's log lines, echoed on the response, and left in the
request's state (`request.state.request_id`) so the events a request causes carry the same id
the client was answered with.

Pure ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the app
in a task of its own and streams the response through a memory channel, a cost paid on every
request."""

from __future__ import annotations

import re
import uuid

import structlog

_HEADER = b"x-request-id"
# A client's id is kept when it is short visible ASCII; anything else (a kilobyte of it, or
# characters that would forge log lines) is replaced by a fresh one.
_ACCEPTABLE = re.compile(rb"[\x21-\x7e]{1,100}")


def request_id_of(headers) -> str:
    """The client's X-Request-Id when it is acceptable, else a fresh one."""
    sent = next((value for name, value in headers or () if name == _HEADER), None)
    return sent.decode("ascii") if sent is not None and _ACCEPTABLE.fullmatch(sent) else uuid.uuid4().hex


class RequestIds:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_of(scope.get("headers"))
        encoded = request_id.encode("ascii")
        # Starlette's Request.state reads this dict: the publish API takes the id from it.
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = [(name, value) for name, value in message.get("headers") or () if name != _HEADER]
                message = {**message, "headers": [*headers, (_HEADER, encoded)]}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
