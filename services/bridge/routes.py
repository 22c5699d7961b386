"""The bridge's HTTP surface: the platform's webhook, the unmapped-items page and its JSON twin,
the mapping workbook (GET/PUT xlsx) and a status document."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from contracts.catalog import standard_catalog
from contracts.identity import Principal
from services.common.auth import declared, requires_role
from services.common.bodies import BodyTooLarge, read_bounded
from services.common.http_errors import HTML, XLSX, answered_as, refusals
from services.common.workbooks import WorkbookLimits, WorkbookRefused, parse_workbook, read_body, refusal_response

from .mapping import MappingImportError, from_xlsx, to_xlsx
from .store import UNREADABLE, BridgeStore
from .sync import Bridge
from .webhooks import MAX_BODY, WebhookRefused, verify

PlatformPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]


def build_router(
    store: BridgeStore,
    templates: Jinja2Templates,
    *,
    bridge: Bridge | None,
    secrets: list[str],
    window: float = 300.0,
    authenticate: Callable[..., Principal] | None = None,
    workbook_limits: WorkbookLimits = WorkbookLimits(),
) -> APIRouter:
    """`bridge` None: a read-only mount (pages and workbook export; webhooks answer 503).
    `authenticate` None: no mapping upload either (it changes what is public, so it needs a
    verified administrator)."""
    router = APIRouter(tags=["bridge"])

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
    async def webhook(request: Request, platform: PlatformPath):
        if platform != store.platform:
            raise HTTPException(404, f"no bridge for platform {platform}")
        if bridge is None or not secrets:
            raise HTTPException(503, "webhooks are not configured here (TONGYUAN_BRIDGE_WEBHOOK_SECRET)")
        try:
            body = await read_bounded(request, MAX_BODY)
        except BodyTooLarge as exc:
            return exc.response()
        try:
            # Signature and time first; the nonce is recorded only for a genuine request.
            notice = await run_in_threadpool(verify, request.headers, body, secrets=secrets, now=time.time(), window=window, nonce_unused=store.nonce_unused)
        except WebhookRefused as refused:
            return JSONResponse({"detail": refused.reason}, status_code=refused.status)
        report = await run_in_threadpool(bridge.on_notice, notice)
        if report.failed:  # the platform could not be read back: ask the sender to try later
            return JSONResponse({"detail": "the item could not be fetched; polling will catch up", **report.as_dict()}, status_code=503)
        return report.as_dict()

    def listing() -> dict:
        status = store.status()
        return {
            "status": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in status.items()},
            "unmapped": [
                {
                    "implementation_code": k.implementation_code,
                    "name": k.title,
                    "region": k.region,
                    "mapping": k.mapping,
                    "reason": k.reason,
                    "basic_code": (k.document or {}).get("basic_code"),
                    "item_type": (k.document or {}).get("item_type"),
                    "department": (k.document or {}).get("department"),
                    "live": k.live,
                }
                for k in store.unmapped()
            ],
            "unreadable": [
                {"implementation_code": p["implementation_code"], "detail": p["detail"], "seen_at": p["seen_at"].isoformat()}
                for p in store.problems(UNREADABLE)
            ],
            "refused": [
                {
                    "implementation_code": r["implementation_code"],
                    "name": r["title"],
                    "region": r["region"],
                    "live": bool(r["live"]),
                    "detail": r["detail"],
                    "seen_at": r["seen_at"].isoformat(),
                }
                for r in store.refused()
            ],
        }

    @router.get("/v1/bridge/unmapped", responses=refusals(503))
    def unmapped_json():
        return listing()

    @router.get("/bridge/unmapped", response_class=Response, responses={**answered_as(HTML, "the unmapped items as a page"), **refusals(503)})
    def unmapped_page(request: Request):
        return templates.TemplateResponse(request, "bridge/unmapped.html", listing())

    @router.get("/v1/bridge/mapping.xlsx", response_class=Response, responses={**answered_as(XLSX, "the mapping as a workbook"), **refusals(503)})
    def export_mapping():
        data = to_xlsx(store.mapping(), standard_catalog())
        return Response(data, media_type=XLSX, headers={"content-disposition": 'attachment; filename="bridge-mapping.xlsx"'})

    if authenticate is not None:
        # The mapping decides what the bridge publishes and withdraws in every region: an
        # administrator's change (an admin acts for every region, so it is not regional).
        @router.put(
            "/v1/bridge/mapping.xlsx",
            dependencies=[Depends(requires_role(authenticate, "admin"))],
            openapi_extra=declared("admin"),
            responses=refusals(400, 401, 403, 413, 422, 429, 503, d413="past a workbook limit, named", d422="every problem with its cell"),
        )
        async def import_mapping(request: Request):
            try:
                body = await read_body(request, workbook_limits)
                table = await parse_workbook(
                    from_xlsx, body, workbook_limits, errors=(MappingImportError,), catalog=standard_catalog(), regions=bridge.regions if bridge else None
                )
            except WorkbookRefused as refused:
                return refusal_response(refused)
            except MappingImportError as exc:
                return JSONResponse({"detail": [{"loc": ["body"], "msg": problem, "type": "mapping.invalid"} for problem in exc.problems]}, status_code=422)
            await run_in_threadpool(store.save_mapping, table)
            report = await run_in_threadpool(bridge.remap) if bridge else None
            return {"rules": len(table.rules), "overrides": len(table.overrides), "areas": len(table.areas), "remap": report.as_dict() if report else None}

    return router
