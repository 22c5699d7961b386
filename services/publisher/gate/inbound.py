"""Inbound events from upstream systems (the CMS topic): decode, then through the same gate.

A message that cannot be accepted yields a `cn.gov.tongyuan.publication.rejected.v1`
event for tongyuan.rejections.v1, carrying the original id and field-level reasons. Whatever
one message does — nesting 50,000 deep, bytes that are not UTF-8, a null value, a request the
gate itself fails on — ends as that message's rejection: an exception escaping a lane's batch
would kill its agent with the batch unacked, and every other request in it would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import structlog
from pydantic import TypeAdapter, ValidationError

from contracts.events import (
    CLOUDEVENTS_CONTENT_TYPE,
    CMS_PUBLISH_REQUESTED,
    FieldError,
    PublishRequestData,
    RejectedEvent,
    RejectionData,
    new_event_id,
    utcnow,
)
from services.common.consuming import PoisonEvent, decode_json, is_transient
from services.publisher.store import Publisher

from . import batches, handlers
from .domain import Directory, Rejected

log = structlog.get_logger("tongyuan.publisher")


@dataclass(frozen=True)
class Outcome:
    accepted: handlers.Accepted | None = None
    rejection: RejectedEvent | None = None


# What AsyncAPI promises of every message on every topic, tongyuan.rejections.v1 included:
# readers pick their decoder by it.
REJECTION_HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]


def rejection_message(rejection: RejectedEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A rejection as it goes on tongyuan.rejections.v1: structured-mode JSON and its headers."""
    return rejection.model_dump_json(exclude_none=True).encode(), REJECTION_HEADERS


def _reject(original: dict, errors: list[FieldError]) -> Outcome:
    raw = original.get("data")
    data: dict = raw if isinstance(raw, dict) else {}
    return Outcome(
        rejection=RejectedEvent(
            id=new_event_id(),
            source="/publisher",
            subject=str(data.get("source_ref"))[:120] if data.get("source_ref") else None,
            time=utcnow(),
            data=RejectionData(
                original_id=str(original.get("id", ""))[:200],
                original_type=str(original.get("type"))[:200] if original.get("type") else None,
                original_source=str(original.get("source"))[:300] if original.get("source") else None,
                source_ref=str(data.get("source_ref"))[:120] if data.get("source_ref") else None,
                errors=tuple(errors),
            ),
        )
    )


def _pydantic_errors(exc: ValidationError, prefix: tuple = ()) -> list[FieldError]:
    return [
        FieldError(loc=(*prefix, *map(lambda p: p if isinstance(p, int) else str(p), e["loc"])), msg=e["msg"], type=e["type"])
        for e in exc.errors(include_url=False)
    ]


def check_envelope(raw: bytes, *, event_type: str, source_prefix: str) -> dict | Outcome:
    """The CloudEvent as a dict if its envelope is what this lane takes, else the rejection."""
    try:
        envelope = decode_json(raw)
    except PoisonEvent as exc:
        return _reject({}, [FieldError(loc=(), msg=f"the message is {exc}", type="json_invalid")])
    if not isinstance(envelope, dict):
        return _reject({}, [FieldError(loc=(), msg="a CloudEvent must be a JSON object", type="model_type")])
    errors: list[FieldError] = []
    for attribute in ("id", "source", "type", "data"):
        if not envelope.get(attribute):
            errors.append(FieldError(loc=(attribute,), msg="required CloudEvents attribute is missing", type="missing"))
    if envelope.get("specversion") != "1.0":
        errors.append(FieldError(loc=("specversion",), msg="must be 1.0", type="literal_error"))
    if envelope.get("type") and envelope["type"] != event_type:
        errors.append(FieldError(loc=("type",), msg=f"this topic takes {event_type}", type="literal_error"))
    source = envelope.get("source")
    if source and not (isinstance(source, str) and source.startswith(source_prefix) and len(source) > len(source_prefix)):
        errors.append(FieldError(loc=("source",), msg=f"a source here looks like {source_prefix}<name>", type="value_error"))
    return _reject(envelope, errors) if errors else envelope


_TIME = TypeAdapter(datetime)


def _event_time(envelope: dict) -> datetime | None:
    """The CloudEvent's `time` (RFC 3339; without an offset it is UTC, as the contract reads it)."""
    value = envelope.get("time")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("time must be an RFC 3339 timestamp")
    moment = _TIME.validate_python(value)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def parse_cms_message(raw: bytes) -> batches.InboundRequest | Outcome:
    """A well-formed publish request, or the rejection that says what is wrong with it. The
    CMS's own `time` orders its requests for one article (see batches.accept_inbound)."""
    envelope = check_envelope(raw, event_type=CMS_PUBLISH_REQUESTED, source_prefix="/cms/")
    if isinstance(envelope, Outcome):
        return envelope
    source = envelope["source"]
    try:
        sent = _event_time(envelope)
    except ValidationError as exc:
        return _reject(envelope, _pydantic_errors(exc, ("time",)))
    except ValueError as exc:
        return _reject(envelope, [FieldError(loc=("time",), msg=str(exc), type="datetime_type")])
    try:
        request = PublishRequestData.model_validate(envelope["data"])
    except ValidationError as exc:
        return _reject(envelope, _pydantic_errors(exc, ("data",)))
    return batches.InboundRequest(event_id=str(envelope["id"])[:200], source=source, request=request, upstream_time=sent)


def through_the_gate(raws: list[bytes], parse, event_type: str, *, publisher: Publisher, directory: Directory) -> list[Outcome]:
    """Parse every message of an inbound lane, put the well-formed ones through the gate in one
    transaction, and answer each message with its outcome (in order). Raises only what is worth
    retrying (the store is down)."""
    parsed = [_parsed(parse, raw) for raw in raws]
    requests = [p for p in parsed if isinstance(p, batches.InboundRequest)]
    results = iter(_accepted(requests, publisher=publisher, directory=directory) if requests else [])
    outcomes = []
    for item in parsed:
        if isinstance(item, Outcome):
            outcomes.append(item)
            continue
        result = next(results)
        if isinstance(result, _GateFailure):
            envelope = {"id": item.event_id, "type": event_type, "source": item.source, "data": {"source_ref": item.request.source_ref}}
            outcomes.append(_reject(envelope, [FieldError(loc=(), msg=f"the gate could not take this request ({result.error})", type="internal_error")]))
        elif isinstance(result, Rejected):
            envelope = {"id": item.event_id, "type": event_type, "source": item.source, "data": {"source_ref": item.request.source_ref}}
            # The gate's reasons are about the data, except an order refusal's (the envelope's time).
            errors = result.errors if isinstance(result, batches.OutOfOrder) else [e.model_copy(update={"loc": ("data", *e.loc)}) for e in result.errors]
            outcomes.append(_reject(envelope, errors))
        else:
            outcomes.append(Outcome(accepted=result))
    return outcomes


def _parsed(parse, raw) -> batches.InboundRequest | Outcome:
    try:
        return parse(raw)
    except Exception as exc:  # a parser's blind spot is still this message's alone
        log.error("inbound.unparseable", error=repr(exc)[:300])
        return _reject({}, [FieldError(loc=(), msg=f"the message cannot be read ({type(exc).__name__})", type="value_error")])


@dataclass(frozen=True)
class _GateFailure:
    error: str  # the exception's type: the CMS is told that, the log has the rest


def _accepted(requests: list[batches.InboundRequest], *, publisher: Publisher, directory: Directory) -> list:
    """The gate's answer to each request: one transaction for the batch; when that fails for a
    reason other than the store, one transaction each, so the request the gate fails on is
    refused (answered with its exception) and the others still go through."""
    try:
        return batches.accept_cms_batch(requests, publisher=publisher, directory=directory)
    except Exception as exc:
        if is_transient(exc):
            raise
        results: list = []
        for request in requests:
            try:
                results.extend(batches.accept_cms_batch([request], publisher=publisher, directory=directory))
            except Exception as one:
                if is_transient(one):
                    raise
                log.error("inbound.gate_failed", event_id=request.event_id, source=request.source, error=repr(one)[:300])
                results.append(_GateFailure(type(one).__name__))
        return results


def handle_cms_batch(raws: list[bytes], *, publisher: Publisher, directory: Directory) -> list[Outcome]:
    return through_the_gate(raws, parse_cms_message, CMS_PUBLISH_REQUESTED, publisher=publisher, directory=directory)


def handle_cms_message(raw: bytes, *, publisher: Publisher, directory: Directory) -> Outcome:
    (outcome,) = handle_cms_batch([raw], publisher=publisher, directory=directory)
    return outcome
