"""The bridge's own tables: what it knows of each item (hashes, versions, mapping state), its
outbox, the change cursor, the mapping data, problems (unreadable records, refused items) and
webhook nonces.

Over 400 lines: its tables and the transaction writing items, outbox and cursor together stay one module.

Item records, outbox rows and the cursor are written in one transaction, so the cursor never
passes a change whose event is not safely in the outbox.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from contracts.events import PlacementRef
from services.common.db import writing
from services.common.schema import ensure as ensure_schema

from .detect import Known
from .mapping import MappingTable, table_from_dict, table_to_dict

metadata = MetaData()

items = Table(
    "bridge_items",
    metadata,
    Column("platform", String(40), primary_key=True),
    Column("implementation_code", String(80), primary_key=True),
    Column("state", String(12), nullable=False),  # active | revoked | gone
    Column("mapping", String(12), nullable=False),  # mapped | unmapped | excluded | unknown
    Column("live", Boolean, nullable=False),
    Column("content_hash", String(64)),
    Column("version", Integer),
    Column("platform_updated_at", DateTime(timezone=True)),
    Column("title", String(300)),
    Column("region", String(20)),
    Column("placements", JSON, nullable=False),
    Column("reason", String(500)),
    Column("rule", String(200), nullable=False),
    Column("document", JSON),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("last_event_id", String(64)),
    Column("live_before_event", Boolean),
    Index("ix_bridge_items_mapping", "platform", "mapping"),
)

outbox = Table(
    "bridge_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(80), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_bridge_outbox_unsent", "id", sqlite_where=text("sent_at IS NULL"), postgresql_where=text("sent_at IS NULL")),
)

cursors = Table(
    "bridge_cursors",
    metadata,
    Column("platform", String(40), primary_key=True),
    Column("cursor", DateTime(timezone=True)),
    Column("polled_at", DateTime(timezone=True)),
    Column("reconciled_at", DateTime(timezone=True)),
)

mappings = Table(
    "bridge_mapping",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("document", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# What an operator should look at, one row per item: records the platform served but that could
# not be read (after retries), and items whose latest event the gate refused. Both are reported
# and tried again by every reconciliation; a refusal also ends when the item is sent again.
UNREADABLE, REFUSED = "unreadable", "refused"
problems = Table(
    "bridge_problems",
    metadata,
    Column("platform", String(40), primary_key=True),
    Column("implementation_code", String(120), primary_key=True),
    Column("detail", String(1000), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(12), nullable=False, server_default=UNREADABLE),
)

nonces = Table(
    "bridge_webhook_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)  # SQLite hands back naive datetimes
    return value


def _known(row) -> Known:
    return Known(
        implementation_code=row["implementation_code"],
        state=row["state"],
        mapping=row["mapping"],
        live=bool(row["live"]),
        content_hash=row["content_hash"],
        version=row["version"],
        updated_at=_aware(row["platform_updated_at"]),
        title=row["title"],
        region=row["region"],
        placements=tuple(PlacementRef.model_validate(p) for p in row["placements"] or ()),
        reason=row["reason"],
        rule=row["rule"] or "",
        document=row["document"],
        last_event_id=row["last_event_id"],
        live_before_event=bool(row["live_before_event"]),
    )


def _row(platform: str, record: Known, now: datetime) -> dict:
    return dict(
        platform=platform,
        implementation_code=record.implementation_code,
        state=record.state,
        mapping=record.mapping,
        live=record.live,
        content_hash=record.content_hash,
        version=record.version,
        platform_updated_at=record.updated_at,
        title=(record.title or "")[:300] or None,
        region=record.region,
        placements=[p.model_dump() for p in record.placements],
        reason=(record.reason or "")[:500] or None,
        rule=record.rule[:200],
        document=record.document,
        seen_at=now,
        last_event_id=record.last_event_id,
        live_before_event=record.live_before_event,
    )


class BridgeTransaction:
    """The bridge's tables inside one write transaction."""

    def __init__(self, connection: Connection, platform: str):
        self.connection = connection
        self.platform = platform

    def known(self, codes: Sequence[str]) -> dict[str, Known]:
        found: dict[str, Known] = {}
        wanted = sorted(set(codes))
        for start in range(0, len(wanted), 500):
            query = select(items).where(items.c.platform == self.platform, items.c.implementation_code.in_(wanted[start : start + 500]))
            if self.connection.dialect.name == "postgresql":
                query = query.with_for_update()
            for row in self.connection.execute(query).mappings():
                found[row["implementation_code"]] = _known(row)
        return found

    def save(self, records: Sequence[Known], existing: set[str]) -> None:
        """One statement per kind (executemany): updates for codes already stored, inserts for the rest."""
        now = _now()
        fresh = [_row(self.platform, r, now) for r in records if r.implementation_code not in existing]
        changed = [_row(self.platform, r, now) for r in records if r.implementation_code in existing]
        if changed:
            columns: dict[str, Any] = {k: bindparam(k) for k in changed[0] if k not in ("platform", "implementation_code")}
            self.connection.execute(
                update(items).where(items.c.platform == bindparam("p_platform"), items.c.implementation_code == bindparam("p_code")).values(**columns),
                [dict(row, p_platform=row["platform"], p_code=row["implementation_code"]) for row in changed],
            )
        if fresh:
            # Two lanes (polling and a webhook, or two bridge workers) can both see an item as
            # new; the second insert then updates instead of failing the whole batch.
            dialect = postgresql_insert if self.connection.dialect.name == "postgresql" else sqlite_insert
            statement = dialect(items)
            columns = {k: statement.excluded[k] for k in fresh[0] if k not in ("platform", "implementation_code")}
            self.connection.execute(statement.on_conflict_do_update(index_elements=["platform", "implementation_code"], set_=columns), fresh)

    def add_events(self, rows: Sequence[dict]) -> None:
        if rows:
            now = _now()
            self.connection.execute(insert(outbox), [dict(created_at=now, **row) for row in rows])

    def advance_cursor(self, cursor: datetime | None, *, reconciled: bool = False) -> None:
        """Never backwards: a platform that hands out an older cursor does not rewind us."""
        now = _now()
        row = self.connection.execute(select(cursors.c.cursor).where(cursors.c.platform == self.platform)).first()
        values: dict = {"polled_at": now}
        if reconciled:
            values["reconciled_at"] = now
        if row is None:
            self.connection.execute(insert(cursors).values(platform=self.platform, cursor=cursor, **values))
            return
        held = _aware(row.cursor)
        if cursor is not None and (held is None or cursor > held):
            values["cursor"] = cursor
        self.connection.execute(update(cursors).where(cursors.c.platform == self.platform).values(**values))

    def record_problems(self, found: dict[str, str], cleared: Sequence[str]) -> None:
        now = _now()
        gone = sorted(set(cleared) | set(found))
        for start in range(0, len(gone), 500):
            self.connection.execute(delete(problems).where(problems.c.platform == self.platform, problems.c.implementation_code.in_(gone[start : start + 500])))
        if found:
            self.connection.execute(
                insert(problems),
                [
                    dict(platform=self.platform, implementation_code=code[:120], detail=detail[:1000], seen_at=now, kind=UNREADABLE)
                    for code, detail in found.items()
                ],
            )

    def record_refusals(self, found: dict[str, str]) -> None:
        """The gate's reasons, per item, for refusing its latest event (replacing any earlier problem)."""
        if found:
            self.connection.execute(delete(problems).where(problems.c.platform == self.platform, problems.c.implementation_code.in_(sorted(found))))
            self.connection.execute(
                insert(problems),
                [dict(platform=self.platform, implementation_code=code, detail=detail[:1000], seen_at=_now(), kind=REFUSED) for code, detail in found.items()],
            )

    def clear_refusals(self, codes: Sequence[str]) -> None:
        """Sent again: a refusal is about the event it refused, not the new one."""
        wanted = sorted(set(codes))
        for start in range(0, len(wanted), 500):
            self.connection.execute(
                delete(problems).where(
                    problems.c.platform == self.platform, problems.c.kind == REFUSED, problems.c.implementation_code.in_(wanted[start : start + 500])
                )
            )


class BridgeStore:
    def __init__(self, engine: Engine, platform: str):
        self.engine = engine
        self.platform = platform

    def create(self) -> None:
        ensure_schema(self.engine, "bridge")

    @contextmanager
    def transaction(self) -> Iterator[BridgeTransaction]:
        with writing(self.engine) as connection:
            yield BridgeTransaction(connection, self.platform)

    # --- reading ----------------------------------------------------------------------------
    def cursor(self) -> datetime | None:
        with self.engine.connect() as connection:
            return _aware(connection.execute(select(cursors.c.cursor).where(cursors.c.platform == self.platform)).scalar())

    def status(self) -> dict:
        with self.engine.connect() as connection:
            row = connection.execute(select(cursors).where(cursors.c.platform == self.platform)).mappings().first()
            counts: dict[str, int] = dict(
                connection.execute(
                    select(items.c.mapping, func.count()).where(items.c.platform == self.platform, items.c.state == "active").group_by(items.c.mapping)
                )
                .tuples()
                .all()
            )
            live = connection.execute(select(func.count()).select_from(items).where(items.c.platform == self.platform, items.c.live.is_(True))).scalar_one()
            by_kind: dict[str, int] = dict(
                connection.execute(select(problems.c.kind, func.count()).where(problems.c.platform == self.platform).group_by(problems.c.kind)).tuples().all()
            )
        return {
            "platform": self.platform,
            "cursor": _aware(row["cursor"]) if row else None,
            "polled_at": _aware(row["polled_at"]) if row else None,
            "reconciled_at": _aware(row["reconciled_at"]) if row else None,
            "active_by_mapping": counts,
            "live": live,
            "unreadable": by_kind.get(UNREADABLE, 0),
            "refused": by_kind.get(REFUSED, 0),
            "outbox_backlog": self.outbox_backlog(),
        }

    def known(self, codes: Sequence[str]) -> dict[str, Known]:
        """Read-only: decisions are made again inside the write transaction."""
        found: dict[str, Known] = {}
        wanted = sorted(set(codes))
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                query = select(items).where(items.c.platform == self.platform, items.c.implementation_code.in_(wanted[start : start + 500]))
                found.update((row["implementation_code"], _known(row)) for row in connection.execute(query).mappings())
        return found

    def all_known(self) -> dict[str, Known]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(items).where(items.c.platform == self.platform)).mappings().all()
        return {row["implementation_code"]: _known(row) for row in rows}

    def unmapped(self) -> list[Known]:
        """Active items the column does not show as they are: no rule places them (or an office
        excluded them). Excluded ones are listed too, marked, so the decision stays visible."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(items)
                .where(items.c.platform == self.platform, items.c.state == "active", items.c.mapping.in_(("unmapped", "excluded")))
                .order_by(items.c.region, items.c.implementation_code)
            ).mappings()
            return [_known(row) for row in rows]

    def problems(self, kind: str | None = None) -> list[dict]:
        query = select(problems).where(problems.c.platform == self.platform)
        if kind is not None:
            query = query.where(problems.c.kind == kind)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query.order_by(problems.c.implementation_code)).mappings()]

    def refused(self) -> list[dict]:
        """Items whose latest event the gate refused, with its reasons and the item's name and region."""
        same_item = and_(items.c.platform == problems.c.platform, items.c.implementation_code == problems.c.implementation_code)
        query = (
            select(problems.c.implementation_code, problems.c.detail, problems.c.seen_at, items.c.title, items.c.region, items.c.live)
            .select_from(problems.outerjoin(items, same_item))
            .where(problems.c.platform == self.platform, problems.c.kind == REFUSED)
            .order_by(items.c.region, problems.c.implementation_code)
        )
        with self.engine.connect() as connection:
            return [dict(row, seen_at=_aware(row["seen_at"])) for row in connection.execute(query).mappings()]

    # --- mapping data -------------------------------------------------------------------------
    def mapping(self) -> MappingTable:
        with self.engine.connect() as connection:
            document = connection.execute(select(mappings.c.document).where(mappings.c.name == "current")).scalar()
        return table_from_dict(document) if document is not None else MappingTable.defaults()

    def save_mapping(self, table: MappingTable) -> None:
        with writing(self.engine) as connection:
            values = dict(document=table_to_dict(table), updated_at=_now())
            if not connection.execute(update(mappings).where(mappings.c.name == "current").values(**values)).rowcount:
                connection.execute(insert(mappings).values(name="current", **values))

    # --- webhook nonces ----------------------------------------------------------------------
    def nonce_unused(self, nonce: str, seen_at: datetime, *, keep: timedelta = timedelta(hours=1)) -> bool:
        """Record a nonce; False if it was recorded before. Old nonces are pruned: the timestamp
        window refuses requests that old anyway."""
        try:
            with writing(self.engine) as connection:
                connection.execute(delete(nonces).where(nonces.c.seen_at < _now() - keep))
                connection.execute(insert(nonces).values(nonce=nonce, seen_at=seen_at))
            return True
        except IntegrityError:
            return False

    # --- outbox relay side --------------------------------------------------------------------
    def unsent(self, limit: int) -> list[tuple[int, str, str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit)
            ).all()
        return [tuple(r) for r in rows]

    def mark_sent(self, ids: Sequence[int]) -> None:
        with writing(self.engine) as connection:
            for start in range(0, len(ids), 500):
                connection.execute(update(outbox).where(outbox.c.id.in_(list(ids[start : start + 500]))).values(sent_at=_now()))

    def outbox_backlog(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))).scalar_one()

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True
        except Exception:
            return False
