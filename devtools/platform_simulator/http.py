"""The simulated platform's HTTP API (and `/_sim/*`, its controls), and `Served`: an ASGI app on a thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timezone

import structlog
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from .items import Faults
from .platform import Platform, WebhookSender

log = structlog.get_logger("tongyuan.bridge.simulator")


class WebhookBody(BaseModel):
    url: str
    secret: str


class EditBody(BaseModel):
    note: str | None = None
    changes: dict | None = None


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="政务服务一体化平台（模拟）", docs_url="/_sim/docs", openapi_url="/_sim/openapi.json")
    app.state.platform = platform

    async def weather(allow_truncation: bool = True) -> Response | None:
        """Timeouts and server errors hit every API call alike."""
        if platform._roll("timeout"):
            await asyncio.sleep(platform.faults.hang_seconds)
        if platform._roll("error"):
            return JSONResponse({"code": 500, "msg": "系统繁忙，请稍后再试"}, status_code=platform.rng.choice((500, 502, 503)))
        return None

    def answer(body: dict) -> Response:
        raw = json.dumps(body, ensure_ascii=False).encode()
        if platform._roll("truncated"):
            raw = raw[: platform.rng.randrange(1, max(2, len(raw) - 1))]
        return Response(raw, media_type="application/json")

    @app.get("/api/v1/items")
    async def list_items(updated_since: datetime | None = None, page: int = Query(1, ge=1), page_size: int = Query(100, ge=1, le=500)):
        if (refusal := await weather()) is not None:
            return refusal
        if updated_since is not None and updated_since.tzinfo is None:
            updated_since = updated_since.replace(tzinfo=timezone.utc)
        body, doomed = platform.list_page(updated_since, page, page_size)
        for code in doomed:  # gone before the client asks for its detail
            platform.delete(code)
        return answer(body)

    @app.get("/api/v1/items/{code}")
    async def item_detail(code: str):
        if (refusal := await weather()) is not None:
            return refusal
        body = platform.detail(code)
        if body is None:
            return JSONResponse({"code": 404, "msg": "事项不存在或已删除"}, status_code=404)
        return answer(body)

    @app.get("/apply/{code}", response_class=HTMLResponse, include_in_schema=False)
    def apply_online(code: str):
        return f"<!doctype html><meta charset=utf-8><title>网上办理</title><h1>网上办理（模拟）</h1><p>{code}</p>"

    @app.get("/forms/{name}", include_in_schema=False)
    def blank_form(name: str):
        return Response(f"blank form {name}".encode(), media_type="application/octet-stream")

    add_controls(app, platform)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception):  # the platform's own bugs look like 500s
        log.exception("simulator.error", error=repr(exc))
        return JSONResponse({"code": 500, "msg": "内部错误"}, status_code=500)

    return app


def add_controls(app: FastAPI, platform: Platform) -> None:
    """`/_sim/*`: what tests, the benchmark and demos do to the platform (edit, revoke, delete,
    churn, faults, the webhook) and its true state."""

    @app.get("/_sim/state")
    def sim_state():
        return platform.state()

    @app.post("/_sim/faults")
    def set_faults(body: Faults):
        platform.faults = body
        return body

    @app.post("/_sim/webhook")
    def set_webhook(body: WebhookBody):
        if platform.webhooks:
            platform.webhooks.close()
        platform.webhooks = WebhookSender(body.url, body.secret)
        return {"url": body.url}

    @app.post("/_sim/items/{code}/edit")
    def sim_edit(code: str, body: EditBody):
        if code not in platform.items:
            raise HTTPException(404, "no such item")
        return platform.edit(code, note=body.note, changes=body.changes)

    @app.post("/_sim/items/{code}/{action}")
    def sim_action(code: str, action: str):
        if code not in platform.items:
            raise HTTPException(404, "no such item")
        if action not in ("revoke", "reinstate", "delete"):
            raise HTTPException(404, "unknown action")
        getattr(platform, action)(code)
        return {"implementation_code": code, "action": action}

    @app.post("/_sim/churn")
    def sim_churn(count: int = Query(10, ge=1, le=10_000)):
        return platform.churn(count)


class Served:
    """An ASGI app served by uvicorn on a thread (tests, the benchmark, `bridge simulate`)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name=f"served-{port}", daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
