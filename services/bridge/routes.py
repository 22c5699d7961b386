"""The bridge's HTTP surface: the platform's webhook, the unmapped-items page and its JSON twin,
the mapping workbook (GET/PUT xlsx) and a status document.

The routes read the bridge the composition root put on `app.state.bridge_runtime` (the portal's,
or `tongyuan bridge poll --webhook-port`'s own small app)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from contracts.catalog import standard_catalog
from services.common.auth import declared, requires_role
from services.common.bodies import BodyTooLarge, read_bounded
from services.common.http_errors import HTML, XLSX, answered_as, refusals
from services.common.wiring import provided
from services.common.workbooks import WorkbookLimits, WorkbookRefused, parse_workbook, read_body, refusal_response

from .mapping import MappingImportError, from_xlsx, to_xlsx
from .store import UNREADABLE, BridgeStore, Known
from .sync import Bridge
from .webhooks import MAX_BODY, WebhookRefused, verify

PlatformPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]


class BridgeSettingsView(Protocol):
    @property
    def secrets(self) -> list[str]: ...

    @property
    def webhook_window(self) -> float: ...


class BridgeRuntime(Protocol):
    """What the routes need of the bridge the composition root built (bridge.app.Runtime)."""

    @property
    def store(self) -> BridgeStore: ...

    @property
    def bridge(self) -> Bridge: ...

    @property
    def settings(self) -> BridgeSettingsView: ...


RuntimeDep = Annotated[BridgeRuntime, provided("bridge_runtime")]
Templates = Annotated[Jinja2Templates, provided("templates")]
Limits = Annotated[WorkbookLimits, provided("workbook_limits")]

# The webhook, the pages and the workbook export; `mapping_router` holds the upload.
router = APIRouter(tags=["bridge"])
# The mapping decides what the bridge publishes and withdraws in every region: an
# administrator's change (an admin acts for every region, so it is not regional). Mounted
# where a verifier is on app.state.
mapping_router = APIRouter(tags=["bridge"])


# Authenticated by the platform's HMAC signature (webhooks.verify), not by a bearer token.
@router.post(
    "/bridge/webhooks/{platform}",
    status_code=202,
    responses=refusals(
        400,
        401,
        404,
        409,
        413,
        422,
        429,
        503,
        html=(429,),
        d404="no bridge for this platform",
        d503="not configured here, or the item could not be fetched yet",
    ),
)
async def webhook(request: Request, platform: PlatformPath, runtime: RuntimeDep):
    store, secrets = runtime.store, runtime.settings.secrets
    if platform != store.platform:
        raise HTTPException(404, f"no bridge for platform {platform}")
    if not secrets:
        raise HTTPException(503, "webhooks are not configured here (TONGYUAN_BRIDGE_WEBHOOK_SECRET)")
    try:
        body = await read_bounded(request, MAX_BODY)
    except BodyTooLarge as exc:
        return exc.response()
    try:
        # Signature and time first; the nonce is recorded only for a genuine request.
        notice = await run_in_threadpool(
            verify, request.headers, body, secrets=secrets, now=time.time(), window=runtime.settings.webhook_window, nonce_unused=store.nonce_unused
        )
    except WebhookRefused as refused:
        return JSONResponse({"detail": refused.reason}, status_code=refused.status)
    report = await run_in_threadpool(runtime.bridge.on_notice, notice)
    if report.failed:  # the platform could not be read back: ask the sender to try later
        return JSONResponse({"detail": "the item could not be fetched; polling will catch up", **report.as_dict()}, status_code=503)
    return report.as_dict()


def _unmapped(known: Known) -> dict:
    document = known.document or {}
    return {
        "implementation_code": known.implementation_code,
        "name": known.title,
        "region": known.region,
        "mapping": known.mapping,
        "reason": known.reason,
        "basic_code": document.get("basic_code"),
        "item_type": document.get("item_type"),
        "department": document.get("department"),
        "live": known.live,
    }


def _refused(row: Mapping[str, Any]) -> dict:
    return {
        "implementation_code": row["implementation_code"],
        "name": row["title"],
        "region": row["region"],
        "live": bool(row["live"]),
        "detail": row["detail"],
        "seen_at": row["seen_at"].isoformat(),
    }


def listing(store: BridgeStore) -> dict:
    """The bridge's status and what it could not publish: unmapped, unreadable, refused."""
    status = store.status()
    return {
        "status": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in status.items()},
        "unmapped": [_unmapped(known) for known in store.unmapped()],
        "unreadable": [
            {"implementation_code": p["implementation_code"], "detail": p["detail"], "seen_at": p["seen_at"].isoformat()} for p in store.problems(UNREADABLE)
        ],
        "refused": [_refused(row) for row in store.refused()],
    }


@router.get("/v1/bridge/unmapped", responses=refusals(503))
def unmapped_json(runtime: RuntimeDep):
    return listing(runtime.store)


@router.get("/bridge/unmapped", response_class=Response, responses={**answered_as(HTML, "the unmapped items as a page"), **refusals(503)})
def unmapped_page(request: Request, runtime: RuntimeDep, templates: Templates):
    return templates.TemplateResponse(request, "bridge/unmapped.html", listing(runtime.store))


@router.get("/v1/bridge/mapping.xlsx", response_class=Response, responses={**answered_as(XLSX, "the mapping as a workbook"), **refusals(503)})
def export_mapping(runtime: RuntimeDep):
    data = to_xlsx(runtime.store.mapping(), standard_catalog())
    return Response(data, media_type=XLSX, headers={"content-disposition": 'attachment; filename="bridge-mapping.xlsx"'})


@mapping_router.put(
    "/v1/bridge/mapping.xlsx",
    dependencies=[Depends(requires_role("admin"))],
    openapi_extra=declared("admin"),
    responses=refusals(400, 401, 403, 413, 422, 429, 503, d413="past a workbook limit, named", d422="every problem with its cell"),
)
async def import_mapping(request: Request, runtime: RuntimeDep, workbook_limits: Limits):
    try:
        body = await read_body(request, workbook_limits)
        table = await parse_workbook(from_xlsx, body, workbook_limits, errors=(MappingImportError,), catalog=standard_catalog(), regions=runtime.bridge.regions)
    except WorkbookRefused as refused:
        return refusal_response(refused)
    except MappingImportError as exc:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": problem, "type": "mapping.invalid"} for problem in exc.problems]}, status_code=422)
    await run_in_threadpool(runtime.store.save_mapping, table)
    report = await run_in_threadpool(runtime.bridge.remap)
    return {"rules": len(table.rules), "overrides": len(table.overrides), "areas": len(table.areas), "remap": report.as_dict()}
