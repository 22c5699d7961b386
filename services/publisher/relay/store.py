"""What the relay reads and writes in the publisher's database: the unsent outbox rows, and
what it knows of the broker's log (topic ids, re-emissions, the applied watermark)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS
from services.common.db import writing
from services.publisher.tables import outbox, relay_state

# Topics the relay serves before any other (the bulk lane): an IN list, so the partial index
# on (topic, id) finds their few rows under a migration's million.
FIRST_LANE = (TOPIC_PUBLICATIONS, TOPIC_CATALOG)
BULK_ROWS_PER_ROUND = 500
# Built once: the idle relay asks many times a second, and building them is most of its work.
_UNSENT_COLUMNS = (outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload)
_ANY_UNSENT = select(outbox.c.id).where(outbox.c.sent_at.is_(None)).limit(1)
_UNSENT_FIRST_LANE = select(*_UNSENT_COLUMNS).where(outbox.c.sent_at.is_(None), outbox.c.topic.in_(FIRST_LANE)).order_by(outbox.c.id).limit(bindparam("limit"))
_UNSENT_BULK_LANE = (
    select(*_UNSENT_COLUMNS).where(outbox.c.sent_at.is_(None), outbox.c.topic.not_in(FIRST_LANE)).order_by(outbox.c.id).limit(bindparam("limit"))
)

# Names in relay_state (see services/publisher/tables.py).
_TOPIC_ID = "topic:"
_REEMIT_THROUGH = "reemit-through"
_REEMIT_REQUESTED = "reemit-requested"
_APPLIED_THROUGH = "applied-through"


def _set_state(connection: Connection, values: Mapping[str, str]) -> None:
    if values:
        connection.execute(delete(relay_state).where(relay_state.c.name.in_(list(values))))
        connection.execute(insert(relay_state), [{"name": name, "value": value} for name, value in values.items()])


def _applied_through(connection: Connection) -> int:
    value = connection.execute(select(relay_state.c.value).where(relay_state.c.name == _APPLIED_THROUGH)).scalar()
    return int(value) if value else 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


class RelayLog:
    """The relay's side of the publisher's database (the `Publisher` is one)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def unsent(self, limit: int) -> list[tuple[int, str, str, str]]:
        """The oldest unsent rows, the canonical topics' first: a migration's backlog on the
        bulk lane waits behind a clerk's publication, never the other way round."""
        with self.engine.connect() as connection:
            # The relay asks many times a second; an idle outbox answers one indexed probe.
            if connection.execute(_ANY_UNSENT).first() is None:
                return []
            rows = list(connection.execute(_UNSENT_FIRST_LANE, {"limit": limit}).tuples())
            if len(rows) < limit:
                # Short rounds on the bulk lane: a clerk's row committed meanwhile waits for one.
                rows += connection.execute(_UNSENT_BULK_LANE, {"limit": min(limit - len(rows), BULK_ROWS_PER_ROUND)}).tuples()
        return rows

    def mark_sent(self, ids: list[int]) -> None:
        with writing(self.engine) as connection:
            for start in range(0, len(ids), 500):
                connection.execute(update(outbox).where(outbox.c.id.in_(ids[start : start + 500])).values(sent_at=_now()))

    def outbox_backlog(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))).scalar_one()

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
            state: dict[str, str] = dict(
                connection.execute(select(relay_state.c.name, relay_state.c.value).where(relay_state.c.name.in_((_REEMIT_REQUESTED, _REEMIT_THROUGH))))
                .tuples()
                .all()
            )
            if _REEMIT_REQUESTED in state:
                return True
            through = int(state.get(_REEMIT_THROUGH, 0))
            return through > 0 and connection.execute(_ANY_UNSENT.where(outbox.c.id <= through)).first() is not None
