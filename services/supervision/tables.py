"""The supervision store's tables (see store.py for what each is for and how they are kept)."""

from __future__ import annotations

from sqlalchemy import Column, Date, Index, Integer, MetaData, String, Table

from services.common.catalog_copy import catalog_copy_table
from services.common.db import Upsert
from services.common.heartbeat import heartbeat_table
from services.common.projection import publications_table

from .domain import STATUSES

metadata = MetaData()

publications = publications_table("supervision_publications", metadata)

filings = Table(
    "supervision_filings",
    metadata,
    Column("publication_id", String(80), nullable=False),
    Column("unit", String(20), nullable=False),
    Column("domain", String(8), nullable=False),
    Column("level1", String(16), nullable=False),
    Column("level2", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("formed_on", Date, nullable=False),
    Column("published_on", Date, nullable=False),  # Beijing date
    Column("time_limit", String(500)),
    Column("status", String(12), nullable=False),  # on_time | late | exempt | unparsed | no_calendar
    Column("deadline", Date),
    Column("working_days", Integer),
    Column("days_late", Integer),
    Index("ix_supervision_filings_item", "unit", "level2", "published_on"),
    Index("ix_supervision_filings_day", "published_on", "unit", "domain", "status"),
    Index("ix_supervision_filings_status", "status", "published_on", "unit", "level2", "days_late"),
    Index("ix_supervision_filings_publication", "publication_id"),
)

items = Table(
    "supervision_items",
    metadata,
    Column("unit", String(20), primary_key=True),
    Column("level2", String(16), primary_key=True),
    Column("domain", String(8), nullable=False),
    Column("level1", String(16), nullable=False),
    Column("live", Integer, nullable=False),
    Column("first_on", Date, nullable=False),
    Column("last_on", Date, nullable=False),
    *(Column(status, Integer, nullable=False) for status in STATUSES),
    Column("max_days_late", Integer, nullable=False),
    sqlite_with_rowid=False,  # rows clustered by (unit, level2): a unit's items are one range
)

months = Table(
    "supervision_months",
    metadata,
    # Key order (unit, month, domain): a window reads a range of months of each unit.
    Column("unit", String(20), primary_key=True),
    Column("month", Integer, primary_key=True),  # yyyymm
    Column("domain", String(8), primary_key=True),
    Column("filings", Integer, nullable=False),
    *(Column(status, Integer, nullable=False) for status in STATUSES),
    sqlite_with_rowid=False,
)

# The edition in force per scope (like the column's copy) and when each edition was published,
# for the "catalog published by 07-31" milestone.
catalogs = catalog_copy_table(metadata, "supervision")
editions = Table(
    "supervision_catalog_editions",
    metadata,
    Column("scope", String(20), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("edition", String(40), nullable=False),
    Column("published_on", Date, nullable=False),
)

heartbeats = heartbeat_table(metadata, "supervision")

# New filings add to their item's and month's roll-ups: counts up, first/last widen.
ADD_TO_ITEMS = Upsert(
    items,
    conflict=("unit", "level2"),
    set_={
        "live": "{table}.live + {excluded}.live",
        "first_on": "{least}({table}.first_on, {excluded}.first_on)",
        "last_on": "{greatest}({table}.last_on, {excluded}.last_on)",
        "max_days_late": "{greatest}({table}.max_days_late, {excluded}.max_days_late)",
        **{status: f"{{table}}.{status} + {{excluded}}.{status}" for status in STATUSES},
    },
)
ADD_TO_MONTHS = Upsert(
    months,
    conflict=("unit", "month", "domain"),
    set_={column: f"{{table}}.{column} + {{excluded}}.{column}" for column in ("filings", *STATUSES)},
)
