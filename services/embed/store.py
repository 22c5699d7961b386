"""The embed store: 重大民生信息 per township and county, the portal registry and the rules.

Only the embed consumer writes publications into it; the `tongyuan embed` commands write the
registry and the rules. Every change that can alter a feed bumps the version of each scope
(township, county, city) it touches, so a feed's ETag is one primary-key read away.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from contracts.events import PublishedEvent, WithdrawnEvent
from services.common.db import Upsert, in_parts, insert_rows, write_in_turns, writing
from services.common.heartbeat import heartbeat_table
from services.common.projection import LedgeredStore, held_versions, publications_table, publications_to_apply, record_versions
from services.common.schema import ensure as ensure_schema

from .domain import MajorRules, Portal, excerpt, explicit_flag, scopes_of

metadata = MetaData()

publications = publications_table("embed_publications", metadata)

# One row per placement of a live publication and per scope whose feeds include it (the
# township, its county, its city): feeds read one scope by equality, in index order, instead
# of matching code prefixes. Rows are kept whether major or not, so a change of the rules
# reclassifies them without waiting for the publications to be re-issued.
items = Table(
    "embed_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(20), nullable=False),
    Column("publication_id", String(80), nullable=False),
    Column("region_code", String(20), nullable=False),
    Column("domain_code", String(8), nullable=False),
    Column("level1_id", String(16), nullable=False),
    Column("level2_id", String(16), nullable=False),
    Column("flag", Boolean),  # the publication's own major_livelihood flag, if it has one
    Column("major", Boolean, nullable=False),
    Column("title", String(200), nullable=False),
    Column("summary", String(400), nullable=False),
    Column("domain_name", String(100), nullable=False),
    Column("level2_name", String(200), nullable=False),
    Column("index_number", String(60)),
    Column("publishing_body", String(100)),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("ix_embed_items_feed", "scope", "major", "published_at"),
    Index("ix_embed_items_domain", "scope", "major", "domain_code", "published_at"),
    Index("ix_embed_items_publication", "publication_id"),
)

# Scope (a region code prefix) → a counter bumped by every change to its feeds. The row "*"
# counts changes of the rules, which can alter every feed.
scopes = Table(
    "embed_scopes",
    metadata,
    Column("scope", String(20), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
# A scope's version moves with every change to what it lists (feeds and pages revalidate by it).
_BUMP_SCOPE = Upsert(scopes, conflict=("scope",), set_={"version": "{table}.version + 1", "changed_at": "{excluded}.changed_at"})
RULES_SCOPE = "*"

rules = Table(
    "embed_rules",
    metadata,
    Column("target", String(16), primary_key=True),  # D14, D14-02 or D14-02-03
    Column("major", Boolean, nullable=False),
)

portals = Table(
    "embed_portals",
    metadata,
    Column("region_code", String(20), primary_key=True),
    Column("portal_url", String(500), nullable=False, unique=True),
    Column("column_url", String(500), nullable=False, unique=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

heartbeats = heartbeat_table(metadata, "embed")

CHUNK = 500


def _newest(*conditions) -> Select:
    # One row per publication (its first placement in the scope), newest first.
    first = (
        select(items.c.id, func.row_number().over(partition_by=items.c.publication_id, order_by=items.c.id).label("n"))
        .where(items.c.scope == bindparam("scope"), items.c.major.is_(True), *conditions)
        .subquery()
    )
    return (
        select(items)
        .join(first, items.c.id == first.c.id)
        .where(first.c.n == 1)
        .order_by(items.c.published_at.desc(), items.c.publication_id)
        .limit(bindparam("limit"))
    )


def _newest_per_domain() -> Select:
    ranked = (
        select(
            func.min(items.c.id).label("row_id"),
            func.row_number().over(partition_by=items.c.domain_code, order_by=(func.max(items.c.published_at).desc(), items.c.publication_id)).label("rank"),
        )
        .where(items.c.scope == bindparam("scope"), items.c.major.is_(True))
        .group_by(items.c.domain_code, items.c.publication_id)
        .subquery()
    )
    return (
        select(items).join(ranked, items.c.id == ranked.c.row_id).where(ranked.c.rank <= bindparam("per_domain")).order_by(items.c.domain_code, ranked.c.rank)
    )


# Built once: these run on every render, and building a statement costs more than running it.
_NEWEST = _newest()
_NEWEST_IN_DOMAIN = _newest(items.c.domain_code == bindparam("domain"))
_NEWEST_PER_DOMAIN = _newest_per_domain()


@dataclass(frozen=True)
class ScopeState:
    """What a feed's validators are made of: the scope's counter and the rules' counter."""

    scope: str
    version: int
    changed_at: datetime | None
    rules_version: int
    rules_changed_at: datetime | None

    @property
    def last_modified(self) -> datetime:
        stamps = [_aware(t) for t in (self.changed_at, self.rules_changed_at) if t is not None]
        return max(stamps) if stamps else datetime(2000, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class FeedItem:
    publication_id: str
    region_code: str
    domain_code: str
    domain_name: str
    level2_name: str
    title: str
    summary: str
    index_number: str | None
    publishing_body: str | None
    published_at: datetime
    updated: datetime


def _timestamp(value: datetime | str | None) -> datetime | None:
    # Read past SQLAlchemy, SQLite gives back the text SQLAlchemy stored.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class EmbedStore(LedgeredStore):
    ledger = publications

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self) -> None:
        """Tables, and the default rules the first time (they are data from then on)."""
        ensure_schema(self.engine, "embed")
        try:
            with writing(self.engine) as connection:
                if connection.execute(select(scopes.c.version).where(scopes.c.scope == RULES_SCOPE)).first() is None:
                    connection.execute(insert(rules), [{"target": t, "major": m} for t, m in MajorRules.default().targets.items()])
                    connection.execute(insert(scopes).values(scope=RULES_SCOPE, version=1, changed_at=datetime.now(timezone.utc)))
        except IntegrityError:
            pass  # another process seeded them first

    # --- the consumer's side ------------------------------------------------------------
    def apply(self, events: Sequence[PublishedEvent | WithdrawnEvent]) -> None:
        """Apply a batch, skipping versions already held (in one transaction, or in turns with
        a clerk's waiting batch: write_in_turns); one statement per kind of row for each part.
        A withdrawal keeps a tombstone and leaves every feed."""
        write_in_turns(self.engine, in_parts(events), partial(self._apply_part, now=datetime.now(timezone.utc)))

    def _apply_part(self, connection: Connection, events: Sequence[PublishedEvent | WithdrawnEvent], *, now: datetime) -> None:
        stored = held_versions(connection, publications, list({e.data.publication_id for e in events}))
        chosen = publications_to_apply(events, stored)
        if not chosen:
            return
        current = self._rules(connection)
        # Only a publication this store has seen can have items to replace: looking the
        # others up in the items' index (random ids, a migration's million) found nothing
        # at a quarter of a batch's cost.
        known = [e.data.publication_id for e in chosen if e.data.publication_id in stored]
        touched = self._major_regions(connection, known)
        for start in range(0, len(known), CHUNK):
            connection.execute(delete(items).where(items.c.publication_id.in_(known[start : start + CHUNK])))
        item_rows = [row for event in chosen if isinstance(event, PublishedEvent) for row in _item_rows(event, current)]
        touched |= {row["region_code"] for row in item_rows if row["major"]}
        record_versions(connection, publications, chosen, stored, now)
        if item_rows:
            insert_rows(connection, items, item_rows)
        self._bump(connection, {scope for region in touched for scope in scopes_of(region)}, now)

    @staticmethod
    def _major_regions(connection: Connection, ids: list[str]) -> set[str]:
        regions: set[str] = set()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            regions.update(
                connection.execute(select(items.c.region_code).where(items.c.publication_id.in_(chunk), items.c.major.is_(True)).distinct()).scalars()
            )
        return regions

    @staticmethod
    def _rules(connection: Connection) -> MajorRules:
        return MajorRules(dict(connection.execute(select(rules.c.target, rules.c.major)).tuples().all()))

    def _bump(self, connection: Connection, touched: set[str], now: datetime) -> None:
        if not touched:
            return
        connection.execute(_BUMP_SCOPE(connection), [{"scope": scope, "version": 1, "changed_at": now} for scope in sorted(touched)])

    # --- rules: what counts as 重大民生信息 ------------------------------------------------
    def rules(self) -> MajorRules:
        with self.engine.connect() as connection:
            return self._rules(connection)

    def change_rules(self, changes: Mapping[str, bool | None], *, reset: bool = False) -> int:
        """Set (True/False) or clear (None) rules, or go back to the defaults; reclassify every
        stored placement in the same transaction. Returns how many placements changed class."""
        now = datetime.now(timezone.utc)
        with writing(self.engine) as connection:
            if reset:
                connection.execute(delete(rules))
                connection.execute(insert(rules), [{"target": t, "major": m} for t, m in MajorRules.default().targets.items()])
            for target, major in changes.items():
                connection.execute(delete(rules).where(rules.c.target == target))
                if major is not None:
                    connection.execute(insert(rules).values(target=target, major=major))
            current = self._rules(connection)
            flips = []
            rows = connection.execute(
                select(items.c.id, items.c.scope, items.c.region_code, items.c.domain_code, items.c.level1_id, items.c.level2_id, items.c.flag, items.c.major)
            )
            for row in rows:
                major = current.counts(row, row.flag)
                if major != row.major:
                    flips.append({"row_id": row.id, "major": major, "region": row.region_code, "own": row.scope == row.region_code})
            if flips:
                connection.execute(
                    update(items).where(items.c.id == bindparam("row_id")).values(major=bindparam("major")),
                    [{"row_id": f["row_id"], "major": f["major"]} for f in flips],
                )
            self._bump(connection, {RULES_SCOPE} | {scope for f in flips for scope in scopes_of(f["region"])}, now)
            return sum(f["own"] for f in flips)

    # --- the portal registry ------------------------------------------------------------
    def portals(self) -> dict[str, Portal]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(portals.c.region_code, portals.c.portal_url, portals.c.column_url).order_by(portals.c.region_code)).all()
        return {code: Portal(code, portal_url, column_url) for code, portal_url, column_url in rows}

    def save_portals(self, entries: Sequence[Portal], *, replace: Collection[str] = (), replace_all: bool = False) -> None:
        """Write validated entries in one transaction, first removing those being replaced."""
        now = datetime.now(timezone.utc)
        with writing(self.engine) as connection:
            if replace_all:
                connection.execute(delete(portals))
            else:
                gone = list({*replace, *(e.region_code for e in entries)})
                for start in range(0, len(gone), CHUNK):
                    connection.execute(delete(portals).where(portals.c.region_code.in_(gone[start : start + CHUNK])))
            if entries:
                connection.execute(
                    insert(portals),
                    [{"region_code": e.region_code, "portal_url": e.portal_url, "column_url": e.column_url, "updated_at": now} for e in entries],
                )

    def remove_portal(self, region_code: str) -> bool:
        with writing(self.engine) as connection:
            return bool(connection.execute(delete(portals).where(portals.c.region_code == region_code)).rowcount)

    # --- the pages' side ----------------------------------------------------------------
    def state(self, scope: str) -> ScopeState:
        """One primary-key read: enough to answer a conditional GET without rendering.

        Straight on the driver: this is the read every poll makes, and SQLAlchemy's statement
        and transaction handling cost ten times the read itself."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(self._state_sql, (scope, RULES_SCOPE))
            found = {s: (v, _timestamp(at)) for s, v, at in cursor.fetchall()}
            cursor.close()
        finally:
            connection.close()
        version, changed_at = found.get(scope, (0, None))
        rules_version, rules_changed_at = found.get(RULES_SCOPE, (0, None))
        return ScopeState(scope, version, changed_at, rules_version, rules_changed_at)

    @property
    def _state_sql(self) -> str:
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return f"SELECT scope, version, changed_at FROM {scopes.name} WHERE scope IN ({marker}, {marker})"

    def major_items(self, scope: str, *, domain_code: str | None = None, limit: int = 50) -> list[FeedItem]:
        """The newest major items of a scope (a region and everything under it), each publication once."""
        query, params = (_NEWEST_IN_DOMAIN, {"domain": domain_code}) if domain_code else (_NEWEST, {})
        with self.engine.connect() as connection:
            return [_feed_item(row) for row in connection.execute(query, {"scope": scope, "limit": limit, **params}).mappings()]

    def major_by_domain(self, scope: str, *, per_domain: int = 5) -> dict[str, list[FeedItem]]:
        """The newest major items of each domain of a scope, each publication once per domain."""
        grouped: dict[str, list[FeedItem]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(_NEWEST_PER_DOMAIN, {"scope": scope, "per_domain": per_domain}).mappings():
                grouped.setdefault(row["domain_code"], []).append(_feed_item(row))
        return grouped


def _item_rows(event: PublishedEvent, current: MajorRules) -> list[dict]:
    data = event.data
    flag = explicit_flag(data)
    common = dict(
        publication_id=data.publication_id,
        flag=flag,
        title=data.title[:200],
        summary=excerpt(data.summary, data.body_html),
        index_number=data.index_number[:60] if data.index_number else None,
        publishing_body=data.publishing_body[:100] if data.publishing_body else None,
        published_at=data.published_at,
        updated=max(data.published_at, event.time) if event.time else data.published_at,
    )
    rows, seen = [], set()
    for p in data.placements:
        placed = dict(
            common,
            region_code=p.region_code,
            domain_code=p.domain_code,
            level1_id=p.level1_id,
            level2_id=p.level2_id,
            major=current.counts(p, flag),
            domain_name=p.domain_name[:100],
            level2_name=p.level2_name[:200],
        )
        for scope in scopes_of(p.region_code):
            if (scope, p.region_code, p.level2_id) not in seen:
                seen.add((scope, p.region_code, p.level2_id))
                rows.append(dict(placed, scope=scope))
    return rows


def _feed_item(row) -> FeedItem:
    return FeedItem(
        publication_id=row["publication_id"],
        region_code=row["region_code"],
        domain_code=row["domain_code"],
        domain_name=row["domain_name"],
        level2_name=row["level2_name"],
        title=row["title"],
        summary=row["summary"],
        index_number=row["index_number"],
        publishing_body=row["publishing_body"],
        published_at=_aware(row["published_at"]),
        updated=_aware(row["updated"]),
    )
