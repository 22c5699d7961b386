"""Request bodies are bounded before anything parses them, with or without Content-Length."""

from __future__ import annotations

import json


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
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
