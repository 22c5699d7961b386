"""The gate's persistence: publications, where they are filed, the inbound ledger and the
outbox, written in one transaction (`Publisher.transaction`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, RowMapping, Table, bindparam, delete, insert, select, text, update

from contracts.events import PublicationData, WithdrawalData
from services.common.db import JSONText, as_json, insert_rows, writing
from services.common.schema import ensure as ensure_schema
from services.publisher.relay.store import RelayLog
from services.publisher.tables import (
    inbound_events,
    index_counters,
    migrations,
    outbox,
    placements,
    publications,
    upstream_times,
)

_UPDATE_PUBLICATION = update(publications).where(publications.c.publication_id == bindparam("p_id"))
# One statement that takes the next number of a prefix, on SQLite (≥ 3.35) and PostgreSQL alike;
# concurrent callers queue on the counter's row.
_NEXT_INDEX_NUMBER = text(
    f"INSERT INTO {index_counters.name} (prefix, last) VALUES (:prefix, 1)"
    f" ON CONFLICT (prefix) DO UPDATE SET last = {index_counters.name}.last + 1 RETURNING last"
)


# A batch's revisions and withdrawals: one executemany, keyed by the `pid` parameter.
_UPDATE_PUBLISHED = update(publications).where(publications.c.publication_id == bindparam("pid"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC: SQLite keeps a DateTime without its offset (what was written as UTC
    comes back naive)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass
class StoredPublication:
    publication_id: str
    version: int
    status: str
    source: str
    source_ref: str | None
    content_hash: str | None
    document: PublicationData
    withdrawal: WithdrawalData | None


class PublisherStore:
    """Repository over one open transaction (see `Publisher.transaction`)."""

    def __init__(self, connection: Connection):
        self.connection = connection

    def get(self, publication_id: str, *, for_update: bool = False) -> StoredPublication | None:
        query = select(publications).where(publications.c.publication_id == publication_id)
        if for_update and self.connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.connection.execute(query).mappings().first()
        return _stored(row) if row is not None else None

    def by_source_ref(self, source: str, source_ref: str, *, for_update: bool = False) -> StoredPublication | None:
        query = select(publications).where(publications.c.source == source, publications.c.source_ref == source_ref)
        if for_update and self.connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.connection.execute(query).mappings().first()
        return _stored(row) if row is not None else None

    def save_published(self, data: PublicationData, *, content_hash: str | None, created: bool) -> None:
        values = dict(
            version=data.version,
            status="published",
            content_hash=content_hash,
            document=as_json(data),
            withdrawal=None,
            updated_at=_now(),
        )
        # Values as parameters, not in the statement: SQLAlchemy then finds the compiled statement
        # without walking every value for its cache key.
        if created:
            self.connection.execute(
                insert(publications),
                dict(
                    publication_id=data.publication_id, source=data.source_ref.source, source_ref=data.source_ref.ref, created_at=values["updated_at"], **values
                ),
            )
        else:
            self.connection.execute(_UPDATE_PUBLICATION, dict(p_id=data.publication_id, **values))
            self.connection.execute(delete(placements).where(placements.c.publication_id == data.publication_id))
        self.connection.execute(
            insert(placements),
            [
                dict(publication_id=data.publication_id, region_code=p.region_code, domain_code=p.domain_code, level1_id=p.level1_id, level2_id=p.level2_id)
                for p in data.placements
            ],
        )

    def save_withdrawn(self, data: WithdrawalData) -> None:
        self.connection.execute(
            update(publications)
            .where(publications.c.publication_id == data.publication_id)
            .values(version=data.version, status="withdrawn", withdrawal=as_json(data), updated_at=_now())
        )
        self.connection.execute(delete(placements).where(placements.c.publication_id == data.publication_id))

    def live_filed_under(self, item_ids: set[str], regions: set[str] | None) -> list[str]:
        """Live publications with a placement under one of these items (in these regions)."""
        found: set[str] = set()
        ids = sorted(item_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(placements.c.publication_id, placements.c.region_code).where(
                placements.c.level2_id.in_(chunk) | placements.c.level1_id.in_(chunk) | placements.c.domain_code.in_(chunk)
            )
            found.update(pid for pid, region in self.connection.execute(query) if regions is None or region in regions)
        return sorted(found)

    def add_to_outbox(self, *, event_id: str, topic: str, key: str, payload: str) -> None:
        self.connection.execute(insert(outbox), dict(event_id=event_id, topic=topic, key=key, payload=payload, created_at=_now()))

    # --- batch operations (the CMS lane applies a whole batch in one transaction) ---------
    def seen_inbound(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted, found = set(keys), set[tuple[str, str]]()
        ids = sorted({event_id for event_id, _ in keys})
        for start in range(0, len(ids), 500):
            rows = self.connection.execute(
                select(inbound_events.c.event_id, inbound_events.c.source).where(inbound_events.c.event_id.in_(ids[start : start + 500]))
            )
            found.update(tuple(r) for r in rows if tuple(r) in wanted)
        return found

    def _rows_by_source_ref(self, table: Table, pairs: list[tuple[str, str]]) -> Iterator[RowMapping]:
        """The rows of `table` keyed by (source, source_ref), locked on PostgreSQL. Per source,
        so the lookup walks the unique (source, source_ref) index: a bare `source_ref IN (…)`
        scans the whole table once per batch, slower the longer a migration runs."""
        by_source: dict[str, list[str]] = {}
        for source, ref in sorted(set(pairs)):
            by_source.setdefault(source, []).append(ref)
        for source, refs in by_source.items():
            for start in range(0, len(refs), 500):
                query = select(table).where(table.c.source == source, table.c.source_ref.in_(refs[start : start + 500]))
                if self.connection.dialect.name == "postgresql":
                    query = query.with_for_update()
                yield from self.connection.execute(query).mappings()

    def by_source_refs(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], StoredPublication]:
        return {(row["source"], row["source_ref"]): _stored(row) for row in self._rows_by_source_ref(publications, pairs)}

    def upstream_times(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[datetime, str]]:
        """(source, source_ref) → the newest request time applied for it, and that request's id."""
        return {(row["source"], row["source_ref"]): (_utc(row["upstream_time"]), row["event_id"]) for row in self._rows_by_source_ref(upstream_times, pairs)}

    def save_upstream_times(self, newest: Mapping[tuple[str, str], tuple[datetime, str]], *, known: set[tuple[str, str]]) -> None:
        """Record items' newest request times; `known`: the items upstream_times found a time for."""
        rows = [dict(p_source=s, p_ref=r, p_time=_utc(t), p_event=e) for (s, r), (t, e) in sorted(newest.items())]
        fresh = [row for row in rows if (row["p_source"], row["p_ref"]) not in known]
        moved = [row for row in rows if (row["p_source"], row["p_ref"]) in known]
        if fresh:
            insert_rows(
                self.connection,
                upstream_times,
                [dict(source=r["p_source"], source_ref=r["p_ref"], upstream_time=r["p_time"], event_id=r["p_event"]) for r in fresh],
            )
        if moved:
            self.connection.execute(
                update(upstream_times)
                .where(upstream_times.c.source == bindparam("p_source"), upstream_times.c.source_ref == bindparam("p_ref"))
                .values(upstream_time=bindparam("p_time"), event_id=bindparam("p_event")),
                moved,
            )

    def reserve_index_numbers(self, counts: dict[str, int]) -> dict[str, int]:
        """For each prefix, the first of `count` consecutive index numbers — one SELECT and at
        most two executemany statements for the whole batch, whatever the number of prefixes."""
        if not counts:
            return {}
        prefixes = sorted(counts)  # a fixed lock order, so two PostgreSQL writers cannot deadlock
        last: dict[str, int] = dict(
            self.connection.execute(
                select(index_counters.c.prefix, index_counters.c.last)
                .where(index_counters.c.prefix.in_(prefixes))
                .order_by(index_counters.c.prefix)
                .with_for_update()
            )
            .tuples()
            .all()
        )
        fresh = [dict(prefix=p, last=counts[p]) for p in prefixes if p not in last]
        bumped = [dict(p_prefix=p, p_last=last[p] + counts[p]) for p in prefixes if p in last]
        if fresh:
            self.connection.execute(insert(index_counters), fresh)
        if bumped:
            self.connection.execute(update(index_counters).where(index_counters.c.prefix == bindparam("p_prefix")).values(last=bindparam("p_last")), bumped)
        return {p: last.get(p, 0) + 1 for p in prefixes}

    def save_batch(
        self,
        *,
        created: list[tuple[PublicationData, str | None]],
        revised: list[tuple[PublicationData, str | None]],
        withdrawn: list[WithdrawalData],
        outbox_rows: list[dict],
        inbound_rows: list[dict],
        documents: Mapping[str, JSONText] | None = None,
    ) -> None:
        """Write a batch's outcome with one statement per kind (executemany). `documents`: the
        publications' JSON where the caller serialised it already (publication id → JSON)."""
        now = _now()
        documents = documents or {}
        if created:
            insert_rows(self.connection, publications, [_created_row(d, h, documents, now) for d, h in created])
        if revised:
            self.connection.execute(_UPDATE_PUBLISHED, [_revised_row(d, h, documents, now) for d, h in revised])
        if withdrawn:
            self.connection.execute(
                _UPDATE_PUBLISHED, [dict(pid=w.publication_id, version=w.version, status="withdrawn", withdrawal=as_json(w), updated_at=now) for w in withdrawn]
            )
        self._refile(created, revised, {w.publication_id for w in withdrawn})
        if outbox_rows:
            insert_rows(self.connection, outbox, [dict(created_at=now, **row) for row in outbox_rows])
        if inbound_rows:
            insert_rows(self.connection, inbound_events, [dict(received_at=now, **row) for row in inbound_rows])

    def _refile(self, created: list[tuple[PublicationData, str | None]], revised: list[tuple[PublicationData, str | None]], gone: set[str]) -> None:
        """The batch's placements: a revised or withdrawn publication's old ones go, every live
        one's current ones are written."""
        stale = sorted({d.publication_id for d, _ in revised} | gone)
        for start in range(0, len(stale), 500):
            self.connection.execute(delete(placements).where(placements.c.publication_id.in_(stale[start : start + 500])))
        rows = [
            dict(publication_id=d.publication_id, region_code=p.region_code, domain_code=p.domain_code, level1_id=p.level1_id, level2_id=p.level2_id)
            for d, _ in (*created, *revised)
            if d.publication_id not in gone
            for p in d.placements
        ]
        if rows:
            insert_rows(self.connection, placements, rows)

    def migration_checkpoint(self, site: str) -> dict | None:
        row = self.connection.execute(select(migrations).where(migrations.c.site == site)).mappings().first()
        return dict(row) if row else None

    def save_migration_checkpoint(
        self, *, site: str, source_file: str, fingerprint: str, position: int, accepted: int, unchanged: int, rejected: int, skipped: int
    ) -> None:
        values = dict(
            source_file=source_file,
            fingerprint=fingerprint,
            position=position,
            accepted=accepted,
            unchanged=unchanged,
            rejected=rejected,
            skipped=skipped,
            updated_at=_now(),
        )
        if self.connection.execute(update(migrations).where(migrations.c.site == site).values(**values)).rowcount == 0:
            self.connection.execute(insert(migrations).values(site=site, **values))

    def next_index_number(self, prefix: str) -> int:
        return self.connection.execute(_NEXT_INDEX_NUMBER, {"prefix": prefix}).scalar_one()

    def all_publications(self, batch: int = 1000) -> Iterator[StoredPublication]:
        last = ""
        while True:
            rows = (
                self.connection.execute(select(publications).where(publications.c.publication_id > last).order_by(publications.c.publication_id).limit(batch))
                .mappings()
                .all()
            )
            if not rows:
                return
            for row in rows:
                yield _stored(row)
            last = rows[-1]["publication_id"]


class Publisher(RelayLog):
    """The publisher's database: the gate's transactions, and the relay's side (RelayLog). The
    catalog's tables share the engine (services.catalog.store.Catalogs)."""

    def create_tables(self) -> None:
        """The publisher store's schema, with the catalog's (services.common.schema.ensure)."""
        ensure_schema(self.engine, "publisher")

    @contextmanager
    def transaction(self) -> Iterator[PublisherStore]:
        with writing(self.engine) as connection:
            yield PublisherStore(connection)

    def versions(self) -> dict[str, tuple[int, str]]:
        """publication_id → (version, status): the truth every store is verified against."""
        with self.engine.connect() as connection:
            return {
                pid: (version, status)
                for pid, version, status in connection.execute(select(publications.c.publication_id, publications.c.version, publications.c.status))
            }

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True
        except Exception:
            return False


def _created_row(data: PublicationData, content_hash: str | None, documents: Mapping[str, JSONText], now: datetime) -> dict[str, Any]:
    return dict(
        publication_id=data.publication_id,
        version=data.version,
        status="published",
        source=data.source_ref.source,
        source_ref=data.source_ref.ref,
        content_hash=content_hash,
        document=documents.get(data.publication_id) or as_json(data),
        withdrawal=None,
        created_at=now,
        updated_at=now,
    )


def _revised_row(data: PublicationData, content_hash: str | None, documents: Mapping[str, JSONText], now: datetime) -> dict[str, Any]:
    return dict(
        pid=data.publication_id,
        version=data.version,
        status="published",
        content_hash=content_hash,
        document=documents.get(data.publication_id) or as_json(data),
        withdrawal=None,
        updated_at=now,
    )


def _stored(row: RowMapping) -> StoredPublication:
    return StoredPublication(
        publication_id=row["publication_id"],
        version=row["version"],
        status=row["status"],
        source=row["source"],
        source_ref=row["source_ref"],
        content_hash=row["content_hash"],
        document=PublicationData.model_validate(row["document"]),
        withdrawal=WithdrawalData.model_validate(row["withdrawal"]) if row["withdrawal"] else None,
    )
