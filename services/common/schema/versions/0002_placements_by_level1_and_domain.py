"""The publisher's placements indexed by level-1 item and by domain.

A catalog change finds the live publications it touches by item, level-1 or domain id in one
query (PublisherStore.live_filed_under). Only the item id had an index, so the OR of the three
read every placement, inside the transaction that holds the publisher's write lock; with each
indexed, SQLite and PostgreSQL answer it with three index searches (MULTI-INDEX OR, BitmapOr).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from services.common.schema.ops import wants

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {"ix_publisher_placements_level1": "level1_id", "ix_publisher_placements_domain": "domain_code"}


def upgrade() -> None:
    if wants("publisher"):
        for name, column in INDEXES.items():
            op.create_index(name, "publisher_placements", [column])


def downgrade() -> None:
    if wants("publisher"):
        for name in INDEXES:
            op.drop_index(name, table_name="publisher_placements")
