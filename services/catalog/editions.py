"""Catalog editions: derive, localise (Excel import), publish — and what publishing changes.

Publishing an edition emits `catalog.changed` and re-issues, with a new version, every live
publication filed under an item the edition renamed, so the column and search show the new
name without knowing anything about catalogs. Items an edition drops keep their publications
(the column lists them in its archive).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import structlog

from contracts.catalog import STANDARD, Catalog, CatalogDiff, Region, derive_catalog, diff_catalogs, edition_key, effective_catalog, localise, scope_chain
from contracts.events import TOPIC_CATALOG, CatalogChangedData, CatalogChangedEvent, CatalogRename, new_event_id
from services.publisher.gate import domain
from services.publisher.gate.events import emit, published_event
from services.publisher.gate.handlers import Clock, utc_clock
from services.publisher.store import Publisher, PublisherStore

from .store import CatalogStore

log = structlog.get_logger("tongyuan.catalog")


class CatalogRefused(Exception):
    """The catalog operation is not allowed as asked (the message says why)."""


@contextmanager
def _transaction(publisher: Publisher) -> Iterator[tuple[CatalogStore, PublisherStore]]:
    """The catalog's tables and the publications, in one of the publisher's transactions."""
    with publisher.transaction() as store:
        yield CatalogStore(store.connection), store


def _check_scope(scope: str, regions: dict[str, Region]) -> None:
    if scope != STANDARD and scope not in regions:
        raise CatalogRefused(f"unknown region {scope!r}")


def _parent_catalog(store: CatalogStore, scope: str, regions: dict[str, Region], parent_key: str | None) -> Catalog:
    """The edition a new one derives from: the nearest ancestor's current one, or as named."""
    current = store.current_catalogs()
    if parent_key:
        parent_scope, _, parent_edition = parent_key.partition("@")
        if parent_scope not in scope_chain(scope, regions)[1:] and parent_scope != scope:
            raise CatalogRefused(f"{scope} cannot derive from {parent_key}: not its own or an ancestor's catalog")
        found = store.edition(parent_scope, parent_edition)
        if found is None or found[1] != "published":
            raise CatalogRefused(f"{parent_key} is not a published edition")
        return found[0]
    if scope == STANDARD:
        parent = current.get(STANDARD)
    else:
        parent = current.get(scope) or effective_catalog(regions[scope].parent_code or STANDARD, regions, current)
    if parent is None:
        raise CatalogRefused("there is no published edition to derive from")
    return parent


def derive_edition(publisher: Publisher, *, scope: str, edition: str, regions: dict[str, Region], parent_key: str | None = None) -> Catalog:
    _check_scope(scope, regions)
    with _transaction(publisher) as (store, _):
        if store.edition(scope, edition) is not None:
            raise CatalogRefused(f"{edition_key(scope, edition)} already exists")
        draft = derive_catalog(_parent_catalog(store, scope, regions, parent_key), scope=scope, edition=edition)
        store.save_draft(draft)
    return draft


def import_edition(
    publisher: Publisher,
    workbook: bytes,
    *,
    scope: str,
    edition: str,
    regions: dict[str, Region],
    publish: bool = True,
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Catalog:
    """Replace a draft edition's domains from an Excel workbook (all or nothing), then publish it.

    A missing edition is derived first; a published one is immutable."""
    from .xlsx_read import import_catalog  # openpyxl loads only when a workbook comes in

    base = import_base(publisher, scope=scope, edition=edition, regions=regions)
    imported = import_catalog(workbook, base=base)  # CatalogImportError: nothing is written
    return save_import(publisher, imported, base=base, regions=regions, publish=publish, clock=clock, request_id=request_id)


def import_base(publisher: Publisher, *, scope: str, edition: str, regions: dict[str, Region]) -> Catalog:
    """What an imported workbook replaces domains of: the draft, or the edition it would be
    derived as (nothing is written). The workbook is parsed against it outside any transaction."""
    _check_scope(scope, regions)
    with _transaction(publisher) as (store, _):
        return _import_base(store, scope, edition, regions)


def _import_base(store: CatalogStore, scope: str, edition: str, regions: dict[str, Region]) -> Catalog:
    found = store.edition(scope, edition)
    if found and found[1] == "published":
        raise CatalogRefused(f"{edition_key(scope, edition)} is published and cannot change; import into a new edition")
    return found[0] if found else derive_catalog(_parent_catalog(store, scope, regions, None), scope=scope, edition=edition)


def save_import(
    publisher: Publisher,
    imported: Catalog,
    *,
    base: Catalog,
    regions: dict[str, Region],
    publish: bool,
    clock: Clock = utc_clock,
    request_id: str | None = None,
) -> Catalog:
    """Store (and publish) a catalog parsed against `base`, unless the edition changed while the
    workbook was read: then nothing is written and the import is to be repeated."""
    with _transaction(publisher) as (store, publications):
        if _import_base(store, imported.scope, imported.edition, regions) != base:
            raise CatalogRefused(f"{imported.key} changed while the workbook was being read; import it again")
        store.save_draft(imported)
        if publish:
            _publish(store, publications, imported, regions=regions, now=clock(), request_id=request_id)
    return imported


def edit_draft(publisher: Publisher, *, scope: str, edition: str, rename: dict[str, str], drop: set[str], specialise: dict[str, dict]) -> Catalog:
    """Localise a draft edition in place (see contracts.catalog.localise)."""
    with _transaction(publisher) as (store, _):
        found = store.edition(scope, edition)
        if found is None:
            raise CatalogRefused(f"no edition {edition_key(scope, edition)}; derive it first")
        if found[1] == "published":
            raise CatalogRefused(f"{edition_key(scope, edition)} is published and cannot change; derive a new edition")
        try:
            edited = localise(found[0], rename=rename, drop=drop, specialise=specialise)
        except ValueError as exc:
            raise CatalogRefused(str(exc)) from None
        store.save_draft(edited)
    return edited


def publish_edition(
    publisher: Publisher, *, scope: str, edition: str, regions: dict[str, Region], clock: Clock = utc_clock, request_id: str | None = None
) -> int:
    """Publish a draft; returns how many publications were re-issued under renamed items."""
    with _transaction(publisher) as (store, publications):
        found = store.edition(scope, edition)
        if found is None:
            raise CatalogRefused(f"no edition {edition_key(scope, edition)}")
        if found[1] == "published":
            raise CatalogRefused(f"{edition_key(scope, edition)} is already published")
        return _publish(store, publications, found[0], regions=regions, now=clock(), request_id=request_id)


def _publish(
    store: CatalogStore, publications: PublisherStore, catalog: Catalog, *, regions: dict[str, Region], now: datetime, request_id: str | None = None
) -> int:
    """`request_id`: the HTTP request's that published it, carried by its events (tongyuanrequestid)."""
    before = store.current_catalogs()
    previous = before.get(catalog.scope) or (
        effective_catalog(regions[catalog.scope].parent_code or STANDARD, regions, before) if catalog.scope != STANDARD else None
    )
    version = store.mark_published(catalog.scope, catalog.edition)
    changes = diff_catalogs(previous, catalog) if previous else None
    event = CatalogChangedEvent(
        id=new_event_id(),
        source="/publisher/catalog",
        subject=catalog.scope,
        time=now,
        data=CatalogChangedData(
            scope=catalog.scope,
            edition=catalog.edition,
            version=version,
            catalog=catalog,
            added=changes.added if changes else (),
            dropped=changes.dropped if changes else (),
            renamed=tuple(CatalogRename(id=r.id, old=r.old, new=r.new) for r in changes.renamed) if changes else (),
        ),
        **({"tongyuanrequestid": request_id} if request_id else {}),
    )
    emit(publications, event, topic=TOPIC_CATALOG)
    reissued = _reissue_renamed(store, publications, catalog, changes, regions=regions, now=now, request_id=request_id) if changes and changes.renamed else 0
    log.info("catalog.published", scope=catalog.scope, edition=catalog.edition, version=version, event_id=event.id, reissued=reissued)
    return reissued


def republish_catalogs(publisher: Publisher, *, clock: Clock = utc_clock) -> int:
    """Re-emit each scope's edition in force (same version, whole snapshot, no changes), so a
    consumer rebuilding its copy — after a memory-storage broker lost its topics — is not left
    on the standard catalog. Consumers that already hold the version ignore it."""
    now = clock()
    with _transaction(publisher) as (store, publications):
        current = store.current_catalogs()
        for scope, catalog in sorted(current.items()):
            found = store.edition(scope, catalog.edition)
            assert found is not None  # it is the edition in force
            _, _, version = found
            event = CatalogChangedEvent(
                id=new_event_id(),
                source="/publisher/catalog",
                subject=scope,
                time=now,
                data=CatalogChangedData(scope=scope, edition=catalog.edition, version=version, catalog=catalog),
            )
            emit(publications, event, topic=TOPIC_CATALOG)
    return len(current)


def _reissue_renamed(
    store: CatalogStore,
    publications: PublisherStore,
    catalog: Catalog,
    changes: CatalogDiff,
    *,
    regions: dict[str, Region],
    now: datetime,
    request_id: str | None = None,
) -> int:
    current = store.current_catalogs()
    # Regions whose catalog in force is the one just published.
    governed = {code for code in regions if (effective := effective_catalog(code, regions, current)) is not None and effective.key == catalog.key}

    def catalog_for(region_code: str) -> Catalog:
        return effective_catalog(region_code, regions, current) or catalog

    count = 0
    for publication_id in publications.live_filed_under({r.id for r in changes.renamed}, governed):
        stored = publications.get(publication_id, for_update=True)
        if stored is None or stored.status != "published":
            continue
        placements = domain.renamed_placements(stored.document, catalog_for)
        if placements is None:
            continue
        data = stored.document.model_copy(update={"version": stored.version + 1, "placements": placements})
        publications.save_published(data, content_hash=stored.content_hash, created=False)
        emit(publications, published_event(data, now, request_id))
        count += 1
    return count


def load_reference(publisher: Publisher, *, standard_editions: list[Catalog], regions: tuple[Region, ...], clock: Clock = utc_clock) -> None:
    """First start: the regions and the standard editions (oldest first), each published."""
    region_map = {r.code: r for r in regions}
    with _transaction(publisher) as (store, publications):
        store.save_regions(regions)
        for catalog in standard_editions:
            if store.edition(catalog.scope, catalog.edition) is None:
                store.save_draft(catalog)
                _publish(store, publications, catalog, regions=region_map, now=clock())
