"""The publish API (POST /v1/publications …): translate HTTP into gate calls, nothing more.

What it works on comes from app.state: `publisher` and `directory` (the DirectoryProvider)."""

import hashlib
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.events import PublicationDraft
from contracts.identity import Principal
from services.common.auth import current_principal, declared, requires_role
from services.common.http_errors import NOT_MODIFIED, refusals
from services.common.wiring import provided
from services.publisher.store import Publisher

from . import handlers, reading
from .domain import Directory, Forbidden, Rejected, VersionConflict

PublicationIdPath = Annotated[str, Path(pattern=r"^[0-9a-zA-Z._:-]{1,80}$")]
RequestId = Annotated[str | None, Header(max_length=100, description="follows the publication into every consumer's logs")]


def request_id(request: Request, x_request_id: RequestId = None) -> str | None:
    """The id the response carries, for the event (its tongyuanrequestid): the one the portal's
    RequestIds settled on — the client's, or a fresh one when it sent none — and the header
    itself where no such middleware runs."""
    return getattr(request.state, "request_id", None) or x_request_id


RequestIdOfThisRequest = Annotated[str | None, Depends(request_id)]


class Revision(PublicationDraft):
    version: Annotated[int, Field(ge=1, description="the version this revision replaces; 409 if it is no longer current")]


REDIRECT_TARGET = r"^(https?://|/$|/[^/])"


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["withdrawn", "gone", "redirect", "vanish"]
    explanation: Annotated[str, Field(max_length=2000)] = ""
    # The validator below enforces it with a clear message; the pattern tells clients the same.
    redirect_to: Annotated[str | None, Field(max_length=500, json_schema_extra={"pattern": REDIRECT_TARGET})] = None
    version: Annotated[int | None, Field(ge=1)] = None

    @field_validator("redirect_to")
    @classmethod
    def _site_path_or_web_link(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith(("https://", "http://")) or (value.startswith("/") and not value.startswith("//"))):
            raise ValueError("must be a path on this site (/…) or an http(s) address")
        return value


class PublicationRecord(BaseModel):
    """A publication as its reader may see it: the whole record, or a withdrawal's tombstone."""

    publication_id: str
    version: int
    status: str
    publication: dict | None = Field(default=None, description="the document (absent from a tombstone)")
    withdrawal: dict | None = None


class Receipt(BaseModel):
    publication_id: str
    version: int
    status: str


def rejected_response(exc: Rejected) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={
            "detail": [
                {"loc": ["body", *e.loc], "msg": e.msg, "type": e.type, **({"choices": list(e.choices)} if e.choices is not None else {})} for e in exc.errors
            ]
        },
    )


def answer(call: Callable[[], handlers.Accepted]) -> JSONResponse:
    """The gate's outcome as HTTP: 202 with a receipt, or 422 / 403 / 404 / 409 with reasons."""
    try:
        accepted = call()
    except Rejected as exc:
        return rejected_response(exc)
    except Forbidden as exc:
        return JSONResponse(status_code=403, content={"detail": [{"loc": ["body", *e.loc], "msg": e.msg, "type": e.type} for e in exc.errors]})
    except handlers.NotFound:
        return JSONResponse(status_code=404, content={"detail": "no such publication"})
    except VersionConflict as exc:
        return JSONResponse(status_code=409, content={"detail": str(exc), "current_version": exc.current})
    return JSONResponse(status_code=202, content={"publication_id": accepted.publication_id, "version": accepted.version, "status": accepted.status})


router = APIRouter(prefix="/v1/publications", tags=["publications"])

PublisherDep = Annotated[Publisher, provided("publisher")]
DirectoryDep = Annotated[Callable[[], Directory], provided("directory")]
# The role is checked up front; the regions (of the draft and of the stored publication) by the
# gate, which answers 403 with the placement at fault.
Editor = Annotated[Principal, Depends(requires_role("editor"))]

# What every write may answer besides its own refusals: no or a bad token, a role or region it
# lacks, an unreadable or oversized body, too many writes, the store being down.
WRITE = (400, 401, 403, 413, 422, 429, 503)

_optional_bearer = HTTPBearer(auto_error=False, description="optional: an editor of the publication's region, or an admin, also reads withdrawn records")


def reader(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)]) -> Principal | None:
    """No token: a member of the public. A token that fails verification is still a 401."""
    return None if credentials is None else current_principal(request, credentials)


@router.post(
    "",
    status_code=202,
    response_model=Receipt,
    responses=refusals(*WRITE, d422="field-level reasons, with the valid choices"),
    openapi_extra=declared("editor", "body.placements"),
)
def publish(
    draft: Annotated[PublicationDraft, Body()], principal: Editor, request_id: RequestIdOfThisRequest, publisher: PublisherDep, directory: DirectoryDep
) -> JSONResponse:
    return answer(lambda: handlers.publish(draft, principal=principal, publisher=publisher, directory=directory(), request_id=request_id))


@router.post(
    "/{publication_id}",
    status_code=202,
    response_model=Receipt,
    responses=refusals(*WRITE, 404, 409, d409="stale version"),
    openapi_extra=declared("editor", "publication"),
)
def revise(
    publication_id: PublicationIdPath,
    revision: Annotated[Revision, Body()],
    principal: Editor,
    request_id: RequestIdOfThisRequest,
    publisher: PublisherDep,
    directory: DirectoryDep,
) -> JSONResponse:
    draft = PublicationDraft.model_validate(revision.model_dump(exclude={"version"}))
    return answer(
        lambda: handlers.revise(
            publication_id, draft, principal=principal, expected_version=revision.version, publisher=publisher, directory=directory(), request_id=request_id
        )
    )


@router.post(
    "/{publication_id}/withdraw",
    status_code=202,
    response_model=Receipt,
    responses=refusals(*WRITE, 404, 409, d409="stale version"),
    openapi_extra=declared("editor", "publication"),
)
def withdraw(
    publication_id: PublicationIdPath,
    request: Annotated[WithdrawalRequest, Body()],
    principal: Editor,
    request_id: RequestIdOfThisRequest,
    publisher: PublisherDep,
    directory: DirectoryDep,
) -> JSONResponse:
    return answer(
        lambda: handlers.withdraw(
            publication_id,
            withdrawal_type=request.type,
            explanation=request.explanation,
            redirect_to=request.redirect_to,
            expected_version=request.version,
            principal=principal,
            publisher=publisher,
            directory=directory(),
            request_id=request_id,
        )
    )


@router.get(
    "/{publication_id}",
    response_model=PublicationRecord,
    responses={
        **NOT_MODIFIED,
        **refusals(401, 404, 410, 422, 503, d404="unknown, or withdrawn as vanish"),
        410: {"model": PublicationRecord, "description": "withdrawn as gone: the tombstone"},
    },
)
def read(
    request: Request,
    publication_id: PublicationIdPath,
    principal: Annotated[Principal | None, Depends(reader)],
    publisher: PublisherDep,
    directory: DirectoryDep,
) -> Response:
    with publisher.transaction() as store:
        stored = store.get(publication_id)
    if stored is None:
        raise HTTPException(404, "no such publication")
    view = reading.view_for(stored, principal, directory().regions)
    # A record shown for its reader's rights is for that reader alone; what the public sees
    # may be kept by caches, but revalidated, so a withdrawal reaches them at once.
    headers = {"Cache-Control": "private, no-store" if view.full else "no-cache", "Vary": "Authorization"}
    if view.status_code == 200:
        headers["ETag"] = _etag(stored.publication_id, stored.version, view.full)
        if headers["ETag"] in {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=headers)
    return JSONResponse(status_code=view.status_code, content=view.body, headers=headers)


def _etag(publication_id: str, version: int, full: bool) -> str:
    stamp = f"{publication_id}|{version}|{'full' if full else 'public'}"
    return '"' + hashlib.blake2b(stamp.encode(), digest_size=12).hexdigest() + '"'
