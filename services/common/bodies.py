"""Request bodies read with a cap: a handler that reads its own body (a workbook, a signed
webhook) never holds more than its limit, even from a client that sends no Content-Length or
a mount without the portal's BoundedBodies middleware."""

from __future__ import annotations


class BodyTooLarge(Exception):
    def __init__(self, limit: int, what: str):
        super().__init__(f"{what}超过 {limit} 字节的上限")
        self.limit = limit
        self.what = what

    def response(self):
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=413, content={"detail": [{"loc": ["body", "max_bytes"], "msg": str(self), "type": "too_large"}]})


async def read_bounded(request, limit: int, what: str = "请求体") -> bytes:
    """The body, or BodyTooLarge as soon as it exceeds `limit` bytes (a declared Content-Length
    past it is refused before anything is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, what)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit, what)
    return bytes(body)
