"""How a module-level router reaches what the composition root built.

`services/bootstrap.py` builds every store, index and provider once; the portal's `create_app`
puts each on `app.state` under a name, and a route asks for it with an `Annotated` dependency
(`ColumnStoreDep = Annotated[ColumnStore, provided("column_store")]`). Routes stay plain
module-level functions: a test mounts `routes.router` on an app whose state holds its own store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from contracts.catalog import Region


def provided(name: str) -> Any:
    """A dependency on what the composition root put on `app.state` under `name`."""

    def dependency(request: Request) -> Any:
        try:
            return getattr(request.app.state, name)
        except AttributeError:
            # A wiring mistake, not a client's: the app was composed without it.
            raise RuntimeError(f"the app was composed without {name!r} on app.state") from None

    dependency.__name__ = f"provided_{name}"
    return Depends(dependency)


class _Directory(Protocol):
    regions: dict[str, Region]


def directory_regions(directory: Annotated[Callable[[], _Directory], provided("directory")]) -> dict[str, Region]:
    """The regions of the directory in force (one read per request: a request sees one directory)."""
    return directory().regions


# The regions as a route's parameter: `def page(regions: Regions)`.
Regions = Annotated[dict[str, Region], Depends(directory_regions)]
