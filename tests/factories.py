"""Canonical events for tests, built from the real contract models."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from contracts.catalog import standard_catalog
from contracts.events import (
    CatalogChangedData,
    CatalogChangedEvent,
    Placement,
    PublicationData,
    PublishedEvent,
    SourceRef,
    WithdrawalData,
    WithdrawnEvent,
    new_event_id,
)

BASE = datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc)


def place(region="430102001", region_name="文艺路街道", level2="D14-02-02", level2_name="办事指南") -> Placement:
    return Placement(
        region_code=region,
        domain_code=level2[:3],
        level1_id=level2[:6],
        level2_id=level2,
        region_name=region_name,
        domain_name="社会救助",
        level1_name="最低生活保障",
        level2_name=level2_name,
    )


def published(publication_id="p1", version=1, *, title="低保标准调整公告", body="<p>城乡低保标准调整。</p>", placements=None, day=0) -> PublishedEvent:
    data = PublicationData(
        publication_id=publication_id,
        version=version,
        placements=tuple(placements or [place()]),
        title=title,
        body_html=body,
        index_number=f"430102001/2026-{version:05d}",
        formed_at=date(2026, 3, 1),
        published_at=BASE + timedelta(days=day),
        source_ref=SourceRef(source="/http"),
    )
    return PublishedEvent(id=new_event_id(), source="/publisher", subject=publication_id, time=BASE, data=data)


def withdrawn(publication_id="p1", version=2, kind="withdrawn", explanation="内容已过期") -> WithdrawnEvent:
    data = WithdrawalData(
        publication_id=publication_id,
        version=version,
        withdrawal_type=kind,
        explanation=explanation,
        redirect_to="/columns/430102" if kind == "redirect" else None,
        withdrawn_at=BASE + timedelta(days=1),
        title="低保标准调整公告",
    )
    return WithdrawnEvent(id=new_event_id(), source="/publisher", subject=publication_id, time=BASE, data=data)


def catalog_changed(catalog=None, version=1, **changes) -> CatalogChangedEvent:
    catalog = catalog or standard_catalog()
    data = CatalogChangedData(scope=catalog.scope, edition=catalog.edition, version=version, catalog=catalog, **changes)
    return CatalogChangedEvent(id=new_event_id(), source="/publisher/catalog", subject=catalog.scope, time=BASE, data=data)
