"""The publisher's tables — the source of truth — and the outbox, written in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from contracts.catalog import Catalog, Region
from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS, PublicationData, WithdrawalData
from services.common.db import JSONText, as_json, insert_rows, writing
from services.common.heartbeat import heartbeat_table

metadata = MetaData()

publications = Table(
    "publisher_publications",
    metadata,
    Column("publication_id", String(80), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # published | withdrawn
    Column("source", String(300), nullable=False),
    Column("source_ref", String(120)),
    Column("content_hash", String(64)),
    Column("document", JSON, nullable=False),  # the latest PublicationData
    Column("withdrawal", JSON),  # the WithdrawalData while withdrawn
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "source_ref", name="uq_publisher_source_ref"),
)

outbox = Table(
    "publisher_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(80), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_publisher_outbox_unsent", "id", sqlite_where=text("sent_at IS NULL"), postgresql_where=text("sent_at IS NULL")),
)
# The relay drains the canonical topic's rows before the bulk lane's, so it must find them
# without walking a migration's backlog.
outbox_unsent_by_topic = Index(
    "ix_publisher_outbox_unsent_topic", outbox.c.topic, outbox.c.id, sqlite_where=text("sent_at IS NULL"), postgresql_where=text("sent_at IS NULL")
)

# Topics the relay serves before any other (the bulk lane): an IN list, so the partial index
# on (topic, id) finds their few rows under a migration's million.
FIRST_LANE = (TOPIC_PUBLICATIONS, TOPIC_CATALOG)
BULK_ROWS_PER_ROUND = 500
# Built once: building them cost the idle relay most of its CPU (15% of a core at 50 rounds/s).
_UNSENT_COLUMNS = (outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload)
_ANY_UNSENT = select(outbox.c.id).where(outbox.c.sent_at.is_(None)).limit(1)
_UNSENT_FIRST_LANE = select(*_UNSENT_COLUMNS).where(outbox.c.sent_at.is_(None), outbox.c.topic.in_(FIRST_LANE)).order_by(outbox.c.id).limit(bindparam("limit"))
_UNSENT_BULK_LANE = (
    select(*_UNSENT_COLUMNS).where(outbox.c.sent_at.is_(None), outbox.c.topic.not_in(FIRST_LANE)).order_by(outbox.c.id).limit(bindparam("limit"))
)

# What the relay knows of the broker's log: the id of each topic it writes ("topic:<name>"),
# the outbox id up to which a re-emission runs ("reemit-through"), a re-emission asked for
# by `tongyuan up` after it restarted a broker that keeps no log ("reemit-requested"), and the
# outbox id through which every consumer group is known to have applied every row
# ("applied-through", recorded by `tongyuan up` at a clean stop; a new log needs only the rows after it).
relay_state = Table(
    "publisher_relay_state",
    metadata,
    Column("name", String(240), primary_key=True),
    Column("value", String(240), nullable=False),
)
_TOPIC_ID = "topic:"
_REEMIT_THROUGH = "reemit-through"
_REEMIT_REQUESTED = "reemit-requested"
_APPLIED_THROUGH = "applied-through"

# Where each migration run got to: written in the transaction of the batch it counts.
migrations = Table(
    "publisher_migrations",
    metadata,
    Column("site", String(60), primary_key=True),
    Column("source_file", String(500), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # of the file's first bytes and size
    Column("position", BigInteger, nullable=False),  # rows of the file dealt with
    Column("accepted", BigInteger, nullable=False),
    Column("unchanged", BigInteger, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Column("skipped", BigInteger, nullable=False),  # blank rows and exact repeats
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Inbound events already applied, so a redelivered CMS message creates no second version.
inbound_events = Table(
    "publisher_inbound_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("source", String(300), primary_key=True),
    Column("publication_id", String(80)),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# Each item's newest request time as its source gave it (a CMS's CloudEvent `time`), so a request
# older than one applied is refused instead of replacing newer content.
upstream_times = Table(
    "publisher_upstream_times",
    metadata,
    Column("source", String(300), primary_key=True),
    Column("source_ref", String(120), primary_key=True),
    Column("upstream_time", DateTime(timezone=True), nullable=False),  # UTC
    Column("event_id", String(200), nullable=False),  # the request that had it
)

index_counters = Table(
    "publisher_index_counters",
    metadata,
    Column("prefix", String(40), primary_key=True),
    Column("last", Integer, nullable=False),
)

# Catalog editions: drafts are edited (Excel import), published ones never change.
catalog_editions = Table(
    "publisher_catalog_editions",
    metadata,
    Column("scope", String(20), primary_key=True),  # "standard" or a region code
    Column("edition", String(40), primary_key=True),
    Column("status", String(12), nullable=False),  # draft | published
    Column("derived_from", String(80)),
    Column("version", Integer),  # publish sequence within the scope; the newest is current
    Column("document", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True)),
)

# Where each live publication is filed, so catalog changes find the publications they touch.
placements = Table(
    "publisher_placements",
    metadata,
    Column("publication_id", String(80), nullable=False),
    Column("region_code", String(20), nullable=False),
    Column("domain_code", String(8), nullable=False),
    Column("level1_id", String(16), nullable=False),
    Column("level2_id", String(16), nullable=False),
    Index("ix_publisher_placements_item", "level2_id"),
    Index("ix_publisher_placements_publication", "publication_id"),
)

heartbeats = heartbeat_table(metadata, "publisher")

regions = Table(
    "publisher_regions",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("level", String(16), nullable=False),
    Column("parent_code", String(20)),
)


# Plain SQL, built once: it runs before every request and batch, and SQLAlchemy's cache key for
# the same three subqueries as a select() costs three times the query.
_DIRECTORY_STAMP = text(
    f"SELECT (SELECT count(*) FROM {catalog_editions.name} WHERE status = 'published'),"
    f" (SELECT coalesce(sum(version), 0) FROM {catalog_editions.name} WHERE status = 'published'),"
    f" (SELECT count(*) FROM {regions.name})"
)


_UPDATE_PUBLICATION = update(publications).where(publications.c.publication_id == bindparam("p_id"))
# One statement that takes the next number of a prefix, on SQLite (≥ 3.35) and PostgreSQL alike;
# concurrent callers queue on the counter's row.
_NEXT_INDEX_NUMBER = text(
    f"INSERT INTO {index_counters.name} (prefix, last) VALUES (:prefix, 1)"
    f" ON CONFLICT (prefix) DO UPDATE SET last = {index_counters.name}.last + 1 RETURNING last"
)


def _set_state(connection: Connection, values: Mapping[str, str]) -> None:
    if values:
        connection.execute(delete(relay_state).where(relay_state.c.name.in_(list(values))))
        connection.execute(insert(relay_state), [{"name": name, "value": value} for name, value in values.items()])


def _applied_through(connection: Connection) -> int:
    value = connection.execute(select(relay_state.c.value).where(relay_state.c.name == _APPLIED_THROUGH)).scalar()
    return int(value) if value else 0


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
        return self._row(self.connection.execute(query).mappings().first())

    def by_source_ref(self, source: str, source_ref: str, *, for_update: bool = False) -> StoredPublication | None:
        query = select(publications).where(publications.c.source == source, publications.c.source_ref == source_ref)
        if for_update and self.connection.dialect.name == "postgresql":
            query = query.with_for_update()
        return self._row(self.connection.execute(query).mappings().first())

    @staticmethod
    def _row(row) -> StoredPublication | None:
        if row is None:
            return None
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
        # without walking every value for its cache key (a seventh of a single publish's CPU).
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

    # --- catalog editions ----------------------------------------------------------------
    def edition(self, scope: str, edition: str) -> tuple[Catalog, str, int | None] | None:
        row = self.connection.execute(
            select(catalog_editions.c.document, catalog_editions.c.status, catalog_editions.c.version).where(
                catalog_editions.c.scope == scope, catalog_editions.c.edition == edition
            )
        ).first()
        return (Catalog.model_validate(row.document), row.status, row.version) if row else None

    def save_draft(self, catalog: Catalog) -> None:
        values = dict(status="draft", derived_from=catalog.derived_from, document=json.loads(catalog.model_dump_json()), updated_at=_now())
        updated = self.connection.execute(
            update(catalog_editions)
            .where(catalog_editions.c.scope == catalog.scope, catalog_editions.c.edition == catalog.edition, catalog_editions.c.status == "draft")
            .values(**values)
        ).rowcount
        if not updated:
            self.connection.execute(insert(catalog_editions).values(scope=catalog.scope, edition=catalog.edition, **values))

    def mark_published(self, scope: str, edition: str) -> int:
        latest = self.connection.execute(select(func.max(catalog_editions.c.version)).where(catalog_editions.c.scope == scope)).scalar() or 0
        self.connection.execute(
            update(catalog_editions)
            .where(catalog_editions.c.scope == scope, catalog_editions.c.edition == edition)
            .values(status="published", version=latest + 1, published_at=_now(), updated_at=_now())
        )
        return latest + 1

    def current_catalogs(self) -> dict[str, Catalog]:
        """Each scope's newest published edition."""
        rows = self.connection.execute(
            select(catalog_editions.c.scope, catalog_editions.c.version, catalog_editions.c.document).where(catalog_editions.c.status == "published")
        ).all()
        newest: dict[str, tuple[int, dict]] = {}
        for scope, version, document in rows:
            if scope not in newest or version > newest[scope][0]:
                newest[scope] = (version, document)
        return {scope: Catalog.model_validate(document) for scope, (_, document) in newest.items()}

    def editions(self) -> list[dict]:
        rows = self.connection.execute(
            select(
                catalog_editions.c.scope,
                catalog_editions.c.edition,
                catalog_editions.c.status,
                catalog_editions.c.version,
                catalog_editions.c.derived_from,
                catalog_editions.c.published_at,
            ).order_by(catalog_editions.c.scope, catalog_editions.c.edition)
        ).mappings()
        return [dict(r) for r in rows]

    def save_regions(self, region_list: tuple[Region, ...]) -> None:
        existing = {r for (r,) in self.connection.execute(select(regions.c.code))}
        fresh = [r.model_dump() for r in region_list if r.code not in existing]
        if fresh:
            self.connection.execute(insert(regions), fresh)

    def add_to_outbox(self, *, event_id: str, topic: str, key: str, payload: str) -> None:
        self.connection.execute(insert(outbox), dict(event_id=event_id, topic=topic, key=key, payload=payload, created_at=_now()))

    def remember_inbound(self, event_id: str, source: str, publication_id: str | None) -> bool:
        """False when this inbound event was applied before (a redelivery)."""
        seen = self.connection.execute(
            select(inbound_events.c.event_id).where(inbound_events.c.event_id == event_id, inbound_events.c.source == source)
        ).first()
        if seen:
            return False
        self.connection.execute(insert(inbound_events).values(event_id=event_id, source=source, publication_id=publication_id, received_at=_now()))
        return True

    # --- batch operations (the CMS lane applies a whole batch in one transaction) ---------
    def seen_inbound(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted, found = set(keys), set()
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
        scanned the whole table once per batch (measured: a migration slowing from 830 to 360
        rows/s by its 270,000th row)."""
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
        return {(row["source"], row["source_ref"]): self._row(row) for row in self._rows_by_source_ref(publications, pairs)}

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
        last = dict(
            self.connection.execute(
                select(index_counters.c.prefix, index_counters.c.last)
                .where(index_counters.c.prefix.in_(prefixes))
                .order_by(index_counters.c.prefix)
                .with_for_update()
            ).all()
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
            insert_rows(
                self.connection,
                publications,
                [
                    dict(
                        publication_id=d.publication_id,
                        version=d.version,
                        status="published",
                        source=d.source_ref.source,
                        source_ref=d.source_ref.ref,
                        content_hash=h,
                        document=documents.get(d.publication_id) or as_json(d),
                        withdrawal=None,
                        created_at=now,
                        updated_at=now,
                    )
                    for d, h in created
                ],
            )
        if revised:
            self.connection.execute(
                update(publications).where(publications.c.publication_id == bindparam("pid")),
                [
                    dict(
                        pid=d.publication_id,
                        version=d.version,
                        status="published",
                        content_hash=h,
                        document=documents.get(d.publication_id) or as_json(d),
                        withdrawal=None,
                        updated_at=now,
                    )
                    for d, h in revised
                ],
            )
        if withdrawn:
            self.connection.execute(
                update(publications).where(publications.c.publication_id == bindparam("pid")),
                [dict(pid=w.publication_id, version=w.version, status="withdrawn", withdrawal=as_json(w), updated_at=now) for w in withdrawn],
            )
        gone = {w.publication_id for w in withdrawn}
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
        if outbox_rows:
            insert_rows(self.connection, outbox, [dict(created_at=now, **row) for row in outbox_rows])
        if inbound_rows:
            insert_rows(self.connection, inbound_events, [dict(received_at=now, **row) for row in inbound_rows])

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
                yield self._row(row)  # type: ignore[misc]
            last = rows[-1]["publication_id"]


class Publisher:
    """The publisher's database: transactions, the outbox reader, the catalog and regions."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        metadata.create_all(self.engine)
        outbox_unsent_by_topic.create(self.engine, checkfirst=True)  # for stores made before it existed

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

    # --- outbox relay side -------------------------------------------------------------
    def unsent(self, limit: int) -> list[tuple[int, str, str, str]]:
        """The oldest unsent rows, the canonical topics' first: a migration's backlog on the
        bulk lane waits behind a clerk's publication, never the other way round."""
        with self.engine.connect() as connection:
            # The relay asks 50 times a second; an idle outbox answers one indexed probe.
            if connection.execute(_ANY_UNSENT).first() is None:
                return []
            rows = connection.execute(_UNSENT_FIRST_LANE, {"limit": limit}).all()
            if len(rows) < limit:
                # Short rounds on the bulk lane: a clerk's row committed meanwhile waits for one.
                rows += connection.execute(_UNSENT_BULK_LANE, {"limit": min(limit - len(rows), BULK_ROWS_PER_ROUND)}).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def mark_sent(self, ids: list[int]) -> None:
        with writing(self.engine) as connection:
            for start in range(0, len(ids), 500):
                connection.execute(update(outbox).where(outbox.c.id.in_(ids[start : start + 500])).values(sent_at=_now()))

    def outbox_backlog(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))).scalar_one()

    # --- the broker's log, and re-emitting it ----------------------------------------------
    def known_topic_ids(self) -> dict[str, str]:
        """The topic ids of the log the relay last sent to."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(relay_state.c.name, relay_state.c.value).where(relay_state.c.name.startswith(_TOPIC_ID))).all()
        return {name.removeprefix(_TOPIC_ID): value for name, value in rows}

    def adopt_topic_ids(self, topic_ids: Mapping[str, str]) -> None:
        with writing(self.engine) as connection:
            _set_state(connection, {_TOPIC_ID + topic: topic_id for topic, topic_id in topic_ids.items()})

    def request_reemission(self) -> None:
        """Said by whoever restarted a broker that keeps no log; the relay re-emits at its next look."""
        with writing(self.engine) as connection:
            _set_state(connection, {_REEMIT_REQUESTED: _now().isoformat()})

    def reemission_requested(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(select(relay_state.c.value).where(relay_state.c.name == _REEMIT_REQUESTED)).first() is not None

    def reemit_unapplied(self, topic_ids: Mapping[str, str]) -> int:
        """The rows a new log needs go out again, and the new log's topic ids are the known ones,
        in one transaction: every row after `applied_through` (every row if none is recorded),
        and each scope's newest catalog row, so every catalog copy is rebuilt from the edition in
        force whatever it held. Consumers apply a version once, so what they already hold
        changes nothing. Returns how many rows go out again."""
        with writing(self.engine) as connection:
            applied = _applied_through(connection)
            newest_catalogs = select(func.max(outbox.c.id)).where(outbox.c.topic == TOPIC_CATALOG, outbox.c.id <= applied).group_by(outbox.c.key)
            again = connection.execute(
                update(outbox).where(outbox.c.sent_at.is_not(None), (outbox.c.id > applied) | outbox.c.id.in_(newest_catalogs)).values(sent_at=None)
            ).rowcount
            through = connection.execute(select(func.max(outbox.c.id))).scalar_one() or 0
            # The new log's ids replace every old one: an old id left behind would look lost again.
            connection.execute(delete(relay_state).where((relay_state.c.name == _REEMIT_REQUESTED) | relay_state.c.name.startswith(_TOPIC_ID)))
            _set_state(connection, {_REEMIT_THROUGH: str(through), **{_TOPIC_ID + topic: topic_id for topic, topic_id in topic_ids.items()}})
        return again

    def applied_through(self) -> int:
        """The outbox id through which every consumer group applied every row; 0 if none is known."""
        with self.engine.connect() as connection:
            return _applied_through(connection)

    def sent_through(self) -> int:
        """The highest outbox id with no unsent row at or below it."""
        with self.engine.connect() as connection:
            first_unsent = connection.execute(select(func.min(outbox.c.id)).where(outbox.c.sent_at.is_(None))).scalar_one()
            if first_unsent is not None:
                return first_unsent - 1
            return connection.execute(select(func.max(outbox.c.id))).scalar_one() or 0

    def record_applied_through(self, through: int) -> None:
        """Only ever raised: every store keeps what it applied, whatever log it came from."""
        with writing(self.engine) as connection:
            if through > _applied_through(connection):
                _set_state(connection, {_APPLIED_THROUGH: str(through)})

    def reemission_pending(self) -> bool:
        """A re-emission asked for and not started, or started and not yet all acknowledged."""
        with self.engine.connect() as connection:
            state = dict(
                connection.execute(select(relay_state.c.name, relay_state.c.value).where(relay_state.c.name.in_((_REEMIT_REQUESTED, _REEMIT_THROUGH)))).all()
            )
            if _REEMIT_REQUESTED in state:
                return True
            through = int(state.get(_REEMIT_THROUGH, 0))
            return through > 0 and connection.execute(_ANY_UNSENT.where(outbox.c.id <= through)).first() is not None

    # --- catalog and regions -------------------------------------------------------------
    def catalogs(self) -> dict[str, Catalog]:
        with self.engine.connect() as connection:
            return PublisherStore(connection).current_catalogs()

    def regions(self) -> dict[str, Region]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(regions)).mappings().all()
        return {r["code"]: Region.model_validate(dict(r)) for r in rows}

    def directory_stamp(self) -> tuple[int, int, int]:
        """Changes whenever an edition is published or a region added, by any process: published
        editions and regions are only ever added, never edited or removed."""
        with self.engine.connect() as connection:
            row = connection.execute(_DIRECTORY_STAMP).one()
        return tuple(row)  # type: ignore[return-value]
