"""The one composition root: every part a process needs, built from Settings.

The portal (services/portal/app.py), the CLI, the operations and the consumers ask a
`Composition` for what they use; each part is built on first use and kept for the process,
so a command that needs only the bridge's store never opens the search index. Each service
keeps its own wiring (`*/app.py`: `build_store`, `build_index`, `bootstrap`); this module is
the only one that calls them all.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from services.common.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.bridge.app import Runtime
    from services.bridge.store import BridgeStore
    from services.catalog.directory import DirectoryProvider
    from services.catalog.store import Catalogs
    from services.column.store import ColumnStore
    from services.common.auth import LocalKey, TokenVerifier
    from services.common.workbooks import WorkbookLimits
    from services.embed.store import EmbedStore
    from services.indexer.index import SearchIndex
    from services.publisher.store import Publisher
    from services.supervision.store import SupervisionStore


class Composition:
    """What one process is made of. `load_reference`: load the standard catalog and the
    Changsha regions into a new publisher store (off for the operations, which only read);
    `cache_mb`: the page cache of the store connections (a bulk writer's, a consumer's or the
    migration's, is larger: services.common.db.BULK_WRITER_CACHE_MB)."""

    def __init__(self, settings: Settings, *, load_reference: bool = True, cache_mb: int | None = None) -> None:
        self.settings = settings
        self.load_reference = load_reference
        self.cache_mb = cache_mb

    @cached_property
    def publisher(self) -> Publisher:
        from services.publisher import app as publisher_app

        return publisher_app.bootstrap(self.settings, load_reference=self.load_reference, cache_mb=self.cache_mb)

    @cached_property
    def directory(self) -> DirectoryProvider:
        """The catalogs in force and the regions, re-read when any process changed them."""
        from services.publisher.app import directory_provider

        return directory_provider(self.publisher)

    @cached_property
    def catalogs(self) -> Catalogs:
        """The catalog editions and the regions, read and written outside a publication."""
        from services.catalog.store import Catalogs

        return Catalogs(self.publisher.engine)

    @property
    def on_catalog_change(self) -> Callable[[], None]:
        return self.directory.invalidate

    @cached_property
    def column_store(self) -> ColumnStore:
        from services.column.app import build_store

        return build_store(self.settings, cache_mb=self.cache_mb)

    @cached_property
    def search_index(self) -> SearchIndex:
        from services.indexer.app import build_index

        return build_index(self.settings, cache_mb=self.cache_mb)

    @cached_property
    def embed_store(self) -> EmbedStore:
        from services.embed.app import build_store

        return build_store(self.settings, cache_mb=self.cache_mb)

    @cached_property
    def supervision_store(self) -> SupervisionStore:
        from services.supervision.app import build_store

        return build_store(self.settings, cache_mb=self.cache_mb)

    @cached_property
    def bridge_runtime(self) -> Runtime:
        """The bridge as the portal and the one-shot commands use it: not started (no polling,
        no relay, no refusals listener); `tongyuan bridge poll` builds a running one."""
        from services.bridge.app import create_runtime

        return create_runtime(self.settings)

    @property
    def bridge_store(self) -> BridgeStore:
        return self.bridge_runtime.store

    @cached_property
    def _verifier_and_key(self) -> tuple[TokenVerifier, LocalKey | None]:
        from services.common.auth import build_verifier

        return build_verifier(self.settings)

    @property
    def verifier(self) -> TokenVerifier:
        return self._verifier_and_key[0]

    @property
    def local_key(self) -> LocalKey | None:
        """The embedded identity provider's key (None with TONGYUAN_AUTH_JWKS_URL)."""
        return self._verifier_and_key[1]

    @cached_property
    def workbook_limits(self) -> WorkbookLimits:
        from services.common.workbooks import WorkbookLimits

        return WorkbookLimits.from_settings(self.settings)

    def group_writes(self, group: str) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        """A consumer group's store writes, for replaying its dead letters into its own store:
        (publications, catalog editions or None when the group keeps no catalog copy)."""
        if group == "tongyuan-column":
            return self.column_store.apply, self.column_store.apply_catalogs
        if group == "tongyuan-indexer":
            return self.search_index.apply, None
        if group == "tongyuan-embed":
            return self.embed_store.apply, None
        if group == "tongyuan-supervision":
            return self.supervision_store.apply, self.supervision_store.apply_catalogs
        raise ValueError(f"unknown consumer group {group!r}")


def for_consumers(settings: Settings) -> Composition:
    """A consumer process's parts: its store opened with the larger page cache of a bulk writer
    (services.common.db.BULK_WRITER_CACHE_MB); the reference catalog is the publisher's to load."""
    from services.common.db import BULK_WRITER_CACHE_MB

    return Composition(settings, load_reference=False, cache_mb=BULK_WRITER_CACHE_MB)


_process: Composition | None = None


def composed() -> Composition:
    """This process's composition, from its environment's Settings (get_settings), built once;
    again only when the settings were read again (tests clear get_settings' cache)."""
    global _process
    settings = get_settings()
    if _process is None or _process.settings is not settings:
        _process = Composition(settings)
    return _process
