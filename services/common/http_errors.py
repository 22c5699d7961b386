"""The error answers of the HTTP routes, declared once for the OpenAPI document: the bodies'
models and `responses=` entries that routes combine with `refusals(...)`.

FastAPI only documents 200 and its own 422; a client (or schemathesis) reading the document
must also learn the 401/403/404/409/410/413/429/503 the routes really give, and their shapes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """One reason a request was refused, at the place it concerns (FastAPI's own shape)."""

    # FastAPI adds input/ctx/url; the gate adds the valid choices.
    model_config = ConfigDict(extra="allow")

    loc: list[str | int | None] = Field(description="where: body/query/path, then the field, or a workbook's sheet, row and column")
    msg: str
    type: str


class Problems(BaseModel):
    """Field-level reasons: every problem found, not just the first."""

    detail: list[Problem]


class Message(BaseModel):
    """A refusal in one sentence."""

    model_config = ConfigDict(extra="allow")

    detail: str


class WithChoices(BaseModel):
    msg: str
    choices: list[dict[str, Any]] = Field(description="what exists instead")


class Refusal(BaseModel):
    """A sentence, field-level reasons, or a sentence with the valid choices."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[Problem] | WithChoices


class Conflict(BaseModel):
    model_config = ConfigDict(extra="allow")

    detail: str
    current_version: int | None = Field(default=None, description="the version now current, when a stale one was named")


class TooMany(BaseModel):
    detail: str
    retry_after: int


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
_AUTHENTICATE = {"WWW-Authenticate": {"description": "the scheme to authenticate with", "schema": {"type": "string"}}}

RESPONSES: dict[int, dict[str, Any]] = {
    400: {"model": Message, "description": "a body that could not be parsed at all"},
    401: {"model": Message, "description": "no bearer token, or one that does not verify", "headers": _AUTHENTICATE},
    403: {"model": Refusal, "description": "the token lacks the role, or the region, this needs"},
    404: {"model": Refusal, "description": "no such thing"},
    409: {"model": Conflict, "description": "in conflict with what is stored (a stale version, an edition's state)"},
    410: {"model": Refusal, "description": "withdrawn for good: the tombstone"},
    413: {"model": Problems, "description": "the body is past a size limit, named"},
    422: {"model": Problems, "description": "field-level reasons"},
    429: {"model": TooMany, "description": "too many requests: try again after Retry-After seconds", "headers": _RETRY_AFTER},
    503: {
        "model": Message,
        "description": "a store, the catalog or a configuration is not available yet; nothing was changed, try again",
        "headers": _RETRY_AFTER,
    },
}


def refusals(*codes: int, html: tuple[int, ...] = (), **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the shared entries for `codes`; those in `html` are answered
    with a page (text/html) instead of JSON; `descriptions` (e.g. `d404="…"`) say it for this
    route. JSON bodies land under application/json only on routes whose response_class has no
    media type of its own (JSONResponse or plain Response): FastAPI files them under it."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry = dict(RESPONSES[code])
        if code in html:
            del entry["model"]
            entry["content"] = {"text/html": {"schema": {"type": "string"}}}
        if f"d{code}" in descriptions:
            entry["description"] = descriptions[f"d{code}"]
        declared[code] = entry
    return declared


def answered_as(media_type: str, description: str = "Successful Response", status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The entry for a success in a media type of its own (a page, a workbook, a feed); the
    route takes `response_class=Response`, so FastAPI adds no application/json beside it."""
    schema: dict[str, Any] = {"type": "object"} if media_type == JSON_FEED else {"type": "string"}
    if media_type == XLSX:
        schema["format"] = "binary"
    return {status: {"description": description, "content": {media_type: {"schema": schema}}}}


HTML = "text/html"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ATOM = "application/atom+xml"
JSON_FEED = "application/feed+json"
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {304: {"description": "not modified: the ETag sent in If-None-Match is still current"}}
