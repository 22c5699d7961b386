"""GET /healthz: broker, every consumer (by its heartbeat) and every store; 200 only if all are up."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kafka import KafkaAdminClient
from pydantic import BaseModel, ConfigDict

from services.common.kafka import broker_reachable
from services.common.wiring import provided


@dataclass
class Check:
    name: str
    probe: Callable[[], dict]  # returns details; raises or returns {"up": False} when down


def broker_probe(bootstrap: str | None, cache_seconds: float = 2.0) -> Callable[[], dict]:
    cached: dict = {}

    def probe() -> dict:
        if not bootstrap:
            return {"up": False, "error": "no broker configured (TONGYUAN_KAFKA_BOOTSTRAP)"}
        if cached and time.monotonic() - cached["at"] < cache_seconds:
            return cached["result"]
        if not broker_reachable(bootstrap):
            result = {"up": False, "bootstrap": bootstrap, "error": "connection refused"}
            cached.update(result=result, at=time.monotonic())
            return result
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
            try:
                topics = len(admin.list_topics())
            finally:
                admin.close()
            result = {"up": True, "bootstrap": bootstrap, "topics": topics}
        except Exception as exc:
            result = {"up": False, "bootstrap": bootstrap, "error": type(exc).__name__}
        cached.update(result=result, at=time.monotonic())
        return result

    return probe


def store_probe(healthy: Callable[[], object]) -> Callable[[], dict]:
    """`healthy` may be async (the search port is); probes run in a worker thread."""

    def probe() -> dict:
        result = healthy()
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return {"up": bool(result)}

    return probe


def reemission_probe(pending: Callable[[], bool]) -> Callable[[], dict]:
    """Down while the publisher owes the broker a re-emission: a broker that lost its log
    (restarted with memory storage) answers, but the consumers have not been sent what it lost."""

    def probe() -> dict:
        owed = bool(pending())
        return {"up": not owed, "reemission_pending": owed}

    return probe


def consumer_probe(workers: Callable[[], list[dict]]) -> Callable[[], dict]:
    def probe() -> dict:
        live = workers()
        lags = [w["lag"] for w in live if w.get("lag") is not None]
        return {"up": bool(live), "workers": len(live), "lag": sum(lags) if lags else None}

    return probe


class HealthReport(BaseModel):
    """What /healthz and /readyz answer, up (200) or not (503)."""

    model_config = ConfigDict(extra="allow")  # /readyz adds who is behind and the allowed lag

    status: str
    checks: dict[str, dict]


_REPORTED = {"model": HealthReport}


@dataclass(frozen=True)
class HealthChecks:
    """What /healthz and /readyz run (the composition root puts it on app.state.health_checks):
    the checks, how far behind a consumer may be and still be ready, and how long a probe may take."""

    checks: list[Check]
    max_lag: int
    timeout: float = 3.0


Checks = Annotated[HealthChecks, provided("health_checks")]

router = APIRouter(tags=["health"])


async def run_one(check: Check, timeout: float) -> dict:
    try:
        return await asyncio.wait_for(asyncio.to_thread(check.probe), timeout)
    except TimeoutError:
        # A store that stopped answering must not hold the whole answer: the probe's thread
        # finishes on its own.
        return {"up": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:
        return {"up": False, "error": type(exc).__name__}


async def run_checks(health: HealthChecks) -> dict[str, dict]:
    # All at once: the slowest check, not their sum, bounds the answer.
    results = await asyncio.gather(*(run_one(check, health.timeout) for check in health.checks))
    return {check.name: result for check, result in zip(health.checks, results, strict=True)}


@router.get("/healthz", response_model=HealthReport, responses={503: {**_REPORTED, "description": "something is down: which, in checks"}})
async def healthz(health: Checks):
    """Broker, every consumer and every store: 200 only when all are up."""
    results = await run_checks(health)
    up = all(r.get("up") for r in results.values())
    return JSONResponse(status_code=200 if up else 503, content={"status": "up" if up else "down", "checks": results})


@router.get("/readyz", response_model=HealthReport, responses={503: {**_REPORTED, "description": "down, or a consumer too far behind"}})
async def readyz(health: Checks):
    """Up, and no consumer further behind than max_lag: what a load balancer should ask."""
    results = await run_checks(health)
    behind = {name: r["lag"] for name, r in results.items() if (r.get("lag") or 0) > health.max_lag}
    ready = all(r.get("up") for r in results.values()) and not behind
    content = {"status": "ready" if ready else "not ready", "behind": behind, "max_lag": health.max_lag, "checks": results}
    return JSONResponse(status_code=200 if ready else 503, content=content)
