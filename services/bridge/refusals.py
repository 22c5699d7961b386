"""The gate's refusals of the bridge's own events (pure): which rejections on
tongyuan.rejections.v1 concern this bridge, and what a refusal does to the item's record.

A refusal counts only against the item's latest event: a late refusal of an older event must
not undo a newer one. Counted, it puts back what the item was before that event (not live, if
it never was), forgets the content hash so that the next reconciliation sends the item again
(once a catalog or mapping change has removed the cause, it goes through), and carries the
gate's reasons for the problems list. Acted on once, the same refusal again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pydantic import ValidationError

from contracts.events import FieldError, RejectedEvent, RejectionData

from .detect import Known

MAX_CHOICES = 8


@dataclass(frozen=True)
class Refusal:
    kind: str  # refused | stale (not the latest event) | repeated (acted on before) | unknown | not_ours
    record: Known | None = None  # None: leave the stored record as it is
    detail: str | None = None  # the gate's reasons, for the problems list


def parse_rejection(raw: bytes | str) -> RejectionData | None:
    """A rejection, or None for anything else on the topic. Nothing there is the bridge's to
    dead-letter: the topic is the CMS's answer channel too, and its reader is not us."""
    try:
        return RejectedEvent.model_validate_json(raw).data
    except ValidationError:
        return None
    except Exception:  # not bytes at all, or what pydantic's parser did not foresee: still not ours
        return None


def concerns(rejection: RejectionData, source: str) -> bool:
    """Refusals of this bridge's events name its source and the item's 实施编码."""
    return rejection.original_source == source and bool(rejection.source_ref)


def refuse(known: Known | None, rejection: RejectionData, *, source: str) -> Refusal:
    if not concerns(rejection, source):
        return Refusal("not_ours")
    if known is None:
        return Refusal("unknown")
    if known.last_event_id is None or rejection.original_id != known.last_event_id:
        return Refusal("stale")
    if known.content_hash is None:  # every event sets a hash; only a refusal takes it away
        return Refusal("repeated")
    return Refusal("refused", replace(known, live=known.live_before_event, content_hash=None), reasons(rejection.errors))


def reasons(errors: Sequence[FieldError]) -> str:
    """The gate's field errors as one line an office can act on, with the valid choices."""
    parts = []
    for error in errors:
        where = ".".join(map(str, error.loc)) or "event"
        part = f"{where}: {error.msg}"
        if error.choices:
            shown = "、".join(f"{c.get('id')} {c.get('name')}" for c in error.choices[:MAX_CHOICES])
            part += f"（可选：{shown}{'…' if len(error.choices) > MAX_CHOICES else ''}）"
        parts.append(part)
    return ("发布网关拒绝：" + ("；".join(parts) or "未说明原因"))[:1000]
