"""The publisher's tables — the source of truth, the outbox, the relay's state — in one database.

The catalog's editions and the regions live in the same database (services/catalog/store.py),
so that publishing an edition and its events commit in one transaction.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, text

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
    # A catalog change looks publications up by item, level-1 or domain id at once
    # (live_filed_under): with all three indexed that is three index searches, not a scan of
    # every placement inside the publisher's transaction.
    Index("ix_publisher_placements_level1", "level1_id"),
    Index("ix_publisher_placements_domain", "domain_code"),
)

heartbeats = heartbeat_table(metadata, "publisher")
