"""${message}

Say why the change is needed. Put each operation under the store it belongs to (`wants`):
the revision runs once per store, and a SQLite file must get only its own store's tables.

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
from services.common.schema.ops import wants

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    if not wants("STORE"):
        return
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    if not wants("STORE"):
        return
    ${downgrades if downgrades else "pass"}
