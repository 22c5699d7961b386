"""An app that mounts a service's module-level routers over what a test put on app.state, as
the portal's composition root would (services/portal/app.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, FastAPI

from contracts.catalog import Region


def mounted(*routers: APIRouter, **state: Any) -> FastAPI:
    """An app with `routers` mounted and each keyword set on app.state."""
    app = FastAPI()
    for name, value in state.items():
        setattr(app.state, name, value)
    for router in routers:
        app.include_router(router)
    return app


def directory_of(regions: Mapping[str, Region]) -> Callable[[], Any]:
    """A stand-in for the portal's DirectoryProvider: calling it gives a directory with `regions`."""
    directory = SimpleNamespace(regions=dict(regions))
    return lambda: directory
