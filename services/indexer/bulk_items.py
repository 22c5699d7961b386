"""What one item of a `_bulk` answer means for its event: the same on Elasticsearch and
OpenSearch, whose bulk item answers agree. Pure functions."""

from __future__ import annotations

from typing import Any, Literal

Outcome = Literal["applied", "stale", "refused", "unavailable"]

# Per-item statuses worth retrying: the node is overloaded (429, its write queue is full)
# or briefly unavailable (5xx, e.g. a primary shard relocating).
RETRY_STATUSES = (429, 500, 502, 503, 504)


def outcome_of(info: dict[str, Any]) -> Outcome:
    """What one bulk item's answer means for its event."""
    status = info.get("status", 500)
    if 200 <= status < 300:
        return "applied"
    if status == 409:  # version_conflict_engine_exception: the index already has this version or a newer one
        return "stale"
    if status == 400 and "exception" not in info:
        # The document itself was refused (mapper_parsing_exception, document_parsing_exception,
        # illegal_argument_exception …): retrying cannot help, so it goes to the DLQ.
        # ("exception" marks a whole request that failed — not this event's fault.)
        return "refused"
    # 429/5xx still failing after the retries, a missing alias (require_alias → 404), a
    # security refusal (401/403), a request too large (413): hold the batch and retry.
    return "unavailable"


def reason_of(info: dict[str, Any], engine: str = "Elasticsearch") -> str:
    error = info.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        caused_by = error.get("caused_by")
        if isinstance(caused_by, dict):
            reason += f" (caused by {caused_by.get('type')}: {caused_by.get('reason')})"
    else:
        reason = str(error)
    return f"{engine} {info.get('status')} {reason}"
