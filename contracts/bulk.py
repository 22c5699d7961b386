"""Reading the bulk lane (tongyuan.publications.bulk.v1) with any CloudEvents SDK.

The CloudEvents Kafka binding defines one event per record (binary or structured mode). The bulk
lane packs up to BULK_EVENTS_PER_MESSAGE events (at most BULK_BYTES_PER_MESSAGE) into one record
in the CloudEvents JSON batch format (JSON Event Format §4: a JSON array of structured events,
content-type `application/cloudevents-batch+json`), because a migration's million events would
otherwise pay the relay's, the broker's and every consumer's per-record cost a million times
(`make bench-bulk-lane` measures the difference). Such a record has no key; its events
carry their own subject (publication_id) and are ordered by their versions.

`structured_records` turns one bulk-lane record into the records the binding does define: one
(headers, value) pair per event in structured mode, which an SDK reads as it reads the canonical
topic (Python: `cloudevents.v1.kafka.from_structured(KafkaMessage(headers, key, value))`). A record
that is already a single structured event comes back as it is. It needs only the standard library
and the two content types, so a third party can copy it as it stands.
"""

from __future__ import annotations

import json

from .events import CLOUDEVENTS_BATCH_CONTENT_TYPE, CLOUDEVENTS_CONTENT_TYPE

_STRUCTURED = {"content-type": CLOUDEVENTS_CONTENT_TYPE.encode()}


def structured_records(value: bytes, headers: dict[str, bytes] | None = None) -> list[tuple[dict[str, bytes], bytes]]:
    """Each event of a bulk-lane record as a structured-mode record: (headers, value).

    Raises ValueError for a batch record that is not a JSON array of JSON objects."""
    content_type = (headers or {}).get("content-type", b"").decode("latin-1").split(";")[0].strip()
    if content_type != CLOUDEVENTS_BATCH_CONTENT_TYPE and not value.lstrip()[:1] == b"[":
        return [({**(headers or {}), **_STRUCTURED}, value)]
    events = json.loads(value)
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise ValueError("a CloudEvents batch is a JSON array of CloudEvents (JSON objects)")
    return [(dict(_STRUCTURED), json.dumps(event, ensure_ascii=False).encode()) for event in events]
