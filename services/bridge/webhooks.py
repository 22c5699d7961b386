"""Webhook signatures: HMAC-SHA256 over timestamp, nonce and body; a bounded timestamp window;
each nonce accepted once. Verification comes before anything else is done with a request.

Headers: `X-Zwfw-Timestamp` (unix seconds), `X-Zwfw-Nonce` (8–64 chars), `X-Zwfw-Signature`
(`sha256=` + hex of HMAC(secret, f"{timestamp}\\n{nonce}\\n" + body)).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

TIMESTAMP, NONCE, SIGNATURE = "x-zwfw-timestamp", "x-zwfw-nonce", "x-zwfw-signature"
_NONCE = re.compile(r"^[0-9A-Za-z_-]{8,64}$")
_CODE = re.compile(r"^[0-9A-Z-]{20,80}$")
EVENTS = ("item.created", "item.updated", "item.revoked", "item.deleted")
MAX_BODY = 64 * 1024


class WebhookRefused(Exception):
    """The request is not one the platform sent (or it was sent before); nothing is done."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Notice:
    """What a verified webhook tells us: which item changed. The bridge then asks the platform
    for the item itself, so a notice never carries content we would have to trust."""

    event: str
    platform: str
    implementation_code: str
    version: int | None
    nonce: str
    timestamp: int


def _mac(secret: str, timestamp: int, nonce: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}\n{nonce}\n".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, timestamp: int, nonce: str) -> dict[str, str]:
    return {"X-Zwfw-Timestamp": str(timestamp), "X-Zwfw-Nonce": nonce, "X-Zwfw-Signature": "sha256=" + _mac(secret, timestamp, nonce, body)}


def verify(headers: Mapping[str, str], body: bytes, *, secrets: list[str], now: float, window: float, nonce_unused: Callable[[str, datetime], bool]) -> Notice:
    """The notice, or WebhookRefused. `secrets` may hold the old and the new secret during a
    rotation. `nonce_unused(nonce, seen_at)` records the nonce and answers False if it was seen
    before; it is called only for a request whose signature and time are good."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp_text, nonce, signature = lower.get(TIMESTAMP, ""), lower.get(NONCE, ""), lower.get(SIGNATURE, "")
    if not (timestamp_text and nonce and signature):
        raise WebhookRefused(401, "missing signature headers")
    if len(body) > MAX_BODY:
        raise WebhookRefused(413, "body too large")
    if not timestamp_text.isdigit() or not _NONCE.match(nonce):
        raise WebhookRefused(401, "malformed timestamp or nonce")
    timestamp = int(timestamp_text)
    given = signature.removeprefix("sha256=")
    if not any(hmac.compare_digest(given, _mac(secret, timestamp, nonce, body)) for secret in secrets if secret):
        raise WebhookRefused(401, "bad signature")
    if abs(now - timestamp) > window:
        raise WebhookRefused(401, "timestamp outside the accepted window")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "body is not JSON") from None
    except RecursionError:
        # The decoder recurses once per level: a few thousand `[` exhaust the interpreter's
        # recursion limit, which is bad input like any other, not a server error.
        raise WebhookRefused(400, "body nests too deeply; a notice is one flat JSON object") from None
    if not isinstance(payload, dict) or payload.get("event") not in EVENTS or not _CODE.match(str(payload.get("implementation_code", ""))):
        raise WebhookRefused(400, "not a service-item notice")
    version = payload.get("version")
    if not nonce_unused(nonce, datetime.fromtimestamp(timestamp).astimezone()):
        raise WebhookRefused(409, "replayed nonce")
    return Notice(
        event=payload["event"],
        platform=str(payload.get("platform", ""))[:40],
        implementation_code=payload["implementation_code"],
        version=version if isinstance(version, int) else None,
        nonce=nonce,
        timestamp=timestamp,
    )
